import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  Body,
  type CanActivate,
  Controller,
  type ExecutionContext,
  Get,
  HttpCode,
  type INestApplication,
  InternalServerErrorException,
  Param,
  Post,
  Res,
  UseGuards,
} from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { Idempotent, RedisModule } from 'nestjs-redis-native/nest';
import { sleep, stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

/** How often each handler really ran. */
const runs = { pay: 0, refund: 0, strict: 0, receipt: 0, transfer: 0, capture: 0 };

/** Stands in for an auth guard (Passport, JWT): `X-User-Id` sets `req.user.id`, `X-User-Sub` sets `req.user.sub`. */
class FakeAuthGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest();
    if (req.headers['x-user-id']) req.user = { id: req.headers['x-user-id'] };
    else if (req.headers['x-user-sub']) req.user = { sub: req.headers['x-user-sub'] };
    return true;
  }
}

@Controller('payments')
@UseGuards(FakeAuthGuard)
class PaymentsController {
  @Post()
  @Idempotent()
  async pay(@Body() body: { amount: number; delayMs?: number; fail?: boolean }) {
    runs.pay++;
    if (body.delayMs) await sleep(body.delayMs);
    if (body.fail) throw new InternalServerErrorException('payment provider down');
    return { paymentId: `p-${runs.pay}`, amount: body.amount };
  }

  @Post('refunds')
  @HttpCode(202)
  @Idempotent({ ttl: 0.3 })
  refund(@Body() body: { amount: number }) {
    runs.refund++;
    return { refund: runs.refund, amount: body.amount };
  }

  @Get('strict')
  @Idempotent({ required: true })
  strict() {
    runs.strict++;
    return { ok: true };
  }

  @Post('receipts')
  @Idempotent()
  receipt(@Body() body: { amount: number }, @Res({ passthrough: true }) res: { header(name: string, value: string): unknown }) {
    runs.receipt++;
    res.header('Location', `/payments/receipts/r-${runs.receipt}`);
    res.header('Content-Type', 'text/plain; charset=utf-8');
    return `receipt r-${runs.receipt}: ${body.amount}`;
  }

  @Post(':id/capture')
  @Idempotent()
  capture(@Param('id') id: string) {
    runs.capture++;
    return { captured: id };
  }

  @Post('transfers')
  @Idempotent({ scope: (ctx) => ctx.switchToHttp().getRequest().headers['x-tenant'] })
  transfer(@Body() body: { amount: number }) {
    runs.transfer++;
    return { transferId: `t-${runs.transfer}`, amount: body.amount };
  }
}

after(async () => {
  await stopSharedRedis();
});

