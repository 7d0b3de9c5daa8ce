import { randomUUID } from 'node:crypto';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { startRedis, type PrivateRedis } from './local-redis';

export { freePort, sleep, startRedis, type PrivateRedis, type ServerTls } from './local-redis';

let shared: Promise<PrivateRedis> | undefined;

/**
 * The Redis the tests of this process use: REDIS_URL when given, otherwise a private
 * redis-server started on first use and stopped by `stopSharedRedis()`.
 */
export async function testRedisUrl(): Promise<string> {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  shared ??= startRedis();
  return (await shared).url;
}

export async function stopSharedRedis(): Promise<void> {
  if (shared) {
    const s = await shared;
    shared = undefined;
    await s.stop();
  }
}

/** A key prefix no other test uses. */
export function uniquePrefix(): string {
  return `test:${randomUUID()}:`;
}

/**
 * Two clients on the test Redis: `redis` with a fresh `prefix`, and `raw` without one, to
 * look at what is really stored. `close()` deletes the prefixed keys and closes both.
 */
export async function prefixedClients(): Promise<{
  prefix: string;
  client: RedisClient;
  redis: RedisService;
  raw: RedisService;
  close(): Promise<void>;
}> {
  const url = await testRedisUrl();
  const prefix = uniquePrefix();
  const client = await RedisClient.connect({ url, keyPrefix: prefix });
  const rawClient = await RedisClient.connect({ url });
  const raw = new RedisService(rawClient);
  return {
    prefix,
    client,
    redis: new RedisService(client),
    raw,
    async close() {
      await raw.deletePattern(`${prefix}*`);
      await client.close();
      await rawClient.close();
    },
  };
}
