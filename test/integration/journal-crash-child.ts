// Child process of journal.test.ts ("kill -9"): appends receipts as fast as it can until it
// is killed. After every resolved append it writes "<seq> <receipt_id>" to stdout with a
// synchronous write, so the parent knows exactly which appends had resolved at the kill.
//
//   node --import tsx journal-crash-child.ts <clickhouseDataDir> <walDataDir> <teamId>
import { writeSync } from 'node:fs';
import { v7 as uuidv7 } from 'uuid';
import { ReceiptJournal } from '../../src/receipts/journal.js';
import type { ReceiptDraft } from '../../src/receipts/receipt.js';
import { ReceiptSigner } from '../../src/receipts/signer.js';
import { openClickHouse } from '../../src/store/clickhouse.js';
import { migrateClickHouse } from '../../src/store/clickhouse-migrate.js';

const [clickhouseDir, walDir, team] = process.argv.slice(2);

const draft = (i: number): ReceiptDraft => ({
  receipt_id: uuidv7(),
  request_id: `crash_${i}`,
  started_at: new Date().toISOString(),
  finished_at: new Date().toISOString(),
  team_id: team,
  api_key_id: `key_${i % 3}`,
  feature: i % 4 === 0 ? null : 'crash ✓',
  task_id: i % 2 === 0 ? `task_${i % 11}` : null,
  end_user: null,
  endpoint: '/v1/chat/completions',
  requested_model: 'chat-default',
  route: 'chat-default',
  strategy: 'PRIORITY',
  provider: 'sim',
  model: `model_${i % 2}`,
  attempts: [{ provider: 'sim', model: 'm', status: i % 5 === 0 ? 503 : 200, error: i % 5 === 0 ? 'http_503' : null, latency_ms: (i % 97) + 0.125 }],
  status: i % 5 === 0 ? 'error' : 'ok',
  http_status: i % 5 === 0 ? 502 : 200,
  error_code: i % 5 === 0 ? 'upstream_error' : null,
  stream: i % 2 === 1,
  ttft_ms: i % 3 === 0 ? null : 10.5,
  latency_ms: (i % 101) + 0.25,
  upstream_ms: 5,
  overhead_ms: 0.75,
  prompt_tokens: i % 50,
  completion_tokens: i % 7,
  cached_tokens: 0,
  usage_estimated: false,
  cost_usd: i % 6 === 0 ? null : (i % 13) * 1.5e-7,
  price_version: 1,
  cache_status: i % 9 === 0 ? 'exact' : 'miss',
  cache_similarity: null,
  saved_cost_usd: i % 9 === 0 ? 2e-6 : null,
  request_sha256: 'c'.repeat(64),
  response_sha256: null,
});

const store = await openClickHouse({ dataDir: clickhouseDir });
await migrateClickHouse(store.client);
const signer = await ReceiptSigner.open(walDir);
const journal = await ReceiptJournal.open({ dataDir: walDir, signer, insertRows: store.insertRows, sync: 'write', batchMaxRows: 40, batchMaxMs: 15 });
writeSync(1, 'ready\n');
for (let i = 0; ; i++) {
  const receipts = await Promise.all(Array.from({ length: 1 + (i % 7) }, (_, k) => journal.append(draft(i * 7 + k))));
  writeSync(1, receipts.map((r) => `${r.seq} ${r.receipt_id}\n`).join(''));
}
