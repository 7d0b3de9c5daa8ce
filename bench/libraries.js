'use strict';
// The clients compared, each behind the same small adapter:
//   connect(url) -> { get(k), set(k, v), mget(keys), pipeline(cmds), raw, close() }
// `raw` is the library's own client, for scenarios that need more than these calls.

const { URL } = require('node:url');

function hostPort(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379) };
}

/** `url`: a redis:// URL, or `{ cluster: [urls] }` for a Redis Cluster. */
function ours(options, memory = false) {
  return {
    async connect(url) {
      const { RedisClient, RedisService } = require('..');
      const where = memory ? { url: 'memory://' } : typeof url === 'string' ? { url } : { cluster: { nodes: url.cluster } };
      const client = await RedisClient.connect({ ...where, ...options });
      const redis = new RedisService(client);
      return {
        raw: redis,
        client,
        get: (k) => redis.get(k),
        set: (k, v) => redis.set(k, v),
        mget: (keys) => redis.mget(keys),
        pipeline: (cmds) => redis.pipeline(cmds),
        close: () => client.close(),
      };
    },
  };
}

/** @type {Record<string, { connect(url: string): Promise<any> }>} */
const libraries = {
  // as in production (NODE_ENV=production turns captureStackTraces off by default)
  'nestjs-redis-native': ours({ captureStackTraces: false }),
  // as in development: every rejection gets the stack of the code that awaited it
  'nestjs-redis-native (stack traces)': ours({ captureStackTraces: true }),
  // with the near cache (only in the scenarios that name it)
  'nestjs-redis-native (near cache)': { ...ours({ captureStackTraces: false, nearCache: { maxEntries: 200000 } }), only: true },
  // in process, without Redis (only in the memory scenarios)
  'nestjs-redis-native (memory://)': { ...ours({ captureStackTraces: false }, true), only: true },

  'ioredis (auto-pipelining)': ioredis(true),
  ioredis: ioredis(false),

  'node-redis': {
    async connect(url) {
      const { createClient } = require('redis');
      const c = await createClient({ url }).connect();
      return {
        raw: c,
        get: (k) => c.get(k),
        set: (k, v) => c.set(k, v),
        mget: (keys) => c.mGet(keys),
        pipeline: (cmds) => {
          const m = c.multi();
          for (const [name, ...args] of cmds) m.addCommand([name, ...args.map(String)]);
          return m.execAsPipeline();
        },
        close: () => c.quit(),
      };
    },
  },

  'valkey-glide': {
    async connect(url) {
      const { GlideClient, Batch } = require('@valkey/valkey-glide');
      const c = await GlideClient.createClient({ addresses: [hostPort(url)], requestTimeout: 5000 });
      return {
        raw: c,
        get: (k) => c.get(k),
        set: (k, v) => c.set(k, v),
        mget: (keys) => c.mget(keys),
        pipeline: (cmds) => {
          const b = new Batch(false);
          for (const cmd of cmds) b.customCommand(cmd.map(String));
          return c.exec(b, false);
        },
        close: () => c.close(),
      };
    },
  },
};

/** Only in the scenarios that name them (not a general-purpose client). */
const specialists = {
  // @nestjs/throttler's popular Redis storage, from the e2e bench's dependencies (it
  // refuses Nest 12, which this package's own dev dependencies are); it opens its own
  // ioredis connection
  '@nest-lab/throttler-storage-redis': {
    only: true,
    module: require('node:path').join(__dirname, 'e2e', 'node_modules', '@nest-lab', 'throttler-storage-redis'),
    async connect(url) {
      const { ThrottlerStorageRedisService } = require(this.module);
      const storage = new ThrottlerStorageRedisService(url);
      return { raw: storage, close: () => storage.onModuleDestroy() };
    },
  },
  // express-session's usual Redis store, on node-redis
  'connect-redis': {
    only: true,
    async connect(url) {
      const { createClient } = require('redis');
      const { RedisStore } = require('connect-redis');
      const c = await createClient({ url }).connect();
      return { raw: new RedisStore({ client: c }), close: () => c.quit() };
    },
  },
  // Keyv's own Redis store, on node-redis
  '@keyv/redis': {
    only: true,
    async connect(url) {
      const { default: KeyvRedis } = require('@keyv/redis');
      const store = new KeyvRedis(url);
      return { raw: store, close: () => store.disconnect() };
    },
  },
  // rate-limiter-flexible's RateLimiterRedis on ioredis (auto-pipelining): `raw` is a
  // function of the limit options, so each scenario gets its limiter.
  'rate-limiter-flexible': {
    only: true,
    async connect(url) {
      const Redis = require('ioredis');
      const { RateLimiterRedis } = require('rate-limiter-flexible');
      const c = client(Redis, url, true);
      await c.connect();
      const limiters = new Map();
      return {
        raw: c,
        limiter({ limit, windowSeconds, prefix }) {
          const id = `${prefix}:${limit}:${windowSeconds}`;
          if (!limiters.has(id))
            limiters.set(id, new RateLimiterRedis({ storeClient: c, points: limit, duration: windowSeconds, keyPrefix: prefix }));
          return limiters.get(id);
        },
        close: () => c.quit(),
      };
    },
  },
};

