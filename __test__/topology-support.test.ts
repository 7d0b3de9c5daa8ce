import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { CLUSTER_SLOTS, keySlot, startCluster, type LocalCluster, type NodeInfo } from './support/cluster';
import { respCommand, respPipeline } from './support/resp';
import { startSentinel, type LocalSentinel } from './support/sentinel';

/**
 * The support code the cluster and sentinel tests stand on, checked against what redis-cli
 * says: a local cluster and a sentinel set-up start, fail over and stop. Runs with
 * TEST_TOPOLOGY=cluster or TEST_CLUSTER_SUPPORT=1; needs redis-server and redis-cli, not the addon.
 */

const skip =
  process.env.TEST_TOPOLOGY === 'cluster' || process.env.TEST_CLUSTER_SUPPORT === '1'
    ? {}
    : { skip: 'set TEST_CLUSTER_SUPPORT=1 (or TEST_TOPOLOGY=cluster) to check the cluster and sentinel support' };

function redisCli(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'redis-cli',
      args,
      { timeout: 30_000 },
      (error, stdout, stderr) =>
        error
          ? reject(new Error(`redis-cli ${args.join(' ')}: ${error.message}\n${stdout}${stderr}`))
          : resolve(stdout.replace(/\x1b\[[0-9;]*m/g, '')), // redis-cli --cluster colours its report even into a pipe
    );
  });
}

async function timed<T>(what: string, work: () => Promise<T>): Promise<T> {
  const started = process.hrtime.bigint();
  const result = await work();
  console.log(`${what}: ${Number((process.hrtime.bigint() - started) / 1_000_000n)} ms`);
  return result;
}

const slotCount = (node: NodeInfo) => node.slots.reduce((n, [start, end]) => n + end - start + 1, 0);
const slotsOf = (node: NodeInfo) =>
  node.slots.flatMap(([start, end]) => Array.from({ length: end - start + 1 }, (_, i) => start + i));

/** A key for each of `slots`: `moving:<n>`, slot → key. */
function keysFor(slots: number[]): Map<number, string> {
  const wanted = new Set(slots);
  const keys = new Map<number, string>();
  for (let n = 0; keys.size < wanted.size; n++) {
    const key = `moving:${n}`;
    const slot = keySlot(key);
    if (wanted.has(slot) && !keys.has(slot)) keys.set(slot, key);
  }
  return keys;
}

