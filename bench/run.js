#!/usr/bin/env node
'use strict';
// npm run bench: nestjs-redis-native against its peers, in one Node process, on one Redis.
//
//   REDIS_URL       Redis to use (default: a private redis-server on a free loopback port)
//   BENCH_ROUNDS    measured rounds, interleaved across libraries (default 3)
//   BENCH_SCALE     multiplies every scenario's call count (default 1)
//   BENCH_ONLY      comma-separated scenario ids to run (default all)
//   BENCH_LIBS      comma-separated library names to run (default all that load)
//   BENCH_TOPOLOGY  `cluster` (or `npm run bench:cluster`): on a local Redis Cluster (3 masters, 3 replicas) against
//                   ioredis's Cluster client, in the scenarios that run on a cluster
//
// Writes a table to stdout and everything to bench/results/latest.json
// (latest-cluster.json for the cluster).

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { libraries: allLibraries, hostPort } = require('./libraries');
const { scenarios: allScenarios } = require('./scenarios');
// the same private redis-server the tests use (compiled by `npm run bench`)
const { startRedis } = require('../.test-build/__test__/support/redis-server.js');
const { startCluster } = require('../.test-build/__test__/support/cluster.js');
const { info: nodeInfo } = require('../.test-build/__test__/support/resp.js');

const CLUSTER = process.env.BENCH_TOPOLOGY === 'cluster' || process.argv.includes('--cluster');
/** On a cluster: the clients with a cluster mode, and the scenarios every one of them can run there
 * (ioredis refuses MGET and pipelines across slots, and the hand-written session MULTI spans slots). */
const CLUSTER_LIBRARIES = [
  'nestjs-redis-native',
  'nestjs-redis-native (stack traces)',
  'ioredis (auto-pipelining)',
  'ioredis',
  'rate-limiter-flexible',
];
const CLUSTER_SCENARIOS = [
  'get-seq',
  'set-seq',
  'get-100',
  'set-100',
  'session-get-100',
  'ratelimit-sliding-window-counter',
  'ratelimit-sliding-window',
  'ratelimit-fixed-window',
  'ratelimit-token-bucket',
];

const OURS = 'nestjs-redis-native';
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
const SCALE = Number(process.env.BENCH_SCALE || 1);
const only = (name) => (process.env[name] ? process.env[name].split(',').map((s) => s.trim()) : null);

const MAIN_THREAD = `/proc/self/task/${process.pid}/schedstat`;
/** CPU time of the main JS thread alone, ns (Linux; null elsewhere). */
function mainThreadNs() {
  try {
    return Number(fs.readFileSync(MAIN_THREAD, 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}

function processCpuUs() {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function measure(lib, name, scenario, calls) {
  const call = typeof scenario.call === 'function' ? scenario.call : scenario.call[name];
  const latencies = new Float64Array(calls);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= calls) return;
      const start = performance.now();
      await call(lib, i);
      latencies[i] = performance.now() - start;
    }
  };
  if (global.gc) global.gc();
  const cpu0 = processCpuUs();
  const main0 = mainThreadNs();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(scenario.inFlight, calls) }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const main1 = mainThreadNs();
  const cpu1 = processCpuUs();
  const ops = calls * (scenario.opsPerCall || 1);
  latencies.sort();
  return {
    opsPerSec: ops / seconds,
    p50Us: percentile(latencies, 50) * 1000,
    p99Us: percentile(latencies, 99) * 1000,
    cpuProcessUsPerOp: (cpu1 - cpu0) / ops,
    cpuMainUsPerOp: main0 === null ? null : (main1 - main0) / 1000 / ops,
  };
}

function summarize(rounds) {
  const pick = (k) => rounds.map((r) => r[k]).filter((v) => v !== null);
  const out = {};
  for (const k of ['opsPerSec', 'p50Us', 'p99Us', 'cpuProcessUsPerOp', 'cpuMainUsPerOp', 'serverUsPerOp']) {
    const xs = pick(k);
    out[k] = xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) } : null;
  }
  return out;
}

