import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, type INestApplication } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { RedisHealthIndicator, RedisModule } from 'nestjs-redis-native/nest';
import {
  onlyStandalone,
  sleep,
  startRedis,
  stopSharedRedis,
  testConnectOptions,
  type PrivateRedis,
} from './support/redis-server';

const ownServer = onlyStandalone('pauses, kills, stops or restarts a server of its own');

after(async () => {
  await stopSharedRedis();
});

describe('client.metrics()', () => {
  it('counts commands, errors and latency as traffic flows', async () => {
    const client = await RedisClient.connect(await testConnectOptions());
    const redis = new RedisService(client);
    const before = client.metrics();
    assert.equal(before.inFlight, 0);
    await Promise.all(Array.from({ length: 200 }, (_, i) => redis.set(`metrics:${i}`, 'x', 5)));
    await redis.pipeline([
      ['GET', 'metrics:1'],
      ['GET', 'metrics:2'],
    ]);
    await assert.rejects(redis.command('LPUSH', ['metrics:1', 'y']), { code: 'ERR_REDIS_COMMAND' });
    const after = client.metrics();
    assert.ok(after.commands - before.commands >= 203, JSON.stringify(after));
    assert.equal(after.errors - before.errors, 1);
    assert.ok(
      after.latencyUs.p50 > 0 && after.latencyUs.p50 <= after.latencyUs.p99 && after.latencyUs.p99 <= after.latencyUs.max,
    );
    await client.close();
  });

  it('commands the server refuses inside a pipeline count as errors, each', async () => {
    const client = await RedisClient.connect(await testConnectOptions());
    const redis = new RedisService(client);
    await redis.set('metrics:text', 'x', 5);
    const before = client.metrics();
    const replies = await redis.pipeline([
      ['GET', 'metrics:text'],
      ['LPUSH', 'metrics:text', 'y'],
      ['INCR', 'metrics:text'],
    ]);
    assert.equal(replies[0], 'x');
    const after = client.metrics();
    assert.equal(after.commands - before.commands, 3);
    assert.equal(after.errors - before.errors, 2);
    await client.close();
  });

  it('moves when Redis is stopped: errors, timeouts and reconnects', ownServer, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 200,
      reconnect: { minDelayMs: 20, maxDelayMs: 50 },
    });
    const redis = new RedisService(client);
    await redis.ping();
    server.pause();
    await assert.rejects(redis.get('k'), { code: 'ERR_REDIS_TIMEOUT' });
    server.resume();
    await server.kill();
    await assert.rejects(redis.get('k'));
    await server.start();
    for (let i = 0; i < 100; i++) {
      if (
        await redis.ping().then(
          () => true,
          () => false,
        )
      )
        break;
      await sleep(30);
    }
    const m = client.metrics();
    assert.ok(m.timeouts >= 1, JSON.stringify(m));
    assert.ok(m.errors >= 2, JSON.stringify(m));
    assert.ok(m.reconnects >= 1, JSON.stringify(m));
    await client.close();
    await server.stop();
  });
});

describe('client.health()', () => {
  it('is up with latency and the server version', async () => {
    const client = await RedisClient.connect(await testConnectOptions());
    const health = await client.health();
    assert.equal(health.status, 'up');
    assert.ok(health.latencyMs! > 0);
    assert.match(health.serverVersion!, /^\d+\.\d+/);
    assert.equal(health.role, 'master');
    await client.close();
  });

  it('is down (not a rejection) while Redis is unreachable, and after close', ownServer, async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url, commandTimeoutMs: 300 });
    await server.stop();
    const down = await client.health();
    assert.equal(down.status, 'down');
    assert.equal(down.error?.code, 'ERR_REDIS_CONNECTION');
    await client.close();
    assert.equal((await client.health()).error?.code, 'ERR_CLIENT_CLOSED');
  });
});

@Controller()
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly redis: RedisHealthIndicator,
  ) {}

  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.redis.isHealthy('redis')]);
  }
}

describe('RedisHealthIndicator with @nestjs/terminus', ownServer, () => {
  let server: PrivateRedis;
  let app: INestApplication;

  before(async () => {
    server = await startRedis();
    const moduleRef = await Test.createTestingModule({
      imports: [TerminusModule.forRoot({ logger: false }), RedisModule.forRoot({ url: server.url, commandTimeoutMs: 300 })],
      controllers: [HealthController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  });

  after(async () => {
    await app.close();
    await server.stop();
  });

  it('/health is up, then down (503) when Redis stops, then up again', async () => {
    const up = await request(app.getHttpServer()).get('/health');
    assert.equal(up.status, 200);
    assert.equal(up.body.status, 'ok');
    assert.equal(up.body.details.redis.status, 'up');

    await server.stop();
    const down = await request(app.getHttpServer()).get('/health');
    assert.equal(down.status, 503);
    assert.equal(down.body.details.redis.status, 'down');

    await server.start();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = (await request(app.getHttpServer()).get('/health')).status;
      if (status !== 200) await sleep(30);
    }
    assert.equal(status, 200);
  });
});
