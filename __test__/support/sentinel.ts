import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts, startRedis, type PrivateRedis } from './local-redis';
import { pairs, parseInfo, pollUntil, respCommand, type RespReply } from './resp';

/** A master, its replica and three sentinels watching them, as local processes, for the tests. */
export interface LocalSentinel {
  /** `redis://127.0.0.1:<port>` of the three sentinels. */
  readonly sentinels: string[];
  /** The name the sentinels know the master by (`mymaster`). */
  readonly masterName: string;
  /** The ports of the two data servers (the first master and its replica), then of the sentinels. */
  readonly ports: { redis: number[]; sentinels: number[] };
  /** The master's address, as a sentinel answers `SENTINEL get-master-addr-by-name`. */
  master(): Promise<{ host: string; port: number }>;
  /**
   * `SENTINEL FAILOVER`: resolves with the new master once every living sentinel names it
   * and it reports `role:master`. Waits first for a replica the sentinels can promote.
   */
  failover(timeoutMs?: number): Promise<{ host: string; port: number }>;
  /** Kills the data server or the sentinel on `port` (SIGKILL, as a crash would). */
  kill(port: number): Promise<void>;
  /** Stops every process and removes their directories. */
  stop(): Promise<void>;
}

const MASTER_NAME = 'mymaster';
const QUORUM = 2;

/**
 * Starts a master, one replica (`--replicaof`) and three sentinels (`redis-server <conf>
 * --sentinel`, each with a config file of its own in a temporary directory), on free
 * loopback ports. The sentinels monitor the master as `mymaster` (quorum 2,
 * `down-after-milliseconds` 1000, `failover-timeout` 3000). Resolves once every sentinel
 * knows the replica, in sync, and the two other sentinels.
 */
export async function startSentinel(): Promise<LocalSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'rn-sentinel-'));
  const processes = new Map<number, PrivateRedis>();
  const down = new Set<number>();
  const stopAll = async () => {
    await Promise.all([...processes.values()].map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  const track = (p: PrivateRedis) => {
    processes.set(p.port, p);
    return p;
  };

  try {
    const replication = ['--repl-diskless-sync-delay', '0', '--loglevel', 'warning'];
    const master = track(await startRedis({ args: replication }));
    const replica = track(await startRedis({ args: [...replication, '--replicaof', '127.0.0.1', String(master.port)] }));
    // The sentinels learn the replicas from the master's INFO when they connect (later, only
    // every 10 s): start them once the replica is attached and in sync.
    await pollUntil(
      async () => {
        const r = parseInfo(String(await respCommand(replica.port, ['INFO', 'replication'])));
        return r.master_link_status === 'up' ? true : undefined;
      },
      'the replica to sync with the master',
      10_000,
    );

    const sentinelPorts = await freePorts(3);
    const sentinels = await Promise.all(
      sentinelPorts.map(async (port) => {
        const configFile = join(dir, `sentinel-${port}.conf`);
        writeFileSync(
          configFile,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            'sentinel resolve-hostnames no',
            `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} ${QUORUM}`,
            `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
            `sentinel failover-timeout ${MASTER_NAME} 3000`,
            '',
          ].join('\n'),
        );
        return track(await startRedis({ port, configFile, args: ['--sentinel', '--loglevel', 'warning'] }));
      }),
    );

    const living = () => sentinelPorts.filter((p) => !down.has(p));
    const ask = async (port: number, args: (string | number)[]): Promise<RespReply> => respCommand(port, ['SENTINEL', ...args]);
    const addressFrom = async (port: number) => {
      const [host, p] = (await ask(port, ['get-master-addr-by-name', MASTER_NAME])) as [string, string];
      return { host, port: Number(p) };
    };
    /** True when the sentinel on `port` knows the other two sentinels and a replica it could promote. */
    const ready = async (port: number) => {
      const masterState = pairs(await ask(port, ['MASTER', MASTER_NAME]));
      if (Number(masterState['num-other-sentinels']) !== sentinelPorts.length - 1) return false;
      if (/down|disconnected/.test(masterState.flags)) return false;
      const replicas = ((await ask(port, ['REPLICAS', MASTER_NAME])) as RespReply[]).map(pairs);
      return replicas.some((r) => r.flags === 'slave' && r['master-link-status'] === 'ok');
    };
    const allReady = async () => ((await Promise.all(living().map(ready))).every(Boolean) ? true : undefined);
    await pollUntil(allReady, 'the sentinels to know each other and the replica', 15_000);

    const setup: LocalSentinel = {
      sentinels: sentinels.map((s) => `redis://127.0.0.1:${s.port}`),
      masterName: MASTER_NAME,
      ports: { redis: [master.port, replica.port], sentinels: sentinelPorts },
      async master() {
        let last: unknown;
        for (const port of living()) {
          try {
            return await addressFrom(port);
          } catch (e) {
            last = e;
          }
        }
        throw new Error(`no sentinel answers: ${(last as Error | undefined)?.message}`);
      },
      async failover(timeoutMs = 30_000) {
        const deadline = Date.now() + timeoutMs;
        const left = () => Math.max(deadline - Date.now(), 1);
        await pollUntil(allReady, 'a replica the sentinels can promote', left());
        const old = await setup.master();
        const [asked] = living();
        // NOGOODSLAVE / INPROG are answers of the moment: ask again.
        await pollUntil(
          async () => ((await ask(asked, ['FAILOVER', MASTER_NAME])) === 'OK' ? true : undefined),
          'SENTINEL FAILOVER',
          left(),
          200,
        );
        const promoted = await pollUntil(
          async () => {
            const seen = await Promise.all(living().map(addressFrom));
            const moved = seen.every((a) => a.port !== old.port && a.port === seen[0].port);
            return moved ? seen[0] : undefined;
          },
          `every sentinel to name a new master instead of 127.0.0.1:${old.port}`,
          left(),
        );
        await pollUntil(
          async () =>
            parseInfo(String(await respCommand(promoted.port, ['INFO', 'replication']))).role === 'master' ? true : undefined,
          `127.0.0.1:${promoted.port} to report role:master`,
          left(),
        );
        return promoted;
      },
      async kill(port) {
        const p = processes.get(port);
        if (!p) throw new Error(`no process of this set-up on port ${port}`);
        down.add(port);
        await p.kill();
      },
      stop: stopAll,
    };
    return setup;
  } catch (e) {
    await stopAll();
    throw e;
  }
}
