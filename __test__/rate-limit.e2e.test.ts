import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  Controller,
  type ExecutionContext,
  Get,
  type INestApplication,
  type MiddlewareConsumer,
  Module,
  type NestMiddleware,
  type NestModule,
  Post,
} from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { RateLimit, RateLimitGuard, RedisModule } from 'nestjs-redis-native/nest';
import { sleep, stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

const request$ = (ctx: ExecutionContext) => ctx.switchToHttp().getRequest();

/**
 * Holds the requests marked `X-Gate` until `size` of them arrived, then lets them all
 * reach the guard at once: as simultaneous as requests get.
 */
const gate = { size: 0, arrived: 0, open: () => {}, opened: Promise.resolve() };
function closeGate(size: number) {
  Object.assign(gate, { size, arrived: 0 });
  gate.opened = new Promise<void>((resolve) => (gate.open = resolve));
}
class GateMiddleware implements NestMiddleware {
  async use(req: { headers: Record<string, unknown> }, _res: unknown, next: () => void) {
    if (req.headers['x-gate']) {
      if (++gate.arrived === gate.size) gate.open();
      await gate.opened;
    }
    next();
  }
}

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

  @Get('stacked')
  @RateLimit({ limit: 10, windowSeconds: 60 })
  @RateLimit({ limit: 15, windowSeconds: 60, key: (ctx) => request$(ctx).headers['x-tenant'] })
  stacked() {
    return { ok: true };
  }

  @Post('subscribe')
  @RateLimit({ limit: 1, windowSeconds: 60, key: (ctx) => request$(ctx).body?.email })
  subscribe() {
    return { ok: true };
  }

  @Post('login')
  @RateLimit({ limit: 1, windowSeconds: 60, key: (ctx) => request$(ctx).body.email.toLowerCase() })
  login() {
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
        imports: [RedisModule.forRoot({ ...(await testConnectOptions()), keyPrefix: uniquePrefix() })],
        controllers: [ApiController, AdminController],
        // global as well: a request is still counted once
        providers: [{ provide: APP_GUARD, useClass: RateLimitGuard }],
      })
      class AppModule implements NestModule {
        configure(consumer: MiddlewareConsumer) {
          consumer.apply(GateMiddleware).forRoutes(ApiController);
        }
      }
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

    it('200 simultaneous requests against stacked limits: a refused request uses up none of the others', async () => {
      // 10 per minute per IP, 15 per minute per tenant: from one IP, exactly 10 get through
      const ip = client();
      const tenant = `tenant-${adapter}-${ip}`;
      closeGate(200);
      const statuses = (
        await Promise.all(
          Array.from({ length: 200 }, () =>
            http().get('/api/stacked').set('X-Forwarded-For', ip).set('X-Tenant', tenant).set('X-Gate', '1'),
          ),
        )
      ).map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 10);
      assert.equal(statuses.filter((s) => s === 429).length, 190);
      // the tenant's limit counted only those 10: 5 more from other IPs get through
      let allowed = 0;
      for (let i = 0; i < 10; i++) {
        const res = await http().get('/api/stacked').set('X-Forwarded-For', client()).set('X-Tenant', tenant);
        if (res.status === 200) allowed++;
      }
      assert.equal(allowed, 5);
    });

    it('a key function that returns nothing limits by client IP instead of putting everyone in one bucket', async () => {
      // `body.email` of a text/plain body is undefined
      const text = (ip: string) =>
        http().post('/api/subscribe').set('X-Forwarded-For', ip).set('Content-Type', 'text/plain').send('hi');
      const a = client();
      await text(a).expect(201);
      await text(client()).expect(201);
      await text(a).expect(429);
      // a request with an email is limited by it
      const json = (ip: string) =>
        http()
          .post('/api/subscribe')
          .set('X-Forwarded-For', ip)
          .send({ email: `x-${a}@example.com` });
      await json(client()).expect(201);
      await json(client()).expect(429);
    });

    it('a key function that throws limits by client IP instead of failing the request', async () => {
      const text = (ip: string) =>
        http().post('/api/login').set('X-Forwarded-For', ip).set('Content-Type', 'text/plain').send('hi');
      const a = client();
      await text(a).expect(201);
      await text(client()).expect(201);
      await text(a).expect(429);
    });

    it('routes without @RateLimit are not limited and get no headers', async () => {
      const res = await http().get('/api/free').expect(200);
      assert.equal(res.headers['x-ratelimit-limit'], undefined);
    });
  });
}

