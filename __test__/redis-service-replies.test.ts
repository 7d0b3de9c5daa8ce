import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isRedisError, RedisService } from 'nestjs-redis-native';
import { prefixedClients, stopSharedRedis } from './support/redis-server';

/**
 * How every kind of Redis reply reaches JavaScript through the raw `command()` and
 * `pipeline()` calls: strings stay strings, bytes that are not UTF-8 become Buffers,
 * integers become numbers, nil becomes null, arrays keep their order, and a refused
 * command in a pipeline becomes an Error in its own slot.
 */

let redis: RedisService;
let closeClients: () => Promise<void>;

before(async () => {
  ({ redis, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

describe('command() replies', () => {
  it('a UTF-8 bulk string is a string', async () => {
    await redis.set('utf8', 'héllo 🔑');
    assert.equal(await redis.command('GET', ['utf8']), 'héllo 🔑');
  });

  it('an empty bulk string is an empty string, not null', async () => {
    await redis.set('empty', '');
    assert.equal(await redis.command('GET', ['empty']), '');
  });

  it('a bulk string that is not UTF-8 is a Buffer holding the exact bytes', async () => {
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x41]);
    await redis.setBuffer('bin', bytes);
    const reply = await redis.command('GET', ['bin']);
    assert.ok(Buffer.isBuffer(reply), `got ${typeof reply}`);
    assert.ok(reply.equals(bytes));
  });

  it('nil (a missing key) is null', async () => {
    assert.equal(await redis.command('GET', ['no-such-key']), null);
  });

  it('an integer reply is a number, negative ones too', async () => {
    assert.equal(await redis.command('INCRBY', ['n', 41]), 41);
    assert.equal(await redis.command('DECRBY', ['n', 50]), -9);
  });

  it('an integer past 2^53 is the nearest number; GET reads the exact digits', async () => {
    await redis.set('big', '9007199254740993');
    assert.equal(await redis.command('INCRBY', ['big', 0]), 9007199254740992);
    assert.equal(await redis.command('GET', ['big']), '9007199254740993');
  });

  it('a status reply is its text', async () => {
    assert.equal(await redis.command('PING'), 'PONG');
    assert.equal(await redis.command('SET', ['status', 'v']), 'OK');
    assert.equal(await redis.command('TYPE', ['status']), 'string');
  });

  it('an array keeps its order, and its nil items are null', async () => {
    await redis.set('a', '1');
    await redis.set('b', '2');
    assert.deepEqual(await redis.command('MGET', ['a', 'missing', 'b']), ['1', null, '2']);
  });

  it('an empty array is []', async () => {
    assert.deepEqual(await redis.command('LRANGE', ['no-list', 0, -1]), []);
  });

  it('in an array, an item that is not UTF-8 is a Buffer and its neighbours stay strings', async () => {
    await redis.setBuffer('mixed-bin', Buffer.from([0xc3]));
    await redis.set('mixed-text', 'ok');
    const reply = (await redis.command('MGET', ['mixed-text', 'mixed-bin'])) as unknown[];
    assert.equal(reply[0], 'ok');
    assert.ok(Buffer.isBuffer(reply[1]));
    assert.deepEqual([...(reply[1] as Buffer)], [0xc3]);
  });

  it('nested arrays are nested arrays', async () => {
    assert.deepEqual(await redis.command('EVAL', ["return {1, {'two', {3}}, {}}", 0]), [1, ['two', [3]], []]);
  });

  it("a script's true and false arrive as Redis sends them on RESP2: 1 and null", async () => {
    assert.equal(await redis.command('EVAL', ['return true', 0]), 1);
    assert.equal(await redis.command('EVAL', ['return false', 0]), null);
  });

  it("a script's status reply is its text", async () => {
    assert.equal(await redis.command('EVAL', ["return {ok='fine'}", 0]), 'fine');
  });

  it("a script's error reply rejects with ERR_REDIS_COMMAND and the script's own text", async () => {
    await assert.rejects(redis.command('EVAL', ["return {err='MYERR out of stock'}", 0]), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      assert.match(e.message, /MYERR out of stock/);
      return true;
    });
  });
});

describe('pipeline() replies', () => {
  it('each slot is converted as command() converts a reply', async () => {
    const bytes = Buffer.from([0x80, 0x81]);
    await redis.setBuffer('p-bin', bytes);
    const replies = await redis.pipeline([
      ['SET', 'p-text', 'v'],
      ['GET', 'p-text'],
      ['INCR', 'p-n'],
      ['GET', 'p-none'],
      ['GET', 'p-bin'],
      ['MGET', 'p-text', 'p-none'],
    ]);
    assert.equal(replies.length, 6);
    assert.deepEqual(replies.slice(0, 4), ['OK', 'v', 1, null]);
    assert.ok(Buffer.isBuffer(replies[4]) && replies[4].equals(bytes));
    assert.deepEqual(replies[5], ['v', null]);
  });

  it('a refused command is an Error in its slot: ERR_REDIS_COMMAND with the server text, an isRedisError', async () => {
    const replies = await redis.pipeline([['EVAL', "return {err='MYERR refused'}", 0], ['PING']]);
    const slot = replies[0];
    assert.ok(slot instanceof Error);
    assert.ok(isRedisError(slot));
    assert.equal(slot.code, 'ERR_REDIS_COMMAND');
    assert.equal(slot.message, 'MYERR refused');
    assert.equal(replies[1], 'PONG');
  });

  it('a pipeline whose commands all fail still resolves, with an Error in every slot', async () => {
    await redis.set('p-str', 'x');
    const replies = await redis.pipeline([
      ['LPUSH', 'p-str', 'a'],
      ['HGET', 'p-str', 'f'],
    ]);
    assert.equal(replies.length, 2);
    for (const slot of replies) {
      assert.ok(slot instanceof Error);
      assert.equal((slot as any).code, 'ERR_REDIS_COMMAND');
      assert.match((slot as Error).message, /^WRONGTYPE /);
    }
  });
});
