import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { RateLimitService, RedisClient, RedisService, type RateLimitOptions } from 'nestjs-redis-native';
import { onlyStandalone, prefixedClients, sleep, startRedis, stopSharedRedis, testConnectOptions } from './support/redis-server';

let client: RedisClient;
let limiter: RateLimitService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, prefix, close: closeClients } = await prefixedClients());
  limiter = new RateLimitService(client);
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;
const fresh = () => `k-${randomUUID()}`;
/** `limiter.limiter(options)`: one limit with its options read once. */
const limitOf = (options: RateLimitOptions) => limiter.limiter(options);
const algorithms = ['sliding-window-counter', 'fixed-window', 'sliding-window', 'token-bucket'] as const;

describe('checkRateLimit', () => {
  it('allows limit requests per fixed window, under key rate_limit:{<identifier>}', async () => {
    const id = fresh();
    const outcomes = [];
    for (let i = 0; i < 5; i++) outcomes.push(await limiter.checkRateLimit(id, 3, 60));
    assert.deepEqual(outcomes, [true, true, true, false, false]);
    assert.equal(await raw.get(`${prefix}rate_limit:{${id}}`), '3');
  });

  it('500 concurrent checks against a limit of 100 allow exactly 100', async () => {
    const id = fresh();
    const outcomes = await Promise.all(Array.from({ length: 500 }, () => limiter.checkRateLimit(id, 100, 60)));
    assert.equal(outcomes.filter(Boolean).length, 100);
  });
});

for (const algorithm of algorithms) {
  describe(`consume, ${algorithm}`, () => {
    const opts = (o: Partial<RateLimitOptions> = {}): RateLimitOptions => ({ limit: 100, windowSeconds: 60, algorithm, ...o });

    it('500 concurrent consumes against a limit of 100 allow exactly 100', async () => {
      const key = fresh();
      const results = await Promise.all(Array.from({ length: 500 }, () => limiter.consume(key, opts())));
      assert.equal(results.filter((r) => r.allowed).length, 100);
      assert.ok(results.every((r) => r.remaining >= 0));
      assert.ok(results.filter((r) => !r.allowed).every((r) => r.retryAfterMs > 0));
    });

    it('two clients (two app instances) share one limit exactly', async () => {
      const other = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: prefix });
      const second = new RateLimitService(other);
      const key = fresh();
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 ? limiter : second).consume(key, opts({ limit: 50 }))),
      );
      assert.equal(results.filter((r) => r.allowed).length, 50);
      await other.close();
    });

    it('remaining counts down and the result is consistent', async () => {
      const key = fresh();
      const first = await limiter.consume(key, opts({ limit: 3 }));
      assert.deepEqual([first.allowed, first.limit, first.remaining, first.retryAfterMs], [true, 3, 2, 0]);
      // the counter's full limit is back once the next window has passed too (up to 2 windows)
      const span = algorithm === 'sliding-window-counter' ? 121_000 : 61_000;
      assert.ok(first.resetAt > Date.now() - 5000 && first.resetAt <= Date.now() + span);
      assert.equal((await limiter.consume(key, opts({ limit: 3 }))).remaining, 1);
      assert.equal((await limiter.consume(key, opts({ limit: 3 }))).remaining, 0);
      const refused = await limiter.consume(key, opts({ limit: 3 }));
      assert.equal(refused.allowed, false);
      assert.equal(refused.remaining, 0);
      // the counter may have to wait into the next window, while this one's count weighs less
      assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= span - 1000, String(refused.retryAfterMs));
    });

    it('a caller that waits retryAfterMs is then allowed', async () => {
      const key = fresh();
      const o = opts({ limit: 2, windowSeconds: 0.3 });
      await limiter.consume(key, o);
      await limiter.consume(key, o);
      const refused = await limiter.consume(key, o);
      assert.equal(refused.allowed, false);
      await sleep(refused.retryAfterMs + 5);
      assert.equal((await limiter.consume(key, o)).allowed, true);
    });

    it('cost counts as that many requests', async () => {
      const key = fresh();
      assert.equal((await limiter.consume(key, opts({ limit: 10, cost: 7 }))).remaining, 3);
      assert.equal((await limiter.consume(key, opts({ limit: 10, cost: 4 }))).allowed, false);
      assert.equal((await limiter.consume(key, opts({ limit: 10, cost: 3 }))).allowed, true);
    });

    it('status tells without counting', async () => {
      const key = fresh();
      await limiter.consume(key, opts({ limit: 5 }));
      const s1 = await limiter.status(key, opts({ limit: 5 }));
      const s2 = await limiter.status(key, opts({ limit: 5 }));
      assert.equal(s1.remaining, 4);
      assert.equal(s2.remaining, 4);
      assert.equal(s1.allowed, true);
    });

    it('reset forgets the key', async () => {
      const key = fresh();
      for (let i = 0; i < 3; i++) await limiter.consume(key, opts({ limit: 3 }));
      assert.equal((await limiter.consume(key, opts({ limit: 3 }))).allowed, false);
      await limiter.reset(key);
      assert.equal((await limiter.consume(key, opts({ limit: 3 }))).allowed, true);
    });

    it('a key that stops receiving traffic expires from Redis', async () => {
      const key = fresh();
      await limiter.consume(key, opts({ limit: 5, windowSeconds: 0.2 }));
      assert.equal((await raw.keys(`${prefix}rate_limit:{${key}}*`)).length, 1);
      // the counter keeps its state until its window's requests left the next one too
      await sleep(algorithm === 'sliding-window-counter' ? 450 : 300);
      assert.deepEqual(await raw.keys(`${prefix}rate_limit:{${key}}*`), []);
    });
  });
}

