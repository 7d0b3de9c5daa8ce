'use strict';
// The scenarios. A scenario is a few lines:
//   id, title      how it is named in the table and in latest.json
//   inFlight       calls kept running at once (1 = sequential, one awaited at a time)
//   calls          calls per measurement (scaled by BENCH_SCALE)
//   opsPerCall     Redis operations per call (a pipeline of 100 counts 100)
//   libraries      which libraries take part (default: all in libraries.js); a service's
//                  scenario names ours and the peer it replaces
//   prepare(lib)   optional, once per library before measuring (untimed)
//   call(lib, i)   one call; `lib` is the adapter from libraries.js (lib.raw is the client).
//                  Or an object { [library]: (lib, i) => ... } when each does it its own way.

const KEYS = 1000;
const VALUE = 'v'.repeat(100); // 100-byte values
const key = (i) => `bench:key:${i % KEYS}`;

async function fillKeys(lib) {
  for (let i = 0; i < KEYS; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => lib.set(key(i + j), VALUE)));
  }
}

const mgetKeys = Array.from({ length: KEYS / 10 }, (_, i) => Array.from({ length: 10 }, (_, j) => key(i * 10 + j)));
const pipelineCommands = Array.from({ length: 10 }, (_, p) =>
  Array.from({ length: 100 }, (_, j) => (j % 2 ? ['GET', key(p * 100 + j)] : ['SET', key(p * 100 + j), VALUE])),
);

/** @type {Array<{id: string, title: string, inFlight: number, calls: number, opsPerCall?: number, libraries?: string[], prepare?: (lib: any, name: string) => Promise<void>, call: ((lib: any, i: number) => Promise<unknown>) | Record<string, (lib: any, i: number) => Promise<unknown>>}>} */
const scenarios = [
  { id: 'get-seq', title: 'GET, sequential', inFlight: 1, calls: 5000, prepare: fillKeys, call: (lib, i) => lib.get(key(i)) },
  { id: 'set-seq', title: 'SET, sequential', inFlight: 1, calls: 5000, call: (lib, i) => lib.set(key(i), VALUE) },
  {
    id: 'get-100',
    title: 'GET, 100 in flight',
    inFlight: 100,
    calls: 100000,
    prepare: fillKeys,
    call: (lib, i) => lib.get(key(i)),
  },
  { id: 'set-100', title: 'SET, 100 in flight', inFlight: 100, calls: 100000, call: (lib, i) => lib.set(key(i), VALUE) },
  {
    id: 'mget-10',
    title: 'MGET of 10 keys, 100 in flight',
    inFlight: 100,
    calls: 30000,
    prepare: fillKeys,
    call: (lib, i) => lib.mget(mgetKeys[i % mgetKeys.length]),
  },
  {
    id: 'pipeline-100',
    title: 'pipeline of 100 commands (GET/SET), sequential',
    inFlight: 1,
    calls: 500,
    opsPerCall: 100,
    call: (lib, i) => lib.pipeline(pipelineCommands[i % pipelineCommands.length]),
  },
];

// Sessions: SessionService against what a NestJS team writes by hand with ioredis
// (connect-redis style: a JSON string per session, plus a per-user set for "logout
// everywhere"). Ours does more per call: atomic per-user index with pruning, online status.
const OURS = 'nestjs-redis-native';
const IOREDIS = 'ioredis (auto-pipelining)';
const SESSIONS = 1000;
const sessionData = (i) => ({
  userId: `user-${i % 100}`,
  roles: ['customer'],
  name: 'Ada Lovelace',
  cart: { items: 3, total: 59.9 },
  locale: 'en-GB',
});
function sessionsOf(lib) {
  const { SessionService } = require('..');
  lib.sessions ??= new SessionService(lib.client);
  return lib.sessions;
}
async function fillSessions(lib, name) {
  for (let i = 0; i < SESSIONS; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, (_, j) =>
        name === OURS
          ? sessionsOf(lib).createSession(`bench-${i + j}`, sessionData(i + j), 3600)
          : lib.raw.set(`bench:sess:${i + j}`, JSON.stringify(sessionData(i + j)), 'EX', 3600),
      ),
    );
  }
}

