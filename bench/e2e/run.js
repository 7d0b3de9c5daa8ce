#!/usr/bin/env node
'use strict';
// npm run bench:e2e: the same NestJS 11 + Fastify app on nestjs-redis-native ("ours") and on
// ioredis + @nestjs/throttler + hand-written Redis code ("ioredis"), each in its own
// process, loaded by autocannon from a third process, on one private redis-server.
//
//   E2E_ROUNDS        measured rounds (default 5); the apps alternate which runs first
//   E2E_DURATION      seconds per measurement (default 5)
//   E2E_WARMUP        seconds of warm-up load before each measurement (default 2)
//   E2E_CONNECTIONS   concurrent HTTP connections (default 50)
//   E2E_ROUTES        comma-separated, from ping,product,me,login,orders (default all)
//   E2E_APPS          comma-separated, from ours,ioredis (default both)
//   E2E_CPU_PROF      a directory: run the apps with --cpu-prof and print their top
//                     self-time functions at the end (best with E2E_ROUTES=me)
//   E2E_IOREDIS_AUTOPIPELINING=1  turn on ioredis's auto-pipelining in the ioredis app
//   E2E_NEAR_CACHE=0  run our app without its near cache (it serves GET /product/:id)
//   E2E_RESULTS       where to write the results (default bench/results/e2e-latest.json)
//   E2E_ADDON         the addon to load instead of the release build, e.g. a release build
//                     with symbols for `perf` (CARGO_PROFILE_RELEASE_STRIP=none)
//
// Expects `npm run build` (the release addon and nest/dist), which `npm run bench:e2e` runs
// first. Installs bench/e2e/node_modules with `npm ci` when missing. Prints a Markdown table
// and writes everything to bench/results/e2e-latest.json.

const { execFileSync, fork, spawn } = require('node:child_process');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { isDeepStrictEqual } = require('node:util');

const here = __dirname;
const root = path.resolve(here, '..', '..');
const resultsFile = path.resolve(root, process.env.E2E_RESULTS || path.join('bench', 'results', 'e2e-latest.json'));
/** Where tsconfig.json compiles the apps (inside node_modules: ignored by git and prettier, resolves the app's packages). */
const build = path.join(here, 'node_modules', '.build');

