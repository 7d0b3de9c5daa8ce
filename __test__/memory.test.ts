// memory://: the in-process backend. What is particular to it: a keyspace per connect,
// memory://NAME shared and freed, its refusal of what it does not support, its health,
// scripts and their atomicity, pub/sub within the process, expiry (lazy and active, with
// the memory given back), and SCAN's guarantee while keys come and go. Needs no server.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { LockService, PubSubService, RateLimitService, RedisClient, RedisService } from 'nestjs-redis-native';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually(check: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail('not within time');
    await sleep(10);
  }
}

async function open(url = 'memory://', extra: Record<string, unknown> = {}) {
  const client = await RedisClient.connect({ url, ...extra });
  return { client, redis: new RedisService(client) };
}

describe('memory:// keyspaces', () => {
  it('each connect gets an empty keyspace of its own', async () => {
    const a = await open();
    const b = await open();
    await a.redis.set('k', 'a');
    assert.equal(await a.redis.get('k'), 'a');
    assert.equal(await b.redis.get('k'), null);
    assert.equal(await b.redis.command('DBSIZE'), 0);
    await a.client.close();
    await b.client.close();
  });

  it('memory://NAME is shared by the clients that name it, and freed when the last one closes', async () => {
    const name = `memory://shared-${randomUUID()}`;
    const a = await open(name);
    const b = await open(name, { keyPrefix: 'app:' });
    await b.redis.set('k', 'v');
    assert.equal(await a.redis.get('app:k'), 'v', 'the prefix applies above the backend');
    await a.client.close();
    assert.equal(await b.redis.get('k'), 'v', 'still in use by b');
    const c = await open(name);
    assert.equal(await c.redis.get('app:k'), 'v');
    await b.client.close();
    await c.client.close();
    const d = await open(name);
    assert.equal(await d.redis.command('DBSIZE'), 0, 'a new keyspace after the last client closed');
    await d.client.close();
  });

  it('REDIS_URL=memory:// selects it when connect gets no server', async () => {
    const before = process.env.REDIS_URL;
    process.env.REDIS_URL = 'memory://';
    try {
      const client = await RedisClient.connect({ keyPrefix: 'x:' });
      const health = (await client.health()) as any;
      assert.equal(health.topology, 'memory');
      await client.close();
    } finally {
      if (before === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = before;
    }
  });

  it('options that name a server are refused with memory://', async () => {
    for (const extra of [
      { host: 'h' },
      { port: 6380 },
      { password: 'p' },
      { tls: true },
      { cluster: { nodes: ['redis://a:1'] } },
    ]) {
      await assert.rejects(RedisClient.connect({ url: 'memory://', ...(extra as any) }), (e: any) => {
        assert.equal(e.code, 'ERR_INVALID_ARGUMENT');
        assert.match(e.message, /memory:\/\//);
        return true;
      });
    }
  });

  it('after close(), calls reject with ERR_CLIENT_CLOSED', async () => {
    const { client, redis } = await open();
    await client.close();
    await assert.rejects(redis.get('k'), { code: 'ERR_CLIENT_CLOSED' });
    await assert.rejects(redis.pipeline([['PING']]), { code: 'ERR_CLIENT_CLOSED' });
    assert.equal(client.isClosed, true);
  });
});

describe('memory:// commands and errors', () => {
  it('an unsupported command is ERR_REDIS_COMMAND naming it and memory://', async () => {
    const { client, redis } = await open();
    await assert.rejects(redis.command('XADD', ['st', '*', 'f', 'v']), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /unknown command 'XADD': memory:\/\/ does not support it/);
      return true;
    });
    const [reply] = await redis.pipeline([['XLEN', 'st']]);
    assert.match(String((reply as any)?.message ?? reply), /memory:\/\/ does not support it/);
    await client.close();
  });

  it('server errors keep their Redis text and map to the same codes', async () => {
    const { client, redis } = await open();
    await redis.command('HSET', ['h', 'f', '1']);
    await assert.rejects(redis.get('h'), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /WRONGTYPE Operation against a key holding the wrong kind of value/);
      return true;
    });
    await redis.set('s', 'text');
    await assert.rejects(redis.command('INCR', ['s']), /ERR value is not an integer or out of range/);
    await assert.rejects(redis.command('GET', []), /ERR wrong number of arguments for 'get' command/);
    await assert.rejects(redis.command('EVAL', ["return redis.call('GET', KEYS[1])", 1, 'h']), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /WRONGTYPE/);
      return true;
    });
    await client.close();
  });

  it('health() says up on topology memory; metrics() counts', async () => {
    const { client, redis } = await open();
    await redis.set('a', '1');
    const health = (await client.health()) as any;
    assert.equal(health.status, 'up');
    assert.equal(health.topology, 'memory');
    assert.equal(typeof health.latencyMs, 'number');
    assert.equal(typeof health.usedMemoryBytes, 'number');
    const m = client.metrics();
    assert.ok(m.commands >= 1);
    assert.equal(m.inFlight, 0);
    await client.close();
  });

  it('services run on it unchanged (a lock, a rate limit)', async () => {
    const { client } = await open();
    const locks = new LockService(client);
    const lock = await locks.acquire('job', 5000);
    assert.ok(lock);
    assert.equal(await locks.acquire('job', 5000), null);
    await lock!.release();
    const limits = new RateLimitService(client);
    const results = [];
    for (let i = 0; i < 4; i++) results.push((await limits.consume('ip', { limit: 3, windowSeconds: 60 })).allowed);
    assert.deepEqual(results, [true, true, true, false]);
    await client.close();
  });
});

