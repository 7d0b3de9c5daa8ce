import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RedisClient, RedisService } from 'nestjs-redis-native';
import { startRedis, type PrivateRedis } from './support/redis-server';

/**
 * A throwaway CA, a server certificate for `localhost` only (no IP address in it, so
 * verifying against 127.0.0.1 fails), and a client certificate, made with openssl.
 */
function makeCertificates(dir: string) {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const file = (name: string) => join(dir, name);
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=test-ca',
  );
  for (const [name, cn, ext] of [
    ['server', 'localhost', 'subjectAltName=DNS:localhost'],
    ['client', 'orders-api', 'extendedKeyUsage=clientAuth'],
  ]) {
    writeFileSync(file(`${name}.ext`), `${ext}\n`);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  return {
    caFile: file('ca.crt'),
    ca: readFileSync(file('ca.crt'), 'utf8'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    clientCert: readFileSync(file('client.crt')),
    clientKey: readFileSync(file('client.key')),
  };
}

let dir: string;
let certs: ReturnType<typeof makeCertificates>;
let server: PrivateRedis;
let mtlsServer: PrivateRedis;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rn-tls-'));
  certs = makeCertificates(dir);
  const tls = { certFile: certs.serverCert, keyFile: certs.serverKey, caFile: certs.caFile };
  server = await startRedis({ tls });
  mtlsServer = await startRedis({ tls: { ...tls, requireClientCert: true } });
});

after(async () => {
  await server?.stop();
  await mtlsServer?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function roundTrip(client: RedisClient): Promise<void> {
  const redis = new RedisService(client);
  await redis.set('tls:k', 'over tls', 5);
  assert.equal(await redis.get('tls:k'), 'over tls');
  await client.close();
}

describe('TLS', () => {
  it('rediss:// with a custom CA verifies the server and works', async () => {
    await roundTrip(await RedisClient.connect({ url: server.url, tls: { ca: certs.ca } }));
  });

  it('tls: { ca } with host and port works like rediss://', async () => {
    await roundTrip(await RedisClient.connect({ host: 'localhost', port: server.port, tls: { ca: Buffer.from(certs.ca) } }));
  });

  it('a server certificate from an unknown CA is refused with ERR_REDIS_CONNECTION', async () => {
    await assert.rejects(RedisClient.connect({ url: server.url, connectTimeoutMs: 2000 }), (e: any) => {
      assert.equal(e.code, 'ERR_REDIS_CONNECTION');
      assert.ok(e.message.includes(`localhost:${server.port}`), e.message);
      return true;
    });
  });

  it('a certificate for another name is refused; servername names the one to verify', async () => {
    const byIp = { host: '127.0.0.1', port: server.port, connectTimeoutMs: 2000 };
    await assert.rejects(RedisClient.connect({ ...byIp, tls: { ca: certs.ca } }), { code: 'ERR_REDIS_CONNECTION' });
    await roundTrip(await RedisClient.connect({ ...byIp, tls: { ca: certs.ca, servername: 'localhost' } }));
  });

  it('rejectUnauthorized: false accepts any certificate', async () => {
    await roundTrip(await RedisClient.connect({ url: server.url, tls: { rejectUnauthorized: false } }));
  });

  it('plain redis:// against a TLS-only server does not connect', async () => {
    await assert.rejects(RedisClient.connect({ url: `redis://127.0.0.1:${server.port}`, connectTimeoutMs: 1000 }), {
      code: 'ERR_REDIS_CONNECTION',
    });
  });

  it('mutual TLS: a client certificate is presented with cert and key', async () => {
    const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    await roundTrip(await RedisClient.connect({ url: mtlsServer.url, tls }));
  });

  it('mutual TLS: without a client certificate the server refuses', async () => {
    await assert.rejects(RedisClient.connect({ url: mtlsServer.url, tls: { ca: certs.ca }, connectTimeoutMs: 2000 }), {
      code: 'ERR_REDIS_CONNECTION',
    });
  });

  it('a certificate without its key is ERR_INVALID_ARGUMENT', async () => {
    await assert.rejects(RedisClient.connect({ url: server.url, tls: { ca: certs.ca, cert: certs.clientCert } }), {
      code: 'ERR_INVALID_ARGUMENT',
    });
  });
});
