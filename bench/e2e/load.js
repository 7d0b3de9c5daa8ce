'use strict';
// The load generator of run.js, in a process of its own (forked with an IPC channel):
// autocannon against one route of one app. It warms up, tells the parent `{ type: 'warm' }`,
// waits for `'go'` (the parent samples the server's CPU in between), measures, and sends
// `{ type: 'result', ... }`. Latencies are taken from every response (µs precision;
// autocannon's own histogram keeps whole milliseconds).
//
//   node load.js '{"url":"http://127.0.0.1:1234","route":"me","connections":50,"warmup":2,"duration":5}'

const autocannon = require('autocannon');
const { randomBytes } = require('node:crypto');
const { PRODUCTS, SESSIONS, USERS, sessionId } = require('./node_modules/.build/common.js');

const random = (n) => Math.floor(Math.random() * n);
/** Unique per load process: with a counter, every Idempotency-Key of a run is new. */
const runId = randomBytes(6).toString('hex');
let sequence = 0;
const sessionIds = Array.from({ length: SESSIONS }, (_, i) => sessionId(i));
const json = { 'content-type': 'application/json' };

/** The request of each route; `setupRequest` varies it per request. */
const routes = {
  ping: { method: 'GET', path: '/ping' },
  product: {
    method: 'GET',
    path: '/product/1',
    setupRequest: (req) => ({ ...req, path: `/product/${1 + random(PRODUCTS)}` }),
  },
  me: {
    method: 'GET',
    path: '/me',
    setupRequest: (req) => ({ ...req, headers: { 'x-session': sessionIds[random(SESSIONS)] } }),
  },
  login: {
    method: 'POST',
    path: '/login',
    headers: json,
    setupRequest: (req) => {
      const userId = `u${random(USERS)}`;
      return {
        ...req,
        body: JSON.stringify({ userId, name: `User ${userId}`, email: `${userId}@example.com`, device: 'bench' }),
      };
    },
  },
  orders: {
    method: 'POST',
    path: '/orders',
    setupRequest: (req) => ({
      ...req,
      headers: { ...json, 'idempotency-key': `${runId}-${sequence++}` },
      body: JSON.stringify({ productId: 1 + random(PRODUCTS), quantity: 1 + random(3) }),
    }),
  },
};

function run(url, route, connections, duration, onResponse) {
  return new Promise((resolve, reject) => {
    const instance = autocannon({ url, connections, duration, requests: [routes[route]], timeout: 10 }, (error, result) =>
      error ? reject(error) : resolve(result),
    );
    if (onResponse) instance.on('response', onResponse);
  });
}

async function main() {
  const { url, route, connections, warmup, duration } = JSON.parse(process.argv[2]);
  if (!routes[route]) throw new Error(`unknown route ${route}`);
  let failures = 0;
  if (warmup > 0) {
    const w = await run(url, route, connections, warmup);
    failures = w.non2xx + w.errors + w.timeouts;
  }
  process.send({ type: 'warm', failures });
  await new Promise((resolve) => process.once('message', resolve));

  let latencies = new Float64Array(1 << 16);
  let count = 0;
  const statuses = {};
  const result = await run(url, route, connections, duration, (_client, status, _bytes, ms) => {
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = ms;
    statuses[status] = (statuses[status] ?? 0) + 1;
  });
  const sorted = latencies.subarray(0, count).sort();
  const at = (p) => (count ? sorted[Math.min(count - 1, Math.floor((p / 100) * count))] : NaN);
  send({
    type: 'result',
    requests: count,
    seconds: result.duration,
    reqPerSec: count / result.duration,
    p50Ms: at(50),
    p99Ms: at(99),
    statuses,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  });
}

/** The last message: the IPC channel closes after it, so the process can exit. */
function send(message) {
  process.send(message, () => process.disconnect());
}

main().catch((error) => {
  process.exitCode = 1;
  send({ type: 'error', message: error.stack || String(error) });
});
