import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { RateLimitService, RedisClient, RedisService, isRedisError } from 'nestjs-redis-native';
import { sleep, startRedis, type PrivateRedis } from './support/redis-server';
import { respCommand } from './support/resp';

/**
 * Replies that mean "not now" (BUSY, LOADING, READONLY, ...) are outages, not command
 * errors: calls wait for the server within commandTimeoutMs, or reject with
 * ERR_REDIS_CONNECTION, and the rate limiter's outage policy applies to them.
 * Every test here uses its own redis-server.
 */

/** A Lua script that keeps the server busy for ARGV[1] ms (by the server's clock). */
const SPIN = `
local function now() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local stop = now() + tonumber(ARGV[1])
while now() < stop do end
return 1`;

/** Scripts still running: a failed test must not leave the server busy for the next one. */
const running = new Set<{ close(): Promise<void> }>();

/** Runs SPIN on its own client and resolves once the server answers BUSY to others. */
async function keepBusy(server: PrivateRedis, ms: number): Promise<{ done: Promise<unknown>; close(): Promise<void> }> {
  const blocker = await RedisClient.connect({ url: server.url, commandTimeoutMs: ms + 10_000 });
  const probe = await RedisClient.connect({ url: server.url, commandTimeoutMs: 50 });
  const probeRedis = new RedisService(probe);
  const done = new RedisService(blocker).command('EVAL', [SPIN, '0', String(ms)]);
  done.catch(() => {}); // awaited by close()
  // the server answers BUSY once the script has run for busy-reply-threshold (100 ms)
  for (;;) {
    await sleep(20);
    const e = await probeRedis.get('probe').then(
      () => null,
      (err: unknown) => err,
    );
    if (isRedisError(e) && /BUSY/.test(e.message)) break;
  }
  await probe.close();
  const handle = {
    done,
    async close() {
      running.delete(handle);
      await done.catch(() => {});
      await blocker.close();
    },
  };
  running.add(handle);
  return handle;
}

describe('a server busy running a script (BUSY)', () => {
  let server: PrivateRedis;
  before(async () => {
    server = await startRedis({ args: ['--busy-reply-threshold', '100'] });
  });
  afterEach(async () => {
    for (const busy of [...running]) await busy.close();
  });
  after(async () => {
    await server.stop();
  });

  it('a call made while a script runs waits and succeeds once the script ends', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 5000 });
    const redis = new RedisService(client);
    await redis.set('busy:k', 'v');
    const busy = await keepBusy(server, 800);
    const started = Date.now();
    assert.equal(await redis.get('busy:k'), 'v');
    assert.ok(Date.now() - started > 200, 'it waited for the script');
    await busy.close();
    await client.close();
  });

  it('when the script outlasts commandTimeoutMs, calls reject with ERR_REDIS_CONNECTION naming BUSY', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 300 });
    const redis = new RedisService(client);
    const busy = await keepBusy(server, 1500);
    const started = Date.now();
    const e = await redis.set('busy:x', 'v').then(
      () => assert.fail('set succeeded while the server was busy'),
      (err: unknown) => err,
    );
    assert.ok(isRedisError(e));
    assert.equal(e.code, 'ERR_REDIS_CONNECTION');
    assert.match(e.message, /BUSY/);
    assert.match(e.message, /commandTimeoutMs/);
    assert.ok(Date.now() - started < 1000, 'it gave up at the command timeout');
    await busy.close();
    assert.equal(await redis.get('busy:x'), null, 'the refused command did not run later');
    await client.close();
  });

  it('100 concurrent calls during a script all settle: served after it, or ERR_REDIS_CONNECTION', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 700 });
    const redis = new RedisService(client);
    const busy = await keepBusy(server, 1000);
    const outcomes = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => redis.incr(`busy:n:${i % 10}`)));
    const codes = new Set(outcomes.map((o) => (o.status === 'fulfilled' ? 'ok' : (o.reason as { code?: string }).code)));
    assert.deepEqual(
      [...codes].filter((c) => c !== 'ok' && c !== 'ERR_REDIS_CONNECTION'),
      [],
    );
    await busy.close();
    // afterwards the connection serves as before
    assert.equal(await redis.incr('busy:after'), 1);
    await client.close();
  });

  it('consume applies its outage policy to BUSY and says why', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 200 });
    const closed = new RateLimitService(client);
    const open = new RateLimitService(client, { onRedisError: 'fail-open' });
    const busy = await keepBusy(server, 1200);
    const options = { limit: 5, windowSeconds: 60 };
    const refused = await closed.consume('busy:rl', options);
    assert.equal(refused.allowed, false);
    assert.equal(refused.redisError?.code, 'ERR_REDIS_CONNECTION');
    assert.equal(refused.redisError?.policy, 'fail-closed');
    assert.match(refused.redisError?.message ?? '', /BUSY/);
    const allowed = await open.consume('busy:rl', options);
    assert.equal(allowed.allowed, true);
    assert.equal(allowed.redisError?.policy, 'fail-open');
    await busy.close();
    const normal = await closed.consume('busy:rl', options);
    assert.equal(normal.allowed, true);
    assert.equal(normal.redisError, undefined);
    await client.close();
  });

  it('a pipeline refused as a whole is sent again once the script ends', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 5000 });
    const redis = new RedisService(client);
    const busy = await keepBusy(server, 600);
    const replies = await redis.pipeline([
      ['SET', 'busy:p', '1'],
      ['INCR', 'busy:p'],
    ]);
    assert.deepEqual(replies, ['OK', 2]);
    await busy.close();
    await client.close();
  });
});

