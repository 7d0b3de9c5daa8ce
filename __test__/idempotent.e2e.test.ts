import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Body, Controller, Get, HttpCode, type INestApplication, InternalServerErrorException, Post } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { Idempotent, RedisModule } from 'nestjs-redis-native/nest';
import { sleep, stopSharedRedis, testRedisUrl, uniquePrefix } from './support/redis-server';

/** How often each handler really ran. */
const runs = { pay: 0, refund: 0, strict: 0 };

@Controller('payments')
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
        imports: [RedisModule.forRoot({ url: await testRedisUrl(), keyPrefix: uniquePrefix() })],
        controllers: [PaymentsController],
      }).compile();
      app = adapter === 'fastify' ? moduleRef.createNestApplication(new FastifyAdapter()) : moduleRef.createNestApplication();
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
      assert.equal(statuses.filter((s) => s === 201).length, 1, JSON.stringify(statuses));
      assert.equal(statuses.filter((s) => s === 409).length, 19, JSON.stringify(statuses));
      assert.equal(runs.pay, before + 1);
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
  });
}
