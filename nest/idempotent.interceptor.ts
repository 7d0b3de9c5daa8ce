import {
  BadRequestException,
  type CallHandler,
  ConflictException,
  type ExecutionContext,
  Inject,
  Injectable,
  Logger,
  type NestInterceptor,
  Optional,
  ServiceUnavailableException,
  UnprocessableEntityException,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import { createHash } from 'node:crypto';
import { IdempotencyService, isRedisError, type CompleteOptions } from 'nestjs-redis-native';
import { catchError, from, mergeMap, type Observable, of, throwError } from 'rxjs';
import type { IdempotentOptions } from './idempotent.decorator';
import { IDEMPOTENT_OPTIONS } from './redis.constants';
import { describeError, isOutage } from './redis.errors';
import { MODULE_OPTIONS_TOKEN, type RedisModuleOptions } from './redis.module-definition';

/** What is stored for a completed request. */
interface StoredResponse {
  status: number;
  body: unknown;
  /** The response headers that describe the body or the result (`Location`, `Content-Type`). */
  headers?: Record<string, string>;
}

/** A route's options, its header (and its lower-case name), its name, and its `@HttpCode()`. */
interface PreparedRoute {
  options: IdempotentOptions;
  header: string;
  headerName: string;
  route: string;
  httpCode: number | undefined;
}

/** Response headers kept with a stored response and set again on replay. */
const KEPT_HEADERS = ['location', 'content-type'];

/** `@HttpCode()`'s metadata key in @nestjs/common (stable since Nest 6). */
const HTTP_CODE_METADATA = '__httpCode__';

/** `IdempotencyService`'s default `lockTtl`, seconds. */
const DEFAULT_LOCK_TTL = 60;

/** Pauses between attempts to store a response, ms: doubling from the first to the last. */
const STORE_RETRY_FIRST_MS = 50;
const STORE_RETRY_MAX_MS = 2000;

/** The interceptor behind `@Idempotent()`: HTTP in and out; the exactly-once logic is
 * `IdempotencyService.begin` / `complete` / `abandon`. */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  private readonly logger = new Logger('IdempotencyInterceptor');
  /** Each route's options, by controller class and handler. */
  private readonly routes = new WeakMap<Function, WeakMap<Function, PreparedRoute>>();

  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly reflector: Reflector,
    private readonly adapterHost: HttpAdapterHost,
    @Optional() @Inject(MODULE_OPTIONS_TOKEN) private readonly moduleOptions?: RedisModuleOptions,
  ) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    if (context.getType() !== 'http') return next.handle();
    const { options, header, headerName, route, httpCode } = this.routeOf(context.getClass(), context.getHandler());
    const http = context.switchToHttp();
    const req = http.getRequest();
    const res = http.getResponse();
    const value = req.headers?.[headerName];
    const idempotencyKey: string | undefined = Array.isArray(value) ? value[0] : value;
    if (!idempotencyKey) {
      if (options.required) throw new BadRequestException(`the ${header} header is required`);
      return next.handle();
    }
    if (idempotencyKey.length > 255) throw new BadRequestException(`the ${header} header is longer than 255 characters`);

    // The route is the handler that matched (not the URL's spelling); the scope is the caller.
    const scope = scopeOf(options, context, req);
    const key = `http:${req.method}:${route}:${scope === undefined ? '-' : `scope=${encodeURIComponent(scope)}`}:${idempotencyKey}`;
    // What the request asks for: its route parameters and body, as JSON values (key order aside).
    const fingerprint = createHash('sha256')
      .update(canonicalJson({ params: req.params ?? {}, body: req.body ?? null }))
      .digest('hex');
    const lockTtl = options.lockTtl ?? this.moduleOptions?.idempotency?.lockTtl ?? DEFAULT_LOCK_TTL;
    const lockedUntil = Date.now() + lockTtl * 1000;
    let begun: Awaited<ReturnType<IdempotencyService['begin']>>;
    try {
      begun = await this.idempotency.begin(key, { lockTtl: options.lockTtl, resultTtl: options.ttl, fingerprint });
    } catch (error) {
      if (isOutage(error)) {
        throw new ServiceUnavailableException(`this ${header} cannot be checked right now (Redis is unreachable); retry later`);
      }
      throw error;
    }
    const adapter = this.adapterHost.httpAdapter;
    switch (begun.state) {
      case 'mismatch':
        throw new UnprocessableEntityException(
          `this ${header} was used for a different request (another body or route parameters)`,
        );
      case 'in-progress':
        throw new ConflictException(`a request with this ${header} is in progress`);
      case 'completed': {
        const stored = JSON.parse(begun.result) as StoredResponse;
        adapter.status(res, stored.status);
        for (const [name, v] of Object.entries(stored.headers ?? {})) adapter.setHeader(res, name, v);
        adapter.setHeader(res, 'Idempotent-Replayed', 'true');
        return of(stored.body);
      }
    }

    // this run owns the key: a late complete/abandon never touches a newer run's record
    const owner = { token: begun.token, fingerprint };
    const what = `${req.method} ${route} with ${header} ${idempotencyKey}`;
    const defaultStatus = httpCode ?? (req.method === 'POST' ? 201 : 200);
    return next.handle().pipe(
      mergeMap(async (body) => {
        const status = typeof res.statusCode === 'number' && res.statusCode !== 200 ? res.statusCode : defaultStatus;
        if (status >= 500) {
          await this.release(key, owner.token, what);
        } else {
          const stored: StoredResponse = { status, body, headers: keptHeaders(res) };
          await this.store(key, stored, { ttl: options.ttl, ...owner }, lockedUntil, what);
        }
        return body;
      }),
      catchError((error) => from(this.release(key, owner.token, what)).pipe(mergeMap(() => throwError(() => error)))),
    );
  }

  /** A route's `@Idempotent()` options and what follows from them, worked out once per route. */
  private routeOf(cls: Function, handler: Function): PreparedRoute {
    let byHandler = this.routes.get(cls);
    if (!byHandler) this.routes.set(cls, (byHandler = new WeakMap()));
    let prepared = byHandler.get(handler);
    if (!prepared) {
      const options = this.reflector.getAllAndOverride<IdempotentOptions>(IDEMPOTENT_OPTIONS, [handler, cls]) ?? {};
      const header = options.header ?? 'Idempotency-Key';
      prepared = {
        options,
        header,
        headerName: header.toLowerCase(),
        route: `${cls.name}.${handler.name}`,
        httpCode: this.reflector.get<number | undefined>(HTTP_CODE_METADATA, handler),
      };
      byHandler.set(handler, prepared);
    }
    return prepared;
  }

  /**
   * Stores the response of a handler that succeeded. Its work is done (a charge made), so
   * whatever happens here the caller gets the real response: when Redis does not take it,
   * storing is retried in the background, with backoff, while the key is still locked;
   * meanwhile duplicates get 409, then the stored response. Never throws.
   */
  private async store(key: string, stored: StoredResponse, how: CompleteOptions, lockedUntil: number, what: string) {
    let result: string;
    try {
      result = JSON.stringify(stored);
    } catch (error) {
      this.logger.error(
        `${what}: the response cannot be stored (${describeError(error).message}); the key stays locked until lockTtl`,
      );
      return;
    }
    try {
      if (!(await this.idempotency.complete(key, result, how))) this.overtaken(what);
      return;
    } catch (error) {
      if (!retryable(error) || Date.now() >= lockedUntil) return this.notStored(what, error);
      const { code, message } = describeError(error);
      this.logger.warn(
        `${what}: the response was sent but could not be stored (${code}: ${message}); ` +
          `retrying for ${Math.ceil((lockedUntil - Date.now()) / 1000)} s, while the key is locked`,
      );
    }
    void this.retryStore(key, result, how, lockedUntil, what);
  }

  private async retryStore(key: string, result: string, how: CompleteOptions, lockedUntil: number, what: string) {
    let pause = STORE_RETRY_FIRST_MS;
    for (let attempt = 2; ; attempt++) {
      const wait = pause / 2 + Math.random() * (pause / 2);
      if (Date.now() + wait >= lockedUntil) return this.notStored(what);
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
      try {
        if (await this.idempotency.complete(key, result, how)) {
          this.logger.log(`${what}: the response is stored (attempt ${attempt})`);
        } else {
          this.overtaken(what);
        }
        return;
      } catch (error) {
        if (!retryable(error) || Date.now() >= lockedUntil) return this.notStored(what, error);
      }
      pause = Math.min(pause * 2, STORE_RETRY_MAX_MS);
    }
  }

  private overtaken(what: string): void {
    this.logger.error(
      `${what}: the response was not stored: the key's lock expired (lockTtl) and another request with this key started meanwhile`,
    );
  }

  private notStored(what: string, error?: unknown): void {
    const reason = error ? ` (${describeError(error).code}: ${describeError(error).message})` : '';
    this.logger.error(
      `${what}: the response could not be stored${reason}; once the key's lock expires (lockTtl), ` +
        'a retry with this key runs the handler again',
    );
  }

  /** Releases the key after a failure so a retry can run. Never throws: when Redis is
   * unreachable the key is released when its lock expires. */
  private async release(key: string, token: string | undefined, what: string): Promise<void> {
    try {
      await this.idempotency.abandon(key, { token });
    } catch (error) {
      const { code, message } = describeError(error);
      this.logger.warn(`${what}: the key could not be released (${code}: ${message}); a retry runs once its lock expires`);
    }
  }
}

