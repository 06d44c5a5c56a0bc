// Budgets through the real proxy (official openai client, loopback simulated provider):
// blocking at the limit, the concurrent burst bound, ALERT budgets, threshold events and
// signed webhooks, fail-closed without the counter store, and spend rebuilt after a restart.
// Counters are in process here, and in Redis when REDIS_URL is set (npm run test:stores).
import { createHmac } from 'node:crypto';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxCostOf } from '../../src/gateway/usage.js';
import type { BudgetEvent } from '../../src/live/events.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gqlOk } from '../support/graphql.js';

const PRICE = { inputPerMTokUsd: 1000, outputPerMTokUsd: 1000 }; // $0.001 per token: numbers stay readable
const WEBHOOK_SECRET = 'whsec-budget-test';
const msg = (content: string) => [{ role: 'user' as const, content }];
const body = (content: string) => ({ model: 'budgeted', messages: msg(content), max_tokens: 8 });

async function estimateOf(content: string): Promise<number> {
  return maxCostOf(
    [{ price: { version: 1, provider: 'sim', model: 'm-budget', ...PRICE, cachedInputPerMTokUsd: null } }],
    { body: body(content), chat: body(content) },
    4096,
  );
}

/** Status and error code of one request. */
async function call(gw: TestGateway, secret: string, content: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body(content)),
  });
  const json = (await res.json()) as any;
  return { status: res.status, code: json.error?.code ?? null, type: json.error?.type ?? null, receiptId: res.headers.get('x-tollgate-receipt-id'), json };
}

async function setup(gw: TestGateway) {
  const store = gw.started.runtime.adminStore;
  await store.routing.upsertRoute({ name: 'budgeted', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'm-budget' }] });
  await store.pricing.setPrice({ provider: 'sim', model: 'm-budget', ...PRICE });
  await gw.started.runtime.app.catalog.refresh();
}

async function spentOf(gw: TestGateway, budgetId: string) {
  const budget = gw.started.runtime.app.catalog.budgets.find((b) => b.id === budgetId)!;
  return gw.started.runtime.app.budgets!.status(budget);
}

