import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisService, TokenService } from 'nestjs-redis-native';
import { prefixedClients, sleep, stopSharedRedis } from './support/redis-server';

let client: RedisClient;
let tokens: TokenService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, prefix, close: closeClients } = await prefixedClients());
  tokens = new TokenService(client);
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;

/** Every key and value this test's prefix holds in Redis, as text. */
async function dump(): Promise<string> {
  const keys = await raw.keys(`${prefix}*`);
  const parts: string[] = [...keys];
  for (const key of keys) {
    const type = (await raw.command('TYPE', [key])) as string;
    if (type === 'string') parts.push((await raw.get(key)) ?? '');
    if (type === 'zset') parts.push(...((await raw.command('ZRANGE', [key, 0, -1])) as string[]));
  }
  return parts.join('\n');
}

describe('refresh tokens', () => {
  it('a stored token is valid for its user only, and only until it expires', async () => {
    await tokens.storeRefreshToken('u-expiry', 'rt-expiring-1', 0.3);
    assert.equal(await tokens.isRefreshTokenValid('u-expiry', 'rt-expiring-1'), true);
    assert.equal(await tokens.isRefreshTokenValid('someone-else', 'rt-expiring-1'), false);
    assert.equal(await tokens.isRefreshTokenValid('u-expiry', 'never-stored'), false);
    await sleep(400);
    assert.equal(await tokens.isRefreshTokenValid('u-expiry', 'rt-expiring-1'), false);
  });

  it('tokens are stored as SHA-256 hashes: no token text in any key or value', async () => {
    const secret = 'eyJhbGciOiJIUzI1NiJ9.super-secret-refresh-token';
    await tokens.storeRefreshToken('u-hash', secret, 60);
    await tokens.blacklistToken('access-token-that-must-not-leak', 60);
    await tokens.rotateRefreshToken('u-hash', secret, `${secret}-2`, 60);
    const stored = await dump();
    assert.ok(stored.length > 0);
    assert.ok(!stored.includes('super-secret'), stored);
    assert.ok(!stored.includes('must-not-leak'), stored);
  });

  it('revokeRefreshToken revokes one token and leaves the others', async () => {
    await tokens.storeRefreshToken('u-revoke', 'phone', 60);
    await tokens.storeRefreshToken('u-revoke', 'laptop', 60);
    await tokens.revokeRefreshToken('u-revoke', 'phone');
    assert.equal(await tokens.isRefreshTokenValid('u-revoke', 'phone'), false);
    assert.equal(await tokens.isRefreshTokenValid('u-revoke', 'laptop'), true);
  });

  it('revokeAllRefreshTokens logs a user out everywhere and counts the live tokens', async () => {
    for (const device of ['a', 'b', 'c']) await tokens.storeRefreshToken('u-all', `rt-${device}`, 60);
    await tokens.storeRefreshToken('u-other', 'rt-x', 60);
    assert.equal(await tokens.revokeAllRefreshTokens('u-all'), 3);
    for (const device of ['a', 'b', 'c']) assert.equal(await tokens.isRefreshTokenValid('u-all', `rt-${device}`), false);
    assert.equal(await tokens.isRefreshTokenValid('u-other', 'rt-x'), true);
    assert.equal(await tokens.revokeAllRefreshTokens('u-all'), 0);
  });

  it('the per-user index holds only live tokens: expired ones leave it on the next write', async () => {
    for (let i = 0; i < 20; i++) await tokens.storeRefreshToken('u-index', `short-${i}`, 0.1);
    await sleep(200);
    await tokens.storeRefreshToken('u-index', 'long-lived', 60);
    const indexes = (await raw.keys(`${prefix}token:refresh-index:*`)).filter((k) => k.includes('{u-index}'));
    assert.equal(indexes.length, 1);
    assert.equal(await raw.command('ZCARD', [indexes[0]]), 1);
    assert.equal(await tokens.revokeAllRefreshTokens('u-index'), 1);
  });

  it('the per-user index expires with the last token', async () => {
    await tokens.storeRefreshToken('u-index-ttl', 'only', 0.2);
    await sleep(300);
    const left = (await raw.keys(`${prefix}token:*`)).filter((k) => k.includes('{u-index-ttl}'));
    assert.deepEqual(left, []);
  });
});

