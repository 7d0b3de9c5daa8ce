import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisService } from 'nestjs-redis-native';
import { notOnCluster, prefixedClients, sleep, stopSharedRedis } from './support/redis-server';

let redis: RedisService;
// A client without prefix, to look at what is really stored.
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;
const crossSlot = notOnCluster('ZUNIONSTORE of keys in different slots is refused by a cluster (CROSSSLOT)');

before(async () => {
  ({ redis, raw, prefix, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

describe('get / set / del / exists (seed signatures)', () => {
  it('get returns null for a missing key', async () => {
    assert.equal(await redis.get('missing'), null);
  });

  it('set then get returns the value', async () => {
    await redis.set('greeting', 'hello');
    assert.equal(await redis.get('greeting'), 'hello');
  });

  it('set keeps empty strings and unicode exactly', async () => {
    await redis.set('empty', '');
    await redis.set('unicode', 'zß水🍣\n\0end');
    assert.equal(await redis.get('empty'), '');
    assert.equal(await redis.get('unicode'), 'zß水🍣\n\0end');
  });

  it('set with a fractional ttl expires the key', async () => {
    await redis.set('short', 'v', 0.15);
    assert.equal(await redis.get('short'), 'v');
    await sleep(250);
    assert.equal(await redis.get('short'), null);
  });

  it('set without ttl removes an earlier expiry', async () => {
    await redis.set('persist', 'a', 10);
    await redis.set('persist', 'b');
    assert.equal(await redis.ttl('persist'), -1);
  });

  it('del removes one key and reports how many existed', async () => {
    await redis.set('d1', 'x');
    assert.equal(await redis.del('d1'), 1);
    assert.equal(await redis.del('d1'), 0);
    assert.equal(await redis.exists('d1'), false);
  });

  it('del takes an array of keys', async () => {
    await redis.set('m1', 'x');
    await redis.set('m2', 'x');
    assert.equal(await redis.del(['m1', 'm2', 'm3']), 2);
    assert.equal(await redis.del([]), 0);
  });

  it('exists is true only for present keys', async () => {
    await redis.set('here', '1');
    assert.equal(await redis.exists('here'), true);
    assert.equal(await redis.exists('not-here'), false);
  });
});

describe('expire / ttl', () => {
  it('ttl is null for a missing key and -1 without expiry', async () => {
    assert.equal(await redis.ttl('nope'), null);
    await redis.set('forever', '1');
    assert.equal(await redis.ttl('forever'), -1);
  });

  it('ttl reports remaining seconds with fractions', async () => {
    await redis.set('t', '1', 2.5);
    const left = await redis.ttl('t');
    assert.ok(left !== null && left > 2 && left <= 2.5, `ttl ${left}`);
    assert.notEqual(left, Math.floor(left!));
  });

  it('expire sets an expiry on an existing key and returns false for a missing one', async () => {
    await redis.set('e', '1');
    assert.equal(await redis.expire('e', 0.1), true);
    assert.equal(await redis.expire('missing-e', 10), false);
    await sleep(200);
    assert.equal(await redis.exists('e'), false);
  });
});

describe('incr', () => {
  it('starts from zero and adds 1 by default', async () => {
    assert.equal(await redis.incr('counter'), 1);
    assert.equal(await redis.incr('counter'), 2);
  });

  it('adds a given amount, negative allowed', async () => {
    assert.equal(await redis.incr('by', 10), 10);
    assert.equal(await redis.incr('by', -3), 7);
  });

  it('sets the ttl only when it creates the key', async () => {
    assert.equal(await redis.incr('window', 1, 0.3), 1);
    await sleep(150);
    assert.equal(await redis.incr('window', 1, 100), 2);
    const left = await redis.ttl('window');
    assert.ok(left !== null && left > 0 && left < 0.3, `ttl was extended: ${left}`);
    await sleep(250);
    assert.equal(await redis.get('window'), null);
  });

  it('is exact under 200 concurrent increments', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, () => redis.incr('concurrent', 1, 10)));
    assert.equal(new Set(results).size, 200);
    assert.equal(Math.max(...results), 200);
    assert.equal(await redis.get('concurrent'), '200');
  });

  it('rejects a non-integer amount', async () => {
    await assert.rejects(redis.incr('counter', 1.5), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('on a non-numeric value fails with the server text', async () => {
    await redis.set('text', 'abc');
    await assert.rejects(redis.incr('text'), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /not an integer/);
      return true;
    });
  });
});

describe('setNx', () => {
  it('sets only when absent', async () => {
    assert.equal(await redis.setNx('once', 'first'), true);
    assert.equal(await redis.setNx('once', 'second'), false);
    assert.equal(await redis.get('once'), 'first');
  });

  it('takes a ttl', async () => {
    assert.equal(await redis.setNx('nx-ttl', 'v', 0.1), true);
    await sleep(200);
    assert.equal(await redis.setNx('nx-ttl', 'again'), true);
  });

  it('lets exactly one of 100 concurrent callers win', async () => {
    const wins = await Promise.all(Array.from({ length: 100 }, (_, i) => redis.setNx('race', String(i), 10)));
    assert.equal(wins.filter(Boolean).length, 1);
  });
});

describe('mget / mset', () => {
  it('mget returns values in order with null for missing keys', async () => {
    await redis.set('a1', '1');
    await redis.set('a3', '3');
    assert.deepEqual(await redis.mget(['a1', 'a2', 'a3']), ['1', null, '3']);
    assert.deepEqual(await redis.mget([]), []);
  });

  it('mset sets all entries', async () => {
    await redis.mset({ b1: 'x', b2: 'y' });
    assert.deepEqual(await redis.mget(['b1', 'b2']), ['x', 'y']);
  });

  it('mset with ttl expires every entry', async () => {
    await redis.mset({ c1: 'x', c2: 'y' }, 0.15);
    const left = await redis.ttl('c2');
    assert.ok(left !== null && left > 0 && left <= 0.15);
    await sleep(250);
    assert.deepEqual(await redis.mget(['c1', 'c2']), [null, null]);
  });

  it('mset refuses a non-string value and writes nothing', async () => {
    await assert.rejects(redis.mset({ ok1: 'x', bad: 5 as unknown as string }), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('ok1'), false);
  });
});

describe('getJson / setJson', () => {
  it('round-trips objects, arrays and primitives', async () => {
    const value = { id: 1, name: 'Ada', tags: ['x'], nested: { ok: true, none: null } };
    await redis.setJson('user', value);
    assert.deepEqual(await redis.getJson('user'), value);
    await redis.setJson('arr', [1, 'two']);
    assert.deepEqual(await redis.getJson('arr'), [1, 'two']);
    await redis.setJson('num', 42);
    assert.equal(await redis.getJson('num'), 42);
  });

  it('serializes like JSON.stringify (toJSON, Dates, undefined fields dropped)', async () => {
    const when = new Date('2024-01-02T03:04:05.000Z');
    await redis.setJson('dated', { when, skip: undefined, custom: { toJSON: () => 'custom!' } });
    assert.equal(await redis.get('dated'), JSON.stringify({ when, custom: 'custom!' }));
  });

  it('getJson returns null for a missing key', async () => {
    assert.equal(await redis.getJson('no-json'), null);
  });

  it('setJson with ttl expires', async () => {
    await redis.setJson('jt', { a: 1 }, 0.1);
    await sleep(200);
    assert.equal(await redis.getJson('jt'), null);
  });

  it('getJson of stored non-JSON is ERR_SERIALIZATION', async () => {
    await redis.set('not-json', '{oops');
    await assert.rejects(redis.getJson('not-json'), { code: 'ERR_SERIALIZATION' });
  });

  it('setJson of a circular object is ERR_SERIALIZATION and writes nothing', async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await assert.rejects(redis.setJson('circ', circular), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(redis.setJson('big', { n: 10n }), { code: 'ERR_SERIALIZATION' });
    await assert.rejects(redis.setJson('undef', undefined), { code: 'ERR_SERIALIZATION' });
    assert.equal(await redis.exists('circ'), false);
  });
});

describe('getBuffer / setBuffer', () => {
  it('round-trips arbitrary bytes', async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 0x80, 0x0a]);
    await redis.setBuffer('bin', bytes);
    const back = await redis.getBuffer('bin');
    assert.ok(Buffer.isBuffer(back));
    assert.deepEqual(back, bytes);
  });

  it('getBuffer returns null for a missing key and bytes for text', async () => {
    assert.equal(await redis.getBuffer('no-bin'), null);
    await redis.set('txt', 'abc');
    assert.deepEqual(await redis.getBuffer('txt'), Buffer.from('abc'));
  });

  it('get of non-UTF-8 bytes is ERR_SERIALIZATION pointing at getBuffer', async () => {
    await redis.setBuffer('raw-bytes', Buffer.from([0xff, 0xfe]));
    await assert.rejects(redis.get('raw-bytes'), (e: any) => e.code === 'ERR_SERIALIZATION' && /getBuffer/.test(e.message));
  });

  it('setBuffer with ttl expires', async () => {
    await redis.setBuffer('bt', Buffer.from('x'), 0.1);
    await sleep(200);
    assert.equal(await redis.getBuffer('bt'), null);
  });
});

