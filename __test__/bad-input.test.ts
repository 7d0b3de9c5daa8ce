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
} from 'nestjs-redis-native';
import { prefixedClients, stopSharedRedis, testConnectOptions } from './support/redis-server';

/**
 * Every public method that takes a string, fed what JS code gets wrong: each call rejects
 * with ERR_INVALID_ARGUMENT before anything is written, and Node keeps running.
 */

let client: RedisClient;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, prefix, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;
const notStrings = [undefined, null, 0, 42, NaN, true, {}, [], ['k'], Symbol('s'), () => 'k', 10n, ''].map(any);

type Call = [name: string, call: (bad: any) => Promise<unknown>];

function table(): Call[] {
  const redis = new RedisService(client);
  const tokens = new TokenService(client);
  const sessions = new SessionService(client);
  const idem = new IdempotencyService(client);
  const limiter = new RateLimitService(client);
  const cache = new CacheService(client).namespace('bad');
  const locks = new LockService(client);
  const pubsub = new PubSubService(client);
  const rl = { limit: 5, windowSeconds: 1 };
  return [
    ['RedisService.get', (b) => redis.get(b)],
    ['RedisService.set', (b) => redis.set(b, 'v')],
    ['RedisService.set value', (b) => redis.set('k', b)],
    ['RedisService.exists', (b) => redis.exists(b)],
    ['RedisService.expire', (b) => redis.expire(b, 1)],
    ['RedisService.ttl', (b) => redis.ttl(b)],
    ['RedisService.incr', (b) => redis.incr(b)],
    ['RedisService.setNx', (b) => redis.setNx(b, 'v')],
    ['RedisService.getJson', (b) => redis.getJson(b)],
    ['RedisService.setJson', (b) => redis.setJson(b, 1)],
    ['RedisService.getBuffer', (b) => redis.getBuffer(b)],
    ['RedisService.keys', (b) => redis.keys(b)],
    ['RedisService.deletePattern', (b) => redis.deletePattern(b)],
    ['RedisService.command', (b) => redis.command(b)],
    ['TokenService.storeRefreshToken', (b) => tokens.storeRefreshToken(b, 't', 60)],
    ['TokenService.storeRefreshToken token', (b) => tokens.storeRefreshToken('u', b, 60)],
    ['TokenService.isRefreshTokenValid', (b) => tokens.isRefreshTokenValid('u', b)],
    ['TokenService.revokeRefreshToken', (b) => tokens.revokeRefreshToken(b, 't')],
    ['TokenService.revokeAllRefreshTokens', (b) => tokens.revokeAllRefreshTokens(b)],
    ['TokenService.rotateRefreshToken', (b) => tokens.rotateRefreshToken('u', b, 'n', 60)],
    ['TokenService.blacklistToken', (b) => tokens.blacklistToken(b, 60)],
    ['TokenService.isTokenBlacklisted', (b) => tokens.isTokenBlacklisted(b)],
    ['TokenService.removeFromBlacklist', (b) => tokens.removeFromBlacklist(b)],
    ['SessionService.createSession', (b) => sessions.createSession(b, {})],
    ['SessionService.getSession', (b) => sessions.getSession(b)],
    ['SessionService.destroySession', (b) => sessions.destroySession(b)],
    ['SessionService.extendSession', (b) => sessions.extendSession(b, 60)],
    ['SessionService.touchSession', (b) => sessions.touchSession(b)],
    ['SessionService.updateSession', (b) => sessions.updateSession(b, {})],
    ['SessionService.getSessionInfo', (b) => sessions.getSessionInfo(b)],
    ['SessionService.listUserSessions', (b) => sessions.listUserSessions(b)],
    ['SessionService.destroyUserSessions', (b) => sessions.destroyUserSessions(b)],
    ['SessionService.isUserOnline', (b) => sessions.isUserOnline(b)],
    ['IdempotencyService.isProcessed', (b) => idem.isProcessed(b)],
    ['IdempotencyService.markAsProcessed', (b) => idem.markAsProcessed(b)],
    ['IdempotencyService.begin', (b) => idem.begin(b)],
    ['IdempotencyService.complete', (b) => idem.complete(b, 'r')],
    ['IdempotencyService.abandon', (b) => idem.abandon(b)],
    ['RateLimitService.checkRateLimit', (b) => limiter.checkRateLimit(b, 5, 1)],
    ['RateLimitService.consume', (b) => limiter.consume(b, rl)],
    ['RateLimitService.status', (b) => limiter.status(b, rl)],
    ['RateLimitService.reset', (b) => limiter.reset(b)],
    ['CacheNamespace.get', (b) => cache.get(b)],
    ['CacheNamespace.set', (b) => cache.set(b, 1)],
    ['CacheNamespace.delete', (b) => cache.delete(b)],
    ['CacheNamespace.exists', (b) => cache.exists(b)],
    ['CacheNamespace.getTtl', (b) => cache.getTtl(b)],
    ['CacheNamespace.setTtl', (b) => cache.setTtl(b, 1)],
    ['CacheNamespace.increment', (b) => cache.increment(b)],
    ['CacheNamespace.getByIndex', (b) => cache.getByIndex(b, 'v')],
    ['CacheNamespace.getKeysByIndex', (b) => cache.getKeysByIndex('n', b)],
    ['CacheNamespace.getOrSet', (b) => cache.getOrSet(b, () => 1)],
    ['LockService.acquire', (b) => locks.acquire(b, 1000)],
    ['LockService.withLock', (b) => locks.withLock(b, 1000, () => 1)],
    ['PubSubService.publish', (b) => pubsub.publish(b, 'm')],
    ['PubSubService.subscribe', (b) => pubsub.subscribe(b, () => {})],
    ['PubSubService.psubscribe', (b) => pubsub.psubscribe(b, () => {})],
  ];
}

