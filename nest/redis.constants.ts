/** Injection token of the options given to `RedisModule.forRoot()` / `forRootAsync()`. */
export { MODULE_OPTIONS_TOKEN as REDIS_MODULE_OPTIONS } from './redis.module-definition';

/** Metadata key of `@Idempotent()`'s options. */
export const IDEMPOTENT_OPTIONS = Symbol('nestjs-redis-native:idempotent');

/** Metadata key of `@RateLimit()`'s rules. */
export const RATE_LIMITS = Symbol('nestjs-redis-native:rate-limits');

/** Metadata key of `@SkipRateLimit()`. */
export const SKIP_RATE_LIMIT = Symbol('nestjs-redis-native:skip-rate-limit');

/** Injection token of the guard's part of `rateLimit` (`default`, `onOutage`, `outageStatus`), checked at startup. */
export const RATE_LIMIT_GUARD_OPTIONS = Symbol('nestjs-redis-native:rate-limit-guard-options');
