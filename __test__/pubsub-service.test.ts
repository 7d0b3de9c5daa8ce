import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PubSubService, RedisClient, RedisService } from 'nestjs-redis-native';
import { onlyStandalone, sleep, startRedis, stopSharedRedis, testConnectOptions, testTopology } from './support/redis-server';

/** Receivers `publish` counts: on a cluster, only those connected to the node that took the message. */
const receivers = (n: number) => (testTopology() === 'cluster' ? [0, n] : [n]);

let client: RedisClient;
let pubsub: PubSubService;

before(async () => {
  client = await RedisClient.connect(await testConnectOptions());
  pubsub = new PubSubService(client);
});

after(async () => {
  await client.close();
  await stopSharedRedis();
});

const any = (v: unknown) => v as any;
const channel = () => `ch-${randomUUID()}`;

async function eventually(check: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail('not within time');
    await sleep(10);
  }
}

describe('publish / subscribe', () => {
  it('a subscriber gets every message in order; publish counts receivers', async () => {
    const ch = channel();
    const got: string[] = [];
    const sub = await pubsub.subscribe(ch, (message, from) => {
      assert.equal(from, ch);
      got.push(message);
    });
    for (let i = 0; i < 50; i++) assert.ok(receivers(1).includes(await pubsub.publish(ch, `m${i}`)));
    await eventually(() => got.length === 50);
    assert.deepEqual(
      got,
      Array.from({ length: 50 }, (_, i) => `m${i}`),
    );
    await sub.unsubscribe();
  });

  it('objects are published as JSON; { json: true } hands them back parsed', async () => {
    const ch = channel();
    const got: unknown[] = [];
    const raw: string[] = [];
    const s1 = await pubsub.subscribe(ch, (m) => got.push(m), { json: true });
    const s2 = await pubsub.subscribe(ch, (m) => raw.push(m));
    assert.ok(receivers(1).includes(await pubsub.publish(ch, { order: 42, items: ['a'] }))); // one connection, two handlers
    await eventually(() => got.length === 1 && raw.length === 1);
    assert.deepEqual(got, [{ order: 42, items: ['a'] }]);
    assert.deepEqual(raw, ['{"order":42,"items":["a"]}']);
    await s1.unsubscribe();
    await s2.unsubscribe();
  });

  it('psubscribe delivers every matching channel with the pattern', async () => {
    const base = channel();
    const got: [string, string, string][] = [];
    const sub = await pubsub.psubscribe(`${base}:*`, (m, ch, pattern) => got.push([m, ch, pattern]));
    await pubsub.publish(`${base}:a`, '1');
    await pubsub.publish(`${base}:b`, '2');
    await pubsub.publish(`other:${base}`, '3');
    await eventually(() => got.length === 2);
    // on a cluster, messages of two channels go through two nodes: no order between them
    if (testTopology() === 'cluster') got.sort();
    assert.deepEqual(got, [
      ['1', `${base}:a`, `${base}:*`],
      ['2', `${base}:b`, `${base}:*`],
    ]);
    assert.equal(sub.pattern, true);
    await sub.unsubscribe();
  });

  it('after unsubscribe nothing more arrives, and the channel has no subscriber', async () => {
    const ch = channel();
    let count = 0;
    const sub = await pubsub.subscribe(ch, () => count++);
    await pubsub.publish(ch, 'x');
    await eventually(() => count === 1);
    await sub.unsubscribe();
    await sub.unsubscribe();
    assert.equal(await pubsub.publish(ch, 'y'), 0);
    await sleep(50);
    assert.equal(count, 1);
  });

  it('a handler that throws does not end the subscription; onError gets the error', async () => {
    const ch = channel();
    const errors: string[] = [];
    let calls = 0;
    const sub = await pubsub.subscribe(
      ch,
      async (m) => {
        calls++;
        if (m === 'bad') throw new Error('handler failed');
      },
      { onError: (e) => errors.push(String(e)) },
    );
    await pubsub.publish(ch, 'bad');
    await pubsub.publish(ch, 'good');
    await eventually(() => calls === 2 && errors.length === 1);
    assert.match(errors[0], /handler failed/);
    const sync = await pubsub.subscribe(
      ch,
      () => {
        throw new Error('sync throw');
      },
      { onError: (e) => errors.push(String(e)) },
    );
    await pubsub.publish(ch, 'again');
    await eventually(() => errors.length === 2 && calls === 3);
    await sub.unsubscribe();
    await sync.unsubscribe();
  });

  it('subscriptions come back after the server restarts', onlyStandalone('kills and restarts a server of its own'), async () => {
    const server = await startRedis();
    const c = await RedisClient.connect({ url: server.url, reconnect: { minDelayMs: 20, maxDelayMs: 100 } });
    const ps = new PubSubService(c);
    const ch = channel();
    const got: string[] = [];
    await ps.subscribe(ch, (m) => got.push(m));
    await ps.publish(ch, 'before');
    await eventually(() => got.length === 1);
    await server.kill();
    await server.start();
    // publish until the restored subscription hears it
    for (let i = 0; i < 100 && !got.includes('after'); i++) {
      await ps.publish(ch, 'after').catch(() => 0);
      await sleep(50);
    }
    assert.ok(got.includes('after'), JSON.stringify(got));
    await c.close();
    await server.stop();
  });

  it('the process exits by itself after close, with or without unsubscribe', async () => {
    const script = join(__dirname, 'fixtures', 'subscribe-then-exit.js');
    const options = JSON.stringify(await testConnectOptions());
    for (const mode of ['unsubscribe', 'keep']) {
      const out = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, [script, options, mode], { timeout: 10_000 }, (error, stdout) =>
          error ? reject(error) : resolve(stdout),
        );
      });
      assert.equal(out.trim(), 'bye');
    }
  });
});

