import {
  type CanActivate,
  type ExecutionContext,
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  Logger,
  Optional,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import { RateLimitService, type RateLimiter, type RateLimitResult } from 'nestjs-redis-native';
import type { RateLimitRule } from './rate-limit.decorator';
import { RATE_LIMIT_GUARD_OPTIONS, RATE_LIMITS, SKIP_RATE_LIMIT } from './redis.constants';
import { describeError, isOutage } from './redis.errors';
import type { RateLimitOutage } from './redis.module-definition';
import type { RateLimitGuardOptions } from './redis.providers';

/** A limit of a route, ready to count a request: the key so far (scope and limit), what to pass, and who is counted. */
interface PreparedRule {
  base: string;
  options: Omit<RateLimitRule, 'key'>;
  key: RateLimitRule['key'];
  /** The limit with its options read once (what a route with one limit consumes). */
  limiter: RateLimiter;
}

/** Marks a request already counted (the guard may run more than once for it). */
const COUNTED = Symbol('nestjs-redis-native:rate-limited');

/** Whether Redis is known to be unreachable, per limiter (shared by every guard instance using it). */
const outages = new WeakMap<RateLimitService, boolean>();

/**
 * Enforces `@RateLimit()` (and the default rule of `rateLimit.default`): counts the
 * request against every limit of its route and its controller at once (a request refused
 * by one uses up none of the others), sets `X-RateLimit-Limit`, `X-RateLimit-Remaining`
 * and `X-RateLimit-Reset` (seconds until the limit is fully back) from the tightest
 * limit, and refuses with 429, `Retry-After` (seconds) and a JSON body when any limit is
 * exhausted. When Redis cannot be reached it answers 503 (`rateLimit.outageStatus`)
 * without rate-limit headers under the default `'fail-closed'` policy, or lets the
 * request through without them under `'fail-open'`; either way the outage is logged once
 * and `rateLimit.onOutage` is called. Usable per route (the decorator adds it) and
 * globally (`{ provide: APP_GUARD, useClass: RateLimitGuard }`).
 */
@Injectable()
export class RateLimitGuard implements CanActivate {
  private readonly logger = new Logger('RateLimitGuard');
  private readonly options: RateLimitGuardOptions;
  /** Each route's limits, by controller class and handler. */
  private readonly prepared = new WeakMap<Function, WeakMap<Function, PreparedRule[]>>();

  constructor(
    private readonly limiter: RateLimitService,
    private readonly adapterHost: HttpAdapterHost,
    private readonly reflector: Reflector,
    @Optional() @Inject(RATE_LIMIT_GUARD_OPTIONS) options?: RateLimitGuardOptions,
  ) {
    this.options = options ?? { outageStatus: 503 };
  }

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest();
    const res = context.switchToHttp().getResponse();
    if (req[COUNTED]) return true;
    req[COUNTED] = true;

    const rules = this.rulesOf(context.getClass(), context.getHandler());
    if (rules.length === 0) return true;

    const keys: string[] = [];
    for (const { base, key } of rules) {
      // a key function that gives nothing usable falls back to the IP (marked, so it is never mistaken for a key)
      const who = key ? ((await whoFrom(key, context)) ?? `ip:${clientIp(req)}`) : clientIp(req);
      keys.push(base + who);
    }

    let results: RateLimitResult[];
    try {
      // one limit: its limiter (options read once); several: counted together
      results =
        rules.length === 1
          ? [await rules[0]!.limiter.consume(keys[0]!)]
          : (await this.limiter.consumeAll(rules.map((r, i) => ({ ...r.options, key: keys[i]! })))).results;
    } catch (error) {
      if (!isOutage(error)) throw error;
      // Redis went away between counting and refunding: the outage policy of the rules decides.
      const open = rules.every((r) => (r.options.onRedisError ?? this.options.onRedisError) === 'fail-open');
      return this.outage(describeError(error), open, context);
    }

    const outage = results.find((r) => r.redisError)?.redisError;
    const refused = results.filter((r) => !r.allowed);
    if (outage && !refused.some((r) => !r.redisError)) {
      return this.outage(outage, refused.length === 0, context);
    }
    this.recovered();

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

  /** The limits of a route (its controller's, then its own; else the default), worked out once per route. */
  private rulesOf(cls: Function, handler: Function): PreparedRule[] {
    let byHandler = this.prepared.get(cls);
    if (!byHandler) this.prepared.set(cls, (byHandler = new WeakMap()));
    let rules = byHandler.get(handler);
    if (rules) return rules;
    rules = [];
    if (!this.reflector.getAllAndOverride<boolean>(SKIP_RATE_LIMIT, [handler, cls])) {
      const route = `${cls.name}.${handler.name}`;
      const add = (rule: RateLimitRule, scope: string) => {
        const { key, ...options } = rule;
        const limiter = this.limiter.limiter(options);
        rules!.push({ base: `${scope}:${options.limit}/${options.windowSeconds}:`, options, key, limiter });
      };
      ((Reflect.getMetadata(RATE_LIMITS, cls) ?? []) as RateLimitRule[]).forEach((r, i) => add(r, `${cls.name}#${i}`));
      ((Reflect.getMetadata(RATE_LIMITS, handler) ?? []) as RateLimitRule[]).forEach((r, i) => add(r, `${route}#${i}`));
      if (rules.length === 0 && this.options.default) add(this.options.default, `${route}#default`);
    }
    byHandler.set(handler, rules);
    return rules;
  }

  /**
   * Redis could not decide: log it once per outage, tell `onOutage`, and let the request
   * through (`'fail-open'`) or refuse it with the outage status. No rate-limit headers:
   * nothing was counted.
   */
  private outage(error: RateLimitOutage, open: boolean, context: ExecutionContext): true {
    const { code, message } = error;
    if (!outages.get(this.limiter)) {
      outages.set(this.limiter, true);
      this.logger.warn(
        `Redis cannot be reached (${code}: ${message}); rate limits cannot be checked until it is back, meanwhile ` +
          (open ? 'requests are let through (fail-open)' : `requests get ${this.options.outageStatus} (fail-closed)`),
      );
    }
    if (this.options.onOutage) {
      try {
        this.options.onOutage({ code, message }, context);
      } catch (hookError) {
        this.logger.error(`rateLimit.onOutage threw: ${describeError(hookError).message}`);
      }
    }
    if (open) return true;
    const status = this.options.outageStatus;
    throw new HttpException(
      {
        statusCode: status,
        error: status === 503 ? 'Service Unavailable' : 'Too Many Requests',
        message: 'Rate limiting is unavailable right now; retry later',
      },
      status,
    );
  }

  private recovered(): void {
    if (outages.get(this.limiter)) {
      outages.set(this.limiter, false);
      this.logger.log('Redis is reachable again; rate limits are enforced again');
    }
  }
}

/** The rule's own key for this request, or `undefined` when it gives nothing usable. */
async function whoFrom(key: NonNullable<RateLimitRule['key']>, context: ExecutionContext): Promise<string | undefined> {
  try {
    const who = await key(context);
    if (typeof who === 'string' && who !== '') return who;
    if (typeof who === 'number' && Number.isFinite(who)) return String(who);
  } catch {
    // e.g. `body.email.toLowerCase()` on a body without one: limited by IP instead
  }
  return undefined;
}

function clientIp(req: any): string {
  return req.ip ?? req.socket?.remoteAddress ?? req.raw?.socket?.remoteAddress ?? 'unknown';
}

function secondsUntil(epochMs: RateLimitResult['resetAt']): number {
  return Math.max(0, Math.ceil((epochMs - Date.now()) / 1000));
}
