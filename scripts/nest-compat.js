#!/usr/bin/env node
// Runs the Nest module tests (module wiring, health timeout, connection logging; @Idempotent() and
// @RateLimit() over Express and Fastify, also while Redis fails; @nestjs/throttler on
// RedisThrottlerStorage; @nestjs/cache-manager on KeyvRedisStore)
// against every NestJS major the package supports
// besides the one in devDependencies (12), the way a user gets the package: the
// `npm pack` tarball unpacked into an app whose NestJS versions come from the
// lockfiles in __test__/compat/nest<major>/.
//
// Expects `npm run build` and the compiled tests (.test-build/) to exist.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const work = path.join(root, '.compat');
const majors = fs
  .readdirSync(path.join(root, '__test__', 'compat'))
  .filter((d) => /^nest\d+$/.test(d))
  .sort();

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'] }).toString();

fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });

const packed = JSON.parse(run(npm, ['pack', '--json', '--pack-destination', work], root));
const tarball = path.join(work, packed[0].filename);
const unpacked = path.join(work, 'unpacked');
fs.mkdirSync(unpacked);
run('tar', ['-xzf', tarball, '-C', unpacked], root);

let failed = false;
for (const major of majors) {
  const app = path.join(work, major);
  fs.mkdirSync(app);
  for (const f of ['package.json', 'package-lock.json']) {
    fs.copyFileSync(path.join(root, '__test__', 'compat', major, f), path.join(app, f));
  }
  process.stdout.write(`\n# ${major}: npm ci\n`);
  run(npm, ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], app);
  fs.cpSync(path.join(unpacked, 'package'), path.join(app, 'node_modules', 'nestjs-redis-native'), { recursive: true });

  const tests = path.join(app, 'test');
  fs.mkdirSync(path.join(tests, 'support'), { recursive: true });
  const testFiles = [
    'nest.test.js',
    'nest-health.test.js',
    'nest-connection-logging.test.js',
    'idempotent.e2e.test.js',
    'idempotent-outage.e2e.test.js',
    'rate-limit.e2e.test.js',
    'rate-limit-default.e2e.test.js',
    'rate-limit-outage.e2e.test.js',
    'adapters-throttler.test.js',
    'adapters-keyv.test.js',
  ];
  for (const f of testFiles) fs.copyFileSync(path.join(root, '.test-build', '__test__', f), path.join(tests, f));
  fs.cpSync(path.join(root, '.test-build', '__test__', 'support'), path.join(tests, 'support'), { recursive: true });

  const core = require(path.join(app, 'node_modules', '@nestjs', 'core', 'package.json')).version;
  process.stdout.write(`# ${major}: Nest module tests against @nestjs/core ${core}\n`);
  const result = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...testFiles.map((f) => path.join(tests, f))], {
    cwd: app,
    stdio: 'inherit',
  });
  if (result.status !== 0) failed = true;
}

if (failed) {
  process.stderr.write('Nest compatibility tests failed\n');
  process.exit(1);
}
