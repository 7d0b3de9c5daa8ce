export { RedisModule } from './redis.module';
export { type RedisModuleOptions, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } from './redis.module-definition';
export { REDIS_MODULE_OPTIONS } from './redis.constants';
export { RedisClient, RedisService } from 'nestjs-redis-native';
export type { RedisOptions, TlsOptions, ReconnectOptions } from 'nestjs-redis-native';