function redisBenchmark(url) {
  const { host, port } = hostPort(url);
  const run = (args) => {
    try {
      const csv = execFileSync('redis-benchmark', ['-h', host, '-p', String(port), '-d', '100', '--csv', ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const rows = csv
        .trim()
        .split('\n')
        .map((l) => l.split(',').map((c) => c.replace(/"/g, '')));
      const header = rows[0];
      return Object.fromEntries(
        rows.slice(1).map((r) => [r[0], Object.fromEntries(header.slice(1).map((h, i) => [h, Number(r[i + 1])]))]),
      );
    } catch (e) {
      return { error: e.message.split('\n')[0] };
    }
  };
  return {
    inFlight100: run(['-c', '100', '-n', String(Math.round(200000 * SCALE)), '-t', 'get,set']),
    pipelined: run(['-c', '50', '-P', '16', '-n', String(Math.round(1000000 * SCALE)), '-t', 'get,set']),
    sequential: run(['-c', '1', '-n', String(Math.round(20000 * SCALE)), '-t', 'get,set']),
  };
}

const fmt = {
  ops: (v) => (v >= 10000 ? `${(v / 1000).toFixed(0)}k` : v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0)),
  us: (v) => (v === null || v === undefined || Number.isNaN(v) ? '–' : v >= 100 ? v.toFixed(0) : v.toFixed(1)),
  ratio: (v) => (v === null || !Number.isFinite(v) ? '–' : `${v.toFixed(2)}×`),
};

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  return [line(headers), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

async function main() {
  let server;
  let cluster;
  let url = process.env.REDIS_URL;
  if (CLUSTER) {
    cluster = await startCluster();
    url = { cluster: cluster.nodes };
  } else if (!url) {
    server = await startRedis();
    url = server.url;
  }
  const libFilter = only('BENCH_LIBS');
  const scenarioFilter = only('BENCH_ONLY');
  const libNames = Object.keys(allLibraries).filter(
    (n) => (!libFilter || libFilter.includes(n)) && (!CLUSTER || CLUSTER_LIBRARIES.includes(n)),
  );
  // Redis's own CPU per operation (its main thread: commands, scripts and network I/O),
  // from INFO cpu around each measurement. (INFO commandstats would count a script's
  // commands twice: in EVALSHA and on their own.)
  const { RedisClient, RedisService } = require('..');
  const adminClient = await RedisClient.connect(CLUSTER ? { cluster: { nodes: url.cluster } } : { url });
  const admin = new RedisService(adminClient);
  const serverUsec = async () => {
    if (CLUSTER) {
      // every node's main thread, summed
      let total = 0;
      for (const port of cluster.ports) {
        const i = await nodeInfo(port, 'cpu');
        total += (Number(i.used_cpu_user_main_thread || 0) + Number(i.used_cpu_sys_main_thread || 0)) * 1e6;
      }
      return total;
    }
    const info = String(await admin.command('INFO', ['cpu']));
    const field = (name) => Number((info.match(new RegExp(`^${name}:([\\d.]+)`, 'm')) || [])[1] || 0);
    return (field('used_cpu_user_main_thread') + field('used_cpu_sys_main_thread')) * 1e6;
  };
  const scenarios = allScenarios.filter(
    (s) => (!scenarioFilter || scenarioFilter.includes(s.id)) && (!CLUSTER || CLUSTER_SCENARIOS.includes(s.id)),
  );

  const log = (s) => process.stderr.write(`${s}\n`);
  log(
    `bench: ${libNames.join(', ')} on ${CLUSTER ? 'a local Redis Cluster (3 masters, 3 replicas)' : server ? 'a private redis-server' : 'REDIS_URL'}; ${ROUNDS} rounds, scale ${SCALE}`,
  );
  const adapters = {};
  for (const name of libNames) adapters[name] = await allLibraries[name].connect(url);

  const results = [];
  for (const scenario of scenarios) {
    const names = libNames.filter((n) => (scenario.libraries ? scenario.libraries.includes(n) : !allLibraries[n].only));
    const calls = Math.max(1, Math.round(scenario.calls * SCALE));
    for (const name of names) {
      if (scenario.prepare) await scenario.prepare(adapters[name], name);
      await measure(adapters[name], name, scenario, Math.max(1, Math.round(calls / 5))); // warm-up
    }
    const rounds = Object.fromEntries(names.map((n) => [n, []]));
    for (let r = 0; r < ROUNDS; r++) {
      // interleaved, and a different library goes first each round
      const order = names.map((_, i) => names[(i + r) % names.length]);
      for (const name of order) {
        const server0 = await serverUsec();
        const m = await measure(adapters[name], name, scenario, calls);
        m.serverUsPerOp = ((await serverUsec()) - server0) / (calls * (scenario.opsPerCall || 1));
        rounds[name].push(m);
      }
    }
    const summary = Object.fromEntries(names.map((n) => [n, summarize(rounds[n])]));
    for (const n of names) {
      const near = adapters[n].client?.metrics?.().nearCache;
      if (near && near.hits + near.misses > 0) {
        summary[n].nearCacheHitRatio = near.hits / (near.hits + near.misses);
        log(`bench: ${scenario.id}: ${n}: near cache hit ratio ${(100 * summary[n].nearCacheHitRatio).toFixed(1)}% so far`);
      }
    }
    const oursName = scenario.ours ?? OURS;
    const ours = summary[oursName];
    const ratios = {};
    if (ours) {
      for (const n of names.filter((x) => x !== oursName)) {
        const peer = summary[n];
        ratios[n] = {
          opsPerSec: ours.opsPerSec.median / peer.opsPerSec.median,
          p50: ours.p50Us.median / peer.p50Us.median,
          cpuMainPerOp:
            ours.cpuMainUsPerOp && peer.cpuMainUsPerOp ? ours.cpuMainUsPerOp.median / peer.cpuMainUsPerOp.median : null,
          cpuProcessPerOp: ours.cpuProcessUsPerOp.median / peer.cpuProcessUsPerOp.median,
        };
      }
    }
    results.push({
      id: scenario.id,
      title: scenario.title,
      ours: oursName,
      inFlight: scenario.inFlight,
      calls,
      opsPerCall: scenario.opsPerCall || 1,
      libraries: summary,
      ratios,
      rounds,
    });
    log(`bench: ${scenario.id} done`);
  }

  await adminClient.close();
  const ceiling = CLUSTER ? null : redisBenchmark(url);
  for (const a of Object.values(adapters)) await a.close();
  if (server) await server.stop();
  if (cluster) await cluster.stop();

  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    redis: (() => {
      try {
        return execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).trim();
      } catch {
        return null;
      }
    })(),
    versions: Object.fromEntries(
      [
        ['ioredis', 'ioredis/package.json'],
        ['redis', 'redis/package.json'],
        ['nestjs-redis-native', '../package.json'],
        ['@valkey/valkey-glide', '../node_modules/@valkey/valkey-glide/package.json'],
      ].map(([n, p]) => {
        try {
          return [n, require(p).version];
        } catch {
          return [n, null];
        }
      }),
    ),
  };
  const report = {
    date: new Date().toISOString(),
    machine,
    rounds: ROUNDS,
    scale: SCALE,
    scenarios: results,
    redisBenchmark: ceiling,
  };
  const dir = path.join(__dirname, 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, CLUSTER ? 'latest-cluster.json' : 'latest.json'), JSON.stringify(report, null, 2));

  for (const s of results) {
    console.log(
      `\n### ${s.title}  (${s.calls} calls${s.opsPerCall > 1 ? ` × ${s.opsPerCall} ops` : ''}, medians of ${ROUNDS} rounds, min–max)\n`,
    );
    const rows = Object.entries(s.libraries).map(([name, m]) => [
      name,
      `${fmt.ops(m.opsPerSec.median)} (${fmt.ops(m.opsPerSec.min)}–${fmt.ops(m.opsPerSec.max)})`,
      fmt.us(m.p50Us.median),
      fmt.us(m.p99Us.median),
      m.cpuMainUsPerOp ? fmt.us(m.cpuMainUsPerOp.median) : '–',
      fmt.us(m.cpuProcessUsPerOp.median),
      m.serverUsPerOp ? fmt.us(m.serverUsPerOp.median) : '–',
      name === (s.ours ?? OURS)
        ? ''
        : s.ratios[name]
          ? `${fmt.ratio(s.ratios[name].opsPerSec)} / ${fmt.ratio(s.ratios[name].cpuMainPerOp)}`
          : '',
    ]);
    console.log(
      table(
        [
          'library',
          'ops/s',
          'p50 µs',
          'p99 µs',
          'main-thread CPU µs/op',
          'process CPU µs/op',
          'Redis CPU µs/op',
          'ours vs it: ops/s / main CPU',
        ],
        rows,
      ),
    );
  }
  const c = ceiling;
  if (!c) {
    console.log(`\n${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.redis}`);
    console.log(`written: ${path.relative(process.cwd(), path.join(dir, 'latest-cluster.json'))}`);
    return;
  }
  const rb = (x, t) => (x && x[t] ? `${fmt.ops(x[t].rps)} ops/s, p50 ${fmt.us(x[t].p50_latency_ms * 1000)} µs` : '–');
  console.log('\n### redis-benchmark on the same server (the ceiling)\n');
  console.log(
    table(
      ['run', 'GET', 'SET'],
      [
        ['-c 100', rb(c.inFlight100, 'GET'), rb(c.inFlight100, 'SET')],
        ['-c 50 -P 16', rb(c.pipelined, 'GET'), rb(c.pipelined, 'SET')],
        ['-c 1', rb(c.sequential, 'GET'), rb(c.sequential, 'SET')],
      ],
    ),
  );
  console.log(`\n${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.redis}`);
  console.log(`written: ${path.relative(process.cwd(), path.join(dir, CLUSTER ? 'latest-cluster.json' : 'latest.json'))}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
