import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Test, type TestingModule } from '@nestjs/testing';
import { RedisHealthIndicator, RedisModule } from 'nestjs-redis-native/nest';
import { type PrivateRedis, startRedis } from './support/redis-server';

/**
 * `RedisHealthIndicator.isHealthy()` answers within its own timeout (1 s by default),
 * not after `commandTimeoutMs`: a stalled Redis is reported down before a Kubernetes
 * probe (1 s by default) gives up.
 */

describe('RedisHealthIndicator timeout', () => {
  let server: PrivateRedis;
  const modules: TestingModule[] = [];

  async function indicator(options: { healthTimeoutMs?: number } = {}): Promise<RedisHealthIndicator> {
    // commandTimeoutMs stays at its default (5000)
    const moduleRef = await Test.createTestingModule({
      imports: [RedisModule.forRoot({ url: server.url, ...options })],
    }).compile();
    await moduleRef.init();
    modules.push(moduleRef);
    return moduleRef.get(RedisHealthIndicator);
  }

  /** `isHealthy()` while the server is paused (it keeps its socket but does not answer), and how long it took. */
  async function whilePaused(check: () => Promise<unknown>): Promise<{ result: any; ms: number }> {
    server.pause();
    const started = Date.now();
    try {
      const result = await check();
      return { result, ms: Date.now() - started };
    } finally {
      server.resume();
    }
  }

  before(async () => {
    server = await startRedis();
  });

  after(async () => {
    for (const m of modules) await m.close();
    await server.stop();
  });

  it('a stalled Redis is reported down within 1 s, with ERR_REDIS_TIMEOUT', async () => {
    const health = await indicator();
    assert.equal((await health.isHealthy()).redis.status, 'up');
    const { result, ms } = await whilePaused(() => health.isHealthy());
    assert.ok(ms >= 900 && ms < 1500, `answered after ${ms} ms`);
    assert.equal(result.redis.status, 'down');
    assert.equal(result.redis.code, 'ERR_REDIS_TIMEOUT');
    assert.match(result.redis.error, /1000 ms/);
  });

  it('isHealthy(key, { timeoutMs }) sets the wait for one check', async () => {
    const health = await indicator();
    const { result, ms } = await whilePaused(() => health.isHealthy('cache', { timeoutMs: 200 }));
    assert.ok(ms < 600, `answered after ${ms} ms`);
    assert.equal(result.cache.status, 'down');
    assert.equal(result.cache.code, 'ERR_REDIS_TIMEOUT');
  });

  it('healthTimeoutMs in forRoot sets the default wait', async () => {
    const health = await indicator({ healthTimeoutMs: 300 });
    const { result, ms } = await whilePaused(() => health.isHealthy());
    assert.ok(ms < 800, `answered after ${ms} ms`);
    assert.equal(result.redis.status, 'down');
    assert.equal((await health.isHealthy()).redis.status, 'up', 'up again once Redis answers');
  });

  it('a wrong healthTimeoutMs stops startup with ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(
      Test.createTestingModule({ imports: [RedisModule.forRoot({ url: server.url, healthTimeoutMs: -1 })] }).compile(),
      (e: any) => e.code === 'ERR_INVALID_ARGUMENT' && /healthTimeoutMs/.test(e.message),
    );
  });
});