describe('memory:// scripts', () => {
  it('a script sees KEYS/ARGV and converts replies as Redis does', async () => {
    const { client, redis } = await open();
    assert.equal(await redis.command('EVAL', ["return redis.call('SET', KEYS[1], ARGV[1])", 1, 'ev', 'val']), 'OK');
    assert.equal(await redis.get('ev'), 'val');
    assert.deepEqual(await redis.command('EVAL', ["return {1, {'two', {3}}, {}}", 0]), [1, ['two', [3]], []]);
    assert.equal(await redis.command('EVAL', ['return false', 0]), null);
    assert.equal(await redis.command('EVAL', ['return 3.9', 0]), 3);
    await client.close();
  });

  it('200 concurrent INCR-by-script calls count exactly', async () => {
    const { client, redis } = await open();
    const script = "local v = redis.call('INCR', KEYS[1]); redis.call('PEXPIRE', KEYS[1], 60000); return v";
    const replies = await Promise.all(Array.from({ length: 200 }, () => redis.command('EVAL', [script, 1, 'n'])));
    assert.deepEqual(
      [...(replies as number[])].sort((a, b) => a - b),
      Array.from({ length: 200 }, (_, i) => i + 1),
    );
    assert.equal(await redis.get('n'), '200');
    await client.close();
  });
});

describe('memory:// pub/sub', () => {
  it('messages published by any client of the keyspace arrive in order', async () => {
    const name = `memory://ps-${randomUUID()}`;
    const a = await open(name);
    const b = await open(name);
    const subs = new PubSubService(a.client);
    const pubs = new PubSubService(b.client);
    const got: string[] = [];
    const patterned: string[] = [];
    const s1 = await subs.subscribe('news', (m) => got.push(m));
    const s2 = await subs.psubscribe('n*', (m, ch) => patterned.push(`${ch}:${m}`));
    for (let i = 0; i < 100; i++) assert.equal(await pubs.publish('news', `m${i}`), 2);
    await eventually(() => got.length === 100 && patterned.length === 100);
    assert.deepEqual(
      got,
      Array.from({ length: 100 }, (_, i) => `m${i}`),
    );
    assert.equal(patterned[0], 'news:m0');
    await s1.unsubscribe();
    await s2.unsubscribe();
    assert.equal(await pubs.publish('news', 'late'), 0);
    const other = await open();
    assert.equal(await new PubSubService(other.client).publish('news', 'elsewhere'), 0, 'another keyspace');
    await other.client.close();
    await a.client.close();
    await b.client.close();
  });
});

