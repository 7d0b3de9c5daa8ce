import { type ExecutionContext, UseGuards } from '@nestjs/common';
import type { RateLimitOptions } from 'nestjs-redis-native';
import { RateLimitGuard } from './rate-limit.guard';
import { checkRule } from './rate-limit.rules';
import { RATE_LIMITS } from './redis.constants';

/** What a rule's `key` function returns; anything but a non-empty string or a number means the client IP. */
export type RateLimitKey = string | number | null | undefined;

/** One limit of `@RateLimit()` (and of `rateLimit.default` in `RedisModule.forRoot`). */
export interface RateLimitRule extends RateLimitOptions {
  /**
   * Who is limited: a function of the request's context (a user id, an API key). Default:
   * the client IP (`req.ip`, which follows Express's `trust proxy` and Fastify's
   * `trustProxy`). When it returns nothing usable (`undefined`, `null`, `''`, anything but
   * a string or a number) or throws, the client IP is used for this request instead, so
   * such requests never share one bucket.
   */
  key?: (context: ExecutionContext) => RateLimitKey | Promise<RateLimitKey>;
}

/**
 * Rate-limits a route, or every route of a controller. Stack several (10 per second and
 * 1000 per hour): all apply. Enforced by `RateLimitGuard`, which this decorator adds; the
 * guard may also be global (`APP_GUARD`) without counting a request twice. A wrong rule
 * (`limit: 0`, a negative window, an unknown algorithm, `cost` above `limit`) throws
 * `ERR_INVALID_ARGUMENT` naming the controller and handler when the class is defined, so
 * the app does not start with it.
 */
export function RateLimit(rule: RateLimitRule): MethodDecorator & ClassDecorator {
  return (target: object, propertyKey?: string | symbol, descriptor?: PropertyDescriptor) => {
    const where = descriptor
      ? `@RateLimit() on ${target.constructor.name}.${String(propertyKey)}`
      : `@RateLimit() on ${(target as Function).name}`;
    checkRule(rule, where);
    const holder = descriptor ? descriptor.value : target;
    const rules: RateLimitRule[] = Reflect.getMetadata(RATE_LIMITS, holder) ?? [];
    Reflect.defineMetadata(RATE_LIMITS, [...rules, rule], holder);
    if (descriptor) UseGuards(RateLimitGuard)(target, propertyKey!, descriptor);
    else UseGuards(RateLimitGuard)(target as Function);
  };
}
