// PostgreSQL (the config store) stops mid-run: a TCP fault proxy in front of the machine's
// PostgreSQL resets every connection, then lets them through again. Known keys keep working
// from the auth cache, routing keeps its last good catalog, admin mutations fail with a clear
// error, and nothing is lost. Needs DATABASE_URL (the stores phase of .ci/run runs this file).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKeySecret } from '../../src/store/credentials.js';
import { scratchDatabase, startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql } from '../support/graphql.js';
import { chat, eventually, expectNothingLost } from './support.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';

const DATABASE_URL = process.env.DATABASE_URL;

describe.runIf(DATABASE_URL)('PostgreSQL stopped mid-run', () => {
  let proxy: TcpProxy;
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let gw: TestGateway;
  const completed: string[] = [];

  beforeAll(async () => {
    db = await scratchDatabase();
    const target = new URL(db!.url);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    // A short auth cache, so that the outage is really served from stale entries.
    gw = await startTestGateway({ env: { DATABASE_URL: proxy.via(db!.url), TOLLGATE_AUTH_CACHE_MS: '100', REDIS_URL: '' } });
  });
  afterAll(async () => {
    await gw?.close();
    await proxy?.close();
    await db?.drop().catch(() => undefined);
  });

  it('known keys keep working, unknown ones and admin mutations get 503, nothing is lost', async ({ annotate }) => {
    const known = await gw.createKey('team-known');
    const send = async (secret: string, content: string) => {
      const r = await chat(gw.baseURL, secret, { model: 'chat-default', messages: [{ role: 'user', content }] });
      if (r.completed) completed.push(r.receiptId!);
      return r;
    };
    // A team whose budget is already too small for one more request.
    const capped = await gw.createKey('team-capped');
    await gw.started.runtime.adminStore.pricing.setBudget({ scope: 'TEAM', teamId: capped.teamId, period: 'DAY', limitUsd: 0.000001, action: 'BLOCK' });
    await gw.started.runtime.app.catalog.refresh();
    expect((await send(known.secret, 'before')).status).toBe(200);
    expect((await send(capped.secret, 'before')).status).toBe(429);

    proxy.setMode('reset');
    await new Promise((r) => setTimeout(r, 300)); // past the auth cache TTL: lookups now hit the dead store
    for (let i = 0; i < 5; i++) expect((await send(known.secret, `during ${i}`)).status).toBe(200);
    // Budgets keep being enforced from the last good catalog (they live there, not in PostgreSQL's answers per request).
    const cappedDuring = await send(capped.secret, 'during');
    expect(cappedDuring.status).toBe(429);
    expect(JSON.parse(cappedDuring.text).error.code).toBe('budget_exceeded');
    const unknown = await send(generateApiKeySecret(), 'unknown');
    expect(unknown.status).toBe(503); // a well-formed key nobody has seen: cannot be verified now
    // The REST endpoints say the same (they answered 500 internal_error).
    const models = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${generateApiKeySecret()}` } });
    expect(models.status).toBe(503);
    expect(((await models.json()) as any).error.type).toBe('api_error');
    const mutation = await gql(
      gw.url,
      gw.adminToken,
      'mutation { upsertRoute(input: { name: "x", strategy: PRIORITY, targets: [{ provider: "sim", model: "m" }] }) { id } }',
    );
    expect(mutation.data?.upsertRoute ?? null).toBeNull();
    expect(mutation.status).toBe(503);
    expect(mutation.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');

    proxy.setMode('pass');
    await eventually(async () => (await gql(gw.url, gw.adminToken, '{ routes { name } }')).data?.routes?.length > 0, 20_000, 'the config store answers again');
    expect((await send(known.secret, 'after')).status).toBe(200);

    await gw.started.runtime.journal.flush();
    const report = await expectNothingLost(gw.started.runtime.clickhouse.client, { completed, maxExtra: 7 });
    await annotate(
      `PostgreSQL down: known key 5/5 answered from the auth cache, over-budget team still 429 budget_exceeded (last good catalog), unknown key → 503, admin mutation → 503 SERVICE_UNAVAILABLE; back: admin answers again; ${completed.length} completed → ${report.rows} receipts (refusals included), chain verifies`,
      'observed',
    );
  });
});
