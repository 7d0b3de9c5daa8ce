import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RateLimitService } from 'nestjs-redis-native';
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

describe('algorithm option', () => {
  it('an algorithm that is not a string is refused', async () => {
    const limiter = new RateLimitService(client);
    for (const bad of [1, true, ['fixed-window']]) {
      await assert.rejects(limiter.consume('more', { limit: 5, windowSeconds: 1, algorithm: any(bad) }), {
        code: 'ERR_INVALID_ARGUMENT',
        message: 'option `algorithm` must be a string',
      });
    }
  });

  it('an algorithm set to null is the default, fixed-window', async () => {
    const limiter = new RateLimitService(client);
    const result = await limiter.consume('more-null', { limit: 5, windowSeconds: 1, algorithm: any(null) });
    assert.equal(result.allowed, true);
    assert.equal(result.remaining, 4);
  });
});