describe('consumeAll: one request against several limits', () => {
  for (const algorithm of algorithms) {
    it(`${algorithm}: a request refused by one limit uses up none of the others`, async () => {
      const tight = { key: fresh(), limit: 1, windowSeconds: 60, algorithm };
      const loose = { key: fresh(), limit: 5, windowSeconds: 60, algorithm };
      const first = await limiter.consumeAll([tight, loose]);
      assert.equal(first.allowed, true);
      assert.deepEqual(
        first.results.map((r) => r.remaining),
        [0, 4],
      );
      const refused = await limiter.consumeAll([tight, loose]);
      assert.equal(refused.allowed, false);
      assert.equal(refused.results[0].allowed, false);
      assert.equal(refused.results[1].remaining, 4, 'the loose limit says it was refunded');
      const { key, ...options } = loose;
      const looseNow = await limiter.status(key, options);
      assert.equal(looseNow.remaining, 4, 'only the allowed request counts under the loose limit');
    });
  }

  it('200 concurrent requests against 10 and 15: exactly 10 allowed, and the looser limit counted exactly those', async () => {
    const perIp = { key: fresh(), limit: 10, windowSeconds: 60 };
    const perUser = { key: fresh(), limit: 15, windowSeconds: 60 };
    const outcomes = await Promise.all(Array.from({ length: 200 }, () => limiter.consumeAll([perIp, perUser])));
    assert.equal(outcomes.filter((o) => o.allowed).length, 10);
    const { key, ...options } = perUser;
    assert.equal((await limiter.status(key, options)).remaining, 5);
  });

  it('every limit allowing: the request counts under each', async () => {
    const a = { key: fresh(), limit: 3, windowSeconds: 60, algorithm: 'fixed-window' as const };
    const b = { key: fresh(), limit: 3, windowSeconds: 60, algorithm: 'token-bucket' as const, cost: 2 };
    const r = await limiter.consumeAll([a, b]);
    assert.equal(r.allowed, true);
    assert.deepEqual(
      r.results.map((x) => [x.allowed, x.remaining]),
      [
        [true, 2],
        [true, 1],
      ],
    );
  });

  it('bad input is ERR_INVALID_ARGUMENT and counts nothing', async () => {
    const ok = { key: fresh(), limit: 1, windowSeconds: 60 };
    for (const bad of [
      any(undefined),
      any('limits'),
      [],
      [any(null)],
      [{ ...ok, key: '' }],
      [{ ...ok, limit: 0 }],
      [ok, { ...ok, nope: 1 }],
    ]) {
      await assert.rejects(limiter.consumeAll(bad), { code: 'ERR_INVALID_ARGUMENT' });
    }
    const { key, ...options } = ok;
    assert.equal((await limiter.status(key, options)).remaining, 1);
  });
});

