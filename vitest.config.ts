import { defineConfig } from 'vitest/config';

// Each test file runs in its own process: the embedded ClickHouse (chDB) allows one session
// per process, and files must not share a data dir.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
