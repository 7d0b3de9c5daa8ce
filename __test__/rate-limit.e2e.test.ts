import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RateLimit, RateLimitGuard, RedisModule } from 'nestjs-redis-native/nest';
import { sleep, stopSharedRedis, testRedisUrl, uniquePrefix } from './support/redis-server';

const hits = { search: 0 };

@Controller('api')
class ApiController {
  @Get('search')
  @RateLimit({ limit: 3, windowSeconds: 60 })
  search() {
    hits.search++;
    return { results: [] };
  }

  @Get('burst')
  @RateLimit({ limit: 2, windowSeconds: 0.5, algorithm: 'fixed-window' })
  @RateLimit({ limit: 3, windowSeconds: 60 })
  burst() {
    return { ok: true };
  }

  @Get('by-key')
  @RateLimit({ limit: 2, windowSeconds: 60, key: (ctx) => ctx.switchToHttp().getRequest().headers['x-api-key'] ?? 'anonymous' })
  byKey() {
    return { ok: true };
  }

  @Get('free')
  free() {
    return { ok: true };
  }
}

@Controller('admin')
@RateLimit({ limit: 2, windowSeconds: 60 })
class AdminController {
  @Get('a')
  a() {
    return { ok: true };
  }

  @Get('b')
  b() {
    return { ok: true };
  }
}

after(async () => {
  await stopSharedRedis();
});

for (const adapter of ['express', 'fastify'] as const) {
  describe(`@RateLimit() on ${adapter}`, () => {
    let app: INestApplication;
    const http = () => request(app.getHttpServer());
    let ip = 0;
    /** A fresh client address per test (trust proxy is on). */
    const client = () => `10.0.${adapter === 'express' ? 1 : 2}.${++ip}`;

    before(async () => {
      @Module({
        imports: [RedisModule.forRoot({ url: await testRedisUrl(), keyPrefix: uniquePrefix() })],
        controllers: [ApiController, AdminController],
        // global as well: a request is still counted once
        providers: [{ provide: APP_GUARD, useClass: RateLimitGuard }],
      })
      class AppModule {}
      const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
      if (adapter === 'fastify') {
        app = moduleRef.createNestApplication(new FastifyAdapter({ trustProxy: true }));
      } else {
        app = moduleRef.createNestApplication<NestExpressApplication>();
        (app as NestExpressApplication).set('trust proxy', true);
      }
      await app.init();
      if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<void> }).ready();
    });

    after(async () => {
      await app.close();
    });

    it('allows limit requests with the headers, then 429 with Retry-After and a JSON body', async () => {
      const ip = client();
      const before = hits.search;
      for (let remaining = 2; remaining >= 0; remaining--) {
        const ok = await http().get('/api/search').set('X-Forwarded-For', ip);
        assert.equal(ok.status, 200);
        assert.equal(ok.headers['x-ratelimit-limit'], '3');
        assert.equal(ok.headers['x-ratelimit-remaining'], String(remaining));
        assert.ok(Number(ok.headers['x-ratelimit-reset']) > 0);
      }
      const refused = await http().get('/api/search').set('X-Forwarded-For', ip);
      assert.equal(refused.status, 429);
      assert.ok(Number(refused.headers['retry-after']) >= 1);
      assert.equal(refused.headers['x-ratelimit-remaining'], '0');
      assert.equal(refused.body.statusCode, 429);
      assert.equal(hits.search, before + 3, 'counted once per request although the guard is global too');
    });

    it('limits each client IP separately (trust proxy)', async () => {
      const a = client();
      const b = client();
      for (let i = 0; i < 3; i++) await http().get('/api/search').set('X-Forwarded-For', a).expect(200);
      await http().get('/api/search').set('X-Forwarded-For', a).expect(429);
      await http().get('/api/search').set('X-Forwarded-For', b).expect(200);
    });

    it('20 simultaneous requests against a limit of 3 let exactly 3 through', async () => {
      const ip = client();
      const statuses = (
        await Promise.all(Array.from({ length: 20 }, () => http().get('/api/search').set('X-Forwarded-For', ip)))
      ).map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 3);
      assert.equal(statuses.filter((s) => s === 429).length, 17);
    });

    it('several limits on one route all apply', async () => {
      const ip = client();
      await http().get('/api/burst').set('X-Forwarded-For', ip).expect(200);
      await http().get('/api/burst').set('X-Forwarded-For', ip).expect(200);
      await http().get('/api/burst').set('X-Forwarded-For', ip).expect(429); // 2 per 0.5 s
      await sleep(600);
      await http().get('/api/burst').set('X-Forwarded-For', ip).expect(200);
      await sleep(600);
      await http().get('/api/burst').set('X-Forwarded-For', ip).expect(429); // 3 per minute
    });

    it('key may be a function of the request (an API key)', async () => {
      const ip = client();
      await http().get('/api/by-key').set('X-Forwarded-For', ip).set('x-api-key', `k-${adapter}`).expect(200);
      await http().get('/api/by-key').set('X-Forwarded-For', client()).set('x-api-key', `k-${adapter}`).expect(200);
      await http().get('/api/by-key').set('X-Forwarded-For', client()).set('x-api-key', `k-${adapter}`).expect(429);
      await http().get('/api/by-key').set('X-Forwarded-For', ip).set('x-api-key', `other-${adapter}`).expect(200);
    });

    it('a limit on a controller covers all its routes together', async () => {
      const ip = client();
      await http().get('/admin/a').set('X-Forwarded-For', ip).expect(200);
      await http().get('/admin/b').set('X-Forwarded-For', ip).expect(200);
      await http().get('/admin/a').set('X-Forwarded-For', ip).expect(429);
    });

    it('routes without @RateLimit are not limited and get no headers', async () => {
      const res = await http().get('/api/free').expect(200);
      assert.equal(res.headers['x-ratelimit-limit'], undefined);
    });
  });
}
