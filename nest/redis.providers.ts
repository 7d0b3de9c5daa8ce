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
import { RedisHealthIndicator } from './redis.health';
import { MODULE_OPTIONS_TOKEN, type RedisModuleOptions } from './redis.module-definition';

/** A service class: built on the shared client, with its own options when it has any. */
type ServiceClass = new (client: RedisClient, options?: any) => object;

interface ServiceEntry {
  service: ServiceClass;
  /** Key of `RedisModuleOptions` holding this service's options (e.g. `sessions`). */
  optionsKey?: keyof RedisModuleOptions;
}

/**
 * Every service the module provides. A new service is one more line here: its class
 * (constructor `(client, options?)`) and, if it takes options, their key in `forRoot()`.
 */
export const SERVICES: ServiceEntry[] = [
  { service: RedisService },
  { service: TokenService, optionsKey: 'tokens' },
  { service: SessionService, optionsKey: 'sessions' },
  { service: IdempotencyService, optionsKey: 'idempotency' },
  { service: RateLimitService, optionsKey: 'rateLimit' },
  { service: LockService },
  { service: CacheService },
  { service: PubSubService },
];

const SERVICE_OPTION_KEYS = new Set<string>(SERVICES.flatMap((s) => (s.optionsKey ? [s.optionsKey] : [])));

/** The connection part of the module options: everything but the per-service options. */
function connectionOptions(options: RedisModuleOptions | undefined): RedisModuleOptions | undefined {
  if (!options) return undefined;
  return Object.fromEntries(Object.entries(options).filter(([key]) => !SERVICE_OPTION_KEYS.has(key)));
}

/** Opens the connection during module init; a failure stops the app with the reason. */
const clientProvider: Provider = {
  provide: RedisClient,
  inject: [MODULE_OPTIONS_TOKEN],
  useFactory: (options: RedisModuleOptions | undefined) => RedisClient.connect(connectionOptions(options)),
};

function serviceProvider({ service, optionsKey }: ServiceEntry): Provider {
  return {
    provide: service,
    inject: [RedisClient, MODULE_OPTIONS_TOKEN],
    useFactory: (client: RedisClient, options: RedisModuleOptions | undefined) =>
      optionsKey && options?.[optionsKey] !== undefined ? new service(client, options[optionsKey]) : new service(client),
  };
}

export const REDIS_PROVIDERS: Provider[] = [clientProvider, ...SERVICES.map(serviceProvider), RedisHealthIndicator];

export const REDIS_EXPORTS = [RedisClient, ...SERVICES.map((s) => s.service), RedisHealthIndicator];