describe('@RateLimit() rules are checked when the app starts', () => {
  const rejects = (rule: any, problem: RegExp) =>
    assert.throws(
      () => {
        class PaymentsController {
          @RateLimit(rule)
          pay() {}
        }
        return PaymentsController;
      },
      (e: any) => {
        assert.equal(e.code, 'ERR_INVALID_ARGUMENT');
        assert.match(e.message, /PaymentsController\.pay/);
        assert.match(e.message, problem);
        return true;
      },
    );

  it('limit 0 is refused, naming the controller and handler', () => rejects({ limit: 0, windowSeconds: 60 }, /limit/));
  it('a negative or non-finite window is refused', () => {
    rejects({ limit: 5, windowSeconds: -1 }, /windowSeconds/);
    rejects({ limit: 5, windowSeconds: Infinity }, /windowSeconds/);
    rejects({ limit: 5, windowSeconds: NaN }, /windowSeconds/);
  });
  it('an unknown algorithm is refused', () => rejects({ limit: 5, windowSeconds: 60, algorithm: 'leaky-bucket' }, /algorithm/));
  it('a cost above the limit is refused', () => rejects({ limit: 5, windowSeconds: 60, cost: 6 }, /cost/));
  it('an unknown option (a typo) is refused', () => rejects({ limit: 5, windowSecond: 60 }, /windowSecond/));

  it('on a controller, the message names the controller', () => {
    assert.throws(() => {
      @RateLimit({ limit: 1.5, windowSeconds: 60 })
      class AdminController {}
      return AdminController;
    }, /AdminController.*limit/);
  });
});

// `key` returning an object (a user record, say) instead of a string or number: the README
// says anything else than a non-empty string or a finite number limits by the client IP
@Controller('object-key')
class ObjectKeyController {
  @Get()
  @RateLimit({ limit: 1, windowSeconds: 60, key: ((ctx: ExecutionContext) => ({ id: request$(ctx).headers['x-user'] })) as any })
  get() {
    return { ok: true };
  }
}

for (const adapter of ['express', 'fastify'] as const) {
  describe(`@RateLimit() key function returning an object on ${adapter}`, () => {
    let app: INestApplication;
    let keyPrefix: string;
    let observer: RedisClient;
    const http = () => request(app.getHttpServer());

    before(async () => {
      keyPrefix = uniquePrefix();
      const connection = await testConnectOptions();
      observer = await RedisClient.connect({ ...connection, keyPrefix });
      const moduleRef = await Test.createTestingModule({
        imports: [RedisModule.forRoot({ ...connection, keyPrefix })],
        controllers: [ObjectKeyController],
      }).compile();
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
      await new RedisService(observer).deletePattern('*');
      await observer.close();
    });

    it('a key function that returns an object limits by client IP instead (not one bucket for every object)', async () => {
      const [a, b] = adapter === 'express' ? ['10.0.3.1', '10.0.3.2'] : ['10.0.4.1', '10.0.4.2'];
      const get = (ip: string, user: string) => http().get('/object-key').set('X-Forwarded-For', ip).set('X-User', user);
      await get(a, 'u1').expect(200);
      // the same object from another IP: its own bucket (the object is not the key, nor its text)
      await get(b, 'u1').expect(200);
      // another object from the first IP: that IP's bucket, used up
      await get(a, 'u2').expect(429);
      await get(b, 'u2').expect(429);
      // what was counted: one key per IP, marked as an IP
      const keys = await new RedisService(observer).keys('rate_limit:*');
      assert.equal(keys.length, 2, keys.join(', '));
      assert.deepEqual(
        [a, b].map((ip) => keys.filter((k) => k.includes(`:ip:${ip}}`)).length),
        [1, 1],
        keys.join(', '),
      );
      assert.ok(!keys.some((k) => k.includes('object') || k.includes('u1')), keys.join(', '));
    });
  });
}
