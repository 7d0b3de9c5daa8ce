import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import {
  freePort,
  onlyStandalone,
  sleep,
  startRedis,
  stopSharedRedis,
  testConnectOptions,
  testRedisUrl,
  uniquePrefix,
  type PrivateRedis,
  type TestConnectOptions,
} from './support/redis-server';

/** A standalone server, for the tests about connecting to one server by its address. */
let url: string;
/** The test Redis of TEST_TOPOLOGY. */
let options: TestConnectOptions;
const oneAddress = onlyStandalone('connects to one server by its address');
const databases = onlyStandalone('a cluster has database 0 only', 'memory:// has no numbered databases');

before(async () => {
  url = await testRedisUrl();
  options = await testConnectOptions();
});

after(async () => {
  await stopSharedRedis();
});

/** Settles within `ms` or fails the test: no promise may hang. */
async function settlesWithin<T>(p: Promise<T>, ms: number): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([Promise.allSettled([p]).then((r) => r[0]), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(25);
  }
  assert.fail(`not within ${ms} ms: ${what}`);
}

describe('connect', () => {
  it('connects with a url and verifies the server', oneAddress, async () => {
    const client = await RedisClient.connect({ url });
    assert.ok((await new RedisService(client).ping()) >= 0);
    await client.close();
  });

  it('connects with host and port', oneAddress, async () => {
    const { hostname, port } = new URL(url);
    const client = await RedisClient.connect({ host: hostname, port: Number(port) });
    assert.equal(await new RedisService(client).command('PING'), 'PONG');
    await client.close();
  });

  it('with no options reads REDIS_URL from the environment', oneAddress, async () => {
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = url;
    try {
      const client = await RedisClient.connect();
      assert.equal(await new RedisService(client).command('PING'), 'PONG');
      await client.close();
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  it('with no options and no REDIS_URL reads REDIS_HOST and REDIS_PORT', oneAddress, async () => {
    const saved = { url: process.env.REDIS_URL, host: process.env.REDIS_HOST, port: process.env.REDIS_PORT };
    const { hostname, port } = new URL(url);
    delete process.env.REDIS_URL;
    process.env.REDIS_HOST = hostname;
    process.env.REDIS_PORT = port;
    try {
      const client = await RedisClient.connect({ keyPrefix: 'env:' });
      assert.equal(client.keyPrefix, 'env:');
      assert.equal(await new RedisService(client).command('PING'), 'PONG');
      await client.close();
    } finally {
      for (const [k, v] of [
        ['REDIS_URL', saved.url],
        ['REDIS_HOST', saved.host],
        ['REDIS_PORT', saved.port],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('selects the database given in the url', databases, async () => {
    const a = await RedisClient.connect({ url: `${url}/0`, keyPrefix: uniquePrefix() });
    const b = await RedisClient.connect({ url: `${url}/2`, keyPrefix: a.keyPrefix });
    await new RedisService(a).set('db-key', 'in-0');
    assert.equal(await new RedisService(b).get('db-key'), null);
    await new RedisService(a).del('db-key');
    await a.close();
    await b.close();
  });

  it('sets the client name', onlyStandalone('CLIENT LIST shows the connections of one server'), async () => {
    const client = await RedisClient.connect({ url, clientName: 'orders-api' });
    const list = (await new RedisService(client).command('CLIENT', ['LIST'])) as string;
    assert.match(list, /name=orders-api/);
    await client.close();
  });

  it('options set to undefined count as not given', async () => {
    const client = await RedisClient.connect({ ...options, password: undefined, keyPrefix: undefined, tls: undefined });
    assert.equal(client.keyPrefix, '');
    await client.close();
  });

  it('rejects invalid options with ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(RedisClient.connect({ url: 'http://localhost' }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect({ bogus: true } as any), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect({ port: 70000 }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect({ commandTimeoutMs: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect('redis://x' as any), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect({ url, commandTimeoutMs: NaN }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect({ url, clientName: (() => 'x') as any }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(RedisClient.connect({ url, port: 10n as any }), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('an unreachable server is ERR_REDIS_CONNECTION naming host and port, quickly', async () => {
    const port = await freePort();
    const started = Date.now();
    await assert.rejects(RedisClient.connect({ host: '127.0.0.1', port, connectTimeoutMs: 2000 }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_CONNECTION');
      assert.ok(e.message.includes(`127.0.0.1:${port}`), e.message);
      return true;
    });
    assert.ok(Date.now() - started < 2000);
  });

  it('a server that never answers is ERR_REDIS_CONNECTION after connectTimeoutMs', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const started = Date.now();
    await assert.rejects(RedisClient.connect({ host: '127.0.0.1', port, connectTimeoutMs: 300 }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_CONNECTION');
      assert.match(e.message, /300 ms/);
      return true;
    });
    const took = Date.now() - started;
    assert.ok(took >= 250 && took < 2000, `took ${took} ms`);
    sockets.forEach((s) => s.destroy());
    silent.close();
  });
});

describe('authentication', onlyStandalone('a password-protected server of its own'), () => {
  let server: PrivateRedis;

  before(async () => {
    server = await startRedis({ args: ['--requirepass', 'hunter2-secret', '--user', 'app', 'on', '>app-pw', '~app:*', '+@all'] });
  });

  after(async () => {
    await server.stop();
  });

  it('the right password connects', async () => {
    const client = await RedisClient.connect({ port: server.port, host: '127.0.0.1', password: 'hunter2-secret' });
    assert.equal(await new RedisService(client).command('PING'), 'PONG');
    await client.close();
  });

  it('a wrong password is ERR_REDIS_AUTH and the message never shows it', async () => {
    await assert.rejects(RedisClient.connect({ url: `redis://:wrong-pass-123@127.0.0.1:${server.port}` }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_AUTH');
      assert.ok(!e.message.includes('wrong-pass-123'), e.message);
      assert.ok(e.message.includes(`127.0.0.1:${server.port}`), e.message);
      return true;
    });
  });

  it('a password sent to a server that has none says that this may be why', async () => {
    await assert.rejects(RedisClient.connect({ url: `redis://:not-needed@${new URL(url).host}` }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_AUTH');
      assert.match(e.message, /refused the password.*no password set.*connect without one/);
      assert.ok(!e.message.includes('not-needed'), e.message);
      return true;
    });
  });

  it('no password against a protected server is ERR_REDIS_AUTH', async () => {
    await assert.rejects(RedisClient.connect({ host: '127.0.0.1', port: server.port }), { code: 'ERR_REDIS_AUTH' });
  });

  it('an ACL user connects with username and password, and NOPERM is ERR_REDIS_AUTH', async () => {
    const client = await RedisClient.connect({ url: `redis://app:app-pw@127.0.0.1:${server.port}` });
    const redis = new RedisService(client);
    await redis.set('app:ok', '1');
    assert.equal(await redis.get('app:ok'), '1');
    await assert.rejects(redis.get('other:key'), { code: 'ERR_REDIS_AUTH' });
    await client.close();
  });
});

describe('keyPrefix', () => {
  it('isolates two clients with different prefixes', async () => {
    const a = await RedisClient.connect({ ...options, keyPrefix: uniquePrefix() });
    const b = await RedisClient.connect({ ...options, keyPrefix: uniquePrefix() });
    const ra = new RedisService(a);
    const rb = new RedisService(b);
    await ra.set('shared-name', 'a');
    await rb.set('shared-name', 'b');
    assert.equal(await ra.get('shared-name'), 'a');
    assert.equal(await rb.get('shared-name'), 'b');
    assert.deepEqual(await ra.keys('*'), ['shared-name']);
    assert.equal(await ra.deletePattern('*'), 1);
    assert.equal(await rb.get('shared-name'), 'b');
    await rb.deletePattern('*');
    await a.close();
    await b.close();
  });

  it('glob characters in the prefix match only themselves in SCAN', async () => {
    const base = uniquePrefix();
    const star = await RedisClient.connect({ ...options, keyPrefix: `${base}a*:` });
    const plain = await RedisClient.connect({ ...options, keyPrefix: `${base}ab:` });
    await new RedisService(plain).set('k', 'keep');
    await new RedisService(star).set('k', 'mine');
    assert.deepEqual(await new RedisService(star).keys('*'), ['k']);
    assert.equal(await new RedisService(star).deletePattern('*'), 1);
    assert.equal(await new RedisService(plain).get('k'), 'keep');
    await new RedisService(plain).deletePattern('*');
    await star.close();
    await plain.close();
  });
});

describe('close', () => {
  it('later calls reject with ERR_CLIENT_CLOSED; closing twice is harmless', async () => {
    const client = await RedisClient.connect(options);
    const redis = new RedisService(client);
    assert.equal(client.isClosed, false);
    await client.close();
    await client.close();
    assert.equal(client.isClosed, true);
    await assert.rejects(redis.get('k'), { code: 'ERR_CLIENT_CLOSED' });
    await assert.rejects(redis.set('k', 'v'), { code: 'ERR_CLIENT_CLOSED' });
  });

  it('a command already sent still settles', async () => {
    const client = await RedisClient.connect(options);
    const settled = settlesWithin(new RedisService(client).ping(), 2000);
    await client.close();
    const result = await settled;
    assert.ok(result.status === 'fulfilled' || (result.reason as any).code === 'ERR_CLIENT_CLOSED');
  });
});

describe('faults (on a private redis-server)', onlyStandalone('kills, pauses and restarts a server of its own'), () => {
  it('a server restart in the middle of traffic: fast failures, then recovery by itself', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 1000,
      reconnect: { minDelayMs: 20, maxDelayMs: 200 },
    });
    const redis = new RedisService(client);
    const outcomes = { ok: 0, connection: 0, timeout: 0, other: 0 };
    let running = true;
    const traffic = (async () => {
      let i = 0;
      while (running) {
        const batch = Array.from({ length: 20 }, () => redis.set(`restart:${i++}`, 'v'));
        for (const r of await Promise.allSettled(batch)) {
          if (r.status === 'fulfilled') outcomes.ok++;
          else if ((r.reason as any).code === 'ERR_REDIS_CONNECTION') outcomes.connection++;
          else if ((r.reason as any).code === 'ERR_REDIS_TIMEOUT') outcomes.timeout++;
          else outcomes.other++;
        }
        await sleep(5);
      }
    })();
    await sleep(150);
    await server.kill();
    await sleep(300);
    // While Redis is down, commands fail fast with ERR_REDIS_CONNECTION.
    const started = Date.now();
    await assert.rejects(redis.get('x'), { code: 'ERR_REDIS_CONNECTION' });
    assert.ok(Date.now() - started < 500, 'failed fast');
    await server.start();
    await eventually(async () => (await redis.set('after', 'ok'), true), 5000, 'traffic recovers');
    await sleep(100);
    running = false;
    await traffic;
    assert.equal(outcomes.other, 0, JSON.stringify(outcomes));
    assert.ok(outcomes.ok > 0 && outcomes.connection > 0, JSON.stringify(outcomes));
    assert.equal(await redis.get('after'), 'ok');
    await client.close();
    await server.stop();
  });

  it('keep-alive pings notice a lost connection without any traffic', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      pingIntervalMs: 50,
      commandTimeoutMs: 500,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    const redis = new RedisService(client);
    await server.kill();
    await server.start();
    await sleep(800);
    // The keep-alive already reconnected: the first command after the restart succeeds.
    assert.equal(await redis.command('PING'), 'PONG');
    await client.close();
    await server.stop();
  });

  it('a paused server gives ERR_REDIS_TIMEOUT after commandTimeoutMs, then recovers', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      commandTimeoutMs: 200,
      pingIntervalMs: 0,
      connectTimeoutMs: 500,
      reconnect: { minDelayMs: 20, maxDelayMs: 100 },
    });
    const redis = new RedisService(client);
    server.pause();
    const started = Date.now();
    const result = await settlesWithin(redis.get('k'), 2000);
    server.resume();
    assert.equal(result.status, 'rejected');
    assert.equal((result as PromiseRejectedResult).reason.code, 'ERR_REDIS_TIMEOUT');
    const took = Date.now() - started;
    assert.ok(took >= 180 && took < 1500, `took ${took} ms`);
    await eventually(async () => (await redis.get('k')) === null, 3000, 'recovers after resume');
    await client.close();
    await server.stop();
  });

  it('a port where something other than Redis answers (HTTP) says so', async () => {
    const http = createServer((socket: Socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const port = (http.address() as { port: number }).port;
    await assert.rejects(RedisClient.connect({ host: '127.0.0.1', port, connectTimeoutMs: 2000 }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_CONNECTION');
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port}: it did not answer like a Redis server`));
      return true;
    });
    await new Promise((resolve) => http.close(resolve));
  });

  it('past maxInFlight, calls reject at once with ERR_REDIS_CONNECTION instead of queueing', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({ url: server.url, maxInFlight: 10, commandTimeoutMs: 300, pingIntervalMs: 0 });
    const redis = new RedisService(client);
    server.pause(); // nothing comes back: the first 10 stay in flight
    const outcomes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => redis.get(`k${i}`)));
    server.resume();
    const codes = outcomes.map((o) => (o.status === 'rejected' ? (o.reason as { code: string; message: string }) : null));
    const refused = codes.filter((c) => c?.code === 'ERR_REDIS_CONNECTION' && /maxInFlight 10/.test(c.message));
    const timedOut = codes.filter((c) => c?.code === 'ERR_REDIS_TIMEOUT');
    assert.equal(refused.length, 40);
    assert.equal(timedOut.length, 10);
    await eventually(async () => (await redis.get('k')) === null, 3000, 'serves again');
    assert.equal(client.metrics().inFlight, 0);
    await client.close();
    await server.stop();
  });

  it('a lost connection names the server in the message', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      pingIntervalMs: 0,
      reconnect: { minDelayMs: 1000, maxDelayMs: 1000 },
    });
    const redis = new RedisService(client);
    await server.kill();
    const e: any = await redis.get('k').catch((err) => err);
    assert.equal(e.code, 'ERR_REDIS_CONNECTION');
    assert.ok(e.message.includes(`127.0.0.1:${server.port}`), e.message);
    await client.close();
  });

  it('reconnecting gives up after reconnect.maxAttempts and says so', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      connectTimeoutMs: 200,
      reconnect: { minDelayMs: 10, maxDelayMs: 20, maxAttempts: 2 },
    });
    const redis = new RedisService(client);
    await server.stop();
    await assert.rejects(redis.get('k'), { code: 'ERR_REDIS_CONNECTION' });
    await eventually(
      () =>
        redis.get('k').then(
          () => false,
          (e: any) => e.code === 'ERR_REDIS_CONNECTION' && /gave up/.test(e.message),
        ),
      3000,
      'gives up',
    );
    await client.close();
  });
});
