import { randomUUID } from 'node:crypto';
import { RedisClient, RedisService, type RedisOptions } from 'nestjs-redis-native';
import { startCluster, type LocalCluster } from './cluster';
import { startRedis, type PrivateRedis } from './local-redis';

export { freePort, settled, sleep, startRedis, type PrivateRedis, type ServerTls } from './local-redis';

// Every script refuses to touch a key that is not in its KEYS, as Redis Cluster requires
// (strict keys, see CONTRIBUTING.md): read by the addon when a script is first used.
process.env.NESTJS_REDIS_NATIVE_STRICT_KEYS ??= '1';

let shared: Promise<PrivateRedis> | undefined;
let sharedCluster: Promise<LocalCluster> | undefined;

/**
 * One standalone Redis for the tests of this process, whatever `TEST_TOPOLOGY` says: REDIS_URL
 * when given, otherwise a private redis-server started on first use and stopped by
 * `stopSharedRedis()`. For tests about connecting to one server by its url; the others take
 * `testConnectOptions()`.
 */
export async function testRedisUrl(): Promise<string> {
  if (process.env.REDIS_URL) return process.env.REDIS_URL;
  shared ??= startRedis();
  return (await shared).url;
}

/**
 * What the suites run against: `TEST_TOPOLOGY=cluster`, `TEST_TOPOLOGY=memory` (the
 * in-process `memory://` store), or a standalone server (the default).
 */
export function testTopology(): 'standalone' | 'cluster' | 'memory' {
  const topology = process.env.TEST_TOPOLOGY ?? 'standalone';
  if (topology !== 'standalone' && topology !== 'cluster' && topology !== 'memory') {
    throw new Error(`TEST_TOPOLOGY must be 'standalone', 'cluster' or 'memory', not '${topology}'`);
  }
  return topology;
}

/** The connection options of the test Redis, as `RedisClient.connect()` and `RedisModule.forRoot()` take them. */
export type TestConnectOptions = RedisOptions & ({ url: string } | { cluster: { nodes: string[] } });

let memoryName: string | undefined;

/**
 * The url of the in-process store of `TEST_TOPOLOGY=memory`: `memory://<name>`, one name for
 * the whole process, so every client a test connects shares one keyspace as they would
 * share the standalone server. TEST_MEMORY_URL overrides it; with TEST_MEMORY_STANDIN=1 a
 * redis-server stands in for the store (`testRedisUrl()`), to run the memory suites, with
 * their skips, on a build without `memory://`.
 */
export async function testMemoryUrl(): Promise<string> {
  if (process.env.TEST_MEMORY_URL) return process.env.TEST_MEMORY_URL;
  if (process.env.TEST_MEMORY_STANDIN === '1') return testRedisUrl();
  memoryName ??= `test-${process.pid}-${randomUUID()}`;
  return `memory://${memoryName}`;
}

/**
 * How to reach the test Redis of `testTopology()`. Standalone: `{ url }` of `testRedisUrl()`.
 * Cluster: `{ cluster: { nodes } }` of REDIS_CLUSTER_NODES (comma-separated urls) when given,
 * otherwise of a local cluster (3 masters, 3 replicas) started on first use and stopped by
 * `stopSharedRedis()`. Memory: `{ url: 'memory://<name>' }` of `testMemoryUrl()`, one
 * keyspace for the process. Spread it and add what the test needs:
 * `RedisClient.connect({ ...(await testConnectOptions()), keyPrefix })`.
 */
export async function testConnectOptions(): Promise<TestConnectOptions> {
  const topology = testTopology();
  if (topology === 'standalone') return { url: await testRedisUrl() };
  if (topology === 'memory') return { url: await testMemoryUrl() };
  if (process.env.REDIS_CLUSTER_NODES) return { cluster: { nodes: process.env.REDIS_CLUSTER_NODES.split(',') } };
  sharedCluster ??= startCluster();
  return { cluster: { nodes: [...(await sharedCluster).nodes] } };
}

/**
 * Options of a test (or `describe`) that can only run on a standalone server: skipped on the
 * cluster and on `memory://`, with `reason` (on memory://, `onMemory` when the reason is the
 * cluster's). `it('...', onlyStandalone('kills the server'), async () => ...)`.
 */
export function onlyStandalone(reason: string, onMemory = reason): { skip?: string } {
  const topology = testTopology();
  if (topology === 'memory') return { skip: `standalone only: ${onMemory}` };
  return topology === 'cluster' ? { skip: `standalone only: ${reason}` } : {};
}

/**
 * Options of a test (or `describe`) that cannot run on a cluster, but can on one server and on
 * `memory://`: skipped on the cluster with `reason`.
 */
export function notOnCluster(reason: string): { skip?: string } {
  return testTopology() === 'cluster' ? { skip: `standalone only: ${reason}` } : {};
}

/**
 * Options of a test (or `describe`) that needs a real server (one it inspects, or commands
 * the in-process store does not have): skipped on `memory://` (TEST_TOPOLOGY=memory) with
 * `reason`, run on standalone and cluster. `it('...', notOnMemory('reads INFO'), async () => ...)`.
 */
export function notOnMemory(reason: string): { skip?: string } {
  return testTopology() === 'memory' ? { skip: `not on memory://: ${reason}` } : {};
}

/** Stops what `testRedisUrl()` and `testConnectOptions()` started. Every suite calls it in `after`. */
export async function stopSharedRedis(): Promise<void> {
  const [server, cluster] = [shared, sharedCluster];
  shared = undefined;
  sharedCluster = undefined;
  await Promise.all([server?.then((s) => s.stop()), cluster?.then((c) => c.stop())]);
}

/** A key prefix no other test uses. */
export function uniquePrefix(): string {
  return `test:${randomUUID()}:`;
}

/**
 * Two clients on the test Redis (`testConnectOptions()`): `redis` with a fresh `prefix`, and
 * `raw` without one, to look at what is really stored. `close()` deletes the prefixed keys
 * and closes both.
 */
export async function prefixedClients(): Promise<{
  prefix: string;
  client: RedisClient;
  redis: RedisService;
  raw: RedisService;
  close(): Promise<void>;
}> {
  const options = await testConnectOptions();
  const prefix = uniquePrefix();
  const client = await RedisClient.connect({ ...options, keyPrefix: prefix });
  const rawClient = await RedisClient.connect(options);
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