describe('the subscriber connection', () => {
  it('is named after clientName, with :sub', onlyStandalone('CLIENT LIST shows the connections of one server'), async () => {
    const name = `app-${randomUUID().slice(0, 8)}`;
    const named = await RedisClient.connect({ ...(await testConnectOptions()), clientName: name });
    const sub = await new PubSubService(named).subscribe(channel(), () => {});
    const list = String(await new RedisService(named).command('CLIENT', ['LIST']));
    assert.match(list, new RegExp(`name=${name} `));
    assert.match(list, new RegExp(`name=${name}:sub `));
    await sub.unsubscribe();
    await named.close();
  });

  it('subscribe after close() rejects with ERR_CLIENT_CLOSED', async () => {
    const c = await RedisClient.connect(await testConnectOptions());
    const service = new PubSubService(c);
    await c.close();
    await assert.rejects(
      service.subscribe(channel(), () => {}),
      { code: 'ERR_CLIENT_CLOSED' },
    );
    await assert.rejects(
      service.psubscribe('p*', () => {}),
      { code: 'ERR_CLIENT_CLOSED' },
    );
  });
});

describe('PubSubService bad input', () => {
  it('bad channels, handlers and options are ERR_INVALID_ARGUMENT', async () => {
    for (const ch of [any(''), any(undefined), any(5)]) {
      await assert.rejects(
        pubsub.subscribe(ch, () => {}),
        { code: 'ERR_INVALID_ARGUMENT' },
      );
      await assert.rejects(pubsub.publish(ch, 'x'), { code: 'ERR_INVALID_ARGUMENT' });
    }
    await assert.rejects(pubsub.subscribe('c', any('nope')), { code: 'ERR_INVALID_ARGUMENT' });
    await assert.rejects(
      pubsub.subscribe('c', () => {}, any({ json: 'yes' })),
      { code: 'ERR_INVALID_ARGUMENT' },
    );
    await assert.rejects(
      pubsub.subscribe('c', () => {}, any({ onError: 5 })),
      { code: 'ERR_INVALID_ARGUMENT' },
    );
    await assert.rejects(pubsub.publish('c', any(undefined)), { code: 'ERR_SERIALIZATION' });
  });
});

describe('subscribe() racing close()', () => {
  it('subscribe() in the same tick as close() settles with ERR_CLIENT_CLOSED or an inert Subscription, and leaves no subscriber on the server', async () => {
    // a server of its own: its CLIENT LIST and PUBLISH counts see only this test's connections
    const server = await startRedis();
    const observer = await RedisClient.connect({ url: server.url });
    const observe = new RedisService(observer);
    const outcomes = { rejected: 0, resolved: 0 };
    const channels: string[] = [];
    const delivered: string[] = [];
    const resolved: { unsubscribe(): Promise<void> }[] = [];
    try {
      for (let k = 0; k < 40; k++) {
        const c = await RedisClient.connect({ url: server.url, clientName: `same-tick-${k}` });
        const service = new PubSubService(c);
        // every other round the subscriber connection is already up (another channel)
        if (k % 2 === 1) await service.subscribe(`warm-${k}`, () => {});
        const ch = channel();
        channels.push(ch, `warm-${k}`);
        const subscribing = service.subscribe(ch, (m: string) => delivered.push(m));
        const closing = c.close();
        const outcome = await Promise.race([
          subscribing.then(
            (s) => ({ s }),
            (e: unknown) => ({ e }),
          ),
          sleep(3000).then(() => 'still pending'),
        ]);
        assert.notEqual(outcome, 'still pending', 'subscribe() settles');
        if (typeof outcome === 'object' && 'e' in outcome) {
          assert.equal((outcome.e as { code?: string }).code, 'ERR_CLIENT_CLOSED', String(outcome.e));
          outcomes.rejected++;
        } else if (typeof outcome === 'object') {
          assert.equal(outcome.s.channel, ch);
          resolved.push(outcome.s);
          outcomes.resolved++;
        }
        await closing;
      }
      console.log(`subscribe() in the same tick as close(): ${outcomes.rejected} rejected, ${outcomes.resolved} resolved`);
      // the closed clients' subscriber connections go away by themselves
      const left = async () =>
        [...String(await observe.command('CLIENT', ['LIST'])).matchAll(/ name=(same-tick-\d+:sub) /g)].map((m) => m[1]);
      const deadline = Date.now() + 3000;
      while ((await left()).length > 0 && Date.now() < deadline) await sleep(20);
      assert.deepEqual(await left(), [], 'no subscriber connection of a closed client is left');
      // nothing listens any more: no receivers, and no handler is called
      for (const ch of channels) assert.equal(await observe.command('PUBLISH', [ch, 'after close']), 0, ch);
      await sleep(100);
      assert.deepEqual(delivered, []);
      // unsubscribing a Subscription of a closed client is harmless
      for (const s of resolved) await s.unsubscribe();
    } finally {
      await observer.close();
      await server.stop();
    }
  });
});