describe('budgets on one gateway', () => {
  let gw: TestGateway;
  const events: BudgetEvent[] = [];
  const hooks: Array<{ body: string; signature: string }> = [];
  let hookFailures = 1;
  let hookServer: http.Server;
  let hookUrl: string;

  beforeAll(async () => {
    hookServer = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () => {
        if (hookFailures-- > 0) return res.writeHead(500).end();
        hooks.push({ body: data, signature: String(req.headers['x-tollgate-signature']) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hookServer.address() as AddressInfo).port}/hook`;
    // The webhook receiver is on loopback, which the egress policy allows only when listed.
    gw = await startTestGateway({ env: { TOLLGATE_WEBHOOK_SECRET: WEBHOOK_SECRET, TOLLGATE_EGRESS_ALLOW: '127.0.0.1' } });
    await setup(gw);
    gw.started.runtime.app.bus.budgets.subscribe((e) => events.push(e));
  });
  afterAll(async () => {
    await gw?.close();
    hookServer?.close();
  });

  it('blocks at the limit, sequentially: never spends more than the limit, and blocks only when the next request might not fit', async () => {
    const key = await gw.createKey('team-seq');
    const estimate = await estimateOf('hello there');
    const limitUsd = 0.05;
    const budget = await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: key.teamId, period: 'DAY', limitUsd, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();
    const statuses: number[] = [];
    let blocked: Awaited<ReturnType<typeof call>> | null = null;
    for (let i = 0; i < 20 && !blocked; i++) {
      const r = await call(gw, key.secret, 'hello there');
      statuses.push(r.status);
      if (r.status !== 200) blocked = r;
    }
    expect(blocked).toMatchObject({ status: 429, type: 'insufficient_quota', code: 'budget_exceeded' });
    expect(blocked!.json.error.message).toMatch(/team budget is exhausted/);
    const status = await spentOf(gw, budget.id);
    expect(status.spentUsd).toBeLessThanOrEqual(limitUsd);
    expect(status.spentUsd + estimate).toBeGreaterThan(limitUsd); // it stopped only when it had to
    expect(status.reservedUsd).toBe(0);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThan(2);
    // The budgets query shows the same live figures.
    const d = await gqlOk(gw.url, gw.adminToken, '{ budgets { id limitUsd spentUsd reservedUsd remainingUsd periodStart failOpen hasWebhook } }');
    const row = d.budgets.find((b: any) => b.id === budget.id);
    expect(row).toMatchObject({ limitUsd, reservedUsd: 0, failOpen: false, hasWebhook: false });
    expect(row.spentUsd).toBeCloseTo(status.spentUsd, 9);
    expect(row.remainingUsd).toBeCloseTo(limitUsd - status.spentUsd, 9);
    expect(new Date(row.periodStart).toISOString()).toBe(new Date(new Date().toISOString().slice(0, 10)).toISOString());
    // Another team is not affected.
    expect((await call(gw, (await gw.createKey('team-free')).secret, 'hello there')).status).toBe(200);
    expect(events.some((e) => e.kind === 'BLOCKED' && e.budgetId === budget.id)).toBe(true);
  });

  it('explainRoute marks every candidate budget_exceeded when the team has no room, as the request then is refused', async () => {
    const key = await gw.createKey('team-explain');
    const other = await gw.createKey('team-explain-other');
    // Room for less than one request's reservation: the next request is refused whole.
    await gw.started.runtime.adminStore.pricing.setBudget({
      scope: 'TEAM',
      teamId: key.teamId,
      period: 'DAY',
      limitUsd: (await estimateOf('hello there')) / 2,
      action: 'BLOCK',
    });
    await gw.started.runtime.app.catalog.refresh();
    const explain = async (teamId: string) => {
      const d = await gqlOk(
        gw.url,
        gw.adminToken,
        'query($input: ExplainRouteInput!) { explainRoute(input: $input) { route candidates { provider model skipReason } } }',
        {
          input: { request: body('hello there'), teamId },
        },
      );
      return d.explainRoute.candidates.map((c: any) => [c.model, c.skipReason]);
    };
    const calls = gw.sim.requests.length;
    expect(await explain(key.teamId)).toEqual([['m-budget', 'budget_exceeded']]);
    expect(await explain(other.teamId)).toEqual([['m-budget', null]]);
    expect(gw.sim.requests.length).toBe(calls); // an explanation calls no provider
    // What the explanation said: this team's request is refused, the other team's answered.
    expect(await call(gw, key.secret, 'hello there')).toMatchObject({ status: 429, code: 'budget_exceeded' });
    expect((await call(gw, other.secret, 'hello there')).status).toBe(200);
  });

  it('a burst of 50 concurrent requests against a budget that fits 2 never overshoots it', async () => {
    const key = await gw.createKey('team-burst');
    const estimate = await estimateOf('burst');
    const limitUsd = estimate * 2.5;
    const budget = await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'API_KEY', apiKeyId: key.id, period: 'MONTH', limitUsd, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();
    gw.sim.behave('m-budget', { latencyMs: 300, times: 50 });
    const results = await Promise.all(Array.from({ length: 50 }, () => call(gw, key.secret, 'burst')));
    const admitted = results.filter((r) => r.status === 200).length;
    expect(results.filter((r) => r.status !== 200).every((r) => r.status === 429 && r.code === 'budget_exceeded')).toBe(true);
    const status = await spentOf(gw, budget.id);
    // Each admitted request held its worst case until its receipt: while all 50 were in
    // flight only 2 fit; more are admitted only after earlier ones settled below their estimate.
    const actualEach = status.spentUsd / admitted;
    expect(admitted).toBeGreaterThanOrEqual(2);
    expect(admitted).toBeLessThanOrEqual(Math.floor(limitUsd / actualEach));
    expect(status.spentUsd).toBeLessThanOrEqual(limitUsd); // overshoot: none
    expect(status.reservedUsd).toBe(0);
    gw.sim.reset();
  });

  it('ALERT budgets never block; 50/80/100 % are reported once each, also to a signed, retried webhook', async () => {
    const key = await gw.createKey('team-alert');
    const budget = await gw.started.runtime.adminStore.pricing.setBudget({
      scope: 'FEATURE',
      feature: 'summaries',
      teamId: key.teamId,
      period: 'DAY',
      limitUsd: 0.02,
      action: 'ALERT',
      webhookUrl: hookUrl,
    });
    await gw.started.runtime.app.catalog.refresh();
    for (let i = 0; i < 6; i++) expect((await call(gw, key.secret, 'alert me', { 'x-tollgate-feature': 'summaries' })).status).toBe(200);
    // Requests without the feature are not covered.
    await call(gw, key.secret, 'alert me');
    const mine = events.filter((e) => e.budgetId === budget.id);
    expect(mine.map((e) => [e.kind, e.thresholdPct])).toEqual([
      ['THRESHOLD', 50],
      ['THRESHOLD', 80],
      ['EXCEEDED', 100],
    ]);
    expect(mine.every((e) => e.teamId === key.teamId && e.scope === 'FEATURE' && e.limitUsd === 0.02)).toBe(true);
    await gw.started.runtime.app.webhooks.drain();
    expect(hooks).toHaveLength(3); // the first delivery failed once and was retried
    for (const h of hooks) {
      const [t, v1] = h.signature.split(',').map((p) => p.split('=')[1]);
      expect(v1).toBe(createHmac('sha256', WEBHOOK_SECRET).update(`${t}.${h.body}`).digest('hex'));
    }
    // The retried first delivery arrives after the others: compare what arrived, not the order.
    expect(
      hooks
        .map((h) => JSON.parse(h.body))
        .map((e) => `${e.kind}:${e.thresholdPct}`)
        .sort(),
    ).toEqual(['EXCEEDED:100', 'THRESHOLD:50', 'THRESHOLD:80']);
  });
});

describe('without the counter store', () => {
  it('fails closed (503) for budgeted scopes unless the budget is failOpen; unbudgeted keys are unaffected', async () => {
    const gw = await startTestGateway({ env: { REDIS_URL: 'redis://127.0.0.1:1' } });
    try {
      await setup(gw);
      const closed = await gw.createKey('team-closed');
      const open = await gw.createKey('team-open');
      const free = await gw.createKey('team-unbudgeted');
      await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: closed.teamId, period: 'DAY', limitUsd: 10, action: 'BLOCK' });
      await gqlOk(gw.url, gw.adminToken, 'mutation($i: BudgetInput!) { setBudget(input: $i) { id failOpen } }', {
        i: { scope: 'TEAM', teamId: open.teamId, period: 'DAY', limitUsd: 10, action: 'BLOCK', failOpen: true },
      });
      await gw.started.runtime.app.catalog.refresh();
      const refused = await call(gw, closed.secret, 'x');
      expect(refused).toMatchObject({ status: 503, code: 'budget_store_unavailable' });
      expect((await call(gw, open.secret, 'x')).status).toBe(200);
      expect((await call(gw, free.secret, 'x')).status).toBe(200);
    } finally {
      await gw.close();
    }
  });
});

describe('at shutdown', () => {
  it('delivers the budget alerts still on their way before the connections close', async () => {
    const received: string[] = [];
    // A receiver that takes its time: the alert is still being delivered when the gateway stops.
    const receiver = http.createServer((req, res) => {
      let data = '';
      req.on('data', (c) => (data += c));
      req.on('end', () =>
        setTimeout(() => {
          received.push(data);
          res.writeHead(204).end();
        }, 400),
      );
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const gw = await startTestGateway({ env: { TOLLGATE_EGRESS_ALLOW: '127.0.0.1' } });
    try {
      await setup(gw);
      const key = await gw.createKey('team-shutdown-alert');
      const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const budget = await gw.started.runtime.adminStore.pricing.setBudget({
        scope: 'TEAM',
        teamId: key.teamId,
        period: 'DAY',
        limitUsd: 0.01,
        action: 'ALERT',
        webhookUrl: hookUrl,
      });
      await gw.started.runtime.app.catalog.refresh();
      const events: BudgetEvent[] = [];
      gw.started.runtime.app.bus.budgets.subscribe((e) => events.push(e));
      for (let i = 0; i < 10 && events.length === 0; i++) await call(gw, key.secret, 'spend a little');
      const deadline = Date.now() + 5000;
      while (!events.some((e) => e.budgetId === budget.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(events.some((e) => e.budgetId === budget.id)).toBe(true);
    } finally {
      await gw.close(); // at once: the first alert is still on its way
    }
    expect(received.length).toBeGreaterThan(0);
    expect(JSON.parse(received[0]!)).toMatchObject({ kind: expect.stringMatching(/THRESHOLD|EXCEEDED/) });
    receiver.close();
  });
});

describe('after a restart', () => {
  it('rebuilds spend from the receipts and keeps blocking', async () => {
    const first = await startTestGateway({ keepDataDir: true, env: { REDIS_URL: '' } });
    const dataDir = first.dataDir;
    await setup(first);
    const key = await first.createKey('team-restart');
    const budget = await first.started.runtime.adminStore.pricing.setBudget({
      scope: 'TEAM',
      teamId: key.teamId,
      period: 'TOTAL',
      limitUsd: 0.04,
      action: 'BLOCK',
    });
    await first.started.runtime.app.catalog.refresh();
    let last = 200;
    for (let i = 0; i < 10 && last === 200; i++) last = (await call(first, key.secret, 'restart')).status;
    expect(last).toBe(429);
    const before = await spentOf(first, budget.id);
    await first.close();
    const second = await startTestGateway({ dataDir, env: { REDIS_URL: '', DATABASE_URL: first.config.databaseUrl ?? '' } });
    try {
      await setup(second);
      expect((await call(second, key.secret, 'restart')).status).toBe(429);
      const after = await spentOf(second, budget.id);
      expect(after.spentUsd).toBeCloseTo(before.spentUsd, 9);
    } finally {
      await second.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