describe('a server loading its dataset (LOADING)', () => {
  let server: PrivateRedis;
  before(async () => {
    server = await startRedis({ args: ['--enable-debug-command', 'yes'] });
    const admin = await RedisClient.connect({ url: server.url, commandTimeoutMs: 60_000 });
    const redis = new RedisService(admin);
    // a dataset large enough to take a second or more to load
    await redis.command('DEBUG', ['POPULATE', '700000', 'big', '200']);
    await redis.set('loading:k', 'v');
    await redis.command('SAVE');
    await admin.close();
  });
  after(async () => {
    await server.stop();
  });

  it('a live connection waits through DEBUG RELOAD (LOADING) and is served afterwards', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 20_000 });
    const redis = new RedisService(client);
    const admin = await RedisClient.connect({ url: server.url, commandTimeoutMs: 60_000 });
    const reload = new RedisService(admin).command('DEBUG', ['RELOAD']);
    // wait until the server is loading: a plain connection (no retries) is answered
    // LOADING then; one sent while it still saves is answered once it loads
    let sawLoading = false;
    for (let i = 0; i < 100 && !sawLoading; i++) {
      const reply = await respCommand(server.port, ['GET', 'loading:k'], 10_000).catch((e: Error) => e);
      sawLoading = reply instanceof Error && /LOADING/.test(reply.message);
      if (!sawLoading) await sleep(10);
    }
    assert.ok(sawLoading, 'the server answered LOADING');
    const value = await redis.get('loading:k');
    assert.equal(value, 'v');
    await reload;
    await admin.close();
    await client.close();
  });

  it('after a restart on a large dataset, calls fail with ERR_REDIS_CONNECTION while it loads, then work with no action', async () => {
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 500,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    const redis = new RedisService(client);
    assert.equal(await redis.get('loading:k'), 'v');
    await server.kill(); // keeps dump.rdb: the restarted server loads it
    await server.start();
    const codes = new Map<string, number>();
    let served = false;
    const deadline = Date.now() + 30_000;
    while (!served && Date.now() < deadline) {
      try {
        served = (await redis.get('loading:k')) === 'v';
      } catch (e) {
        const code = isRedisError(e) ? e.code : String(e);
        codes.set(code, (codes.get(code) ?? 0) + 1);
        await sleep(20);
      }
    }
    assert.ok(served, 'served again after loading');
    assert.deepEqual(
      [...codes.keys()].filter((c) => c !== 'ERR_REDIS_CONNECTION'),
      [],
    );
    assert.ok((codes.get('ERR_REDIS_CONNECTION') ?? 0) > 0, 'the restart was seen');
    await client.close();
  });

  it('connect with reconnect.atStartup waits for a server still loading', async () => {
    await server.kill();
    await server.start();
    const client = await RedisClient.connect({
      url: server.url,
      connectTimeoutMs: 1000,
      reconnect: { atStartup: true, minDelayMs: 20, maxDelayMs: 200 },
    });
    assert.equal(await new RedisService(client).get('loading:k'), 'v');
    await client.close();
  });

  it('consume applies its outage policy to LOADING and says why', async () => {
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 200 });
    const closed = new RateLimitService(client);
    const open = new RateLimitService(client, { onRedisError: 'fail-open' });
    const options = { limit: 5, windowSeconds: 60 };
    assert.equal((await closed.consume('loading:rl', options)).redisError, undefined, 'counted before the reload');
    const admin = await RedisClient.connect({ url: server.url, commandTimeoutMs: 60_000 });
    const reload = new RedisService(admin).command('DEBUG', ['RELOAD']);
    let sawLoading = false;
    for (let i = 0; i < 100 && !sawLoading; i++) {
      const reply = await respCommand(server.port, ['GET', 'loading:k'], 10_000).catch((e: Error) => e);
      sawLoading = reply instanceof Error && /LOADING/.test(reply.message);
      if (!sawLoading) await sleep(10);
    }
    assert.ok(sawLoading, 'the server answered LOADING');
    // both at once, while it loads (a second or more; each gives up after 200 ms)
    const [refused, allowed] = await Promise.all([closed.consume('loading:rl', options), open.consume('loading:rl', options)]);
    assert.equal(refused.allowed, false);
    assert.equal(refused.redisError?.code, 'ERR_REDIS_CONNECTION');
    assert.equal(refused.redisError?.policy, 'fail-closed');
    assert.match(refused.redisError?.message ?? '', /LOADING/);
    assert.equal(allowed.allowed, true);
    assert.equal(allowed.redisError?.code, 'ERR_REDIS_CONNECTION');
    assert.equal(allowed.redisError?.policy, 'fail-open');
    assert.match(allowed.redisError?.message ?? '', /LOADING/);
    await reload;
    // loaded: decided by Redis again, and the calls the policy decided were not counted
    const normal = await closed.consume('loading:rl', options);
    assert.equal(normal.allowed, true);
    assert.equal(normal.redisError, undefined);
    assert.equal(normal.remaining, options.limit - 2);
    await admin.close();
    await client.close();
  });
});

