import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CacheService, RedisService } from 'nestjs-redis-native';
import { prefixedClients, stopSharedRedis } from './support/redis-server';
import type { RedisClient } from 'nestjs-redis-native';

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

describe('mget / mset edge cases', () => {
  it('mget of no keys is [] (nothing is sent)', async () => {
    assert.deepEqual(await new CacheService(client).namespace('more').mget([]), []);
  });

  it('mset of an empty object resolves and writes nothing', async () => {
    await new CacheService(client).namespace('more-empty').mset({});
    assert.deepEqual(await raw.keys(`${prefix}*more-empty*`), []);
  });

  it('mset refuses an empty key and a key in the index space, and writes none of the entries', async () => {
    const c = new CacheService(client).namespace('more-bad');
    for (const bad of ['', '~idx:team']) {
      await assert.rejects(c.mset({ ok: 1, [bad]: 2 }), {
        code: 'ERR_INVALID_ARGUMENT',
        message: `entries: \`${bad}\` is not a valid key`,
      });
    }
    assert.equal(await c.get('ok'), null);
  });
});

describe('set options', () => {
  it('indexes that are not an object of strings are refused', async () => {
    const c = new CacheService(client).namespace('more-idx');
    for (const bad of ['team', ['core'], 5]) {
      await assert.rejects(c.set('k', 1, { indexes: any(bad) }), {
        code: 'ERR_INVALID_ARGUMENT',
        message: 'option `indexes` must be an object of strings',
      });
    }
    assert.equal(await c.exists('k'), false);
  });
});
