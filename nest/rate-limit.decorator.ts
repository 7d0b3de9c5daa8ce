import { type ExecutionContext, UseGuards } from '@nestjs/common';
import type { RateLimitOptions } from 'nestjs-redis-native';
import { RateLimitGuard } from './rate-limit.guard';
import { RATE_LIMITS } from './redis.constants';

/** One limit of `@RateLimit()`. */
export interface RateLimitRule extends RateLimitOptions {
  /**
   * Who is limited: a function of the request's context (a user id, an API key). Default:
   * the client IP (`req.ip`, which follows Express's `trust proxy` and Fastify's
   * `trustProxy`).
   */
  key?: (context: ExecutionContext) => string | Promise<string>;
}

/**
 * Rate-limits a route, or every route of a controller. Stack several (10 per second and
 * 1000 per hour): all apply. Enforced by `RateLimitGuard`, which this decorator adds; the
 * guard may also be global (`APP_GUARD`) without counting a request twice.
 */
export function RateLimit(rule: RateLimitRule): MethodDecorator & ClassDecorator {
  return (target: object, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    const where = descriptor ? descriptor.value : target;
    const rules: RateLimitRule[] = Reflect.getMetadata(RATE_LIMITS, where) ?? [];
    Reflect.defineMetadata(RATE_LIMITS, [...rules, rule], where);
    if (descriptor) UseGuards(RateLimitGuard)(target, propertyKey!, descriptor);
    else UseGuards(RateLimitGuard)(target as Function);
  };
}
