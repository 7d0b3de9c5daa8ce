export { RedisModule } from './redis.module';
export { type RedisModuleOptions, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } from './redis.module-definition';
export { REDIS_MODULE_OPTIONS } from './redis.constants';
export { Idempotent, type IdempotentOptions } from './idempotent.decorator';
export { IdempotencyInterceptor } from './idempotent.interceptor';
export { IdempotencyService, RedisClient, RedisService, SessionService, TokenService } from 'nestjs-redis-native';
export type {
  BeginOptions,
  IdempotencyServiceOptions,
  ReconnectOptions,
  RedisOptions,
  SessionInfo,
  SessionServiceOptions,
  TlsOptions,
  TokenServiceOptions,
} from 'nestjs-redis-native';
