// `npm run demo`: a small Nest application that uses nestjs-redis-native the way the
// README shows. It runs against REDIS_URL when given (a real Redis: `redis://...`),
// otherwise in process on `memory://`, so it needs no redis-server.
import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  CacheService,
  IdempotencyService,
  isRedisError,
  LockService,
  PubSubService,
  RateLimitService,
  RedisClient,
  RedisService,
  SessionService,
  TokenService,
} from 'nestjs-redis-native';
import { RedisModule } from 'nestjs-redis-native/nest';

const say = (what: string, value?: unknown) =>
  console.log(value === undefined ? what : `${what.padEnd(66)} → ${JSON.stringify(value)}`);

/** An ordinary app service: it only asks for RedisService. */
@Injectable()
class ProductCatalog {
  constructor(private readonly redis: RedisService) {}

  async run(): Promise<void> {
    await this.redis.set('greeting', 'hello from Rust', 0.5);
    say("set('greeting', 'hello from Rust', 0.5)   // TTL in seconds");
    say("get('greeting')", await this.redis.get('greeting'));
    say("ttl('greeting')   // seconds left, with fractions", await this.redis.ttl('greeting'));
    await new Promise((r) => setTimeout(r, 600));
    say("get('greeting') after 0.6 s   // expired", await this.redis.get('greeting'));

    say("incr('views:42', 1, 60)   // TTL set once, when created", await this.redis.incr('views:42', 1, 60));
    say("incr('views:42', 5, 60)", await this.redis.incr('views:42', 5, 60));
    say("setNx('lock:import', 'worker-1', 10)", await this.redis.setNx('lock:import', 'worker-1', 10));
    say("setNx('lock:import', 'worker-2', 10)   // already held", await this.redis.setNx('lock:import', 'worker-2', 10));

    await this.redis.setJson('product:1', { id: 1, name: 'Keyboard', price: 49.9 }, 300);
    await this.redis.setJson('product:2', { id: 2, name: 'Mouse', price: 19.5 }, 300);
    say("getJson('product:1')", await this.redis.getJson('product:1'));
    say("mget(['product:1', 'product:9'])   // raw strings, null when absent", await this.redis.mget(['product:1', 'product:9']));
    say("keys('product:*')   // SCAN, keyPrefix applied and stripped", (await this.redis.keys('product:*')).sort());
    say(
      "pipeline([['INCR', 'hits'], ['GET', 'hits']])   // one round trip",
      await this.redis.pipeline([
        ['INCR', 'hits'],
        ['GET', 'hits'],
      ]),
    );
    say("deletePattern('product:*')", await this.redis.deletePattern('product:*'));

    try {
      await this.redis.set('greeting', 'x', -1);
    } catch (e) {
      if (!isRedisError(e)) throw e;
      say("set('greeting', 'x', -1)   // rejected before anything is sent", `${e.code}: ${e.message}`);
    }
    try {
      await this.redis.command('HSET', ['views:42', 'field', 'x']);
    } catch (e) {
      if (!isRedisError(e)) throw e;
      say("command('HSET', ['views:42', 'field', 'x'])   // wrong type on the server", e.code);
    }
    say('ping()   // round trip, ms', Math.round((await this.redis.ping()) * 1000) / 1000);
    await this.redis.del(['views:42', 'lock:import', 'hits']);
  }
}

/** Login, refresh, logout everywhere: what an auth module does with the services. */
@Injectable()
class AuthFlow {
  constructor(
    private readonly tokens: TokenService,
    private readonly sessions: SessionService,
    private readonly idempotency: IdempotencyService,
    private readonly limits: RateLimitService,
  ) {}

