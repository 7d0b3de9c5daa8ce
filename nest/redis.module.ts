import { Logger, Module, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { RedisClient, type RedisClientEvent } from 'nestjs-redis-native';
import { ConfigurableModuleClass } from './redis.module-definition';
import { REDIS_EXPORTS, REDIS_PROVIDERS } from './redis.providers';

type ConnectionEvent = 'error' | 'ready' | 'end';

/**
 * `RedisModule.forRoot(options)` or `RedisModule.forRootAsync({ imports, inject, useFactory })`,
 * with `isGlobal: true` to inject the services everywhere. Provides `RedisClient` and the
 * services, all on one connection, opened during module init and closed on shutdown.
 * Logs the connection's state changes through Nest's `Logger` (context `RedisModule`):
 * a warning when it is lost, a log line when it is back, an error when reconnecting
 * gave up.
 */
@Module({
  providers: REDIS_PROVIDERS,
  exports: REDIS_EXPORTS,
})
export class RedisModule extends ConfigurableModuleClass implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('RedisModule');
  /** Whether the connection is lost (so each state change is logged once). */
  private lost = false;
  private readonly listeners: Record<ConnectionEvent, (event: RedisClientEvent) => void> = {
    error: ({ address, error }) => {
      if (this.lost) return;
      this.lost = true;
      this.logger.warn(
        `The connection to Redis at ${address} was lost (${error?.code}: ${error?.message}); reconnecting. ` +
          'Meanwhile calls fail fast with ERR_REDIS_CONNECTION.',
      );
    },
    ready: ({ address, attempts }) => {
      if (!this.lost) return;
      this.lost = false;
      this.logger.log(
        `The connection to Redis at ${address} is re-established${attempts ? ` after ${attempts} attempt${attempts === 1 ? '' : 's'}` : ''}`,
      );
    },
    end: ({ address, reason, attempts, error }) => {
      if (reason !== 'gave-up') return;
      this.logger.error(
        `Gave up reconnecting to Redis at ${address} after ${attempts ?? 'several'} attempts` +
          `${error ? ` (${error.code}: ${error.message})` : ''}; every call now fails until the app restarts ` +
          '(reconnect.maxAttempts)',
      );
    },
  };

  constructor(private readonly client: RedisClient) {
    super();
  }

  onModuleInit(): void {
    for (const [event, listener] of Object.entries(this.listeners)) this.client.on(event as ConnectionEvent, listener);
  }

  async onApplicationShutdown(): Promise<void> {
    for (const [event, listener] of Object.entries(this.listeners)) this.client.off(event as ConnectionEvent, listener);
    await this.client.close();
  }
}
