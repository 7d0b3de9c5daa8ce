import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { IdempotencyService, RedisClient, RedisService } from 'nestjs-redis-native';
import { prefixedClients, sleep, stopSharedRedis } from './support/redis-server';

let client: RedisClient;
let idem: IdempotencyService;
let raw: RedisService;
let prefix: string;
let closeClients: () => Promise<void>;

before(async () => {
  ({ client, raw, prefix, close: closeClients } = await prefixedClients());
  idem = new IdempotencyService(client);
});

after(async () => {
  await closeClients();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;

describe('processed events', () => {
  it('an event is processed once marked, for its ttl', async () => {
    assert.equal(await idem.isProcessed('evt-1'), false);
    await idem.markAsProcessed('evt-1', 0.3);
    assert.equal(await idem.isProcessed('evt-1'), true);
    await sleep(400);
    assert.equal(await idem.isProcessed('evt-1'), false);
  });

  it('the default ttl is a week', async () => {
    await idem.markAsProcessed('evt-week');
    const ttl = (await raw.command('PTTL', [`${prefix}idempotency:processed:evt-week`])) as number;
    assert.ok(ttl > 604_790_000 && ttl <= 604_800_000, String(ttl));
  });
});

describe('begin / complete / abandon', () => {
  it('the first begin starts; a second sees it in progress; after complete it gets the result', async () => {
    assert.equal((await idem.begin('order-1')).state, 'started');
    assert.deepEqual(await idem.begin('order-1'), { state: 'in-progress' });
    await idem.complete('order-1', '{"orderId":42}');
    assert.deepEqual(await idem.begin('order-1'), { state: 'completed', result: '{"orderId":42}' });
  });

  it('of 100 concurrent begins on one key exactly one starts', async () => {
    const outcomes = await Promise.all(Array.from({ length: 100 }, () => idem.begin('order-race')));
    assert.equal(outcomes.filter((o) => o.state === 'started').length, 1);
    assert.equal(outcomes.filter((o) => o.state === 'in-progress').length, 99);
  });

  it('a lock that outlives lockTtl (a crashed worker) lets a retry start', async () => {
    assert.equal((await idem.begin('order-crash', { lockTtl: 0.2 })).state, 'started');
    assert.equal((await idem.begin('order-crash', { lockTtl: 0.2 })).state, 'in-progress');
    await sleep(300);
    assert.equal((await idem.begin('order-crash', { lockTtl: 0.2 })).state, 'started');
  });

  it('complete keeps the result for resultTtl', async () => {
    await idem.begin('order-ttl', { resultTtl: 0.3 });
    await idem.complete('order-ttl', 'done');
    assert.equal((await idem.begin('order-ttl')).state, 'completed');
    await sleep(400);
    assert.equal((await idem.begin('order-ttl')).state, 'started');
  });

  it('a ttl given to complete wins over resultTtl', async () => {
    await idem.begin('order-ttl2', { resultTtl: 60 });
    await idem.complete('order-ttl2', 'done', 0.2);
    await sleep(300);
    assert.equal((await idem.begin('order-ttl2')).state, 'started');
  });

  it('abandon releases a started key so a retry can run, and keeps completed results', async () => {
    await idem.begin('order-fail');
    await idem.abandon('order-fail');
    assert.equal((await idem.begin('order-fail')).state, 'started');
    await idem.complete('order-fail', 'ok');
    await idem.abandon('order-fail');
    assert.deepEqual(await idem.begin('order-fail'), { state: 'completed', result: 'ok' });
  });

  it('a different fingerprint on the same key is a mismatch', async () => {
    assert.equal((await idem.begin('pay-1', { fingerprint: 'body-a' })).state, 'started');
    assert.equal((await idem.begin('pay-1', { fingerprint: 'body-b' })).state, 'mismatch');
    assert.equal((await idem.begin('pay-1', { fingerprint: 'body-a' })).state, 'in-progress');
    await idem.complete('pay-1', 'r');
    assert.equal((await idem.begin('pay-1', { fingerprint: 'body-b' })).state, 'mismatch');
    assert.equal((await idem.begin('pay-1', { fingerprint: 'body-a' })).state, 'completed');
  });
});

describe('owners: a late caller never overwrites a newer run', () => {
  it('the caller that starts gets a token', async () => {
    const begun = await idem.begin('own-1', { lockTtl: 60 });
    assert.equal(begun.state, 'started');
    assert.ok(begun.state === 'started' && begun.token.length >= 16);
  });

  it('complete with the token of a run whose lock expired, after a retry started, stores nothing', async () => {
    const first = await idem.begin('own-2', { lockTtl: 0.1 });
    await sleep(150); // the first worker stalls past its lock
    const second = await idem.begin('own-2', { lockTtl: 60 });
    assert.ok(first.state === 'started' && second.state === 'started');
    assert.equal(await idem.complete('own-2', 'late', { token: first.token }), false);
    assert.deepEqual(await idem.begin('own-2'), { state: 'in-progress' });
    assert.equal(await idem.complete('own-2', 'fresh', { token: second.token }), true);
    assert.deepEqual(await idem.begin('own-2'), { state: 'completed', result: 'fresh' });
    assert.equal(await idem.complete('own-2', 'late again', { token: first.token }), false);
    assert.deepEqual(await idem.begin('own-2'), { state: 'completed', result: 'fresh' });
  });

  it('abandon with a stale token leaves the newer run alone', async () => {
    const first = await idem.begin('own-3', { lockTtl: 0.1 });
    await sleep(150);
    const second = await idem.begin('own-3', { lockTtl: 60 });
    assert.ok(first.state === 'started' && second.state === 'started');
    assert.equal(await idem.abandon('own-3', { token: first.token }), false);
    assert.deepEqual(await idem.begin('own-3'), { state: 'in-progress' });
    assert.equal(await idem.abandon('own-3', { token: second.token }), true);
    assert.equal((await idem.begin('own-3')).state, 'started');
  });

  it('a record Redis lost is written again with its fingerprint, so a different request is still a mismatch', async () => {
    const begun = await idem.begin('own-4', { fingerprint: 'body-a' });
    assert.ok(begun.state === 'started');
    await raw.del(`${prefix}idempotency:own-4`); // a restart without persistence
    assert.equal(await idem.complete('own-4', 'done', { token: begun.token, fingerprint: 'body-a' }), true);
    assert.deepEqual(await idem.begin('own-4', { fingerprint: 'body-b' }), { state: 'mismatch' });
    assert.deepEqual(await idem.begin('own-4', { fingerprint: 'body-a' }), { state: 'completed', result: 'done' });
  });

  it('complete and abandon without a token keep working as before', async () => {
    await idem.begin('own-5');
    assert.equal(await idem.complete('own-5', 'r'), true);
    await idem.begin('own-6');
    assert.equal(await idem.abandon('own-6'), true);
  });
});

describe('IdempotencyService bad input', () => {
  it('empty keys, bad ttls and non-string results are ERR_INVALID_ARGUMENT and write nothing', async () => {
    const before = await raw.keys(`${prefix}idempotency:*`);
    for (const key of [any(''), any(undefined), any(3)]) {
      await assert.rejects(idem.begin(key), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(idem.complete(key, 'r'), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(idem.markAsProcessed(key), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(idem.isProcessed(key), { code: 'ERR_INVALID_ARGUMENT' });
    }
    for (const ttl of [0, -1, NaN, Infinity]) {
      await assert.rejects(idem.begin('k', { lockTtl: ttl }), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(idem.begin('k', { resultTtl: ttl }), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(idem.markAsProcessed('k', ttl), { code: 'ERR_INVALID_ARGUMENT' });
      await assert.rejects(idem.complete('k', 'r', ttl), { code: 'ERR_INVALID_ARGUMENT' });
    }
    await assert.rejects(idem.complete('k', any({ a: 1 })), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(idem.begin('k', any({ lockTTL: 5 })), { code: 'ERR_INVALID_ARGUMENT' });
    assert.deepEqual(await raw.keys(`${prefix}idempotency:*`), before);
  });
});
