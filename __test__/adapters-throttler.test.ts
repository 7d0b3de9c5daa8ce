import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { SkipThrottle, Throttle, ThrottlerGuard, ThrottlerModule, ThrottlerStorageService } from '@nestjs/throttler';
import request from 'supertest';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { RedisThrottlerStorage } from 'nestjs-redis-native/adapters';
import { RedisModule } from 'nestjs-redis-native/nest';
import { prefixedClients, sleep, startRedis, stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

let client: RedisClient;
let redis: RedisService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;
let storage: RedisThrottlerStorage;
let n = 0;
/** A throttler key no other test uses. */
const key = () => `k${++n}`;

before(async () => {
  ({ client, redis, raw, prefix, close: closeClients } = await prefixedClients());
  storage = new RedisThrottlerStorage(client);
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

type Step = [string, number, number, number, string] | number;

/**
 * Runs `steps` (increment arguments, or a pause in ms) against throttler's in-memory
 * storage and ours side by side; the records each answered.
 */
async function sideBySide(steps: Step[]) {
  const memory = new ThrottlerStorageService();
  const ours: unknown[] = [];
  const theirs: unknown[] = [];
  try {
    for (const step of steps) {
      if (typeof step === 'number') {
        await sleep(step);
        continue;
      }
      const [a, b] = await Promise.all([memory.increment(...step), storage.increment(...step)]);
      // before its first block, the in-memory storage answers `ceil((0 - now) / 1000)`: the
      // same on both sides but for the second it is read in; and JavaScript's -0 is 0
      const norm = (r: { timeToBlockExpire: number }) => ({
        ...r,
        timeToBlockExpire: r.timeToBlockExpire < -1e6 ? 'never blocked' : r.timeToBlockExpire || 0,
      });
      theirs.push(norm(a));
      ours.push(norm(b));
    }
  } finally {
    memory.onApplicationShutdown();
  }
  return { ours, theirs };
}

describe('RedisThrottlerStorage answers as throttler’s in-memory storage does', () => {
  it('counts hits, blocks past the limit for blockDuration, then starts again', async () => {
    const k = key();
    const hit: Step = [k, 1500, 2, 1200, 'default'];
    const { ours, theirs } = await sideBySide([hit, hit, hit, hit, 300, hit, 1100, hit, hit]);
    assert.deepEqual(ours, theirs);
    assert.equal((theirs[2] as { isBlocked: boolean }).isBlocked, true, 'the sequence reaches a block');
  });

  it('without a block duration, refuses past the limit until the oldest hit expires', async () => {
    const k = key();
    const hit: Step = [k, 1000, 2, 0, 'default'];
    const { ours, theirs } = await sideBySide([hit, 400, hit, hit, hit, 700, hit, hit]);
    assert.deepEqual(ours, theirs);
    assert.equal((theirs[2] as { isBlocked: boolean }).isBlocked, true, 'the sequence reaches a refusal');
  });

  it('keeps each throttler name’s hits apart on one key', async () => {
    const k = key();
    const { ours, theirs } = await sideBySide([
      [k, 5000, 1, 5000, 'short'],
      [k, 5000, 3, 5000, 'long'],
      [k, 5000, 3, 5000, 'long'],
    ]);
    assert.deepEqual(ours, theirs);
  });

  it('a limit of 0 blocks the first hit', async () => {
    const { ours, theirs } = await sideBySide([[key(), 1000, 0, 1000, 'default']]);
    assert.deepEqual(ours, theirs);
  });
});

describe('RedisThrottlerStorage on Redis', () => {
  it('30 concurrent hits against a limit of 5 leave exactly 5 unblocked', async () => {
    const k = key();
    const records = await Promise.all(Array.from({ length: 30 }, () => storage.increment(k, 60_000, 5, 60_000, 'default')));
    assert.equal(records.filter((r) => !r.isBlocked).length, 5);
    assert.deepEqual(
      records
        .filter((r) => !r.isBlocked)
        .map((r) => r.totalHits)
        .sort(),
      [1, 2, 3, 4, 5],
    );
  });

  it('shares the count between two storages on two clients (two app instances)', async () => {
    const k = key();
    const other = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: prefix });
    try {
      const second = new RedisThrottlerStorage(other);
      await storage.increment(k, 60_000, 2, 60_000, 'default');
      await second.increment(k, 60_000, 2, 60_000, 'default');
      assert.equal((await storage.increment(k, 60_000, 2, 60_000, 'default')).isBlocked, true);
    } finally {
      await other.close();
    }
  });

  it('keeps its keys under the client’s keyPrefix, and they expire once the key is idle', async () => {
    const k = key();
    await storage.increment(k, 300, 1, 300, 'default');
    assert.deepEqual((await redis.keys(`throttler:{${k}}*`)).sort(), [`throttler:{${k}}`, `throttler:{${k}}:default`]);
    assert.equal((await raw.keys(`${prefix}throttler:{${k}}*`)).length, 2);
    await sleep(450);
    assert.deepEqual(await redis.keys(`throttler:{${k}}*`), []);
  });

  it('keeps a blocked key until its block ends, past the ttl', async () => {
    const k = key();
    await storage.increment(k, 200, 1, 800, 'default');
    await storage.increment(k, 200, 1, 800, 'default');
    await sleep(400);
    assert.equal((await storage.increment(k, 200, 1, 800, 'default')).isBlocked, true);
    await sleep(500);
    const after = await storage.increment(k, 200, 1, 800, 'default');
    assert.deepEqual([after.isBlocked, after.totalHits], [false, 1]);
  });

  it('refuses bad arguments with ERR_INVALID_ARGUMENT', async () => {
    const bad: [string, unknown[]][] = [
      ['an empty key', ['', 1000, 1, 1000, 'default']],
      ['a ttl of 0', [key(), 0, 1, 1000, 'default']],
      ['a negative limit', [key(), 1000, -1, 1000, 'default']],
      ['a fractional limit', [key(), 1000, 1.5, 1000, 'default']],
      ['a NaN block duration', [key(), 1000, 1, Number.NaN, 'default']],
      ['a name that is not a string', [key(), 1000, 1, 1000, 7]],
    ];
    for (const [what, args] of bad) {
      await assert.rejects(
        (storage.increment as (...a: unknown[]) => Promise<unknown>)(...args),
        (e: { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT',
        what,
      );
    }
  });

  it('while Redis is unreachable, fail-closed (the default) blocks and fail-open lets through', async () => {
    const server = await startRedis();
    const lost = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 300,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    try {
      const closed = new RedisThrottlerStorage(lost);
      const open = new RedisThrottlerStorage(lost, { onRedisError: 'fail-open' });
      await server.kill();
      const refused = await closed.increment(key(), 60_000, 5, 2_000, 'default');
      assert.deepEqual(refused, { totalHits: 6, timeToExpire: 60, isBlocked: true, timeToBlockExpire: 2 });
      const allowed = await open.increment(key(), 60_000, 5, 2_000, 'default');
      assert.deepEqual(allowed, { totalHits: 1, timeToExpire: 60, isBlocked: false, timeToBlockExpire: 0 });
    } finally {
      await lost.close();
      await server.stop();
    }
  });
});

describe('RedisModule', () => {
  it('provides a RedisThrottlerStorage on its client, with the rateLimit outage policy', async () => {
    const server = await startRedis();
    const moduleRef = await Test.createTestingModule({
      imports: [
        RedisModule.forRoot({
          url: server.url,
          commandTimeoutMs: 300,
          reconnect: { minDelayMs: 20, maxDelayMs: 100 },
          rateLimit: { onRedisError: 'fail-open' },
        }),
      ],
    }).compile();
    try {
      const provided = moduleRef.get(RedisThrottlerStorage);
      assert.ok(provided instanceof RedisThrottlerStorage);
      assert.equal((await provided.increment(key(), 60_000, 1, 60_000, 'default')).totalHits, 1);
      await server.kill();
      assert.equal((await provided.increment(key(), 60_000, 0, 60_000, 'default')).isBlocked, false, 'fail-open');
    } finally {
      await moduleRef.close();
      await server.stop();
    }
  });
});

@Controller()
class ApiController {
  @Get('search')
  search() {
    return { ok: true };
  }

  @Get('login')
  @SkipThrottle({ long: true })
  @Throttle({ short: { limit: 1, ttl: 300, blockDuration: 1500 } })
  login() {
    return { ok: true };
  }

  @Get('health')
  @SkipThrottle({ short: true, long: true })
  health() {
    return { ok: true };
  }
}

for (const adapter of ['express', 'fastify'] as const) {
  describe(`ThrottlerGuard with RedisThrottlerStorage on ${adapter}`, () => {
    let app: INestApplication;
    let who = 0;
    /** A fresh client per test (the tracker reads `x-client`). */
    const caller = () => `${adapter}-${++who}`;
    const get = (path: string, client: string) => request(app.getHttpServer()).get(path).set('x-client', client);

    before(async () => {
      @Module({
        imports: [
          ThrottlerModule.forRootAsync({
            imports: [RedisModule.forRoot({ ...(await testConnectOptions()), keyPrefix: uniquePrefix() })],
            // the storage RedisModule provides on its client (on Express), or one built on the client
            inject: [adapter === 'express' ? RedisThrottlerStorage : RedisClient],
            useFactory: (provided: RedisThrottlerStorage | RedisClient) => ({
              throttlers: [
                { name: 'short', ttl: 1000, limit: 3 },
                { name: 'long', ttl: 60_000, limit: 5 },
              ],
              storage: provided instanceof RedisThrottlerStorage ? provided : new RedisThrottlerStorage(provided),
              getTracker: (req: Record<string, any>) => req.headers['x-client'] as string,
            }),
          }),
        ],
        controllers: [ApiController],
        providers: [{ provide: APP_GUARD, useClass: ThrottlerGuard }],
      })
      class AppModule {}
      const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
      app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
      await app.init();
      if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<void> }).ready();
    });

    after(async () => {
      await app?.close();
    });

    it('sets the headers of each named throttler as throttler does', async () => {
      const res = await get('/search', caller()).expect(200);
      assert.equal(res.headers['x-ratelimit-limit-short'], '3');
      assert.equal(res.headers['x-ratelimit-remaining-short'], '2');
      assert.equal(res.headers['x-ratelimit-reset-short'], '1');
      assert.equal(res.headers['x-ratelimit-limit-long'], '5');
      assert.equal(res.headers['x-ratelimit-remaining-long'], '4');
      assert.equal(res.headers['x-ratelimit-reset-long'], '60');
    });

    it('20 simultaneous requests against a limit of 3 let exactly 3 through', async () => {
      const who = caller();
      const statuses = (await Promise.all(Array.from({ length: 20 }, () => get('/search', who)))).map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 3);
      assert.equal(statuses.filter((s) => s === 429).length, 17);
    });

    it('refuses with 429 and Retry-After of the throttler that refused', async () => {
      const who = caller();
      for (let i = 0; i < 3; i++) await get('/search', who).expect(200);
      const refused = await get('/search', who).expect(429);
      assert.equal(refused.headers['retry-after-short'], '1');
      assert.equal(refused.headers['retry-after-long'], undefined);
    });

    it('applies every named throttler: the long one refuses once the short one lets through again', async () => {
      const who = caller();
      for (let i = 0; i < 3; i++) await get('/search', who).expect(200);
      await get('/search', who).expect(429); // short: 3 per second
      await sleep(1100);
      await get('/search', who).expect(200);
      await get('/search', who).expect(200);
      const refused = await get('/search', who).expect(429); // long: 5 per minute
      assert.ok(Number(refused.headers['retry-after-long']) > 50);
    });

    it('blockDuration keeps refusing after the ttl, until the block ends', async () => {
      const who = caller();
      await get('/login', who).expect(200);
      await get('/login', who).expect(429); // blocked for 1.5 s
      await sleep(500); // the ttl (0.3 s) is over, the block is not
      await get('/login', who).expect(429);
      await sleep(1100);
      await get('/login', who).expect(200);
    });

    it('@SkipThrottle() of every throttler leaves a route unlimited', async () => {
      const who = caller();
      for (let i = 0; i < 10; i++) await get('/health', who).expect(200);
    });
  });
}
