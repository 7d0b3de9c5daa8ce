import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CacheInterceptor, CacheModule } from '@nestjs/cache-manager';
import { Controller, Get, type INestApplication, Module, Param, UseInterceptors } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { createCache } from 'cache-manager';
import Keyv from 'keyv';
import request from 'supertest';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { KeyvRedisStore } from 'nestjs-redis-native/adapters';
import { RedisModule } from 'nestjs-redis-native/nest';
import { prefixedClients, sleep, stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

let client: RedisClient;
let redis: RedisService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, redis, raw, prefix, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

describe('KeyvRedisStore under Keyv', () => {
  it('stores each value as one Redis string named <namespace>:<key>, under the client’s keyPrefix', async () => {
    const keyv = new Keyv({ store: new KeyvRedisStore(client), namespace: 'users' });
    await keyv.set('42', { name: 'Ada' });
    assert.deepEqual(await keyv.get('42'), { name: 'Ada' });
    assert.equal(JSON.parse((await raw.get(`${prefix}users:42`)) ?? 'null').value.name, 'Ada');
  });

  it('a ttl (ms) becomes the Redis expiry, so Redis forgets the value by itself', async () => {
    const keyv = new Keyv({ store: new KeyvRedisStore(client), namespace: 'ttl' });
    await keyv.set('short', 'v', 200);
    const pttl = (await redis.command('PTTL', ['ttl:short'])) as number;
    assert.ok(pttl > 0 && pttl <= 200, String(pttl));
    await sleep(300);
    assert.equal(await redis.exists('ttl:short'), false);
    assert.equal(await keyv.get('short'), undefined);
  });

  it('without a ttl, a value does not expire', async () => {
    const keyv = new Keyv({ store: new KeyvRedisStore(client), namespace: 'forever' });
    await keyv.set('k', 1);
    assert.equal(await redis.ttl('forever:k'), -1);
  });

  it('clear() deletes the keys of its namespace only', async () => {
    const store = new KeyvRedisStore(client);
    const a = new Keyv({ store, namespace: 'clear-a' });
    await a.set('x', 1);
    await redis.set('clear-b:x', 'kept');
    await redis.set('clear-a-but-not:x', 'kept too');
    await a.clear();
    assert.equal(await a.get('x'), undefined);
    assert.equal(await redis.get('clear-b:x'), 'kept');
    assert.equal(await redis.get('clear-a-but-not:x'), 'kept too');
  });

  it('a namespace with glob characters is matched literally', async () => {
    const keyv = new Keyv({ store: new KeyvRedisStore(client), namespace: 'g*' });
    await keyv.set('1', 'a');
    await redis.set('gx:1', 'kept');
    await keyv.clear();
    assert.equal(await redis.get('gx:1'), 'kept');
    assert.equal(await keyv.get('1'), undefined);
  });

  it('without any namespace, clear() refuses with ERR_INVALID_ARGUMENT instead of emptying the database', async () => {
    const store = new KeyvRedisStore(client);
    await assert.rejects(store.clear(), (e: { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT');
  });

  it('the store’s own namespace option applies when Keyv gives none', async () => {
    const store = new KeyvRedisStore(client, { namespace: 'own' });
    await store.set('own:a', 'x');
    await store.clear();
    assert.equal(await redis.exists('own:a'), false);
  });

  it('refuses bad options with ERR_INVALID_ARGUMENT', () => {
    for (const bad of [null, 'ns', { namespace: '' }, { namespace: 7 }]) {
      assert.throws(
        () => new KeyvRedisStore(client, bad as never),
        (e: { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT',
        JSON.stringify(bad),
      );
    }
  });

  it('100 concurrent sets of different keys are all read back by one getMany', async () => {
    const keyv = new Keyv({ store: new KeyvRedisStore(client), namespace: 'many' });
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    await Promise.all(keys.map((k, i) => keyv.set(k, i)));
    assert.deepEqual(
      await keyv.get(keys),
      keys.map((_, i) => i),
    );
  });

  it('cache-manager (v7) runs on it: set, get, ttl, del', async () => {
    const cache = createCache({ stores: [new Keyv({ store: new KeyvRedisStore(client), namespace: 'cm' })] });
    await cache.set('answer', 42, 60_000);
    assert.equal(await cache.get('answer'), 42);
    const ttl = await cache.ttl('answer');
    assert.ok(ttl !== undefined && ttl > Date.now() + 59_000, String(ttl));
    await cache.del('answer');
    assert.equal(await cache.get('answer'), undefined);
  });
});

let computed = 0;

@Controller('prices')
@UseInterceptors(CacheInterceptor)
class PricesController {
  @Get(':id')
  price(@Param('id') id: string) {
    computed++;
    return { id, price: 42, computed };
  }
}

describe('@nestjs/cache-manager’s CacheModule on KeyvRedisStore', () => {
  let app: INestApplication;
  let keyPrefix: string;

  before(async () => {
    keyPrefix = uniquePrefix();
    @Module({
      imports: [
        CacheModule.registerAsync({
          imports: [RedisModule.forRoot({ ...(await testConnectOptions()), keyPrefix })],
          inject: [RedisClient],
          useFactory: (redisClient: RedisClient) => ({
            stores: [new Keyv({ store: new KeyvRedisStore(redisClient), namespace: 'http' })],
            ttl: 60_000,
          }),
        }),
      ],
      controllers: [PricesController],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });

  after(async () => {
    await app?.close();
    await raw.deletePattern(`${keyPrefix}*`);
  });

  it('CacheInterceptor answers the second request from Redis without calling the handler', async () => {
    const first = await request(app.getHttpServer()).get('/prices/7').expect(200);
    const second = await request(app.getHttpServer()).get('/prices/7').expect(200);
    assert.deepEqual(second.body, first.body);
    assert.equal(computed, 1);
    assert.deepEqual(await raw.keys(`${keyPrefix}http:*`), [`${keyPrefix}http:/prices/7`]);
    const pttl = (await raw.command('PTTL', [`${keyPrefix}http:/prices/7`])) as number;
    assert.ok(pttl > 59_000 && pttl <= 60_000, String(pttl));
  });
});
