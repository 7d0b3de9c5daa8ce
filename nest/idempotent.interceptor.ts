import {
  BadRequestException,
  type CallHandler,
  ConflictException,
  type ExecutionContext,
  Injectable,
  type NestInterceptor,
  UnprocessableEntityException,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import { createHash } from 'node:crypto';
import { IdempotencyService } from 'nestjs-redis-native';
import { catchError, from, mergeMap, type Observable, of, throwError } from 'rxjs';
import type { IdempotentOptions } from './idempotent.decorator';
import { IDEMPOTENT_OPTIONS } from './redis.constants';

/** What is stored for a completed request. */
interface StoredResponse {
  status: number;
  body: unknown;
}

/** `@HttpCode()`'s metadata key in @nestjs/common (stable since Nest 6). */
const HTTP_CODE_METADATA = '__httpCode__';

/** The interceptor behind `@Idempotent()`: HTTP in and out; the exactly-once logic is
 * `IdempotencyService.begin` / `complete` / `abandon`. */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor {
  constructor(
    private readonly idempotency: IdempotencyService,
    private readonly reflector: Reflector,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    if (context.getType() !== 'http') return next.handle();
    const options =
      this.reflector.getAllAndOverride<IdempotentOptions>(IDEMPOTENT_OPTIONS, [context.getHandler(), context.getClass()]) ?? {};
    const http = context.switchToHttp();
    const req = http.getRequest();
    const res = http.getResponse();
    const header = options.header ?? 'Idempotency-Key';
    const value = req.headers?.[header.toLowerCase()];
    const idempotencyKey: string | undefined = Array.isArray(value) ? value[0] : value;
    if (!idempotencyKey) {
      if (options.required) throw new BadRequestException(`the ${header} header is required`);
      return next.handle();
    }
    if (idempotencyKey.length > 255) throw new BadRequestException(`the ${header} header is longer than 255 characters`);

    const path = String(req.originalUrl ?? req.url ?? '').split('?')[0];
    const key = `http:${req.method}:${path}:${idempotencyKey}`;
    const fingerprint = createHash('sha256')
      .update(JSON.stringify(req.body ?? null))
      .digest('hex');
    const begun = await this.idempotency.begin(key, { lockTtl: options.lockTtl, resultTtl: options.ttl, fingerprint });
    const adapter = this.adapterHost.httpAdapter;
    switch (begun.state) {
      case 'mismatch':
        throw new UnprocessableEntityException(`this ${header} was used for a request with a different body`);
      case 'in-progress':
        throw new ConflictException(`a request with this ${header} is in progress`);
      case 'completed': {
        const stored = JSON.parse(begun.result) as StoredResponse;
        adapter.status(res, stored.status);
        adapter.setHeader(res, 'Idempotent-Replayed', 'true');
        return of(stored.body);
      }
    }

    const defaultStatus =
      this.reflector.get<number>(HTTP_CODE_METADATA, context.getHandler()) ?? (req.method === 'POST' ? 201 : 200);
    return next.handle().pipe(
      mergeMap(async (body) => {
        const status = typeof res.statusCode === 'number' && res.statusCode !== 200 ? res.statusCode : defaultStatus;
        if (status >= 500) {
          await this.idempotency.abandon(key);
        } else {
          const stored: StoredResponse = { status, body };
          await this.idempotency.complete(key, JSON.stringify(stored));
        }
        return body;
      }),
      catchError((error) => from(this.idempotency.abandon(key)).pipe(mergeMap(() => throwError(() => error)))),
    );
  }
}
