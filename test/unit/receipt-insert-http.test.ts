// What the receipts journal sends to a ClickHouse server over HTTP: the batch body that the
// worker thread prepared, as is (RowBinaryWithNamesAndTypes, signed rows), with the
// deduplication token and the insert settings, and only then is the WAL segment released. A
// stand-in server records the requests; the bodies it received are then inserted into the
// embedded engine and read back (the embedded path: test/integration/journal.test.ts).
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ReceiptJournal } from '../../src/receipts/journal.js';
import type { Receipt, ReceiptDraft } from '../../src/receipts/receipt.js';
import { fetchReceipt, RECEIPT_COLUMNS } from '../../src/receipts/rows.js';
import { SegmentWorker } from '../../src/receipts/segment-preparer.js';
import { canonicalUnsignedJson, ReceiptSigner } from '../../src/receipts/signer.js';
import { verifyChain, verifyReceipt } from '../../src/receipts/verify.js';
import { sha256Hex } from '../../src/receipts/wal.js';
import { execRowsInserter, openClickHouse } from '../../src/store/clickhouse.js';
import { migrateClickHouse } from '../../src/store/clickhouse-migrate.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'tollgate-insert-http-'));
const requests: Array<{ method: string; url: URL; body: Buffer }> = [];
let failNext = 0;
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    requests.push({ method: req.method!, url: new URL(req.url!, 'http://x'), body: Buffer.concat(chunks) });
    if (failNext > 0) {
      failNext--;
      res.writeHead(500, { 'x-clickhouse-exception-code': '999' }).end('Code: 999. DB::Exception: simulated failure');
      return;
    }
    res.writeHead(200, { 'x-clickhouse-summary': '{"written_rows":"0"}' }).end();
  });
});

beforeAll(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
afterAll(async () => {
  await new Promise((r) => server.close(r));
  rmSync(tmp, { recursive: true, force: true });
});

const draft = (i: number): ReceiptDraft => ({
  receipt_id: uuidv7(),
  request_id: `req_${i}`,
  started_at: '2026-11-21T22:00:00.123Z',
  finished_at: '2026-11-21T22:00:01.000Z',
  team_id: 'team_http',
  api_key_id: null,
  feature: i % 2 ? 'résumé ✨' : null,
  task_id: null,
  end_user: null,
  endpoint: '/v1/chat/completions',
  requested_model: 'chat-default',
  route: 'chat-default',
  strategy: 'PRIORITY',
  provider: 'sim',
  model: 'sim-chat',
  attempts: [{ provider: 'sim', model: 'sim-chat', status: 200, error: null, latency_ms: 1.25 }],
  status: 'ok',
  http_status: 200,
  error_code: null,
  stream: false,
  ttft_ms: null,
  latency_ms: 2.5,
  upstream_ms: 2,
  overhead_ms: 0.5,
  prompt_tokens: 10,
  completion_tokens: 16,
  cached_tokens: 0,
  usage_estimated: false,
  cost_usd: i % 3 ? 1.5e-7 : null,
  price_version: i % 3 ? 1 : null,
  cache_status: 'miss',
  cache_similarity: null,
  saved_cost_usd: null,
  request_sha256: 'a'.repeat(64),
  response_sha256: null,
});

it('sends the prepared rows as is, with the dedup token, and retries the same bytes after a failure', async () => {
  const dataDir = path.join(tmp, 'journal');
  const signer = await ReceiptSigner.open(dataDir);
  const { port } = server.address() as AddressInfo;
  const client = createClient({ url: `http://127.0.0.1:${port}`, log: { level: ClickHouseLogLevel.OFF } });
  const worker = new SegmentWorker(ReceiptSigner.privateKeyOf(signer), signer.keyId);
  const prepared: string[] = [];
  const preparer = {
    prepare: (file: string) => {
      prepared.push(path.basename(file));
      return worker.prepare(file);
    },
    recycle: (body: Uint8Array) => worker.recycle(body),
    close: () => worker.close(),
  };
  const journal = await ReceiptJournal.open({
    dataDir,
    signer,
    insertRows: execRowsInserter(client),
    sync: 'write',
    batchMaxRows: 5,
    batchMaxMs: 20,
    retryMaxDelayMs: 50,
    preparer,
  });
  failNext = 1;
  const appended = await Promise.all(Array.from({ length: 7 }, (_, i) => journal.append(draft(i))));
  await journal.flush();
  await journal.close();
  await client.close();

  // Segment 1 failed once and was sent again, byte for byte, without being prepared again; then segment 2.
  expect(requests).toHaveLength(3);
  expect(prepared).toEqual(['000000000001.jsonl', '000000000002.jsonl']);
  const [failed, first, second] = requests;
  expect(failed.body.equals(first.body)).toBe(true);
  for (const r of requests) {
    expect(r.method).toBe('POST');
    expect(r.url.searchParams.get('query')).toBe(`INSERT INTO receipts (${RECEIPT_COLUMNS.join(', ')}) FORMAT RowBinaryWithNamesAndTypes`);
    expect(r.url.searchParams.get('insert_deduplicate')).toBe('1');
    expect(r.url.searchParams.get('deduplicate_blocks_in_dependent_materialized_views')).toBe('1');
    expect(r.url.searchParams.get('async_insert')).toBe('0');
  }
  // The token names the segment and the hash of its last WAL line (the receipt without signature).
  expect(first.url.searchParams.get('insert_deduplication_token')).toBe(`${journal.instanceId}:1:${sha256Hex(canonicalUnsignedJson(appended[4]))}`);
  expect(second.url.searchParams.get('insert_deduplication_token')).toBe(`${journal.instanceId}:2:${sha256Hex(canonicalUnsignedJson(appended[6]))}`);

  // Every row is the stored form of a signed receipt that verifies, in chain order: the bodies
  // as received, inserted into the engine and read back.
  const store = await openClickHouse({ dataDir: path.join(tmp, 'engine') });
  try {
    await migrateClickHouse(store.client, {});
    const count = async () =>
      Number((await (await store.client.query({ query: 'SELECT count() AS c FROM receipts', format: 'JSONEachRow' })).json<{ c: string }>())[0]!.c);
    await store.insertRows({ table: 'receipts', columns: RECEIPT_COLUMNS, body: first.body, settings: {} });
    expect(await count()).toBe(5);
    await store.insertRows({ table: 'receipts', columns: RECEIPT_COLUMNS, body: second.body, settings: {} });
    expect(await count()).toBe(7);
    const receipts = await Promise.all(appended.map((r) => fetchReceipt(store.client, r.receipt_id)));
    expect(receipts).toEqual(appended.map((r) => journal.sign(r)));
    for (const r of receipts) expect(verifyReceipt(r!, signer.jwks())).toEqual({ valid: true });
    expect(verifyChain(receipts as Receipt[]).valid).toBe(true);
    const rs = await store.client.query({
      query: 'SELECT toString(started_at) AS started_at, feature, api_key_id, toString(cost_usd) AS cost_usd FROM receipts WHERE seq = 2',
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toEqual([{ started_at: '2026-11-21 22:00:00.123', feature: 'résumé ✨', api_key_id: '', cost_usd: '0.00000015' }]);
  } finally {
    await store.close();
  }
  // Acknowledged: the WAL segments are gone.
  expect(readdirSync(path.join(dataDir, 'wal')).filter((f) => f.endsWith('.jsonl'))).toEqual([]);
});
