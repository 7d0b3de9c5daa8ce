import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PubSubService, RedisClient } from 'nestjs-redis-native';
import { stopSharedRedis, testConnectOptions } from './support/redis-server';

let client: RedisClient;
let pubsub: PubSubService;

before(async () => {
  client = await RedisClient.connect(await testConnectOptions());
  pubsub = new PubSubService(client);
});

after(async () => {
  await client.close();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;

describe('Subscription', () => {
  it('a channel subscription names its channel and is not a pattern', async () => {
    const ch = `ch-${randomUUID()}`;
    const sub = await pubsub.subscribe(ch, () => {});
    assert.equal(sub.channel, ch);
    assert.equal(sub.pattern, false);
    await sub.unsubscribe();
  });

  it('a pattern subscription names its pattern and is a pattern', async () => {
    const pattern = `ch-${randomUUID()}.*`;
    const sub = await pubsub.psubscribe(pattern, () => {});
    assert.equal(sub.channel, pattern);
    assert.equal(sub.pattern, true);
    await sub.unsubscribe();
  });

  it('unsubscribe after the client was closed resolves: nothing is subscribed any more', async () => {
    const own = await RedisClient.connect(await testConnectOptions());
    const sub = await new PubSubService(own).subscribe(`ch-${randomUUID()}`, () => {});
    await own.close();
    await sub.unsubscribe();
    await sub.unsubscribe();
  });
});

describe('subscribe options', () => {
  it('options that are not an object are refused', async () => {
    for (const bad of [true, 'json', 1]) {
      await assert.rejects(
        pubsub.subscribe('c', () => {}, any(bad)),
        {
          code: 'ERR_INVALID_ARGUMENT',
          message: 'subscribe options must be an object',
        },
      );
    }
  });

  it('null options are the defaults', async () => {
    const sub = await pubsub.subscribe(`ch-${randomUUID()}`, () => {}, any(null));
    await sub.unsubscribe();
  });
});
