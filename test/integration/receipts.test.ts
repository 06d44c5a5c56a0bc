// Receipts: land in ClickHouse, verify offline with the published key, fail verification
// when anything changes, and chain so that a deleted receipt shows.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli.js';
import type { Receipt } from '../../src/receipts/receipt.js';
import { fetchReceipt } from '../../src/receipts/rows.js';
import { verifyChain, verifyReceipt } from '../../src/receipts/verify.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let secret: string;
let jwks: any;
const ids: string[] = [];

beforeAll(async () => {
  gw = await startTestGateway();
  secret = (await gw.createKey('team-receipts')).secret;
  jwks = await (await fetch(`${gw.url}/.well-known/tollgate/receipt-keys`)).json();
  const client = gw.client(secret);
  for (let i = 0; i < 6; i++) {
    const stream = i % 2 === 1;
    const req = client.chat.completions.create({
      model: i === 4 ? 'sim-b/unpriced-model' : 'chat-default',
      messages: [{ role: 'user', content: `question ${i} — ünïcødé ✓` }],
      stream,
    } as any);
    const { response, data } = await req.withResponse();
    if (stream) for await (const _ of data as any) void _;
    ids.push(response.headers.get('x-tollgate-receipt-id')!);
  }
  await gw.started.runtime.journal.flush();
});
afterAll(async () => {
  await gw?.close();
});

describe('receipt signatures', () => {
  it('publishes an Ed25519 JWK set', () => {
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', kid: expect.any(String), x: expect.any(String) });
  });

  it('serves receipts rebuilt from ClickHouse that verify with the public key', async () => {
    const client = gw.started.runtime.clickhouse.client;
    for (const id of ids) {
      const stored = await fetchReceipt(client, id);
      expect(stored, `receipt ${id} in ClickHouse`).not.toBeNull();
      expect(verifyReceipt(stored!, jwks)).toEqual({ valid: true });
    }
    const unpriced = (await fetchReceipt(client, ids[4]!))!;
    expect(unpriced.cost_usd).toBeNull();
    expect(unpriced.price_version).toBeNull();
    const priced = (await fetchReceipt(client, ids[0]!))!;
    expect(priced.cost_usd).toBeGreaterThan(0);
    expect(priced.price_version).toEqual(expect.any(Number));
    expect(priced.stream).toBe(false);
    expect((await fetchReceipt(client, ids[1]!))!.stream).toBe(true);
  });

  it('serves a receipt made a moment ago, before it is in ClickHouse, signed as it is stored', async () => {
    const { response } = await gw
      .client(secret)
      .chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: 'a fresh one' }] })
      .withResponse();
    const id = response.headers.get('x-tollgate-receipt-id')!;
    // Straight from the gateway's memory: appended unsigned, signed when it is asked for.
    const res = await fetch(`${gw.baseURL}/receipts/${id}`, { headers: { authorization: `Bearer ${secret}` } });
    expect(res.status).toBe(200);
    const served = (await res.json()) as Receipt;
    expect(verifyReceipt(served, jwks)).toEqual({ valid: true });
    // The worker signs the same bytes for ClickHouse.
    await gw.started.runtime.journal.flush();
    expect(await fetchReceipt(gw.started.runtime.clickhouse.client, id)).toEqual(served);
  });

  it('fails verification when any field changes, or with another key', async () => {
    const res = await fetch(`${gw.baseURL}/receipts/${ids[0]}`, { headers: { authorization: `Bearer ${secret}` } });
    const receipt = (await res.json()) as Receipt;
    expect(verifyReceipt(receipt, jwks).valid).toBe(true);
    const tampered: Array<Partial<Receipt>> = [
      { cost_usd: 0 },
      { prompt_tokens: receipt.prompt_tokens + 1 },
      { status: 'error' },
      { team_id: 'someone-else' },
      { model: 'gpt-4o' },
      { seq: receipt.seq + 1 },
      { started_at: new Date(Date.parse(receipt.started_at) + 1).toISOString() },
    ];
    for (const change of tampered) expect(verifyReceipt({ ...receipt, ...change }, jwks).valid, JSON.stringify(change)).toBe(false);
    expect(verifyReceipt({ ...receipt, extra_field: 1 } as any, jwks).valid).toBe(false);
    const otherKey = { keys: [{ ...jwks.keys[0], x: jwks.keys[0].x.replace(/^./, (c: string) => (c === 'A' ? 'B' : 'A')) }] };
    expect(verifyReceipt(receipt, otherKey).valid).toBe(false);
  });

  it('tollgate verify-receipt checks a receipt file offline', async () => {
    const res = await fetch(`${gw.baseURL}/receipts/${ids[1]}`, { headers: { authorization: `Bearer ${secret}` } });
    const receipt = (await res.json()) as Receipt;
    const file = path.join(gw.dataDir, 'receipt.json');
    const keysFile = path.join(gw.dataDir, 'keys.json');
    await writeFile(keysFile, JSON.stringify(jwks));
    await writeFile(file, JSON.stringify(receipt));
    expect(await runCli(['verify-receipt', file, '--keys', keysFile])).toBe(0);
    await writeFile(file, JSON.stringify({ ...receipt, completion_tokens: 0 }));
    expect(await runCli(['verify-receipt', file, '--keys', keysFile])).toBe(1);
  });
});

describe('receipt chain', () => {
  it('chains every receipt of the instance and detects a deleted one', async () => {
    const client = gw.started.runtime.clickhouse.client;
    const rows = await client.query({
      query: 'SELECT receipt_id FROM receipts WHERE instance_id = {instance:String} ORDER BY seq',
      query_params: { instance: gw.started.runtime.journal.instanceId },
      format: 'JSONEachRow',
    });
    const all = (await rows.json()) as Array<{ receipt_id: string }>;
    expect(all.length).toBeGreaterThanOrEqual(ids.length);
    const receipts = (await Promise.all(all.map((r) => fetchReceipt(client, r.receipt_id)))) as Receipt[];
    expect(verifyChain(receipts)).toEqual({ valid: true, breaks: [] });

    const withoutOne = receipts.filter((_, i) => i !== 2);
    const result = verifyChain(withoutOne);
    expect(result.valid).toBe(false);
    expect(result.breaks[0]!.seq).toBe(receipts[3]!.seq);

    const edited = receipts.map((r, i) => (i === 1 ? { ...r, cost_usd: 123 } : r));
    expect(verifyChain(edited).valid).toBe(false);
  });
});

describe('embedded engine', () => {
  it("removes merged-away parts of Tollgate's tables one at a time (no burst of idle threads); a server's tables are left alone", async () => {
    const { client, kind } = gw.started.runtime.clickhouse;
    const rs = await client.query({
      query: "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'",
      format: 'JSONEachRow',
    });
    const tables = await rs.json<{ name: string; engine_full: string }>();
    expect(tables.map((t) => t.name)).toContain('receipts');
    for (const t of tables) expect([t.name, t.engine_full.includes('concurrent_part_removal_threshold = 1000000')]).toEqual([t.name, kind === 'chdb']);
  });
});
