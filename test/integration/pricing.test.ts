// Price integrity end to end: the shipped snapshot imported at start and on demand,
// unpriced requests staying null (never 0), and re-pricing receipts without touching them.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap } from '../../src/bootstrap.js';
import { importSnapshot, PRICE_SNAPSHOT } from '../../src/pricing/snapshot.js';
import type { Receipt } from '../../src/receipts/receipt.js';
import { fetchReceipt, RECEIPT_INSERT_SETTINGS, receiptToRow } from '../../src/receipts/rows.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { type GraphQLResult, gql, gqlOk } from '../support/graphql.js';
import { runTollgate } from '../support/processes.js';

let gw: TestGateway;
let admin: string;
let analyst: string;
let teamAdmin: string;
let secret: string;
const from = new Date(Date.now() - 3_600_000);
let to: Date;
/** Receipts of the unpriced model, and of the priced route, as the gateway signed them. */
const unpricedIds: string[] = [];
const pricedIds: string[] = [];
let pricedVersion: number;

const UNPRICED = { provider: 'sim-b', model: 'reprice-me' };
const PRICED = { provider: 'sim', model: 'sim-large' }; // 0.15 / 0.6 USD, set by the test gateway

const ch = () => gw.started.runtime.clickhouse.client;
const store = () => gw.started.runtime.adminStore;
const codeOf = (r: GraphQLResult) => r.errors?.[0]?.extensions?.code;

async function receiptsOf(ids: string[]): Promise<Receipt[]> {
  return Promise.all(ids.map(async (id) => (await fetchReceipt(ch(), id))!));
}

/** The gateway's formula, computed here independently of the SQL under test. */
function expectedCost(
  r: Pick<Receipt, 'prompt_tokens' | 'completion_tokens' | 'cached_tokens'>,
  p: { input: number; output: number; cached?: number },
): number {
  const cached = Math.min(r.cached_tokens, r.prompt_tokens);
  const usd = ((r.prompt_tokens - cached) * p.input + cached * (p.cached ?? p.input) + r.completion_tokens * p.output) / 1e6;
  return Math.round(usd * 1e9) / 1e9;
}

const REPRICE = `mutation ($input: RepriceReceiptsInput!) {
  repriceReceipts(input: $input) { priceVersion applied written
    rows { provider model receipts unpricedBefore originalCostUsd recomputedCostUsd deltaUsd pending } } }`;

async function reprice(input: Record<string, unknown>, token = admin) {
  return gql(gw.url, token, REPRICE, { input: { from: from.toISOString(), to: to.toISOString(), apply: false, ...input } });
}

async function repricingRows(receiptIds: string[]) {
  const rs = await ch().query({
    query: `SELECT toString(receipt_id) AS id, price_version, toString(cost_usd) AS cost, original_cost_usd
            FROM receipt_repricings WHERE receipt_id IN {ids:Array(UUID)} ORDER BY repriced_at, id`,
    query_params: { ids: receiptIds },
    format: 'JSONEachRow',
  });
  return rs.json<{ id: string; price_version: number; cost: string; original_cost_usd: string | null }>();
}

beforeAll(async () => {
  // Presets from the environment: OpenRouter, DeepSeek, Qwen (by DashScope's name for its key)
  // and Anthropic get the snapshot at start.
  gw = await startTestGateway({
    env: { OPENROUTER_API_KEY: 'sk-or-test', DEEPSEEK_API_KEY: 'sk-ds-test', DASHSCOPE_API_KEY: 'sk-dashscope-test', ANTHROPIC_API_KEY: 'sk-ant-test' },
  });
  admin = gw.adminToken;
  analyst = (await store().teams.createAccessToken({ name: 'analyst', role: 'ANALYST' })).secret;
  const team = await store().teams.ensureTeam('team-pricing');
  teamAdmin = (await store().teams.createAccessToken({ name: 'team-admin', role: 'ADMIN', teamId: team.id })).secret;
  secret = (await gw.createKey('team-pricing')).secret;

  const client = gw.client(secret);
  for (let i = 0; i < 4; i++) {
    const { response } = await client.chat.completions
      .create({ model: `${UNPRICED.provider}/${UNPRICED.model}`, messages: [{ role: 'user', content: `unpriced question ${i} ${'word '.repeat(i * 7)}` }] })
      .withResponse();
    unpricedIds.push(response.headers.get('x-tollgate-receipt-id')!);
  }
  for (let i = 0; i < 3; i++) {
    const stream = i === 1;
    const { response, data } = await client.chat.completions
      .create({
        model: 'chat-default',
        messages: [{ role: 'user', content: `priced question ${i} ${'more '.repeat(i * 5)}` }],
        stream,
        stream_options: stream ? { include_usage: true } : undefined,
      } as any)
      .withResponse();
    if (stream) for await (const _ of data as any) void _;
    pricedIds.push(response.headers.get('x-tollgate-receipt-id')!);
  }
  await gw.started.runtime.journal.flush();
  to = new Date(Date.now() + 60_000);
  pricedVersion = (await store().pricing.currentPrices()).find((p) => p.provider === PRICED.provider && p.model === PRICED.model)!.version;
});

