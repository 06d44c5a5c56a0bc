// Redis stops mid-run (a TCP fault proxy in front of the machine's Redis resets every
// connection), then comes back. The documented fallback per feature:
//   budgets     → 503 budget_store_unavailable, unless the budget is failOpen (its spend is
//                 booked once Redis is back)
//   rate limits → counted in this process until Redis is back
//   exact cache → this instance's memory (misses where only Redis had the entry)
//   live events → still delivered on this instance
// and nothing is lost. Needs REDIS_URL (the stores phase of .ci/run runs this file).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RoutingDecision } from '../../src/live/events.js';
import { fetchReceipt } from '../../src/receipts/rows.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { chat, eventually, expectNothingLost } from './support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const REDIS_URL = process.env.REDIS_URL;

describe.runIf(REDIS_URL)('Redis stopped mid-run', () => {
  let proxy: TcpProxy;
  let gw: TestGateway;
  const completed: string[] = [];

  beforeAll(async () => {
    const target = new URL(REDIS_URL!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    gw = await startTestGateway({ env: { REDIS_URL: proxy.via(REDIS_URL!) } });
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({ name: 'cached', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'sim-large' }], cache: { mode: 'EXACT' } });
    await gw.started.runtime.app.catalog.refresh();
  });
  afterAll(async () => {
    await gw?.close();
    await proxy?.close();
  });

  it('budgets fail closed (or open), rate limits and the cache fall back, events flow, nothing is lost', async ({ annotate }) => {
    const budgeted = await gw.createKey('team-budgeted');
    const failOpen = await gw.createKey('team-fail-open');
    const limited = await gw.createKey('team-limited', { rpmLimit: 1000 });
    const store = gw.started.runtime.adminStore;
    await store.pricing.setBudget({ scope: 'TEAM', teamId: budgeted.teamId, period: 'DAY', limitUsd: 100, action: 'BLOCK' });
    await store.pricing.setBudget({ scope: 'TEAM', teamId: failOpen.teamId, period: 'DAY', limitUsd: 100, action: 'BLOCK', failOpen: true });
    await gw.started.runtime.app.catalog.refresh();
    const send = async (secret: string, content: string, model = 'chat-default') => {
      const r = await chat(gw.baseURL, secret, { model, temperature: 0, messages: [{ role: 'user', content }] });
      if (r.completed) completed.push(r.receiptId!);
      return r;
    };

    // Healthy: everything works through Redis.
    expect((await send(budgeted.secret, 'before')).status).toBe(200);
    const openIds = [(await send(failOpen.secret, 'before')).receiptId!];
    expect((await send(limited.secret, 'shared answer', 'cached')).headers.get('x-tollgate-cache')).toBe('miss');

    proxy.setMode('reset');
    const decisions: RoutingDecision[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    try {
      const refused = await send(budgeted.secret, 'during');
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.text).error.code).toBe('budget_store_unavailable');
      const openDuring = await send(failOpen.secret, 'during');
      expect(openDuring.status).toBe(200);
      openIds.push(openDuring.receiptId!);
      const limitedDuring = await send(limited.secret, 'during');
      expect(limitedDuring.status).toBe(200);
      expect(limitedDuring.headers.get('x-ratelimit-limit-requests')).toBe('1000');
      // The entry stored before the outage is still in this instance's memory.
      expect((await send(limited.secret, 'shared answer', 'cached')).headers.get('x-tollgate-cache')).toBe('exact');
      const fresh = await send(limited.secret, 'stored during the outage', 'cached');
      expect(fresh.headers.get('x-tollgate-cache')).toBe('miss');
      expect((await send(limited.secret, 'stored during the outage', 'cached')).headers.get('x-tollgate-cache')).toBe('exact');
      expect(decisions.some((d) => d.outcome === 'SUCCESS')).toBe(true);
      expect(decisions.some((d) => d.reason === 'budget_store_unavailable' && d.teamId === budgeted.teamId)).toBe(true);
    } finally {
      unsubscribe();
    }
    expect(gw.started.runtime.answers!.stats().redisErrors).toBeGreaterThan(0);

    // Redis is back: the budgeted team is admitted again once ioredis has reconnected.
    proxy.setMode('pass');
    await eventually(async () => (await send(budgeted.secret, 'after')).status === 200, 20_000, 'budgets admit again after Redis returns');

    // The failOpen team's request admitted during the outage is booked once Redis is back
    // (its settlement retried in the background): the counter matches the receipts.
    const ch = gw.started.runtime.clickhouse.client;
    await gw.started.runtime.journal.flush();
    const billed = (await Promise.all(openIds.map((id) => fetchReceipt(ch, id)))).reduce((sum, r) => sum + r!.cost_usd!, 0);
    expect(billed).toBeGreaterThan(0);
    const openBudget = gw.started.runtime.app.catalog.budgets.find((b) => b.teamId === failOpen.teamId)!;
    await eventually(
      async () => Math.abs((await gw.started.runtime.app.budgets!.status(openBudget)).spentUsd - billed) < 1e-9,
      20_000,
      'the outage spend is booked',
    );

    const report = await expectNothingLost(gw.started.runtime.clickhouse.client, { completed, maxExtra: 10 });
    await annotate(
      `Redis down: budget (fail-closed) → 503 budget_store_unavailable, failOpen budget → 200, rate limit counted locally (200), exact cache served from memory (${gw.started.runtime.answers!.stats().redisErrors} Redis errors counted), ${decisions.length} live decisions delivered; back: admitted again; ${completed.length} completed → ${report.rows} receipts`,
      'observed',
    );
  });
});
