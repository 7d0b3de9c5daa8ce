import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// redis-server processes owned by tests. Nothing here loads the addon: support code built
// on this alone runs without a build.

/** A redis-server owned by a test: started on a free loopback port, stopped by the test. */
export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGTERM), waits for it to exit and removes its directory. */
  stop(): Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would; its directory stays for `start()`. */
  kill(): Promise<void>;
  /** SIGSTOP: the server keeps its socket but stops answering. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** Starts the server again on the same port (empty: nothing is persisted). */
  start(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** `count` distinct free loopback ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1');
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** PEM files of a TLS-only server: its certificate and key, and the CA that checks client certificates. */
export interface ServerTls {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** Require a client certificate signed by `caFile` (mutual TLS). Default false. */
  requireClientCert?: boolean;
}

/**
 * Starts a private redis-server. `args` are extra redis-server arguments. With `tls`, the
 * server speaks only TLS on `port` (and its `url` is `rediss://localhost:<port>`). With
 * `configFile`, that file is read first (a sentinel needs one it can rewrite).
 */
export async function startRedis(
  options: { args?: string[]; port?: number; tls?: ServerTls; configFile?: string } = {},
): Promise<PrivateRedis> {
  const tls = options.tls;
  const tlsArgs = tls
    ? [
        '--port',
        '0',
        '--tls-port',
        '', // filled below, once the port is known
        '--tls-cert-file',
        tls.certFile,
        '--tls-key-file',
        tls.keyFile,
        '--tls-ca-cert-file',
        tls.caFile,
        '--tls-auth-clients',
        tls.requireClientCert ? 'yes' : 'no',
      ]
    : [];
  const port = options.port ?? (await freePort());
  if (tls) tlsArgs[3] = String(port);
  const dir = mkdtempSync(join(tmpdir(), 'rn-redis-'));
  let child: ChildProcess | undefined;

  const launch = async () => {
    mkdirSync(dir, { recursive: true }); // stop() removed it; start() may follow
    child = spawn(
      'redis-server',
      [
        ...(options.configFile ? [options.configFile] : []),
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--protected-mode',
        'no',
        ...tlsArgs,
        ...(options.args ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const c = child;
    let output = '';
    c.stdout?.on('data', (d) => (output = (output + d).slice(-4000)));
    c.stderr?.on('data', (d) => (output = (output + d).slice(-4000)));
    let startError: Error | undefined;
    c.once('error', (e) => {
      startError = new Error(`cannot start redis-server (is it installed?): ${e.message}`);
    });
    const onEarlyExit = (code: number | null, signal: string | null) => {
      startError ??= new Error(`redis-server exited (${code ?? signal}) before accepting connections:\n${output}`);
    };
    c.once('exit', onEarlyExit);
    try {
      await waitFor(async () => {
        if (startError) throw startError;
        return canConnect(port);
      }, `redis-server on port ${port}`);
    } catch (e) {
      c.kill('SIGKILL');
      child = undefined;
      throw e;
    }
    c.removeListener('exit', onEarlyExit);
    c.stdout?.removeAllListeners('data').resume();
    c.stderr?.removeAllListeners('data').resume();
  };

  const exited = (c: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once('exit', () => resolve());
    });

  await launch();
  const server: PrivateRedis = {
    port,
    url: tls ? `rediss://localhost:${port}` : `redis://127.0.0.1:${port}`,
    async stop() {
      if (child) {
        const c = child;
        child = undefined;
        c.kill('SIGCONT');
        c.kill('SIGTERM');
        await exited(c);
      }
      rmSync(dir, { recursive: true, force: true }); // also after kill(), which keeps it for start()
    },
    async kill() {
      if (!child) return;
      const c = child;
      child = undefined;
      c.kill('SIGKILL');
      await exited(c);
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async start() {
      if (child) return;
      await launch();
    },
  };
  return server;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The workers' results once every call they made has settled; fails (rather than hangs) when one never does. */
export async function settled<T>(workers: Promise<T>[], ms = 15_000): Promise<T[]> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`a call did not settle within ${ms} ms of the load stopping`)), ms);
  });
  try {
    return await Promise.race([Promise.all(workers), late]);
  } finally {
    clearTimeout(timer);
  }
}
