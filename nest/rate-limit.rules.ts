import type { RateLimitRule } from './rate-limit.decorator';
import { invalidArgument } from './redis.errors';

const ALGORITHMS = ['sliding-window-counter', 'fixed-window', 'sliding-window', 'token-bucket'];
const POLICIES = ['fail-closed', 'fail-open'];
const FIELDS = ['limit', 'windowSeconds', 'algorithm', 'cost', 'onRedisError', 'key'];

const isWhole = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 1;

/**
 * Checks a rate-limit rule before the app serves anything (the same rules
 * `RateLimitService` applies), so a wrong one stops startup naming `where` instead of
 * failing every request. Throws `ERR_INVALID_ARGUMENT`.
 */
export function checkRule(rule: unknown, where: string): RateLimitRule {
  const fail = (problem: string) => invalidArgument(`${where}: ${problem}`);
  if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw fail('the rule must be an object');
  const r = rule as Record<string, unknown>;
  const unknown = Object.keys(r).find((k) => !FIELDS.includes(k));
  if (unknown) throw fail(`unknown option \`${unknown}\` (known: ${FIELDS.join(', ')})`);
  if (!isWhole(r.limit)) throw fail(`limit must be a whole number >= 1, got ${show(r.limit)}`);
  if (
    typeof r.windowSeconds !== 'number' ||
    !Number.isFinite(r.windowSeconds) ||
    r.windowSeconds <= 0 ||
    r.windowSeconds > 1e12
  ) {
    throw fail(`windowSeconds must be a finite number of seconds > 0, got ${show(r.windowSeconds)}`);
  }
  if (r.algorithm !== undefined && !ALGORITHMS.includes(r.algorithm as string)) {
    throw fail(`unknown algorithm ${show(r.algorithm)} (${ALGORITHMS.join(', ')})`);
  }
  if (r.cost !== undefined) {
    if (!isWhole(r.cost)) throw fail(`cost must be a whole number >= 1, got ${show(r.cost)}`);
    if (r.cost > r.limit) throw fail(`cost (${r.cost}) is larger than limit (${r.limit}): such a request could never be allowed`);
  }
  if (r.onRedisError !== undefined && !POLICIES.includes(r.onRedisError as string)) {
    throw fail(`onRedisError must be 'fail-closed' or 'fail-open', got ${show(r.onRedisError)}`);
  }
  if (r.key !== undefined && typeof r.key !== 'function')
    throw fail(`key must be a function of the execution context, got ${show(r.key)}`);
  return rule as RateLimitRule;
}

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  if (typeof value !== 'object' || value === null) return String(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
