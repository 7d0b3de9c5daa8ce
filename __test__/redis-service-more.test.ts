import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RedisService } from 'nestjs-redis-native';
import { notOnMemory, prefixedClients, stopSharedRedis } from './support/redis-server';

let redis: RedisService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;
const streams = notOnMemory('memory:// has no streams (XADD, XREAD)');

before(async () => {
  ({ redis, raw, prefix, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

describe('command() and stream reads', () => {
  it('XREAD with BLOCK is refused, since it would block the shared connection', async () => {
    await assert.rejects(redis.command('XREAD', ['block', 0, 'STREAMS', 'st', '$']), {
      code: 'ERR_INVALID_ARGUMENT',
      message: '`XREAD` with BLOCK blocks the shared connection for every caller',
    });
    await assert.rejects(redis.command('XREADGROUP', ['GROUP', 'g', 'c', 'BLOCK', 10, 'STREAMS', 'st', '>']), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  it(
    'XREAD without BLOCK is an ordinary command; the prefix goes on its stream keys and stays in the reply',
    streams,
    async () => {
      await redis.command('XADD', ['st', '1-1', 'f', 'v']);
      assert.deepEqual(await redis.command('XREAD', ['COUNT', 1, 'STREAMS', 'st', '0']), [
        [`${prefix}st`, [['1-1', ['f', 'v']]]],
      ]);
      assert.equal(await raw.command('XLEN', [`${prefix}st`]), 1);
    },
  );
});

describe('mset', () => {
  it('an empty object resolves and writes nothing', async () => {
    const before = await raw.keys(`${prefix}*`);
    await redis.mset({});
    await redis.mset({}, 60);
    assert.deepEqual(await raw.keys(`${prefix}*`), before);
  });
});
