import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
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
import { sleep, startRedis, type PrivateRedis } from './support/redis-server';

/**
 * Redis killed (SIGKILL) and restarted empty under 100 calls in flight, for every service:
 * every promise settles, every failure carries a connection/timeout code, and traffic
 * recovers by itself (scripts included: the restarted server has none cached).
 */

const COMMAND_TIMEOUT_MS = 500;
const FAULT_CODES = new Set(['ERR_REDIS_CONNECTION', 'ERR_REDIS_TIMEOUT']);

interface Tally {
  attempted: number;
  succeeded: number;
  failedWithCode: number;
  failedOtherwise: string[];
  unsettled: number;
}

type Op = (i: number) => Promise<unknown>;

async function underFault(server: PrivateRedis, op: Op, opts: { inFlight?: number; ms?: number } = {}): Promise<Tally> {
  const tally: Tally = { attempted: 0, succeeded: 0, failedWithCode: 0, failedOtherwise: [], unsettled: 0 };
  const inFlight = opts.inFlight ?? 100;
  const ms = opts.ms ?? 1500;
  let running = true;
  let i = 0;
  const worker = async () => {
    while (running) {
      tally.attempted++;
      tally.unsettled++;
      try {
        await op(i++);
        tally.succeeded++;
      } catch (e: any) {
        if (FAULT_CODES.has(e?.code)) tally.failedWithCode++;
        else tally.failedOtherwise.push(`${e?.code}: ${e?.message}`);
        // a failing call returns at once; do not spin while Redis is down
        await sleep(5);
      } finally {
        tally.unsettled--;
      }
    }
  };
  const workers = Array.from({ length: inFlight }, worker);
  await sleep(ms / 4);
  await server.kill();
  await sleep(ms / 4);
  await server.start();
  await sleep(ms / 2);
  running = false;
  // every call made must settle within the command timeout
  await Promise.race([Promise.all(workers), sleep(COMMAND_TIMEOUT_MS * 4)]);
  return tally;
}

function check(name: string, t: Tally) {
  const report = `${name}: attempted ${t.attempted}, succeeded ${t.succeeded}, failed with a code ${t.failedWithCode}, other failures ${t.failedOtherwise.length}, never settled ${t.unsettled}`;
  process.stdout.write(`# ${report}\n`);
  assert.equal(t.unsettled, 0, report);
  assert.deepEqual(t.failedOtherwise.slice(0, 3), [], report);
  assert.ok(t.failedWithCode > 0, `the fault was seen: ${report}`);
  assert.ok(t.succeeded > t.failedWithCode, `traffic recovered: ${report}`);
}

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);
process.on('unhandledRejection', onUnhandled);
after(() => {
  process.off('unhandledRejection', onUnhandled);
  assert.deepEqual(unhandled, [], 'no unhandled rejection');
});

describe('Redis killed and restarted empty under 100 calls in flight', () => {
  let server: PrivateRedis;
  let client: RedisClient;

  const setup = async () => {
    server = await startRedis();
    client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    });
  };
  const teardown = async () => {
    await client.close();
    await server.stop();
  };

  it('RedisService get/set', async () => {
    await setup();
    const redis = new RedisService(client);
    check(
      'RedisService',
      await underFault(server, (i) => (i % 2 ? redis.set(`k${i % 500}`, 'v', 30) : redis.get(`k${i % 500}`))),
    );
    await teardown();
  });

  it('TokenService store/validate/rotate', async () => {
    await setup();
    const tokens = new TokenService(client);
    check(
      'TokenService',
      await underFault(server, async (i) => {
        await tokens.storeRefreshToken(`u${i % 50}`, `t${i}`, 30);
        await tokens.isRefreshTokenValid(`u${i % 50}`, `t${i}`);
      }),
    );
    await teardown();
  });

  it('SessionService create/get/touch', async () => {
    await setup();
    const sessions = new SessionService(client, { maxSessionsPerUser: 3 });
    check(
      'SessionService',
      await underFault(server, async (i) => {
        await sessions.createSession(`s${i % 300}`, { userId: `u${i % 30}`, n: i }, 30);
        await sessions.getSession(`s${i % 300}`);
      }),
    );
    // a session from before the restart is reported absent, not broken
    assert.equal(await sessions.getSession('never-created'), null);
    await teardown();
  });

  it('RateLimitService consume decides by policy during the outage, never throws', async () => {
    await setup();
    const limiter = new RateLimitService(client);
    let decidedByPolicy = 0;
    const tally = await underFault(server, async (i) => {
      const r = await limiter.consume(`k${i % 100}`, { limit: 1000, windowSeconds: 10 });
      if (r.redisError) {
        decidedByPolicy++;
        assert.equal(r.allowed, false);
      }
    });
    process.stdout.write(`# RateLimitService: decided by the fail-closed policy ${decidedByPolicy}\n`);
    assert.equal(tally.unsettled, 0);
    assert.deepEqual(tally.failedOtherwise, []);
    assert.equal(tally.failedWithCode, 0, 'consume reports an outage in the result');
    assert.ok(decidedByPolicy > 0);
    await teardown();
  });

  it('IdempotencyService begin/complete', async () => {
    await setup();
    const idem = new IdempotencyService(client);
    check(
      'IdempotencyService',
      await underFault(server, async (i) => {
        const key = `job-${i}`;
        if ((await idem.begin(key)).state === 'started') await idem.complete(key, 'done');
      }),
    );
    await teardown();
  });

  it('CacheService set with indexes / get', async () => {
    await setup();
    const users = new CacheService(client).namespace('users', { defaultTtl: 30 });
    check(
      'CacheService',
      await underFault(server, async (i) => {
        await users.set(`${i % 200}`, { i }, { indexes: { team: `t${i % 5}` } });
        await users.get(`${i % 200}`);
      }),
    );
    await teardown();
  });

  it('LockService acquire/release', async () => {
    await setup();
    const locks = new LockService(client);
    check(
      'LockService',
      await underFault(server, async (i) => {
        const lock = await locks.acquire(`r${i % 50}`, 2000);
        if (lock) await lock.release();
      }),
    );
    await teardown();
  });

  it('PubSubService: publishing keeps going and the subscription is restored', async () => {
    await setup();
    const pubsub = new PubSubService(client);
    const channel = `ch-${randomUUID()}`;
    const received = new Set<string>();
    await pubsub.subscribe(channel, (m) => received.add(m));
    check('PubSubService', await underFault(server, (i) => pubsub.publish(channel, `m${i}`), { inFlight: 20 }));
    received.clear();
    for (let i = 0; i < 100 && received.size === 0; i++) {
      await pubsub.publish(channel, 'after');
      await sleep(20);
    }
    assert.ok(received.has('after'), 'the subscription heard messages after the restart');
    await teardown();
  });
});