scenarios.push(
  {
    id: 'session-get-100',
    title: 'getSession, 100 in flight (vs ioredis GET + JSON.parse)',
    inFlight: 100,
    calls: 50000,
    libraries: [OURS, IOREDIS],
    prepare: fillSessions,
    call: {
      [OURS]: (lib, i) => sessionsOf(lib).getSession(`bench-${i % SESSIONS}`),
      [IOREDIS]: async (lib, i) => JSON.parse(await lib.raw.get(`bench:sess:${i % SESSIONS}`)),
    },
  },
  {
    id: 'session-create-100',
    title: 'createSession, 100 in flight (vs ioredis MULTI: SET EX + SADD per-user index)',
    inFlight: 100,
    calls: 30000,
    libraries: [OURS, IOREDIS],
    call: {
      [OURS]: (lib, i) => sessionsOf(lib).createSession(`bench-new-${i % SESSIONS}`, sessionData(i), 3600),
      [IOREDIS]: (lib, i) =>
        lib.raw
          .multi()
          .set(`bench:sess:new-${i % SESSIONS}`, JSON.stringify(sessionData(i)), 'EX', 3600)
          .sadd(`bench:user-sessions:user-${i % 100}`, `new-${i % SESSIONS}`)
          .exec(),
    },
  },
);

// Rate limiting: RateLimitService.consume (each algorithm) against rate-limiter-flexible's
// RateLimiterRedis on ioredis, 1,000 keys, 100 in flight. Limits high enough that every
// call is allowed (the common case), so both do the same work per call.
const RLF = 'rate-limiter-flexible';
const RATE_KEYS = 1000;
/** This limit as a RateLimiter (options read once, as rate-limiter-flexible's limiter has them). */
function limiterOf(lib, options) {
  const { RateLimitService } = require('..');
  lib.rateLimit ??= new RateLimitService(lib.client);
  lib.limiters ??= new Map();
  if (!lib.limiters.has(options.algorithm)) lib.limiters.set(options.algorithm, lib.rateLimit.limiter(options));
  return lib.limiters.get(options.algorithm);
}
for (const [algorithm, label] of [
  ['sliding-window-counter', 'sliding window counter (default)'],
  ['sliding-window', 'exact sliding window'],
  ['fixed-window', 'fixed window'],
  ['token-bucket', 'token bucket'],
]) {
  const options = { limit: 1000, windowSeconds: 1, algorithm };
  scenarios.push({
    id: `ratelimit-${algorithm}`,
    title: `RateLimiter.consume, ${label}, 1000 keys, limit 1000/s, 100 in flight (vs rate-limiter-flexible)`,
    inFlight: 100,
    calls: 50000,
    libraries: [OURS, RLF],
    call: {
      [OURS]: (lib, i) => limiterOf(lib, options).consume(`bench:${algorithm}:${i % RATE_KEYS}`),
      [RLF]: (lib, i) =>
        lib
          .limiter({ limit: options.limit, windowSeconds: options.windowSeconds, prefix: `bench-rlf-${algorithm}` })
          .consume(`k${i % RATE_KEYS}`),
    },
  });
}