const num = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, got ${raw}`);
  return n;
};
const list = (name, all) => {
  const raw = process.env[name];
  if (!raw) return all;
  const picked = raw.split(',').map((s) => s.trim());
  for (const p of picked) if (!all.includes(p)) throw new Error(`${name}: unknown ${p} (choose from ${all.join(', ')})`);
  return all.filter((a) => picked.includes(a));
};

const ALL_ROUTES = ['ping', 'product', 'me', 'login', 'orders'];
const ROUTE_LABELS = {
  ping: 'GET /ping',
  product: 'GET /product/:id',
  me: 'GET /me',
  login: 'POST /login',
  orders: 'POST /orders',
};
const APPS = { ours: { label: 'nestjs-redis-native', db: 0 }, ioredis: { label: 'ioredis stack', db: 1 } };

const config = {
  rounds: Math.max(1, Math.floor(num('E2E_ROUNDS', 5))),
  duration: num('E2E_DURATION', 5),
  warmup: num('E2E_WARMUP', 2),
  connections: Math.max(1, Math.floor(num('E2E_CONNECTIONS', 50))),
  routes: list('E2E_ROUTES', ALL_ROUTES),
  apps: list('E2E_APPS', Object.keys(APPS)),
  cpuProfDir: process.env.E2E_CPU_PROF ? path.resolve(process.env.E2E_CPU_PROF) : null,
  ioredisAutoPipelining: process.env.E2E_IOREDIS_AUTOPIPELINING === '1',
};
if (config.duration <= 0) throw new Error('E2E_DURATION must be > 0');

// ---------------------------------------------------------------- processes we own

/** Every child process started here; killed on any exit. */
const children = new Set();
function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}
/** Temporary directories made here; removed on any exit. */
const tempDirs = new Set();
process.on('exit', () => {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    process.stderr.write(`\nbench:e2e: ${signal}, stopping\n`);
    process.exit(130); // the exit handler kills the children
  });
}

const exited = (child) =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });

/** SIGTERM, then SIGKILL after `ms`. */
async function stopChild(child, ms = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited(child);
  clearTimeout(timer);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------- setup

function sh(cmd, args, cwd) {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
}

function ensureDependencies() {
  if (fs.existsSync(path.join(here, 'node_modules', '@nestjs', 'core', 'package.json'))) return;
  process.stdout.write('bench:e2e: installing bench/e2e/node_modules (npm ci)\n');
  sh(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], here);
}

/**
 * The release addon `npm run build` made: napi-rs builds it as
 * target/<host triple>/release/libnestjs_redis_native.so and copies it to the repository
 * root as nestjs-redis-native.<platform>.node. Taken from target/, where a debug build
 * (`npm run build:debug`, run by someone else meanwhile) does not overwrite it.
 */
function releaseAddon() {
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(root, process.env.CARGO_TARGET_DIR) : path.join(root, 'target');
  let host = null;
  try {
    host = /^host: (\S+)/m.exec(execFileSync('rustc', ['-vV']).toString())?.[1] ?? null;
  } catch {
    // no rustc: use the addon at the root
  }
  const lib =
    process.platform === 'win32'
      ? 'nestjs_redis_native.dll'
      : process.platform === 'darwin'
        ? 'libnestjs_redis_native.dylib'
        : 'libnestjs_redis_native.so';
  for (const dir of host
    ? [path.join(targetDir, host, 'release'), path.join(targetDir, 'release')]
    : [path.join(targetDir, 'release')]) {
    if (fs.existsSync(path.join(dir, lib))) return path.join(dir, lib);
  }
  return null;
}

/** Whether a 64-bit little-endian ELF file has a .debug_info section (a debug build); false for anything else. */
function hasDebugInfo(elf) {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const strtab = shoff + elf.readUInt16LE(0x3e) * shentsize;
  if (!shoff || strtab + shentsize > elf.length) return false;
  const names = Number(elf.readBigUInt64LE(strtab + 0x18));
  for (let i = 0; i < shnum; i++) {
    const at = names + elf.readUInt32LE(shoff + i * shentsize);
    if (elf.toString('latin1', at, at + 12) === '.debug_info\0') return true;
  }
  return false;
}

/**
 * bench/e2e/node_modules/nestjs-redis-native is a copy of the package (install-links in
 * .npmrc, so that its Nest layer resolves the app's NestJS 11, not the repository's own
 * devDependencies). Refresh it from the current build, so every run measures the release
 * addon and the nest/dist that `npm run build` just made, whatever is rebuilt in the
 * repository while the benchmark runs.
 */
function syncPackage() {
  const dest = path.join(here, 'node_modules', 'nestjs-redis-native');
  const addons = fs.readdirSync(root).filter((f) => f.endsWith('.node'));
  const distDir = path.join(root, 'nest', 'dist');
  if (!addons.length || !fs.existsSync(path.join(root, 'index.js')) || !fs.existsSync(path.join(distDir, 'index.js'))) {
    throw new Error('the package is not built: run `npm run build` (or `npm run bench:e2e`, which does) first');
  }
  const chosen = process.env.E2E_ADDON ? path.resolve(process.env.E2E_ADDON) : null;
  const release = chosen ?? releaseAddon();
  const sources = new Map(['package.json', 'index.js', 'index.d.ts'].map((f) => [f, path.join(root, f)]));
  for (const f of addons) sources.set(f, release ?? path.join(root, f));
  for (const f of fs.readdirSync(distDir, { recursive: true })) {
    if (fs.statSync(path.join(distDir, f)).isFile()) sources.set(`nest/dist/${f}`, path.join(distDir, f));
  }
  if (fs.lstatSync(dest, { throwIfNoEntry: false })?.isSymbolicLink()) fs.unlinkSync(dest);
  let copied = 0;
  for (const [f, from] of sources) {
    const a = fs.readFileSync(from);
    if (f.endsWith('.node') && !chosen && hasDebugInfo(a)) {
      throw new Error(`${path.relative(root, from)} is a debug build: run \`npm run build\` (the release build) first`);
    }
    const to = path.join(dest, f);
    const b = fs.existsSync(to) ? fs.readFileSync(to) : null;
    if (b && a.equals(b)) continue;
    fs.mkdirSync(path.dirname(to), { recursive: true });
    fs.writeFileSync(to, a);
    copied++;
  }
  for (const f of fs.readdirSync(path.join(dest, 'nest', 'dist'), { recursive: true })) {
    const at = path.join(dest, 'nest', 'dist', f);
    if (fs.statSync(at, { throwIfNoEntry: false })?.isFile() && !sources.has(`nest/dist/${f}`)) fs.rmSync(at, { force: true });
  }
  const addon = release ? path.relative(root, release) : addons.join(', ');
  process.stdout.write(
    `bench:e2e: nestjs-redis-native from the build (addon ${addon})${copied ? `, ${copied} file(s) refreshed` : ''}\n`,
  );
}

