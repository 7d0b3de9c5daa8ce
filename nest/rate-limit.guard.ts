import { type CanActivate, type ExecutionContext, HttpException, HttpStatus, Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { RateLimitService, type RateLimitResult } from 'nestjs-redis-native';
import type { RateLimitRule } from './rate-limit.decorator';
import { RATE_LIMITS } from './redis.constants';

/** Marks a request already counted (the guard may run more than once for it). */
const COUNTED = Symbol('nestjs-redis-native:rate-limited');

/**
 * Enforces `@RateLimit()`: counts the request against every limit of its route and its
 * controller, sets `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`
 * (seconds until the limit is fully back) from the tightest limit, and refuses with 429,
 * `Retry-After` (seconds) and a JSON body when any limit is exhausted. Usable per route
 * (the decorator adds it) and globally (`{ provide: APP_GUARD, useClass: RateLimitGuard }`).
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  constructor(
    private readonly limiter: RateLimitService,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest();
    const res = context.switchToHttp().getResponse();
    if (req[COUNTED]) return true;
    req[COUNTED] = true;

    const cls = context.getClass();
    const handler = context.getHandler();
    const rules = [
      ...((Reflect.getMetadata(RATE_LIMITS, cls) ?? []) as RateLimitRule[]).map((rule, i) => ({
        rule,
        scope: `${cls.name}#${i}`,
      })),
      ...((Reflect.getMetadata(RATE_LIMITS, handler) ?? []) as RateLimitRule[]).map((rule, i) => ({
        rule,
        scope: `${cls.name}.${handler.name}#${i}`,
      })),
    ];
    if (rules.length === 0) return true;

    const checks = await Promise.all(
      rules.map(async ({ rule, scope }) => {
        const { key, ...options } = rule;
        const who = key ? await key(context) : clientIp(req);
        return { key: `${scope}:${options.limit}/${options.windowSeconds}:${who}`, options };
      }),
    );
    // With several limits, a request refused by one must not use up the others: look
    // first, count only when all would allow (each count is still atomic and exact).
    let results = checks.length > 1 ? await Promise.all(checks.map((c) => this.limiter.status(c.key, c.options))) : [];
    if (results.every((r) => r.allowed)) {
      results = await Promise.all(checks.map((c) => this.limiter.consume(c.key, c.options)));
    }
    const refused = results.filter((r) => !r.allowed);
    const shown = refused.length
      ? refused.reduce((a, b) => (b.retryAfterMs > a.retryAfterMs ? b : a))
      : results.reduce((a, b) => (b.remaining < a.remaining ? b : a));
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(res, 'X-RateLimit-Limit', String(shown.limit));
    adapter.setHeader(res, 'X-RateLimit-Remaining', String(shown.remaining));
    adapter.setHeader(res, 'X-RateLimit-Reset', String(secondsUntil(shown.resetAt)));
    if (refused.length) {
      const retryAfter = Math.max(1, Math.ceil(shown.retryAfterMs / 1000));
      adapter.setHeader(res, 'Retry-After', String(retryAfter));
      throw new HttpException(
        {
          statusCode: HttpStatus.TOO_MANY_REQUESTS,
          error: 'Too Many Requests',
          message: `Rate limit exceeded, retry in ${retryAfter} s`,
          retryAfterMs: shown.retryAfterMs,
        },
        HttpStatus.TOO_MANY_REQUESTS,
      );
    }
    return true;
  }
}

function clientIp(req: any): string {
  return req.ip ?? req.socket?.remoteAddress ?? req.raw?.socket?.remoteAddress ?? 'unknown';
}

function secondsUntil(epochMs: RateLimitResult['resetAt']): number {
  return Math.max(0, Math.ceil((epochMs - Date.now()) / 1000));
}
