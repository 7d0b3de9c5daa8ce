import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, type INestApplication, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RateLimit, RateLimitGuard, RedisModule, SkipRateLimit } from 'nestjs-redis-native/nest';
import { stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

/**
 * A default rule for every route (`rateLimit.default`, applied by the global guard), and
 * `@SkipRateLimit()` to exempt routes and controllers: what @nestjs/throttler users expect.
 */

@Controller('shop')
class ShopController {
  @Get('items')
  items() {
    return { ok: true };
  }

  @Get('cart')
  cart() {
    return { ok: true };
  }

  @Get('search')
  @RateLimit({ limit: 4, windowSeconds: 60 })
  search() {
    return { ok: true };
  }

  @Get('health')
  @SkipRateLimit()
  health() {
    return { ok: true };
  }

  @Get('export')
  @SkipRateLimit()
  @RateLimit({ limit: 1, windowSeconds: 60 })
  export() {
    return { ok: true };
  }
}

@Controller('admin')
@RateLimit({ limit: 3, windowSeconds: 60 })
class AdminController {
  @Get('users')
  users() {
    return { ok: true };
  }
}

@Controller('internal')
@SkipRateLimit()
class InternalController {
  @Get('metrics')
  metrics() {
    return { ok: true };
  }

  @Get('reindex')
  @SkipRateLimit(false)
  reindex() {
    return { ok: true };
  }
}

after(async () => {
  await stopSharedRedis();
});

for (const adapter of ['express', 'fastify'] as const) {
  describe(`rateLimit.default and @SkipRateLimit() on ${adapter}`, () => {
    let app: INestApplication;
    let ip = 0;
    /** A fresh client address per test (trust proxy is on). */
    const client = () => `10.1.${adapter === 'express' ? 1 : 2}.${++ip}`;
    const get = (path: string, from: string) => request(app.getHttpServer()).get(path).set('X-Forwarded-For', from);

    before(async () => {
      @Module({
        imports: [
          RedisModule.forRoot({
            ...(await testConnectOptions()),
            keyPrefix: uniquePrefix(),
            rateLimit: { default: { limit: 2, windowSeconds: 60 } },
          }),
        ],
        controllers: [ShopController, AdminController, InternalController],
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

    it('a route without @RateLimit gets the default rule, with the rate-limit headers', async () => {
      const ip = client();
      const first = await get('/shop/items', ip).expect(200);
      assert.equal(first.headers['x-ratelimit-limit'], '2');
      assert.equal(first.headers['x-ratelimit-remaining'], '1');
      await get('/shop/items', ip).expect(200);
      await get('/shop/items', ip).expect(429);
    });

    it('the default rule counts each route separately', async () => {
      const ip = client();
      await get('/shop/items', ip).expect(200);
      await get('/shop/items', ip).expect(200);
      await get('/shop/items', ip).expect(429);
      await get('/shop/cart', ip).expect(200);
    });

    it("a route's or controller's own @RateLimit applies instead of the default", async () => {
      const ip = client();
      assert.equal((await get('/shop/search', ip).expect(200)).headers['x-ratelimit-limit'], '4');
      assert.equal((await get('/admin/users', ip).expect(200)).headers['x-ratelimit-limit'], '3');
    });

    it('@SkipRateLimit() on a route exempts it from the default rule', async () => {
      const ip = client();
      for (let i = 0; i < 5; i++) {
        const res = await get('/shop/health', ip).expect(200);
        assert.equal(res.headers['x-ratelimit-limit'], undefined);
      }
    });

    it('@SkipRateLimit() exempts a route from its own @RateLimit() too', async () => {
      const ip = client();
      for (let i = 0; i < 3; i++) await get('/shop/export', ip).expect(200);
    });

    it('@SkipRateLimit() on a controller exempts its routes; @SkipRateLimit(false) on a route limits it again', async () => {
      const ip = client();
      for (let i = 0; i < 5; i++) await get('/internal/metrics', ip).expect(200);
      await get('/internal/reindex', ip).expect(200);
      await get('/internal/reindex', ip).expect(200);
      await get('/internal/reindex', ip).expect(429);
    });
  });
}
