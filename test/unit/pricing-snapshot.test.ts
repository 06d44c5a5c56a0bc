// The shipped price snapshot: well-formed data, mapped by provider kind onto configured
// providers, and imported as price versions only where something changed.
import { describe, expect, it } from 'vitest';
import { importSnapshot, PRICE_SNAPSHOT, type PriceSnapshot, planSnapshotPrices, type SnapshotStore } from '../../src/pricing/snapshot.js';
import { isProviderKind } from '../../src/providers/presets.js';
import type { PriceRecord, SetPriceInput } from '../../src/store/admin/pricing.js';

describe('the shipped snapshot', () => {
  it('has dated, sourced, non-negative entries, one per kind and model', () => {
    expect(PRICE_SNAPSHOT.asOf).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const seen = new Set<string>();
    for (const e of PRICE_SNAPSHOT.entries) {
      const where = `${e.kind} ${e.model}`;
      expect(isProviderKind(e.kind), where).toBe(true);
      expect(seen.has(where), `duplicate ${where}`).toBe(false);
      seen.add(where);
      expect(e.source, where).toMatch(/^https:\/\/[^\s]+$/);
      expect(e.asOf, where).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      for (const v of [e.inputPerMTok, e.outputPerMTok, e.cachedInputPerMTok ?? 0, e.cacheWritePerMTok ?? 0]) {
        expect(Number.isFinite(v) && v >= 0, where).toBe(true);
        // The store keeps 9 decimals; a list price never needs more than 4.
        expect(Number(v.toFixed(4)), where).toBe(v);
      }
      if (e.currency !== 'USD') expect(PRICE_SNAPSHOT.usdRates[e.currency], `rate for ${e.currency}`).toBeGreaterThan(0);
    }
  });

  it('covers every vendor kind with a preset', () => {
    const kinds = new Set(PRICE_SNAPSHOT.entries.map((e) => e.kind));
    expect([...kinds].sort()).toEqual(['ANTHROPIC', 'ARK', 'DEEPSEEK', 'OPENAI', 'OPENROUTER', 'QWEN', 'ZHIPU']);
    // CNY-listed vendors stay in CNY (converted by the store with the recorded rate).
    for (const e of PRICE_SNAPSHOT.entries) if (['ARK', 'QWEN', 'ZHIPU'].includes(e.kind)) expect(e.currency, e.model).toBe('CNY');
  });

  it('prices Anthropic cache reads at a tenth of the input price and cache writes at 1.25 times it', () => {
    const sonnet = PRICE_SNAPSHOT.entries.find((e) => e.kind === 'ANTHROPIC' && e.model === 'claude-sonnet-4-5');
    expect(sonnet).toMatchObject({ currency: 'USD', inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3, cacheWritePerMTok: 3.75 });
    const [planned] = planSnapshotPrices([{ name: 'anthropic', kind: 'ANTHROPIC' }]).filter((p) => p.model === 'claude-3-5-haiku-20241022');
    expect(planned).toMatchObject({ provider: 'anthropic', inputPerMTokUsd: 0.8, cachedInputPerMTokUsd: 0.08, cacheWritePerMTokUsd: 1 });
  });
});

const SNAPSHOT: PriceSnapshot = {
  id: 'test',
  asOf: '2025-01-02',
  usdRates: { CNY: 0.125 },
  entries: [
    {
      kind: 'OPENROUTER',
      model: 'openai/gpt-4o-mini',
      currency: 'USD',
      inputPerMTok: 0.15,
      outputPerMTok: 0.6,
      cachedInputPerMTok: 0.075,
      source: 'https://or.example/p',
      asOf: '2025-01-02',
    },
    {
      kind: 'ARK',
      model: 'doubao-x',
      currency: 'CNY',
      inputPerMTok: 0.8,
      outputPerMTok: 8,
      cachedInputPerMTok: null,
      source: 'https://ark.example/p',
      asOf: '2025-01-01',
    },
  ],
};