// Near cache: a hot key read one await at a time, and a Zipf-distributed read mix over
// 100,000 keys (s = 1: a few keys are read very often, most rarely), against ioredis.
const NEAR = 'nestjs-redis-native (near cache)';
const ZIPF_KEYS = 100000;
const zipfKey = (i) => `bench:zipf:${i}`;
const zipfRanks = (() => {
  // inverse CDF of Zipf(1) over ZIPF_KEYS ranks, sampled with a fixed seed
  const weights = Array.from({ length: ZIPF_KEYS }, (_, r) => 1 / (r + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const cdf = new Float64Array(ZIPF_KEYS);
  let acc = 0;
  for (let r = 0; r < ZIPF_KEYS; r++) cdf[r] = acc += weights[r] / total;
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  return Array.from({ length: 1 << 18 }, () => {
    const x = random();
    let lo = 0;
    let hi = ZIPF_KEYS - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  });
})();
scenarios.push(
  {
    id: 'near-hot-seq',
    title: 'GET of one hot key, sequential (near cache)',
    inFlight: 1,
    calls: 20000,
    libraries: [NEAR, OURS, 'ioredis'],
    prepare: (lib) => lib.set('bench:hot', VALUE),
    call: (lib) => lib.get('bench:hot'),
  },
  {
    id: 'near-zipf-100',
    title: 'GET, Zipf(1) over 100,000 keys, 100 in flight (near cache)',
    inFlight: 100,
    calls: 200000,
    libraries: [NEAR, OURS, IOREDIS],
    prepare: async (lib, name) => {
      if (name !== NEAR) return; // one fill for all: the keys are shared
      for (let i = 0; i < ZIPF_KEYS; i += 1000) {
        await Promise.all(Array.from({ length: 1000 }, (_, j) => lib.set(zipfKey(i + j), VALUE)));
      }
    },
    call: (lib, i) => lib.get(zipfKey(zipfRanks[i & (zipfRanks.length - 1)])),
  },
);

// The adapters against the stores they replace, each on its usual client: the throttler
// storage against @nest-lab/throttler-storage-redis (ioredis), the session store against
// connect-redis and the Keyv store against @keyv/redis (both on node-redis).
const NEST_LAB = '@nest-lab/throttler-storage-redis';
const CONNECT_REDIS = 'connect-redis';
const KEYV_REDIS = '@keyv/redis';
const ADAPTER_KEYS = 1000;
function adaptersOf(lib) {
  if (!lib.adapters) {
    const { RedisThrottlerStorage, RedisSessionStore, KeyvRedisStore } = require('../nest/dist/adapters');
    lib.adapters = {
      throttler: new RedisThrottlerStorage(lib.client),
      sessions: new RedisSessionStore(lib.client, { prefix: 'bench-sess:' }),
      keyv: new KeyvRedisStore(lib.client, { namespace: 'bench' }),
    };
  }
  return lib.adapters;
}
const expressSession = (i) => ({
  cookie: { originalMaxAge: 86_400_000, expires: new Date(Date.now() + 86_400_000).toISOString(), httpOnly: true, path: '/' },
  passport: { user: `user-${i}` },
  cart: { items: 3, total: 59.9 },
});
const promised = (f) => new Promise((resolve, reject) => f((err, v) => (err ? reject(err) : resolve(v))));
scenarios.push(
  {
    id: 'adapter-throttler-100',
    title: 'ThrottlerStorage.increment, 1000 keys, 100 in flight (vs @nest-lab/throttler-storage-redis)',
    inFlight: 100,
    calls: 50000,
    libraries: [OURS, NEST_LAB],
    call: {
      [OURS]: (lib, i) => adaptersOf(lib).throttler.increment(`ip${i % ADAPTER_KEYS}`, 60_000, 1e9, 0, 'default'),
      [NEST_LAB]: (lib, i) => lib.raw.increment(`ip${i % ADAPTER_KEYS}`, 60_000, 1e9, 0, 'default'),
    },
  },
  {
    id: 'adapter-session-get-100',
    title: 'express-session store get, 100 in flight (vs connect-redis)',
    inFlight: 100,
    calls: 50000,
    libraries: [OURS, CONNECT_REDIS],
    async prepare(lib, name) {
      const store = name === OURS ? adaptersOf(lib).sessions : lib.raw;
      for (let i = 0; i < ADAPTER_KEYS; i++) await promised((cb) => store.set(`s${i}`, expressSession(i), cb));
    },
    call: {
      [OURS]: (lib, i) => promised((cb) => adaptersOf(lib).sessions.get(`s${i % ADAPTER_KEYS}`, cb)),
      [CONNECT_REDIS]: (lib, i) => promised((cb) => lib.raw.get(`s${i % ADAPTER_KEYS}`, cb)),
    },
  },
  {
    id: 'adapter-keyv-get-100',
    title: 'Keyv store get, 100 in flight (vs @keyv/redis)',
    inFlight: 100,
    calls: 50000,
    libraries: [OURS, KEYV_REDIS],
    async prepare(lib, name) {
      const store = name === OURS ? adaptersOf(lib).keyv : lib.raw;
      for (let i = 0; i < ADAPTER_KEYS; i++)
        await store.set(`keyv:k${i}`, JSON.stringify({ value: { id: i, name: 'x'.repeat(80) } }));
    },
    call: {
      [OURS]: (lib, i) => adaptersOf(lib).keyv.get(`keyv:k${i % ADAPTER_KEYS}`),
      [KEYV_REDIS]: (lib, i) => lib.raw.get(`keyv:k${i % ADAPTER_KEYS}`),
    },
  },
  {
    id: 'adapter-keyv-set-100',
    title: 'Keyv store set with a ttl, 100 in flight (vs @keyv/redis)',
    inFlight: 100,
    calls: 50000,
    libraries: [OURS, KEYV_REDIS],
    call: {
      [OURS]: (lib, i) => adaptersOf(lib).keyv.set(`keyv:s${i % ADAPTER_KEYS}`, '{"value":1}', 60_000),
      [KEYV_REDIS]: (lib, i) => lib.raw.set(`keyv:s${i % ADAPTER_KEYS}`, '{"value":1}', 60_000),
    },
  },
);

// In process, without Redis: `memory://` against what users run instead (ioredis-mock,
// rate-limiter-flexible's RateLimiterMemory, Keyv with its Map store). Redis CPU is 0 here.
const MEM = 'nestjs-redis-native (memory://)';
const IOREDIS_MOCK = 'ioredis-mock';
const RLF_MEMORY = 'RateLimiterMemory';
const KEYV_MAP = 'Keyv (Map)';
function memKeyv(lib) {
  if (!lib.keyv) {
    const { default: Keyv } = require('keyv');
    const { KeyvRedisStore } = require('../nest/dist/adapters');
    lib.keyv = new Keyv({ store: new KeyvRedisStore(lib.client) });
  }
  return lib.keyv;
}
const memOptions = { limit: 1000, windowSeconds: 1, algorithm: 'sliding-window-counter' };
scenarios.push(
  {
    id: 'memory-get-seq',
    title: 'memory: GET, sequential',
    ours: MEM,
    inFlight: 1,
    calls: 20000,
    libraries: [MEM, IOREDIS_MOCK],
    prepare: fillKeys,
    call: (lib, i) => lib.get(key(i)),
  },
  {
    id: 'memory-get-100',
    title: 'memory: GET, 100 in flight',
    ours: MEM,
    inFlight: 100,
    calls: 200000,
    libraries: [MEM, IOREDIS_MOCK],
    prepare: fillKeys,
    call: (lib, i) => lib.get(key(i)),
  },
  {
    id: 'memory-set-100',
    title: 'memory: SET, 100 in flight',
    ours: MEM,
    inFlight: 100,
    calls: 200000,
    libraries: [MEM, IOREDIS_MOCK],
    call: (lib, i) => lib.set(key(i), VALUE),
  },
  {
    id: 'memory-ratelimit-100',
    title: 'memory: RateLimiter.consume (sliding window counter), 1000 keys, 100 in flight (vs RateLimiterMemory)',
    ours: MEM,
    inFlight: 100,
    calls: 100000,
    libraries: [MEM, RLF_MEMORY],
    call: {
      [MEM]: (lib, i) => limiterOf(lib, memOptions).consume(`bench:mem:${i % RATE_KEYS}`),
      [RLF_MEMORY]: (lib, i) => lib.limiter(memOptions).consume(`k${i % RATE_KEYS}`),
    },
  },
  {
    id: 'memory-keyv-get-100',
    title: 'memory: Keyv get, 100 in flight (vs Keyv with its Map store)',
    ours: MEM,
    inFlight: 100,
    calls: 100000,
    libraries: [MEM, KEYV_MAP],
    async prepare(lib, name) {
      const keyv = name === MEM ? memKeyv(lib) : lib.raw;
      for (let i = 0; i < ADAPTER_KEYS; i++) await keyv.set(`k${i}`, { id: i, name: 'x'.repeat(80) });
    },
    call: {
      [MEM]: (lib, i) => memKeyv(lib).get(`k${i % ADAPTER_KEYS}`),
      [KEYV_MAP]: (lib, i) => lib.raw.get(`k${i % ADAPTER_KEYS}`),
    },
  },
  {
    id: 'memory-keyv-set-100',
    title: 'memory: Keyv set with a ttl, 100 in flight (vs Keyv with its Map store)',
    ours: MEM,
    inFlight: 100,
    calls: 100000,
    libraries: [MEM, KEYV_MAP],
    call: {
      [MEM]: (lib, i) => memKeyv(lib).set(`s${i % ADAPTER_KEYS}`, { value: i }, 60_000),
      [KEYV_MAP]: (lib, i) => lib.raw.set(`s${i % ADAPTER_KEYS}`, { value: i }, 60_000),
    },
  },
);

module.exports = { scenarios, key, VALUE, KEYS };
