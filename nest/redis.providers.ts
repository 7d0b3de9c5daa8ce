import type { Provider } from '@nestjs/common';
import {
  CacheService,
  IdempotencyService,
  LockService,
  PubSubService,
  RateLimitService,
  RedisClient,
  RedisService,
  SessionService,
  TokenService,
} from 'nestjs-redis-native';
import { RedisThrottlerStorage } from './adapters/throttler-storage';
import { checkRule } from './rate-limit.rules';
import { RATE_LIMIT_GUARD_OPTIONS } from './redis.constants';
import { invalidArgument } from './redis.errors';
import { RedisHealthIndicator } from './redis.health';
import { MODULE_OPTIONS_TOKEN, type RateLimitModuleOptions, type RedisModuleOptions } from './redis.module-definition';

/** A service class: built on the shared client, with its own options when it has any. */
type ServiceClass = new (client: RedisClient, options?: any) => object;

interface ServiceEntry {
  service: ServiceClass;
  /** Key of `RedisModuleOptions` holding this service's options (e.g. `sessions`). */
  optionsKey?: keyof RedisModuleOptions;
  /** Keys under `optionsKey` that are the Nest layer's, not the service's. */
  nestOnly?: string[];
}

/** The options of `rateLimit` that `RateLimitGuard` reads; the rest go to `RateLimitService`. */
const RATE_LIMIT_GUARD_KEYS = ['default', 'outageStatus', 'onOutage'] as const;

/**
 * Every service the module provides. A new service is one more line here: its class
 * (constructor `(client, options?)`) and, if it takes options, their key in `forRoot()`.
 */
export const SERVICES: ServiceEntry[] = [
  { service: RedisService },
  { service: TokenService, optionsKey: 'tokens' },
  { service: SessionService, optionsKey: 'sessions' },
  { service: IdempotencyService, optionsKey: 'idempotency' },
  { service: RateLimitService, optionsKey: 'rateLimit', nestOnly: [...RATE_LIMIT_GUARD_KEYS] },
  { service: LockService },
  { service: CacheService },
  { service: PubSubService },
  // @nestjs/throttler's storage (nestjs-redis-native/adapters), with the rateLimit outage policy
  { service: RedisThrottlerStorage, optionsKey: 'rateLimit', nestOnly: [...RATE_LIMIT_GUARD_KEYS] },
];

/** Top-level options of the Nest layer itself (not connection options). */
const NEST_OPTION_KEYS = ['healthTimeoutMs'];

const NOT_CONNECTION_KEYS = new Set<string>([
  ...SERVICES.flatMap((s) => (s.optionsKey ? [s.optionsKey] : [])),
  ...NEST_OPTION_KEYS,
]);

/** The connection part of the module options: everything but the per-service and Nest options. */
function connectionOptions(options: RedisModuleOptions | undefined): RedisModuleOptions | undefined {
  if (!options) return undefined;
  return Object.fromEntries(Object.entries(options).filter(([key]) => !NOT_CONNECTION_KEYS.has(key)));
}

/** Opens the connection during module init; a failure stops the app with the reason. */
const clientProvider: Provider = {
  provide: RedisClient,
  inject: [MODULE_OPTIONS_TOKEN],
  useFactory: (options: RedisModuleOptions | undefined) => RedisClient.connect(connectionOptions(options)),
};

function serviceProvider({ service, optionsKey, nestOnly = [] }: ServiceEntry): Provider {
  return {
    provide: service,
    inject: [RedisClient, MODULE_OPTIONS_TOKEN],
    useFactory: (client: RedisClient, options: RedisModuleOptions | undefined) => {
      let own = optionsKey ? options?.[optionsKey] : undefined;
      if (own !== undefined && own !== null && typeof own === 'object' && nestOnly.length) {
        own = Object.fromEntries(Object.entries(own).filter(([key]) => !nestOnly.includes(key)));
      }
      // sessions revoke their logins' refresh tokens where the module's TokenService keeps them
      const tokenNamespace = options?.tokens?.namespace;
      if (
        service === SessionService &&
        tokenNamespace !== undefined &&
        (own as { tokenNamespace?: string } | undefined)?.tokenNamespace === undefined
      ) {
        own = { ...(own as object | undefined), tokenNamespace };
      }
      return own !== undefined ? new service(client, own) : new service(client);
    },
  };
}

/** What `RateLimitGuard` is configured with (`rateLimit` in `forRoot`), checked at startup. */
export interface RateLimitGuardOptions {
  /** The service's outage policy (also handed to `RateLimitService`). */
  onRedisError?: RateLimitModuleOptions['onRedisError'];
  default?: RateLimitModuleOptions['default'];
  outageStatus: 503 | 429;
  onOutage?: RateLimitModuleOptions['onOutage'];
}

export function rateLimitGuardOptions(options: RateLimitModuleOptions | undefined): RateLimitGuardOptions {
  const { default: rule, outageStatus = 503, onOutage, onRedisError } = options ?? {};
  if (outageStatus !== 503 && outageStatus !== 429) {
    throw invalidArgument(`rateLimit.outageStatus must be 503 or 429, got ${String(outageStatus)}`);
  }
  if (onOutage !== undefined && typeof onOutage !== 'function') {
    throw invalidArgument('rateLimit.onOutage must be a function (error, context) => void');
  }
  if (rule !== undefined) checkRule(rule, 'rateLimit.default in RedisModule.forRoot()');
  return { onRedisError, default: rule, outageStatus, onOutage };
}

const rateLimitGuardOptionsProvider: Provider = {
  provide: RATE_LIMIT_GUARD_OPTIONS,
  inject: [MODULE_OPTIONS_TOKEN],
  useFactory: (options: RedisModuleOptions | undefined) => rateLimitGuardOptions(options?.rateLimit),
};

export const REDIS_PROVIDERS: Provider[] = [
  clientProvider,
  ...SERVICES.map(serviceProvider),
  rateLimitGuardOptionsProvider,
  RedisHealthIndicator,
];

export const REDIS_EXPORTS = [
  RedisClient,
  ...SERVICES.map((s) => s.service),
  RedisHealthIndicator,
  MODULE_OPTIONS_TOKEN,
  RATE_LIMIT_GUARD_OPTIONS,
];