for (const adapter of ['express', 'fastify'] as const) {
  describe(`@Idempotent() on ${adapter}`, () => {
    let app: INestApplication;
    const http = () => request(app.getHttpServer());
    const key = () => `key-${randomUUID()}`;

    before(async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [RedisModule.forRoot({ ...(await testConnectOptions()), keyPrefix: uniquePrefix() })],
        controllers: [PaymentsController],
      }).compile();
      // Both route `/payments/` and `/PAYMENTS` to `/payments` (Express does by default)
      app =
        adapter === 'fastify'
          ? moduleRef.createNestApplication(new FastifyAdapter({ ignoreTrailingSlash: true, caseSensitive: false }))
          : moduleRef.createNestApplication();
      await app.init();
      if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<void> }).ready();
    });

    after(async () => {
      await app.close();
    });

    it('the first request runs; a later duplicate replays the stored response', async () => {
      const k = key();
      const before = runs.pay;
      const first = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 10 });
      assert.equal(first.status, 201);
      const again = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 10 });
      assert.equal(again.status, 201);
      assert.deepEqual(again.body, first.body);
      assert.equal(again.headers['idempotent-replayed'], 'true');
      assert.equal(runs.pay, before + 1);
    });

    it('a concurrent duplicate gets 409 while the first is running', async () => {
      const k = key();
      const first = http().post('/payments').set('Idempotency-Key', k).send({ amount: 5, delayMs: 300 });
      const firstDone = first.then((r) => r);
      await sleep(100);
      const duplicate = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 5, delayMs: 300 });
      assert.equal(duplicate.status, 409);
      assert.equal((await firstDone).status, 201);
    });

    it('of 20 simultaneous requests with one key exactly one runs', async () => {
      const k = key();
      const before = runs.pay;
      const responses = await Promise.all(
        Array.from({ length: 20 }, () => http().post('/payments').set('Idempotency-Key', k).send({ amount: 1, delayMs: 100 })),
      );
      const statuses = responses.map((r) => r.status).sort();
      // the handler ran once; every other request was refused as in progress (409), or,
      // when the machine is slow enough that it came after the first finished, replayed
      assert.equal(runs.pay, before + 1);
      const original = responses.filter((r) => r.status === 201 && r.headers['idempotent-replayed'] !== 'true');
      assert.equal(original.length, 1, JSON.stringify(statuses));
      assert.ok(
        responses.every(
          (r) => r.status === 409 || (r.status === 201 && (r === original[0] || r.headers['idempotent-replayed'] === 'true')),
        ),
        JSON.stringify(statuses),
      );
    });

    it('the same key with a different body gets 422', async () => {
      const k = key();
      await http().post('/payments').set('Idempotency-Key', k).send({ amount: 10 }).expect(201);
      const other = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 99 });
      assert.equal(other.status, 422);
    });

    it('a failed request is not stored: the retry runs', async () => {
      const k = key();
      const before = runs.pay;
      const failed = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 7, fail: true });
      assert.equal(failed.status, 500);
      const retry = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 7, fail: true });
      assert.equal(retry.status, 500);
      assert.equal(runs.pay, before + 2);
    });

    it('without the header every request runs', async () => {
      const before = runs.pay;
      await http().post('/payments').send({ amount: 1 }).expect(201);
      await http().post('/payments').send({ amount: 1 }).expect(201);
      assert.equal(runs.pay, before + 2);
    });

    it('the stored status is replayed, and the response is kept for ttl only', async () => {
      const k = key();
      const before = runs.refund;
      const first = await http().post('/payments/refunds').set('Idempotency-Key', k).send({ amount: 3 });
      assert.equal(first.status, 202);
      const replay = await http().post('/payments/refunds').set('Idempotency-Key', k).send({ amount: 3 });
      assert.equal(replay.status, 202);
      assert.deepEqual(replay.body, first.body);
      await sleep(400);
      await http().post('/payments/refunds').set('Idempotency-Key', k).send({ amount: 3 }).expect(202);
      assert.equal(runs.refund, before + 2);
    });

    it('required: true refuses a request without the header with 400', async () => {
      await http().get('/payments/strict').expect(400);
      await http().get('/payments/strict').set('Idempotency-Key', key()).expect(200);
    });

    it("keys belong to the caller (req.user.id): another user's request with the same key runs and gets its own response", async () => {
      const k = key();
      const before = runs.pay;
      const alice = await http().post('/payments').set('X-User-Id', 'alice').set('Idempotency-Key', k).send({ amount: 10 });
      const bob = await http().post('/payments').set('X-User-Id', 'bob').set('Idempotency-Key', k).send({ amount: 10 });
      assert.equal(alice.status, 201);
      assert.equal(bob.status, 201);
      assert.equal(bob.headers['idempotent-replayed'], undefined);
      assert.notEqual(bob.body.paymentId, alice.body.paymentId);
      assert.equal(runs.pay, before + 2);
      const aliceAgain = await http().post('/payments').set('X-User-Id', 'alice').set('Idempotency-Key', k).send({ amount: 10 });
      assert.deepEqual(aliceAgain.body, alice.body);
      assert.equal(aliceAgain.headers['idempotent-replayed'], 'true');
    });

    it('without req.user.id, req.user.sub (a JWT subject) scopes the keys', async () => {
      const k = key();
      const before = runs.pay;
      const first = await http().post('/payments').set('X-User-Sub', 'sub-1').set('Idempotency-Key', k).send({ amount: 4 });
      const other = await http().post('/payments').set('X-User-Sub', 'sub-2').set('Idempotency-Key', k).send({ amount: 4 });
      assert.notEqual(other.body.paymentId, first.body.paymentId);
      assert.equal(runs.pay, before + 2);
    });

    it('the scope option decides whose keys these are (here a tenant header)', async () => {
      const k = key();
      const before = runs.transfer;
      const a = await http().post('/payments/transfers').set('X-Tenant', 'acme').set('Idempotency-Key', k).send({ amount: 1 });
      const b = await http().post('/payments/transfers').set('X-Tenant', 'globex').set('Idempotency-Key', k).send({ amount: 1 });
      const aAgain = await http()
        .post('/payments/transfers')
        .set('X-Tenant', 'acme')
        .set('Idempotency-Key', k)
        .send({ amount: 1 });
      assert.notEqual(b.body.transferId, a.body.transferId);
      assert.deepEqual(aAgain.body, a.body);
      assert.equal(runs.transfer, before + 2);
    });

    it('keys belong to the route, not the URL: /payments, /payments/ and /PAYMENTS/ run once', async () => {
      const k = key();
      const before = runs.pay;
      const first = await http().post('/payments').set('Idempotency-Key', k).send({ amount: 8 });
      for (const url of ['/payments/', '/PAYMENTS/', '/payments?source=retry']) {
        const again = await http().post(url).set('Idempotency-Key', k).send({ amount: 8 });
        assert.equal(again.status, 201, url);
        assert.deepEqual(again.body, first.body, url);
        assert.equal(again.headers['idempotent-replayed'], 'true', url);
      }
      assert.equal(runs.pay, before + 1);
    });

    it('bodies are compared as JSON values: the same fields in another order replay', async () => {
      const k = key();
      const before = runs.pay;
      const send = (json: string) =>
        http().post('/payments').set('Idempotency-Key', k).set('Content-Type', 'application/json').send(json);
      const first = await send('{"amount":6,"note":{"a":1,"b":2}}');
      const again = await send('{"note":{"b":2,"a":1},"amount":6}');
      assert.equal(again.status, 201);
      assert.deepEqual(again.body, first.body);
      assert.equal(runs.pay, before + 1);
    });

    it('the same key on another resource (other route parameters) gets 422', async () => {
      const k = key();
      const before = runs.capture;
      await http().post('/payments/p-1/capture').set('Idempotency-Key', k).send({}).expect(201);
      const other = await http().post('/payments/p-2/capture').set('Idempotency-Key', k).send({});
      assert.equal(other.status, 422);
      assert.equal(runs.capture, before + 1);
    });

    it('a replay keeps the Location and Content-Type of the stored response', async () => {
      const k = key();
      const first = await http().post('/payments/receipts').set('Idempotency-Key', k).send({ amount: 12 });
      assert.equal(first.status, 201);
      assert.match(first.headers['location'], /^\/payments\/receipts\/r-\d+$/);
      const replay = await http().post('/payments/receipts').set('Idempotency-Key', k).send({ amount: 12 });
      assert.equal(replay.headers['idempotent-replayed'], 'true');
      assert.equal(replay.headers['location'], first.headers['location']);
      assert.equal(replay.headers['content-type'], first.headers['content-type']);
      assert.match(replay.headers['content-type'], /^text\/plain/);
      assert.equal(replay.text, first.text);
    });
  });
}