describe('startCluster', skip, () => {
  let cluster: LocalCluster;

  before(async () => {
    cluster = await timed('cluster start (6 nodes, create, ready)', () => startCluster());
  });

  after(async () => {
    await cluster?.stop();
  });

  it('starts 3 masters and 3 replicas that cover all 16384 slots, as redis-cli --cluster check sees them', async () => {
    const report = await redisCli('--cluster', 'check', `127.0.0.1:${cluster.ports[0]}`);
    assert.equal(report.match(/^M: /gm)?.length, 3, report);
    assert.equal(report.match(/^S: /gm)?.length, 3, report);
    assert.match(report, /\[OK\] All nodes agree about slots configuration/);
    assert.match(report, /\[OK\] All 16384 slots covered/);
    assert.equal(cluster.nodes.length, 6);
    for (const port of cluster.ports) {
      assert.match(await redisCli('-p', String(port), 'CLUSTER', 'INFO'), /cluster_state:ok/, `node ${port}`);
    }
  });

  it('masters() lists the masters, whose slots add up to 16384', async () => {
    const masters = await cluster.masters();
    assert.equal(masters.length, 3);
    assert.equal(
      masters.reduce((n, m) => n + slotCount(m), 0),
      CLUSTER_SLOTS,
    );
  });

  it('keySlot agrees with CLUSTER KEYSLOT, hash tags included', async () => {
    for (const key of ['foo', '123456789', 'user:{42}:profile', '{}empty-tag', 'ключ-🔑', `test:${Date.now()}:k`]) {
      assert.equal(keySlot(key), Number(await redisCli('-p', String(cluster.ports[0]), 'CLUSTER', 'KEYSLOT', key)), key);
    }
  });

  it('masterOf(key) is the master that accepts the key; the others redirect it', async () => {
    const owner = await cluster.masterOf('greeting');
    assert.equal(await respCommand(owner.port, ['SET', 'greeting', 'hello']), 'OK');
    for (const other of (await cluster.masters()).filter((m) => m.id !== owner.id)) {
      await assert.rejects(
        respCommand(other.port, ['GET', 'greeting']),
        new RegExp(`MOVED ${keySlot('greeting')} 127\\.0\\.0\\.1:${owner.port}`),
      );
    }
  });

  it('pause(port, ms) keeps a node from answering for that long', async () => {
    const [port] = cluster.ports;
    const paused = cluster.pause(port, 300);
    await assert.rejects(respCommand(port, ['PING'], 100), /no reply within 100 ms/);
    await paused;
    assert.equal(await respCommand(port, ['PING']), 'PONG');
  });

  it('a killed master is replaced by its replica within 10 s, with the writes it acknowledged', async () => {
    const old = await cluster.masterOf('survivor');
    const replicas = (await cluster.topology()).filter((n) => n.masterId === old.id);
    // WAIT: the write reached the replica before the master dies
    assert.deepEqual(
      await respPipeline(old.port, [
        ['SET', 'survivor', 'kept'],
        ['WAIT', 1, 2000],
      ]),
      ['OK', 1],
    );
    const started = Date.now();
    await cluster.kill(old.port);
    const promoted = await timed('replica promotion after a master was killed', () => cluster.waitForPromotion(old.port));
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
    assert.deepEqual(
      replicas.map((r) => r.id),
      [promoted.id],
    );
    assert.equal(await respCommand(promoted.port, ['GET', 'survivor']), 'kept');
    assert.match(await redisCli('-p', String(promoted.port), 'CLUSTER', 'INFO'), /cluster_state:ok/);
  });

  it('a killed master started again rejoins as a replica of the one that replaced it', async () => {
    const killed = (await cluster.topology()).find((n) => n.flags.includes('fail'));
    assert.ok(killed, 'a node is marked failed');
    const replaced = (await cluster.masters()).filter((m) => m.slots.length > 0);
    await timed('a killed node started again, rejoined', () => cluster.start(killed.port));
    const back = (await cluster.topology()).find((n) => n.port === killed.port)!;
    assert.equal(back.role, 'replica');
    assert.ok(
      replaced.some((m) => m.id === back.masterId),
      JSON.stringify(back),
    );
  });

  it('reshard moves 100 slots, with their keys, from one master to another', async () => {
    const [from, to] = await cluster.masters();
    // one key in every slot of `from`, so that whichever slots move, their keys are known
    const keys = keysFor(slotsOf(from));
    const written = await respPipeline(
      from.port,
      [...keys.values()].map((key) => ['SET', key, key]),
      10_000,
    );
    assert.ok(written.every((reply) => reply === 'OK'));
    await timed('reshard of 100 slots', () => cluster.reshard(from, to, 100));
    const after = await cluster.masters();
    const fromAfter = after.find((m) => m.id === from.id)!;
    const toAfter = after.find((m) => m.id === to.id)!;
    assert.equal(slotCount(fromAfter), slotCount(from) - 100);
    assert.equal(slotCount(toAfter), slotCount(to) + 100);
    const moved = slotsOf(toAfter).filter((slot) => keys.has(slot));
    assert.equal(moved.length, 100);
    const read = await respPipeline(
      to.port,
      moved.map((slot) => ['GET', keys.get(slot)!]),
    );
    assert.deepEqual(
      read,
      moved.map((slot) => keys.get(slot)),
    );
    assert.match(await redisCli('--cluster', 'check', `127.0.0.1:${cluster.ports[0]}`), /\[OK\] All 16384 slots covered/);
  });
});

describe('startSentinel', skip, () => {
  let setup: LocalSentinel;

  before(async () => {
    setup = await timed('sentinel start (master, replica, 3 sentinels, ready)', () => startSentinel());
  });

  after(async () => {
    await setup?.stop();
  });

  it('every sentinel names the master, which reports role:master with its replica', async () => {
    const [masterPort, replicaPort] = setup.ports.redis;
    assert.deepEqual(await setup.master(), { host: '127.0.0.1', port: masterPort });
    for (const port of setup.ports.sentinels) {
      const answer = await redisCli('-p', String(port), 'SENTINEL', 'get-master-addr-by-name', setup.masterName);
      assert.deepEqual(answer.trim().split('\n'), ['127.0.0.1', String(masterPort)]);
    }
    const replication = await redisCli('-p', String(masterPort), 'INFO', 'replication');
    assert.match(replication, /role:master/);
    assert.match(replication, new RegExp(`slave0:ip=127\\.0\\.0\\.1,port=${replicaPort},state=online`));
  });

  it('failover() promotes the replica: the sentinels name it and it reports role:master', async () => {
    const [masterPort, replicaPort] = setup.ports.redis;
    const promoted = await timed('sentinel failover', () => setup.failover());
    assert.deepEqual(promoted, { host: '127.0.0.1', port: replicaPort });
    assert.notEqual(promoted.port, masterPort);
    assert.deepEqual(await setup.master(), promoted);
    assert.match(await redisCli('-p', String(replicaPort), 'INFO', 'replication'), /role:master/);
  });
});
