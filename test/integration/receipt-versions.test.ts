// Receipt format versions (DESIGN §6): a receipt stored before version 2 existed keeps
// verifying after the upgrade, served with exactly the fields it was signed with; a version 2
// receipt carries the new fields and verifies too. Real chDB, real migrations.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unsignedReceipt } from '../../src/receipts/normalize.js';
import type { ReceiptDraft } from '../../src/receipts/receipt.js';
import { fetchReceipt, RECEIPT_INSERT_SETTINGS, RECEIPT_V1_FIELDS, receiptToRow } from '../../src/receipts/rows.js';
import { canonicalUnsignedJson, ReceiptSigner } from '../../src/receipts/signer.js';
import { canonicalJson, verifyReceipt } from '../../src/receipts/verify.js';
import { type ClickHouseStore, openClickHouse } from '../../src/store/clickhouse.js';
import { migrateClickHouse, migrationsDir } from '../../src/store/clickhouse-migrate.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'tollgate-receipt-versions-'));
let store: ClickHouseStore;
const signer = ReceiptSigner.ephemeral();
const jwks = signer.jwks();

function draft(extra: Partial<ReceiptDraft> = {}): ReceiptDraft {
  const at = Date.UTC(2026, 10, 30, 12, 0, 0);
  return {
    receipt_id: uuidv7(),
    request_id: 'req-1',
    started_at: new Date(at).toISOString(),
    finished_at: new Date(at + 812).toISOString(),
    team_id: 'team-v',
    api_key_id: 'key-v',
    feature: 'search',
    task_id: 'task-1',
    end_user: null,
    endpoint: '/v1/chat/completions',
    requested_model: 'chat-default',
    route: 'chat-default',
    strategy: 'PRIORITY',
    provider: 'sim',
    model: 'sim-large',
    attempts: [{ provider: 'sim', model: 'sim-large', status: 200, error: null, latency_ms: 800.5 }],
    status: 'ok',
    http_status: 200,
    error_code: null,
    stream: false,
    ttft_ms: null,
    latency_ms: 812,
    upstream_ms: 800.5,
    overhead_ms: 11.5,
    prompt_tokens: 12,
    completion_tokens: 30,
    cached_tokens: 0,
    usage_estimated: false,
    cost_usd: 0.0000198,
    price_version: 3,
    cache_status: 'miss',
    cache_similarity: null,
    saved_cost_usd: null,
    request_sha256: 'a'.repeat(64),
    response_sha256: 'b'.repeat(64),
    ...extra,
  };
}

const chain = (seq: number) => ({ instance_id: 'instance-v', seq, prev_hash: '0'.repeat(64), key_id: signer.keyId });

beforeAll(async () => {
  store = await openClickHouse({ dataDir: root });
  // The schema as it was before version 2: migrations 001–004 only.
  const before = path.join(root, 'migrations-before');
  mkdirSync(before);
  for (const f of readdirSync(migrationsDir())) if (f < '005') copyFileSync(path.join(migrationsDir(), f), path.join(before, f));
  await migrateClickHouse(store.client, { dir: before });
}, 60_000);

afterAll(async () => {
  await store?.close();
  rmSync(root, { recursive: true, force: true });
});

