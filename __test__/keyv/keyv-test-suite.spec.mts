// Keyv's own compliance suite, @keyv/test-suite, unmodified: against Keyv's reference Map
// store (the baseline) and against KeyvRedisStore. Run by `npm run test:keyv`
// (scripts/keyv-suite.js), which fails when KeyvRedisStore fails a test the Map store passes.
import * as test from 'vitest';
import Keyv from 'keyv';
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite';
import { RedisClient } from 'nestjs-redis-native';
import { KeyvRedisStore } from 'nestjs-redis-native/adapters';
import { startRedis, type PrivateRedis } from '../support/local-redis';

test.describe('Map store (baseline)', () => {
  const store = () => new Map();
  keyvTestSuite(test, Keyv, store);
  keyvIteratorTests(test, Keyv, store);
});

test.describe('KeyvRedisStore', () => {
  let server: PrivateRedis;
  let client: RedisClient;
  test.beforeAll(async () => {
    server = await startRedis();
    client = await RedisClient.connect({ url: server.url, keyPrefix: 'keyv-suite:' });
  });
  test.afterAll(async () => {
    await client?.close();
    await server?.stop();
  });
  const store = () => new KeyvRedisStore(client);
  keyvTestSuite(test, Keyv, store);
  keyvIteratorTests(test, Keyv, store);
});