describe('keys / deletePattern', () => {
  it('keys finds matching keys by SCAN, without the prefix', async () => {
    await redis.mset({ 'scan:1': 'a', 'scan:2': 'b', 'other:1': 'c' });
    const found = (await redis.keys('scan:*')).sort();
    assert.deepEqual(found, ['scan:1', 'scan:2']);
  });

  it('keys honours a limit', async () => {
    const entries: Record<string, string> = {};
    for (let i = 0; i < 50; i++) entries[`lim:${i}`] = 'x';
    await redis.mset(entries);
    assert.equal((await redis.keys('lim:*', 10)).length, 10);
    assert.equal((await redis.keys('lim:*')).length, 50);
  });

  it('deletePattern deletes every match (across SCAN batches) and counts them', async () => {
    const entries: Record<string, string> = {};
    for (let i = 0; i < 2500; i++) entries[`bulk:${i}`] = 'x';
    await redis.mset(entries);
    await redis.set('keep', 'x');
    assert.equal(await redis.deletePattern('bulk:*'), 2500);
    assert.deepEqual(await redis.keys('bulk:*'), []);
    assert.equal(await redis.get('keep'), 'x');
  });
});

describe('pipeline / command', () => {
  it('pipeline returns replies in order', async () => {
    const replies = await redis.pipeline([
      ['SET', 'p1', '10'],
      ['INCRBY', 'p1', 5],
      ['GET', 'p1'],
      ['GET', 'p-missing'],
    ]);
    assert.deepEqual(replies, ['OK', 15, '15', null]);
  });

  it('a failing command in a pipeline puts an Error in its slot only', async () => {
    await redis.set('p-str', 'x');
    const replies = await redis.pipeline([
      ['HGET', 'p-str', 'f'],
      ['GET', 'p-str'],
    ]);
    assert.ok(replies[0] instanceof Error);
    assert.equal((replies[0] as any).code, 'ERR_REDIS_COMMAND');
    assert.equal(replies[1], 'x');
  });

  it('an empty pipeline resolves to []', async () => {
    assert.deepEqual(await redis.pipeline([]), []);
  });

  it('command sends any command and converts the reply', async () => {
    await redis.command('HSET', ['h', 'a', '1', 'b', '2']);
    const all = (await redis.command('HGETALL', ['h'])) as string[];
    assert.deepEqual(all, ['a', '1', 'b', '2']);
    assert.equal(await redis.command('HLEN', ['h']), 2);
    assert.equal(await redis.command('PING'), 'PONG');
  });

  it("command applies the key prefix to the command's keys", async () => {
    await redis.command('MSET', ['ck1', 'v1', 'ck2', 'v2']);
    assert.equal(await raw.get(`${prefix}ck1`), 'v1');
    assert.equal(await raw.get(`${prefix}ck2`), 'v2');
    assert.equal(await raw.get('ck1'), null);
  });

  it('command applies the prefix to script keys and movable keys', crossSlot, async () => {
    await redis.command('EVAL', ["return redis.call('SET', KEYS[1], ARGV[1])", 1, 'ev', 'val']);
    assert.equal(await raw.get(`${prefix}ev`), 'val');
    await redis.command('ZADD', ['z1', 1, 'a']);
    await redis.command('ZADD', ['z2', 2, 'b']);
    assert.equal(await redis.command('ZUNIONSTORE', ['zu', 2, 'z1', 'z2']), 2);
    assert.equal(await raw.command('ZCARD', [`${prefix}zu`]), 2);
  });

  it('command refuses commands that would block or change the shared connection', async () => {
    for (const [name, args] of [
      ['BLPOP', ['q', '0']],
      ['SUBSCRIBE', ['c']],
      ['SELECT', ['1']],
      ['MULTI', []],
    ] as const) {
      await assert.rejects(redis.command(name, [...args]), { code: 'ERR_INVALID_ARGUMENT' }, name);
    }
  });

  it('a server error from command is ERR_REDIS_COMMAND with the server text', async () => {
    await assert.rejects(redis.command('NOSUCHCOMMAND', []), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /unknown command/i);
      return true;
    });
  });
});

