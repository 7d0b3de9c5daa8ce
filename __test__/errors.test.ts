import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sleep, startRedis } from './support/local-redis';
import { RedisClient, RedisService, SessionService, isRedisError, type RedisErrorCode } from 'nestjs-redis-native';
import { isRedisError as isRedisErrorFromNest, type RedisErrorCode as NestRedisErrorCode } from 'nestjs-redis-native/nest';
import { prefixedClients, stopSharedRedis, testConnectOptions, uniquePrefix } from './support/redis-server';

let redis: RedisService;
let client: RedisClient;
// A client without prefix, to look at what is really stored.
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, redis, raw, prefix, close: closeClients } = await prefixedClients());
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

// Deliberately wrong values, typed loosely so the calls compile.
const any = (v: unknown) => v as any;
const badKeys = [any(undefined), any(null), '', any(5), any({}), any(['k']), any(Symbol('k')), any(() => 'k')];
const badTtls = [0, -1, NaN, Infinity, -Infinity, any('10'), any({})];

describe('every rejection carries a stable code', () => {
  it('bad keys are ERR_INVALID_ARGUMENT for every key-taking method', async () => {
    for (const key of badKeys) {
      const calls: [string, () => Promise<unknown>][] = [
        ['get', () => redis.get(key)],
        ['set', () => redis.set(key, 'v')],
        // del also takes a list of keys, so a one-element list is valid there
        ...(Array.isArray(key) ? [] : ([['del', () => redis.del(key)]] as [string, () => Promise<unknown>][])),
        ['exists', () => redis.exists(key)],
        ['expire', () => redis.expire(key, 1)],
        ['ttl', () => redis.ttl(key)],
        ['incr', () => redis.incr(key)],
        ['setNx', () => redis.setNx(key, 'v')],
        ['getJson', () => redis.getJson(key)],
        ['setJson', () => redis.setJson(key, 1)],
        ['getBuffer', () => redis.getBuffer(key)],
        ['setBuffer', () => redis.setBuffer(key, Buffer.from('x'))],
        ['keys', () => redis.keys(key)],
        ['deletePattern', () => redis.deletePattern(key)],
      ];
      for (const [name, call] of calls) {
        await assert.rejects(call(), { code: 'ERR_INVALID_ARGUMENT' }, `${name}(${String(key)})`);
      }
    }
  });

  it('del with a bad key inside a list is ERR_INVALID_ARGUMENT and deletes nothing', async () => {
    await redis.set('del-list-ok', 'v');
    await assert.rejects(redis.del(['del-list-ok', any(5)]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.del(['del-list-ok', '']), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('del-list-ok'), true);
  });

  it('bad TTLs are ERR_INVALID_ARGUMENT and write nothing', async () => {
    for (const ttl of badTtls) {
      await assert.rejects(redis.set('ttl-key', 'v', ttl), { code: 'ERR_INVALID_ARGUMENT' }, `set ttl ${String(ttl)}`);
      await assert.rejects(redis.setNx('ttl-key', 'v', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.incr('ttl-key', 1, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.expire('ttl-key', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.mset({ 'ttl-key': 'v' }, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.setJson('ttl-key', 1, ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(redis.setBuffer('ttl-key', Buffer.from('x'), ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
    assert.equal(await redis.exists('ttl-key'), false);
  });

  it('expire without a ttl is ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(redis.expire('k', any(undefined)), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('wrong value types are ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(redis.set('k', any(5)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.set('k', any(null)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.set('k', any({ a: 1 })), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.setNx('k', any(undefined)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.setBuffer('k', any('not a buffer')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.incr('k', any('1')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.incr('k', NaN), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mget(any('k')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mget(['ok', any(1)]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mset(any(['a', 'b'])), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mset(any(null)), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.mset({ '': 'v' }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.del(['ok', any(null)]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.keys('*', 0), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.keys('*', 1.5), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('k'), false);
  });

  it('bad raw commands are ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(redis.command(any(undefined), []), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.command('', []), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.command('GET', any('k')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.command('GET', [any({})]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.pipeline(any('GET k')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.pipeline([[]]), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(redis.pipeline([['SET', 'pk', 'v'], any('GET')]), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.exists('pk'), false, 'a refused pipeline sends nothing');
  });

  it('a wrong-type operation is ERR_REDIS_COMMAND naming the command and key, with the server text', async () => {
    await redis.command('LPUSH', ['list', 'a']);
    await assert.rejects(redis.get('list'), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_COMMAND');
      // the key as the caller wrote it, without the client's prefix
      assert.equal(e.message, 'GET list: WRONGTYPE Operation against a key holding the wrong kind of value');
      return e instanceof Error;
    });
  });

  it('a service built on something other than a RedisClient is ERR_INVALID_ARGUMENT', () => {
    assert.throws(() => new RedisService(any({})), { code: 'ERR_INVALID_ARGUMENT' });
    assert.throws(() => new RedisService(any(undefined)), { code: 'ERR_INVALID_ARGUMENT' });
  });

  it('rejections are real Error instances with a stack', async () => {
    const e = await redis.get('').catch((err: unknown) => err);
    assert.ok(e instanceof Error);
    assert.equal(typeof (e as Error).message, 'string');
  });
});

describe('isRedisError and RedisErrorCode', () => {
  it('isRedisError is true for a rejection of the package and narrows its code without a cast', async () => {
    const e: unknown = await redis.get('').catch((err: unknown) => err);
    assert.ok(isRedisError(e));
    const code: RedisErrorCode = e.code; // compiles: narrowed by the guard
    assert.equal(code, 'ERR_INVALID_ARGUMENT');
  });

  it('isRedisError is false for other errors and for values that only look like one', () => {
    assert.equal(isRedisError(new Error('plain')), false);
    assert.equal(isRedisError(Object.assign(new Error('fs'), { code: 'ENOENT' })), false);
    assert.equal(isRedisError({ code: 'ERR_REDIS_CONNECTION', message: 'not an Error' }), false);
    assert.equal(isRedisError(Object.assign(new Error('x'), { code: 42 })), false);
    for (const v of [null, undefined, 'ERR_INTERNAL', 0, [], () => {}]) assert.equal(isRedisError(v), false);
  });

  it('every code the package documents is recognised', () => {
    const codes: RedisErrorCode[] = [
      'ERR_INVALID_ARGUMENT',
      'ERR_REDIS_CONNECTION',
      'ERR_REDIS_TIMEOUT',
      'ERR_REDIS_AUTH',
      'ERR_REDIS_COMMAND',
      'ERR_SERIALIZATION',
      'ERR_CLIENT_CLOSED',
      'ERR_LOCK_NOT_ACQUIRED',
      'ERR_INTERNAL',
    ];
    for (const code of codes) assert.equal(isRedisError(Object.assign(new Error(code), { code })), true, code);
  });

  it('the Nest entry point exports the same guard and type', () => {
    assert.equal(isRedisErrorFromNest, isRedisError);
    const code: NestRedisErrorCode = 'ERR_REDIS_TIMEOUT';
    assert.equal(isRedisErrorFromNest(Object.assign(new Error('t'), { code })), true);
  });
});

describe('messages and stacks you can trace', () => {
  async function loadProfile(service: RedisService): Promise<string | null> {
    return await service.get('list'); // 'list' holds a list (made above): WRONGTYPE
  }
  async function profileController(service: RedisService): Promise<string | null> {
    return await loadProfile(service);
  }

  it('with captureStackTraces, a rejection carries the stack of the code that awaited it', async () => {
    const client = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: prefix, captureStackTraces: true });
    const e = await profileController(new RedisService(client)).catch((err: Error) => err);
    assert.ok(e instanceof Error);
    assert.match(e.stack ?? '', /^Error: GET list: WRONGTYPE/);
    assert.match(e.stack ?? '', /at async loadProfile .*errors\.test\.js/);
    assert.match(e.stack ?? '', /at async profileController/);
    assert.equal((e as Error & { code: string }).code, 'ERR_REDIS_COMMAND');
    await client.close();
  });

  it('without it, the rejection has no async frames of your code (no cost per call)', async () => {
    const client = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: prefix, captureStackTraces: false });
    const e = await profileController(new RedisService(client)).catch((err: Error) => err);
    assert.ok(e instanceof Error);
    // (a call the server answers while it is still being made shows that call's own frames)
    assert.doesNotMatch(e.stack ?? '', /at async loadProfile/);
    await client.close();
  });

  it('it is on by default, and off when NODE_ENV is production', async () => {
    const options = await testConnectOptions();
    const saved = process.env.NODE_ENV;
    try {
      delete process.env.NODE_ENV;
      const dev = await RedisClient.connect({ ...options, keyPrefix: prefix });
      process.env.NODE_ENV = 'production';
      const prod = await RedisClient.connect({ ...options, keyPrefix: prefix });
      const devError = (await profileController(new RedisService(dev)).catch((err: Error) => err)) as Error;
      const prodError = (await profileController(new RedisService(prod)).catch((err: Error) => err)) as Error;
      assert.match(String(devError.stack), /at async loadProfile/);
      assert.doesNotMatch(String(prodError.stack), /at async loadProfile/);
      await dev.close();
      await prod.close();
    } finally {
      if (saved === undefined) delete process.env.NODE_ENV;
      else process.env.NODE_ENV = saved;
    }
  });

  it('a failing script is named in the message (the service and its script file)', async () => {
    const sessions = new SessionService(client);
    await redis.set('session:{s-wrong}', 'not a hash');
    const e = await sessions.createSession('s-wrong', { userId: 'u1' }).catch((err: unknown) => err);
    assert.ok(isRedisError(e));
    assert.equal(e.code, 'ERR_REDIS_COMMAND');
    assert.match(e.message, /^SessionService script create\.lua: .*WRONGTYPE/);
  });

  it('a value larger than maxValueBytes is ERR_INVALID_ARGUMENT, nothing is sent, and the connection goes on', async () => {
    const client = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: uniquePrefix(), maxValueBytes: 1024 });
    const small = new RedisService(client);
    const e = await small.setBuffer('big', Buffer.alloc(2048)).catch((err: unknown) => err);
    assert.ok(isRedisError(e));
    assert.equal(e.code, 'ERR_INVALID_ARGUMENT');
    assert.match(e.message, /2048 bytes is larger than maxValueBytes \(1024 bytes\)/);
    await assert.rejects(small.pipeline([['SET', 'big', 'x'.repeat(2000)]]), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await small.get('big'), null);
    await small.set('ok', 'x'.repeat(1000));
    assert.equal((await small.get('ok'))?.length, 1000);
    await small.deletePattern('*');
    await client.close();
  });

  it('a value whose toJSON throws something that cannot be shown is ERR_SERIALIZATION, not an exception', async () => {
    const hostile = Object.create(null);
    const value = {
      toJSON() {
        throw hostile; // no toString: cannot even be turned into text
      },
    };
    let promise: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      promise = redis.setJson('hostile', value);
    });
    await assert.rejects(promise!, { code: 'ERR_SERIALIZATION' });
    assert.equal(await redis.get('hostile'), null);
  });

  it("by default, a value over 512 MiB (Redis's own limit) is refused before it can break the connection", async () => {
    const big = Buffer.alloc(512 * 1024 * 1024 + 1);
    await assert.rejects(redis.setBuffer('huge', big), { code: 'ERR_INVALID_ARGUMENT' });
    assert.equal(await redis.set('after-huge', 'fine'), undefined);
    assert.equal(await redis.get('after-huge'), 'fine');
  });
});

describe('outage and closed-client errors name the command and the key, and where it was called', () => {
  // the caller's frames a rejection must show (captureStackTraces)
  async function loadUser(service: RedisService): Promise<string | null> {
    return await service.get('user:1');
  }
  async function userController(service: RedisService): Promise<string | null> {
    return await loadUser(service);
  }
  const traced = (e: unknown) => {
    assert.ok(e instanceof Error, String(e));
    assert.match(e.stack ?? '', /at async loadUser .*errors\.test\.js/);
    assert.match(e.stack ?? '', /at async userController .*errors\.test\.js/);
    return e as Error & { code: string };
  };

  it('ERR_REDIS_TIMEOUT (a SIGSTOPped server): `GET user:1: ...`, the key without the prefix, with the caller stack', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      keyPrefix: 'app:',
      commandTimeoutMs: 200,
      pingIntervalMs: 0,
      captureStackTraces: true,
    });
    try {
      const service = new RedisService(client);
      await service.set('user:1', 'ada');
      server.pause();
      const e = traced(await userController(service).catch((err: unknown) => err));
      assert.equal(e.code, 'ERR_REDIS_TIMEOUT');
      assert.match(e.message, new RegExp(`^GET user:1: Redis at 127\\.0\\.0\\.1:${server.port} did not reply within 200 ms`));
      assert.match(e.stack ?? '', /^Error: GET user:1: /);
      const write = await service.incr('visits:1').catch((err: unknown) => err);
      assert.ok(isRedisError(write) && write.code === 'ERR_REDIS_TIMEOUT', String(write));
      assert.match(write.message, /^INCRBY visits:1: /);
    } finally {
      server.resume();
      await client.close();
      await server.stop();
    }
  });

  it('ERR_REDIS_CONNECTION (a stopped server): `GET user:1: ...` naming the server, with the caller stack', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      keyPrefix: 'app:',
      captureStackTraces: true,
      reconnect: { minDelayMs: 50, maxDelayMs: 100 },
    });
    try {
      const service = new RedisService(client);
      await service.set('user:1', 'ada');
      await server.stop();
      // as the loss is noticed, then while reconnecting keeps failing
      for (const wait of [0, 300]) {
        await sleep(wait);
        const e = traced(await userController(service).catch((err: unknown) => err));
        assert.equal(e.code, 'ERR_REDIS_CONNECTION');
        assert.match(e.message, new RegExp(`^GET user:1: .*127\\.0\\.0\\.1:${server.port}`));
      }
    } finally {
      await client.close();
    }
  });

  it('ERR_CLIENT_CLOSED: `GET user:1: ...` for a call after close() and for one in flight at close(), with the caller stack', async () => {
    const server = await startRedis();
    const client = await RedisClient.connect({
      url: server.url,
      keyPrefix: 'app:',
      commandTimeoutMs: 5000,
      pingIntervalMs: 0,
      captureStackTraces: true,
    });
    try {
      const service = new RedisService(client);
      server.pause();
      const inFlight = userController(service).catch((err: unknown) => err);
      await sleep(50);
      await client.close();
      const after = userController(service).catch((err: unknown) => err);
      for (const e of [traced(await inFlight), traced(await after)]) {
        assert.equal(e.code, 'ERR_CLIENT_CLOSED');
        assert.match(e.message, /^GET user:1: the Redis client was closed/);
      }
    } finally {
      server.resume();
      await server.stop();
    }
  });
});
