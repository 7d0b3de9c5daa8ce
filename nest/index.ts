export { RedisModule } from './redis.module';
export {
  type RedisModuleOptions,
  type RateLimitModuleOptions,
  type RateLimitOutage,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} from './redis.module-definition';
export { REDIS_MODULE_OPTIONS } from './redis.constants';
export { Idempotent, type IdempotentOptions } from './idempotent.decorator';
export { IdempotencyInterceptor } from './idempotent.interceptor';
export { RateLimit, type RateLimitRule, type RateLimitKey } from './rate-limit.decorator';
export { RateLimitGuard } from './rate-limit.guard';
export { SkipRateLimit } from './skip-rate-limit.decorator';
export { RedisHealthIndicator, type RedisHealthIndicatorResult, type RedisHealthCheckOptions } from './redis.health';
export {
  CacheNamespace,
  CacheService,
  IdempotencyService,
  Lock,
  LockService,
  PubSubService,
  RateLimitService,
  RateLimiter,
  RedisClient,
  RedisService,
  SessionService,
  Subscription,
  TokenService,
  isRedisError,
} from 'nestjs-redis-native';
export type {
  AcquireOptions,
  ClientHealth,
  ClientMetrics,
  BeginOptions,
  CacheSetOptions,
  CacheStats,
  CacheUpdateOptions,
  IdempotencyServiceOptions,
  NamespaceOptions,
  RateLimitAllResult,
  RateLimitCheck,
  RateLimitOptions,
  RateLimitRedisError,
  RateLimitResult,
  RateLimitServiceOptions,
  ReconnectOptions,
  RedisClientEvent,
  RedisErrorCode,
  RedisOptions,
  SessionInfo,
  SessionServiceOptions,
  SubscribeOptions,
  TlsOptions,
  TokenServiceOptions,
} from 'nestjs-redis-native';
