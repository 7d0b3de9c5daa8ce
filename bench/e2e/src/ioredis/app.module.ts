// The app as teams build it today: one ioredis client shared by the app's own code and
// by @nestjs/throttler's Redis storage (@nest-lab/throttler-storage-redis).
import { Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import { ThrottlerStorageRedisService } from '@nest-lab/throttler-storage-redis';
import { ThrottlerModule } from '@nestjs/throttler';
import Redis from 'ioredis';
import { ME_RATE_LIMIT, ME_RATE_WINDOW_SECONDS, PingController } from '../common';
import { AppController } from './app.controller';
import { IdempotencyInterceptor, REDIS, RefreshTokenStore, SessionStore } from './redis-stores';

/** `E2E_IOREDIS_AUTOPIPELINING=1` turns on ioredis's auto-pipelining (off by default, as in most apps). */
const enableAutoPipelining = process.env.E2E_IOREDIS_AUTOPIPELINING === '1';

@Module({
  providers: [
    {
      provide: REDIS,
      useFactory: async () => {
        const redis = new Redis(process.env.REDIS_URL!, {
          lazyConnect: true,
          connectionName: 'bench-ioredis',
          enableAutoPipelining,
        });
        await redis.connect();
        return redis;
      },
    },
  ],
  exports: [REDIS],
})
class RedisProviderModule implements OnApplicationShutdown {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit();
  }
}

@Module({
  imports: [
    RedisProviderModule,
    ThrottlerModule.forRootAsync({
      imports: [RedisProviderModule],
      inject: [REDIS],
      useFactory: (redis: Redis) => ({
        throttlers: [{ name: 'default', limit: ME_RATE_LIMIT, ttl: ME_RATE_WINDOW_SECONDS * 1000 }],
        storage: new ThrottlerStorageRedisService(redis),
      }),
    }),
  ],
  controllers: [PingController, AppController],
  providers: [SessionStore, RefreshTokenStore, IdempotencyInterceptor],
})
export class AppModule {}
