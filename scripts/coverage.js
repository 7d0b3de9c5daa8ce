#!/usr/bin/env node
// `npm run coverage`: LLVM source-based line coverage of the Rust code (src/), driven by
// the Rust unit tests and the TypeScript suites, run the way `npm test` runs them.
//
// 1. builds the addon with `-C instrument-coverage` (our crate only, release profile
//    without LTO) into target/coverage/, and loads it in the suites through
//    NAPI_RS_NATIVE_LIBRARY_PATH, so the root `.node` is never touched;
// 2. builds the instrumented Rust unit tests (`cargo test --lib`), the Nest layer (as
//    `npm run build` does) and the TS suites (into target/coverage/ts/.test-build/, not
//    .test-build/);
// 3. runs the passes, each test process writing its own profile (LLVM_PROFILE_FILE
//    with %p): `rust`, the unit tests; `standalone`, every `__test__/*.test.ts` with
//    `node --test --test-concurrency=1` on the redis-servers they start (as `npm run
//    test:ts`); `cluster`, the suites of scripts/test-cluster.js on the local cluster it
//    starts (as `npm run test:cluster`); `memory`, the suites of scripts/test-memory.js
//    on `memory://`; `thread`, the connection suites (THREAD_SUITES) again with
//    NESTJS_REDIS_NATIVE_IO=thread, for the tokio-thread backend (standalone.rs) that
//    the other passes never use; `tick`, a few suites (TICK_SUITES) with
//    NESTJS_REDIS_NATIVE_FLUSH=tick, the event loop's other write mode. The cluster
//    and memory passes run copies of those two scripts in target/coverage/ts/scripts/:
//    they take target/coverage/ts/ for the repository root, and so run the suites built
//    there;
// 4. merges the profiles, prints the line coverage of every file of src/ and the total
//    (the `#[cfg(test)] mod tests` blocks are left out: tests covering themselves would
//    only inflate the figures), writes target/coverage/lcov.info and
//    target/coverage/html/index.html;
// 5. exits non-zero when a test failed, when the total is under 93% or a file under 85%.
//
// Options: `--report-only` (or COVERAGE_REPORT_ONLY=1) reports without failing on the
// thresholds; `--no-run` reports from the profiles of the last run without building or
// testing anything; `--missed` also lists the lines not covered, file by file;
// COVERAGE_PASSES=<names, comma-separated> runs only those passes (by default all of
// rust,standalone,cluster,memory,thread,tick; with fewer, the figures are low and a warning
// says so). The time each pass took is printed at the end.
// LLVM_COV / LLVM_PROFDATA name the LLVM tools; by default they are looked for in
// /usr/lib/llvm-<rustc's LLVM major>/bin, then in rustup's llvm-tools component, then on
// the PATH, and must be of rustc's LLVM major version (`apt-get install llvm-22` for
// rustc 1.95).
//
// The HTML report shows every line, test modules included, so its percentages differ
// from the table; lcov.info holds the lines of the table.
'use strict';

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const TOTAL_MIN = 93;
const FILE_MIN = 85;
/** Files allowed under FILE_MIN, and why (each reason is printed with the table). */
const BELOW_FLOOR = {
  'src/reply.rs':
    'RESP3 booleans and maps become JS values here, but the command connection speaks RESP2 (the server never sends them), and napi code cannot run in Rust unit tests; the fallback arm for future reply types cannot run either',
};

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'target', 'coverage');
const cargoTarget = path.join(out, 'build');
const profiles = path.join(out, 'profiles');
const tsOut = path.join(out, 'ts');
const addon = path.join(out, 'nestjs-redis-native.node');
const objectsFile = path.join(out, 'objects.json');

const OPTIONS = ['--report-only', '--no-run', '--missed'];
const args = process.argv.slice(2);
for (const a of args) {
  if (!OPTIONS.includes(a)) fail(`unknown argument ${a} (known: ${OPTIONS.join(', ')})`);
}
const reportOnly = args.includes('--report-only') || /^(1|true|yes)$/i.test(process.env.COVERAGE_REPORT_ONLY ?? '');
const noRun = args.includes('--no-run');
const showMissed = args.includes('--missed');

function fail(message) {
  process.stderr.write(`coverage: ${message}\n`);
  process.exit(1);
}

function step(message) {
  process.stdout.write(`\n== coverage: ${message}\n`);
}

