// Response cache lifetime: bounded memory with eviction, and entries that survive a restart.
// Separate from cache.test.ts: each test runs its own gateway (chDB allows one per process at a time).
import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

const msg = (content: string) => [{ role: 'user' as const, content }];

describe('bounded memory and restart', () => {
  it('evicts the least recently used answers under a small size limit', async () => {
    const small = await startTestGateway({ env: { TOLLGATE_CACHE_MAX_BYTES: '12000', REDIS_URL: '' } });
    try {
      const secret = (await small.createKey('team-small')).secret;
      await small.started.runtime.adminStore.routing.upsertRoute({
        name: 'exact',
        strategy: 'PRIORITY',
        targets: [{ provider: 'sim', model: 'm' }],
        cache: { mode: 'EXACT' },
      });
      await small.started.runtime.app.catalog.refresh();
      const client = small.client(secret);
      const headerOf = async (i: number) => {
        const { response } = await client.chat.completions.create({ model: 'exact', messages: msg(`eviction ${i}`), temperature: 0 }).withResponse();
        return response.headers.get('x-tollgate-cache');
      };
      for (let i = 0; i < 40; i++) await headerOf(i);
      const stats = small.started.runtime.answers!.stats();
      expect(stats.bytes).toBeLessThanOrEqual(12000);
      expect(stats.evictions).toBeGreaterThan(0);
      expect(await headerOf(39)).toBe('exact');
      expect(await headerOf(0)).toBe('miss');
    } finally {
      await small.close();
    }
  });

  it('keeps exact and semantic entries across a restart', async () => {
    // Without Redis: what survives is this instance's own log in the data directory.
    const first = await startTestGateway({ keepDataDir: true, env: { REDIS_URL: '' } });
    const dataDir = first.dataDir;
    const store = first.started.runtime.adminStore;
    await store.routing.upsertRoute({ name: 'persist', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'm' }], cache: { mode: 'SEMANTIC' } });
    await first.started.runtime.app.catalog.refresh();
    const key = await first.createKey('team-p');
    const call = async (gwx: TestGateway, content: string) => {
      const { response } = await gwx
        .client(key.secret)
        .chat.completions.create({ model: 'persist', messages: msg(content), temperature: 0 })
        .withResponse();
      return response.headers.get('x-tollgate-cache');
    };
    expect(await call(first, 'How do I rotate a PDF?')).toBe('miss');
    await first.close();
    const second = await startTestGateway({ dataDir, env: { REDIS_URL: '', DATABASE_URL: first.config.databaseUrl ?? '' } });
    try {
      expect(await call(second, 'How do I rotate a PDF?')).toBe('exact');
      expect(await call(second, 'how do i rotate a pdf')).toBe('semantic');
    } finally {
      await second.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
