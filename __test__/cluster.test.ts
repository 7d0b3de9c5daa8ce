// A Redis Cluster of its own (3 masters, 3 replicas on loopback): what only a cluster
// shows — keys in several slots, commands Redis refuses across slots, every master
// walked, per-node health — and a master killed under load. The service suites run on
// a cluster too (npm run test:cluster).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
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
  isRedisError,
} from 'nestjs-redis-native';
import { keySlot, startCluster, type LocalCluster } from './support/cluster';
import { settled, sleep, uniquePrefix } from './support/redis-server';

let cluster: LocalCluster;
let client: RedisClient;
let redis: RedisService;

before(async () => {
  cluster = await startCluster({ nodeTimeoutMs: 2000 });
  client = await RedisClient.connect({ cluster: { nodes: [cluster.nodes[0]!] }, keyPrefix: uniquePrefix() });
  redis = new RedisService(client);
});

after(async () => {
  await client?.close();
  await cluster?.stop();
});

/** `count` keys that land in `count` different slots. */
function keysInDifferentSlots(count: number, stem = 'k'): string[] {
  const keys: string[] = [];
  const slots = new Set<number>();
  for (let i = 0; keys.length < count; i++) {
    const k = `${stem}${i}`;
    if (!slots.has(keySlot(client.keyPrefix + k))) {
      slots.add(keySlot(client.keyPrefix + k));
      keys.push(k);
    }
  }
  return keys;
}

