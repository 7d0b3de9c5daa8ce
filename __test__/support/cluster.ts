import { execFile } from 'node:child_process';
import { freePorts, sleep, startRedis, type PrivateRedis } from './local-redis';
import { parseInfo, pollUntil, respCommand } from './resp';

/** Hash slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16384;

/** One node as the cluster sees it (a line of CLUSTER NODES). */
export interface NodeInfo {
  id: string;
  port: number;
  url: string;
  role: 'master' | 'replica';
  /** For a replica: the id of its master. */
  masterId?: string;
  /** Slot ranges it serves, inclusive (`[[0, 5460]]`); empty for a replica. */
  slots: [number, number][];
  /** As CLUSTER NODES shows them: `master`, `slave`, `myself`, `fail?`, `fail`, ... */
  flags: string[];
}

/** A Redis Cluster of local redis-server processes, for the tests. */
export interface LocalCluster {
  /** `redis://127.0.0.1:<port>` of every node, masters and replicas. */
  readonly nodes: string[];
  /** The ports of every node, in the order of `nodes`. */
  readonly ports: number[];
  /** Every node as a node that answers sees the cluster now. */
  topology(): Promise<NodeInfo[]>;
  /** The masters that are not marked as failed. */
  masters(): Promise<NodeInfo[]>;
  /** The master serving the slot of `key` (hash tags count: `{user1}:a` and `{user1}:b` share one). */
  masterOf(key: string): Promise<NodeInfo>;
  /** Kills the node on `port` (SIGKILL, as a crash would). It stays down until `start(port)`. */
  kill(port: number): Promise<void>;
  /** Starts a killed node again with its cluster config: it rejoins (a former master comes back as a replica). Waits until the cluster is settled. */
  start(port: number): Promise<void>;
  /** Stops the node on `port` (SIGSTOP) for `ms`, then lets it go on (SIGCONT); resolves when it goes on. */
  pause(port: number, ms: number): Promise<void>;
  /**
   * After `kill(port)` of a master: waits until one of its replicas serves its slots and every
   * living node reports `cluster_state:ok` again, and returns that new master.
   */
  waitForPromotion(port: number, timeoutMs?: number): Promise<NodeInfo>;
  /**
   * Moves `slots` hash slots (and their keys) from one master to another with
   * `redis-cli --cluster reshard`, then waits until every living node agrees on the slot map.
   */
  reshard(from: NodeInfo | string, to: NodeInfo | string, slots: number): Promise<void>;
  /** Waits until every living node reports `cluster_state:ok`, all slots are covered, and all agree on who serves them. */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops every node and removes their directories. */
  stop(): Promise<void>;
}

export interface ClusterOptions {
  /** Default 3. */
  masters?: number;
  /** Default 1. */
  replicasPerMaster?: number;
  /** `cluster-node-timeout`: how long a node may not answer before it is failing. Default 2000. */
  nodeTimeoutMs?: number;
}

/** The hash slot of `key`: CRC16 (XMODEM) of the key, or of its `{hash tag}`, modulo 16384. */
export function keySlot(key: string): number {
  let bytes = Buffer.from(key);
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of bytes) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % CLUSTER_SLOTS;
}

/** The lines of CLUSTER NODES as NodeInfo (slots being migrated, `[slot->-id]`, are left out). */
export function parseClusterNodes(text: string): NodeInfo[] {
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [id, address, flagText, master, , , , , ...slotFields] = line.trim().split(' ');
      const hostPort = address.split('@')[0];
      const port = Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
      const flags = flagText.split(',');
      const slots = slotFields
        .filter((s) => !s.startsWith('['))
        .map((s): [number, number] => {
          const [start, end] = s.split('-').map(Number);
          return [start, end ?? start];
        });
      const replica = flags.includes('slave');
      return {
        id,
        port,
        url: `redis://127.0.0.1:${port}`,
        role: replica ? 'replica' : 'master',
        ...(replica && master !== '-' ? { masterId: master } : {}),
        slots,
        flags,
      };
    });
}

