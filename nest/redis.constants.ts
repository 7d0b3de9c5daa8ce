/** Injection token of the options given to `RedisModule.forRoot()` / `forRootAsync()`. */
export { MODULE_OPTIONS_TOKEN as REDIS_MODULE_OPTIONS } from './redis.module-definition';

/** Metadata key of `@Idempotent()`'s options. */
export const IDEMPOTENT_OPTIONS = Symbol('nestjs-redis-native:idempotent');

/** Metadata key of `@RateLimit()`'s rules. */
export const RATE_LIMITS = Symbol('nestjs-redis-native:rate-limits');