describe('token families (one login each)', () => {
  it('storeRefreshToken resolves to a new family id per login, or the one given', async () => {
    const f1 = await tokens.storeRefreshToken('u-fam', 'rt-f1', 60);
    const f2 = await tokens.storeRefreshToken('u-fam', 'rt-f2', 60);
    assert.match(f1, /^[0-9a-f-]{36}$/);
    assert.notEqual(f1, f2);
    assert.equal(await tokens.storeRefreshToken('u-fam', 'rt-f3', 60, { family: 'session-42' }), 'session-42');
  });

  it('revokeTokenFamily revokes that login only, rotations included, and counts them', async () => {
    await tokens.storeRefreshToken('u-fam2', 'phone-1', 60, { family: 'phone' });
    assert.equal(await tokens.rotateRefreshToken('u-fam2', 'phone-1', 'phone-2', 60), 'rotated');
    await tokens.storeRefreshToken('u-fam2', 'laptop-1', 60, { family: 'laptop' });
    assert.equal(await tokens.revokeTokenFamily('u-fam2', 'phone'), 1);
    assert.equal(await tokens.isRefreshTokenValid('u-fam2', 'phone-2'), false);
    assert.equal(await tokens.isRefreshTokenValid('u-fam2', 'laptop-1'), true);
    assert.equal(await tokens.revokeTokenFamily('u-fam2', 'phone'), 0);
  });

  it('bad families are ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(tokens.storeRefreshToken('u', 't', 60, { family: '' }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(tokens.storeRefreshToken('u', 't', 60, { family: 5 as any }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(tokens.revokeTokenFamily('u', ''), { code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('rotateRefreshToken', () => {
  it('rotation replaces the old token with the new one', async () => {
    await tokens.storeRefreshToken('u-rot', 'r1', 60);
    assert.equal(await tokens.rotateRefreshToken('u-rot', 'r1', 'r2', 60), 'rotated');
    assert.equal(await tokens.isRefreshTokenValid('u-rot', 'r1'), false);
    assert.equal(await tokens.isRefreshTokenValid('u-rot', 'r2'), true);
    assert.equal(await tokens.rotateRefreshToken('u-rot', 'r2', 'r3', 60), 'rotated');
  });

  it('an unknown or expired token is invalid', async () => {
    assert.equal(await tokens.rotateRefreshToken('u-rot-x', 'nope', 'new', 60), 'invalid');
    await tokens.storeRefreshToken('u-rot-x', 'short', 0.1);
    await sleep(200);
    assert.equal(await tokens.rotateRefreshToken('u-rot-x', 'short', 'new', 60), 'invalid');
  });

  it('presenting a rotated token again is reuse: the whole family is revoked', async () => {
    await tokens.storeRefreshToken('u-reuse', 'login1-a', 60);
    await tokens.storeRefreshToken('u-reuse', 'login2-a', 60); // another device, another family
    await tokens.rotateRefreshToken('u-reuse', 'login1-a', 'login1-b', 60);
    await tokens.rotateRefreshToken('u-reuse', 'login1-b', 'login1-c', 60);
    // an attacker replays the stolen first token
    assert.equal(await tokens.rotateRefreshToken('u-reuse', 'login1-a', 'attacker', 60), 'reused');
    assert.equal(await tokens.isRefreshTokenValid('u-reuse', 'login1-c'), false);
    assert.equal(await tokens.isRefreshTokenValid('u-reuse', 'attacker'), false);
    assert.equal(await tokens.isRefreshTokenValid('u-reuse', 'login2-a'), true);
  });

  it('of 50 concurrent rotations of one token exactly one rotates', async () => {
    await tokens.storeRefreshToken('u-race', 'shared', 60);
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, i) => tokens.rotateRefreshToken('u-race', 'shared', `next-${i}`, 60)),
    );
    assert.equal(outcomes.filter((o) => o === 'rotated').length, 1);
    assert.equal(outcomes.filter((o) => o === 'reused').length, 49);
    // the losers' replays count as reuse, so the family (the winner's new token) is revoked too
    const winner = outcomes.indexOf('rotated');
    assert.equal(await tokens.isRefreshTokenValid('u-race', `next-${winner}`), false);
  });
});