describe('limiter: one limit with its options read once', () => {
  it('counts under the same key as consume(key, options) and answers alike', async () => {
    const key = fresh();
    const options: RateLimitOptions = { limit: 3, windowSeconds: 60 };
    const perKey = limitOf(options);
    const first = await perKey.consume(key);
    const second = await limiter.consume(key, options);
    assert.deepEqual([first.allowed, first.remaining, first.limit], [true, 2, 3]);
    assert.deepEqual([second.allowed, second.remaining], [true, 1]);
    assert.equal((await perKey.consume(key)).allowed, true);
    const refused = await perKey.consume(key);
    assert.equal(refused.allowed, false);
    assert.ok(refused.retryAfterMs > 0);
    const [mine, theirs] = [await perKey.status(key), await limiter.status(key, options)];
    assert.deepEqual([mine.allowed, mine.remaining, mine.limit], [theirs.allowed, theirs.remaining, theirs.limit]);
  });

  for (const algorithm of algorithms) {
    it(`${algorithm}: 200 concurrent consumes against a limit of 50 allow exactly 50`, async () => {
      const perKey = limitOf({ limit: 50, windowSeconds: 60, algorithm });
      const key = fresh();
      const outcomes = await Promise.all(Array.from({ length: 200 }, () => perKey.consume(key)));
      assert.equal(outcomes.filter((o) => o.allowed).length, 50);
    });
  }

  it('reads its options once: changing the object afterwards changes nothing', async () => {
    const options = { limit: 1, windowSeconds: 60 };
    const perKey = limitOf(options);
    options.limit = 100;
    const key = fresh();
    assert.equal((await perKey.consume(key)).allowed, true);
    assert.equal((await perKey.consume(key)).allowed, false);
  });

  it('bad options throw ERR_INVALID_ARGUMENT when it is made; a bad key rejects with it', async () => {
    for (const bad of [
      undefined,
      {},
      { limit: 0, windowSeconds: 1 },
      { limit: 1 },
      { limit: 1, windowSeconds: 1, algorithm: 'x' },
      { limit: 1, windowSeconds: 1, extra: 1 },
    ]) {
      assert.throws(() => limitOf(any(bad)), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(bad));
    }
    const perKey = limitOf({ limit: 1, windowSeconds: 60 });
    for (const key of [any(''), any(undefined), any(5)]) {
      await assert.rejects(perKey.consume(key), { code: 'ERR_INVALID_ARGUMENT' });
    }
  });
});

describe('window boundaries', () => {
  it('sliding window counter (the default): half a window after a full one, about half the limit is back', async () => {
    const key = fresh();
    const o = { limit: 10, windowSeconds: 1 };
    // start right after a window boundary (windows are aligned to the server clock)
    while (Date.now() % 1000 > 100) await sleep(5);
    const window = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 10; i++) assert.equal((await limiter.consume(key, o)).allowed, true);
    assert.equal((await limiter.consume(key, o)).allowed, false);
    // the middle of the next window: the previous one still weighs about half
    while (Math.floor(Date.now() / 1000) === window || Date.now() % 1000 < 500) await sleep(5);
    let allowed = 0;
    for (let i = 0; i < 10; i++) if ((await limiter.consume(key, o)).allowed) allowed++;
    assert.ok(allowed >= 4 && allowed <= 6, `allowed ${allowed}`);
  });

  it('sliding window counter: state is one small counter per window, at most two live per key, whatever the limit', async () => {
    const key = fresh();
    const o = { limit: 100_000, windowSeconds: 3600 };
    await Promise.all(Array.from({ length: 3000 }, () => limiter.consume(key, o)));
    const slot = Math.floor(Date.now() / 3_600_000) % 3; // windows are aligned to the clock
    const base = `${prefix}rate_limit:{${key}}:counter`;
    assert.equal(await raw.get(`${base}:${slot}`), '3000');
    assert.deepEqual((await raw.keys(`${base}*`)).sort(), [`${base}:${slot}`]);
    const bytes = (await raw.command('MEMORY', ['USAGE', `${base}:${slot}`])) as number;
    assert.ok(bytes < 240, `${bytes} bytes`); // a cluster node adds its slot bookkeeping to every key
    // it is needed while the next window weighs it, then goes
    const ttl = (await raw.command('PTTL', [`${base}:${slot}`])) as number;
    assert.ok(ttl > 3_600_000 && ttl <= 7_200_000, `expires in ${ttl} ms`);
  });

  it('sliding window counter: a window\u2019s count is gone once the window after it ends', async () => {
    const key = fresh();
    const o = { limit: 3, windowSeconds: 0.2 };
    for (let i = 0; i < 3; i++) assert.equal((await limiter.consume(key, o)).allowed, true);
    await sleep(420); // two windows later: nothing of the first weighs any more
    for (let i = 0; i < 3; i++) assert.equal((await limiter.consume(key, o)).allowed, true);
    assert.ok((await raw.keys(`${prefix}rate_limit:{${key}}:counter*`)).length <= 2);
  });

  it('fixed window: the full limit is back right after the window ends', async () => {
    const key = fresh();
    const o: RateLimitOptions = { limit: 5, windowSeconds: 0.3, algorithm: 'fixed-window' };
    for (let i = 0; i < 5; i++) assert.equal((await limiter.consume(key, o)).allowed, true);
    assert.equal((await limiter.consume(key, o)).allowed, false);
    await sleep(350);
    for (let i = 0; i < 5; i++) assert.equal((await limiter.consume(key, o)).allowed, true);
  });

  it('sliding window: no double burst across a boundary', async () => {
    const key = fresh();
    const o: RateLimitOptions = { limit: 10, windowSeconds: 0.4, algorithm: 'sliding-window' };
    // 5 early in the window, 5 late in it
    for (let i = 0; i < 5; i++) await limiter.consume(key, o);
    await sleep(250);
    for (let i = 0; i < 5; i++) await limiter.consume(key, o);
    await sleep(200); // the first 5 have left the window, the last 5 have not
    const burst = await Promise.all(Array.from({ length: 10 }, () => limiter.consume(key, o)));
    assert.equal(burst.filter((r) => r.allowed).length, 5);
  });

  it('sliding window: the log never holds more than limit entries', async () => {
    const key = fresh();
    await Promise.all(
      Array.from({ length: 300 }, () => limiter.consume(key, { limit: 20, windowSeconds: 60, algorithm: 'sliding-window' })),
    );
    assert.equal(await raw.command('ZCARD', [`${prefix}rate_limit:{${key}}:sliding`]), 20);
  });

  it('token bucket: refills at limit per window', async () => {
    const key = fresh();
    const o: RateLimitOptions = { limit: 10, windowSeconds: 1, algorithm: 'token-bucket' }; // 1 token / 100 ms
    const burst = await Promise.all(Array.from({ length: 15 }, () => limiter.consume(key, o)));
    assert.equal(burst.filter((r) => r.allowed).length, 10);
    await sleep(320);
    const after = await Promise.all(Array.from({ length: 10 }, () => limiter.consume(key, o)));
    const allowed = after.filter((r) => r.allowed).length;
    assert.ok(allowed >= 3 && allowed <= 4, `refilled ${allowed} tokens in ~320 ms`);
  });
});