// (before the expiry tests: it measures from a heap that no earlier test left pages in)
describe('memory:// close', () => {
  it('close() drops the keyspace and the process gives the memory back', async () => {
    const { client, redis } = await open();
    const rss = () => process.memoryUsage.rss();
    global.gc?.();
    const before = rss();
    const fill = "for i = ARGV[1], ARGV[1] + 49999 do redis.call('SET', 'key:' .. i, ARGV[2]) end return 1";
    for (let start = 0; start < 500_000; start += 50_000) await redis.command('EVAL', [fill, 0, start, 'v'.repeat(100)]);
    const grew = rss() - before;
    assert.ok(grew > 50 * 1024 * 1024, `500k keys should take >50 MiB, took ${grew >> 20} MiB`);
    await client.close();
    let after = rss();
    await eventually(() => {
      after = rss();
      return after - before < grew / 2;
    }, 10_000).catch(() => {});
    assert.ok(
      after - before < grew / 2,
      `RSS before ${before >> 20} MiB, grew ${grew >> 20} MiB, after close ${after >> 20} MiB`,
    );
  });
});

describe('memory:// expiry', () => {
  it('an expired key is gone on access (lazy) and freed without access (active)', async () => {
    const { client, redis } = await open();
    await redis.set('short', 'v', 0.05);
    const pttl = (await redis.command('PTTL', ['short'])) as number;
    assert.ok(pttl > 0 && pttl <= 50, String(pttl));
    await sleep(80);
    assert.equal(await redis.get('short'), null);
    const entries = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`t:${i}`, 'x']));
    await redis.mset(entries, 0.05);
    await redis.set('forever', 'x');
    assert.equal(await redis.command('DBSIZE'), 1001);
    // DBSIZE counts keys whose memory is still held: only the active sweep lowers it
    await eventually(async () => (await redis.command('DBSIZE')) === 1, 3000);
    await client.close();
  });

  it('after 1M keys with a 1 s TTL expire, the process gives the memory back', async () => {
    const { client, redis } = await open();
    const rss = () => process.memoryUsage.rss();
    global.gc?.();
    const before = rss();
    // written by a script, 50 000 keys a call, so the million is there before the first expires
    const fill = "for i = ARGV[1], ARGV[1] + 49999 do redis.call('SET', 'key:' .. i, ARGV[2], 'PX', 1000) end return 1";
    const value = 'v'.repeat(100);
    const started = Date.now();
    for (let start = 0; start < 1_000_000; start += 50_000) await redis.command('EVAL', [fill, 0, start, value]);
    const filled = Date.now() - started;
    const held = (await redis.command('DBSIZE')) as number;
    assert.ok(held === 1_000_000 || filled > 900, `${held} keys after ${filled} ms`);
    const peak = rss();
    const grew = peak - before;
    // (on a loaded machine the fill may take longer than the TTL: the first keys are freed before the last are written)
    assert.ok(grew > 50 * 1024 * 1024, `1M keys of 100 bytes should take >50 MiB at their peak, took ${grew >> 20} MiB`);
    await eventually(async () => (await redis.command('DBSIZE')) === 0, 20_000);
    // the allocator returns freed pages after a short delay
    let after = rss();
    await eventually(() => {
      after = rss();
      return after - before < grew / 2;
    }, 10_000).catch(() => {});
    assert.ok(
      after - before < grew / 2,
      `RSS before ${before >> 20} MiB, full ${peak >> 20} MiB, after expiry ${after >> 20} MiB`,
    );
    await client.close();
  });
});

describe('memory:// SCAN', () => {
  it('every key present for the whole scan is returned, while keys are added and removed', async () => {
    const { client, redis } = await open();
    const stable = Array.from({ length: 2000 }, (_, i) => `stable:${i}`);
    await redis.mset(Object.fromEntries(stable.map((k) => [k, '1'])));
    await redis.mset(Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`churn:${i}`, '1'])));
    const seen = new Set<string>();
    let cursor = '0';
    let round = 0;
    do {
      const [next, keys] = (await redis.command('SCAN', [cursor, 'MATCH', 'stable:*', 'COUNT', 37])) as [string, string[]];
      for (const k of keys) seen.add(k);
      await redis.command('DEL', [`churn:${round}`]);
      await redis.set(`churn:new:${round}`, '1');
      await redis.set(`stable:x${round}`, '1');
      round++;
      cursor = next;
    } while (cursor !== '0');
    for (const k of stable) assert.ok(seen.has(k), k);
    for (const k of seen) assert.match(k, /^stable:/);
    assert.deepEqual((await redis.keys('stable:1*', 5000)).length > 100, true);
    await client.close();
  });
});