/** Runs a command with inherited output; returns its exit status. */
function run(cmd, cmdArgs, opts = {}) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  return r.status ?? 1;
}

/** Runs a command and returns its stdout; fails with its stderr when it fails. */
function capture(cmd, cmdArgs, opts = {}) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${cmdArgs.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------- the LLVM tools

function llvmMajorOf(tool) {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  const m = /LLVM version (\d+)\./.exec(r.stdout);
  return m ? Number(m[1]) : null;
}

function findTools() {
  const rustc = capture('rustc', ['-vV']);
  const major = Number(/LLVM version: (\d+)\./.exec(rustc)?.[1]);
  const host = /host: (\S+)/.exec(rustc)?.[1];
  if (!major || !host) fail(`could not read rustc's LLVM version from \`rustc -vV\`:\n${rustc}`);
  const sysroot = capture('rustc', ['--print', 'sysroot']).trim();

  const candidates = (name) => [
    path.join(`/usr/lib/llvm-${major}/bin`, name),
    path.join(sysroot, 'lib', 'rustlib', host, 'bin', name),
    `${name}-${major}`,
    name,
  ];
  const pick = (name, envName) => {
    const fromEnv = process.env[envName];
    if (fromEnv) {
      const m = llvmMajorOf(fromEnv);
      if (m === null) fail(`${envName}=${fromEnv} does not run (\`${fromEnv} --version\` failed)`);
      if (m !== major) process.stderr.write(`coverage: warning: ${envName} is LLVM ${m}, rustc's LLVM is ${major}\n`);
      return fromEnv;
    }
    const seen = [];
    for (const c of candidates(name)) {
      const m = llvmMajorOf(c);
      if (m === major) return c;
      if (m !== null) seen.push(`${c} is LLVM ${m}`);
    }
    fail(
      `no ${name} of LLVM ${major} (rustc ${/release: (\S+)/.exec(rustc)?.[1]} writes LLVM ${major} profiles)` +
        (seen.length ? `; found only: ${seen.join(', ')}` : '') +
        `.\nInstall one: \`apt-get install llvm-${major}\` (Debian/Ubuntu, gives /usr/lib/llvm-${major}/bin/${name}), ` +
        '`rustup component add llvm-tools` (rustup), or `brew install llvm` (macOS), ' +
        `or name it with ${envName}=/path/to/${name}.`,
    );
  };
  return { llvmCov: pick('llvm-cov', 'LLVM_COV'), llvmProfdata: pick('llvm-profdata', 'LLVM_PROFDATA') };
}

// ---------------------------------------------------------------- build and run

const cargoEnv = {
  ...process.env,
  CARGO_TARGET_DIR: cargoTarget,
  // The release profile as users get it, without the LTO and single codegen unit that
  // make it slow to build (they change no behaviour), and with its symbols kept.
  CARGO_PROFILE_RELEASE_LTO: 'false',
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS: '16',
  CARGO_PROFILE_RELEASE_STRIP: 'none',
};
// Our crate only: `cargo rustc` hands these flags to it and not to the dependencies.
const instrument = ['--', '-C', 'instrument-coverage'];

/** `cargo rustc ...` with JSON messages; returns the artifacts it reported. */
function cargoRustc(cargoArgs) {
  const r = spawnSync('cargo', ['rustc', '--lib', '--message-format=json-render-diagnostics', ...cargoArgs, ...instrument], {
    cwd: root,
    env: cargoEnv,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 30,
  });
  if (r.error) fail(`cargo: ${r.error.message}`);
  if (r.status !== 0) fail(`cargo rustc ${cargoArgs.join(' ')} failed`);
  return r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
    .filter((m) => m.reason === 'compiler-artifact' && m.manifest_path === path.join(root, 'Cargo.toml'));
}

/** The passes, in the order they run (COVERAGE_PASSES picks some). */
const PASSES = ['rust', 'standalone', 'cluster', 'memory', 'thread', 'tick'];
// The suites of the thread pass: the ones that drive the connection layer (connecting,
// its events, reconnecting, transient errors, TLS, replies and errors, pub/sub, Sentinel)
// on a standalone server or sentinels of their own.
const THREAD_SUITES = [
  'connection',
  'connection-events',
  'reliability',
  'transient-errors',
  'tls',
  'redis-service',
  'errors',
  'pubsub-service',
  'sentinel',
];

// The suites of the tick pass: the event-loop backend again with
// NESTJS_REDIS_NATIVE_FLUSH=tick (queued calls written at the end of the JS tick, the
// other write mode, instead of in libuv's check phase).
const TICK_SUITES = ['connection', 'reliability', 'redis-service', 'pubsub-service'];

function selectedPasses() {
  const given = process.env.COVERAGE_PASSES;
  if (!given) return PASSES;
  const names = given
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  for (const p of names) if (!PASSES.includes(p)) fail(`unknown pass ${p} in COVERAGE_PASSES (known: ${PASSES.join(', ')})`);
  return PASSES.filter((p) => names.includes(p));
}

function buildAndRun(passes) {
  fs.rmSync(profiles, { recursive: true, force: true });
  fs.mkdirSync(profiles, { recursive: true });
  const failures = [];
  const timings = [];
  /** Runs pass `name` (`body` returns its exit status), timed. */
  const pass = (name, title, body) => {
    if (!passes.includes(name)) return;
    step(`pass ${name}: ${title}`);
    const started = Date.now();
    const status = body();
    timings.push(`${name} ${Math.round((Date.now() - started) / 1000)} s`);
    if (status !== 0) failures.push(`pass ${name} (${title})`);
  };

  step('building the instrumented addon (cargo rustc --lib --release -C instrument-coverage)');
  const lib = cargoRustc(['--release']);
  const cdylib = lib.flatMap((m) => m.filenames).find((f) => /\.(so|dylib|dll)$/.test(f));
  if (!cdylib) fail('cargo reported no cdylib for the addon');
  fs.copyFileSync(cdylib, addon);

  step('building the instrumented Rust unit tests (cargo test --lib)');
  const testBin = cargoRustc(['--profile', 'test']).find((m) => m.profile?.test && m.executable)?.executable;
  if (!testBin) fail('cargo reported no unit-test executable');
  fs.writeFileSync(objectsFile, JSON.stringify([addon, testBin]));

  pass('rust', 'the Rust unit tests', () =>
    run(testBin, [], { env: { ...process.env, LLVM_PROFILE_FILE: path.join(profiles, 'rust-%p-%m.profraw') } }),
  );

  const node = passes.filter((p) => p !== 'rust');
  if (node.length === 0) return { failures, timings };
  step('building the Nest layer and the TypeScript suites');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  if (!fs.existsSync(tsc)) fail('node_modules is missing: run `npm ci` first');
  if (run(process.execPath, [tsc, '-p', 'nest/tsconfig.json']) !== 0) fail('the Nest layer does not compile');
  fs.rmSync(tsOut, { recursive: true, force: true });
  const testBuild = path.join(tsOut, '.test-build', '__test__');
  if (run(process.execPath, [tsc, '-p', '__test__/tsconfig.json', '--outDir', path.join(tsOut, '.test-build')]) !== 0) {
    fail('the TypeScript suites do not compile');
  }
  // tsOut stands in for the repository root of scripts/test-cluster.js and
  // scripts/test-memory.js (which take the root from their own location): copies of them
  // in tsOut/scripts/ run the suites of tsOut/.test-build/, and load tsOut/index.js, which
  // is the root's.
  fs.mkdirSync(path.join(tsOut, 'scripts'));
  for (const s of ['test-cluster.js', 'test-memory.js']) {
    fs.copyFileSync(path.join(root, 'scripts', s), path.join(tsOut, 'scripts', s));
  }
  fs.writeFileSync(path.join(tsOut, 'index.js'), `module.exports = require(${JSON.stringify(path.join(root, 'index.js'))});\n`);

  const nodeEnv = (name, extra = {}) => ({
    ...process.env,
    NAPI_RS_NATIVE_LIBRARY_PATH: addon,
    LLVM_PROFILE_FILE: path.join(profiles, `${name}-%p-%m.profraw`),
    ...extra,
  });
  // As `npm run test:ts` runs them, with a per-test timeout so that a hung test fails
  // instead of stopping the run.
  const runner = ['--test-concurrency=1', '--test-timeout=300000', '--test-reporter=spec'];

  const suites = fs
    .readdirSync(testBuild)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => path.join(testBuild, f));
  pass('standalone', `every TypeScript suite (${suites.length}), as \`npm run test:ts\` runs them`, () =>
    run(process.execPath, ['--test', ...runner, ...suites], { env: nodeEnv('standalone') }),
  );
  pass('cluster', 'the cluster suites, as `npm run test:cluster` runs them (scripts/test-cluster.js)', () =>
    run(process.execPath, [path.join(tsOut, 'scripts', 'test-cluster.js'), ...runner], { env: nodeEnv('cluster') }),
  );
  pass('memory', 'the memory:// suites (scripts/test-memory.js)', () =>
    run(process.execPath, [path.join(tsOut, 'scripts', 'test-memory.js'), ...runner], { env: nodeEnv('memory') }),
  );
  pass('thread', `the connection suites with NESTJS_REDIS_NATIVE_IO=thread (${THREAD_SUITES.join(', ')})`, () =>
    run(process.execPath, ['--test', ...runner, ...THREAD_SUITES.map((s) => path.join(testBuild, `${s}.test.js`))], {
      env: nodeEnv('thread', { NESTJS_REDIS_NATIVE_IO: 'thread' }),
    }),
  );
  pass('tick', `suites with NESTJS_REDIS_NATIVE_FLUSH=tick (${TICK_SUITES.join(', ')})`, () =>
    run(process.execPath, ['--test', ...runner, ...TICK_SUITES.map((s) => path.join(testBuild, `${s}.test.js`))], {
      env: nodeEnv('tick', { NESTJS_REDIS_NATIVE_FLUSH: 'tick' }),
    }),
  );
  return { failures, timings };
}

