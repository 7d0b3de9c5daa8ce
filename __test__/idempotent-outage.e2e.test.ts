import 'reflect-metadata';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Body, Controller, Headers, type INestApplication, Post, Res } from '@nestjs/common';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { Idempotent, RedisModule } from 'nestjs-redis-native/nest';
import { type PrivateRedis, sleep, startRedis } from './support/redis-server';

/**
 * `@Idempotent()` when Redis stalls or goes away: the handler's work is never done twice
 * because of it, the caller gets the real response, and a request that cannot be checked
 * gets 503.
 */

/** The server of the app under test (one per adapter). */
let server: PrivateRedis;
/** How often a charge really happened. */
let charges = 0;

@Controller('charges')
class ChargesController {
  @Post()
  @Idempotent({ lockTtl: 30 })
  async charge(
    @Body() body: { amount: number },
    @Headers('x-then') then: 'stall' | 'stop' | undefined,
    @Res({ passthrough: true }) res: { header(name: string, value: string): unknown },
  ) {
    charges++;
    const chargeId = `c-${randomUUID()}`;
    // Redis fails right after the charge, before its response is stored
    if (then === 'stall') server.pause();
    if (then === 'stop') await server.kill();
    res.header('Location', `/charges/${chargeId}`);
    return { chargeId, amount: body.amount };
  }
}

/** Retries `send` while it gets 409 (the first request still holds the key). */
async function retryWhileInProgress(send: () => Promise<request.Response>): Promise<request.Response> {
  for (let i = 0; ; i++) {
    const res = await send();
    if (res.status !== 409 || i === 100) return res;
    await sleep(50);
  }
}

for (const adapter of ['express', 'fastify'] as const) {
  describe(`@Idempotent() on ${adapter} while Redis fails`, () => {
    let app: INestApplication;
    const keyPrefix = `test:${randomUUID()}:`;
    const http = () => request(app.getHttpServer());

    before(async () => {
      server = await startRedis();
      const moduleRef = await Test.createTestingModule({
        imports: [
          RedisModule.forRoot({
            url: server.url,
            keyPrefix,
            commandTimeoutMs: 300,
            reconnect: { minDelayMs: 20, maxDelayMs: 100 },
          }),
        ],
        controllers: [ChargesController],
      }).compile();
      app =
        adapter === 'fastify'
          ? moduleRef.createNestApplication(new FastifyAdapter(), { logger: false })
          : moduleRef.createNestApplication({ logger: false });
      await app.init();
      if (adapter === 'fastify') await (app.getHttpAdapter().getInstance() as { ready(): Promise<void> }).ready();
    });

    after(async () => {
      await app.close();
      await server.stop();
    });

    it('Redis stalls after the handler ran: the caller gets its real response, and a retry once Redis is back replays it', async () => {
      const k = `key-${randomUUID()}`;
      const before = charges;
      const first = await http().post('/charges').set('Idempotency-Key', k).set('X-Then', 'stall').send({ amount: 30 });
      server.resume();
      assert.equal(first.status, 201, first.text);
      assert.match(first.body.chargeId, /^c-/);
      assert.equal(first.headers['location'], `/charges/${first.body.chargeId}`);

      const retry = await retryWhileInProgress(() => http().post('/charges').set('Idempotency-Key', k).send({ amount: 30 }));
      assert.equal(retry.status, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.deepEqual(retry.body, first.body);
      assert.equal(retry.headers['location'], first.headers['location']);
      assert.equal(charges, before + 1, 'charged once');
    });

    it('storing the response is retried until Redis takes it (here after a restart)', async () => {
      const k = `key-${randomUUID()}`;
      const before = charges;
      const first = await http().post('/charges').set('Idempotency-Key', k).set('X-Then', 'stop').send({ amount: 40 });
      assert.equal(first.status, 201, first.text);
      await server.start();

      // The restarted server is empty: the key's lock is gone too, so wait until the
      // response is stored again before retrying (a persistent Redis keeps the lock).
      const raw = await RedisClient.connect({ url: server.url });
      const keys = () => new RedisService(raw).keys(`${keyPrefix}*`);
      for (let i = 0; i < 100 && !(await keys()).some((key) => key.endsWith(k)); i++) await sleep(50);
      await raw.close();

      const retry = await http().post('/charges').set('Idempotency-Key', k).send({ amount: 40 });
      assert.equal(retry.status, 201);
      assert.equal(retry.headers['idempotent-replayed'], 'true');
      assert.deepEqual(retry.body, first.body);
      assert.equal(charges, before + 1, 'charged once');
    });

    it('a request whose key cannot be checked (Redis unreachable) gets 503 and does not run', async () => {
      const before = charges;
      server.pause();
      try {
        const res = await http().post('/charges').set('Idempotency-Key', `key-${randomUUID()}`).send({ amount: 50 });
        assert.equal(res.status, 503);
        assert.equal(res.body.statusCode, 503);
        assert.doesNotMatch(res.text, /127\.0\.0\.1/, 'no Redis address in the response');
      } finally {
        server.resume();
      }
      await server.kill();
      try {
        const res = await http().post('/charges').set('Idempotency-Key', `key-${randomUUID()}`).send({ amount: 50 });
        assert.equal(res.status, 503);
      } finally {
        await server.start();
      }
      assert.equal(charges, before);
    });
  });
}