describe('every string argument refuses what is not a non-empty string', () => {
  it('ERR_INVALID_ARGUMENT for undefined, null, numbers, objects, arrays, symbols, functions, bigints and ""', async () => {
    const before = (await raw.keys(`${prefix}*`)).sort(); // a cluster lists keys node by node, in no set order
    for (const [name, call] of table()) {
      for (const bad of notStrings) {
        // RedisService.set accepts any string value including ''; del/mget take lists
        if (name === 'RedisService.set value' && bad === '') continue;
        if (name === 'RedisService.command' && bad === '') {
          await assert.rejects(call(bad), { code: 'ERR_INVALID_ARGUMENT' });
          continue;
        }
        let result: unknown;
        try {
          result = await call(bad);
        } catch (e: any) {
          assert.equal(
            e.code,
            'ERR_INVALID_ARGUMENT',
            `${name}(${typeof bad === 'symbol' ? 'Symbol' : String(bad)}): ${e.message}`,
          );
          continue;
        }
        assert.fail(`${name}(${typeof bad === 'symbol' ? 'Symbol' : JSON.stringify(bad)}) resolved ${JSON.stringify(result)}`);
      }
    }
    assert.deepEqual((await raw.keys(`${prefix}*`)).sort(), before, 'nothing was written');
  });
});

describe('unusual but valid input works', () => {
  it('keys with spaces, newlines, glob characters, braces and non-ASCII are ordinary keys', async () => {
    const redis = new RedisService(client);
    for (const key of ['a b', 'line\nbreak', 'star*q?[x]', '{tag}', 'ключ-🔑', 'tab\tkey']) {
      await redis.set(key, key);
      assert.equal(await redis.get(key), key);
      assert.deepEqual(await redis.keys(key.replace(/[*?[\]\\]/g, '\\$&')), [key]);
    }
  });

  it('glob characters in a key prefix or a namespace never widen a deletion', async () => {
    const starClient = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: `${prefix}p*:` });
    const star = new RedisService(starClient);
    const redis = new RedisService(client);
    await redis.set('pX:keep', '1');
    await star.set('mine', '1');
    assert.equal(await star.deletePattern('*'), 1);
    assert.equal(await redis.get('pX:keep'), '1');
    await starClient.close();
  });

  it('a 1 MiB key and a 100 MiB value', async () => {
    const redis = new RedisService(client);
    const bigKey = 'k'.repeat(1024 * 1024);
    await redis.set(bigKey, 'v', 30);
    assert.equal(await redis.get(bigKey), 'v');
    const big = Buffer.alloc(100 * 1024 * 1024, 7);
    await redis.setBuffer('big-value', big, 30);
    const back = await redis.getBuffer('big-value');
    assert.equal(back?.length, big.length);
    assert.ok(back?.equals(big));
    await redis.del(['big-value', bigKey]);
  });

  it('invalid UTF-8 stored with setBuffer reads back with getBuffer; get() says ERR_SERIALIZATION', async () => {
    const redis = new RedisService(client);
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0xc3]);
    await redis.setBuffer('bytes', bytes);
    assert.ok((await redis.getBuffer('bytes'))?.equals(bytes));
    await assert.rejects(redis.get('bytes'), { code: 'ERR_SERIALIZATION' });
  });

  it('circular objects are ERR_SERIALIZATION everywhere JSON is written, and write nothing', async () => {
    const circular: any = { a: 1 };
    circular.self = circular;
    const redis = new RedisService(client);
    const cache = new CacheService(client).namespace('circ');
    const sessions = new SessionService(client);
    const pubsub = new PubSubService(client);
    await assert.rejects(redis.setJson('c', circular), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(cache.set('c', circular), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(sessions.createSession('c', circular), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(pubsub.publish('c', circular), { code: 'ERR_SERIALIZATION' });
    assert.equal(await redis.exists('c'), false);
  });
});