// What users run in process instead of Redis (the memory scenarios)
specialists['ioredis-mock'] = {
  only: true,
  // from the e2e bench's dependencies: ioredis-mock wants ioredis 5 as its peer
  module: require('node:path').join(__dirname, 'e2e', 'node_modules', 'ioredis-mock'),
  async connect() {
    const RedisMock = require(this.module);
    const c = new RedisMock();
    return {
      raw: c,
      get: (k) => c.get(k),
      set: (k, v) => c.set(k, v),
      close: () => c.quit(),
    };
  },
};
// rate-limiter-flexible's in-process limiter
specialists.RateLimiterMemory = {
  only: true,
  async connect() {
    const { RateLimiterMemory } = require('rate-limiter-flexible');
    const limiters = new Map();
    return {
      limiter({ limit, windowSeconds }) {
        const id = `${limit}:${windowSeconds}`;
        if (!limiters.has(id)) limiters.set(id, new RateLimiterMemory({ points: limit, duration: windowSeconds }));
        return limiters.get(id);
      },
      close: async () => {},
    };
  },
};
// Keyv with its default store (a Map), as cache-manager 7 uses it in process
specialists['Keyv (Map)'] = {
  only: true,
  async connect() {
    const { default: Keyv } = require('keyv');
    const keyv = new Keyv();
    return { raw: keyv, close: async () => {} };
  },
};

/** An ioredis client: `Redis` for a URL, `Redis.Cluster` for `{ cluster: [urls] }`. */
function client(Redis, url, autoPipelining) {
  if (typeof url === 'string') return new Redis(url, { enableAutoPipelining: autoPipelining, lazyConnect: true });
  return new Redis.Cluster(url.cluster.map(hostPort), { enableAutoPipelining: autoPipelining, lazyConnect: true });
}

function ioredis(autoPipelining) {
  return {
    async connect(url) {
      const Redis = require('ioredis');
      const c = client(Redis, url, autoPipelining);
      await c.connect();
      return {
        raw: c,
        get: (k) => c.get(k),
        set: (k, v) => c.set(k, v),
        mget: (keys) => c.mget(keys),
        pipeline: (cmds) => c.pipeline(cmds.map(([name, ...args]) => [name.toLowerCase(), ...args])).exec(),
        close: () => c.quit(),
      };
    },
  };
}

/** Libraries that load on this machine (an optional peer that fails to load is skipped). */
function available() {
  const out = {};
  for (const [name, lib] of Object.entries({ ...libraries, ...specialists })) {
    const mod = {
      'ioredis (auto-pipelining)': 'ioredis',
      ioredis: 'ioredis',
      'node-redis': 'redis',
      'valkey-glide': '@valkey/valkey-glide',
      'nestjs-redis-native': '..',
      'nestjs-redis-native (stack traces)': '..',
      'nestjs-redis-native (near cache)': '..',
      'rate-limiter-flexible': 'rate-limiter-flexible',
      '@nest-lab/throttler-storage-redis': lib.module,
      'connect-redis': 'connect-redis',
      '@keyv/redis': '@keyv/redis',
      'nestjs-redis-native (memory://)': '..',
      'ioredis-mock': lib.module,
      RateLimiterMemory: 'rate-limiter-flexible',
      'Keyv (Map)': 'keyv',
    }[name];
    try {
      require(mod);
      out[name] = lib;
    } catch (e) {
      process.stderr.write(`bench: skipping ${name}: ${e.message.split('\n')[0]}\n`);
    }
  }
  return out;
}

module.exports = { libraries: available(), hostPort };
