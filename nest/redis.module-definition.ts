import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { RedisOptions } from 'nestjs-redis-native';

/**
 * Options of `RedisModule.forRoot()`: the connection options of `RedisClient.connect()`
 * (with none, the REDIS_* environment is read).
 */
export type RedisModuleOptions = RedisOptions;

export const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } =
  new ConfigurableModuleBuilder<RedisModuleOptions>({ moduleName: 'Redis' })
    .setClassMethodName('forRoot')
    .setExtras({ isGlobal: false }, (definition, extras) => ({
      ...definition,
      global: extras.isGlobal,
    }))
    .build();
