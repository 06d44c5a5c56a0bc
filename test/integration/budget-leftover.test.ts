// A budget counter rebuilt while the receipts the previous run left in the WAL are still on
// their way into ClickHouse (after a kill -9, or a restart during a ClickHouse outage): they
// count before their replay lands, and exactly once after. Real chDB, real WAL files.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { periodWindow } from '../../src/budgets/periods.js';
import { LeftoverSpend, spentInWindow } from '../../src/budgets/spend.js';
import { ReceiptJournal } from '../../src/receipts/journal.js';
import type { ReceiptDraft } from '../../src/receipts/receipt.js';
import { ReceiptSigner } from '../../src/receipts/signer.js';
import type { BudgetRecord } from '../../src/store/admin/pricing.js';
import { type ClickHouseStore, openClickHouse, type RowsInserter } from '../../src/store/clickhouse.js';
import { migrateClickHouse } from '../../src/store/clickhouse-migrate.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'tollgate-budget-leftover-'));
let store: ClickHouseStore;

beforeAll(async () => {
  store = await openClickHouse({ dataDir: path.join(root, 'chdb') });
  await migrateClickHouse(store.client);
}, 60_000);
afterAll(async () => {
  await store?.close();
  rmSync(root, { recursive: true, force: true });
});

function draft(teamId: string, apiKeyId: string, feature: string | null, costUsd: number): ReceiptDraft {
  const now = new Date().toISOString();
  return {
    receipt_id: uuidv7(),
    request_id: uuidv7(),
    started_at: now,
    finished_at: now,
    team_id: teamId,
    api_key_id: apiKeyId,
    feature,
    task_id: null,
    end_user: null,
    endpoint: '/v1/chat/completions',
    requested_model: 'chat-default',
    route: 'chat-default',
    strategy: 'PRIORITY',
    provider: 'sim',
    model: 'sim-chat',
    attempts: [{ provider: 'sim', model: 'sim-chat', status: 200, error: null, latency_ms: 1 }],
    status: 'ok',
    http_status: 200,
    error_code: null,
    stream: false,
    ttft_ms: null,
    latency_ms: 2,
    upstream_ms: 1,
    overhead_ms: 1,
    prompt_tokens: 10,
    completion_tokens: 10,
    cached_tokens: 0,
    usage_estimated: false,
    cost_usd: costUsd,
    price_version: 1,
    cache_status: 'bypass',
    cache_similarity: null,
    saved_cost_usd: null,
    request_sha256: 'a'.repeat(64),
    response_sha256: 'b'.repeat(64),
  };
}

const budget = (b: Pick<BudgetRecord, 'scope' | 'teamId' | 'apiKeyId' | 'feature'>): BudgetRecord => ({
  id: uuidv7(),
  period: 'DAY',
  limitUsd: 1,
  action: 'BLOCK',
  webhookUrl: null,
  failOpen: false,
  imposed: true,
  createdAt: new Date(),
  updatedAt: new Date(),
  ...b,
});

it('counts receipts the previous run left in the WAL before their replay lands, and once after', async () => {
  const team = `team-${uuidv7()}`;
  const dataDir = path.join(root, 'gateway');
  const signer = await ReceiptSigner.open(dataDir);
  const options = { dataDir, signer, sync: 'write', batchMaxRows: 100, batchMaxMs: 10, closeTimeoutMs: 20 } as const;

  // The previous run: two receipts land, then ClickHouse goes down and three stay in the WAL
  // when it stops (one of another team's, which must not count).
  let down = false;
  const switchable: RowsInserter = (...args) => (down ? Promise.reject(new Error('ClickHouse is down')) : store.insertRows(...args));
  const previous = await ReceiptJournal.open({ ...options, insertRows: switchable });
  await previous.append(draft(team, 'key-a', 'search', 0.01));
  await previous.append(draft(team, 'key-b', null, 0.02));
  expect(await previous.flush()).toBe(true);
  down = true;
  await previous.append(draft(team, 'key-a', 'search', 0.1));
  await previous.append(draft(team, 'key-b', 'search', 0.2));
  await previous.append(draft('another-team', 'key-c', 'search', 0.4));
  await previous.close();

  // This run: the replay is held (ClickHouse still catching up) while the counters are rebuilt.
  const leftover = new LeftoverSpend();
  let land!: () => void;
  const landing = new Promise<void>((resolve) => {
    land = resolve;
  });
  const held: RowsInserter = async (...args) => {
    await landing;
    return store.insertRows(...args);
  };
  const current = await ReceiptJournal.open({ ...options, insertRows: held, onLeftover: (r) => leftover.add(r) });
  const window = periodWindow('DAY', Date.now());
  const spent = (b: BudgetRecord) => spentInWindow(store.client, 'receipts', b, window, leftover);
  const teamBudget = budget({ scope: 'TEAM', teamId: team, apiKeyId: null, feature: null });
  const keyBudget = budget({ scope: 'API_KEY', teamId: team, apiKeyId: 'key-a', feature: null });
  const featureOfTeam = budget({ scope: 'FEATURE', teamId: team, apiKeyId: null, feature: 'search' });
  const featureOfAll = budget({ scope: 'FEATURE', teamId: null, apiKeyId: null, feature: 'search' });
  const expected = [0.33, 0.11, 0.31, 0.71];
  const all = () => Promise.all([teamBudget, keyBudget, featureOfTeam, featureOfAll].map(spent));

  // ClickHouse alone has only the two that landed.
  expect(await spentInWindow(store.client, 'receipts', teamBudget, window)).toBeCloseTo(0.03, 9);
  for (const [i, usd] of (await all()).entries()) expect(usd, `budget ${i} before the replay`).toBeCloseTo(expected[i]!, 9);

  land();
  expect(await current.flush(10_000)).toBe(true);
  expect(await spentInWindow(store.client, 'receipts', teamBudget, window)).toBeCloseTo(0.33, 9);
  for (const [i, usd] of (await all()).entries()) expect(usd, `budget ${i} after the replay`).toBeCloseTo(expected[i]!, 9);
  await current.close();
}, 60_000);