function compileApps() {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!fs.existsSync(tsc)) throw new Error(`no TypeScript at ${tsc}: run npm ci in the repository root`);
  fs.rmSync(build, { recursive: true, force: true });
  sh(process.execPath, [tsc, '-p', path.join(here, 'tsconfig.json')], here);
}

async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-e2e-redis-'));
  tempDirs.add(dir);
  const child = track(
    spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  );
  let output = '';
  child.stdout.on('data', (d) => (output = (output + d).slice(-4000)));
  child.stderr.on('data', (d) => (output = (output + d).slice(-4000)));
  let failure = null;
  child.once('error', (e) => (failure = new Error(`cannot start redis-server (is it installed?): ${e.message}`)));
  child.once('exit', (code, signal) => (failure ??= new Error(`redis-server exited (${code ?? signal}):\n${output}`)));
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (failure) throw failure;
    if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port}:\n${output}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    port,
    pid: child.pid,
    url: (db) => `redis://127.0.0.1:${port}/${db}`,
    async stop() {
      child.removeAllListeners('exit');
      await stopChild(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Loads what the routes read: products and sessions, each app in its own format and database. */
async function preload(native, redisUrl) {
  const fixtures = require(path.join(build, 'common.js'));
  const { RedisClient, RedisService, CacheService, SessionService } = native;
  const ours = await RedisClient.connect({ url: redisUrl(APPS.ours.db) });
  const theirs = await RedisClient.connect({ url: redisUrl(APPS.ioredis.db) });
  try {
    await new RedisService(ours).command('FLUSHDB');
    await new RedisService(theirs).command('FLUSHDB');
    const products = new CacheService(ours).namespace('product');
    const sessions = new SessionService(ours);
    const raw = new RedisService(theirs);
    const work = [];
    for (let id = 1; id <= fixtures.PRODUCTS; id++) {
      const p = fixtures.product(id);
      work.push(products.set(String(id), p, { ttl: 3600 }));
      work.push(raw.set(`product:${id}`, JSON.stringify(p), 3600));
    }
    for (let i = 0; i < fixtures.SESSIONS; i++) {
      const sid = fixtures.sessionId(i);
      const data = fixtures.sessionData(i);
      work.push(sessions.createSession(sid, { ...data }, fixtures.SESSION_TTL_SECONDS));
      // the ioredis app's SessionStore.create, by hand
      work.push(
        raw.pipeline([
          ['SET', `session:${sid}`, JSON.stringify({ ...data, createdAt: Date.now() }), 'EX', fixtures.SESSION_TTL_SECONDS],
          ['SADD', `session-user:${data.userId}`, sid],
          ['EXPIRE', `session-user:${data.userId}`, fixtures.SESSION_TTL_SECONDS],
        ]),
      );
    }
    await Promise.all(work);
  } finally {
    await ours.close();
    await theirs.close();
  }
}

async function startApp(name, redisUrl) {
  const args = [];
  if (config.cpuProfDir) {
    fs.mkdirSync(config.cpuProfDir, { recursive: true });
    args.push('--cpu-prof', '--cpu-prof-dir', config.cpuProfDir, '--cpu-prof-name', `${name}.cpuprofile`);
  }
  args.push(path.join(build, name, 'main.js'));
  const child = track(
    spawn(process.execPath, args, {
      cwd: here,
      env: { ...process.env, NODE_ENV: 'production', REDIS_URL: redisUrl(APPS[name].db) },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let output = '';
  child.stderr.on('data', (d) => (output = (output + d).slice(-8000)));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} app did not start within 30 s:\n${output}`)), 30_000);
    let line = '';
    child.stdout.on('data', (d) => {
      line += d;
      const m = /READY (\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} app exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
  child.removeAllListeners('exit');
  child.once('exit', (code, signal) => {
    if (!app.stopping) process.stderr.write(`bench:e2e: the ${name} app exited (${code ?? signal}):\n${output}\n`);
  });
  const app = {
    name,
    pid: child.pid,
    url: `http://127.0.0.1:${port}`,
    stopping: false,
    stderr: () => output,
    async stop() {
      app.stopping = true;
      await stopChild(child);
    },
  };
  return app;
}

// ---------------------------------------------------------------- correctness

async function checkApp(app, native, redisUrl) {
  const fx = require(path.join(build, 'common.js'));
  const fail = (what) => {
    throw new Error(`correctness check failed for the ${app.name} app: ${what}`);
  };
  const call = async (method, url, { headers = {}, body } = {}) => {
    const res = await fetch(app.url + url, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text };
  };
  // the same JSON value; object keys in any order (CacheService hands objects back in its hash's field order)
  const same = (a, b) => isDeepStrictEqual(a, b);

  let r = await call('GET', '/ping');
  if (r.status !== 200 || !same(r.json, { ok: true })) fail(`GET /ping: ${r.status} ${r.text}`);

  r = await call('GET', '/product/7');
  if (r.status !== 200 || !same(r.json, fx.product(7))) fail(`GET /product/7: ${r.status} ${r.text}`);
  r = await call('GET', '/product/999999');
  if (r.status !== 404) fail(`GET /product/999999 (absent): ${r.status}, expected 404`);

  r = await call('GET', '/me', { headers: { 'x-session': fx.sessionId(3) } });
  if (r.status !== 200 || !same(r.json, fx.userOf(fx.sessionData(3)))) fail(`GET /me: ${r.status} ${r.text}`);
  if (r.headers.get('x-ratelimit-limit') !== String(fx.ME_RATE_LIMIT)) {
    fail(`GET /me: X-RateLimit-Limit is ${r.headers.get('x-ratelimit-limit')}, expected ${fx.ME_RATE_LIMIT}`);
  }
  r = await call('GET', '/me', { headers: { 'x-session': 'no-such-session' } });
  if (r.status !== 401) fail(`GET /me with an unknown session: ${r.status}, expected 401`);

  const login = { userId: `check-${app.name}`, name: 'Check', email: 'check@example.com', device: 'check' };
  r = await call('POST', '/login', { body: login });
  if (r.status !== 201 || typeof r.json?.sessionId !== 'string' || typeof r.json?.refreshToken !== 'string') {
    fail(`POST /login: ${r.status} ${r.text}`);
  }
  const { sessionId, refreshToken } = r.json;
  r = await call('GET', '/me', { headers: { 'x-session': sessionId } });
  const expectedUser = { id: login.userId, name: login.name, email: login.email, roles: ['customer'] };
  if (r.status !== 200 || !same(r.json, expectedUser)) fail(`GET /me after POST /login: ${r.status} ${r.text}`);
  const client = await native.RedisClient.connect({ url: redisUrl(APPS[app.name].db) });
  try {
    const stored =
      app.name === 'ours'
        ? await new native.TokenService(client).isRefreshTokenValid(login.userId, refreshToken)
        : (await new native.RedisService(client).exists(
            `refresh:${login.userId}:${createHash('sha256').update(refreshToken).digest('hex')}`,
          )) === true;
    if (!stored) fail('POST /login did not store the refresh token');
  } finally {
    await client.close();
  }

  const order = { productId: 5, quantity: 2 };
  const key = { 'idempotency-key': `check-${Date.now()}-${Math.random()}` };
  const first = await call('POST', '/orders', { headers: key, body: order });
  if (first.status !== 201 || first.json?.status !== 'created' || first.json?.productId !== 5) {
    fail(`POST /orders: ${first.status} ${first.text}`);
  }
  const again = await call('POST', '/orders', { headers: key, body: order });
  if (again.status !== 201 || !same(again.json, first.json) || again.headers.get('idempotent-replayed') !== 'true') {
    fail(`POST /orders with a repeated Idempotency-Key did not replay: ${again.status} ${again.text}`);
  }
  const other = await call('POST', '/orders', { headers: { 'idempotency-key': `${key['idempotency-key']}-2` }, body: order });
  if (other.status !== 201 || other.json?.orderId === first.json.orderId) {
    fail(`POST /orders with a new Idempotency-Key replayed: ${other.status} ${other.text}`);
  }
}

// ---------------------------------------------------------------- measuring

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU ticks (utime + stime) and context switches of each thread of `pid`: Map tid -> { name, ticks, switches }. */
function threadTicks(pid) {
  const threads = new Map();
  let tids;
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread just ended
    }
    const close = stat.lastIndexOf(')');
    const name = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' '); // fields[0] is field 3 (state)
    let switches = 0;
    try {
      const status = fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)/gm)) switches += Number(m[1]);
    } catch {
      // the thread just ended
    }
    threads.set(tid, { name, ticks: Number(fields[11]) + Number(fields[12]), switches }); // utime (14), stime (15)
  }
  return threads;
}

