export { RedisModule } from './redis.module';
export { type RedisModuleOptions, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } from './redis.module-definition';
export { REDIS_MODULE_OPTIONS } from './redis.constants';
export { Idempotent, type IdempotentOptions } from './idempotent.decorator';
export { IdempotencyInterceptor } from './idempotent.interceptor';
export { RateLimit, type RateLimitRule } from './rate-limit.decorator';
export { RateLimitGuard } from './rate-limit.guard';
export { RedisHealthIndicator, type RedisHealthIndicatorResult } from './redis.health';
export {
  CacheNamespace,
  CacheService,
  IdempotencyService,
  Lock,
  LockService,
  PubSubService,
  RateLimitService,
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
  RateLimitOptions,
  RateLimitResult,
  RateLimitServiceOptions,
  ReconnectOptions,
  RedisErrorCode,
  RedisOptions,
  SessionInfo,
  SessionServiceOptions,
  SubscribeOptions,
  TlsOptions,
  TokenServiceOptions,
} from 'nestjs-redis-native';
