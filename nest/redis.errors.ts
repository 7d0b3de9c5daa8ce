import { isRedisError } from 'nestjs-redis-native';

/** A bad option or rule: an `Error` with code `ERR_INVALID_ARGUMENT`, like the native side's. */
export function invalidArgument(message: string): Error {
  return Object.assign(new Error(message), { code: 'ERR_INVALID_ARGUMENT' as const });
}

/** Whether `error` means Redis could not be reached (an outage, not a bug or bad input). */
export function isOutage(error: unknown): error is Error & { code: 'ERR_REDIS_CONNECTION' | 'ERR_REDIS_TIMEOUT' } {
  return isRedisError(error) && (error.code === 'ERR_REDIS_CONNECTION' || error.code === 'ERR_REDIS_TIMEOUT');
}

/** `{ code, message }` of any thrown value, for logs and hooks. */
export function describeError(error: unknown): { code: string; message: string } {
  const code = (error as { code?: unknown } | null)?.code;
  return {
    code: typeof code === 'string' ? code : 'ERR_UNKNOWN',
    message: error instanceof Error ? error.message : String(error),
  };
}
