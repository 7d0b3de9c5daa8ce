import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, type INestApplication, type LoggerService } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RateLimit, type RateLimitModuleOptions, RedisModule } from 'nestjs-redis-native/nest';
import { type PrivateRedis, sleep, startRedis } from './support/redis-server';

/**
 * `@RateLimit()` while Redis is unreachable: an outage is not a rate limit. It answers 503
 * (or lets requests through with `'fail-open'`), without rate-limit headers, logs the
 * outage once, and tells `rateLimit.onOutage`.
 */

@Controller('quotes')
class QuotesController {
  @Get()
  @RateLimit({ limit: 1000, windowSeconds: 60 })
  quote() {
    return { price: 42 };
  }
}

/** Keeps what is logged through Nest's `Logger`, with its context. */
class CaptureLogger implements LoggerService {
  entries: { level: string; message: string; context: unknown }[] = [];
  log = (message: unknown, context?: unknown) => void this.entries.push({ level: 'log', message: String(message), context });
  warn = (message: unknown, context?: unknown) => void this.entries.push({ level: 'warn', message: String(message), context });
  error = (message: unknown, ...rest: unknown[]) =>
    void this.entries.push({ level: 'error', message: String(message), context: rest[rest.length - 1] });
  from = (context: string) => this.entries.filter((e) => e.context === context);
}

const RATE_LIMIT_HEADERS = ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after'];

for (const adapter of ['express', 'fastify'] as const) {
  describe(`@RateLimit() on ${adapter} while Redis is unreachable`, () => {
    let server: PrivateRedis;
    const logger = new CaptureLogger();
    const outages: { code: string; message: string; path: string }[] = [];
    const apps: Record<'closed' | 'open' | 'status429', INestApplication> = {} as never;
    const get = (app: keyof typeof apps) => request(apps[app].getHttpServer()).get('/quotes');

    async function boot(rateLimit: RateLimitModuleOptions): Promise<INestApplication> {
      const moduleRef = await Test.createTestingModule({
        imports: [
          RedisModule.forRoot({
            url: server.url,
            commandTimeoutMs: 300,
            reconnect: { minDelayMs: 20, maxDelayMs: 100 },
            rateLimit,
          }),
        ],
        controllers: [QuotesController],
      }).compile();
      const app =
        adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
      app.useLogger(logger);
      await app.init();
      if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<void> }).ready();
      return app;
    }

    /** Stops Redis for `during`, then starts it and waits until `app` counts requests again. */
    async function whileRedisIsDown(app: keyof typeof apps, during: () => Promise<void>) {
      await server.kill();
      try {
        await during();
      } finally {
        await server.start();
      }
      for (let i = 0; i < 100 && (await get(app)).headers['x-ratelimit-limit'] === undefined; i++) await sleep(30);
    }

    before(async () => {
      server = await startRedis();
      apps.closed = await boot({
        onOutage: (error, context) => outages.push({ ...error, path: context.switchToHttp().getRequest().url }),
      });
      apps.open = await boot({ onRedisError: 'fail-open' });
      apps.status429 = await boot({ outageStatus: 429 });
    });

    after(async () => {
      for (const app of Object.values(apps)) await app.close();
      await server.stop();
    });

    it('fail-closed (the default): 503 without rate-limit headers or Retry-After', async () => {
      await whileRedisIsDown('closed', async () => {
        const res = await get('closed');
        assert.equal(res.status, 503);
        assert.equal(res.body.statusCode, 503);
        for (const h of RATE_LIMIT_HEADERS) assert.equal(res.headers[h], undefined, h);
        assert.doesNotMatch(res.text, /127\.0\.0\.1/, 'no Redis address in the response');
      });
      const back = await get('closed').expect(200);
      assert.equal(back.headers['x-ratelimit-limit'], '1000');
    });

    it('fail-open: requests go through, without rate-limit headers', async () => {
      await whileRedisIsDown('open', async () => {
        const res = await get('open').expect(200);
        assert.deepEqual(res.body, { price: 42 });
        for (const h of RATE_LIMIT_HEADERS) assert.equal(res.headers[h], undefined, h);
      });
    });

    it('outageStatus: 429 answers 429 instead, still without rate-limit headers', async () => {
      await whileRedisIsDown('status429', async () => {
        const res = await get('status429');
        assert.equal(res.status, 429);
        for (const h of RATE_LIMIT_HEADERS) assert.equal(res.headers[h], undefined, h);
      });
    });

    it('the outage is logged once, not per request; its end too; a new outage is logged again', async () => {
      const before = logger.from('RateLimitGuard').length;
      await whileRedisIsDown('closed', async () => {
        for (let i = 0; i < 5; i++) await get('closed').expect(503);
      });
      await whileRedisIsDown('closed', async () => {
        await get('closed').expect(503);
      });
      const logged = logger.from('RateLimitGuard').slice(before);
      assert.deepEqual(
        logged.map((e) => e.level),
        ['warn', 'log', 'warn', 'log'],
        JSON.stringify(logged),
      );
      assert.match(logged[0].message, /ERR_REDIS_CONNECTION/);
      assert.match(logged[0].message, /503/);
    });

    it('onOutage is called for each request the outage decided, with the error and the request', async () => {
      await whileRedisIsDown('closed', async () => {
        outages.length = 0;
        await get('closed').expect(503);
        await get('closed').expect(503);
        assert.equal(outages.length, 2);
        assert.equal(outages[0].code, 'ERR_REDIS_CONNECTION');
        assert.equal(outages[0].path, '/quotes');
      });
    });
  });
}
