import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CacheService, RedisClient, RedisService } from 'nestjs-redis-native';
import {
  notOnMemory,
  onlyStandalone,
  prefixedClients,
  sleep,
  startRedis,
  stopSharedRedis,
  testConnectOptions,
  uniquePrefix,
  type TestConnectOptions,
} from './support/redis-server';

/**
 * nearCache: values read from Redis kept in process memory, dropped when Redis reports a
 * change (client tracking). Never stale past the invalidation delay, never served while
 * the connection is down.
 */

let connectOptions: TestConnectOptions;
let writer: RedisService; // another client, as another app instance would be
let closeWriter: () => Promise<void>;
let prefix: string;
const ownServer = onlyStandalone('kills and restarts a server of its own');
const clientList = onlyStandalone('finds the tracking connection in CLIENT LIST of one server and kills it');
// memory:// ignores nearCache by design (every read is already in process memory: there is no
// near cache, and metrics().nearCache is undefined): the tests that look at its hits, bounds or
// expiry do not apply there
const measuresTheCache = notOnMemory('memory:// ignores nearCache by design: no near cache, no nearCache metrics');

before(async () => {
  connectOptions = await testConnectOptions();
  ({ raw: writer, prefix, close: closeWriter } = await prefixedClients());
});

after(async () => {
  await closeWriter();
  await stopSharedRedis();
});

async function cached(options: Record<string, unknown> = {}) {
  const client = await RedisClient.connect({ ...connectOptions, keyPrefix: prefix, nearCache: true, ...options });
  return { client, redis: new RedisService(client) };
}

async function until(check: () => Promise<boolean>, what: string, ms = 3000): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > ms) assert.fail(`not within ${ms} ms: ${what}`);
    await sleep(1);
  }
  return Date.now() - started;
}