  async run(): Promise<void> {
    say('');
    for (const device of ['phone', 'laptop', 'tablet']) {
      await this.tokens.storeRefreshToken('user-7', `refresh-${device}`, 3600);
      await this.sessions.createSession(`sess-${device}`, { userId: 'user-7', device }, 3600);
    }
    say(
      "3 logins of user-7 (maxSessionsPerUser: 2): listUserSessions('user-7')",
      (await this.sessions.listUserSessions('user-7')).map((s) => s.device),
    );
    say(
      "rotateRefreshToken('user-7', 'refresh-phone', 'refresh-phone-2')",
      await this.tokens.rotateRefreshToken('user-7', 'refresh-phone', 'refresh-phone-2', 3600),
    );
    say(
      "rotateRefreshToken with 'refresh-phone' again   // stolen copy",
      await this.tokens.rotateRefreshToken('user-7', 'refresh-phone', 'attacker', 3600),
    );
    say(
      "isRefreshTokenValid('user-7', 'refresh-phone-2')   // family revoked",
      await this.tokens.isRefreshTokenValid('user-7', 'refresh-phone-2'),
    );
    await this.sessions.updateSession('sess-laptop', { cart: ['book'] });
    say("updateSession('sess-laptop', { cart: ['book'] }) → getSession", await this.sessions.getSession('sess-laptop'));
    say("isUserOnline('user-7')", await this.sessions.isUserOnline('user-7'));
    say("revokeAllRefreshTokens('user-7')   // logout everywhere", await this.tokens.revokeAllRefreshTokens('user-7'));
    say("destroyUserSessions('user-7')", await this.sessions.destroyUserSessions('user-7'));
    const claims = await Promise.all(Array.from({ length: 10 }, () => this.idempotency.begin('webhook:evt_1')));
    say("10 concurrent begin('webhook:evt_1') → how many 'started'", claims.filter((c) => c.state === 'started').length);
    const attempts = await Promise.all(
      Array.from({ length: 12 }, () => this.limits.consume('login:ada@example.com', { limit: 5, windowSeconds: 60 })),
    );
    say('12 concurrent login attempts, limit 5 per minute → allowed', attempts.filter((a) => a.allowed).length);
    const refused = attempts.find((a) => !a.allowed)!;
    say('  a refused one: remaining, retryAfterMs', [refused.remaining, refused.retryAfterMs]);
  }
}

/** Cache with an index, a lock, pub/sub, health and metrics. */
@Injectable()
class Infrastructure {
  constructor(
    private readonly cache: CacheService,
    private readonly locks: LockService,
    private readonly pubsub: PubSubService,
    private readonly client: RedisClient,
  ) {}

  async run(): Promise<void> {
    say('');
    const users = this.cache.namespace('users', { defaultTtl: 60 });
    await users.set('1', { name: 'Ada', team: 'core' }, { indexes: { team: 'core' } });
    await users.set('2', { name: 'Grace', team: 'core' }, { indexes: { team: 'core' } });
    say("users.getByIndex('team', 'core')", await users.getByIndex('team', 'core'));
    let loads = 0;
    await Promise.all(Array.from({ length: 20 }, () => users.getOrSet('3', async () => (loads++, { name: 'Linus' }))));
    say("20 concurrent users.getOrSet('3', loader) → loader calls", loads);
    say('users.stats()', users.stats());
    let inside = 0;
    let overlap = 0;
    await Promise.all(
      Array.from({ length: 10 }, () =>
        this.locks.withLock(
          'report',
          5000,
          async () => {
            if (++inside > 1) overlap++;
            await new Promise((r) => setTimeout(r, 2));
            inside--;
          },
          { retryDelayMs: 5 },
        ),
      ),
    );
    say("10 concurrent withLock('report') → overlapping runs", overlap);
    const heard = new Promise((resolve) => {
      void this.pubsub
        .subscribe('orders', (order) => resolve(order), { json: true })
        .then(async (sub) => {
          await this.pubsub.publish('orders', { id: 7, total: 9.5 });
          setTimeout(() => void sub.unsubscribe(), 10);
        });
    });
    say("publish('orders', { id: 7 }) → the subscriber got", await heard);
    const health = await this.client.health();
    say('client.health()', { status: health.status, serverVersion: health.serverVersion });
    const m = this.client.metrics();
    say('client.metrics()', { commands: m.commands, errors: m.errors, p50us: Math.round(m.latencyUs.p50) });
  }
}

async function main(): Promise<void> {
  const url = process.env.REDIS_URL || 'memory://';
  say(
    url.startsWith('memory://')
      ? 'running on memory:// (in process, no Redis server; set REDIS_URL=redis://host:port to use one)'
      : `running on the Redis at REDIS_URL (${url.replace(/\/\/[^@/]*@/, '//***@')})`,
  );

  @Module({
    imports: [
      RedisModule.forRoot({
        url,
        keyPrefix: 'demo:',
        clientName: 'nestjs-redis-native-demo',
        sessions: { maxSessionsPerUser: 2 },
      }),
    ],
    providers: [ProductCatalog, AuthFlow, Infrastructure],
  })
  class AppModule {}

  const app = await NestFactory.createApplicationContext(AppModule, { logger: ['error', 'warn'] });
  say('Nest application started; RedisModule connected during init');
  await app.get(ProductCatalog).run();
  await app.get(AuthFlow).run();
  await app.get(Infrastructure).run();

  const client = app.get(RedisClient);
  await app.close();
  say('app.close()   // RedisModule closed the connection; isClosed', client.isClosed);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
