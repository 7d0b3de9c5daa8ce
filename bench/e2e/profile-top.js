#!/usr/bin/env node
'use strict';
// The functions with the most self time in a V8 .cpuprofile (from `node --cpu-prof`):
//
//   node bench/e2e/profile-top.js <file.cpuprofile> [count]
//
// Self time is summed per function (name, file and line); percentages are of the time the
// process was not idle.

const fs = require('node:fs');
const path = require('node:path');

function topSelfTime(file, count = 10) {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byFunction = new Map();
  let busy = 0;
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    const name = functionName || '(anonymous)';
    if (name === '(idle)') continue;
    busy += us;
    const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    byFunction.set(key, { name, where, us: (byFunction.get(key)?.us ?? 0) + us });
  }
  const rows = [...byFunction.values()].sort((a, b) => b.us - a.us).slice(0, count);
  const lines = ['| self ms | % of busy | function | where |', '| --- | --- | --- | --- |'];
  for (const r of rows) {
    lines.push(`| ${(r.us / 1000).toFixed(0)} | ${((100 * r.us) / busy).toFixed(1)}% | ${r.name} | ${r.where} |`);
  }
  lines.push(`(busy: ${(busy / 1e6).toFixed(2)} s of ${((profile.endTime - profile.startTime) / 1e6).toFixed(2)} s profiled)`);
  return lines.join('\n');
}

/** `node_modules/<package>/...` or `node:...`, not the whole path. */
function shorten(url) {
  const p = url.replace(/^file:\/\//, '');
  const i = p.lastIndexOf('node_modules/');
  if (i >= 0) return p.slice(i + 'node_modules/'.length);
  if (p.startsWith('node:')) return p;
  return path.relative(process.cwd(), p);
}

module.exports = { topSelfTime };

if (require.main === module) {
  const [file, count] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node bench/e2e/profile-top.js <file.cpuprofile> [count]\n');
    process.exit(2);
  }
  process.stdout.write(`${topSelfTime(file, Number(count) || 10)}\n`);
}
