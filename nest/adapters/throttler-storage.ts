import { RateLimitService, type RateLimitServiceOptions, type RedisClient, type ThrottlerRecord } from 'nestjs-redis-native';

/**
 * Storage for `@nestjs/throttler` (6.x) in Redis: pass it as `storage` to
 * `ThrottlerModule.forRoot({ throttlers, storage: new RedisThrottlerStorage(client) })`.
 *
 * Counts exactly as throttler's own in-memory storage does (hits, time to expire,
 * blocking for `blockDuration`, one count per throttler name), but shared by every
 * instance of the app: each `increment` is one atomic call on the Redis server's clock,
 * so N concurrent requests against a limit L let exactly L through, whichever instance
 * they reach. Keys: `throttler:{<key>}` and `throttler:{<key>}:<throttler name>` (after
 * the client's `keyPrefix`), expiring on their own once the key is idle.
 *
 * Options are `RateLimitService`'s: `onRedisError: 'fail-open'` lets requests through
 * while Redis cannot be reached; the default, `'fail-closed'`, refuses them (429).
 */
export class RedisThrottlerStorage {
  private readonly limits: RateLimitService;

  constructor(client: RedisClient, options?: RateLimitServiceOptions) {
    this.limits = new RateLimitService(client, options);
  }

  /**
   * `ThrottlerStorage.increment`: counts a hit for `key` under `throttlerName` (`ttl` and
   * `blockDuration` in milliseconds, as the throttler passes them).
   */
  increment(key: string, ttl: number, limit: number, blockDuration: number, throttlerName: string): Promise<ThrottlerRecord> {
    return this.limits.throttlerIncrement(key, ttl, limit, blockDuration, throttlerName);
  }
}
