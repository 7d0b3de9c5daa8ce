// Sentinel set-up of its own (a master, a replica, three sentinels on loopback): the
// client finds the master through the sentinels and follows a failover without a restart.
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { Test } from '@nestjs/testing';
import { RateLimitService, SessionService, TokenService } from 'nestjs-redis-native';
import { RedisModule } from 'nestjs-redis-native/nest';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisService, isRedisError } from 'nestjs-redis-native';
import { respCommand } from './support/resp';
import { startSentinel, type LocalSentinel } from './support/sentinel';
import { settled, sleep } from './support/redis-server';

let sentinel: LocalSentinel;

before(async () => {
  sentinel = await startSentinel();
});

after(async () => {
  await sentinel?.stop();
});

describe('RedisModule with Sentinel', { timeout: 60_000 }, () => {
  it('RedisModule.forRoot({ sentinel }) in a Nest testing module gives a RedisService working on the master the sentinels name', async () => {
    const keyPrefix = `nest:${randomUUID()}:`;
    const moduleRef = await Test.createTestingModule({
      imports: [
        RedisModule.forRoot({
          sentinel: { nodes: sentinel.sentinels, masterName: sentinel.masterName },
          keyPrefix,
          commandTimeoutMs: 3000,
        }),
      ],
    }).compile();
    await moduleRef.init();
    try {
      const redis = moduleRef.get(RedisService);
      const master = await sentinel.master();
      await redis.set('greeting', 'hello from Nest', 60);
      assert.equal(await respCommand(master.port, ['GET', `${keyPrefix}greeting`]), 'hello from Nest');
      assert.equal(await redis.get('greeting'), 'hello from Nest');
      assert.equal(await redis.incr('visits'), 1);
      const h = await moduleRef.get(RedisClient).health();
      assert.equal(h.topology, 'sentinel');
      assert.equal(h.role, 'master');
    } finally {
      await moduleRef.close();
    }
  });
});

const connect = () =>
  RedisClient.connect({
    sentinel: { nodes: sentinel.sentinels, masterName: sentinel.masterName },
    commandTimeoutMs: 3000,
    reconnect: { minDelayMs: 50, maxDelayMs: 500 },
  });

