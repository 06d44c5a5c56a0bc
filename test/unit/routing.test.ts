// Catalog resolution, target ordering strategies and the per-target circuit breaker.
import { describe, expect, it } from 'vitest';
import { Catalog, isRouteAllowed, type PriceInput, type ProviderInput, type Route, type RouteInput } from '../../src/routing/catalog.js';
import { STALE_AFTER_MS, TargetHealth } from '../../src/routing/health.js';
import { compileCondition } from '../../src/routing/rules.js';
import { orderTargets, REMEASURE_SHARE } from '../../src/routing/strategy.js';
import { type RouteSpec, validateRouting } from '../../src/routing/validate.js';

const provider = (over: Partial<ProviderInput> & Pick<ProviderInput, 'name' | 'kind'>): ProviderInput => ({
  baseUrl: null,
  apiKey: null,
  timeoutMs: null,
  extraHeaders: {},
  modelMap: {},
  ...over,
});

const route = (name: string, targets: RouteInput['targets'], strategy: RouteInput['strategy'] = 'PRIORITY'): RouteInput => ({
  name,
  strategy,
  retries: 2,
  timeoutMs: null,
  cache: { mode: 'OFF', ttlSeconds: null, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false },
  targets,
  rules: [],
  accept: [],
});

const price = (p: string, model: string, input: number, output: number): PriceInput => ({
  version: 1,
  provider: p,
  model,
  inputPerMTokUsd: input,
  outputPerMTokUsd: output,
  cachedInputPerMTokUsd: null,
});

function catalog() {
  return new Catalog(
    [
      provider({ name: 'openrouter', kind: 'OPENROUTER', apiKey: 'sk-or-secret' }),
      provider({ name: 'ark', kind: 'ARK', apiKey: 'ark-secret', modelMap: { doubao: 'ep-20250101-abc' } }),
      provider({ name: 'local', kind: 'OPENAI_COMPATIBLE', baseUrl: 'http://127.0.0.1:9999/v1/', extraHeaders: { 'x-extra': '1' } }),
      provider({ name: 'nourl', kind: 'OPENAI_COMPATIBLE' }), // no base URL: cannot be called
    ],
    [
      route('chat-default', [
        { provider: 'openrouter', model: 'openai/gpt-4o-mini', weight: 1, priority: 1 },
        { provider: 'ark', model: 'doubao', weight: 1, priority: 2 },
        { provider: 'ghost', model: 'x', weight: 1, priority: 0 }, // unknown provider: dropped
        { provider: 'nourl', model: 'y', weight: 1, priority: 0 }, // unusable provider: dropped
      ]),
    ],
    [price('openrouter', 'openai/gpt-4o-mini', 0.15, 0.6), price('ark', 'doubao', 0.1, 0.2)],
    'v1',
    { defaultRetries: 3 },
  );
}