describe('keys in several slots', () => {
  it('mget, mset (with and without a ttl) and del work across slots, in the caller order', async () => {
    const keys = keysInDifferentSlots(20);
    await redis.mset(Object.fromEntries(keys.map((k, i) => [k, `v${i}`])));
    assert.deepEqual(await redis.mget([...keys, 'missing']), [...keys.map((_, i) => `v${i}`), null]);
    await redis.mset(Object.fromEntries(keys.map((k) => [k, 'ttl'])), 60);
    for (const k of keys.slice(0, 3)) {
      const ttl = await redis.ttl(k);
      assert.ok(ttl !== null && ttl > 0 && ttl <= 60, String(ttl));
    }
    assert.equal(await redis.del(keys), keys.length);
    assert.deepEqual(
      await redis.mget(keys),
      keys.map(() => null),
    );
  });

  it('a pipeline over many slots answers in the caller order, a refused command in its place', async () => {
    const [a, b, c] = keysInDifferentSlots(3, 'p');
    const replies = await redis.pipeline([
      ['SET', a!, '1'],
      ['INCR', b!],
      ['GET', a!],
      ['HSET', c!, 'f', 'v'],
      ['INCR', c!],
      ['GET', b!],
    ]);
    assert.deepEqual(replies.slice(0, 4), ['OK', 1, '1', 1]);
    assert.ok(isRedisError(replies[4]) && replies[4].code === 'ERR_REDIS_COMMAND');
    assert.equal(replies[5], '1');
  });

  it('calls not awaited reach Redis in the order they were made, per key', async () => {
    const lengths = await Promise.all(Array.from({ length: 1000 }, (_, i) => redis.command('RPUSH', ['order', i])));
    assert.deepEqual(
      lengths,
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
  });

  it('a raw multi-key command across slots is ERR_INVALID_ARGUMENT naming the command; with a hash tag it runs', async () => {
    const [a, b] = keysInDifferentSlots(2, 's');
    const e = await redis.command('SUNIONSTORE', ['dst', a!, b!]).catch((err: unknown) => err);
    assert.ok(isRedisError(e) && e.code === 'ERR_INVALID_ARGUMENT', String(e));
    assert.match((e as Error).message, /^SUNIONSTORE: its keys are in different cluster slots/);
    await redis.command('SADD', ['{t}:a', 'x']);
    await redis.command('SADD', ['{t}:b', 'y']);
    assert.equal(await redis.command('SUNIONSTORE', ['{t}:dst', '{t}:a', '{t}:b']), 2);
  });

  it('keys() and deletePattern() see every master', async () => {
    const keys = keysInDifferentSlots(30, 'walk:');
    await redis.mset(Object.fromEntries(keys.map((k) => [k, '1'])));
    const owners = new Set(await Promise.all(keys.map(async (k) => (await cluster.masterOf(client.keyPrefix + k)).port)));
    assert.equal(owners.size, 3, 'the keys are spread over the three masters');
    assert.deepEqual((await redis.keys('walk:*')).sort(), [...keys].sort());
    assert.equal(await redis.deletePattern('walk:*'), keys.length);
    assert.deepEqual(await redis.keys('walk:*'), []);
  });
});

describe('a cluster connection', () => {
  it('health() names the topology and every node: masters answer a PING, replicas are as the cluster sees them', async () => {
    // a node learns the roles of the others shortly after the cluster is created
    let h = await client.health();
    for (let tries = 0; h.nodes?.filter((n) => n.role === 'master').length !== 3 && tries < 100; tries++) {
      await sleep(50);
      h = await client.health();
    }
    assert.equal(h.status, 'up');
    assert.equal(h.topology, 'cluster');
    assert.equal(h.nodes?.length, 6);
    assert.equal(h.nodes?.filter((n) => n.role === 'master').length, 3);
    assert.ok(
      h.nodes?.every((n) => n.status === 'up' && (n.role === 'replica' || typeof n.latencyMs === 'number')),
      JSON.stringify(h.nodes),
    );
  });

  it('nearCache, a db, a url beside the nodes, or a keyPrefix with braces is refused', async () => {
    const nodes = [cluster.nodes[0]!];
    for (const bad of [
      { cluster: { nodes }, nearCache: true },
      { cluster: { nodes }, db: 1 },
      { cluster: { nodes }, url: cluster.nodes[1]! },
      { cluster: { nodes }, keyPrefix: 'app{1}:' },
      { cluster: { nodes: [] } },
    ]) {
      await assert.rejects(RedisClient.connect(bad as any), (e: unknown) => isRedisError(e) && e.code === 'ERR_INVALID_ARGUMENT');
    }
  });

  it('a cluster where no node answers is ERR_REDIS_CONNECTION naming it', async () => {
    const e = await RedisClient.connect({ cluster: { nodes: ['redis://127.0.0.1:1'] }, connectTimeoutMs: 1000 }).catch(
      (err: unknown) => err,
    );
    assert.ok(isRedisError(e) && e.code === 'ERR_REDIS_CONNECTION', String(e));
    assert.match((e as Error).message, /cluster 127\.0\.0\.1:1/);
  });
});

describe('a master killed under load', { timeout: 120_000 }, () => {
  it('every call settles, failures are connection or timeout errors, traffic comes back, and writes acknowledged after it read back', async () => {
    const c = await RedisClient.connect({
      cluster: { nodes: cluster.nodes },
      keyPrefix: uniquePrefix(),
      commandTimeoutMs: 3000,
      reconnect: { minDelayMs: 50, maxDelayMs: 500 },
    });
    const raw = new RedisService(c);
    const services = {
      tokens: new TokenService(c),
      sessions: new SessionService(c),
      limits: new RateLimitService(c),
      cache: new CacheService(c).namespace('items'),
      locks: new LockService(c),
      jobs: new IdempotencyService(c),
      pubsub: new PubSubService(c),
    };
    const victim = await cluster.masterOf(c.keyPrefix + 'counter');
    // the published messages are listened to on a node that stays up (a client of its own
    // seeded with it), so every publish acknowledged after the promotion must arrive
    const listenerNode = cluster.nodes.find((url) => !url.endsWith(`:${victim.port}`))!;
    const listener = await RedisClient.connect({ cluster: { nodes: [listenerNode] } });
    const channel = `${c.keyPrefix}events`;
    const received = new Set<string>();
    const subscription = await new PubSubService(listener).subscribe(channel, (m: string) => received.add(m));
    const outcomes = { ok: 0, failed: 0, codes: new Map<string, number>() };
    // what each worker had acknowledged after the promotion, all read back at the end
    let promoted = false;
    const acked = Array.from({ length: 100 }, () => ({
      incr: [] as number[],
      tokens: [] as [user: string, token: string][],
      sessions: [] as string[],
      cache: [] as [key: string, i: number][],
      jobs: [] as [key: string, result: string][],
      published: [] as string[],
    }));
    let stop = false;
    let n = 0;
    // 100 calls in flight, through every service, until told to stop
    const worker = async (w: number) => {
      const mine = acked[w]!;
      while (!stop) {
        const i = n++;
        const call = [
          async () => {
            const value = await raw.incr('counter');
            if (promoted) mine.incr.push(value);
          },
          async () => {
            await services.tokens.storeRefreshToken(`u${i % 50}`, `t${i}`, 60);
            if (promoted) mine.tokens.push([`u${i % 50}`, `t${i}`]);
          },
          async () => {
            await services.sessions.createSession(`s${i % 200}`, { userId: `u${i % 50}` }, 60);
            if (promoted) mine.sessions.push(`s${i % 200}`);
          },
          () => services.limits.consume(`ip${i % 20}`, { limit: 1_000_000, windowSeconds: 60 }),
          async () => {
            await services.cache.set(`i${i}`, { i }, { ttl: 60 });
            if (promoted) mine.cache.push([`i${i}`, i]);
          },
          () => services.locks.withLock(`r${w}`, 5000, async () => i),
          async () => {
            // one job per call: begin, then complete with the token begin gave
            const begun = await services.jobs.begin(`job${i}`, { lockTtl: 60, resultTtl: 60 });
            if (begun.state !== 'started') throw new Error(`begin of a new key answered ${begun.state}`);
            if (!(await services.jobs.complete(`job${i}`, `r${i}`, { token: begun.token }))) {
              throw new Error('complete with the token begin gave stored nothing');
            }
            if (promoted) mine.jobs.push([`job${i}`, `r${i}`]);
          },
          async () => {
            await services.pubsub.publish(channel, `m${i}`);
            if (promoted) mine.published.push(`m${i}`);
          },
        ][i % 8]!;
        try {
          await call();
          outcomes.ok++;
        } catch (e) {
          outcomes.failed++;
          const code = isRedisError(e) ? e.code : String(e);
          outcomes.codes.set(code, (outcomes.codes.get(code) ?? 0) + 1);
        }
      }
    };
    const workers = Array.from({ length: 100 }, (_, w) => worker(w));
    await sleep(500);
    const before = outcomes.ok;
    await cluster.kill(victim.port);
    const killedAt = Date.now();
    await cluster.waitForPromotion(victim.port, 20_000);
    const promotedAt = Date.now();
    promoted = true;
    // traffic comes back within a few seconds of the promotion: bounded by the calls already
    // sent to the dead master (commandTimeoutMs) and at most a second to read the slot map anew
    const okAtPromotion = outcomes.ok;
    while (outcomes.ok < okAtPromotion + 500 && Date.now() - promotedAt < 10_000) await sleep(50);
    const recoveredMs = Date.now() - promotedAt;
    stop = true;
    await settled(workers);
    console.log(
      `cluster failover: promotion ${promotedAt - killedAt} ms after the kill, calls succeeding again ${recoveredMs} ms after it; ` +
        `${outcomes.ok} calls ok, ${outcomes.failed} failed (${[...outcomes.codes].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'})`,
    );
    assert.ok(before > 0, 'calls succeeded before the kill');
    assert.ok(
      outcomes.ok > okAtPromotion + 500 && recoveredMs < 8000,
      `calls succeed again within a few seconds of the promotion (${recoveredMs} ms)`,
    );
    for (const code of outcomes.codes.keys()) {
      assert.ok(
        ['ERR_REDIS_CONNECTION', 'ERR_REDIS_TIMEOUT', 'ERR_LOCK_NOT_ACQUIRED'].includes(code),
        `unexpected failure ${code}`,
      );
    }
    // writes acknowledged now read back
    const after = Number(await raw.incr('counter'));
    assert.equal(Number(await raw.get('counter')), after);
    const token = `after-${Date.now()}`;
    await services.tokens.storeRefreshToken('u-after', token, 60);
    assert.equal(await services.tokens.isRefreshTokenValid('u-after', token), true);
    // every write acknowledged after the promotion, of every worker, reads back
    const incrs = acked.flatMap((a) => a.incr);
    const tokens = acked.flatMap((a) => a.tokens);
    const sessions = [...new Set(acked.flatMap((a) => a.sessions))];
    const cached = acked.flatMap((a) => a.cache);
    const jobs = acked.flatMap((a) => a.jobs);
    const published = acked.flatMap((a) => a.published);
    console.log(
      `acknowledged after the promotion, read back: ${incrs.length} increments, ${tokens.length} tokens, ` +
        `${sessions.length} sessions, ${cached.length} cache sets, ${jobs.length} jobs completed, ${published.length} messages`,
    );
    assert.ok(incrs.length > 0, 'increments were acknowledged after the promotion');
    assert.equal(new Set(incrs).size, incrs.length, 'no two increments after the promotion answered the same value');
    assert.ok(Math.max(...incrs) < after, `the counter (${after}) is past every increment acknowledged after the promotion`);
    assert.ok(tokens.length > 0);
    const invalid = (
      await Promise.all(tokens.map(async ([u, t]) => ((await services.tokens.isRefreshTokenValid(u, t)) ? [] : [`${u}/${t}`])))
    ).flat();
    assert.deepEqual(invalid, [], 'every refresh token stored after the promotion is valid');
    assert.ok(sessions.length > 0);
    const infos = await Promise.all(sessions.map((s) => services.sessions.getSessionInfo(s)));
    assert.deepEqual(
      sessions.filter((s, k) => infos[k]?.userId !== `u${Number(s.slice(1)) % 50}`),
      [],
      'every session created after the promotion is there, with its user',
    );
    assert.ok(cached.length > 0);
    assert.deepEqual(
      await services.cache.mget(cached.map(([k]) => k)),
      cached.map(([, i]) => ({ i })),
      'every cache set after the promotion reads back',
    );
    assert.ok(jobs.length > 0);
    const states = await Promise.all(jobs.map(([k]) => services.jobs.begin(k)));
    assert.deepEqual(
      states,
      jobs.map(([, result]) => ({ state: 'completed', result })),
      'every job completed after the promotion is completed, with its result',
    );
    assert.ok(published.length > 0);
    for (let waited = 0; published.some((m) => !received.has(m)) && waited < 3000; waited += 50) await sleep(50);
    assert.deepEqual(
      published.filter((m) => !received.has(m)),
      [],
      'every message published after the promotion reached the subscriber',
    );
    await subscription.unsubscribe();
    await listener.close();
    await c.close();
    await cluster.start(victim.port);
  });
});

describe('resharding under load', { timeout: 120_000 }, () => {
  it('slots moved while calls run: MOVED and ASK are followed, and no answer is wrong', async () => {
    const c = await RedisClient.connect({ cluster: { nodes: cluster.nodes }, keyPrefix: uniquePrefix(), commandTimeoutMs: 5000 });
    const raw = new RedisService(c);
    const masters = await cluster.masters();
    const from = masters[0]!;
    const to = masters[1]!;
    // 50 counters, each incremented by its own worker, one call at a time: every reply
    // must be exactly one more than the one before
    let stop = false;
    let wrong = 0;
    let calls = 0;
    const failures = new Map<string, number>();
    const worker = async (w: number) => {
      let expected = 0;
      while (!stop) {
        try {
          const n = await raw.incr(`counter:${w}`);
          calls++;
          if (n !== expected + 1) wrong++;
          expected = n;
        } catch (e) {
          const code = isRedisError(e) ? e.code : String(e);
          failures.set(code, (failures.get(code) ?? 0) + 1);
          // a failed call may still have counted: read where the counter is
          expected = Number(await raw.get(`counter:${w}`).catch(() => expected));
        }
      }
      return expected;
    };
    const workers = Array.from({ length: 50 }, (_, w) => worker(w));
    await sleep(300);
    const started = Date.now();
    await cluster.reshard(from, to, 2000);
    const movedMs = Date.now() - started;
    await sleep(300);
    stop = true;
    const finals = await settled(workers);
    const stored = await raw.mget(finals.map((_, w) => `counter:${w}`));
    console.log(
      `resharding: 2000 slots moved in ${movedMs} ms under ${calls} calls; ${wrong} wrong answers; failures: ${[...failures].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}`,
    );
    assert.equal(wrong, 0);
    assert.deepEqual(stored.map(Number), finals, 'every counter holds what its last reply said');
    assert.deepEqual(
      [...failures.keys()].filter((k) => k !== 'ERR_REDIS_TIMEOUT' && k !== 'ERR_REDIS_CONNECTION'),
      [],
    );
    await c.close();
  });
});
