import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';

/** The modules loaded by a fresh Node process after `code`, whose path matches `pattern`. */
function loadedAfter(code: string, pattern: RegExp): string[] {
  const out = execFileSync(process.execPath, ['-e', `${code}; console.log(JSON.stringify(Object.keys(require.cache)))`], {
    encoding: 'utf8',
  });
  return (JSON.parse(out) as string[]).filter((file) => pattern.test(file));
}

const ADAPTED = /node_modules\/(@nestjs\/throttler|express-session|keyv|@keyv|prom-client)\//;

describe('nestjs-redis-native/adapters', () => {
  it('exports the three adapters and the prom-client collectors', () => {
    const adapters = require('nestjs-redis-native/adapters');
    assert.deepEqual(Object.keys(adapters).sort(), [
      'KeyvRedisStore',
      'RedisSessionStore',
      'RedisThrottlerStorage',
      'registerRedisMetrics',
    ]);
  });

  it('loads none of the libraries it adapts: they are optional peers', () => {
    assert.deepEqual(loadedAfter("require('nestjs-redis-native/adapters')", ADAPTED), []);
  });

  it('nor do the package and its Nest module', () => {
    assert.deepEqual(loadedAfter("require('nestjs-redis-native'); require('nestjs-redis-native/nest')", ADAPTED), []);
  });
});