describe('Catalog', () => {
  it('resolves a route name to its route, dropping targets whose provider is unknown or unusable', () => {
    const r = catalog().resolve('chat-default')!;
    expect(r.pinned).toBe(false);
    expect(r.strategy).toBe('PRIORITY');
    expect(r.targets.map((t) => t.key)).toEqual(['openrouter/openai/gpt-4o-mini', 'ark/doubao']);
  });

  it('resolves provider/model pins, splitting at the first slash only', () => {
    const c = catalog();
    const r = c.resolve('openrouter/openai/gpt-4o-mini')!;
    expect(r.pinned).toBe(true);
    expect(r.strategy).toBe('PINNED');
    expect(r.name).toBe('openrouter/openai/gpt-4o-mini');
    expect(r.retries).toBe(3); // the catalog default
    expect(r.targets).toHaveLength(1);
    expect(r.targets[0]).toMatchObject({ key: 'openrouter/openai/gpt-4o-mini', model: 'openai/gpt-4o-mini', upstreamModel: 'openai/gpt-4o-mini' });
    expect(r.targets[0]!.provider.name).toBe('openrouter');
    expect(r.targets[0]!.price).toMatchObject({ inputPerMTokUsd: 0.15 });
    expect(c.resolve('ark/ep-20250615-xyz')!.targets[0]!.model).toBe('ep-20250615-xyz');
    // The same pin resolves to the same (cached) route.
    expect(c.resolve('openrouter/openai/gpt-4o-mini')).toBe(r);
  });

  it('returns null for unknown routes, unknown providers and malformed pins', () => {
    const c = catalog();
    for (const m of ['nope', 'ghost/model', 'nourl/model', 'openrouter/', 'ark/', '/doubao', '', 'chat-default/x', 'OPENROUTER/x']) {
      expect(c.resolve(m), m).toBeNull();
    }
  });

  it('applies the provider modelMap to the upstream model, for routes and pins', () => {
    const c = catalog();
    const viaRoute = c.resolve('chat-default')!.targets.find((t) => t.provider.name === 'ark')!;
    expect(viaRoute.model).toBe('doubao');
    expect(viaRoute.upstreamModel).toBe('ep-20250101-abc');
    expect(c.resolve('ark/doubao')!.targets[0]!.upstreamModel).toBe('ep-20250101-abc');
    expect(c.resolve('ark/other')!.targets[0]!.upstreamModel).toBe('other');
    // Only the map's own entries: not what every object inherits.
    for (const model of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) expect(c.resolve(`ark/${model}`)!.targets[0]!.upstreamModel).toBe(model);
  });

  it('lower-cases extra header names, so that one replaces the preset or key header instead of going out beside it', () => {
    const c = new Catalog(
      [provider({ name: 'or', kind: 'OPENROUTER', apiKey: 'sk-or', extraHeaders: { 'X-Title': 'Mine', 'HTTP-Referer': 'https://me.test' } })],
      [],
      [],
      'v1',
    );
    const headers = c.providers.get('or')!.headers;
    expect(headers['x-title']).toBe('Mine');
    expect(headers['http-referer']).toBe('https://me.test');
    expect(Object.keys(headers).filter((k) => k.toLowerCase() === 'x-title')).toEqual(['x-title']);
    expect(Object.keys(headers).every((k) => k === k.toLowerCase())).toBe(true);
  });

  it('builds origin, basePath and auth headers from presets and overrides', () => {
    const c = catalog();
    const or = c.providers.get('openrouter')!;
    expect(or.origin).toBe('https://openrouter.ai');
    expect(or.basePath).toBe('/api/v1');
    expect(or.headers.authorization).toBe('Bearer sk-or-secret');
    expect(or.headers['x-title']).toBe('Tollgate');
    const local = c.providers.get('local')!;
    expect(local.origin).toBe('http://127.0.0.1:9999');
    expect(local.basePath).toBe('/v1'); // trailing slash trimmed
    expect(local.headers).toEqual({ 'x-extra': '1' }); // no key: no authorization header
    expect(c.providers.has('nourl')).toBe(false);
  });

  it('clamps negative weights to 0 and looks up prices', () => {
    const c = new Catalog([provider({ name: 'p', kind: 'OPENAI' })], [route('r', [{ provider: 'p', model: 'm', weight: -3, priority: 0 }])], [], 'v');
    expect(c.resolve('r')!.targets[0]!.weight).toBe(0);
    expect(c.resolve('r')!.targets[0]!.price).toBeNull();
    expect(catalog().price('ark', 'doubao')).toMatchObject({ outputPerMTokUsd: 0.2 });
    expect(catalog().price('ark', 'nope')).toBeNull();
  });

  it("keeps a base URL's query and its credentials (Basic); a stray % in them does not break the catalog", () => {
    const c = new Catalog(
      [
        provider({ name: 'azure', kind: 'OPENAI_COMPATIBLE', baseUrl: 'https://a.example.com/openai/deployments/d?api-version=2024-10-21' }),
        provider({ name: 'basic', kind: 'OPENAI_COMPATIBLE', baseUrl: 'https://u%40x:p%zz@b.example.com/v1' }),
      ],
      [],
      [],
      'v',
    );
    expect(c.resolve('azure/m')!.targets[0]!.provider).toMatchObject({ basePath: '/openai/deployments/d', query: '?api-version=2024-10-21' });
    expect(c.resolve('basic/m')!.targets[0]!.provider.headers.authorization).toBe(`Basic ${Buffer.from('u@x:p%zz').toString('base64')}`);
  });

  it('knownPins lists route targets and priced models of known providers', () => {
    const c = new Catalog(
      [provider({ name: 'p', kind: 'OPENAI' })],
      [route('r', [{ provider: 'p', model: 'a', weight: 1, priority: 0 }])],
      [price('p', 'b', 1, 1), price('gone', 'c', 1, 1)],
      'v',
    );
    expect(c.knownPins()).toEqual(['p/a', 'p/b']);
  });
});

