import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisService, SessionService, TokenService } from 'nestjs-redis-native';
import { prefixedClients, sleep, stopSharedRedis } from './support/redis-server';

let client: RedisClient;
let sessions: SessionService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, prefix, close: closeClients } = await prefixedClients());
  sessions = new SessionService(client, { maxSessionsPerUser: 5, onlineWindowSeconds: 0.5 });
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;

describe('sessions', () => {
  it('createSession then getSession returns the data', async () => {
    const data = { userId: 'u1', roles: ['admin'], cart: { items: 2 }, name: 'Ada', big: 12345678901234567, f: 0.1 };
    await sessions.createSession('s-basic', data, 60);
    assert.deepEqual(await sessions.getSession('s-basic'), data);
    assert.deepEqual(await sessions.getSession('missing'), null);
  });

  it('a session with empty data exists', async () => {
    await sessions.createSession('s-empty', {}, 60);
    assert.deepEqual(await sessions.getSession('s-empty'), {});
  });

  it('the default ttl is one day', async () => {
    await sessions.createSession('s-default', { a: 1 });
    const ttl = (await raw.command('PTTL', [`${prefix}session:{s-default}`])) as number;
    assert.ok(ttl > 86_390_000 && ttl <= 86_400_000, String(ttl));
  });

  it('a session expires after its ttl', async () => {
    await sessions.createSession('s-exp', { a: 1 }, 0.2);
    await sleep(300);
    assert.equal(await sessions.getSession('s-exp'), null);
    assert.equal(await sessions.getSessionInfo('s-exp'), null);
  });

  it('destroySession removes it', async () => {
    await sessions.createSession('s-destroy', { userId: 'u-destroy' }, 60);
    await sessions.destroySession('s-destroy');
    assert.equal(await sessions.getSession('s-destroy'), null);
    assert.deepEqual(await sessions.listUserSessions('u-destroy'), []);
  });

  it('extendSession sets a new expiry; false for a missing session', async () => {
    await sessions.createSession('s-extend', { a: 1 }, 0.3);
    assert.equal(await sessions.extendSession('s-extend', 60), true);
    await sleep(400);
    assert.deepEqual(await sessions.getSession('s-extend'), { a: 1 });
    assert.equal(await sessions.extendSession('missing', 60), false);
  });

  it('touchSession slides the expiry and records the last activity', async () => {
    await sessions.createSession('s-touch', { userId: 'u-touch' }, 0.4);
    const before = await sessions.getSessionInfo('s-touch');
    await sleep(250);
    assert.equal(await sessions.touchSession('s-touch'), true);
    await sleep(250); // 500 ms after creation, 250 ms after the touch
    const info = await sessions.getSessionInfo('s-touch');
    assert.ok(info, 'still alive thanks to the touch');
    assert.ok(info.lastActivityAt >= before!.lastActivityAt + 200, JSON.stringify([before, info]));
    assert.equal(info.createdAt, before!.createdAt);
    assert.equal(await sessions.touchSession('missing'), false);
  });

  it('touchSession with a ttl records the activity and gives the session that ttl from now on', async () => {
    await sessions.createSession('s-touch-ttl', { userId: 'u-touch-ttl' }, 0.3);
    assert.equal(await sessions.touchSession('s-touch-ttl', 60), true);
    const info = await sessions.getSessionInfo('s-touch-ttl');
    assert.ok(info!.expiresAt - Date.now() > 59_000, JSON.stringify(info));
    await sleep(400);
    assert.equal(await sessions.touchSession('s-touch-ttl'), true, 'alive past its first ttl');
    assert.ok((await sessions.getSessionInfo('s-touch-ttl'))!.expiresAt - Date.now() > 59_000, 'a later touch keeps the new ttl');
    assert.equal(await sessions.isUserOnline('u-touch-ttl'), true);
  });

  it('touchSession refuses a bad ttl with ERR_INVALID_ARGUMENT', async () => {
    for (const bad of [0, -1, Number.NaN, '60']) {
      await assert.rejects(
        sessions.touchSession('s-touch', bad as number),
        (e: { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT',
        String(bad),
      );
    }
  });

  it('getSessionInfo tells user, times and device', async () => {
    await sessions.createSession('s-info', { userId: 'u-info', device: { type: 'phone', os: 'iOS' } }, 60);
    const info = await sessions.getSessionInfo('s-info');
    assert.ok(info);
    assert.equal(info.sessionId, 's-info');
    assert.equal(info.userId, 'u-info');
    assert.deepEqual(info.device, { type: 'phone', os: 'iOS' });
    assert.equal(info.createdAt, info.lastActivityAt);
    assert.ok(Math.abs(info.expiresAt - info.createdAt - 60_000) < 1000);
  });
});

describe('updateSession', () => {
  it('merges fields and keeps the rest and the expiry', async () => {
    await sessions.createSession('s-upd', { a: 1, b: 2 }, 60);
    assert.equal(await sessions.updateSession('s-upd', { b: 3, c: [4] }), true);
    assert.deepEqual(await sessions.getSession('s-upd'), { a: 1, b: 3, c: [4] });
    const ttl = (await raw.command('PTTL', [`${prefix}session:{s-upd}`])) as number;
    assert.ok(ttl > 50_000);
    assert.equal(await sessions.updateSession('missing', { a: 1 }), false);
    assert.equal(await sessions.getSession('missing'), null);
  });

  it('100 concurrent updates of different fields all survive', async () => {
    await sessions.createSession('s-conc', { start: true }, 60);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => sessions.updateSession('s-conc', { [`f${i}`]: i })));
    assert.ok(results.every(Boolean));
    const data = (await sessions.getSession<Record<string, unknown>>('s-conc'))!;
    assert.equal(Object.keys(data).length, 101);
    for (let i = 0; i < 100; i++) assert.equal(data[`f${i}`], i);
  });

  it('a new userId moves the session to that user', async () => {
    await sessions.createSession('s-move', { userId: 'u-from' }, 60);
    await sessions.updateSession('s-move', { userId: 'u-to' });
    assert.deepEqual(await sessions.listUserSessions('u-from'), []);
    assert.deepEqual(
      (await sessions.listUserSessions('u-to')).map((s) => s.sessionId),
      ['s-move'],
    );
    await sessions.updateSession('s-move', { userId: null });
    assert.deepEqual(await sessions.listUserSessions('u-to'), []);
  });
});

