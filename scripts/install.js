#!/usr/bin/env node
// Runs on `npm install nestjs-redis-native`.
//
// The published tarball carries the prebuilt addon for linux-x64-gnu. On any
// other platform (or if that file is missing) the addon is compiled from the
// bundled Rust sources with the machine's cargo. Inside this repository itself
// (`npm ci` for development) nothing happens: `npm run build` builds it.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const insideNodeModules = root.split(path.sep).includes('node_modules');

function expectedBinaryName() {
  const { platform, arch } = process;
  let abi = '';
  if (platform === 'linux') {
    const report = process.report && process.report.getReport ? process.report.getReport() : null;
    const glibc = report && report.header && report.header.glibcVersionRuntime;
    abi = glibc ? '-gnu' : '-musl';
  } else if (platform === 'win32') {
    abi = '-msvc';
  }
  return `nestjs-redis-native.${platform}-${arch}${abi}.node`;
}

function log(message) {
  process.stdout.write(`nestjs-redis-native: ${message}\n`);
}

function main() {
  if (!insideNodeModules) return; // developing the package itself
  if (process.env.NESTJS_REDIS_NATIVE_SKIP_BUILD) return;

  const binary = path.join(root, expectedBinaryName());
  if (fs.existsSync(binary)) return;

  log(`no prebuilt addon for ${process.platform}-${process.arch}; compiling it with cargo (needs Rust stable)`);
  const cargo = spawnSync('cargo', ['build', '--release', '--lib'], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, CARGO_TARGET_DIR: path.join(root, 'target') },
  });
  if (cargo.error || cargo.status !== 0) {
    const why = cargo.error ? cargo.error.message : `cargo exited with ${cargo.status}`;
    log(`could not build the native addon (${why}). Install Rust from https://rustup.rs and reinstall.`);
    process.exit(1);
  }
  const built = {
    linux: 'libnestjs_redis_native.so',
    darwin: 'libnestjs_redis_native.dylib',
    win32: 'nestjs_redis_native.dll',
  }[process.platform];
  if (!built) {
    log(`unsupported platform ${process.platform}`);
    process.exit(1);
  }
  fs.copyFileSync(path.join(root, 'target', 'release', built), binary);
  fs.rmSync(path.join(root, 'target'), { recursive: true, force: true });
  log(`built ${path.basename(binary)}`);
}

main();