describe('nothing is lost', () => {
  it('every write reported successful after the restart reads back', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    });
    const redis = new RedisService(client);
    let restartedAt = Infinity;
    const confirmed: number[] = [];
    let running = true;
    let next = 0;
    const workers = Array.from({ length: 100 }, async () => {
      while (running) {
        const i = next++;
        try {
          await redis.set(`w:${i}`, String(i), 60);
          if (Date.now() > restartedAt) confirmed.push(i);
        } catch {
          await sleep(5);
        }
      }
    });
    await sleep(300);
    await server.kill();
    await sleep(300);
    await server.start();
    restartedAt = Date.now();
    await sleep(700);
    running = false;
    await Promise.all(workers);
    assert.ok(confirmed.length > 1000, `confirmed writes: ${confirmed.length}`);
    const values = await redis.mget(confirmed.map((i) => `w:${i}`));
    const missing = confirmed.filter((i, n) => values[n] !== String(i));
    process.stdout.write(`# writes confirmed after the restart: ${confirmed.length}, missing: ${missing.length}\n`);
    assert.deepEqual(missing, []);
    await client.close();
    await server.stop();
  });
});

describe('other faults', () => {
  it('a paused server: timeouts while paused, then recovery', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 200, pingIntervalMs: 0 });
    const redis = new RedisService(client);
    await redis.set('k', 'v');
    server.pause();
    const started = Date.now();
    const during = await Promise.allSettled(Array.from({ length: 50 }, () => redis.get('k')));
    assert.ok(Date.now() - started < 2000);
    assert.ok(during.every((r) => r.status === 'rejected' && (r.reason as any).code === 'ERR_REDIS_TIMEOUT'));
    server.resume();
    let value: string | null = null;
    for (let i = 0; i < 50 && value !== 'v'; i++) value = await redis.get('k').catch(() => null);
    assert.equal(value, 'v');
    await client.close();
    await server.stop();
  });

  it('close() with commands in flight: every promise settles and the process can exit', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url });
    const redis = new RedisService(client);
    const settled = Promise.allSettled(Array.from({ length: 1000 }, (_, i) => redis.set(`k${i}`, 'v')));
    await client.close();
    const results = await settled;
    assert.ok(
      results.every(
        (r) => r.status === 'fulfilled' || ['ERR_CLIENT_CLOSED', 'ERR_REDIS_CONNECTION'].includes((r.reason as any).code),
      ),
    );
    await server.stop();
  });

  it('connection refused at startup fails fast with host and port, and works once Redis is up', async () => {
    const server = await startRedis();
    await server.stop();
    const started = Date.now();
    await assert.rejects(RedisClient.connect({ url: server.url, connectTimeoutMs: 2000 }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_CONNECTION');
      assert.ok(e.message.includes(`127.0.0.1:${server.port}`));
      return true;
    });
    assert.ok(Date.now() - started < 1000, 'refused is reported at once, not after the timeout');
    await server.start();
    const client = await RedisClient.connect({ url: server.url });
    assert.equal(typeof (await new RedisService(client).ping()), 'number');
    await client.close();
    await server.stop();
  });
});

describe('starting before Redis', () => {
  it('reconnect.atStartup: connect waits for a server that comes up later', async () => {
    const server = await startRedis();
    await server.stop();
    setTimeout(() => void server.start(), 400);
    const started = Date.now();
    const client = await RedisClient.connect({
      url: server.url,
      reconnect: { atStartup: true, minDelayMs: 50, maxDelayMs: 200 },
    });
    assert.ok(Date.now() - started >= 300, 'it waited');
    assert.equal(typeof (await new RedisService(client).ping()), 'number');
    await client.close();
    await server.stop();
  });

  it('reconnect.atStartup gives up after maxAttempts with the last error', async () => {
    const server = await startRedis();
    await server.stop();
    await assert.rejects(
      RedisClient.connect({ url: server.url, reconnect: { atStartup: true, maxAttempts: 3, minDelayMs: 10, maxDelayMs: 20 } }),
      { code: 'ERR_REDIS_CONNECTION' },
    );
  });

  it('a wrong password is not retried', async () => {
    const server = await startRedis({ args: ['--requirepass', 'right-one'] });
    const started = Date.now();
    await assert.rejects(
      RedisClient.connect({ url: `redis://:wrong@127.0.0.1:${server.port}`, reconnect: { atStartup: true } }),
      { code: 'ERR_REDIS_AUTH' },
    );
    assert.ok(Date.now() - started < 1000);
    await server.stop();
  });
});
