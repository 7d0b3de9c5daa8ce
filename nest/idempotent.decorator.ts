import { applyDecorators, type ExecutionContext, SetMetadata, UseInterceptors } from '@nestjs/common';
import { IdempotencyInterceptor } from './idempotent.interceptor';
import { IDEMPOTENT_OPTIONS } from './redis.constants';

/** Options of `@Idempotent()`. */
export interface IdempotentOptions {
  /** Seconds a stored response is replayed. Default: the service's `resultTtl` (86400). */
  ttl?: number;
  /** Seconds a running request holds its key; after that a retry may start (a crashed
   * instance). Default: the service's `lockTtl` (60). */
  lockTtl?: number;
  /** Refuse requests without the header (400). Default `false`: they run normally. */
  required?: boolean;
  /** The header carrying the key. Default `Idempotency-Key`. */
  header?: string;
  /**
   * Whose keys these are: a stored response is replayed only to requests of the same
   * scope. Default: the caller, `req.user.id` when set, else `req.user.sub` (what
   * Passport and JWT guards set); with neither, one scope shared by every caller. Return
   * `undefined` for that shared scope.
   */
  scope?: (context: ExecutionContext) => string | number | undefined;
}

/**
 * Makes a route idempotent for requests carrying an `Idempotency-Key` header: the first
 * request runs and its response is stored; a concurrent duplicate gets 409; a later one
 * gets the stored response (with `Idempotent-Replayed: true`); the same key with a
 * different body gets 422; a failed request (thrown, or 5xx) is not stored, so the
 * client can retry. Keys belong to the caller (see `scope`) and to the route (the
 * controller's handler and the HTTP method, whatever the URL's spelling). Needs
 * `RedisModule` (for `IdempotencyService`) in the module.
 */
export function Idempotent(options: IdempotentOptions = {}): MethodDecorator & ClassDecorator {
  return applyDecorators(SetMetadata(IDEMPOTENT_OPTIONS, options), UseInterceptors(IdempotencyInterceptor));
}