describe('cluster-ready keys', () => {
  it('user ids that could break a hash tag work like any other', async () => {
    for (const user of ['}x', 'a}b', '{a}', '\\', '{}']) {
      const family = await tokens.storeRefreshToken(user, `rt-${user}-1`, 60);
      assert.equal(await tokens.rotateRefreshToken(user, `rt-${user}-1`, `rt-${user}-2`, 60), 'rotated');
      await tokens.storeRefreshToken(user, `rt-${user}-other`, 60);
      assert.equal(await tokens.rotateRefreshToken(user, `rt-${user}-1`, `rt-${user}-3`, 60), 'reused');
      assert.equal(await tokens.isRefreshTokenValid(user, `rt-${user}-2`), false, user);
      assert.equal(await tokens.revokeTokenFamily(user, family), 0);
      assert.equal(await tokens.revokeAllRefreshTokens(user), 1, user);
    }
  });

  it("every key of a user carries the user's hash tag", async () => {
    await tokens.storeRefreshToken('u-tag', 'rt-tag-1', 60);
    await tokens.rotateRefreshToken('u-tag', 'rt-tag-1', 'rt-tag-2', 60);
    const keys = (await raw.keys(`${prefix}token:*`)).filter((k) => k.includes('u-tag'));
    assert.equal(keys.length, 3);
    for (const k of keys) assert.match(k, /^[^{]*:\{u-tag\}/);
  });

  it('revoking every token of a user with many tokens revokes them all', async () => {
    await Promise.all(Array.from({ length: 300 }, (_, i) => tokens.storeRefreshToken('u-many', `rt-many-${i}`, 60)));
    assert.equal(await tokens.revokeAllRefreshTokens('u-many'), 300);
    assert.equal(await tokens.isRefreshTokenValid('u-many', 'rt-many-7'), false);
  });

  it('a namespace cannot hold a hash tag', () => {
    for (const namespace of ['a{b', 'a}b', '{auth}']) {
      assert.throws(() => new TokenService(client, { namespace }), { code: 'ERR_INVALID_ARGUMENT' });
    }
  });
});

describe('blacklist', () => {
  it('a blacklisted token stays blacklisted for its ttl, then is forgotten', async () => {
    await tokens.blacklistToken('access-1', 0.3);
    assert.equal(await tokens.isTokenBlacklisted('access-1'), true);
    assert.equal(await tokens.isTokenBlacklisted('access-2'), false);
    await sleep(400);
    assert.equal(await tokens.isTokenBlacklisted('access-1'), false);
  });

  it('removeFromBlacklist takes a token off', async () => {
    await tokens.blacklistToken('access-3', 60);
    await tokens.removeFromBlacklist('access-3');
    assert.equal(await tokens.isTokenBlacklisted('access-3'), false);
  });
});

describe('TokenService bad input', () => {
  it('empty or non-string ids and tokens are ERR_INVALID_ARGUMENT and write nothing', async () => {
    const before = await raw.keys(`${prefix}token:*`);
    const bad = [any(''), any(undefined), any(5), any(null)];
    for (const v of bad) {
      await assert.rejects(tokens.storeRefreshToken(v, 't', 60), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.storeRefreshToken('u', v, 60), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.isRefreshTokenValid(v, 't'), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.revokeAllRefreshTokens(v), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.rotateRefreshToken('u', 't', v, 60), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.blacklistToken(v, 60), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.isTokenBlacklisted(v), { code: 'ERR_INVALID_ARGUMENT' });
    }
    assert.deepEqual(await raw.keys(`${prefix}token:*`), before);
  });

  it('a ttl that is not a finite number > 0 is ERR_INVALID_ARGUMENT', async () => {
    for (const ttl of [0, -1, NaN, Infinity, any('60'), any(undefined)]) {
      await assert.rejects(tokens.storeRefreshToken('u', 't', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.blacklistToken('t', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(tokens.rotateRefreshToken('u', 't', 't2', ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
  });

  it('rotating a token to itself is ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(tokens.rotateRefreshToken('u', 'same', 'same', 60), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('unknown options are ERR_INVALID_ARGUMENT', () => {
    assert.throws(() => new TokenService(client, any({ nameSpace: 'x' })), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('the namespace option separates two services on one client', async () => {
    const a = new TokenService(client, { namespace: 'app-a' });
    const b = new TokenService(client, { namespace: 'app-b' });
    await a.storeRefreshToken('u-ns', 'tok', 60);
    assert.equal(await a.isRefreshTokenValid('u-ns', 'tok'), true);
    assert.equal(await b.isRefreshTokenValid('u-ns', 'tok'), false);
  });
});
