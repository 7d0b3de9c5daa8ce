import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoggerService } from '@nestjs/common';
import { Test, type TestingModule } from '@nestjs/testing';
import { RedisService } from 'nestjs-redis-native';
import { RedisModule, type RedisModuleOptions } from 'nestjs-redis-native/nest';
import { type PrivateRedis, sleep, startRedis } from './support/redis-server';

/**
 * `RedisModule` logs the connection's state changes through Nest's `Logger` (context
 * `RedisModule`), once each: lost (warn), re-established (log), reconnecting gave up
 * (error). Never a password.
 */

/** Keeps what is logged through Nest's `Logger`, with its context. */
class CaptureLogger implements LoggerService {
  entries: { level: string; message: string; context: unknown }[] = [];
  log = (message: unknown, context?: unknown) => void this.entries.push({ level: 'log', message: String(message), context });
  warn = (message: unknown, context?: unknown) => void this.entries.push({ level: 'warn', message: String(message), context });
  error = (message: unknown, ...rest: unknown[]) =>
    void this.entries.push({ level: 'error', message: String(message), context: rest[rest.length - 1] });
  fromRedisModule = () => this.entries.filter((e) => e.context === 'RedisModule');
}

const PASSWORD = 's3cret-passw0rd';

async function boot(server: PrivateRedis, options: RedisModuleOptions = {}) {
  const logger = new CaptureLogger();
  const moduleRef: TestingModule = await Test.createTestingModule({
    imports: [RedisModule.forRoot({ url: `redis://:${PASSWORD}@127.0.0.1:${server.port}`, ...options })],
  }).compile();
  moduleRef.useLogger(logger);
  await moduleRef.init();
  const redis = moduleRef.get(RedisService);
  /** A call, so the client notices a lost connection. */
  const poke = () => redis.ping().catch(() => {});
  return { moduleRef, logger, poke };
}

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('RedisModule logs the connection', () => {
  it('a lost connection is logged once (warn), however many reconnect attempts; its return once (log)', async () => {
    const server = await startRedis({ args: ['--requirepass', PASSWORD] });
    const { moduleRef, logger, poke } = await boot(server, { reconnect: { minDelayMs: 20, maxDelayMs: 40 } });
    await server.kill();
    await poke();
    await until(() => logger.fromRedisModule().some((e) => e.level === 'warn'), 'the warning');
    await sleep(300); // several reconnect attempts fail meanwhile
    await poke();
    await server.start();
    await until(() => logger.fromRedisModule().some((e) => e.level === 'log'), 'the log line');

    const logged = logger.fromRedisModule();
    assert.deepEqual(
      logged.map((e) => e.level),
      ['warn', 'log'],
      JSON.stringify(logged),
    );
    assert.match(logged[0].message, new RegExp(`127\\.0\\.0\\.1:${server.port} was lost`));
    assert.match(logged[0].message, /ERR_REDIS_CONNECTION/);
    assert.match(logged[1].message, /re-established/);

    // lost again: logged again
    await server.kill();
    await poke();
    await until(() => logger.fromRedisModule().length === 3, 'the second warning');
    assert.equal(logger.fromRedisModule()[2].level, 'warn');
    await server.start();
    await until(() => logger.fromRedisModule().length === 4, 'the second log line');

    assert.ok(!logger.entries.some((e) => e.message.includes(PASSWORD)), 'no password in any log line');
    await moduleRef.close();
    await server.stop();
  });

  it('reconnecting that gives up is logged as an error', async () => {
    const server = await startRedis({ args: ['--requirepass', PASSWORD] });
    const { moduleRef, logger, poke } = await boot(server, { reconnect: { minDelayMs: 10, maxDelayMs: 20, maxAttempts: 2 } });
    await server.stop();
    await poke();
    await until(() => logger.fromRedisModule().some((e) => e.level === 'error'), 'the error');
    const error = logger.fromRedisModule().find((e) => e.level === 'error')!;
    assert.match(error.message, /gave up/i);
    assert.match(error.message, /2 attempts/);
    assert.ok(!logger.entries.some((e) => e.message.includes(PASSWORD)), 'no password in any log line');
    await moduleRef.close();
  });

  it('closing the app logs nothing about the connection', async () => {
    const server = await startRedis();
    const logger = new CaptureLogger();
    const moduleRef = await Test.createTestingModule({ imports: [RedisModule.forRoot({ url: server.url })] }).compile();
    moduleRef.useLogger(logger);
    await moduleRef.init();
    await moduleRef.close();
    await sleep(50);
    assert.deepEqual(logger.fromRedisModule(), []);
    await server.stop();
  });
});