describe('isRouteAllowed', () => {
  const c = catalog();
  const named = c.resolve('chat-default')!;
  const pin = c.resolve('openrouter/openai/gpt-4o-mini')!;
  const arkPin = c.resolve('ark/doubao')!;

  it('an empty list allows everything', () => {
    expect(isRouteAllowed([], named)).toBe(true);
    expect(isRouteAllowed([], pin)).toBe(true);
  });

  it('route names allow exactly that route', () => {
    expect(isRouteAllowed(['chat-default'], named)).toBe(true);
    expect(isRouteAllowed(['chat-default'], pin)).toBe(false);
    expect(isRouteAllowed(['other'], named)).toBe(false);
  });

  it('provider/* allows every pin on that provider and nothing else', () => {
    expect(isRouteAllowed(['openrouter/*'], pin)).toBe(true);
    expect(isRouteAllowed(['openrouter/*'], arkPin)).toBe(false);
    expect(isRouteAllowed(['openrouter/*'], named)).toBe(false);
    expect(isRouteAllowed(['openrouter/openai/*'], pin)).toBe(false);
  });

  it('an exact pin allows that pin only', () => {
    expect(isRouteAllowed(['openrouter/openai/gpt-4o-mini'], pin)).toBe(true);
    expect(isRouteAllowed(['openrouter/openai/gpt-4o-mini'], c.resolve('openrouter/openai/gpt-4o')!)).toBe(false);
  });
});

