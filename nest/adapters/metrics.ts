import type { RedisClient, SessionService } from 'nestjs-redis-native';
import { invalidArgument } from '../redis.errors';

/** A prom-client `Registry` (only what is used of it, so this module needs no prom-client types). */
export interface PromRegistry {
  registerMetric(metric: unknown): void;
  getSingleMetric(name: string): unknown;
}

/** Options of `registerRedisMetrics(registry, client, options)`. */
export interface RedisMetricsOptions {
  /** Put in front of every metric name. Default `'redis_'`. */
  prefix?: string;
  /**
   * A `SessionService` (or `RedisSessionStore.sessions`) whose online users to report as
   * `<prefix>sessions_online_users` (16 small reads per scrape). Default: not reported.
   */
  sessions?: SessionService;
}

type PromClient = typeof import('prom-client');

/**
 * Registers collectors for `client` in your prom-client `registry`: scraping it then
 * reports the client's figures as they are at that moment (nothing is computed between
 * scrapes). Names (with the default prefix `redis_`):
 *
 * - connection: `redis_commands_total`, `redis_command_errors_total`,
 *   `redis_command_timeouts_total`, `redis_reconnects_total`,
 *   `redis_commands_in_flight`, `redis_command_latency_seconds{quantile="0.5"|"0.99"|"1"}`
 *   (1 is the maximum); with a near cache, `redis_near_cache_{hits,misses,evictions}_total`,
 *   `redis_near_cache_entries`, `redis_near_cache_bytes`;
 * - rate limiting: `redis_rate_limit_requests_total{rule}`, `redis_rate_limit_refused_total{rule}`;
 * - sessions: `redis_sessions_created_total`, `redis_sessions_destroyed_total`, and with
 *   `options.sessions` `redis_sessions_online_users`;
 * - cache: `redis_cache_hits_total{namespace}`, `redis_cache_misses_total{namespace}`.
 *
 * Counters count this process's work since the client connected; Prometheus sums them
 * over your instances. prom-client is an optional peer dependency, loaded by this call.
 * Registering twice in one registry (the same prefix) is refused by prom-client.
 */
export function registerRedisMetrics(registry: PromRegistry, client: RedisClient, options: RedisMetricsOptions = {}): void {
  if (typeof registry?.registerMetric !== 'function') {
    throw invalidArgument('registerRedisMetrics: registry must be a prom-client Registry');
  }
  if (typeof client?.metrics !== 'function') {
    throw invalidArgument('registerRedisMetrics: client must be a RedisClient');
  }
  const { prefix = 'redis_', sessions } = options;
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) {
    throw invalidArgument('registerRedisMetrics: prefix must be a valid start of a Prometheus metric name');
  }
  if (sessions !== undefined && typeof sessions?.getOnlineUsers !== 'function') {
    throw invalidArgument('registerRedisMetrics: sessions must be a SessionService');
  }
  const prom = require('prom-client') as PromClient;
  const registers = [registry as unknown as import('prom-client').Registry];

  /** A counter whose value is read from the client at each scrape. */
  const counter = (name: string, help: string, read: (m: ReturnType<RedisClient['metrics']>) => number | undefined) =>
    new prom.Counter({
      name: prefix + name,
      help,
      registers,
      collect() {
        const value = read(client.metrics());
        this.reset();
        if (value !== undefined) this.inc(value);
      },
    });
  const gauge = (name: string, help: string, read: (m: ReturnType<RedisClient['metrics']>) => number | undefined) =>
    new prom.Gauge({
      name: prefix + name,
      help,
      registers,
      collect() {
        const value = read(client.metrics());
        this.reset();
        if (value !== undefined) this.set(value);
      },
    });
  /** A counter per label value, read from one list of the client's metrics. */
  const labelled = <T>(
    name: string,
    help: string,
    label: string,
    list: (m: ReturnType<RedisClient['metrics']>) => T[],
    key: (item: T) => string,
    read: (item: T) => number,
  ) =>
    new prom.Counter({
      name: prefix + name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const item of list(client.metrics())) this.inc({ [label]: key(item) }, read(item));
      },
    });

  counter('commands_total', 'Commands sent to Redis (a pipeline counts each of its commands).', (m) => m.commands);
  counter('command_errors_total', 'Commands that failed (server errors, lost connections, timeouts).', (m) => m.errors);
  counter('command_timeouts_total', 'Commands that got no reply within commandTimeoutMs.', (m) => m.timeouts);
  counter('reconnects_total', 'Times the connection was re-established after a loss.', (m) => m.reconnects);
  gauge('commands_in_flight', 'Calls waiting for a reply.', (m) => m.inFlight);
  new prom.Gauge({
    name: `${prefix}command_latency_seconds`,
    help: 'Command latency from sending to the reply: median (0.5), 99th percentile (0.99) and maximum (1).',
    labelNames: ['quantile'],
    registers,
    collect() {
      const { p50, p99, max } = client.metrics().latencyUs;
      this.set({ quantile: '0.5' }, p50 / 1e6);
      this.set({ quantile: '0.99' }, p99 / 1e6);
      this.set({ quantile: '1' }, max / 1e6);
    },
  });
  counter('near_cache_hits_total', 'Reads the near cache answered.', (m) => m.nearCache?.hits);
  counter('near_cache_misses_total', 'Reads that went to Redis while the near cache was on.', (m) => m.nearCache?.misses);
  counter(
    'near_cache_evictions_total',
    'Values the near cache dropped to stay within its bounds.',
    (m) => m.nearCache?.evictions,
  );
  gauge('near_cache_entries', 'Values the near cache holds.', (m) => m.nearCache?.entries);
  gauge('near_cache_bytes', 'Approximate memory of the values the near cache holds, bytes.', (m) => m.nearCache?.bytes);
  labelled(
    'rate_limit_requests_total',
    'Requests counted under each rate-limit rule.',
    'rule',
    (m) => m.rateLimits,
    (r) => r.rule,
    (r) => r.requests,
  );
  labelled(
    'rate_limit_refused_total',
    'Requests refused under each rate-limit rule.',
    'rule',
    (m) => m.rateLimits,
    (r) => r.rule,
    (r) => r.refused,
  );
  counter('sessions_created_total', 'Sessions created.', (m) => m.sessions.created);
  counter(
    'sessions_destroyed_total',
    'Sessions destroyed by a logout, an eviction or a logout everywhere.',
    (m) => m.sessions.destroyed,
  );
  labelled(
    'cache_hits_total',
    'Cache reads that found a value, per namespace.',
    'namespace',
    (m) => m.caches,
    (c) => c.namespace,
    (c) => c.hits,
  );
  labelled(
    'cache_misses_total',
    'Cache reads that found nothing, per namespace.',
    'namespace',
    (m) => m.caches,
    (c) => c.namespace,
    (c) => c.misses,
  );
  if (sessions) {
    new prom.Gauge({
      name: `${prefix}sessions_online_users`,
      help: 'Users active within the online window.',
      registers,
      async collect() {
        this.set((await sessions.getOnlineUsers()).length);
      },
    });
  }
}