/** The caller the keys belong to, `undefined` for the shared scope. */
function scopeOf(options: IdempotentOptions, context: ExecutionContext, req: any): string | undefined {
  const scope = options.scope ? options.scope(context) : (req.user?.id ?? req.user?.sub);
  return scope === undefined || scope === null || scope === '' ? undefined : String(scope);
}

/** Storing may succeed later unless the client is closed or the call itself is wrong. */
function retryable(error: unknown): boolean {
  return !(isRedisError(error) && (error.code === 'ERR_CLIENT_CLOSED' || error.code === 'ERR_INVALID_ARGUMENT'));
}

/** The kept response headers that are set (Express and Fastify both have `getHeader`). */
function keptHeaders(res: any): Record<string, string> | undefined {
  if (typeof res?.getHeader !== 'function') return undefined;
  const headers: Record<string, string> = {};
  for (const name of KEPT_HEADERS) {
    const v = res.getHeader(name);
    if (v !== undefined && v !== null) headers[name] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return Object.keys(headers).length ? headers : undefined;
}

/** JSON with every object's keys sorted: equal JSON values give equal text. */
function canonicalJson(value: unknown): string {
  return sorted(value) ?? 'null';
}

/** `JSON.stringify` with sorted keys (same values, same `toJSON`, same omissions). */
function sorted(value: unknown): string | undefined {
  if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    value = (value as { toJSON(): unknown }).toJSON();
  }
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => sorted(v) ?? 'null').join(',')}]`;
  const parts: string[] = [];
  for (const k of Object.keys(value).sort()) {
    const v = sorted((value as Record<string, unknown>)[k]);
    if (v !== undefined) parts.push(`${JSON.stringify(k)}:${v}`);
  }
  return `{${parts.join(',')}}`;
}
