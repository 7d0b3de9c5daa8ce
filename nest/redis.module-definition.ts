import { ConfigurableModuleBuilder } from '@nestjs/common';
import type {
  IdempotencyServiceOptions,
  RateLimitServiceOptions,
  RedisOptions,
  SessionServiceOptions,
  TokenServiceOptions,
} from 'nestjs-redis-native';

/**
 * Options of `RedisModule.forRoot()`: the connection options of `RedisClient.connect()`
 * (with none, the REDIS_* environment is read), and each service's own options.
 */
export interface RedisModuleOptions extends RedisOptions {
  /** Options of `TokenService`. */
  tokens?: TokenServiceOptions;
  /** Options of `SessionService`. */
  sessions?: SessionServiceOptions;
  /** Options of `IdempotencyService` (and of the `@Idempotent()` interceptor's defaults). */
  idempotency?: IdempotencyServiceOptions;
  /** Options of `RateLimitService` (and so of `@RateLimit()`). */
  rateLimit?: RateLimitServiceOptions;
}

export const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<RedisModuleOptions>({ moduleName: 'Redis' })
    .setClassMethodName('forRoot')
    .setExtras({ isGlobal: false }, (definition, extras) => ({
      ...definition,
      global: extras.isGlobal,
    }))
    .build();
