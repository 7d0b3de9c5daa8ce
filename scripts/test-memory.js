#!/usr/bin/env node
// Runs the service suites again against the in-process store, with TEST_TOPOLOGY=memory:
// their testConnectOptions() (__test__/support/redis-server.ts) then connect with `{ url:
// 'memory://<name>' }`, one name per test process (so every client of a test shares one
// keyspace, as they share the standalone server), and the tests that need a real server
// (they start, kill, pause or inspect one, or send commands memory:// does not have) are
// skipped with their reason (onlyStandalone(), notOnMemory()). (The differential test,
// __test__/differential.test.ts, which compares memory:// with a redis-server command by
// command, is one of the standalone suites: `npm run test:ts` runs it.)
//
// When this build refuses `memory://`, it fails (exit 1), unless TEST_MEMORY_STANDIN=1:
// then a redis-server stands in for the store, to check the suites and their skips.
//
// Expects `npm run build` and the compiled tests (.test-build/) to exist. Arguments are
// passed on to `node --test` (e.g. --test-name-pattern=...).
'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

// The suites of scripts/test-cluster.js, plus the ones that can run on memory:// but not
// on a cluster (near-cache, adapters).
const SUITES = [
  'redis-service',
  'redis-service-more',
  'redis-service-replies',
  'token-service',
  'session-service',
  'idempotency-service',
  'rate-limit-service',
  'rate-limit-service-more',
  'lock-service',
  'lock-service-more',
  'cache-service',
  'cache-service-more',
  'pubsub-service',
  'pubsub-service-more',
  'errors',
  'bad-input',
  'bad-input-more',
  'connection',
  'connection-events',
  'health-metrics',
  'nest',
  'idempotent.e2e',
  'rate-limit.e2e',
  'rate-limit-default.e2e',
  'topology-support',
  'adapters-throttler',
  'adapters-session',
  'adapters-keyv',
  'adapters-metrics',
  'near-cache',
  'adapters',
];
// Not run here: every test of these starts, kills, pauses or inspects a server of its own
// (reliability, transient-errors, tls, soak, nest-health, nest-connection-logging,
// idempotent-outage.e2e, rate-limit-outage.e2e), or a cluster or sentinels (cluster,
// sentinel).

const files = SUITES.map((name) => path.join(root, '.test-build', '__test__', `${name}.test.js`));

/** undefined when this build connects to `memory://`, otherwise why not. */
async function memoryRefused() {
  const { RedisClient } = require(path.join(root, 'index.js'));
  try {
    const client = await RedisClient.connect({ url: `memory://probe-${process.pid}`, connectTimeoutMs: 2000 });
    await client.close();
    return undefined;
  } catch (e) {
    return `${e.code ?? 'Error'}: ${e.message}`;
  }
}

async function main() {
  const env = { ...process.env, TEST_TOPOLOGY: 'memory' };
  const refused = await memoryRefused();
  if (refused) {
    if (process.env.TEST_MEMORY_STANDIN !== '1') {
      process.stderr.write(`test-memory: memory:// is refused by this build (${refused})\n`);
      process.exitCode = 1;
      return;
    }
    process.stdout.write(`# memory:// is refused by this build (${refused}): a redis-server stands in (TEST_MEMORY_STANDIN=1)\n`);
  }
  const started = Date.now();
  const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...process.argv.slice(2), ...files], {
    stdio: 'inherit',
    env,
  });
  const stop = () => child.kill('SIGTERM');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const [code, signal] = await new Promise((resolve) => child.once('exit', (...exit) => resolve(exit)));
  process.stdout.write(`# memory suites: ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.exitCode = code ?? (signal ? 1 : 0);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exitCode = 1;
});
