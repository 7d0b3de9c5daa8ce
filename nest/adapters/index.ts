/**
 * Drop-in stores for the libraries NestJS apps already use, each built on a `RedisClient`
 * (standalone, Sentinel or Cluster). Importing this module loads none of those libraries.
 */
export { RedisThrottlerStorage } from './throttler-storage';
export { RedisSessionStore, type RedisSessionStoreOptions, type SessionSerializer, type StoredSession } from './session-store';
export { KeyvRedisStore, type KeyvRedisStoreOptions } from './keyv-store';
export type { ThrottlerRecord } from 'nestjs-redis-native';
export { registerRedisMetrics, type PromRegistry, type RedisMetricsOptions } from './metrics';
