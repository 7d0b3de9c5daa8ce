#!/usr/bin/env node
// Runs the TypeScript test suites again on every Node.js release line users run (22 and 24
// LTS, 26 current), besides the Node that runs `npm test` itself. Each Node comes from
// the npm registry (the `node-<platform>-<arch>` packages carry the official binaries)
// into .node-versions/ inside this checkout, fetched once and reused.
//
// Expects `npm run build` and the compiled tests (.test-build/) to exist.
// NODE_VERSIONS=22.23.3,24.21.0 picks other versions; NODE_VERSIONS= (empty) skips.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const store = path.join(root, '.node-versions');
const DEFAULT_VERSIONS = ['22.23.3', '24.21.0', '26.10.0'];

const requested = process.env.NODE_VERSIONS;
const versions =
  requested === undefined
    ? DEFAULT_VERSIONS
    : requested
        .split(',')
        .map((v) => v.trim())
        .filter(Boolean);
if (versions.length === 0) {
  process.stdout.write('# NODE_VERSIONS is empty: no other Node versions tested\n');
  process.exit(0);
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const platform = process.platform === 'win32' ? 'win' : process.platform;
const packageName = `node-${platform}-${process.arch}`;

/** The path of the `node` binary of `version`, fetched from the npm registry if needed. */
function nodeBinary(version) {
  const dir = path.join(store, version);
  const bin = process.platform === 'win32' ? path.join(dir, 'bin', 'node.exe') : path.join(dir, 'bin', 'node');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(dir, { recursive: true });
  process.stdout.write(`# fetching ${packageName}@${version} from the npm registry\n`);
  const packed = JSON.parse(
    execFileSync(npm, ['pack', `${packageName}@${version}`, '--json', '--pack-destination', dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
      shell: process.platform === 'win32',
    }).toString(),
  );
  const tarball = path.join(dir, packed[0].filename);
  execFileSync('tar', ['-xzf', tarball, '-C', dir, '--strip-components=1']);
  fs.rmSync(tarball);
  if (!fs.existsSync(bin)) throw new Error(`${packageName}@${version} has no ${path.relative(dir, bin)}`);
  return bin;
}

const testDir = path.join(root, '.test-build', '__test__');
// Left out on the other Node versions, to keep CI within its time: these start a Redis
// Cluster or a Sentinel set-up of their own and kill its nodes, which tests the servers'
// failover and the client's Rust engine, not anything that depends on Node's version
// (they run on the Node of `npm test`). Everything else runs on every version.
const NOT_REPEATED = new Set(['cluster.test.js', 'sentinel.test.js']);
const testFiles = fs
  .readdirSync(testDir)
  .filter((f) => f.endsWith('.test.js') && !NOT_REPEATED.has(f))
  .map((f) => path.join(testDir, f));

const results = [];
for (const version of versions) {
  const node = nodeBinary(version);
  const reported = execFileSync(node, ['--version']).toString().trim();
  process.stdout.write(`\n# TypeScript suites on Node ${reported} (all but ${[...NOT_REPEATED].join(', ')})\n`);
  const run = spawnSync(node, ['--test', '--test-concurrency=1', ...testFiles], { cwd: root, stdio: 'inherit' });
  results.push([reported, run.status === 0]);
}

process.stdout.write('\n');
for (const [version, ok] of results) process.stdout.write(`# Node ${version}: ${ok ? 'passed' : 'FAILED'}\n`);
if (results.some(([, ok]) => !ok)) process.exit(1);
