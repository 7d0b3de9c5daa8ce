#!/usr/bin/env node
// Runs the service suites again against a Redis Cluster, with TEST_TOPOLOGY=cluster: their
// testConnectOptions() (__test__/support/redis-server.ts) then connect with `{ cluster: {
// nodes } }`, and the tests that only make sense on one server are skipped with their
// reason (onlyStandalone()). The cluster is REDIS_CLUSTER_NODES (comma-separated urls)
// when given, otherwise one local cluster (3 masters, 3 replicas, startCluster() of
// __test__/support/cluster.ts) started here for all the files and stopped at the end.
//
// Expects `npm run build` and the compiled tests (.test-build/) to exist. Arguments are
// passed on to `node --test` (e.g. --test-name-pattern=...).
'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

// The suites that use the test Redis through testConnectOptions() or prefixedClients().
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
];
// Not run here: every test of these starts, kills, pauses or inspects a standalone server
// of its own (reliability, transient-errors, tls, soak, nest-health,
// nest-connection-logging, idempotent-outage.e2e, rate-limit-outage.e2e).

const files = SUITES.map((name) => path.join(root, '.test-build', '__test__', `${name}.test.js`));

async function main() {
  let cluster;
  if (!process.env.REDIS_CLUSTER_NODES) {
    const { startCluster } = require(path.join(root, '.test-build', '__test__', 'support', 'cluster.js'));
    const started = Date.now();
    cluster = await startCluster();
    process.stdout.write(`# local cluster on ports ${cluster.ports.join(', ')}, ready in ${Date.now() - started} ms\n`);
  }
  const stop = () => cluster?.stop();
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  try {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...process.argv.slice(2), ...files], {
      stdio: 'inherit',
      env: {
        ...process.env,
        TEST_TOPOLOGY: 'cluster',
        ...(cluster ? { REDIS_CLUSTER_NODES: cluster.nodes.join(',') } : {}),
      },
    });
    const [code, signal] = await new Promise((resolve) => child.once('exit', (...exit) => resolve(exit)));
    process.exitCode = code ?? (signal ? 1 : 0);
  } finally {
    await stop();
  }
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exitCode = 1;
});
