import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RedisClient, RedisService, type RedisClientEvent } from 'nestjs-redis-native';
import { onlyStandalone, sleep, startRedis, stopSharedRedis, testConnectOptions } from './support/redis-server';

/** Connection events: what a client tells its listeners about losing and regaining Redis. */

const ownServer = onlyStandalone('kills, stops or restarts a server of its own');

after(async () => {
  await stopSharedRedis();
});

type Seen = [string, RedisClientEvent];

function record(client: RedisClient): Seen[] {
  const seen: Seen[] = [];
  for (const event of ['error', 'reconnecting', 'ready', 'end'] as const) {
    client.on(event, (e) => seen.push([event, e]));
  }
  return seen;
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('connection events', () => {
  it('a lost connection emits error, then reconnecting per attempt, then ready when it is back', ownServer, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url, reconnect: { minDelayMs: 20, maxDelayMs: 50 } });
    const seen = record(client);
    const redis = new RedisService(client);
    await server.kill();
    await redis.ping().catch(() => {}); // notices the loss
    await until(() => seen.filter(([e]) => e === 'reconnecting').length >= 2, 'two reconnect attempts');
    await server.start();
    await until(() => seen.some(([e]) => e === 'ready'), 'ready');
    const names = seen.map(([e]) => e);
    assert.equal(names[0], 'error');
    assert.equal(names.at(-1), 'ready');
    assert.ok(
      names.slice(1, -1).every((n) => n === 'reconnecting'),
      names.join(','),
    );
    const [, error] = seen[0];
    assert.equal(error.address, `127.0.0.1:${server.port}`);
    assert.equal(error.error?.code, 'ERR_REDIS_CONNECTION');
    const [, first] = seen[1];
    assert.equal(first.attempt, 1);
    assert.ok(typeof first.delayMs === 'number' && first.delayMs <= 50);
    const [, ready] = seen.at(-1)!;
    assert.equal(ready.attempts, names.length - 2);
    assert.ok(await redis.ping());
    await client.close();
    await server.stop();
  });

  it('reconnecting that gives up emits end with reason gave-up', ownServer, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url, reconnect: { minDelayMs: 10, maxDelayMs: 20, maxAttempts: 2 } });
    const seen = record(client);
    await server.stop();
    await new RedisService(client).ping().catch(() => {});
    await until(() => seen.some(([e]) => e === 'end'), 'end');
    const [, end] = seen.find(([e]) => e === 'end')!;
    assert.equal(end.reason, 'gave-up');
    assert.equal(end.attempts, 2);
    assert.equal(end.error?.code, 'ERR_REDIS_CONNECTION');
    assert.equal(seen.filter(([e]) => e === 'reconnecting').length, 2);
    await client.close();
  });

  it('close() emits end with reason closed, once', async () => {
    const client = await RedisClient.connect(await testConnectOptions());
    const seen = record(client);
    await client.close();
    await client.close();
    await until(() => seen.length > 0, 'end');
    await sleep(50);
    assert.deepEqual(
      seen.map(([e, p]) => [e, p.reason]),
      [['end', 'closed']],
    );
  });

  it('off removes a listener; on and off return the client', ownServer, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url, reconnect: { minDelayMs: 10, maxDelayMs: 20 } });
    const removed: string[] = [];
    const kept: string[] = [];
    const listener = () => removed.push('error');
    assert.equal(client.on('error', listener), client);
    client.on('error', () => kept.push('error'));
    assert.equal(client.off('error', listener), client);
    client.off('ready', listener); // not added for that event: nothing happens
    await server.kill();
    await new RedisService(client).ping().catch(() => {});
    await until(() => kept.length > 0, 'the kept listener');
    await sleep(50);
    assert.deepEqual(removed, []);
    await client.close();
  });

  it('unknown events and listeners that are not functions are ERR_INVALID_ARGUMENT', async () => {
    const client = await RedisClient.connect(await testConnectOptions());
    assert.throws(() => client.on('connect' as any, () => {}), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => client.on('error', 'log' as any), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => client.off(undefined as any, () => {}), { code: 'ERR_INVALID_ARGUMENT' });
    await client.close();
  });

  it('listeners do not keep the process running', async () => {
    const script = join(__dirname, 'fixtures', 'listen-then-exit.js');
    const options = JSON.stringify(await testConnectOptions());
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [script, options], { timeout: 10_000 }, (error, stdout) =>
        error ? reject(error) : resolve(stdout),
      );
    });
    assert.equal(out.trim(), 'listening');
  });
});