describe('Redis outage', onlyStandalone('stops and restarts a server of its own'), () => {
  it('fail-closed refuses and fail-open allows while Redis is down, both say so, both recover', async () => {
    const server = await startRedis();
    const c = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 300,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    const closed = new RateLimitService(c);
    const open = new RateLimitService(c, { onRedisError: 'fail-open' });
    const o: RateLimitOptions = { limit: 10, windowSeconds: 60 };
    assert.equal((await closed.consume('k', o)).allowed, true);

    await server.stop();
    const refused = await closed.consume('k', o);
    assert.equal(refused.allowed, false);
    assert.equal(refused.redisError?.policy, 'fail-closed');
    assert.equal(refused.redisError?.code, 'ERR_REDIS_CONNECTION');
    const allowed = await open.consume('k', o);
    assert.equal(allowed.allowed, true);
    assert.equal(allowed.redisError?.policy, 'fail-open');
    assert.equal((await closed.consume('k', { ...o, onRedisError: 'fail-open' })).allowed, true);
    assert.equal(await closed.checkRateLimit('k', 10, 60), false);

    await server.start();
    let recovered = false;
    for (let i = 0; i < 100 && !recovered; i++) {
      const r = await closed.consume('k2', o);
      recovered = r.allowed && !r.redisError;
      if (!recovered) await sleep(30);
    }
    assert.ok(recovered, 'allowed again without redisError once Redis is back');
    await c.close();
    await server.stop();
  });
});

describe('RateLimitService bad input', () => {
  it('bad limits, windows, costs and keys are ERR_INVALID_ARGUMENT', async () => {
    const bad: any[] = [
      { limit: 0, windowSeconds: 1 },
      { limit: -5, windowSeconds: 1 },
      { limit: NaN, windowSeconds: 1 },
      { limit: 1.5, windowSeconds: 1 },
      { limit: 10, windowSeconds: 0 },
      { limit: 10, windowSeconds: -1 },
      { limit: 10, windowSeconds: Infinity },
      { limit: 10, windowSeconds: 1, cost: 1.5 },
      { limit: 10, windowSeconds: 1, cost: 0 },
      { limit: 10, windowSeconds: 1, cost: 11 },
      { limit: 10, windowSeconds: 1, algorithm: 'leaky' },
      { limit: 10, windowSeconds: 1, onRedisError: 'ignore' },
      { limit: 10, windowSeconds: 1, limitt: 3 },
      { windowSeconds: 1 },
      {},
      undefined,
    ];
    for (const o of bad) {
      await assert.rejects(limiter.consume('k', o), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(o));
      await assert.rejects(limiter.status('k', o), { code: 'ERR_INVALID_ARGUMENT' }, JSON.stringify(o));
    }
    for (const key of [any(''), any(undefined), any(1)]) {
      await assert.rejects(limiter.consume(key, { limit: 1, windowSeconds: 1 }), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(limiter.reset(key), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(limiter.checkRateLimit(key, 1, 1), { code: 'ERR_INVALID_ARGUMENT' });
    }
    await assert.rejects(limiter.checkRateLimit('k', 0, 1), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(limiter.checkRateLimit('k', 1, 0), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new RateLimitService(client, any({ onRedisError: 'maybe' })), { code: 'ERR_INVALID_ARGUMENT' });
  });
});