describe('receipt versions', () => {
  it('a version 1 receipt stored before the upgrade still verifies after it, with only its own fields', async () => {
    const v1 = unsignedReceipt(draft(), chain(1));
    expect(v1).not.toHaveProperty('receipt_version');
    const signed = { ...v1, signature: signer.sign(v1) };
    // Written as the old gateway wrote it: the version 1 columns only.
    const row = receiptToRow(signed) as unknown as Record<string, unknown>;
    const oldRow = Object.fromEntries(RECEIPT_V1_FIELDS.map((f) => [f, row[f]]));
    await store.client.insert({ table: 'receipts', values: [oldRow], format: 'JSONEachRow', clickhouse_settings: RECEIPT_INSERT_SETTINGS });

    const upgrade = await migrateClickHouse(store.client);
    expect(upgrade.applied).toContain('005_receipt_v2.sql');

    const back = (await fetchReceipt(store.client, v1.receipt_id))!;
    expect(back).not.toBeNull();
    expect(Object.keys(back).sort()).toEqual([...RECEIPT_V1_FIELDS].sort());
    expect(verifyReceipt(back, jwks)).toEqual({ valid: true });
    // Tampering is still caught: the check is not vacuous.
    expect(verifyReceipt({ ...back, cost_usd: 1 }, jwks).valid).toBe(false);
  });

  it('a version 2 receipt carries the new fields, per attempt too, round-trips through ClickHouse and verifies', async () => {
    const v2 = unsignedReceipt(
      draft({
        receipt_version: 2,
        task_type: 'extract',
        rule: 'long-context',
        classifier_tier: 'COMPLEX',
        experiment: 'ds-vs-gpt',
        variant: 'candidate',
        accepted: false,
        reasoning_tokens: 7,
        cache_write_tokens: 4,
        attempts: [
          {
            provider: 'sim',
            model: 'cheap',
            status: 200,
            error: null,
            latency_ms: 300.25,
            prompt_tokens: 12,
            completion_tokens: 10,
            cost_usd: 0.000001,
            accepted: false,
            reject_reason: 'json: not valid JSON',
          },
          {
            provider: 'sim',
            model: 'strong',
            status: 200,
            error: null,
            latency_ms: 500.25,
            prompt_tokens: 12,
            completion_tokens: 20,
            cost_usd: 0.0000188,
            accepted: false,
            reject_reason: 'not_truncated',
          },
        ],
      }),
      chain(2),
    );
    expect(v2.receipt_version).toBe(2);
    // The fast canonical form is RFC 8785's, for the new layout as for the old.
    expect(canonicalUnsignedJson(v2)).toBe(canonicalJson(v2));
    const signed = { ...v2, signature: signer.sign(v2) };
    await store.client.insert({ table: 'receipts', values: [receiptToRow(signed)], format: 'JSONEachRow', clickhouse_settings: RECEIPT_INSERT_SETTINGS });

    const back = (await fetchReceipt(store.client, v2.receipt_id))!;
    expect(back).toMatchObject({
      receipt_version: 2,
      task_type: 'extract',
      rule: 'long-context',
      classifier_tier: 'COMPLEX',
      experiment: 'ds-vs-gpt',
      variant: 'candidate',
      accepted: false,
      reasoning_tokens: 7,
      cache_write_tokens: 4,
    });
    expect(back.attempts[0]).toEqual({
      provider: 'sim',
      model: 'cheap',
      status: 200,
      error: null,
      latency_ms: 300.25,
      prompt_tokens: 12,
      completion_tokens: 10,
      cost_usd: 0.000001,
      accepted: false,
      reject_reason: 'json: not valid JSON',
    });
    expect(verifyReceipt(back, jwks)).toEqual({ valid: true });
    expect(verifyReceipt({ ...back, variant: 'control' }, jwks).valid).toBe(false);
  });

  it('a version 2 receipt with every new field absent stores and reads them as nulls and zeros', async () => {
    const v2 = unsignedReceipt(
      draft({ receipt_version: 2, attempts: [{ provider: 'p', model: 'm', status: 0, error: 'connect_refused', latency_ms: 1 }] }),
      chain(3),
    );
    const signed = { ...v2, signature: signer.sign(v2) };
    await store.client.insert({ table: 'receipts', values: [receiptToRow(signed)], format: 'JSONEachRow', clickhouse_settings: RECEIPT_INSERT_SETTINGS });
    const back = (await fetchReceipt(store.client, v2.receipt_id))!;
    expect(back).toMatchObject({ receipt_version: 2, task_type: null, rule: null, accepted: null, reasoning_tokens: 0, cache_write_tokens: 0 });
    expect(back.attempts[0]).toMatchObject({ prompt_tokens: null, cost_usd: null, accepted: null, reject_reason: null });
    expect(verifyReceipt(back, jwks)).toEqual({ valid: true });
  });
});
