import { defineConfig } from 'vitest/config';

// Only Keyv's compliance suite runs under vitest (it is written for it); every other test
// runs under node:test.
export default defineConfig({
  test: {
    root: import.meta.dirname,
    include: ['*.spec.mts'],
    fileParallelism: false,
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});
