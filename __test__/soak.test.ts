import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
import { sleep, startRedis } from './support/redis-server';

/**
 * A soak: SOAK_OPS (default 1,000,000) mixed operations through every service, 100 in
 * flight, on a private redis-server. Memory must be stable and Redis must hold no more
 * keys than the TTLs allow. Runs only with SOAK=1 (npm run soak): it takes a while.
 */
const enabled = process.env.SOAK === '1';
const total = Number(process.env.SOAK_OPS ?? 1_000_000);

const mib = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;

describe('soak', { skip: !enabled && 'set SOAK=1 to run the soak (npm run soak)' }, () => {
  it(`${total} mixed operations through every service: memory stable, keys bounded, all settled`, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url });
    const admin = new RedisService(client);
    const redis = new RedisService(client);
    const tokens = new TokenService(client);
    const sessions = new SessionService(client, { maxSessionsPerUser: 3 });
    const limiter = new RateLimitService(client);
    const idem = new IdempotencyService(client);
    const cache = new CacheService(client).namespace('soak', { defaultTtl: 2 });
    const locks = new LockService(client);
    const pubsub = new PubSubService(client);
    let heard = 0;
    const sub = await pubsub.subscribe('soak', () => heard++);

    const ops: ((i: number) => Promise<unknown>)[] = [
      (i) => redis.set(`r:${i % 5000}`, 'v'.repeat(100), 2),
      (i) => redis.get(`r:${i % 5000}`),
      (i) => tokens.storeRefreshToken(`u${i % 500}`, `t${i}`, 2),
      (i) => tokens.isRefreshTokenValid(`u${i % 500}`, `t${i - 7}`),
      (i) => sessions.createSession(`s${i % 3000}`, { userId: `u${i % 500}`, i }, 2),
      (i) => sessions.getSession(`s${i % 3000}`),
      (i) => limiter.consume(`k${i % 1000}`, { limit: 50, windowSeconds: 1 }),
      (i) => idem.begin(`job${i}`, { lockTtl: 1, resultTtl: 2 }),
      (i) => cache.set(`${i % 4000}`, { i }, { indexes: { bucket: `b${i % 20}` } }),
      (i) => cache.getByIndex('bucket', `b${i % 20}`),
      (i) => locks.acquire(`l${i % 200}`, 500).then((l) => l?.release()),
      (i) => pubsub.publish('soak', `m${i}`),
    ];

    const gc = (globalThis as any).gc as (() => void) | undefined;
    gc?.();
    const start = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed };
    let next = 0;
    let settled = 0;
    let failed = 0;
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        for (;;) {
          const i = next++;
          if (i >= total) return;
          try {
            await ops[i % ops.length](i);
          } catch {
            failed++;
          }
          settled++;
        }
      }),
    );
    const seconds = (Date.now() - t0) / 1000;
    gc?.();
    await sleep(100);
    const end = { rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed };
    const keysRightAfter = Number(await admin.command('DBSIZE'));
    await sleep(3000); // every TTL above has passed
    await admin.command('DBSIZE');
    // touch the indexes so expired entries are pruned, then count what is left
    for (let b = 0; b < 20; b++) await cache.getByIndex('bucket', `b${b}`);
    const keysAfterTtl = Number(await admin.command('DBSIZE'));
    await sub.unsubscribe();
    const report = {
      operations: total,
      seconds,
      opsPerSecond: Math.round(total / seconds),
      settled,
      failed,
      pubsubMessagesHeard: heard,
      rssMiB: [mib(start.rss), mib(end.rss)],
      heapMiB: [mib(start.heap), mib(end.heap)],
      redisKeys: { rightAfter: keysRightAfter, afterTtls: keysAfterTtl },
    };
    process.stdout.write(`# soak ${JSON.stringify(report)}\n`);
    assert.equal(settled, total);
    assert.equal(failed, 0);
    assert.ok(end.heap - start.heap < 64 * 1024 * 1024, 'heap stable');
    assert.ok(end.rss - start.rss < 256 * 1024 * 1024, 'rss stable (it plateaus near +50 MiB: allocator and buffers warming up)');
    // left after the TTLs: the lock fencing counters (by design, one per resource), and
    // for the online window (5 minutes) each user's last activity and the 16 online sets
    assert.ok(keysAfterTtl <= 200 + 500 + 16 + 10, `keys bounded: ${keysAfterTtl}`);
    await client.close();
    await server.stop();
  });
});
