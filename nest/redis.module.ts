import { Module, type OnApplicationShutdown } from '@nestjs/common';
import { RedisClient } from 'nestjs-redis-native';
import { ConfigurableModuleClass } from './redis.module-definition';
import { REDIS_EXPORTS, REDIS_PROVIDERS } from './redis.providers';

/**
 * `RedisModule.forRoot(options)` or `RedisModule.forRootAsync({ imports, inject, useFactory })`,
 * with `isGlobal: true` to inject the services everywhere. Provides `RedisClient` and the
 * services, all on one connection, opened during module init and closed on shutdown.
 */
@Module({
  providers: REDIS_PROVIDERS,
  exports: REDIS_EXPORTS,
})
export class RedisModule extends ConfigurableModuleClass implements OnApplicationShutdown {
  constructor(private readonly client: RedisClient) {
    super();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.client.close();
  }
}