describe('Sentinel', { timeout: 180_000 }, () => {
  it('connects to the master the sentinels name, and health() says so', async () => {
    const client = await connect();
    const master = await sentinel.master();
    const h = await client.health();
    assert.equal(h.status, 'up');
    assert.equal(h.topology, 'sentinel');
    assert.equal(h.role, 'master');
    await new RedisService(client).set('where', 'here');
    assert.equal(await respCommand(master.port, ['GET', 'where']), 'here');
    await client.close();
  });

  it('a master name the sentinels do not know is ERR_REDIS_CONNECTION', async () => {
    const e = await RedisClient.connect({
      sentinel: { nodes: sentinel.sentinels, masterName: 'nobody' },
      connectTimeoutMs: 2000,
    }).catch((err: unknown) => err);
    assert.ok(isRedisError(e) && e.code === 'ERR_REDIS_CONNECTION', String(e));
    assert.match((e as Error).message, /nobody/);
  });

  it('SENTINEL FAILOVER under load: every call settles, traffic moves to the new master, and writes acknowledged after the switch read back there', async () => {
    const client = await connect();
    const redis = new RedisService(client);
    const old = await sentinel.master();
    const outcomes = { ok: 0, failed: 0, codes: new Map<string, number>() };
    let stop = false;
    let switched = false;
    let afterSwitch = 0;
    const worker = async () => {
      while (!stop) {
        const wasSwitched = switched;
        try {
          await redis.incr('counter');
          outcomes.ok++;
          if (wasSwitched) afterSwitch++;
        } catch (e) {
          outcomes.failed++;
          const code = isRedisError(e) ? e.code : String(e);
          outcomes.codes.set(code, (outcomes.codes.get(code) ?? 0) + 1);
          await sleep(10);
        }
      }
    };
    const workers = Array.from({ length: 100 }, worker);
    await sleep(300);
    const started = Date.now();
    const fresh = await sentinel.failover();
    assert.notEqual(fresh.port, old.port);
    // the old master is demoted; from then on every acknowledged write is on the new one
    const roleOf = async (port: number) => {
      const role = await respCommand(port, ['ROLE']).catch(() => null);
      return Array.isArray(role) ? role[0] : null;
    };
    while ((await roleOf(old.port)) !== 'slave' && Date.now() - started < 15_000) await sleep(50);
    await sleep(200);
    const before = Number(await respCommand(fresh.port, ['GET', 'counter']));
    switched = true;
    await sleep(1000);
    stop = true;
    await settled(workers);
    const onNew = Number(await respCommand(fresh.port, ['GET', 'counter']));
    console.log(
      `sentinel failover: ${outcomes.ok} calls ok, ${outcomes.failed} failed (${[...outcomes.codes].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}); ${afterSwitch} acknowledged after the switch`,
    );
    for (const code of outcomes.codes.keys()) {
      assert.ok(['ERR_REDIS_CONNECTION', 'ERR_REDIS_TIMEOUT'].includes(code), `unexpected failure ${code}`);
    }
    assert.ok(afterSwitch > 100, `traffic goes on after the failover (${afterSwitch})`);
    assert.ok(
      onNew - before >= afterSwitch,
      `every write acknowledged after the switch is on the new master (${onNew - before} >= ${afterSwitch})`,
    );
    assert.equal((await client.health()).status, 'up');
    await client.close();
  });

  it('a master SIGKILLed under load: every call settles, the client reconnects to the master Sentinel promotes, and writes acknowledged after it read back', async () => {
    const client = await connect();
    const redis = new RedisService(client);
    const tokens = new TokenService(client);
    const sessions = new SessionService(client);
    const limits = new RateLimitService(client);
    const old = await sentinel.master();
    const outcomes = { ok: 0, failed: 0, codes: new Map<string, number>() };
    let stop = false;
    // besides the counter: refresh tokens, sessions and rate limits; every write the workers had
    // acknowledged after the promotion is read back at the end
    const run = randomUUID();
    const limit = { limit: 100_000, windowSeconds: 60, algorithm: 'sliding-window' as const };
    let promoted = false;
    let next = 0;
    const acked = {
      tokens: [] as [user: string, token: string][],
      sessions: [] as string[],
      consumed: new Map<string, number>(), // key: the least remaining a consume answered
    };
    const worker = async () => {
      while (!stop) {
        const i = next++;
        try {
          if (i % 4 === 0) await redis.incr('killed-counter');
          else if (i % 4 === 1) {
            await tokens.storeRefreshToken(`${run}:u${i % 10}`, `t${i}`, 60);
            if (promoted) acked.tokens.push([`${run}:u${i % 10}`, `t${i}`]);
          } else if (i % 4 === 2) {
            await sessions.createSession(`${run}:s${i}`, { userId: `${run}:u${i % 10}` }, 60);
            if (promoted) acked.sessions.push(`${run}:s${i}`);
          } else {
            const key = `${run}:ip${i % 10}`;
            const r = await limits.consume(key, limit);
            // the outage policy answered: a failure like the others
            if (r.redisError) throw Object.assign(new Error(r.redisError.message), { code: r.redisError.code });
            assert.equal(r.allowed, true);
            if (promoted) acked.consumed.set(key, Math.min(r.remaining, acked.consumed.get(key) ?? Infinity));
          }
          outcomes.ok++;
        } catch (e) {
          outcomes.failed++;
          const code = isRedisError(e) ? e.code : String(e);
          outcomes.codes.set(code, (outcomes.codes.get(code) ?? 0) + 1);
          await sleep(20);
        }
      }
    };
    const workers = Array.from({ length: 100 }, worker);
    await sleep(300);
    await sentinel.kill(old.port);
    const killedAt = Date.now();
    let fresh = old;
    while (fresh.port === old.port && Date.now() - killedAt < 20_000) {
      await sleep(100);
      fresh = await sentinel.master();
    }
    const promotedAt = Date.now();
    promoted = true;
    assert.notEqual(fresh.port, old.port, 'the sentinels promoted the replica');
    const okAtPromotion = outcomes.ok;
    while (outcomes.ok < okAtPromotion + 500 && Date.now() - promotedAt < 10_000) await sleep(50);
    const recoveredMs = Date.now() - promotedAt;
    stop = true;
    await settled(workers);
    console.log(
      `sentinel master killed: promoted ${promotedAt - killedAt} ms after the kill, calls succeeding again ${recoveredMs} ms after it; ` +
        `${outcomes.ok} calls ok, ${outcomes.failed} failed (${[...outcomes.codes].map(([k, v]) => `${k}: ${v}`).join(', ') || 'none'}); ` +
        `acknowledged after the promotion: ${acked.tokens.length} tokens, ${acked.sessions.length} sessions, consumes on ${acked.consumed.size} keys`,
    );
    for (const code of outcomes.codes.keys()) {
      assert.ok(['ERR_REDIS_CONNECTION', 'ERR_REDIS_TIMEOUT'].includes(code), `unexpected failure ${code}`);
    }
    assert.ok(
      acked.tokens.length > 0 && acked.sessions.length > 0 && acked.consumed.size > 0,
      'every service was acknowledged after the promotion',
    );
    const invalid = [];
    for (const [u, t] of acked.tokens) if (!(await tokens.isRefreshTokenValid(u, t))) invalid.push(`${u}/${t}`);
    assert.deepEqual(invalid, [], 'every refresh token stored after the promotion is valid');
    const missing = [];
    for (const s of acked.sessions) if ((await sessions.getSessionInfo(s))?.userId === undefined) missing.push(s);
    assert.deepEqual(missing, [], 'every session created after the promotion is there');
    for (const [key, remaining] of acked.consumed) {
      // nothing counted after the promotion was lost: at most what the last consume left
      const now = await limits.status(key, limit);
      assert.equal(now.redisError, undefined);
      assert.ok(now.remaining <= remaining, `${key}: ${now.remaining} left, a consume after the promotion left ${remaining}`);
    }
    assert.ok(recoveredMs < 5000, `calls succeed again within a few seconds of the promotion (${recoveredMs} ms)`);
    const n = await redis.incr('killed-counter');
    assert.equal(Number(await respCommand(fresh.port, ['GET', 'killed-counter'])), n);
    await client.close();
  });
});
