import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { stopSharedRedis, testRedisUrl } from '../support/redis-server';

/**
 * On a platform without a prebuilt addon, `npm install` compiles it from the tarball's
 * own sources (scripts/install.js). This builds it exactly that way, from the packed
 * tarball with its prebuilt binary removed, then loads it and uses it against Redis.
 */

const root = join(__dirname, '..', '..', '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

after(async () => {
  await stopSharedRedis();
});

describe('the source fallback of the packed tarball', () => {
  const work = mkdtempSync(join(tmpdir(), 'rn-source-build-'));
  after(() => rmSync(work, { recursive: true, force: true }));

  it('builds from the tarball alone, loads, and works against Redis', async () => {
    const packed = JSON.parse(
      execFileSync(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: root }).toString(),
    );
    const pkg = join(work, 'app', 'node_modules', 'nestjs-redis-native');
    mkdirSync(pkg, { recursive: true });
    execFileSync('tar', ['-xzf', join(work, packed[0].filename), '-C', pkg, '--strip-components=1']);
    for (const f of readdirSync(pkg).filter((f) => f.endsWith('.node'))) rmSync(join(pkg, f));

    // what `npm install` runs on a user's machine
    const env = { ...process.env };
    delete env.NESTJS_REDIS_NATIVE_SKIP_BUILD;
    const install = spawnSync(process.execPath, ['scripts/install.js'], { cwd: pkg, env, encoding: 'utf8' });
    assert.equal(install.status, 0, `install.js failed:\n${install.stdout}\n${install.stderr.slice(-4000)}`);
    assert.match(install.stdout, /compiling it with cargo/);
    assert.ok(
      readdirSync(pkg).some((f) => f.endsWith('.node')),
      'the addon was built',
    );
    assert.ok(!readdirSync(pkg).includes('target'), 'the build folder was removed');

    // a user's code, in the app that installed it
    const smoke = join(work, 'app', 'smoke.js');
    writeFileSync(
      smoke,
      `
const { RedisClient, RedisService, LockService, CacheService, PubSubService, isRedisError } = require('nestjs-redis-native');
(async () => {
  const client = await RedisClient.connect({ url: process.env.SMOKE_REDIS_URL, keyPrefix: 'smoke:' + process.pid + ':' });
  const redis = new RedisService(client);
  await redis.set('k', 'v', 10);
  const got = await redis.get('k');
  const locked = await new LockService(client).withLock('res', 1000, async () => 'inside');
  const users = new CacheService(client).namespace('users');
  const loaded = await users.getOrSet('1', async () => ({ id: 1 }), 10);
  const pubsub = new PubSubService(client);
  const message = await new Promise(async (resolve) => {
    const sub = await pubsub.subscribe('smoke-' + process.pid, (m) => resolve(m));
    await pubsub.publish('smoke-' + process.pid, 'hello');
    setTimeout(() => sub.unsubscribe(), 100);
  });
  const bad = await redis.set('', 'v').catch((e) => isRedisError(e) && e.code);
  await redis.deletePattern('*');
  await client.close();
  console.log(JSON.stringify({ got, locked, loaded, message, bad }));
})().catch((e) => { console.error(e); process.exit(1); });
`,
    );
    const run = spawnSync(process.execPath, [smoke], {
      cwd: join(work, 'app'),
      env: { ...process.env, SMOKE_REDIS_URL: await testRedisUrl() },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(run.status, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}'), {
      got: 'v',
      locked: 'inside',
      loaded: { id: 1 },
      message: 'hello',
      bad: 'ERR_INVALID_ARGUMENT',
    });
  });
});
