import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisService, isRedisError, type RedisErrorCode } from 'nestjs-redis-native';
import { isRedisError as isRedisErrorFromNest, type RedisErrorCode as NestRedisErrorCode } from 'nestjs-redis-native/nest';
import { prefixedClients, stopSharedRedis } from './support/redis-server';

let redis: RedisService;
// A client without prefix, to look at what is really stored.
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ redis, raw, prefix, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

// Deliberately wrong values, typed loosely so the calls compile.
const any = (v: unknown) => v as any;
const badKeys = [any(undefined), any(null), '', any(5), any({}), any(['k']), any(Symbol('k')), any(() => 'k')];
const badTtls = [0, -1, NaN, Infinity, -Infinity, any('10'), any({})];

describe('every rejection carries a stable code', () => {
  it('bad keys are ERR_INVALID_ARGUMENT for every key-taking method', async () => {
    for (const key of badKeys) {
      const calls: [string, () => Promise<unknown>][] = [
        ['get', () => redis.get(key)],
        ['set', () => redis.set(key, 'v')],
        // del also takes a list of keys, so a one-element list is valid there
        ...(Array.isArray(key) ? [] : ([['del', () => redis.del(key)]] as [string, () => Promise<unknown>][])),
        ['exists', () => redis.exists(key)],
        ['expire', () => redis.expire(key, 1)],
        ['ttl', () => redis.ttl(key)],
        ['incr', () => redis.incr(key)],
        ['setNx', () => redis.setNx(key, 'v')],
        ['getJson', () => redis.getJson(key)],
        ['setJson', () => redis.setJson(key, 1)],
        ['getBuffer', () => redis.getBuffer(key)],
        ['setBuffer', () => redis.setBuffer(key, Buffer.from('x'))],
        ['keys', () => redis.keys(key)],
        ['deletePattern', () => redis.deletePattern(key)],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), { code: 'ERR_INVALID_ARGUMENT' }, `${name}(${String(key)})`);
      }
    }
  });

  it('del with a bad key inside a list is ERR_INVALID_ARGUMENT and deletes nothing', async () => {
    await redis.set('del-list-ok', 'v');
    await assert.rejects(redis.del(['del-list-ok', any(5)]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.del(['del-list-ok', '']), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('del-list-ok'), true);
  });

  it('bad TTLs are ERR_INVALID_ARGUMENT and write nothing', async () => {
    for (const ttl of badTtls) {
      await assert.rejects(redis.set('ttl-key', 'v', ttl), { code: 'ERR_INVALID_ARGUMENT' }, `set ttl ${String(ttl)}`);
      await assert.rejects(redis.setNx('ttl-key', 'v', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.incr('ttl-key', 1, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.expire('ttl-key', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.mset({ 'ttl-key': 'v' }, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.setJson('ttl-key', 1, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.setBuffer('ttl-key', Buffer.from('x'), ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
    assert.equal(await redis.exists('ttl-key'), false);
  });

  it('expire without a ttl is ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(redis.expire('k', any(undefined)), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('wrong value types are ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(redis.set('k', any(5)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.set('k', any(null)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.set('k', any({ a: 1 })), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.setNx('k', any(undefined)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.setBuffer('k', any('not a buffer')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.incr('k', any('1')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.incr('k', NaN), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mget(any('k')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mget(['ok', any(1)]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mset(any(['a', 'b'])), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mset(any(null)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mset({ '': 'v' }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.del(['ok', any(null)]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.keys('*', 0), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.keys('*', 1.5), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('k'), false);
  });

  it('bad raw commands are ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(redis.command(any(undefined), []), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.command('', []), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.command('GET', any('k')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.command('GET', [any({})]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.pipeline(any('GET k')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.pipeline([[]]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.pipeline([['SET', 'pk', 'v'], any('GET')]), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('pk'), false, 'a refused pipeline sends nothing');
  });

  it('a wrong-type operation is ERR_REDIS_COMMAND with the server text', async () => {
    await redis.command('LPUSH', ['list', 'a']);
    await assert.rejects(redis.get('list'), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /^WRONGTYPE/);
      return e instanceof Error;
    });
  });

  it('a service built on something other than a RedisClient is ERR_INVALID_ARGUMENT', () => {
    assert.throws(() => new RedisService(any({})), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new RedisService(any(undefined)), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('rejections are real Error instances with a stack', async () => {
    const e = await redis.get('').catch((err: unknown) => err);
    assert.ok(e instanceof Error);
    assert.equal(typeof (e as Error).message, 'string');
  });
});

describe('isRedisError and RedisErrorCode', () => {
  it('isRedisError is true for a rejection of the package and narrows its code without a cast', async () => {
    const e: unknown = await redis.get('').catch((err: unknown) => err);
    assert.ok(isRedisError(e));
    const code: RedisErrorCode = e.code; // compiles: narrowed by the guard
    assert.equal(code, 'ERR_INVALID_ARGUMENT');
  });

  it('isRedisError is false for other errors and for values that only look like one', () => {
    assert.equal(isRedisError(new Error('plain')), false);
    assert.equal(isRedisError(Object.assign(new Error('fs'), { code: 'ENOENT' })), false);
    assert.equal(isRedisError({ code: 'ERR_REDIS_CONNECTION', message: 'not an Error' }), false);
    assert.equal(isRedisError(Object.assign(new Error('x'), { code: 42 })), false);
    for (const v of [null, undefined, 'ERR_INTERNAL', 0, [], () => {}]) assert.equal(isRedisError(v), false);
  });

  it('every code the package documents is recognised', () => {
    const codes: RedisErrorCode[] = [
      'ERR_INVALID_ARGUMENT',
      'ERR_REDIS_CONNECTION',
      'ERR_REDIS_TIMEOUT',
      'ERR_REDIS_AUTH',
      'ERR_REDIS_COMMAND',
      'ERR_SERIALIZATION',
      'ERR_CLIENT_CLOSED',
      'ERR_LOCK_NOT_ACQUIRED',
      'ERR_INTERNAL',
    ];
    for (const code of codes) assert.equal(isRedisError(Object.assign(new Error(code), { code })), true, code);
  });

  it('the Nest entry point exports the same guard and type', () => {
    assert.equal(isRedisErrorFromNest, isRedisError);
    const code: NestRedisErrorCode = 'ERR_REDIS_TIMEOUT';
    assert.equal(isRedisErrorFromNest(Object.assign(new Error('t'), { code })), true);
  });
});
