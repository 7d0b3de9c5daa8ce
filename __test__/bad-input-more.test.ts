import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LockService, RedisClient, RedisService } from 'nestjs-redis-native';
import { prefixedClients, stopSharedRedis, testConnectOptions, type TestConnectOptions } from './support/redis-server';

/**
 * Options objects and raw command arguments that JS code gets wrong: each is refused with
 * ERR_INVALID_ARGUMENT naming what is wrong, and `undefined` or `null` counts as not given.
 */

let client: RedisClient;
let redis: RedisService;
let options: TestConnectOptions;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, redis, close: closeClients } = await prefixedClients());
  options = await testConnectOptions();
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;

function invalid(message: RegExp | string) {
  return (e: any) => {
    assert.equal(e.code, 'ERR_INVALID_ARGUMENT', e.message);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  };
}

describe('raw command arguments', () => {
  it('a boolean, null, undefined or symbol argument is refused, naming its position and type', async () => {
    for (const [bad, type] of [
      [true, 'a boolean'],
      [null, 'null'],
      [undefined, 'undefined'],
      [Symbol('s'), 'a symbol'],
    ] as const) {
      await assert.rejects(
        redis.command('GET', [any(bad)]),
        invalid(`command[1] must be a string, number or Buffer, got ${type}`),
      );
    }
  });

  it('a bad argument in a pipeline names its command and position, and nothing is sent', async () => {
    await assert.rejects(
      redis.pipeline([
        ['SET', 'sent-first', 'v'],
        ['SET', 'k', any(false)],
      ]),
      invalid('commands[1][2] must be a string, number or Buffer, got a boolean'),
    );
    assert.equal(await redis.exists('sent-first'), false);
  });

  it('numbers are sent as JavaScript writes them', async () => {
    await redis.command('SET', ['num', 1.5]);
    assert.equal(await redis.get('num'), '1.5');
    await redis.command('SET', ['num', -0]);
    assert.equal(await redis.get('num'), '0');
    await redis.command('SET', ['num', 1e20]);
    assert.equal(await redis.get('num'), '100000000000000000000');
  });
});

describe('options objects of the services', () => {
  const locks = () => new LockService(client);

  it('options that are not an object are refused', async () => {
    for (const bad of [5, 'retry', true, [], [1]]) {
      await assert.rejects(locks().acquire('opt-lock', 1000, any(bad)), invalid('lock options must be an object'));
    }
  });

  it('a function as options is refused', async () => {
    await assert.rejects(
      locks().acquire(
        'opt-lock',
        1000,
        any(() => 1),
      ),
      invalid('lock options must not be a function'),
    );
  });

  it('a Buffer as options is refused', async () => {
    await assert.rejects(locks().acquire('opt-lock', 1000, any(Buffer.from('x'))), invalid(/lock options/));
  });

  it('an option whose getter throws is refused, not thrown out of the call', async () => {
    const options = {
      get retryCount(): number {
        throw new Error('boom');
      },
    };
    const call = () => locks().acquire('opt-getter', 1000, any(options));
    let promise: Promise<unknown> | undefined;
    assert.doesNotThrow(() => {
      promise = call();
    });
    await assert.rejects(promise!, invalid(/retryCount could not be read/));
  });

  it('options given as a class instance with getters are read (and checked)', async () => {
    class LockOptions {
      get retryCount(): unknown {
        return 'many';
      }
    }
    await assert.rejects(locks().acquire('opt-class', 1000, any(new LockOptions())), invalid(/retryCount/));
  });

  it('undefined and null options, and options set to undefined or null, are the defaults', async () => {
    for (const options of [undefined, null, {}, { retryCount: undefined }, { retryCount: null, retryDelayMs: undefined }]) {
      const lock = await locks().acquire('opt-default', 1000, any(options));
      assert.ok(lock, JSON.stringify(options));
      await lock.release();
    }
  });

  it('an unknown option is refused by name, with the known ones listed', async () => {
    await assert.rejects(
      locks().acquire('opt-lock', 1000, any({ retryCount: 1, retries: [1, 2] })),
      invalid('unknown option `retries` in lock options (known: retryCount, retryDelayMs)'),
    );
  });

  it('an option of the wrong shape is refused by name, also when it is an array or object', async () => {
    for (const bad of [[1], { n: 1 }, '3']) {
      await assert.rejects(
        locks().acquire('opt-lock', 1000, any({ retryCount: bad })),
        invalid('option `retryCount` must be a whole number >= 0'),
      );
    }
  });

  it('a value JSON cannot hold exactly inside an option is refused by its path', async () => {
    await assert.rejects(
      locks().acquire('opt-lock', 1000, any({ retryCount: [1, Symbol('s')] })),
      invalid('lock options.retryCount[1] must not be a symbol'),
    );
    await assert.rejects(
      locks().acquire('opt-lock', 1000, any({ retryCount: { n: 10n } })),
      invalid('lock options.retryCount.n must not be a bigint'),
    );
    await assert.rejects(
      locks().acquire('opt-lock', 1000, any({ retryCount: NaN })),
      invalid(/lock options\.retryCount must be a finite number/),
    );
  });
});

describe('RedisClient.connect options', () => {
  it('an option set to null counts as not given', async () => {
    const c = await RedisClient.connect({ ...options, host: any(null), keyPrefix: any(null) });
    assert.equal(await new RedisService(c).command('PING'), 'PONG');
    await c.close();
  });

  it('options nested more than 16 levels deep are refused without walking further', async () => {
    let deep: unknown = 'PEM';
    for (let i = 0; i < 20; i++) deep = { a: deep };
    await assert.rejects(
      RedisClient.connect({ ...options, tls: any(deep) }),
      invalid(/^options\.tls(\.a)+ is nested too deeply$/),
    );
  });

  it('an array where a string is expected is refused by name', async () => {
    await assert.rejects(
      RedisClient.connect({ ...options, host: any(['127.0.0.1']) }),
      invalid('option `host` must be a string'),
    );
  });

  it('a symbol option is refused by its path', async () => {
    await assert.rejects(
      RedisClient.connect({ ...options, clientName: any(Symbol('x')) }),
      invalid('options.clientName must not be a symbol'),
    );
  });

  it('PEM given as a Buffer is read as its bytes, and a bad one is refused', async () => {
    await assert.rejects(
      RedisClient.connect({ ...options, tls: any({ cert: Buffer.from('C') }) }),
      invalid('options `tls.cert` and `tls.key` go together'),
    );
    await assert.rejects(
      RedisClient.connect({ ...options, tls: any({ ca: 42 }) }),
      invalid('option `tls.ca` must be PEM text (string or Buffer)'),
    );
  });
});
