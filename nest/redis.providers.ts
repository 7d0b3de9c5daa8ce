import type { Provider } from '@nestjs/common';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { MODULE_OPTIONS_TOKEN, type RedisModuleOptions } from './redis.module-definition';

/** Opens the connection during module init; a failure stops the app with the reason. */
const clientProvider: Provider = {
  provide: RedisClient,
  inject: [MODULE_OPTIONS_TOKEN],
  useFactory: (options: RedisModuleOptions) => RedisClient.connect(options),
};

/** A service class whose constructor takes the client (and optionally its options). */
type ServiceClass = new (client: RedisClient) => object;

/** One provider per service, each built on the one shared client. */
function serviceProvider(service: ServiceClass): Provider {
  return {
    provide: service,
    inject: [RedisClient],
    useFactory: (client: RedisClient) => new service(client),
  };
}

export const SERVICES: ServiceClass[] = [RedisService];

export const REDIS_PROVIDERS: Provider[] = [clientProvider, ...SERVICES.map(serviceProvider)];

export const REDIS_EXPORTS = [RedisClient, ...SERVICES];
