import { Injectable } from '@nestjs/common';
import { RedisClient } from 'nestjs-redis-native';

/** What the indicator reports under its key (the shape @nestjs/terminus reads). */
export interface RedisHealthIndicatorResult {
  [key: string]: { status: 'up' | 'down'; [detail: string]: unknown };
}

/**
 * Redis for `@nestjs/terminus` (11 and 12):
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() { return this.health.check([() => this.redis.isHealthy('redis')]); }
 * ```
 *
 * Up with the PING latency and server version; down (never a thrown error) with the
 * reason, so `/health` answers 503 while Redis is unreachable.
 */
@Injectable()
export class RedisHealthIndicator {
  constructor(private readonly client: RedisClient) {}

  async isHealthy(key = 'redis'): Promise<RedisHealthIndicatorResult> {
    const health = await this.client.health();
    if (health.status === 'up') {
      return { [key]: { status: 'up', latencyMs: health.latencyMs, serverVersion: health.serverVersion, role: health.role } };
    }
    return { [key]: { status: 'down', error: health.error?.message, code: health.error?.code } };
  }
}