describe('multi-device', () => {
  it('listUserSessions lists the sessions of one user', async () => {
    await sessions.createSession('s-phone', { userId: 'u-multi', device: 'phone' }, 60);
    await sessions.createSession('s-laptop', { userId: 'u-multi', device: 'laptop' }, 120);
    await sessions.createSession('s-other', { userId: 'u-someone' }, 60);
    const list = await sessions.listUserSessions('u-multi');
    assert.deepEqual(
      list.map((s) => s.sessionId),
      ['s-phone', 's-laptop'],
    );
    assert.deepEqual(
      list.map((s) => s.device),
      ['phone', 'laptop'],
    );
  });

  it('numeric user ids are indexed as their decimal text', async () => {
    await sessions.createSession('s-num', { userId: 42 }, 60);
    assert.deepEqual(
      (await sessions.listUserSessions('42')).map((s) => s.sessionId),
      ['s-num'],
    );
  });

  it('destroyUserSessions logs out every device and counts them', async () => {
    await sessions.createSession('s-all-1', { userId: 'u-all' }, 60);
    await sessions.createSession('s-all-2', { userId: 'u-all' }, 60);
    assert.equal(await sessions.destroyUserSessions('u-all'), 2);
    assert.equal(await sessions.getSession('s-all-1'), null);
    assert.equal(await sessions.getSession('s-all-2'), null);
    assert.deepEqual(await sessions.listUserSessions('u-all'), []);
    assert.equal(await sessions.isUserOnline('u-all'), false);
  });

  it('expired sessions never show up, and the index does not grow', async () => {
    for (let i = 0; i < 30; i++) await sessions.createSession(`s-short-${i}`, { userId: 'u-grow' }, 0.1);
    const indexKey = `${prefix}session-user:{u-grow}`;
    await sleep(200);
    assert.deepEqual(await sessions.listUserSessions('u-grow'), []);
    assert.equal(await raw.command('ZCARD', [indexKey]), 0);
    await sessions.createSession('s-long', { userId: 'u-grow' }, 60);
    assert.equal(await raw.command('ZCARD', [indexKey]), 1);
  });

  it('the index itself expires with the last session', async () => {
    const svc = new SessionService(client);
    await svc.createSession('s-idx-ttl', { userId: 'u-idx-ttl' }, 0.2);
    await sleep(300);
    assert.equal(await raw.exists(`${prefix}session-user:{u-idx-ttl}`), false);
  });

  it('maxSessionsPerUser evicts the least recently active session', async () => {
    for (let i = 1; i <= 5; i++) await sessions.createSession(`s-max-${i}`, { userId: 'u-max' }, 60);
    await sessions.touchSession('s-max-1'); // now the most recently active
    await sessions.createSession('s-max-6', { userId: 'u-max' }, 60);
    const ids = (await sessions.listUserSessions('u-max')).map((s) => s.sessionId).sort();
    assert.deepEqual(ids, ['s-max-1', 's-max-3', 's-max-4', 's-max-5', 's-max-6']);
    assert.equal(await sessions.getSession('s-max-2'), null);
  });

  it('50 concurrent logins of one user: never more than the maximum survive', async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => sessions.createSession(`s-burst-${i}`, { userId: 'u-burst' }, 60)));
    const list = await sessions.listUserSessions('u-burst');
    assert.equal(list.length, 5);
    let alive = 0;
    for (let i = 0; i < 50; i++) if (await sessions.getSession(`s-burst-${i}`)) alive++;
    assert.equal(alive, 5);
  });
});

