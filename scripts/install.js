#!/usr/bin/env node
// Runs on `npm install nestjs-redis-native`.
//
// The prebuilt addon comes in a per-platform package (`nestjs-redis-native-<platform>`,
// an optional dependency npm installs only where it fits) for Linux x64/arm64 (glibc
// and musl), macOS x64/arm64 and Windows x64. There, this script finds it and does
// nothing. On any other platform it compiles the addon from the Rust sources in this
// package with the machine's cargo (Rust stable). Inside this repository itself
// (`npm ci` for development) it does nothing: `npm run build` builds the addon.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const insideNodeModules = root.split(path.sep).includes('node_modules');

/** `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`, ...: the napi-rs name of this platform. */
function platformTriple() {
  const { platform, arch } = process;
  let abi = '';
  if (platform === 'linux') {
    const report = process.report && process.report.getReport ? process.report.getReport() : null;
    const glibc = report && report.header && report.header.glibcVersionRuntime;
    abi = glibc ? '-gnu' : '-musl';
  } else if (platform === 'win32') {
    abi = '-msvc';
  }
  return `${platform}-${arch}${abi}`;
}

function log(message) {
  process.stdout.write(`nestjs-redis-native: ${message}\n`);
}

function prebuiltAvailable(triple) {
  if (fs.existsSync(path.join(root, `nestjs-redis-native.${triple}.node`))) return true;
  try {
    require.resolve(`nestjs-redis-native-${triple}/package.json`, { paths: [root] });
    return true;
  } catch {
    return false;
  }
}

function main() {
  if (!insideNodeModules) return; // developing the package itself
  if (process.env.NESTJS_REDIS_NATIVE_SKIP_BUILD) return;

  const triple = platformTriple();
  if (prebuiltAvailable(triple)) return;

  log(`no prebuilt addon for ${triple}; compiling it with cargo (needs Rust stable, https://rustup.rs)`);
  const cargo = spawnSync('cargo', ['build', '--release', '--lib', '--locked'], {
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
    freebsd: 'libnestjs_redis_native.so',
    darwin: 'libnestjs_redis_native.dylib',
    win32: 'nestjs_redis_native.dll',
  }[process.platform];
  if (!built) {
    log(`unsupported platform ${process.platform}`);
    process.exit(1);
  }
  const binary = path.join(root, `nestjs-redis-native.${triple}.node`);
  fs.copyFileSync(path.join(root, 'target', 'release', built), binary);
  fs.rmSync(path.join(root, 'target'), { recursive: true, force: true });
  log(`built ${path.basename(binary)}`);
}

main();