// ---------------------------------------------------------------- report

/** First line (1-based) of each `#[cfg(test)] mod <name> {` block and its closing line. */
function testBlocks(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '#[cfg(test)]') continue;
    const m = /^(\s*)(pub(\([^)]*\))?\s+)?mod \w+ \{$/.exec(lines[i + 1] ?? '');
    if (!m) continue;
    let end = lines.length;
    for (let j = i + 2; j < lines.length; j++) {
      if (lines[j] === `${m[1]}}`) {
        end = j + 1;
        break;
      }
    }
    blocks.push([i + 1, end]);
    i = end - 1;
  }
  return blocks;
}

/** lcov text of the lines of the table (line records only). */
function lcovOf(files) {
  return files
    .map((f) =>
      [`SF:${f.path}`, ...f.lines.map(([n, c]) => `DA:${n},${c}`), `LF:${f.total}`, `LH:${f.covered}`, 'end_of_record'].join(
        '\n',
      ),
    )
    .join('\n')
    .concat('\n');
}

/** Per-file `{ covered, total }` of the src/ lines (test blocks left out), from lcov text. */
function lineCoverage(lcov) {
  const src = path.join(root, 'src') + path.sep;
  const files = new Map();
  let current = null;
  for (const line of lcov.split('\n')) {
    if (line.startsWith('SF:')) {
      const file = line.slice(3);
      current = file.startsWith(src) ? { file, blocks: testBlocks(file), lines: new Map() } : null;
      if (current) files.set(file, current);
    } else if (current && line.startsWith('DA:')) {
      const [n, count] = line.slice(3).split(',').map(Number);
      if (current.blocks.some(([a, b]) => n >= a && n <= b)) continue;
      current.lines.set(n, Math.max(current.lines.get(n) ?? 0, count));
    }
  }
  return [...files.values()]
    .map(({ file, lines }) => ({
      path: file,
      file: path.relative(root, file),
      lines: [...lines.entries()].sort((a, b) => a[0] - b[0]),
      total: lines.size,
      covered: [...lines.values()].filter((c) => c > 0).length,
      missed: [...lines.entries()].filter(([, c]) => c === 0).map(([n]) => n),
    }))
    .filter((f) => f.total > 0)
    .sort((a, b) => a.file.localeCompare(b.file));
}

