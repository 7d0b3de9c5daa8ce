import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LockService } from 'nestjs-redis-native';
import { prefixedClients, stopSharedRedis } from './support/redis-server';
import type { RedisClient } from 'nestjs-redis-native';

let client: RedisClient;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;

describe('retryDelayMs', () => {
  it('a negative, huge or non-number retryDelayMs is refused before trying', async () => {
    const locks = new LockService(client);
    for (const bad of [-1, 1e9, '10', true]) {
      await assert.rejects(locks.acquire('more-lock', 1000, { retryDelayMs: any(bad) }), {
        code: 'ERR_INVALID_ARGUMENT',
        message: 'option `retryDelayMs` must be a number of ms >= 0',
      });
    }
  });

  it('a retryDelayMs of 0 retries at once', async () => {
    const locks = new LockService(client);
    const held = await locks.acquire('more-busy', 5000);
    assert.ok(held);
    const started = Date.now();
    assert.equal(await locks.acquire('more-busy', 5000, { retryCount: 3, retryDelayMs: 0 }), null);
    assert.ok(Date.now() - started < 1000);
    await held.release();
  });
});
