import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CacheService, RedisClient, RedisService, type CacheNamespace } from 'nestjs-redis-native';
import { prefixedClients, sleep, stopSharedRedis } from './support/redis-server';

let client: RedisClient;
let cache: CacheService;
let raw: RedisService;
let redis: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, redis, prefix, close: closeClients } = await prefixedClients());
  cache = new CacheService(client);
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;
/** A namespace no other test uses. */
const ns = (options?: { defaultTtl?: number }): CacheNamespace => cache.namespace(`ns${randomUUID().slice(0, 8)}`, options);

describe('values', () => {
  it('set then get returns JSON values of every kind', async () => {
    const users = ns();
    const values: unknown[] = [{ id: 1, name: 'Ada', tags: ['x'], big: 12345678901234567 }, [1, 2], 'text', 42, 0.1, true, null];
    for (const [i, v] of values.entries()) {
      assert.equal(await users.set(`k${i}`, v), true);
      assert.deepEqual(await users.get(`k${i}`), v);
    }
    assert.equal(await users.get('missing'), null);
  });

  it('keys are <namespace>:<key>', async () => {
    const users = ns();
    await users.set('42', { a: 1 });
    assert.equal(await raw.exists(`${prefix}${users.name}:42`), true);
  });

  it('ttl and defaultTtl expire items', async () => {
    const short = ns({ defaultTtl: 0.2 });
    await short.set('a', 1);
    await short.set('b', 2, { ttl: 60 });
    const ttl = await short.getTtl('a');
    assert.ok(ttl !== null && ttl > 0 && ttl <= 0.2);
    await sleep(300);
    assert.equal(await short.get('a'), null);
    assert.equal(await short.get('b'), 2);
  });

  it('getTtl: -1 without expiry, null when absent; setTtl sets one', async () => {
    const c = ns();
    await c.set('k', 1);
    assert.equal(await c.getTtl('k'), -1);
    assert.equal(await c.getTtl('nope'), null);
    assert.equal(await c.setTtl('k', 0.2), true);
    assert.equal(await c.setTtl('nope', 10), false);
    await sleep(300);
    assert.equal(await c.exists('k'), false);
  });

  it('delete and exists', async () => {
    const c = ns();
    await c.set('k', 'v');
    assert.equal(await c.exists('k'), true);
    assert.equal(await c.delete('k'), true);
    assert.equal(await c.delete('k'), false);
    assert.equal(await c.exists('k'), false);
  });

  it('update merges fields atomically and keeps the ttl unless given', async () => {
    const c = ns();
    await c.set('u', { a: 1, b: 2 }, { ttl: 60 });
    assert.equal(await c.update('u', { b: 3, c: 'x' }), true);
    assert.deepEqual(await c.get('u'), { a: 1, b: 3, c: 'x' });
    assert.ok((await c.getTtl('u'))! > 50);
    await c.update('u', { d: 1 }, { ttl: 0.2 });
    await sleep(300);
    assert.equal(await c.get('u'), null);
    assert.equal(await c.update('missing', { a: 1 }), false);
  });

  it('100 concurrent updates of different fields all survive', async () => {
    const c = ns();
    await c.set('u', { start: 0 });
    await Promise.all(Array.from({ length: 100 }, (_, i) => c.update('u', { [`f${i}`]: i })));
    const item = (await c.get<Record<string, number>>('u'))!;
    assert.equal(Object.keys(item).length, 101);
  });

  it('update of a non-object value is ERR_INVALID_ARGUMENT', async () => {
    const c = ns();
    await c.set('n', 5);
    await assert.rejects(c.update('n', { a: 1 }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await c.get('n'), 5);
  });

  it('increment counts, creating the item with its ttl', async () => {
    const c = ns();
    assert.equal(await c.increment('hits'), 1);
    assert.equal(await c.increment('hits', 5), 6);
    assert.equal(await c.get('hits'), 6);
    assert.equal(await c.increment('short', 1, 0.2), 1);
    await sleep(300);
    assert.equal(await c.get('short'), null);
  });

  it('mget and mset', async () => {
    const c = ns();
    await c.mset({ a: { x: 1 }, b: [2], c: 'three' });
    assert.deepEqual(await c.mget(['a', 'b', 'missing', 'c']), [{ x: 1 }, [2], null, 'three']);
    await c.mset({ t: 1 }, 0.2);
    await sleep(300);
    assert.deepEqual(await c.mget(['t']), [null]);
  });
});

describe('secondary indexes', () => {
  it('getByIndex and getKeysByIndex find items by index value', async () => {
    const users = ns();
    await users.set('1', { name: 'Ada', team: 'core' }, { indexes: { team: 'core', email: 'ada@x.io' } });
    await users.set('2', { name: 'Bob', team: 'core' }, { indexes: { team: 'core' } });
    await users.set('3', { name: 'Cy', team: 'web' }, { indexes: { team: 'web' } });
    assert.deepEqual((await users.getKeysByIndex('team', 'core')).sort(), ['1', '2']);
    assert.deepEqual(await users.getByIndex('email', 'ada@x.io'), [{ name: 'Ada', team: 'core' }]);
    assert.deepEqual(await users.getByIndex('team', 'nobody'), []);
  });

  it('delete removes the item from its indexes with no caller help', async () => {
    const users = ns();
    await users.set('1', { n: 1 }, { indexes: { team: 'core' } });
    await users.delete('1');
    assert.deepEqual(await users.getKeysByIndex('team', 'core'), []);
    assert.deepEqual(await raw.keys(`${prefix}${users.name}:*`), []);
  });

  it('replacing an item moves it to its new index values', async () => {
    const users = ns();
    await users.set('1', { team: 'core' }, { indexes: { team: 'core' } });
    await users.set('1', { team: 'web' }, { indexes: { team: 'web' } });
    assert.deepEqual(await users.getKeysByIndex('team', 'core'), []);
    assert.deepEqual(await users.getKeysByIndex('team', 'web'), ['1']);
  });

  it('thousands of expiring items leave no index entries behind', async () => {
    const c = ns();
    // a ttl long enough that a loaded machine still writes all 2000 before the first expires
    await Promise.all(Array.from({ length: 2000 }, (_, i) => c.set(`k${i}`, i, { ttl: 1, indexes: { bucket: `b${i % 3}` } })));
    assert.equal((await c.getKeysByIndex('bucket', 'b0')).length, 667);
    await sleep(1100);
    assert.deepEqual(await c.getByIndex('bucket', 'b0'), []);
    // the index keys themselves expire with their last member
    await sleep(50);
    assert.deepEqual(await raw.keys(`${prefix}${c.name}:*`), []);
  });

  it('setTtl moves the index entries with the item', async () => {
    const c = ns();
    await c.set('k', 1, { indexes: { kind: 'x' } });
    await c.setTtl('k', 0.2);
    await sleep(300);
    assert.deepEqual(await c.getKeysByIndex('kind', 'x'), []);
  });
});

describe('indexes, each step on one key', () => {
  it('concurrent sets of one key under different index values leave it under its last one only', async () => {
    const c = ns();
    await Promise.all(Array.from({ length: 40 }, (_, i) => c.set('k', i, { indexes: { parity: i % 2 ? 'odd' : 'even' } })));
    const value = (await c.get<number>('k'))!;
    const [mine, other] = value % 2 ? ['odd', 'even'] : ['even', 'odd'];
    assert.deepEqual(await c.getKeysByIndex('parity', mine), ['k']);
    assert.deepEqual(await c.getKeysByIndex('parity', other), []);
    assert.equal(await raw.command('ZCARD', [`${prefix}${c.name}:~idx:parity:${mine}`]), 1);
    assert.equal(await raw.exists(`${prefix}${c.name}:~idx:parity:${other}`), false);
  });

  it('index entries that no longer stand for their item are skipped and removed', async () => {
    const c = ns();
    await c.set('live', { n: 1 }, { indexes: { team: 'core' } });
    const index = `${prefix}${c.name}:~idx:team:core`;
    // left by a set that stopped half-way, of an item since replaced, or of one never stored
    await raw.command('ZADD', [index, 'inf', 'live\u00000123456789abcdef', 'inf', 'ghost\u0000fedcba9876543210', 'inf', 'live']);
    assert.deepEqual(await c.getByIndex('team', 'core'), [{ n: 1 }]);
    assert.equal(await raw.command('ZCARD', [index]), 1);
    assert.deepEqual(await c.getKeysByIndex('team', 'core'), ['live']);
  });

  it('mset replaces items and drops their old index entries', async () => {
    const c = ns();
    await c.set('a', 1, { indexes: { kind: 'x' } });
    await c.mset({ a: 2, b: 3 });
    assert.deepEqual(await c.mget(['a', 'b']), [2, 3]);
    assert.deepEqual(await c.getKeysByIndex('kind', 'x'), []);
    assert.equal(await raw.exists(`${prefix}${c.name}:~idx:kind:x`), false);
  });
});

describe('clear', () => {
  it('deletes its own namespace only, glob characters matching literally', async () => {
    const star = cache.namespace(`a*${randomUUID().slice(0, 6)}`);
    const name = star.name;
    const neighbour = cache.namespace(name.replace('*', 'b'));
    await star.set('1', 1, { indexes: { x: 'y' } });
    await star.set('2', 2);
    await neighbour.set('1', 1);
    assert.equal(await star.clear(), 3); // two items and one index
    assert.equal(await star.get('1'), null);
    assert.equal(await neighbour.get('1'), 1);
  });

  it('RedisService.deletePattern uses the same SCAN + UNLINK batches', async () => {
    await Promise.all(Array.from({ length: 2500 }, (_, i) => redis.set(`dp:${i}`, 'x')));
    assert.equal(await redis.deletePattern('dp:*'), 2500);
    assert.deepEqual(await redis.keys('dp:*'), []);
  });
});

describe('getOrSet', () => {
  it('100 concurrent calls on a miss run the loader once', async () => {
    const c = ns();
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(50);
      return { fresh: true };
    };
    const results = await Promise.all(Array.from({ length: 100 }, () => c.getOrSet('k', loader, 60)));
    assert.equal(loads, 1);
    assert.ok(results.every((r) => r.fresh === true));
    assert.deepEqual(await c.get('k'), { fresh: true });
    assert.deepEqual(await c.getOrSet('k', loader), { fresh: true });
    assert.equal(loads, 1);
  });

  it('a loader that throws is not cached and every waiter gets its error', async () => {
    const c = ns();
    let loads = 0;
    const failing = async () => {
      loads++;
      await sleep(20);
      throw new Error('database down');
    };
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, () => c.getOrSet('k', failing)));
    assert.ok(outcomes.every((o) => o.status === 'rejected' && /database down/.test(String(o.reason))));
    assert.equal(loads, 1);
    assert.equal(await c.exists('k'), false);
    assert.equal(await c.getOrSet('k', async () => 'ok'), 'ok');
  });

  it('a loader returning undefined or null caches nothing: it runs again next time, and each call counts as a miss', async () => {
    const name = `nothing${randomUUID().slice(0, 6)}`;
    const c = cache.namespace(name);
    for (const nothing of [undefined, null]) {
      let loads = 0;
      const loader = async () => {
        loads++;
        return nothing;
      };
      assert.equal(await c.getOrSet(`k-${nothing}`, loader, 60), nothing);
      assert.equal(await c.getOrSet(`k-${nothing}`, loader, 60), nothing);
      assert.equal(loads, 2);
      assert.equal(await c.exists(`k-${nothing}`), false);
    }
    assert.deepEqual(c.stats(), { hits: 0, misses: 4, hitRatio: 0 });
  });

  it('two handles of one namespace share the load in progress and the counters', async () => {
    const name = `shared${randomUUID().slice(0, 6)}`;
    const a = cache.namespace(name);
    const b = new CacheService(client).namespace(name);
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(50);
      return { id: 1 };
    };
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => a.getOrSet('k', loader)),
      ...Array.from({ length: 10 }, () => b.getOrSet('k', loader)),
    ]);
    assert.equal(loads, 1);
    assert.ok(results.every((r) => r.id === 1));
    assert.deepEqual(a.stats(), b.stats());
    assert.equal(a.stats().misses, 1);
  });
});