function run(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const serves = (node: NodeInfo, slot: number) => node.slots.some(([start, end]) => start <= slot && slot <= end);

/**
 * Starts a Redis Cluster on free loopback ports: `masters × (1 + replicasPerMaster)`
 * redis-server processes with `cluster-enabled yes` (no persistence, each in a temporary
 * directory, the cluster bus on a free port of its own), joined by `redis-cli --cluster
 * create`. Resolves once every node reports `cluster_state:ok`, all 16384 slots are
 * covered, every node agrees on who serves them, and every replica is in sync with its master.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  const { masters = 3, replicasPerMaster = 1, nodeTimeoutMs = 2000 } = options;
  const count = masters * (1 + replicasPerMaster);
  const free = await freePorts(count * 2);
  const ports = free.slice(0, count);
  const busPorts = free.slice(count);
  const started = await Promise.allSettled(
    ports.map((port, i) =>
      startRedis({
        port,
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf', // in the node's own directory, kept by kill() for start()
          '--cluster-port',
          String(busPorts[i]),
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          '--repl-diskless-sync-delay',
          '0',
          '--loglevel',
          'warning',
        ],
      }),
    ),
  );
  const servers = new Map<number, PrivateRedis>();
  started.forEach((s, i) => s.status === 'fulfilled' && servers.set(ports[i], s.value));
  const stopAll = () => Promise.all([...servers.values()].map((s) => s.stop()));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await stopAll();
    throw failed.reason;
  }

  const down = new Set<number>(); // killed
  const paused = new Set<number>();
  const lastSeen = new Map<number, NodeInfo>(); // what a node was when it was killed
  const living = () => ports.filter((p) => !down.has(p) && !paused.has(p));
  const server = (port: number) => {
    const s = servers.get(port);
    if (!s) throw new Error(`no node of this cluster on port ${port}`);
    return s;
  };

  const topologyFrom = async (port: number) => parseClusterNodes(String(await respCommand(port, ['CLUSTER', 'NODES'])));
  const topology = async () => {
    let last: unknown;
    for (const port of living()) {
      try {
        return await topologyFrom(port);
      } catch (e) {
        last = e;
      }
    }
    throw new Error(`no node of the cluster answers CLUSTER NODES: ${(last as Error | undefined)?.message}`);
  };

  /** Undefined unless every living node is ok, covers every slot and agrees on the slot map (and, with `inSync`, every replica is in sync). */
  const check = async (inSync: boolean) => {
    const views = await Promise.all(
      living().map(async (port) => ({
        port,
        info: parseInfo(String(await respCommand(port, ['CLUSTER', 'INFO']))),
        nodes: await topologyFrom(port),
      })),
    );
    const slotMap = (nodes: NodeInfo[]) =>
      JSON.stringify(
        nodes
          .filter((n) => n.role === 'master' && n.slots.length > 0)
          .map((n) => `${n.id}:${JSON.stringify(n.slots)}`)
          .sort(),
      );
    const first = slotMap(views[0].nodes);
    for (const { info, nodes } of views) {
      if (info.cluster_state !== 'ok' || Number(info.cluster_slots_ok) !== CLUSTER_SLOTS) return undefined;
      if (Number(info.cluster_known_nodes) !== count || slotMap(nodes) !== first) return undefined;
    }
    if (inSync) {
      const nodes = views[0].nodes;
      const masterIds = nodes.filter((n) => n.role === 'master' && !n.flags.includes('fail')).map((n) => n.id);
      if (masterIds.length !== masters) return undefined;
      const replicas = nodes.filter((n) => n.role === 'replica' && !n.flags.includes('fail'));
      for (const id of masterIds) if (replicas.filter((r) => r.masterId === id).length !== replicasPerMaster) return undefined;
      for (const r of replicas) {
        const replication = parseInfo(String(await respCommand(r.port, ['INFO', 'replication'])));
        if (replication.master_link_status !== 'up') return undefined;
      }
    }
    return true;
  };

  const cluster: LocalCluster = {
    nodes: ports.map((p) => `redis://127.0.0.1:${p}`),
    ports,
    topology,
    async masters() {
      return (await topology()).filter((n) => n.role === 'master' && !n.flags.includes('fail'));
    },
    async masterOf(key) {
      const slot = keySlot(key);
      const owner = (await topology()).find((n) => n.role === 'master' && serves(n, slot));
      if (!owner) throw new Error(`no master serves slot ${slot} (key ${key})`);
      return owner;
    },
    async kill(port) {
      const node = server(port);
      const seen = (await topology().catch(() => [])).find((n) => n.port === port);
      if (seen) lastSeen.set(port, seen);
      down.add(port);
      await node.kill();
    },
    async start(port) {
      await server(port).start();
      down.delete(port);
      await pollUntil(
        async () => {
          const views = await Promise.all(living().map(topologyFrom));
          const roles = views.map((nodes) => nodes.find((n) => n.port === port));
          const agreed = roles.every((n) => n && !n.flags.some((f) => f.startsWith('fail')) && n.role === roles[0]?.role);
          return agreed ? true : undefined;
        },
        `the node on port ${port} to rejoin the cluster`,
        15_000,
      );
      await cluster.settled();
    },
    async pause(port, ms) {
      const node = server(port);
      paused.add(port);
      node.pause();
      try {
        await sleep(ms);
      } finally {
        node.resume();
        paused.delete(port);
      }
    },
    async waitForPromotion(port, timeoutMs = 15_000) {
      const old = lastSeen.get(port) ?? (await topology()).find((n) => n.port === port);
      if (!old || old.role !== 'master' || old.slots.length === 0) {
        throw new Error(`the node on port ${port} was not a master serving slots`);
      }
      const slot = old.slots[0][0];
      const promoted = await pollUntil(
        async () =>
          (await topology()).find(
            (n) => n.id !== old.id && n.role === 'master' && !n.flags.some((f) => f.startsWith('fail')) && serves(n, slot),
          ),
        `a replica of the master on port ${port} to be promoted`,
        timeoutMs,
      );
      await cluster.settled(timeoutMs);
      return promoted;
    },
    async reshard(from, to, slots) {
      const id = (n: NodeInfo | string) => (typeof n === 'string' ? n : n.id);
      const [entry] = living();
      await run(
        'redis-cli',
        [
          '--cluster',
          'reshard',
          `127.0.0.1:${entry}`,
          '--cluster-from',
          id(from),
          '--cluster-to',
          id(to),
          '--cluster-slots',
          String(slots),
          '--cluster-yes',
        ],
        120_000,
      );
      await cluster.settled();
    },
    async settled(timeoutMs = 15_000) {
      await pollUntil(() => check(false), 'the cluster to settle (state ok, every slot covered, one slot map)', timeoutMs);
    },
    async stop() {
      await stopAll();
    },
  };

  try {
    const addresses = ports.map((p) => `127.0.0.1:${p}`);
    await run(
      'redis-cli',
      ['--cluster', 'create', ...addresses, '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'],
      60_000,
    );
    await pollUntil(
      () => check(true),
      `the cluster on ports ${ports.join(', ')} to be ready (state ok, every slot covered, replicas in sync)`,
      30_000,
    );
  } catch (e) {
    await stopAll();
    throw e;
  }
  return cluster;
}
