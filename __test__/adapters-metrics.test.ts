import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, Header, type INestApplication, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Registry } from 'prom-client';
import request from 'supertest';
import { CacheService, RateLimitService, RedisClient, RedisService, SessionService } from 'nestjs-redis-native';
import { RedisThrottlerStorage, registerRedisMetrics } from 'nestjs-redis-native/adapters';
import { RedisModule } from 'nestjs-redis-native/nest';
import { prefixedClients, stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

let client: RedisClient;
let redis: RedisService;
let closeClients: () => Promise<void>;
let registry: Registry;
let sessions: SessionService;

before(async () => {
  ({ client, redis, close: closeClients } = await prefixedClients());
  sessions = new SessionService(client);
  registry = new Registry();
  registerRedisMetrics(registry, client, { sessions });
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

/** The value of `name` (with `labels`) in a scrape of the registry. */
async function scraped(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value;
}

describe('registerRedisMetrics (prom-client)', () => {
  it('reports the connection: commands, errors, in flight, latency', async () => {
    const before = (await scraped('redis_commands_total')) ?? 0;
    await Promise.all(Array.from({ length: 25 }, (_, i) => redis.set(`m:${i}`, 'v')));
    assert.ok((await scraped('redis_commands_total'))! >= before + 25);
    await assert.rejects(redis.command('INCR', ['m:0'])); // not an integer
    assert.ok((await scraped('redis_command_errors_total'))! >= 1);
    assert.equal(await scraped('redis_commands_in_flight'), 0);
    const p50 = (await scraped('redis_command_latency_seconds', { quantile: '0.5' }))!;
    const max = (await scraped('redis_command_latency_seconds', { quantile: '1' }))!;
    assert.ok(p50 > 0 && p50 <= max && max < 5, `${p50} ${max}`);
    assert.equal(await scraped('redis_reconnects_total'), 0);
  });

  it('reports requests and refusals per rate-limit rule, exactly under concurrency', async () => {
    const limits = new RateLimitService(client);
    await Promise.all(Array.from({ length: 20 }, () => limits.consume('metrics-user', { limit: 7, windowSeconds: 60 })));
    const rule = { rule: 'sliding-window-counter:7/60s' };
    assert.equal(await scraped('redis_rate_limit_requests_total', rule), 20);
    assert.equal(await scraped('redis_rate_limit_refused_total', rule), 13);
  });

  it('reports @nestjs/throttler’s requests per throttler name', async () => {
    const storage = new RedisThrottlerStorage(client);
    for (let i = 0; i < 3; i++) await storage.increment('metrics-throttled', 60_000, 2, 60_000, 'burst');
    assert.equal(await scraped('redis_rate_limit_requests_total', { rule: 'throttler:burst' }), 3);
    assert.equal(await scraped('redis_rate_limit_refused_total', { rule: 'throttler:burst' }), 1);
  });

  it('reports sessions created and destroyed, and the users online', async () => {
    const created = (await scraped('redis_sessions_created_total')) ?? 0;
    const destroyed = (await scraped('redis_sessions_destroyed_total')) ?? 0;
    await sessions.createSession('metrics-s1', { userId: 'metrics-ada' }, 60);
    await sessions.createSession('metrics-s2', {}, 60);
    await sessions.destroySession('metrics-s1');
    await sessions.destroySession('metrics-s2');
    await sessions.destroySession('metrics-missing');
    await sessions.createSession('metrics-s3', { userId: 'metrics-grace' }, 60);
    assert.equal(await scraped('redis_sessions_created_total'), created + 3);
    assert.equal(await scraped('redis_sessions_destroyed_total'), destroyed + 2);
    assert.equal(await scraped('redis_sessions_online_users'), (await sessions.getOnlineUsers()).length);
    assert.ok((await scraped('redis_sessions_online_users'))! >= 1);
  });

  it('reports cache hits and misses per namespace', async () => {
    const users = new CacheService(client).namespace('metrics-users');
    await users.set('1', { name: 'Ada' });
    await users.get('1');
    await users.get('1');
    await users.get('2');
    assert.equal(await scraped('redis_cache_hits_total', { namespace: 'metrics-users' }), 2);
    assert.equal(await scraped('redis_cache_misses_total', { namespace: 'metrics-users' }), 1);
  });

  it('counts per client: another client’s work is not in these figures', async () => {
    const other = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: uniquePrefix() });
    try {
      await new RateLimitService(other).consume('x', { limit: 99, windowSeconds: 60 });
      assert.equal(await scraped('redis_rate_limit_requests_total', { rule: 'sliding-window-counter:99/60s' }), undefined);
      assert.deepEqual(other.metrics().rateLimits, [{ rule: 'sliding-window-counter:99/60s', requests: 1, refused: 0 }]);
    } finally {
      await other.close();
    }
  });

  it('uses the prefix given', async () => {
    const own = new Registry();
    registerRedisMetrics(own, client, { prefix: 'app_redis_' });
    assert.match(await own.metrics(), /^app_redis_commands_total \d+$/m);
  });

  it('refuses to register twice in one registry, and bad arguments with ERR_INVALID_ARGUMENT', () => {
    assert.throws(() => registerRedisMetrics(registry, client), /already been registered/);
    const isInvalid = (e: { code?: string }) => e.code === 'ERR_INVALID_ARGUMENT';
    assert.throws(() => registerRedisMetrics({} as never, client), isInvalid);
    assert.throws(() => registerRedisMetrics(new Registry(), {} as never), isInvalid);
    assert.throws(() => registerRedisMetrics(new Registry(), client, { prefix: 'bad name' }), isInvalid);
    assert.throws(() => registerRedisMetrics(new Registry(), client, { sessions: {} as never }), isInvalid);
  });
});

describe('a /metrics route for Prometheus to scrape', () => {
  let app: INestApplication;
  const scrapeRegistry = new Registry();

  before(async () => {
    @Controller()
    class MetricsController {
      constructor(redisClient: RedisClient) {
        registerRedisMetrics(scrapeRegistry, redisClient);
      }

      @Get('metrics')
      @Header('Content-Type', scrapeRegistry.contentType)
      metrics() {
        return scrapeRegistry.metrics();
      }
    }
    @Module({
      imports: [RedisModule.forRoot({ ...(await testConnectOptions()), keyPrefix: uniquePrefix() })],
      controllers: [MetricsController],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = moduleRef.createNestApplication();
    await app.init();
  });

  after(async () => {
    await app?.close();
  });

  it('serves the figures in the Prometheus text format', async () => {
    const res = await request(app.getHttpServer()).get('/metrics').expect(200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(res.text, /^# TYPE redis_commands_total counter$/m);
    assert.match(res.text, /^redis_commands_total \d+$/m);
    assert.match(res.text, /^redis_command_latency_seconds\{quantile="0\.99"\} [\d.e-]+$/m);
  });
});