describe('stats', () => {
  it('counts hits and misses per namespace', async () => {
    const name = `stats${randomUUID().slice(0, 6)}`;
    const a = cache.namespace(name);
    await a.set('k', 1);
    await a.get('k');
    await a.get('k');
    await a.get('nope');
    const same = cache.namespace(name);
    assert.deepEqual(same.stats(), { hits: 2, misses: 1, hitRatio: 2 / 3 });
    assert.deepEqual(ns().stats(), { hits: 0, misses: 0, hitRatio: 0 });
  });
});

describe('CacheService bad input', () => {
  it('bad names, keys, ttls, indexes and values are refused before anything is written', async () => {
    assert.throws(() => cache.namespace(''), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => cache.namespace('a:b'), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => cache.namespace('a', { defaultTtl: 0 }), { code: 'ERR_INVALID_ARGUMENT' });
    const c = ns();
    for (const key of [any(''), any(undefined), any(1), '~idx:x']) {
      await assert.rejects(c.set(key, 1), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(c.get(key), { code: 'ERR_INVALID_ARGUMENT' });
    }
    for (const ttl of [0, -1, NaN, Infinity]) {
      await assert.rejects(c.set('k', 1, { ttl }), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(c.setTtl('k', ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
    await assert.rejects(c.set('k', 1, { indexes: any({ team: 5 }) }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(c.set('k', 1, any({ index: {} })), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(c.set('k', undefined), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(c.set('k', { n: 1n }), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(c.update('k', any([1])), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(c.increment('k', 1.5), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(c.getOrSet('k', any('not a function')), { code: 'ERR_INVALID_ARGUMENT' });
    assert.deepEqual(await raw.keys(`${prefix}${c.name}:*`), []);
  });
});