/**
 * Seconds of CPU of each thread between two `threadTicks`: main thread, the rest, and the
 * rest by thread name; and the context switches of the main thread and of the rest.
 */
function threadCpu(pid, before, after) {
  let main = 0;
  let other = 0;
  let mainSwitches = 0;
  let otherSwitches = 0;
  const byName = {};
  for (const [tid, { name, ticks, switches }] of after) {
    const seconds = (ticks - (before.get(tid)?.ticks ?? 0)) / CLK_TCK;
    const switched = switches - (before.get(tid)?.switches ?? 0);
    if (tid === String(pid)) {
      main += seconds;
      mainSwitches += switched;
    } else {
      other += seconds;
      otherSwitches += switched;
      byName[name] = (byName[name] ?? 0) + seconds;
    }
  }
  return { main, other, byName, mainSwitches, otherSwitches };
}

async function redisCpu(redis) {
  const info = String(await redis.command('INFO', ['cpu']));
  const field = (name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return field('used_cpu_sys') + field('used_cpu_user');
}

/** One measurement: warm-up, then `duration` seconds of load, with the CPU used meanwhile. */
async function measure(app, route, redis) {
  const child = track(
    fork(
      path.join(here, 'load.js'),
      [
        JSON.stringify({
          url: app.url,
          route,
          connections: config.connections,
          warmup: config.warmup,
          duration: config.duration,
        }),
      ],
      { cwd: here, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
    ),
  );
  const messages = [];
  let wake = null;
  child.on('message', (m) => {
    messages.push(m);
    wake?.();
  });
  child.once('exit', () => wake?.());
  const next = async () => {
    while (!messages.length) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the load process exited (${child.exitCode})`);
      await new Promise((resolve) => (wake = resolve));
      wake = null;
    }
    const m = messages.shift();
    if (m.type === 'error') throw new Error(`load process: ${m.message}`);
    return m;
  };
  try {
    const warm = await next();
    if (warm.type !== 'warm') throw new Error(`unexpected message ${JSON.stringify(warm)}`);
    const threads0 = threadTicks(app.pid);
    const redis0 = await redisCpu(redis);
    child.send('go');
    const result = await next();
    const threads1 = threadTicks(app.pid);
    const redis1 = await redisCpu(redis);
    const cpu = threadCpu(app.pid, threads0, threads1);
    const perReq = (seconds) => (seconds * 1e6) / result.requests;
    return {
      reqPerSec: result.reqPerSec,
      requests: result.requests,
      seconds: result.seconds,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
      statuses: result.statuses,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      warmupFailures: warm.failures,
      mainUsPerReq: perReq(cpu.main),
      otherUsPerReq: perReq(cpu.other),
      otherUsPerReqByThread: Object.fromEntries(Object.entries(cpu.byName).map(([n, s]) => [n, perReq(s)])),
      redisUsPerReq: perReq(redis1 - redis0),
      mainContextSwitchesPerReq: cpu.mainSwitches / result.requests,
      otherContextSwitchesPerReq: cpu.otherSwitches / result.requests,
    };
  } finally {
    await stopChild(child, 5000);
  }
}

// ---------------------------------------------------------------- reporting

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–');
const ratio = (a, b) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '–');

function summarize(runs) {
  const pick = (k) => runs.map((r) => r[k]);
  return {
    reqPerSec: median(pick('reqPerSec')),
    reqPerSecMin: Math.min(...pick('reqPerSec')),
    reqPerSecMax: Math.max(...pick('reqPerSec')),
    p50Ms: median(pick('p50Ms')),
    p99Ms: median(pick('p99Ms')),
    mainUsPerReq: median(pick('mainUsPerReq')),
    otherUsPerReq: median(pick('otherUsPerReq')),
    serverUsPerReq: median(runs.map((r) => r.mainUsPerReq + r.otherUsPerReq)),
    redisUsPerReq: median(pick('redisUsPerReq')),
    mainContextSwitchesPerReq: median(pick('mainContextSwitchesPerReq')),
    otherContextSwitchesPerReq: median(pick('otherContextSwitchesPerReq')),
  };
}

function markdown(summary) {
  const lines = [
    '| route | app | req/s (median, min–max) | p50 ms | p99 ms | main thread µs/req | other threads µs/req | Redis µs/req |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const route of config.routes) {
    for (const name of config.apps) {
      const s = summary[route][name];
      lines.push(
        `| ${ROUTE_LABELS[route]} | ${APPS[name].label} | ${fmtInt(s.reqPerSec)} (${fmtInt(s.reqPerSecMin)}–${fmtInt(s.reqPerSecMax)}) ` +
          `| ${fmt(s.p50Ms, 2)} | ${fmt(s.p99Ms, 2)} | ${fmt(s.mainUsPerReq)} | ${fmt(s.otherUsPerReq)} | ${fmt(s.redisUsPerReq)} |`,
      );
    }
  }
  if (config.apps.length === 2) {
    lines.push(
      '',
      '| route | req/s ours/theirs | server CPU/req ours/theirs | main thread CPU/req ours/theirs | Redis CPU/req ours/theirs |',
      '| --- | --- | --- | --- | --- |',
    );
    for (const route of config.routes) {
      const o = summary[route].ours;
      const t = summary[route].ioredis;
      lines.push(
        `| ${ROUTE_LABELS[route]} | ${ratio(o.reqPerSec, t.reqPerSec)} | ${ratio(o.serverUsPerReq, t.serverUsPerReq)} ` +
          `| ${ratio(o.mainUsPerReq, t.mainUsPerReq)} | ${ratio(o.redisUsPerReq, t.redisUsPerReq)} |`,
      );
    }
  }
  return lines.join('\n');
}

function versions() {
  const v = (p) => {
    try {
      return require(path.join(here, 'node_modules', p, 'package.json')).version;
    } catch {
      return null;
    }
  };
  let redis = null;
  try {
    redis = /v=(\S+)/.exec(execFileSync('redis-server', ['--version']).toString())?.[1] ?? null;
  } catch {
    // reported as null
  }
  let git = null;
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root }).toString().trim();
    const changed = execFileSync('git', ['status', '--porcelain', '--', 'src', 'nest', 'index.js'], { cwd: root })
      .toString()
      .split('\n')
      .filter(Boolean).length;
    git = changed ? `${head} + ${changed} uncommitted change(s) in src/, nest/` : head;
  } catch {
    // not a git checkout
  }
  return {
    'nestjs-redis-native build': git,
    node: process.version,
    redis,
    '@nestjs/core': v('@nestjs/core'),
    '@nestjs/platform-fastify': v('@nestjs/platform-fastify'),
    fastify: v('fastify'),
    ioredis: v('ioredis'),
    '@nestjs/throttler': v('@nestjs/throttler'),
    '@nest-lab/throttler-storage-redis': v('@nest-lab/throttler-storage-redis'),
    autocannon: v('autocannon'),
    'nestjs-redis-native': v('nestjs-redis-native'),
  };
}

// ---------------------------------------------------------------- main

async function main() {
  ensureDependencies();
  syncPackage();
  compileApps();
  const native = require(path.join(root, 'index.js'));
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadavgBefore: os.loadavg() };
  process.stdout.write(
    `bench:e2e: ${config.rounds} round(s) × ${config.duration} s per route and app (after ${config.warmup} s of warm-up), ` +
      `${config.connections} connections; routes ${config.routes.join(', ')}; ` +
      `load average ${machine.loadavgBefore.map((l) => l.toFixed(2)).join(' ')} on ${machine.cpus} CPUs\n`,
  );

  let redisServer = null;
  let infoClient = null;
  let info = null;
  const apps = {};
  try {
    redisServer = await startRedis();
    await preload(native, redisServer.url);
    for (const name of config.apps) apps[name] = await startApp(name, redisServer.url);
    for (const name of config.apps) await checkApp(apps[name], native, redisServer.url);
    process.stdout.write(`bench:e2e: both apps answer every route correctly\n`);
    infoClient = await native.RedisClient.connect({ url: redisServer.url(0) });
    info = new native.RedisService(infoClient);

    const runs = Object.fromEntries(config.routes.map((r) => [r, Object.fromEntries(config.apps.map((a) => [a, []]))]));
    for (let round = 0; round < config.rounds; round++) {
      for (const [i, route] of config.routes.entries()) {
        // alternate which app goes first, per round (and per route within a round)
        const order = (round + i) % 2 === 0 ? config.apps : [...config.apps].reverse();
        for (const name of order) {
          const r = await measure(apps[name], route, info);
          r.round = round + 1;
          r.order = order.indexOf(name) + 1;
          runs[route][name].push(r);
          process.stdout.write(
            `  round ${round + 1} ${ROUTE_LABELS[route].padEnd(17)} ${APPS[name].label.padEnd(20)} ` +
              `${fmtInt(r.reqPerSec).padStart(7)} req/s  p50 ${fmt(r.p50Ms, 2)} ms  p99 ${fmt(r.p99Ms, 2)} ms  ` +
              `main ${fmt(r.mainUsPerReq)} µs  other ${fmt(r.otherUsPerReq)} µs  redis ${fmt(r.redisUsPerReq)} µs  ` +
              `context switches/req ${fmt(r.mainContextSwitchesPerReq, 2)} main, ${fmt(r.otherContextSwitchesPerReq, 2)} other\n`,
          );
          const bad = r.non2xx + r.errors + r.timeouts + (r.warmupFailures ?? 0);
          if (bad > 0) {
            throw new Error(
              `${APPS[name].label} on ${ROUTE_LABELS[route]}: ${r.non2xx} non-2xx responses, ${r.errors} errors, ` +
                `${r.timeouts} timeouts (warm-up failures: ${r.warmupFailures ?? 0}); statuses ${JSON.stringify(r.statuses)}` +
                `\napp stderr:\n${apps[name].stderr()}`,
            );
          }
        }
      }
    }

    const summary = Object.fromEntries(
      config.routes.map((route) => [route, Object.fromEntries(config.apps.map((a) => [a, summarize(runs[route][a])]))]),
    );
    machine.loadavgAfter = os.loadavg();
    const table = markdown(summary);
    process.stdout.write(`\n${table}\n\n`);
    process.stdout.write(
      `Medians of ${config.rounds} round(s); CPU is per request: the app process's main JS thread, its other threads ` +
        '(libuv, V8 helpers, the nestjs-redis-native I/O thread), and redis-server (INFO cpu). ' +
        `Load average ${machine.loadavgBefore.map((l) => l.toFixed(2)).join(' ')} before, ` +
        `${machine.loadavgAfter.map((l) => l.toFixed(2)).join(' ')} after.\n`,
    );
    const v = versions();
    process.stdout.write(
      `nestjs-redis-native ${v['nestjs-redis-native build']}; NestJS ${v['@nestjs/core']}, fastify ${v.fastify}, ` +
        `ioredis ${v.ioredis}, @nestjs/throttler ${v['@nestjs/throttler']}, ` +
        `@nest-lab/throttler-storage-redis ${v['@nest-lab/throttler-storage-redis']}, Node ${v.node}, Redis ${v.redis}` +
        `${config.ioredisAutoPipelining ? '; ioredis with auto-pipelining' : ''}\n`,
    );
    fs.mkdirSync(path.dirname(resultsFile), { recursive: true });
    fs.writeFileSync(
      resultsFile,
      JSON.stringify({ date: new Date().toISOString(), config, machine, versions: v, summary, runs, table }, null, 2) + '\n',
    );
    process.stdout.write(`bench:e2e: wrote ${path.relative(root, resultsFile)}\n`);
  } finally {
    if (infoClient) await infoClient.close();
    for (const app of Object.values(apps)) await app.stop();
    if (redisServer) await redisServer.stop();
  }

  if (config.cpuProfDir) {
    const { topSelfTime } = require('./profile-top.js');
    for (const name of config.apps) {
      const file = path.join(config.cpuProfDir, `${name}.cpuprofile`);
      if (!fs.existsSync(file)) continue;
      process.stdout.write(`\nTop self time, ${APPS[name].label} (${path.relative(root, file)}):\n${topSelfTime(file, 10)}\n`);
    }
  }
}

main().catch((error) => {
  process.stderr.write(`\nbench:e2e failed: ${error.stack || error}\n`);
  process.exit(1);
});