describe('nearCache', () => {
  it('a value read once is served from memory', measuresTheCache, async () => {
    const { client, redis } = await cached();
    await writer.set(`${prefix}nc:a`, 'one');
    assert.equal(await redis.get('nc:a'), 'one');
    const before = client.metrics().nearCache!;
    for (let i = 0; i < 10; i++) assert.equal(await redis.get('nc:a'), 'one');
    const after = client.metrics().nearCache!;
    assert.equal(after.hits - before.hits, 10);
    assert.ok(after.entries >= 1);
    await client.close();
  });

  it('a value another client changes is dropped: the next reads get the new value, never the old one again', async () => {
    const { client, redis } = await cached();
    await writer.set(`${prefix}nc:b`, 'old');
    assert.equal(await redis.get('nc:b'), 'old');
    assert.equal(await redis.get('nc:b'), 'old'); // from memory
    const written = Date.now();
    await writer.set(`${prefix}nc:b`, 'new');
    const delay = await until(async () => (await redis.get('nc:b')) === 'new', 'the invalidation');
    process.stdout.write(
      `# invalidation seen ${delay} ms after the write was acknowledged (${Date.now() - written} ms after it was sent)\n`,
    );
    for (let i = 0; i < 200; i++) assert.equal(await redis.get('nc:b'), 'new');
    await client.close();
  });

  it('this client reads its own writes at once', async () => {
    const { client, redis } = await cached();
    await redis.set('nc:own', 'v1');
    assert.equal(await redis.get('nc:own'), 'v1');
    await redis.set('nc:own', 'v2');
    assert.equal(await redis.get('nc:own'), 'v2');
    await redis.del('nc:own');
    assert.equal(await redis.get('nc:own'), null);
    await redis.incr('nc:own', 5);
    assert.equal(await redis.get('nc:own'), '5');
    await client.close();
  });

  it('getJson, getBuffer, mget and CacheService reads are cached and invalidated too', measuresTheCache, async () => {
    const { client, redis } = await cached();
    await writer.set(`${prefix}nc:json`, '{"n":1}');
    await writer.set(`${prefix}nc:m1`, 'a');
    const users = new CacheService(client).namespace('ncusers');
    await users.set('u1', { name: 'Ada' });
    assert.deepEqual(await redis.getJson('nc:json'), { n: 1 });
    assert.deepEqual(await redis.getBuffer('nc:json'), Buffer.from('{"n":1}'));
    assert.deepEqual(await redis.mget(['nc:m1', 'nc:m2']), ['a', null]);
    assert.deepEqual(await users.get('u1'), { name: 'Ada' });
    const hits = client.metrics().nearCache!.hits;
    assert.deepEqual(await redis.getJson('nc:json'), { n: 1 });
    assert.deepEqual(await redis.mget(['nc:m1', 'nc:m2']), ['a', null]);
    assert.deepEqual(await users.get('u1'), { name: 'Ada' });
    assert.ok(client.metrics().nearCache!.hits - hits >= 4);
    await writer.set(`${prefix}nc:json`, '{"n":2}');
    await writer.set(`${prefix}nc:m2`, 'b');
    await writer.command('HSET', [`${prefix}ncusers:u1`, 'f:name', '"Grace"']);
    await until(async () => (await redis.getJson<{ n: number }>('nc:json'))?.n === 2, 'getJson invalidated');
    await until(async () => JSON.stringify(await redis.mget(['nc:m1', 'nc:m2'])) === '["a","b"]', 'mget invalidated');
    await until(async () => (await users.get<{ name: string }>('u1'))?.name === 'Grace', 'cache item invalidated');
    await client.close();
  });

  it('works with keyPrefix: invalidations of the stored key reach the cached one', async () => {
    const own = uniquePrefix();
    const client = await RedisClient.connect({ ...connectOptions, keyPrefix: own, nearCache: true });
    const redis = new RedisService(client);
    await writer.set(`${own}k`, '1');
    assert.equal(await redis.get('k'), '1');
    await writer.set(`${own}k`, '2');
    await until(async () => (await redis.get('k')) === '2', 'prefixed key invalidated');
    await writer.del(`${own}k`);
    await client.close();
  });

  it('is bounded: the least recently used values go first (maxEntries)', measuresTheCache, async () => {
    const { client, redis } = await cached({ nearCache: { maxEntries: 3 } });
    for (let i = 0; i < 6; i++) await writer.set(`${prefix}nc:lru:${i}`, String(i));
    for (let i = 0; i < 6; i++) await redis.get(`nc:lru:${i}`);
    const m = client.metrics().nearCache!;
    assert.ok(m.entries <= 3, JSON.stringify(m));
    assert.ok(m.evictions >= 3, JSON.stringify(m));
    await client.close();
  });

  it('is bounded by maxBytes', measuresTheCache, async () => {
    const { client, redis } = await cached({ nearCache: { maxBytes: 4096 } });
    for (let i = 0; i < 10; i++) await writer.set(`${prefix}nc:big:${i}`, 'x'.repeat(1000));
    for (let i = 0; i < 10; i++) await redis.get(`nc:big:${i}`);
    const m = client.metrics().nearCache!;
    assert.ok(m.bytes <= 4096, JSON.stringify(m));
    assert.ok(m.evictions > 0);
    await client.close();
  });

  it('ttlSeconds: a value is read again after it, even without a change', measuresTheCache, async () => {
    const { client, redis } = await cached({ nearCache: { ttlSeconds: 0.2 } });
    await writer.set(`${prefix}nc:ttl`, 'v');
    await redis.get('nc:ttl');
    await redis.get('nc:ttl');
    const hits = client.metrics().nearCache!.hits;
    await sleep(250);
    await redis.get('nc:ttl');
    assert.equal(client.metrics().nearCache!.hits, hits, 'the expired value was not served');
    await client.close();
  });

  it('nothing is served while the connection is down, and the cache starts empty after a restart', ownServer, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      nearCache: true,
      reconnect: { minDelayMs: 20, maxDelayMs: 50 },
      pingIntervalMs: 0,
    });
    const redis = new RedisService(client);
    await redis.set('k', 'before');
    assert.equal(await redis.get('k'), 'before');
    assert.equal(await redis.get('k'), 'before');
    await server.kill();
    await assert.rejects(redis.get('k'), { code: 'ERR_REDIS_CONNECTION' });
    await server.start(); // empty: nothing persisted
    await until(
      async () =>
        redis.get('k').then(
          (v) => v === null,
          () => false,
        ),
      'served again, from the restarted (empty) server',
    );
    await client.close();
    await server.stop();
  });

  it('a lost tracking connection empties the cache, and caching comes back', clientList, async () => {
    const name = `nc${Date.now()}`;
    const { client, redis } = await cached({ clientName: name, reconnect: { minDelayMs: 20, maxDelayMs: 50 } });
    await writer.set(`${prefix}nc:t`, '1');
    await redis.get('nc:t');
    await redis.get('nc:t');
    assert.ok(client.metrics().nearCache!.entries >= 1);
    await writer.command('CLIENT', ['KILL', 'ID', String(await trackingId(name))]);
    await until(async () => client.metrics().nearCache!.entries === 0, 'the cache emptied');
    await writer.set(`${prefix}nc:t`, '2');
    await until(async () => (await redis.get('nc:t')) === '2', 'fresh after the loss');
    await until(async () => {
      const hits = client.metrics().nearCache!.hits;
      await redis.get('nc:t');
      return client.metrics().nearCache!.hits > hits;
    }, 'caching again');
    await client.close();
  });

  it('bad nearCache options are ERR_INVALID_ARGUMENT', async () => {
    for (const bad of [5, 'yes', { maxEntries: 0 }, { maxBytes: -1 }, { ttlSeconds: 0 }, { nope: 1 }]) {
      await assert.rejects(
        RedisClient.connect({ ...connectOptions, nearCache: bad as any }),
        { code: 'ERR_INVALID_ARGUMENT' },
        JSON.stringify(bad),
      );
    }
  });

  it('without nearCache, metrics have no nearCache figures', async () => {
    const client = await RedisClient.connect(connectOptions);
    assert.equal(client.metrics().nearCache, undefined);
    await client.close();
  });
});

/** The client id of the tracking connection of the client named `name`. */
async function trackingId(name: string): Promise<number> {
  const list = String(await writer.command('CLIENT', ['LIST']));
  const line = list.split('\n').find((l) => l.includes(`name=${name}:tracking `));
  assert.ok(line, 'the tracking connection is named after the client');
  return Number(/id=(\d+)/.exec(line)![1]);
}