describe("sessions and their logins' refresh tokens", () => {
  let tokens: TokenService;
  let limited: SessionService;
  before(() => {
    tokens = new TokenService(client);
    limited = new SessionService(client, { maxSessionsPerUser: 2 });
  });

  /** A login as an app does it: a refresh token whose family is the session id. */
  async function login(
    service: SessionService,
    user: string,
    device: string,
  ): Promise<{ sessionId: string; refreshToken: string; evicted: string[] }> {
    const sessionId = `s-${user}-${device}`;
    const refreshToken = `rt-${user}-${device}-${Math.random()}`;
    const family = await tokens.storeRefreshToken(user, refreshToken, 3600, { family: sessionId });
    assert.equal(family, sessionId);
    const evicted = await service.createSession(sessionId, { userId: user, device }, { ttl: 600, tokenFamily: family });
    return { sessionId, refreshToken, evicted };
  }

  it('createSession resolves to the ids it evicted, and an evicted device can no longer refresh', async () => {
    const a = await login(limited, 'fam-u1', 'a');
    await sleep(5);
    const b = await login(limited, 'fam-u1', 'b');
    await sleep(5);
    const c = await login(limited, 'fam-u1', 'c');
    assert.deepEqual([a.evicted, b.evicted, c.evicted], [[], [], [a.sessionId]]);
    assert.equal(await limited.getSession(a.sessionId), null);
    assert.equal(await tokens.isRefreshTokenValid('fam-u1', a.refreshToken), false, 'device a cannot refresh');
    assert.equal(await tokens.rotateRefreshToken('fam-u1', a.refreshToken, 'x', 60), 'invalid');
    assert.equal(await tokens.isRefreshTokenValid('fam-u1', b.refreshToken), true, 'the others still can');
    assert.equal(await tokens.isRefreshTokenValid('fam-u1', c.refreshToken), true);
  });

  it('a rotated token stays in its family: evicting the session revokes the newest token', async () => {
    const a = await login(limited, 'fam-u2', 'a');
    const next = `rt-next-${Math.random()}`;
    assert.equal(await tokens.rotateRefreshToken('fam-u2', a.refreshToken, next, 3600), 'rotated');
    await sleep(5);
    await login(limited, 'fam-u2', 'b');
    await sleep(5);
    const c = await login(limited, 'fam-u2', 'c');
    assert.deepEqual(c.evicted, [a.sessionId]);
    assert.equal(await tokens.isRefreshTokenValid('fam-u2', next), false);
  });

  it("destroySession revokes that login's refresh tokens and no other", async () => {
    const a = await login(sessions, 'fam-u3', 'a');
    const b = await login(sessions, 'fam-u3', 'b');
    await sessions.destroySession(a.sessionId);
    assert.equal(await tokens.isRefreshTokenValid('fam-u3', a.refreshToken), false);
    assert.equal(await tokens.isRefreshTokenValid('fam-u3', b.refreshToken), true);
  });

  it("destroyUserSessions revokes every session's login", async () => {
    const a = await login(sessions, 'fam-u4', 'a');
    const b = await login(sessions, 'fam-u4', 'b');
    assert.equal(await sessions.destroyUserSessions('fam-u4'), 2);
    assert.equal(await tokens.isRefreshTokenValid('fam-u4', a.refreshToken), false);
    assert.equal(await tokens.isRefreshTokenValid('fam-u4', b.refreshToken), false);
  });

  it('sessions without tokenFamily leave refresh tokens alone', async () => {
    await tokens.storeRefreshToken('fam-u5', 'rt-plain', 3600);
    await sessions.createSession('s-plain', { userId: 'fam-u5' });
    await sessions.destroySession('s-plain');
    assert.equal(await tokens.isRefreshTokenValid('fam-u5', 'rt-plain'), true);
  });

  it('tokenNamespace follows a TokenService with its own namespace', async () => {
    const authTokens = new TokenService(client, { namespace: 'auth' });
    const authSessions = new SessionService(client, { tokenNamespace: 'auth' });
    const family = await authTokens.storeRefreshToken('fam-u6', 'rt-auth', 3600);
    await authSessions.createSession('s-auth', { userId: 'fam-u6' }, { tokenFamily: family });
    await authSessions.destroySession('s-auth');
    assert.equal(await authTokens.isRefreshTokenValid('fam-u6', 'rt-auth'), false);
  });

  it('tokenFamily without data.userId, and bad options, are ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(sessions.createSession('s-nouser', {}, { tokenFamily: 'f' }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(sessions.createSession('s-bad', { userId: 'u' }, any({ ttl: 0 })), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(sessions.createSession('s-bad', { userId: 'u' }, any({ nope: 1 })), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await sessions.getSession('s-nouser'), null);
    assert.throws(() => new SessionService(client, any({ tokenNamespace: '' })), { code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('online status', () => {
  it('a user is online after creating or touching a session, offline after the window', async () => {
    await sessions.createSession('s-on', { userId: 'u-on' }, 60);
    assert.equal(await sessions.isUserOnline('u-on'), true);
    assert.ok((await sessions.getOnlineUsers()).includes('u-on'));
    await sleep(600);
    assert.equal(await sessions.isUserOnline('u-on'), false);
    assert.ok(!(await sessions.getOnlineUsers()).includes('u-on'));
    await sessions.touchSession('s-on');
    assert.equal(await sessions.isUserOnline('u-on'), true);
  });

  it('destroying the last session of a user takes them offline', async () => {
    await sessions.createSession('s-last', { userId: 'u-last' }, 60);
    await sessions.destroySession('s-last');
    assert.equal(await sessions.isUserOnline('u-last'), false);
  });
});

describe('cluster-ready keys', () => {
  it("a session's keys carry its id as hash tag, a user's keys the user id", async () => {
    await sessions.createSession('s-tag', { userId: 'u-tag' }, 60);
    assert.equal(await raw.exists(`${prefix}session:{s-tag}`), true);
    assert.equal(await raw.exists(`${prefix}session-user:{u-tag}`), true);
    assert.equal(await raw.exists(`${prefix}session-user:{u-tag}:meta`), true);
  });

  it('ids that could break a hash tag work like any other', async () => {
    for (const [id, user] of [
      ['}s', '}u'],
      ['a}b', 'c}d'],
      ['{s}', '{u}'],
    ]) {
      await sessions.createSession(id, { userId: user, n: 1 }, 60);
      assert.deepEqual(await sessions.getSession(id), { userId: user, n: 1 });
      assert.equal(await sessions.touchSession(id), true);
      assert.deepEqual(
        (await sessions.listUserSessions(user)).map((s) => s.sessionId),
        [id],
      );
      assert.equal(await sessions.isUserOnline(user), true);
      await sessions.destroySession(id);
      assert.deepEqual(await sessions.listUserSessions(user), []);
      assert.equal(await sessions.isUserOnline(user), false);
    }
  });

  it('listUserSessions drops ids whose session is gone, and the index forgets them', async () => {
    await sessions.createSession('s-gone-1', { userId: 'u-gone' }, 60);
    await sessions.createSession('s-gone-2', { userId: 'u-gone' }, 60);
    await raw.del(`${prefix}session:{s-gone-1}`); // as if an earlier call stopped half-way
    assert.deepEqual(
      (await sessions.listUserSessions('u-gone')).map((s) => s.sessionId),
      ['s-gone-2'],
    );
    assert.equal(await raw.command('ZCARD', [`${prefix}session-user:{u-gone}`]), 1);
  });

  it('re-creating a session for another user moves it to that user', async () => {
    await sessions.createSession('s-switch', { userId: 'u-switch-a' }, 60);
    await sessions.createSession('s-switch', { userId: 'u-switch-b' }, 60);
    assert.deepEqual(await sessions.listUserSessions('u-switch-a'), []);
    assert.deepEqual(
      (await sessions.listUserSessions('u-switch-b')).map((s) => s.sessionId),
      ['s-switch'],
    );
  });

  it('getOnlineUsers finds users of every shard, least recently active first', async () => {
    const users = Array.from({ length: 40 }, (_, i) => `u-shard-${i}`);
    for (const [i, user] of users.entries()) await sessions.createSession(`s-shard-${i}`, { userId: user }, 60);
    const online = (await sessions.getOnlineUsers()).filter((u) => u.startsWith('u-shard-'));
    assert.deepEqual(online, users);
  });

  it('an online shard expires once nobody in it is online', async () => {
    await sessions.createSession('s-shard-ttl', { userId: 'u-shard-ttl' }, 60);
    const shards = (await raw.keys(`${prefix}session-online:*`)) as string[];
    assert.ok(shards.length > 0);
    for (const shard of shards) {
      const ttl = (await raw.command('PTTL', [shard])) as number;
      assert.ok(ttl > 0 && ttl <= 501, `${shard}: ${ttl}`); // the window (500 ms) from the last activity, rounded up to a whole ms
    }
  });

  it('a tokenNamespace cannot hold a hash tag', () => {
    assert.throws(() => new SessionService(client, { tokenNamespace: 'a{b' }), { code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('SessionService bad input', () => {
  it('non-object data, empty ids and bad ttls are ERR_INVALID_ARGUMENT and write nothing', async () => {
    const before = (await raw.keys(`${prefix}session*`)).sort(); // a cluster lists keys node by node, in no set order
    for (const data of [any(null), any('x'), any([1, 2]), any(5), any(undefined)]) {
      await assert.rejects(sessions.createSession('s-bad', data, 60), { code: 'ERR_INVALID_ARGUMENT' });
    }
    for (const id of [any(''), any(undefined), any(7)]) {
      await assert.rejects(sessions.createSession(id, { a: 1 }, 60), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(sessions.getSession(id), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(sessions.updateSession(id, { a: 1 }), { code: 'ERR_INVALID_ARGUMENT' });
    }
    for (const ttl of [0, -5, NaN, Infinity, any('60')]) {
      await assert.rejects(sessions.createSession('s-bad', { a: 1 }, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(sessions.extendSession('s-bad', ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
    await assert.rejects(sessions.createSession('s-bad', { userId: { id: 1 } }, 60), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(sessions.updateSession('s-bad', any([1])), { code: 'ERR_INVALID_ARGUMENT' });
    assert.deepEqual((await raw.keys(`${prefix}session*`)).sort(), before);
  });

  it('data JSON cannot hold is ERR_SERIALIZATION', async () => {
    await assert.rejects(sessions.createSession('s-bigint', { n: 10n } as any, 60), { code: 'ERR_SERIALIZATION' });
  });

  it('bad options are ERR_INVALID_ARGUMENT', () => {
    assert.throws(() => new SessionService(client, { maxSessionsPerUser: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new SessionService(client, { onlineWindowSeconds: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new SessionService(client, any({ maxSessions: 3 })), { code: 'ERR_INVALID_ARGUMENT' });
  });
});
