#!/usr/bin/env node
// Runs Keyv's compliance suite (@keyv/test-suite, unmodified) under vitest against Keyv's
// reference Map store and against KeyvRedisStore (__test__/keyv/keyv-test-suite.spec.mts),
// then compares: KeyvRedisStore must pass every test the Map store passes. (A test that
// fails on the Map store too fails inside the suite itself, whatever the store.)
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'keyv-suite-')), 'results.json');
const run = spawnSync(
  process.execPath,
  [
    path.join(root, 'node_modules/vitest/vitest.mjs'),
    'run',
    '--config',
    path.join(root, '__test__/keyv/vitest.config.mts'),
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${out}`,
  ],
  { cwd: root, stdio: 'inherit' },
);
if (!fs.existsSync(out)) {
  console.error(`keyv suite: vitest wrote no results (exit ${run.status})`);
  process.exit(1);
}
const results = JSON.parse(fs.readFileSync(out, 'utf8')).testResults.flatMap((file) => file.assertionResults);
const byStore = (store) => {
  const tests = results.filter((t) => t.ancestorTitles[0] === store);
  return { tests, passed: new Set(tests.filter((t) => t.status === 'passed').map((t) => t.title)) };
};
const baseline = byStore('Map store (baseline)');
const ours = byStore('KeyvRedisStore');
console.log(`\n@keyv/test-suite: Map store passes ${baseline.passed.size} of ${baseline.tests.length}`);
console.log(`@keyv/test-suite: KeyvRedisStore passes ${ours.passed.size} of ${ours.tests.length}`);
for (const t of baseline.tests.filter((t) => t.status !== 'passed')) {
  console.log(`  fails on the Map store too (inside the suite itself): ${t.title}`);
}
const missing = [...baseline.passed].filter((title) => !ours.passed.has(title));
if (baseline.tests.length === 0 || ours.tests.length !== baseline.tests.length) {
  console.error('keyv suite: the two stores did not run the same tests');
  process.exit(1);
}
if (missing.length > 0) {
  console.error(`KeyvRedisStore fails what the Map store passes:\n  ${missing.join('\n  ')}`);
  process.exit(1);
}