describe('planSnapshotPrices', () => {
  it('maps entries onto providers by kind, under the provider name', () => {
    const plan = planSnapshotPrices(
      [
        { name: 'or-prod', kind: 'OPENROUTER' },
        { name: 'or-backup', kind: 'OPENROUTER' },
        { name: 'sim', kind: 'SIMULATED' },
      ],
      SNAPSHOT,
    );
    expect(plan.map((p) => `${p.provider}/${p.model}`)).toEqual(['or-prod/openai/gpt-4o-mini', 'or-backup/openai/gpt-4o-mini']);
    expect(plan[0]).toMatchObject({ inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6, cachedInputPerMTokUsd: 0.075, currency: 'USD', usdRate: null });
    expect(plan[0]!.source).toContain('https://or.example/p');
    expect(plan[0]!.source).toContain('2025-01-02');
  });

  it('keeps CNY amounts in CNY with the snapshot rate, and records the rate in the source', () => {
    const [p] = planSnapshotPrices([{ name: 'ark', kind: 'ARK' }], SNAPSHOT);
    expect(p).toMatchObject({
      provider: 'ark',
      model: 'doubao-x',
      inputPerMTokUsd: 0.8,
      outputPerMTokUsd: 8,
      cachedInputPerMTokUsd: null,
      currency: 'CNY',
      usdRate: 0.125,
    });
    expect(p!.source).toContain('CNY→USD 0.125');
  });

  it('prices a modelMap alias like the upstream model it maps to', () => {
    const plan = planSnapshotPrices([{ name: 'or', kind: 'OPENROUTER', modelMap: { mini: 'openai/gpt-4o-mini', other: 'not/listed' } }], SNAPSHOT);
    expect(plan.map((p) => p.model).sort()).toEqual(['mini', 'openai/gpt-4o-mini']);
    expect(plan.find((p) => p.model === 'mini')).toMatchObject({ inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
  });

  it('refuses a non-USD entry without a rate rather than guessing one', () => {
    const broken: PriceSnapshot = { ...SNAPSHOT, usdRates: {} };
    expect(() => planSnapshotPrices([{ name: 'ark', kind: 'ARK' }], broken)).toThrow(/no USD rate for CNY/);
  });
});

/** A store that versions like AdminStore.setPriceIfChanged, in memory. */
function memoryStore(initial: Array<Pick<SetPriceInput, 'provider' | 'model' | 'inputPerMTokUsd' | 'outputPerMTokUsd'>> = []) {
  const versions: SetPriceInput[] = [...initial];
  const record = (p: SetPriceInput, version: number) => ({ version, provider: p.provider, model: p.model }) as PriceRecord;
  const latest = (provider: string, model: string) => versions.findLast((v) => v.provider === provider && v.model === model);
  const store: SnapshotStore = {
    async currentPrices() {
      return versions.map((p, i) => record(p, i + 1));
    },
    async setPriceIfChanged(input) {
      const was = latest(input.provider, input.model);
      const same =
        was &&
        was.inputPerMTokUsd === input.inputPerMTokUsd &&
        was.outputPerMTokUsd === input.outputPerMTokUsd &&
        (was.cachedInputPerMTokUsd ?? null) === (input.cachedInputPerMTokUsd ?? null) &&
        (was.currency ?? 'USD') === (input.currency ?? 'USD');
      if (same) return { price: record(was, versions.indexOf(was) + 1), created: false };
      versions.push(input);
      return { price: record(input, versions.length), created: true };
    },
  };
  return { store, versions };
}

describe('importSnapshot', () => {
  it('creates versions once; a second import changes nothing', async () => {
    const { store, versions } = memoryStore();
    const targets = [
      { name: 'openrouter', kind: 'OPENROUTER' as const },
      { name: 'ark', kind: 'ARK' as const },
    ];
    const first = await importSnapshot(store, targets, { snapshot: SNAPSHOT });
    expect(first.created.map((p) => `${p.provider}/${p.model}`)).toEqual(['openrouter/openai/gpt-4o-mini', 'ark/doubao-x']);
    expect(first).toMatchObject({ snapshot: 'test', asOf: '2025-01-02', unchanged: 0, skipped: 0 });
    const second = await importSnapshot(store, targets, { snapshot: SNAPSHOT });
    expect(second).toMatchObject({ created: [], unchanged: 2, skipped: 0 });
    expect(versions).toHaveLength(2);
  });

  it('onlyMissing leaves an operator price alone, whatever its amounts', async () => {
    const { store, versions } = memoryStore([{ provider: 'openrouter', model: 'openai/gpt-4o-mini', inputPerMTokUsd: 0.1, outputPerMTokUsd: 0.4 }]);
    const r = await importSnapshot(store, [{ name: 'openrouter', kind: 'OPENROUTER' }], { snapshot: SNAPSHOT, onlyMissing: true });
    expect(r).toMatchObject({ created: [], unchanged: 0, skipped: 1 });
    expect(versions).toHaveLength(1);
    // Without onlyMissing, the list price becomes a new version.
    const forced = await importSnapshot(store, [{ name: 'openrouter', kind: 'OPENROUTER' }], { snapshot: SNAPSHOT });
    expect(forced.created).toHaveLength(1);
    expect(versions.at(-1)).toMatchObject({ inputPerMTokUsd: 0.15 });
  });
});
