import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import {
  CacheService,
  IdempotencyService,
  LockService,
  PubSubService,
  RateLimitService,
  RedisClient,
  RedisService,
  SessionService,
  TokenService,
} from 'nestjs-redis-native';
import { REDIS_MODULE_OPTIONS, RedisHealthIndicator, RedisModule, type RedisModuleOptions } from 'nestjs-redis-native/nest';
import {
  freePort,
  onlyStandalone,
  sleep,
  startRedis,
  stopSharedRedis,
  testConnectOptions,
  uniquePrefix,
  type TestConnectOptions,
} from './support/redis-server';

/** How to reach the test Redis: `{ url }`, or `{ cluster }` with TEST_TOPOLOGY=cluster. */
let connection: TestConnectOptions;
let observer: RedisClient;
let observe: RedisService;
const clientList = onlyStandalone('looks for connections in CLIENT LIST of one server');
const ownServer = onlyStandalone('starts a server of its own late');

before(async () => {
  connection = await testConnectOptions();
  observer = await RedisClient.connect(connection);
  observe = new RedisService(observer);
});

after(async () => {
  await observer.close();
  await stopSharedRedis();
});

/** Names of the connections the server currently has open. */
async function clientNames(): Promise<string[]> {
  const list = (await observe.command('CLIENT', ['LIST'])) as string;
  return [...list.matchAll(/ name=(\S*)/g)].map((m) => m[1]);
}

@Injectable()
class GreetingStore {
  constructor(readonly redis: RedisService) {}

  async greet(name: string): Promise<string> {
    await this.redis.set(`greeting:${name}`, `hello ${name}`, 60);
    return (await this.redis.get(`greeting:${name}`)) ?? '';
  }
}

@Module({ providers: [GreetingStore], exports: [GreetingStore] })
class FeatureModule {}

