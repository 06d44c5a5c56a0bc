// CatalogSource: reloads only when the store's catalog version moves; survives store failures.
import { describe, expect, it } from 'vitest';
import type { PriceInput, ProviderInput, RouteInput } from '../../src/routing/catalog.js';
import { CatalogSource, type CatalogStore } from '../../src/routing/catalog-source.js';

class FakeStore implements CatalogStore {
  version = 'v1';
  versionCalls = 0;
  loads = 0;
  failVersion: Error | null = null;
  failLoad: Error | null = null;
  routeName = 'chat-default';
  gate: Promise<void> | null = null;

  async catalogVersion(): Promise<string> {
    this.versionCalls++;
    if (this.gate) await this.gate;
    if (this.failVersion) throw this.failVersion;
    return this.version;
  }
  async loadProvidersWithSecrets(): Promise<ProviderInput[]> {
    this.loads++;
    return [{ name: 'p', kind: 'OPENAI', baseUrl: null, apiKey: null, timeoutMs: null, extraHeaders: {}, modelMap: {} }];
  }
  async listRoutes(): Promise<RouteInput[]> {
    if (this.failLoad) throw this.failLoad;
    return [
      {
        name: this.routeName,
        strategy: 'PRIORITY',
        retries: 1,
        timeoutMs: null,
        cache: { mode: 'OFF', ttlSeconds: null, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false },
        targets: [{ provider: 'p', model: 'm', weight: 1, priority: 0 }],
        rules: [],
        accept: [],
      },
    ];
  }
  async currentPrices(): Promise<PriceInput[]> {
    return [];
  }
  async listBudgets() {
    return [];
  }
  async loadCatalog() {
    const [providers, routes, prices, budgets] = await Promise.all([
      this.loadProvidersWithSecrets(),
      this.listRoutes(),
      this.currentPrices(),
      this.listBudgets(),
    ]);
    return { providers, routes, prices, budgets };
  }
}

describe('CatalogSource', () => {
  it('starts with an empty catalog and load() builds one from the store', async () => {
    const store = new FakeStore();
    const src = new CatalogSource(store);
    expect(src.catalog.routes.size).toBe(0);
    const c = await src.load();
    expect(src.catalog).toBe(c);
    expect(c.version).toBe('v1');
    expect(c.resolve('chat-default')).not.toBeNull();
  });

  it('refresh() does not rebuild while the version is unchanged', async () => {
    const store = new FakeStore();
    const src = new CatalogSource(store);
    const first = await src.load();
    store.routeName = 'renamed'; // data changed but version not bumped: not picked up
    await src.refresh();
    await src.refresh();
    expect(store.loads).toBe(1);
    expect(store.versionCalls).toBe(3);
    expect(src.catalog).toBe(first);
    expect(src.catalog.resolve('renamed')).toBeNull();
  });

  it('refresh() rebuilds when the version changes', async () => {
    const store = new FakeStore();
    const src = new CatalogSource(store);
    const first = await src.load();
    store.version = 'v2';
    store.routeName = 'renamed';
    await src.refresh();
    expect(store.loads).toBe(2);
    expect(src.catalog).not.toBe(first);
    expect(src.catalog.version).toBe('v2');
    expect(src.catalog.resolve('renamed')).not.toBeNull();
    expect(src.catalog.resolve('chat-default')).toBeNull();
  });

  it('keeps the last catalog when the version query fails, and reports the error', async () => {
    const store = new FakeStore();
    const errors: unknown[] = [];
    const src = new CatalogSource(store, (e) => errors.push(e));
    const first = await src.load();
    store.failVersion = new Error('postgres blinked');
    await expect(src.refresh()).resolves.toBeUndefined();
    expect(src.catalog).toBe(first);
    expect(errors).toEqual([store.failVersion]);
    // And recovers once the store is back.
    store.failVersion = null;
    store.version = 'v2';
    await src.refresh();
    expect(src.catalog.version).toBe('v2');
  });

  it('keeps the last catalog when loading the new one fails midway', async () => {
    const store = new FakeStore();
    const errors: unknown[] = [];
    const src = new CatalogSource(store, (e) => errors.push(e));
    const first = await src.load();
    store.version = 'v2';
    store.failLoad = new Error('query failed');
    await src.refresh();
    expect(src.catalog).toBe(first);
    expect(src.catalog.version).toBe('v1');
    expect(errors).toHaveLength(1);
    // The version was not adopted, so the next refresh retries.
    store.failLoad = null;
    await src.refresh();
    expect(src.catalog.version).toBe('v2');
  });

  it('callers arriving during a refresh share one follow-up check, which sees a write made meanwhile', async () => {
    const store = new FakeStore();
    const src = new CatalogSource(store);
    await src.load();
    store.versionCalls = 0;
    let open!: () => void;
    store.gate = new Promise<void>((r) => (open = r));
    const a = src.refresh(); // reads 'v1' once the gate opens: nothing to reload
    expect(store.versionCalls).toBe(1);
    // A write lands after that refresh began; its writers ask for a refresh.
    store.version = 'v2';
    store.routeName = 'renamed';
    const b = src.refresh();
    const c = src.refresh();
    expect(c).toBe(b);
    expect(b).not.toBe(a);
    open();
    await Promise.all([a, b, c]);
    expect(store.versionCalls).toBe(2); // the first check and one shared follow-up
    expect(store.loads).toBe(2); // one reload
    expect(src.catalog.resolve('renamed')).not.toBeNull();
    // After it settles, a new refresh makes a new query.
    store.gate = null;
    await src.refresh();
    expect(store.versionCalls).toBe(3);
    expect(store.loads).toBe(2);
  });

  it('polling refreshes on its interval and stops', async () => {
    const store = new FakeStore();
    const src = new CatalogSource(store);
    await src.load();
    store.version = 'v2';
    src.startPolling(10);
    const deadline = Date.now() + 2_000;
    while (src.catalog.version !== 'v2' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    src.stopPolling();
    expect(src.catalog.version).toBe('v2');
    const calls = store.versionCalls;
    await new Promise((r) => setTimeout(r, 40));
    expect(store.versionCalls).toBe(calls);
  });
});
