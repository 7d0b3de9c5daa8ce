import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { LockService, RedisClient, RedisService } from 'nestjs-redis-native';
import { prefixedClients, sleep, stopSharedRedis, testConnectOptions } from './support/redis-server';

let client: RedisClient;
let locks: LockService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, prefix, close: closeClients } = await prefixedClients());
  locks = new LockService(client);
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;
const resource = () => `res-${randomUUID()}`;

describe('acquire / release / extend', () => {
  it('one owner at a time; release frees it', async () => {
    const r = resource();
    const lock = await locks.acquire(r, 5000);
    assert.ok(lock);
    assert.equal(lock.resource, r);
    assert.equal(await locks.acquire(r, 5000), null);
    assert.equal(await lock.release(), true);
    assert.ok(await locks.acquire(r, 5000));
  });

  it('of 50 concurrent acquires exactly one wins', async () => {
    const r = resource();
    const results = await Promise.all(Array.from({ length: 50 }, () => locks.acquire(r, 5000)));
    assert.equal(results.filter(Boolean).length, 1);
  });

  it('a lock expires after ttlMs', async () => {
    const r = resource();
    await locks.acquire(r, 150);
    await sleep(250);
    assert.ok(await locks.acquire(r, 150));
  });

  it('release and extend work only for the owner', async () => {
    const r = resource();
    const first = (await locks.acquire(r, 150))!;
    await sleep(250); // expired; someone else takes it
    const second = (await locks.acquire(r, 5000))!;
    assert.equal(await first.release(), false);
    assert.equal(await first.extend(5000), false);
    assert.equal(await raw.get(`${prefix}lock:{${r}}`), second.token);
    assert.equal(await second.release(), true);
  });

  it('extend keeps a lock past its first ttl', async () => {
    const r = resource();
    const lock = (await locks.acquire(r, 200))!;
    await sleep(100);
    assert.equal(await lock.extend(1000), true);
    await sleep(200);
    assert.equal(await locks.acquire(r, 100), null);
  });

  it('fencing tokens strictly increase per resource', async () => {
    const r = resource();
    const tokens: number[] = [];
    for (let i = 0; i < 5; i++) {
      const lock = (await locks.acquire(r, 5000))!;
      tokens.push(lock.fencingToken);
      await lock.release();
    }
    assert.deepEqual(
      tokens,
      [...tokens].sort((a, b) => a - b),
    );
    assert.equal(new Set(tokens).size, 5);
  });

  it('retryCount waits for a lock that is released meanwhile', async () => {
    const r = resource();
    const held = (await locks.acquire(r, 5000))!;
    setTimeout(() => void held.release(), 150);
    const waited = await locks.acquire(r, 5000, { retryCount: 20, retryDelayMs: 20 });
    assert.ok(waited);
    assert.ok(waited.fencingToken > held.fencingToken);
  });

  it('two clients (two app instances) exclude each other', async () => {
    const other = await RedisClient.connect({ ...(await testConnectOptions()), keyPrefix: prefix });
    const r = resource();
    const a = await locks.acquire(r, 5000);
    assert.ok(a);
    assert.equal(await new LockService(other).acquire(r, 5000), null);
    await other.close();
  });
});

describe('withLock', () => {
  it('50 concurrent withLock on one resource never overlap', async () => {
    const r = resource();
    let inside = 0;
    let maxInside = 0;
    let runs = 0;
    await Promise.all(
      Array.from({ length: 50 }, () =>
        locks.withLock(
          r,
          5000,
          async () => {
            inside++;
            maxInside = Math.max(maxInside, inside);
            await sleep(2);
            inside--;
            runs++;
          },
          { retryCount: 1000, retryDelayMs: 5 },
        ),
      ),
    );
    assert.equal(maxInside, 1);
    assert.equal(runs, 50);
  });

  it('returns what fn returns and releases afterwards', async () => {
    const r = resource();
    const value = await locks.withLock(r, 5000, (lock) => `done with ${lock.fencingToken > 0}`);
    assert.equal(value, 'done with true');
    assert.ok(await locks.acquire(r, 1000));
  });

  it('releases when fn throws, and the error reaches the caller', async () => {
    const r = resource();
    await assert.rejects(
      locks.withLock(r, 5000, async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.ok(await locks.acquire(r, 1000));
  });

  it('a lock held elsewhere is ERR_LOCK_NOT_ACQUIRED once the retries are spent', async () => {
    const r = resource();
    await locks.acquire(r, 5000);
    let ran = false;
    await assert.rejects(
      locks.withLock(r, 5000, () => (ran = true), { retryCount: 2, retryDelayMs: 10 }),
      { code: 'ERR_LOCK_NOT_ACQUIRED' },
    );
    assert.equal(ran, false);
  });
});

describe('LockService bad input', () => {
  it('empty resources, bad ttls and bad options are ERR_INVALID_ARGUMENT', async () => {
    for (const r of [any(''), any(undefined), any(3)]) {
      await assert.rejects(locks.acquire(r, 1000), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(
        locks.withLock(r, 1000, () => 1),
        { code: 'ERR_INVALID_ARGUMENT' },
      );
    }
    for (const ttl of [0, -1, NaN, Infinity, any('1000')]) {
      await assert.rejects(locks.acquire('r', ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
    await assert.rejects(locks.acquire('r', 1000, { retryCount: -1 }), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(locks.acquire('r', 1000, any({ retries: 3 })), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(locks.withLock('r', 1000, any('not a function')), { code: 'ERR_INVALID_ARGUMENT' });
    const lock = (await locks.acquire(resource(), 1000))!;
    await assert.rejects(lock.extend(0), { code: 'ERR_INVALID_ARGUMENT' });
  });
});
