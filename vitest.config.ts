import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

// Each test file runs in its own process: the embedded ClickHouse (chDB) allows one session
// per process, and files must not share a data dir.
export default defineConfig({
  // graphql 16 has no exports map: Node hands yoga and Pothos its CommonJS build while Vite
  // would give src/ the .mjs one, and two graphql copies break `instanceof GraphQLError`.
  resolve: { alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }] },
  test: {
    include: ['test/**/*.test.ts'],
    // The fault-injection suite (several minutes: kill -9, 1000 websockets, outages) runs on
    // its own: `npm run test:faults` (a CLI path filter overrides this exclude).
    exclude: ['**/node_modules/**', ...(process.argv.some((a) => a.includes('test/faults')) ? [] : ['test/faults/**'])],
    globalSetup: ['test/support/pg-template.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
