import { ConfigurableModuleBuilder, type ExecutionContext } from '@nestjs/common';
import type {
  IdempotencyServiceOptions,
  RateLimitServiceOptions,
  RedisOptions,
  SessionServiceOptions,
  TokenServiceOptions,
} from 'nestjs-redis-native';
import type { RateLimitRule } from './rate-limit.decorator';

/** What `rateLimit.onOutage` is told: why Redis could not decide (`ERR_REDIS_CONNECTION`, `ERR_REDIS_TIMEOUT`). */
export interface RateLimitOutage {
  code: string;
  message: string;
}

/**
 * `rateLimit` in `RedisModule.forRoot()`: the options of `RateLimitService`
 * (`onRedisError`) and those of `RateLimitGuard`.
 */
export interface RateLimitModuleOptions extends RateLimitServiceOptions {
  /**
   * The rule of every route that declares no `@RateLimit()` (neither on itself nor on its
   * controller), applied by a global guard (`{ provide: APP_GUARD, useClass: RateLimitGuard }`).
   * Each route counts separately. Checked at startup. Default: none.
   */
  default?: RateLimitRule;
  /**
   * HTTP status of a request refused because Redis could not be reached under the
   * `'fail-closed'` policy: `503` (the default) or `429`.
   */
  outageStatus?: 503 | 429;
  /**
   * Called for every request the outage policy decided (Redis unreachable), with why and
   * the request's context: to count, alert or log it your way. Its errors are logged and
   * ignored.
   */
  onOutage?: (error: RateLimitOutage, context: ExecutionContext) => void;
}

/**
 * Options of `RedisModule.forRoot()`: the connection options of `RedisClient.connect()`
 * (with none, the REDIS_* environment is read), each service's own options, and
 * `healthTimeoutMs`.
 */
export interface RedisModuleOptions extends RedisOptions {
  /** Options of `TokenService`. */
  tokens?: TokenServiceOptions;
  /** Options of `SessionService`. */
  sessions?: SessionServiceOptions;
  /** Options of `IdempotencyService` (and of the `@Idempotent()` interceptor's defaults). */
  idempotency?: IdempotencyServiceOptions;
  /** Options of `RateLimitService` and of `RateLimitGuard` (`@RateLimit()`). */
  rateLimit?: RateLimitModuleOptions;
  /**
   * Time `RedisHealthIndicator.isHealthy()` waits for Redis before reporting it down, ms.
   * Default 1000 (a Kubernetes probe's default timeout is 1 s).
   */
  healthTimeoutMs?: number;
}

export const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<RedisModuleOptions>({ moduleName: 'Redis' })
    .setClassMethodName('forRoot')
    .setExtras({ isGlobal: false }, (definition, extras) => ({
      ...definition,
      global: extras.isGlobal,
    }))
    .build();
