import { SetMetadata } from '@nestjs/common';
import { SKIP_RATE_LIMIT } from './redis.constants';

/**
 * Exempts a route, or every route of a controller, from rate limiting: its own
 * `@RateLimit()` rules, its controller's, and the default rule of
 * `RedisModule.forRoot({ rateLimit: { default } })`. `@SkipRateLimit(false)` on a route
 * limits it again inside a skipped controller.
 */
export function SkipRateLimit(skip = true): MethodDecorator & ClassDecorator {
  return SetMetadata(SKIP_RATE_LIMIT, skip);
}