describe('RedisModule', () => {
  it("forRoot provides RedisService by class, injectable into the app's own providers", async () => {
    const keyPrefix = uniquePrefix();
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRoot({ ...connection, keyPrefix })],
      providers: [GreetingStore],
    }).compile();
    await moduleRef.init();

    const store = moduleRef.get(GreetingStore);
    assert.equal(await store.greet('ada'), 'hello ada');
    assert.equal(await observe.get(`${keyPrefix}greeting:ada`), 'hello ada');
    assert.ok(moduleRef.get(RedisService) === store.redis);
    await observe.del(`${keyPrefix}greeting:ada`);
    await moduleRef.close();
  });

  it('forRootAsync takes its options from ConfigService', async () => {
    const keyPrefix = uniquePrefix();
    const moduleRef = await Test.createTestingModule({
      imports: [
        ConfigModule.forRoot({ ignoreEnvFile: true, load: [() => ({ redis: { ...connection, keyPrefix } })] }),
        RedisModule.forRootAsync({
          imports: [ConfigModule],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => config.getOrThrow<RedisModuleOptions>('redis'),
        }),
      ],
    }).compile();
    await moduleRef.init();

    const redis = moduleRef.get(RedisService);
    await redis.set('from-config', 'yes');
    assert.equal(await observe.get(`${keyPrefix}from-config`), 'yes');
    assert.equal(moduleRef.get(REDIS_MODULE_OPTIONS).keyPrefix, keyPrefix);
    await redis.del('from-config');
    await moduleRef.close();
  });

  it('forRootAsync accepts a plain async factory', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRootAsync({ useFactory: async () => connection })],
    }).compile();
    await moduleRef.init();
    assert.equal(typeof (await moduleRef.get(RedisService).ping()), 'number');
    await moduleRef.close();
  });

  it('isGlobal makes the services injectable in modules that do not import RedisModule', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRoot({ ...connection, keyPrefix: uniquePrefix(), isGlobal: true }), FeatureModule],
    }).compile();
    await moduleRef.init();
    assert.equal(await moduleRef.get(GreetingStore).greet('grace'), 'hello grace');
    await moduleRef.get(RedisService).del('greeting:grace');
    await moduleRef.close();
  });

  it('without isGlobal, a module that does not import RedisModule cannot inject RedisService', async () => {
    await assert.rejects(
      Test.createTestingModule({ imports: [RedisModule.forRoot(connection), FeatureModule] }).compile(),
      /RedisService/,
    );
  });

  it('RedisClient and every service share one connection', clientList, async () => {
    const clientName = `nest-shared-${randomUUID()}`;
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRoot({ ...connection, clientName })],
    }).compile();
    await moduleRef.init();
    const client = moduleRef.get(RedisClient);
    assert.ok(client instanceof RedisClient);
    assert.equal(typeof (await moduleRef.get(RedisService).ping()), 'number');
    assert.equal((await clientNames()).filter((n) => n === clientName).length, 1);
    await moduleRef.close();
  });

  it('application shutdown closes the connection', clientList, async () => {
    const clientName = `nest-shutdown-${randomUUID()}`;
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRoot({ ...connection, clientName })],
    }).compile();
    await moduleRef.init();
    const redis = moduleRef.get(RedisService);
    assert.ok((await clientNames()).includes(clientName));

    await moduleRef.close();

    assert.equal(moduleRef.get(RedisClient).isClosed, true);
    await assert.rejects(redis.get('k'), { code: 'ERR_CLIENT_CLOSED' });
    // the server notices a closed socket on its next turn: it may still list it once
    let listed = true;
    for (let i = 0; i < 50 && listed; i++) {
      listed = (await clientNames()).includes(clientName);
      if (listed) await sleep(10);
    }
    assert.ok(!listed, 'the server no longer lists the connection');
  });

  it('every service is injectable, on the one connection, with its options from forRoot', async () => {
    const keyPrefix = uniquePrefix();
    const moduleRef = await Test.createTestingModule({
      imports: [
        RedisModule.forRoot({
          ...connection,
          keyPrefix,
          tokens: { namespace: 'auth' },
          sessions: { maxSessionsPerUser: 1 },
          idempotency: { namespace: 'once' },
        }),
      ],
    }).compile();
    await moduleRef.init();
    const tokens = moduleRef.get(TokenService);
    const sessions = moduleRef.get(SessionService);
    const idem = moduleRef.get(IdempotencyService);
    const family = await tokens.storeRefreshToken('u1', 'refresh-token', 60);
    await sessions.createSession('s1', { userId: 'u1' }, { ttl: 60, tokenFamily: family });
    assert.deepEqual(await sessions.createSession('s2', { userId: 'u1' }, 60), ['s1']);
    await idem.markAsProcessed('evt', 60);
    assert.equal((await sessions.listUserSessions('u1')).length, 1);
    // the evicted session's login lost its refresh token in the module's token namespace
    assert.equal(await tokens.isRefreshTokenValid('u1', 'refresh-token'), false);
    await tokens.storeRefreshToken('u2', 'other-login', 60);
    assert.ok(moduleRef.get(RateLimitService) instanceof RateLimitService);
    assert.ok(moduleRef.get(LockService) instanceof LockService);
    assert.ok(moduleRef.get(CacheService) instanceof CacheService);
    assert.ok(moduleRef.get(PubSubService) instanceof PubSubService);
    assert.equal((await moduleRef.get(RedisHealthIndicator).isHealthy()).redis.status, 'up');
    const keys = (await observe.keys(`${keyPrefix}*`)).map((k) => k.slice(keyPrefix.length));
    assert.ok(
      keys.some((k) => k.startsWith('auth:refresh:')),
      keys.join(),
    );
    assert.ok(keys.includes('once:processed:evt'), keys.join());
    await observe.deletePattern(`${keyPrefix}*`);
    await moduleRef.close();
  });

  it('an unreachable Redis stops startup with ERR_REDIS_CONNECTION naming host and port', async () => {
    const port = await freePort();
    await assert.rejects(
      Test.createTestingModule({
        imports: [RedisModule.forRoot({ host: '127.0.0.1', port, connectTimeoutMs: 500 })],
      }).compile(),
      (e: any) => {
        assert.equal(e.code, 'ERR_REDIS_CONNECTION');
        assert.ok(e.message.includes(`127.0.0.1:${port}`), e.message);
        return true;
      },
    );
  });

  it('with reconnect.atStartup the app waits for a Redis that starts after it', ownServer, async () => {
    const server = await startRedis();
    await server.stop();
    setTimeout(() => void server.start(), 300);
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRoot({ url: server.url, reconnect: { atStartup: true, minDelayMs: 50, maxDelayMs: 100 } })],
    }).compile();
    await moduleRef.init();
    assert.equal(typeof (await moduleRef.get(RedisService).ping()), 'number');
    await moduleRef.close();
    await server.stop();
  });

  it("rateLimit takes RateLimitGuard's options (default, outageStatus, onOutage) beside RateLimitService's", async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        RedisModule.forRoot({
          ...connection,
          rateLimit: {
            onRedisError: 'fail-open',
            default: { limit: 100, windowSeconds: 60 },
            outageStatus: 429,
            onOutage: () => {},
          },
        }),
      ],
    }).compile();
    await moduleRef.init();
    assert.ok(moduleRef.get(RateLimitService) instanceof RateLimitService);
    await moduleRef.close();
  });

  it('a wrong rateLimit option stops startup with ERR_INVALID_ARGUMENT, naming it', async () => {
    const rejects = (rateLimit: object, name: RegExp) =>
      assert.rejects(
        Test.createTestingModule({ imports: [RedisModule.forRoot({ ...connection, rateLimit } as any)] }).compile(),
        (e: any) => e.code === 'ERR_INVALID_ARGUMENT' && name.test(e.message),
      );
    await rejects({ default: { limit: 0, windowSeconds: 60 } }, /rateLimit\.default.*limit/);
    await rejects({ default: { limit: 5, windowSeconds: 60, algorithm: 'leaky' } }, /rateLimit\.default.*algorithm/);
    await rejects({ outageStatus: 500 }, /outageStatus/);
    await rejects({ onOutage: 'log' }, /onOutage/);
    await rejects({ onRedisErorr: 'fail-open' }, /onRedisErorr/);
  });

  it('a wrong option stops startup with ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(
      Test.createTestingModule({ imports: [RedisModule.forRoot({ ...connection, commandTimeoutMs: -5 })] }).compile(),
      {
        code: 'ERR_INVALID_ARGUMENT',
      },
    );
    await assert.rejects(
      Test.createTestingModule({ imports: [RedisModule.forRoot({ ...connection, kyePrefix: 'typo:' } as any)] }).compile(),
      (e: any) => e.code === 'ERR_INVALID_ARGUMENT' && /kyePrefix/.test(e.message),
    );
  });
});