afterAll(async () => {
  await gw?.close();
});

describe('cache-write prices', () => {
  it('setPrice takes cacheWritePerMTokUsd, prices return it, and a change makes a version', async () => {
    const q = `mutation($in: PriceInput!) { setPrice(input: $in) { version cachedInputPerMTokUsd cacheWritePerMTokUsd } }`;
    const model = { provider: 'claude-direct', model: 'claude-test-write' };
    const set = (
      await gqlOk(gw.url, admin, q, { in: { ...model, inputPerMTokUsd: 3, outputPerMTokUsd: 15, cachedInputPerMTokUsd: 0.3, cacheWritePerMTokUsd: 3.75 } })
    ).setPrice;
    expect(set).toMatchObject({ cachedInputPerMTokUsd: 0.3, cacheWritePerMTokUsd: 3.75 });
    const listed = (await gqlOk(gw.url, admin, '{ prices { provider model cacheWritePerMTokUsd } }')).prices.find((p: any) => p.model === model.model);
    expect(listed.cacheWritePerMTokUsd).toBe(3.75);
    const same = await store().pricing.setPriceIfChanged({
      ...model,
      inputPerMTokUsd: 3,
      outputPerMTokUsd: 15,
      cachedInputPerMTokUsd: 0.3,
      cacheWritePerMTokUsd: 3.75,
    });
    expect(same).toMatchObject({ created: false, price: { version: set.version } });
    const changed = await store().pricing.setPriceIfChanged({
      ...model,
      inputPerMTokUsd: 3,
      outputPerMTokUsd: 15,
      cachedInputPerMTokUsd: 0.3,
      cacheWritePerMTokUsd: 6,
    });
    expect(changed).toMatchObject({ created: true, price: { cacheWritePerMTokUsd: 6 } });

    // A version scheduled for later: today's amounts imported again are still no change, and a
    // snapshot import that fills only what has no price leaves a model priced only later alone.
    const prices = { inputPerMTokUsd: 3, outputPerMTokUsd: 15, cachedInputPerMTokUsd: 0.3, cacheWritePerMTokUsd: 6 };
    await store().pricing.setPrice({ ...model, ...prices, inputPerMTokUsd: 4, effectiveFrom: new Date(Date.now() + 86_400_000) });
    expect(await store().pricing.setPriceIfChanged({ ...model, ...prices })).toMatchObject({ created: false, price: { version: changed.price.version } });
    const entry = { ...PRICE_SNAPSHOT.entries.find((e) => e.kind === 'OPENROUTER')!, model: 'priced-later' };
    await store().pricing.setPrice({
      provider: 'later-prov',
      model: 'priced-later',
      inputPerMTokUsd: 9,
      outputPerMTokUsd: 9,
      effectiveFrom: new Date(Date.now() + 86_400_000),
    });
    const snapshot = { ...PRICE_SNAPSHOT, entries: [entry] };
    const imported = await importSnapshot(store().pricing, [{ name: 'later-prov', kind: 'OPENROUTER' }], { onlyMissing: true, snapshot });
    expect(imported).toMatchObject({ created: [], skipped: 1 });
  });
});

