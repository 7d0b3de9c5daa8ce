import { Inject, Injectable, Optional } from '@nestjs/common';
import { RedisClient } from 'nestjs-redis-native';
import { invalidArgument } from './redis.errors';
import { MODULE_OPTIONS_TOKEN, type RedisModuleOptions } from './redis.module-definition';

/** What the indicator reports under its key (the shape @nestjs/terminus reads). */
export interface RedisHealthIndicatorResult {
  [key: string]: { status: 'up' | 'down'; [detail: string]: unknown };
}

/** Options of `isHealthy()`. */
export interface RedisHealthCheckOptions {
  /**
   * Time to wait for Redis, ms; past it Redis is reported down (`ERR_REDIS_TIMEOUT`).
   * Default: `healthTimeoutMs` of `RedisModule.forRoot()`, else 1000.
   */
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 1000;

function checkTimeout(ms: unknown, what: string): number | undefined {
  if (ms === undefined) return undefined;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
    throw invalidArgument(`${what} must be a finite number of milliseconds > 0, got ${String(ms)}`);
  }
  return ms;
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
 * reason, so `/health` answers 503 while Redis is unreachable. It answers within its
 * own timeout (1 s by default), shorter than `commandTimeoutMs`, so a stalled Redis
 * is reported down before the probe that asked gives up.
 */
@Injectable()
export class RedisHealthIndicator {
  private readonly timeoutMs: number;

  constructor(
    private readonly client: RedisClient,
    @Optional() @Inject(MODULE_OPTIONS_TOKEN) options?: RedisModuleOptions,
  ) {
    this.timeoutMs = checkTimeout(options?.healthTimeoutMs, 'healthTimeoutMs') ?? DEFAULT_TIMEOUT_MS;
  }

  async isHealthy(key = 'redis', options: RedisHealthCheckOptions = {}): Promise<RedisHealthIndicatorResult> {
    const timeoutMs = checkTimeout(options.timeoutMs, 'timeoutMs') ?? this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, timeoutMs, undefined);
      timer.unref();
    });
    const health = await Promise.race([this.client.health(), timedOut]).finally(() => clearTimeout(timer));
    if (!health) {
      return { [key]: { status: 'down', error: `Redis did not answer within ${timeoutMs} ms`, code: 'ERR_REDIS_TIMEOUT' } };
    }
    if (health.status === 'up') {
      return { [key]: { status: 'up', latencyMs: health.latencyMs, serverVersion: health.serverVersion, role: health.role } };
    }
    return { [key]: { status: 'down', error: health.error?.message, code: health.error?.code } };
  }
}