describe('a server that becomes a replica (READONLY)', () => {
  let master: PrivateRedis;
  let server: PrivateRedis;
  let admin: RedisClient;
  before(async () => {
    master = await startRedis({ args: ['--repl-diskless-sync-delay', '0'] });
    server = await startRedis();
    admin = await RedisClient.connect({ url: server.url });
  });
  after(async () => {
    await admin.close();
    await server.stop();
    await master.stop();
  });

  async function waitUntilReplicaSynced() {
    const redis = new RedisService(admin);
    for (let i = 0; i < 500; i++) {
      const info = String(await redis.command('INFO', ['replication']));
      if (/master_link_status:up/.test(info)) return;
      await sleep(10);
    }
    assert.fail('the replica did not sync');
  }

  it('writes reject with ERR_REDIS_CONNECTION while it is a replica, reads still work, and writes work again once it is a master', async () => {
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 400,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    const redis = new RedisService(client);
    const masterClient = await RedisClient.connect({ url: master.url });
    await new RedisService(masterClient).set('ro:k', 'from-master');
    await masterClient.close();
    await new RedisService(admin).command('REPLICAOF', ['127.0.0.1', String(master.port)]);
    await waitUntilReplicaSynced();

    const e = await redis.set('ro:w', 'x').then(
      () => assert.fail('a write succeeded on a replica'),
      (err: unknown) => err,
    );
    assert.ok(isRedisError(e));
    assert.equal(e.code, 'ERR_REDIS_CONNECTION');
    assert.match(e.message, /READONLY/);
    assert.equal(await redis.get('ro:k'), 'from-master', 'reads are served by the replica');

    await new RedisService(admin).command('REPLICAOF', ['NO', 'ONE']);
    let wrote = false;
    for (let i = 0; i < 100 && !wrote; i++) {
      wrote = await redis.set('ro:w', 'x').then(
        () => true,
        () => false,
      );
      if (!wrote) await sleep(20);
    }
    assert.ok(wrote, 'writes work again with no action from the app');
    assert.equal(await redis.get('ro:w'), 'x');
    await client.close();
  });

  it('a write issued while it is a replica succeeds when it becomes a master within commandTimeoutMs', async () => {
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 5000,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    const redis = new RedisService(client);
    await new RedisService(admin).command('REPLICAOF', ['127.0.0.1', String(master.port)]);
    await waitUntilReplicaSynced();
    const write = redis.set('ro:later', 'y');
    await sleep(300);
    await new RedisService(admin).command('REPLICAOF', ['NO', 'ONE']);
    await write;
    assert.equal(await redis.get('ro:later'), 'y');
    await client.close();
  });

  it('reads in flight while the client replaces its connection to a replica get their replies', async () => {
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 600,
      reconnect: { minDelayMs: 10, maxDelayMs: 40 },
    });
    const redis = new RedisService(client);
    await new RedisService(admin).command('REPLICAOF', ['127.0.0.1', String(master.port)]);
    await waitUntilReplicaSynced();
    const reconnectsBefore = client.metrics().reconnects;
    // each READONLY answer makes the client open a new connection and switch to it
    const write = redis.set('ro:w2', 'x').then(
      () => 'written',
      (e: unknown) => (isRedisError(e) ? e.code : 'other'),
    );
    let reads = 0;
    const failures: string[] = [];
    const until = Date.now() + 500;
    while (Date.now() < until) {
      const batch = Array.from({ length: 50 }, () =>
        redis.get('ro:k').then(
          () => reads++,
          (e: unknown) => failures.push(e instanceof Error ? e.message : String(e)),
        ),
      );
      await Promise.all(batch);
    }
    assert.equal(await write, 'ERR_REDIS_CONNECTION', 'the write is refused: the server stayed a replica');
    assert.ok(client.metrics().reconnects > reconnectsBefore, 'the connection was replaced');
    assert.deepEqual(failures, [], `${reads} reads answered`);
    await new RedisService(admin).command('REPLICAOF', ['NO', 'ONE']);
    await client.close();
  });
});