describe('ordering and concurrency', () => {
  it('calls made without awaiting reach the server in the order they were made', async () => {
    const pushes = Array.from({ length: 2000 }, (_, i) => redis.command('RPUSH', ['order:list', i]));
    const lengths = await Promise.all(pushes);
    assert.deepEqual(
      lengths,
      Array.from({ length: 2000 }, (_, i) => i + 1),
    );
    const stored = (await redis.command('LRANGE', ['order:list', 0, -1])) as string[];
    assert.deepEqual(
      stored,
      Array.from({ length: 2000 }, (_, i) => String(i)),
    );
  });

  it('calls made from timers, immediates, I/O callbacks and microtasks reach the server in the order they were made', async () => {
    const made: number[] = [];
    const calls: Promise<unknown>[] = [];
    const push = (i: number) => {
      made.push(i);
      calls.push(redis.command('RPUSH', ['order:turns', i]));
    };
    const scheduled: Promise<void>[] = [];
    for (let i = 0; i < 400; i++) {
      const how = i % 5;
      scheduled.push(
        new Promise<void>((resolve) => {
          const run = () => {
            push(i);
            resolve();
          };
          if (how === 0) setImmediate(run);
          else if (how === 1) setTimeout(run, 0);
          else if (how === 2) queueMicrotask(run);
          else if (how === 3) process.nextTick(run);
          else void redis.ping().then(run); // after a reply: in the callback of the socket
        }),
      );
    }
    await Promise.all(scheduled);
    await Promise.all(calls);
    const stored = (await redis.command('LRANGE', ['order:turns', 0, -1])) as string[];
    assert.deepEqual(stored, made.map(String));
  });

  it('single commands and pipelines issued together keep their order', async () => {
    const first = redis.set('order:k', 'one');
    const piped = redis.pipeline([
      ['GET', 'order:k'],
      ['SET', 'order:k', 'two'],
    ]);
    const last = redis.get('order:k');
    await first;
    assert.deepEqual(await piped, ['one', 'OK']);
    assert.equal(await last, 'two');
  });

  it('5000 concurrent increments of one key count exactly', async () => {
    const results = await Promise.all(Array.from({ length: 5000 }, () => redis.incr('order:counter')));
    assert.equal(new Set(results).size, 5000);
    assert.equal(Math.max(...results), 5000);
    assert.equal(await redis.get('order:counter'), '5000');
  });

  it('a failing command among concurrent ones rejects only its own call', async () => {
    await redis.command('LPUSH', ['order:a-list', 'x']);
    const calls = [redis.set('order:ok1', '1'), redis.incr('order:a-list'), redis.get('order:ok1')];
    const [a, b, c] = await Promise.allSettled(calls);
    assert.equal(a.status, 'fulfilled');
    assert.equal(b.status === 'rejected' && (b.reason as any).code, 'ERR_REDIS_COMMAND');
    assert.deepEqual(c, { status: 'fulfilled', value: '1' });
  });
});

describe('ping', () => {
  it('resolves to a round trip in milliseconds', async () => {
    const ms = await redis.ping();
    assert.equal(typeof ms, 'number');
    assert.ok(ms > 0 && ms < 1000, `ping ${ms}`);
  });
});

describe('scripts after SCRIPT FLUSH', () => {
  it('incr with ttl reloads its script transparently', async () => {
    await redis.incr('flush-ctr', 1, 10);
    await raw.command('SCRIPT', ['FLUSH']);
    assert.equal(await redis.incr('flush-ctr', 1, 10), 2);
  });
});