describe('price snapshot', () => {
  it('is imported at start for the presets configured from the environment, and only for them', async () => {
    const prices = await store().pricing.currentPrices();
    const of = (provider: string) => prices.filter((p) => p.provider === provider);
    const kindCount = (kind: string) => PRICE_SNAPSHOT.entries.filter((e) => e.kind === kind).length;
    expect(of('openrouter')).toHaveLength(kindCount('OPENROUTER'));
    expect(of('deepseek')).toHaveLength(kindCount('DEEPSEEK'));
    expect(of('qwen')).toHaveLength(kindCount('QWEN'));
    expect(of('anthropic')).toHaveLength(kindCount('ANTHROPIC'));
    expect(of('ark')).toHaveLength(0);
    expect(of('zhipu')).toHaveLength(0);
    expect(prices.find((p) => p.provider === 'anthropic' && p.model === 'claude-sonnet-4-5')).toMatchObject({
      inputPerMTokUsd: 3,
      outputPerMTokUsd: 15,
      cachedInputPerMTokUsd: 0.3,
      cacheWritePerMTokUsd: 3.75,
    });
    // The Anthropic preset sends its key as x-api-key, with the API version it speaks.
    expect(gw.started.runtime.app.catalog.catalog.providers.get('anthropic')).toMatchObject({
      origin: 'https://api.anthropic.com',
      basePath: '',
      headers: { 'x-api-key': 'sk-ant-test', 'anthropic-version': '2023-06-01' },
    });
    expect(of('openai')).toHaveLength(0);
    const mini = prices.find((p) => p.provider === 'openrouter' && p.model === 'openai/gpt-4o-mini')!;
    expect(mini).toMatchObject({ inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6, cachedInputPerMTokUsd: 0.075, currency: 'USD' });
    expect(mini.source).toContain('openrouter.ai');
    expect(mini.source).toContain(PRICE_SNAPSHOT.asOf);
    expect(gw.started.runtime.bootstrapped.some((b) => b.includes(PRICE_SNAPSHOT.asOf))).toBe(true);
  });

  it('a later start creates no version and never overrides an operator price', async () => {
    await store().pricing.setPrice({ provider: 'openrouter', model: 'openai/gpt-4o', inputPerMTokUsd: 2, outputPerMTokUsd: 9, source: 'negotiated' });
    const before = await store().pricing.currentPrices();
    const done = await bootstrap(gw.config, store());
    expect(done.some((b) => b.includes(PRICE_SNAPSHOT.asOf))).toBe(false);
    expect(await store().pricing.currentPrices()).toEqual(before);
    expect((await store().pricing.priceHistory('openrouter', 'openai/gpt-4o-mini')).length).toBe(1);
  });

  it('importPriceSnapshot prices a provider by kind, CNY kept with its rate; again = no new version', async () => {
    await store().providers.upsertProvider({ name: 'glm', kind: 'ZHIPU', apiKey: 'k' });
    const q = `mutation ($input: ImportPriceSnapshotInput) { importPriceSnapshot(input: $input) {
      snapshot asOf unchanged skipped created { version provider model inputPerMTokUsd outputPerMTokUsd cachedInputPerMTokUsd currency usdRate source } } }`;
    const zhipu = PRICE_SNAPSHOT.entries.filter((e) => e.kind === 'ZHIPU');
    const first = (await gqlOk(gw.url, admin, q, { input: { providers: ['glm'] } })).importPriceSnapshot;
    expect(first).toMatchObject({ snapshot: PRICE_SNAPSHOT.id, asOf: PRICE_SNAPSHOT.asOf, unchanged: 0, skipped: 0 });
    expect(first.created).toHaveLength(zhipu.length);
    const rate = PRICE_SNAPSHOT.usdRates.CNY!;
    for (const e of zhipu) {
      const p = first.created.find((c: any) => c.model === e.model);
      expect(p, e.model).toMatchObject({ provider: 'glm', currency: 'CNY', usdRate: rate });
      expect(p.inputPerMTokUsd).toBeCloseTo(e.inputPerMTok * rate, 9);
      expect(p.outputPerMTokUsd).toBeCloseTo(e.outputPerMTok * rate, 9);
      expect(p.source).toContain(e.source);
    }
    const again = (await gqlOk(gw.url, admin, q, { input: { providers: ['glm'] } })).importPriceSnapshot;
    expect(again).toMatchObject({ created: [], unchanged: zhipu.length });
    expect((await gql(gw.url, admin, q, { input: { providers: ['nope'] } })).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('the CLI imports through the running server', async () => {
    const cli = runTollgate(['prices', 'import-snapshot', '--provider', 'glm', '--json'], { TOLLGATE_DATA_DIR: gw.dataDir });
    expect(await cli.exited, cli.output()).toBe(0);
    const out = JSON.parse(cli.output().trim().split('\n').at(-1)!);
    expect(out).toMatchObject({ snapshot: PRICE_SNAPSHOT.id, created: [], unchanged: PRICE_SNAPSHOT.entries.filter((e) => e.kind === 'ZHIPU').length });
  });
});

describe('unpriced is null, never 0', () => {
  it('receipts of an unpriced model have cost_usd null and no price version', async () => {
    for (const r of await receiptsOf(unpricedIds)) {
      expect(r.status).toBe('ok');
      expect(r.prompt_tokens).toBeGreaterThan(0);
      expect(r.cost_usd).toBeNull();
      expect(r.price_version).toBeNull();
    }
    // Also as served to clients (JSON null, not 0).
    const res = await fetch(`${gw.baseURL}/receipts/${unpricedIds[0]}`, { headers: { authorization: `Bearer ${secret}` } });
    expect((await res.json()).cost_usd).toBeNull();
  });

  it('usage counts them in unpricedRequests and adds nothing to costUsd', async () => {
    const data = await gqlOk(
      gw.url,
      admin,
      `query ($f: AnalyticsFilter!) { usage(filter: $f, groupBy: [PROVIDER, MODEL]) { key { provider model } requests costUsd unpricedRequests } }`,
      { f: { from: from.toISOString(), to: to.toISOString(), models: [UNPRICED.model, PRICED.model] } },
    );
    const row = (m: string) => data.usage.find((r: any) => r.key.model === m);
    expect(row(UNPRICED.model)).toMatchObject({ requests: unpricedIds.length, costUsd: 0, unpricedRequests: unpricedIds.length });
    const priced = await receiptsOf(pricedIds);
    expect(row(PRICED.model)).toMatchObject({ requests: pricedIds.length, unpricedRequests: 0 });
    expect(row(PRICED.model).costUsd).toBeCloseTo(
      priced.reduce((s, r) => s + r.cost_usd!, 0),
      9,
    );
  });
});

describe('a cost no receipt can hold', () => {
  it('setPrice refuses a price past 10,000 USD per million tokens (in USD, after a currency rate)', async () => {
    const q = 'mutation ($in: PriceInput!) { setPrice(input: $in) { version } }';
    const slip = await gql(gw.url, admin, q, { in: { provider: 'sim-b', model: 'slip', inputPerMTokUsd: 1, outputPerMTokUsd: 15_000 } });
    expect(slip.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.outputPerMTokUsd' });
    expect(slip.errors?.[0]?.message).toMatch(/per token or per thousand/);
    // 60,000 JPY at 0.0067 USD a yen is 402 USD: fine.
    await gqlOk(gw.url, admin, q, {
      in: { provider: 'sim-b', model: 'slip', inputPerMTokUsd: 60_000, outputPerMTokUsd: 60_000, currency: 'JPY', usdRate: 0.0067 },
    });
  });

  it('a price stored before that bound still gets every request its receipt, its cost unknown (null)', async () => {
    await gw.started.runtime.configDb.prisma.price.create({
      data: { provider: 'sim-b', model: 'overpriced', inputPerMTok: 900_000_000, outputPerMTok: 900_000_000 },
    });
    await gw.started.runtime.app.catalog.load();
    const { response, data } = await gw
      .client(secret)
      .chat.completions.create({ model: 'sim-b/overpriced', messages: [{ role: 'user', content: 'word '.repeat(1_500) }] })
      .withResponse();
    expect(data.usage!.prompt_tokens).toBeGreaterThan(1_200); // × 900 USD a token: past a million
    await gw.started.runtime.journal.flush();
    const [receipt] = await receiptsOf([response.headers.get('x-tollgate-receipt-id')!]);
    expect(receipt).toMatchObject({ status: 'ok', cost_usd: null, price_version: null });
  });
});

describe('repriceReceipts', () => {
  it('needs a price: an unpriced model cannot be re-priced yet', async () => {
    const r = await reprice(UNPRICED);
    expect(codeOf(r)).toBe('NOT_FOUND');
  });

  it('dry run: counts, original and recomputed totals match an independent computation; nothing is written', async () => {
    const price = await store().pricing.setPrice({ provider: UNPRICED.provider, model: UNPRICED.model, inputPerMTokUsd: 1.1, outputPerMTokUsd: 4.4 });
    const receipts = await receiptsOf(unpricedIds);
    const expected = receipts.reduce((s, r) => s + expectedCost(r, { input: 1.1, output: 4.4 }), 0);
    expect(expected).toBeGreaterThan(0);
    const data = (await reprice(UNPRICED)).data.repriceReceipts;
    expect(data).toMatchObject({ priceVersion: price.version, applied: false, written: 0 });
    expect(data.rows).toHaveLength(1);
    const row = data.rows[0];
    expect(row).toMatchObject({
      ...UNPRICED,
      receipts: unpricedIds.length,
      unpricedBefore: unpricedIds.length,
      originalCostUsd: 0,
      pending: unpricedIds.length,
    });
    expect(row.recomputedCostUsd).toBeCloseTo(expected, 9);
    expect(row.deltaUsd).toBeCloseTo(expected, 9);
    expect(await repricingRows(unpricedIds)).toHaveLength(0);
  });

  it('re-pricing a priced model: the current version vs the version the receipts were billed with', async () => {
    const receipts = await receiptsOf(pricedIds);
    const original = receipts.reduce((s, r) => s + r.cost_usd!, 0);
    expect(receipts.every((r) => r.price_version === pricedVersion)).toBe(true);

    // The billed version reproduces the signed costs.
    const same = (await reprice({ ...PRICED, priceVersion: pricedVersion })).data.repriceReceipts.rows[0];
    expect(same).toMatchObject({ receipts: pricedIds.length, unpricedBefore: 0 });
    expect(same.originalCostUsd).toBeCloseTo(original, 9);
    expect(same.recomputedCostUsd).toBeCloseTo(original, 8);
    expect(Math.abs(same.deltaUsd)).toBeLessThan(1e-8);

    // A new current version: recomputed with it, delta against the signed costs.
    const v2 = await store().pricing.setPrice({ ...PRICED, inputPerMTokUsd: 0.3, outputPerMTokUsd: 1.5, cachedInputPerMTokUsd: 0.03 });
    const expected = receipts.reduce((s, r) => s + expectedCost(r, { input: 0.3, output: 1.5, cached: 0.03 }), 0);
    const data = (await reprice(PRICED)).data.repriceReceipts;
    expect(data.priceVersion).toBe(v2.version);
    expect(data.rows[0].recomputedCostUsd).toBeCloseTo(expected, 9);
    expect(data.rows[0].deltaUsd).toBeCloseTo(expected - original, 9);
    // Restore the test gateway's price for whoever reads it next.
    await store().pricing.setPrice({ ...PRICED, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
  });

  it('bills cached prompt tokens at the cached price and leaves cache hits (cost 0) out', async () => {
    // Receipts written straight to ClickHouse: the simulated provider reports no cached tokens.
    const [template] = await receiptsOf(unpricedIds.slice(0, 1));
    const model = { provider: 'sim', model: `cached-${randomUUID().slice(0, 8)}` };
    const base = { ...template!, ...model, started_at: new Date().toISOString(), cost_usd: null, price_version: null };
    const miss = { ...base, receipt_id: randomUUID(), prompt_tokens: 1000, cached_tokens: 400, completion_tokens: 50, cache_status: 'miss' as const };
    const hit = {
      ...base,
      receipt_id: randomUUID(),
      prompt_tokens: 1000,
      cached_tokens: 0,
      completion_tokens: 50,
      cache_status: 'exact' as const,
      cost_usd: 0,
    };
    await ch().insert({
      table: 'receipts',
      values: [receiptToRow(miss), receiptToRow(hit)],
      format: 'JSONEachRow',
      clickhouse_settings: RECEIPT_INSERT_SETTINGS,
    });
    await store().pricing.setPrice({ ...model, inputPerMTokUsd: 2, outputPerMTokUsd: 8, cachedInputPerMTokUsd: 0.5 });
    const row = (await reprice(model)).data.repriceReceipts.rows[0];
    expect(row).toMatchObject({ receipts: 1, unpricedBefore: 1 });
    // 600 × 2 + 400 × 0.5 + 50 × 8 = 1800 per million
    expect(row.recomputedCostUsd).toBe(0.0018);
  });

  it('apply writes one row per receipt; applying again writes nothing; a new version supersedes', async () => {
    const current = (await store().pricing.currentPrices()).find((p) => p.provider === UNPRICED.provider && p.model === UNPRICED.model)!;
    const receipts = await receiptsOf(unpricedIds);

    const applied = (await reprice({ ...UNPRICED, apply: true })).data.repriceReceipts;
    expect(applied).toMatchObject({ applied: true, written: unpricedIds.length, priceVersion: current.version });
    const rows = await repricingRows(unpricedIds);
    expect(rows).toHaveLength(unpricedIds.length);
    for (const r of receipts) {
      const written = rows.find((w) => w.id === r.receipt_id)!;
      expect(written).toMatchObject({ price_version: current.version, original_cost_usd: null });
      expect(Number(written.cost)).toBeCloseTo(expectedCost(r, { input: 1.1, output: 4.4 }), 9);
    }

    // An apply is an admin action on record (a dry run changes nothing and is not).
    const audited = await gql(gw.url, admin, '{ auditLog(filter: { actions: ["repriceReceipts"] }) { edges { node { actor target after } } } }');
    expect(audited.data.auditLog.edges).toHaveLength(1);
    expect(audited.data.auditLog.edges[0].node).toMatchObject({
      actor: 'admin',
      target: `receipts:${UNPRICED.provider}/${UNPRICED.model}`,
      after: { priceVersion: current.version, written: unpricedIds.length },
    });

    const again = (await reprice({ ...UNPRICED, apply: true })).data.repriceReceipts;
    expect(again).toMatchObject({ applied: true, written: 0 });
    expect(await repricingRows(unpricedIds)).toHaveLength(unpricedIds.length);
    expect((await reprice(UNPRICED)).data.repriceReceipts.rows[0].pending).toBe(0);

    // Receipts are untouched: still unpriced as signed.
    for (const r of await receiptsOf(unpricedIds)) expect(r.cost_usd).toBeNull();

    const v2 = await store().pricing.setPrice({ ...UNPRICED, inputPerMTokUsd: 2.2, outputPerMTokUsd: 8.8 });
    expect((await reprice({ ...UNPRICED, apply: true })).data.repriceReceipts.written).toBe(unpricedIds.length);
    const latest = await ch().query({
      query: `SELECT argMax(price_version, repriced_at) AS v, count() AS n FROM receipt_repricings WHERE receipt_id IN {ids:Array(UUID)} GROUP BY receipt_id`,
      query_params: { ids: unpricedIds },
      format: 'JSONEachRow',
    });
    const byReceipt = await latest.json<{ v: number; n: string | number }>();
    expect(byReceipt).toHaveLength(unpricedIds.length);
    for (const r of byReceipt) expect({ v: r.v, n: Number(r.n) }).toEqual({ v: v2.version, n: 2 });
    // The FINAL view collapses to the latest repricing per receipt.
    const final = await ch().query({
      query: `SELECT count() AS n FROM receipt_repricings FINAL WHERE receipt_id IN {ids:Array(UUID)}`,
      query_params: { ids: unpricedIds },
      format: 'JSONEachRow',
    });
    expect(Number((await final.json<{ n: string }>())[0]!.n)).toBe(unpricedIds.length);
  });

  it('refuses another model’s price version and a backwards range', async () => {
    expect(codeOf(await reprice({ ...UNPRICED, priceVersion: pricedVersion }))).toBe('NOT_FOUND');
    const r = await gql(gw.url, admin, REPRICE, { input: { ...UNPRICED, from: to.toISOString(), to: from.toISOString(), apply: false } });
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
  });

  it('is for global admins only', async () => {
    await store().pricing.setPrice({ ...UNPRICED, inputPerMTokUsd: 3.3, outputPerMTokUsd: 9.9 });
    const before = (await repricingRows(unpricedIds)).length;
    for (const token of [analyst, teamAdmin]) {
      const r = await reprice({ ...UNPRICED, apply: true }, token);
      expect(codeOf(r)).toBe('FORBIDDEN');
      expect(r.data?.repriceReceipts ?? null).toBeNull();
    }
    expect(await repricingRows(unpricedIds)).toHaveLength(before);
    expect(codeOf(await reprice(UNPRICED, ''))).toBe('UNAUTHENTICATED');
    const imp = await gql(gw.url, teamAdmin, `mutation { importPriceSnapshot { unchanged } }`);
    expect(codeOf(imp)).toBe('FORBIDDEN');
  });

  it('the CLI dry-runs through the running server', async () => {
    const cli = runTollgate(
      ['prices', 'reprice', '--from', from.toISOString(), '--to', to.toISOString(), '--provider', UNPRICED.provider, '--model', UNPRICED.model, '--json'],
      { TOLLGATE_DATA_DIR: gw.dataDir },
    );
    expect(await cli.exited, cli.output()).toBe(0);
    const out = JSON.parse(cli.output().trim().split('\n').at(-1)!);
    const viaGraphQL = (await reprice(UNPRICED)).data.repriceReceipts;
    expect(out).toEqual(viaGraphQL);
    expect(out.applied).toBe(false);
  });
});