/** Deterministic PRNG (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function strategyRoute(
  strategy: RouteInput['strategy'],
  targets: Array<{ model: string; weight?: number; priority?: number }>,
  prices: PriceInput[] = [],
): Route {
  const c = new Catalog(
    [provider({ name: 'p', kind: 'OPENAI' })],
    [
      route(
        'r',
        targets.map((t) => ({ provider: 'p', model: t.model, weight: t.weight ?? 1, priority: t.priority ?? 0 })),
        strategy,
      ),
    ],
    prices,
    'v',
  );
  return c.resolve('r')!;
}

const models = (ts: Array<{ model: string }>) => ts.map((t) => t.model);

describe('orderTargets', () => {
  const health = () => new TargetHealth({ failures: 3, cooldownMs: 1_000 }, () => 0);

  it('PRIORITY orders by ascending priority, stable for ties', () => {
    const r = strategyRoute('PRIORITY', [
      { model: 'c', priority: 5 },
      { model: 'a', priority: 1 },
      { model: 'b1', priority: 3 },
      { model: 'b2', priority: 3 },
    ]);
    expect(models(orderTargets(r, health()))).toEqual(['a', 'b1', 'b2', 'c']);
  });

  it('returns a copy, never the route’s own array', () => {
    const r = strategyRoute('PRIORITY', [{ model: 'only' }]);
    const out = orderTargets(r, health());
    expect(out).not.toBe(r.targets);
    out.pop();
    expect(r.targets).toHaveLength(1);
  });

  it('WEIGHTED picks first roughly in proportion to weight over 10k draws; zero weight is never first', () => {
    const r = strategyRoute('WEIGHTED', [
      { model: 'w1', weight: 1 },
      { model: 'w0', weight: 0 },
      { model: 'w2', weight: 2 },
      { model: 'w7', weight: 7 },
    ]);
    const random = seeded(42);
    const first: Record<string, number> = { w0: 0, w1: 0, w2: 0, w7: 0 };
    for (let i = 0; i < 10_000; i++) {
      const order = orderTargets(r, health(), { random });
      if (order.length !== 4) throw new Error('a target went missing');
      first[order[0]!.model]!++;
      if (order[3]!.model !== 'w0') throw new Error('zero-weight target must come last');
    }
    expect(first.w0).toBe(0);
    expect(first.w1 / 10_000).toBeCloseTo(0.1, 1);
    expect(first.w2 / 10_000).toBeCloseTo(0.2, 1);
    expect(first.w7 / 10_000).toBeCloseTo(0.7, 1);
    expect(Math.abs(first.w7 / 10_000 - 0.7)).toBeLessThan(0.03);
    expect(Math.abs(first.w1 / 10_000 - 0.1)).toBeLessThan(0.02);
  });

  it('WEIGHTED with equal weights is roughly uniform and uses the injected random', () => {
    const r = strategyRoute('WEIGHTED', [{ model: 'a' }, { model: 'b' }]);
    const a = models(orderTargets(r, health(), { random: seeded(7) }));
    const b = models(orderTargets(r, health(), { random: seeded(7) }));
    expect(a).toEqual(b);
    const random = seeded(1);
    let aFirst = 0;
    for (let i = 0; i < 10_000; i++) if (orderTargets(r, health(), { random })[0]!.model === 'a') aFirst++;
    expect(aFirst).toBeGreaterThan(4_700);
    expect(aFirst).toBeLessThan(5_300);
  });

  it('LEAST_LATENCY prefers lower EWMA and puts unmeasured targets first', () => {
    const h = health();
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'slow', priority: 0 },
      { model: 'fast', priority: 1 },
      { model: 'new', priority: 2 },
    ]);
    h.onSuccess('p/slow', 900);
    h.onSuccess('p/fast', 100);
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['new', 'fast', 'slow']);
    // Make 'fast' slow: EWMA 100 → many 2000 ms samples.
    for (let i = 0; i < 10; i++) h.onSuccess('p/fast', 2_000);
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['new', 'slow', 'fast']);
  });

  it('LEAST_LATENCY ranks a target that fails fast after a slower one that answers', () => {
    const h = health();
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'flaky', priority: 0 },
      { model: 'steady', priority: 1 },
    ]);
    h.onSuccess('p/flaky', 100);
    h.onSuccess('p/steady', 150);
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['flaky', 'steady']);
    // Two failures within a millisecond: the old penalty (max(latency, ewma) × 2) left it first.
    h.onFailure('p/flaky');
    h.onFailure('p/flaky');
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['steady', 'flaky']);
  });

  it('LEAST_LATENCY weighs what failures cost: a fast target whose failures are timeouts ranks after a steady slower one', () => {
    const h = health();
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'fast-flaky', priority: 0 },
      { model: 'steady', priority: 1 },
    ]);
    for (let i = 0; i < 5; i++) h.onSuccess('p/fast-flaky', 100);
    h.onSuccess('p/steady', 1_000);
    h.onFailure('p/fast-flaky', { latencyMs: 30_000 }); // one timeout: p = 0.3, not "failing"
    expect(h.isFailing('p/fast-flaky')).toBe(false);
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['steady', 'fast-flaky']);
    // A failure that costs little (3 ms) leaves a much faster target first.
    const quick = health();
    for (let i = 0; i < 5; i++) quick.onSuccess('p/fast-flaky', 100);
    quick.onSuccess('p/steady', 1_000);
    quick.onFailure('p/fast-flaky', { latencyMs: 3 });
    expect(models(orderTargets(r, quick, { random: () => 1 }))).toEqual(['fast-flaky', 'steady']);
  });

  it('LEAST_LATENCY puts a target that has only failed last, and one never seen first', () => {
    const h = health();
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'broken', priority: 0 },
      { model: 'known', priority: 1 },
      { model: 'new', priority: 2 },
    ]);
    h.onSuccess('p/known', 500);
    for (let i = 0; i < 2; i++) h.onFailure('p/broken');
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['new', 'known', 'broken']);
  });

  it('LEAST_LATENCY ranks a stream by first-token time, a JSON request by whole time', () => {
    const h = health();
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'quick-start', priority: 0 },
      { model: 'quick-end', priority: 1 },
    ]);
    h.onSuccess('p/quick-start', 900);
    h.onSuccess('p/quick-start', 50, { stream: true });
    h.onSuccess('p/quick-end', 400);
    h.onSuccess('p/quick-end', 300, { stream: true });
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['quick-end', 'quick-start']);
    expect(models(orderTargets(r, h, { random: () => 1, stream: true }))).toEqual(['quick-start', 'quick-end']);
  });

  it('LEAST_LATENCY sends one of a share of requests to re-measure a stale target', () => {
    const c = { t: 0 };
    const h = new TargetHealth({ failures: 3, cooldownMs: 1_000 }, () => c.t);
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'fast', priority: 0 },
      { model: 'slow', priority: 1 },
    ]);
    h.onSuccess('p/fast', 100);
    h.onSuccess('p/slow', 2_000);
    c.t += STALE_AFTER_MS;
    h.onSuccess('p/fast', 100); // the best target stays in use: never stale
    const drawn = () => REMEASURE_SHARE / 2;
    expect(models(orderTargets(r, h, { random: () => REMEASURE_SHARE }))).toEqual(['fast', 'slow']);
    expect(models(orderTargets(r, h, { random: drawn }))).toEqual(['slow', 'fast']);
    // Claimed: the requests that follow while it is re-measured keep the order.
    expect(models(orderTargets(r, h, { random: drawn }))).toEqual(['fast', 'slow']);
    // It recovered: its answer after the quiet spell (95 % of the weight after 30 s) puts it first.
    h.onSuccess('p/slow', 60);
    expect(h.ewma('p/slow')).toBeLessThan(160);
    h.onSuccess('p/fast', 500); // meanwhile 'fast' slowed: 100 → 220
    expect(models(orderTargets(r, h, { random: () => 1 }))).toEqual(['slow', 'fast']);
  });

  it('LEAST_LATENCY ties break by priority', () => {
    const r = strategyRoute('LEAST_LATENCY', [
      { model: 'b', priority: 2 },
      { model: 'a', priority: 1 },
    ]);
    expect(models(orderTargets(r, health()))).toEqual(['a', 'b']);
  });

  it('LOWEST_COST orders by blended price and puts unpriced targets last (by priority)', () => {
    const r = strategyRoute(
      'LOWEST_COST',
      [
        { model: 'unpriced-b', priority: 2 },
        { model: 'pricey', priority: 0 },
        { model: 'unpriced-a', priority: 1 },
        { model: 'cheap', priority: 9 },
        { model: 'free', priority: 9 },
      ],
      [price('p', 'pricey', 5, 15), price('p', 'cheap', 0.5, 1.5), price('p', 'free', 0, 0)],
    );
    expect(models(orderTargets(r, health()))).toEqual(['free', 'cheap', 'pricey', 'unpriced-a', 'unpriced-b']);
  });

  it('LOWEST_COST weighs input 3:1 over output', () => {
    // a: (3*1 + 10)/4 = 3.25 ; b: (3*3 + 1)/4 = 2.5  → b first although its input is dearer.
    const r = strategyRoute('LOWEST_COST', [{ model: 'a' }, { model: 'b' }], [price('p', 'a', 1, 10), price('p', 'b', 3, 1)]);
    expect(models(orderTargets(r, health()))).toEqual(['b', 'a']);
  });
});

describe('TargetHealth', () => {
  const K = 'p/m';
  function setup() {
    const c = { t: 1_000 };
    const h = new TargetHealth({ failures: 3, cooldownMs: 10_000 }, () => c.t);
    return { c, h };
  }

  it('starts closed and admits without a probe', () => {
    const { h } = setup();
    expect(h.state(K)).toBe('closed');
    expect(h.admit(K)).toEqual({ ok: true, probe: false });
    expect(h.ewma(K)).toBeUndefined();
  });

  it('opens after N consecutive failures and rejects while open', () => {
    const { h, c } = setup();
    h.onFailure(K);
    h.onFailure(K);
    expect(h.state(K)).toBe('closed');
    expect(h.admit(K).ok).toBe(true);
    h.onFailure(K);
    expect(h.state(K)).toBe('open');
    expect(h.admit(K)).toEqual({ ok: false, reason: 'circuit_open', untilMs: c.t + 10_000 });
    c.t += 9_999;
    expect(h.admit(K)).toMatchObject({ ok: false, reason: 'circuit_open' });
  });

  it('a success resets the consecutive-failure count', () => {
    const { h } = setup();
    h.onFailure(K);
    h.onFailure(K);
    h.onSuccess(K, 10);
    h.onFailure(K);
    h.onFailure(K);
    expect(h.state(K)).toBe('closed');
  });

  function openIt(h: TargetHealth) {
    for (let i = 0; i < 3; i++) h.onFailure(K);
  }

  it('half-open after the cooldown admits exactly one probe', () => {
    const { h, c } = setup();
    openIt(h);
    c.t += 10_000;
    expect(h.state(K)).toBe('half_open');
    expect(h.admit(K)).toEqual({ ok: true, probe: true });
    expect(h.admit(K)).toMatchObject({ ok: false, reason: 'probe_in_flight' });
    expect(h.admit(K)).toMatchObject({ ok: false, reason: 'probe_in_flight' });
  });

  it('probe success closes the breaker', () => {
    const { h, c } = setup();
    openIt(h);
    c.t += 10_000;
    const probe = h.admit(K);
    h.onSuccess(K, 50, probe as { probe: boolean });
    expect(h.state(K)).toBe('closed');
    expect(h.admit(K)).toEqual({ ok: true, probe: false });
    expect(h.admit(K)).toEqual({ ok: true, probe: false });
    // And it takes N fresh failures to open again.
    h.onFailure(K);
    expect(h.state(K)).toBe('closed');
  });

  it('probe failure reopens at once for another full cooldown', () => {
    const { h, c } = setup();
    openIt(h);
    c.t += 10_000;
    expect(h.admit(K)).toEqual({ ok: true, probe: true });
    h.onFailure(K, { probe: true });
    expect(h.state(K)).toBe('open');
    expect(h.admit(K)).toEqual({ ok: false, reason: 'circuit_open', untilMs: c.t + 10_000 });
    c.t += 10_000;
    expect(h.admit(K)).toEqual({ ok: true, probe: true });
  });

  it('only the probe decides a breaker that is not closed: calls admitted before it opened do not', () => {
    const { h, c } = setup();
    openIt(h);
    // Still open: a stale success (a long stream admitted earlier) does not close it.
    h.onSuccess(K, 40);
    expect(h.state(K)).toBe('open');
    c.t += 10_000;
    expect(h.admit(K)).toEqual({ ok: true, probe: true });
    // Half-open with the probe out: stale outcomes neither free its slot nor decide.
    h.release(K);
    h.onFailure(K, { retryAfterMs: 1 });
    h.onFailure(K);
    h.onSuccess(K, 40);
    c.t += 5; // past the 429's cooldown
    expect(h.state(K)).toBe('half_open');
    expect(h.admit(K)).toMatchObject({ ok: false, reason: 'probe_in_flight' });
    // The probe's own outcome does.
    h.onSuccess(K, 40, { probe: true });
    expect(h.state(K)).toBe('closed');
    expect(h.admit(K)).toEqual({ ok: true, probe: false });
  });

  it('release frees the probe slot', () => {
    const { h, c } = setup();
    openIt(h);
    c.t += 10_000;
    expect(h.admit(K)).toEqual({ ok: true, probe: true });
    h.release(K, { probe: true });
    expect(h.state(K)).toBe('half_open');
    expect(h.admit(K)).toEqual({ ok: true, probe: true });
    h.release('unknown/target'); // no-op, no throw
  });

  it('a 429 retryAfter cools the target down without opening the breaker', () => {
    const { h, c } = setup();
    for (let i = 0; i < 10; i++) h.onFailure(K, { retryAfterMs: 2_000 });
    expect(h.state(K)).toBe('closed');
    expect(h.admit(K)).toEqual({ ok: false, reason: 'cooling_down', untilMs: c.t + 2_000 });
    c.t += 2_000;
    expect(h.admit(K)).toEqual({ ok: true, probe: false });
    // The 429s did not count towards the breaker: 2 real failures leave it closed.
    h.onFailure(K);
    h.onFailure(K);
    expect(h.state(K)).toBe('closed');
  });

  it('a shorter retryAfter never shortens an existing cooldown', () => {
    const { h, c } = setup();
    h.onFailure(K, { retryAfterMs: 5_000 });
    h.onFailure(K, { retryAfterMs: 100 });
    expect(h.admit(K)).toMatchObject({ ok: false, reason: 'cooling_down', untilMs: c.t + 5_000 });
  });

  it('keys are independent', () => {
    const { h } = setup();
    openIt(h);
    expect(h.state('p/other')).toBe('closed');
    expect(h.admit('p/other').ok).toBe(true);
  });

  it('tracks an EWMA of latency per mode: JSON answers whole, streams to their first token', () => {
    const { h } = setup();
    h.onSuccess(K, 100);
    expect(h.ewma(K)).toBe(100);
    h.onSuccess(K, 200);
    expect(h.ewma(K)).toBeCloseTo(130, 6);
    h.onSuccess(K, 40, { stream: true });
    expect(h.ewma(K, true)).toBe(40);
    expect(h.ewma(K)).toBeCloseTo(130, 6);
  });

  it('a failure raises the failure rate and what failures cost, never the latency; a 429 is neither', () => {
    const { h } = setup();
    h.onSuccess(K, 100);
    expect(h.latencyScore(K)).toBe(100);
    h.onFailure(K, { retryAfterMs: 1_000 });
    expect(h.latencyScore(K)).toBe(100);
    h.onFailure(K, { latencyMs: 50 });
    expect(h.ewma(K)).toBe(100);
    // p = 0.3: 0.3/0.7 failures an answer, 50 ms each.
    expect(h.latencyScore(K)).toBeCloseTo(100 + (0.3 / 0.7) * 50, 6);
    expect(h.isFailing(K)).toBe(false);
    h.onFailure(K, { latencyMs: 50 });
    expect(h.isFailing(K)).toBe(true); // two in a row: p = 0.51
    h.onSuccess(K, 100);
    expect(h.isFailing(K)).toBe(false);
  });

  it('a sample after a quiet spell mostly replaces the old estimate', () => {
    const { h, c } = setup();
    h.onSuccess(K, 2_000);
    h.onSuccess(K, 2_000);
    c.t += 5 * 60_000;
    h.onSuccess(K, 100);
    // 1 − e^(−30) of the way: the target is judged by how it answers now.
    expect(h.ewma(K)).toBeLessThan(101);
    h.onSuccess(K, 1_000);
    expect(h.ewma(K)).toBeCloseTo(100 + 0.3 * 900, 0);
  });

  it('claims a stale target’s re-measurement once per quiet spell', () => {
    const { h, c } = setup();
    expect(h.claimRemeasure(K)).toBe(false); // never seen: nothing to re-measure
    h.onSuccess(K, 100);
    c.t += STALE_AFTER_MS - 1;
    expect(h.claimRemeasure(K)).toBe(false);
    c.t += 1;
    expect(h.claimRemeasure(K)).toBe(true);
    expect(h.claimRemeasure(K)).toBe(false);
    c.t += STALE_AFTER_MS;
    expect(h.claimRemeasure(K)).toBe(true);
  });
});

describe('rule conditions (compileCondition)', () => {
  it('refuses matches() wherever it is called: inside a call, a method, a macro or a map literal', () => {
    for (const when of [
      'request.model.matches("^(a+)+$")',
      'bool(request.model.matches("^(a+)+$"))',
      'request.headers.exists(k, request.headers[k].matches("^([a-z]+-?)*$"))',
      '{"x": request.model.matches("a")}["x"]',
    ]) {
      expect(() => compileCondition(when), when).toThrow(/matches\(\) is not allowed/);
    }
  });

  it('knows when a rule reads the classifier or the prompt length, however deep the read', () => {
    // Missed, the classifier never ran (the rule saw MEDIUM, confidence 0) or promptTokens was 0.
    for (const when of [
      'size(classifier.tier) > 0',
      '["COMPLEX", "REASONING"].exists(t, t == classifier.tier)',
      'request.headers.exists(k, classifier.tier == "COMPLEX")',
    ]) {
      expect(compileCondition(when).readsClassifier, when).toBe(true);
    }
    expect(compileCondition('int(request.promptTokens) > 6000').readsPromptTokens).toBe(true);
    expect(compileCondition('request.model == "x"')).toMatchObject({ readsClassifier: false, readsPromptTokens: false });
  });
});

describe('validateRouting: hand-off cycles', () => {
  /** Routes r0 → r1 → … each handing off to the next by two rules (a search of every path costs 2^n); counts the reads of their rules. */
  const chain = (n: number, back: boolean) => {
    const reads = { count: 0 };
    const routes = Array.from({ length: n }, (_, i): RouteSpec => {
      const rules =
        i < n - 1
          ? [
              { name: 'a', when: 'true', route: `r${i + 1}` },
              { name: 'b', when: 'false', route: `r${i + 1}` },
            ]
          : back
            ? [{ name: 'back', when: 'true', route: 'r0' }]
            : [];
      const route = { name: `r${i}`, strategy: 'PRIORITY', targets: [{ provider: 'p', model: 'm' }], accept: [] } as unknown as RouteSpec;
      Object.defineProperty(route, 'rules', { get: () => (reads.count++, rules), enumerable: true });
      return route;
    });
    return { spec: { providers: new Set(['p']), routes, experiments: [] }, reads };
  };

  it('a long chain of hand-offs is checked in linear time per route, and a cycle at its end is still found', () => {
    const open = chain(24, false);
    expect(validateRouting(open.spec)).toBeNull();
    // Every path followed: ~2^25 reads (24 routes took 8.6 s).
    expect(open.reads.count).toBeLessThan(24 * 24 * 4);
    expect(validateRouting(chain(24, true).spec)?.message).toMatch(/r0 → r1 → .* → r23 → r0/);
  });
});