/** `1-3, 7, 9-10` */
function ranges(numbers) {
  const parts = [];
  for (let i = 0; i < numbers.length; i++) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
    parts.push(i === j ? `${numbers[i]}` : `${numbers[i]}-${numbers[j]}`);
    i = j;
  }
  return parts.join(', ');
}

function report(tools) {
  const raws = fs.existsSync(profiles) ? fs.readdirSync(profiles).filter((f) => f.endsWith('.profraw')) : [];
  if (raws.length === 0) fail(`no profiles in ${path.relative(root, profiles)}: run without --no-run first`);
  if (!fs.existsSync(objectsFile)) fail('no instrumented build recorded: run without --no-run first');
  const objects = JSON.parse(fs.readFileSync(objectsFile, 'utf8'));

  step(`merging ${raws.length} profiles`);
  const list = path.join(out, 'profraw-list.txt');
  fs.writeFileSync(list, raws.map((f) => path.join(profiles, f)).join('\n') + '\n');
  const merged = path.join(out, 'merged.profdata');
  // A process killed by a signal writes no profile, or a truncated one: warn, go on.
  const r = spawnSync(tools.llvmProfdata, ['merge', '-sparse', '--failure-mode=all', `--input-files=${list}`, '-o', merged], {
    encoding: 'utf8',
  });
  if (r.stderr) process.stderr.write(r.stderr);
  if (r.error || r.status !== 0) fail('llvm-profdata merge failed');

  const covArgs = [
    `-instr-profile=${merged}`,
    ...objects.flatMap((o, i) => (i === 0 ? [o] : ['-object', o])),
    '-ignore-filename-regex=(/\\.cargo/|/\\.rustup/|/rustc/|/target/)',
  ];
  const lcov = capture(tools.llvmCov, ['export', '-format=lcov', ...covArgs]);
  const html = path.join(out, 'html');
  fs.rmSync(html, { recursive: true, force: true });
  capture(tools.llvmCov, ['show', '-format=html', `-output-dir=${html}`, '-show-line-counts-or-regions', ...covArgs]);

  const files = lineCoverage(lcov);
  fs.writeFileSync(path.join(out, 'lcov.info'), lcovOf(files));
  const covered = files.reduce((s, f) => s + f.covered, 0);
  const total = files.reduce((s, f) => s + f.total, 0);
  const pct = (c, t) => (t === 0 ? 100 : (100 * c) / t);
  const width = Math.max(...files.map((f) => f.file.length), 5);
  const row = (name, c, t, flag) =>
    `${name.padEnd(width)}  ${String(c).padStart(6)} / ${String(t).padEnd(6)} ${pct(c, t).toFixed(1).padStart(6)}%${flag}`;

  step('line coverage of src/ (test modules left out)');
  const low = [];
  for (const f of files) {
    const p = pct(f.covered, f.total);
    const excused = BELOW_FLOOR[f.file];
    if (p < FILE_MIN && !excused) low.push(f);
    console.log(row(f.file, f.covered, f.total, p < FILE_MIN ? `  < ${FILE_MIN}%${excused ? ' (excused, see below)' : ''}` : ''));
  }
  for (const f of files) {
    if (pct(f.covered, f.total) < FILE_MIN && BELOW_FLOOR[f.file]) console.log(`${f.file}: ${BELOW_FLOOR[f.file]}`);
  }
  console.log('-'.repeat(width + 26));
  const totalPct = pct(covered, total);
  console.log(row('TOTAL', covered, total, totalPct < TOTAL_MIN ? `  < ${TOTAL_MIN}%` : ''));
  if (showMissed) {
    step('lines not covered');
    for (const f of files) if (f.missed.length) console.log(`${f.file}: ${ranges(f.missed)}`);
  }
  console.log(
    `\nreport: ${path.relative(root, path.join(html, 'index.html'))}, ${path.relative(root, path.join(out, 'lcov.info'))}`,
  );

  const problems = [];
  if (totalPct < TOTAL_MIN) problems.push(`total ${totalPct.toFixed(1)}% is under ${TOTAL_MIN}%`);
  for (const f of low) problems.push(`${f.file} ${pct(f.covered, f.total).toFixed(1)}% is under ${FILE_MIN}%`);
  return problems;
}

const started = Date.now();
const tools = findTools();
const passes = selectedPasses();
const { failures, timings } = noRun ? { failures: [], timings: [] } : buildAndRun(passes);
const problems = report(tools);
if (!noRun && passes.length < PASSES.length) {
  process.stderr.write(`coverage: warning: only the passes ${passes.join(', ')} ran (COVERAGE_PASSES): the figures are low\n`);
}
console.log(
  `coverage: done in ${Math.round((Date.now() - started) / 1000)} s${timings.length ? ` (passes: ${timings.join(', ')})` : ''}`,
);
for (const f of failures) process.stderr.write(`coverage: FAILED: ${f} (figures above may be low)\n`);
for (const p of problems) process.stderr.write(`coverage: ${reportOnly ? 'below threshold' : 'FAILED'}: ${p}\n`);
process.exit(failures.length > 0 || (problems.length > 0 && !reportOnly) ? 1 : 0);
