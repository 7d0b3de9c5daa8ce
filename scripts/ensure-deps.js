#!/usr/bin/env node
// Installs the development dependencies when they are missing or older than the
// lockfile, so the README's commands work on a fresh clone: `npm run demo` and `npm test`
// call this first. Uses only Node's own modules (it runs before anything is installed).
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const lock = path.join(root, 'package-lock.json');
const installed = path.join(root, 'node_modules', '.package-lock.json');

const mtime = (f) => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0);
if (mtime(installed) >= mtime(lock) && mtime(installed) > 0) process.exit(0);

process.stdout.write('nestjs-redis-native: installing the development dependencies (npm ci)\n');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const result = spawnSync(npm, ['ci', '--no-audit', '--no-fund'], {
  cwd: root,
  stdio: 'inherit',
  shell: process.platform === 'win32',
});
process.exit(result.status ?? 1);
