// A signed receipt as its row in the receipts journal's insert body: ClickHouse's
// RowBinaryWithNamesAndTypes (src/store/row-binary.ts), written by the segment worker
// (segment-prep.ts). The columns, the row's values and how a stored row is read back: rows.ts.
import type { RowBinaryWriter } from '../store/row-binary.js';
import type { Receipt } from './receipt.js';
import { RECEIPT_COLUMNS, usdToNanos } from './rows.js';

const LOW_CARDINALITY = 'LowCardinality(String)';
const MONEY = 'Nullable(Decimal(18, 9))';

/**
 * Each column's type as the insert body writes it: the table's own (clickhouse/migrations
 * 001 and 005). The body's header carries them, and the engine refuses an insert whose types
 * do not match the table, so a drift between this list and the migrations fails loudly.
 */
const RECEIPT_COLUMN_TYPES = {
  receipt_id: 'UUID',
  request_id: 'String',
  instance_id: LOW_CARDINALITY,
  started_at: "DateTime64(3, 'UTC')",
  finished_at: "DateTime64(3, 'UTC')",
  team_id: LOW_CARDINALITY,
  api_key_id: LOW_CARDINALITY,
  feature: LOW_CARDINALITY,
  task_id: 'String',
  end_user: 'String',
  endpoint: LOW_CARDINALITY,
  requested_model: LOW_CARDINALITY,
  route: LOW_CARDINALITY,
  strategy: LOW_CARDINALITY,
  provider: LOW_CARDINALITY,
  model: LOW_CARDINALITY,
  attempts: 'Array(Tuple(provider String, model String, status UInt16, error Nullable(String), latency_ms Float64))',
  status: LOW_CARDINALITY,
  http_status: 'UInt16',
  error_code: LOW_CARDINALITY,
  stream: 'Bool',
  ttft_ms: 'Nullable(Float64)',
  latency_ms: 'Float64',
  upstream_ms: 'Nullable(Float64)',
  overhead_ms: 'Nullable(Float64)',
  prompt_tokens: 'UInt32',
  completion_tokens: 'UInt32',
  cached_tokens: 'UInt32',
  usage_estimated: 'Bool',
  cost_usd: MONEY,
  price_version: 'Nullable(UInt32)',
  cache_status: LOW_CARDINALITY,
  cache_similarity: 'Nullable(Float64)',
  saved_cost_usd: MONEY,
  request_sha256: 'String',
  response_sha256: 'String',
  seq: 'UInt64',
  prev_hash: 'String',
  key_id: LOW_CARDINALITY,
  signature: 'String',
  receipt_version: 'UInt8',
  task_type: LOW_CARDINALITY,
  rule: LOW_CARDINALITY,
  classifier_tier: LOW_CARDINALITY,
  experiment: LOW_CARDINALITY,
  variant: LOW_CARDINALITY,
  accepted: 'Nullable(Bool)',
  reasoning_tokens: 'UInt32',
  cache_write_tokens: 'UInt32',
  attempt_usage:
    'Array(Tuple(prompt_tokens Nullable(UInt32), completion_tokens Nullable(UInt32), cost_usd Nullable(Decimal(18, 9)), accepted Nullable(Bool), reject_reason Nullable(String)))',
} as const satisfies Record<(typeof RECEIPT_COLUMNS)[number], string>;

/** The body's header: RECEIPT_COLUMNS with their types, in order. */
export const RECEIPT_BODY_COLUMNS = RECEIPT_COLUMNS.map((column) => [column, RECEIPT_COLUMN_TYPES[column]] as const);

/**
 * Writes a receipt's row as RowBinary, its values in RECEIPT_COLUMNS order (after a header
 * of RECEIPT_BODY_COLUMNS). The values are receiptToRow's: the same row, byte for byte once
 * stored (test/integration/journal.test.ts). Money is written as its 9-decimal integer,
 * the value usdToDecimal prints.
 */
export function writeReceiptRow(w: RowBinaryWriter, r: Receipt): void {
  const v2 = r.receipt_version === 2;
  w.uuid(r.receipt_id);
  w.string(r.request_id);
  w.string(r.instance_id);
  w.dateTime64ms(r.started_at);
  w.dateTime64ms(r.finished_at);
  w.string(r.team_id ?? '');
  w.string(r.api_key_id ?? '');
  w.string(r.feature ?? '');
  w.string(r.task_id ?? '');
  w.string(r.end_user ?? '');
  w.string(r.endpoint);
  w.string(r.requested_model ?? '');
  w.string(r.route ?? '');
  w.string(r.strategy ?? '');
  w.string(r.provider ?? '');
  w.string(r.model ?? '');
  w.varUInt(r.attempts.length);
  for (const a of r.attempts) {
    w.string(a.provider);
    w.string(a.model);
    w.uint16(a.status);
    if (!w.isNull(a.error)) w.string(a.error!);
    w.float64(a.latency_ms);
  }
  w.string(r.status);
  w.uint16(r.http_status);
  w.string(r.error_code ?? '');
  w.bool(r.stream);
  if (!w.isNull(r.ttft_ms)) w.float64(r.ttft_ms!);
  w.float64(r.latency_ms);
  if (!w.isNull(r.upstream_ms)) w.float64(r.upstream_ms!);
  if (!w.isNull(r.overhead_ms)) w.float64(r.overhead_ms!);
  w.uint32(r.prompt_tokens);
  w.uint32(r.completion_tokens);
  w.uint32(r.cached_tokens);
  w.bool(r.usage_estimated);
  if (!w.isNull(r.cost_usd)) w.int64(usdToNanos(r.cost_usd!));
  if (!w.isNull(r.price_version)) w.uint32(r.price_version!);
  w.string(r.cache_status);
  if (!w.isNull(r.cache_similarity)) w.float64(r.cache_similarity!);
  if (!w.isNull(r.saved_cost_usd)) w.int64(usdToNanos(r.saved_cost_usd!));
  w.string(r.request_sha256);
  w.string(r.response_sha256 ?? '');
  w.int64(r.seq);
  w.string(r.prev_hash);
  w.string(r.key_id);
  w.string(r.signature);
  w.uint8(v2 ? 2 : 1);
  w.string(r.task_type ?? '');
  w.string(r.rule ?? '');
  w.string(r.classifier_tier ?? '');
  w.string(r.experiment ?? '');
  w.string(r.variant ?? '');
  if (!w.isNull(r.accepted)) w.bool(r.accepted!);
  w.uint32(r.reasoning_tokens ?? 0);
  w.uint32(r.cache_write_tokens ?? 0);
  if (!v2) {
    w.varUInt(0);
    return;
  }
  w.varUInt(r.attempts.length);
  for (const a of r.attempts) {
    if (!w.isNull(a.prompt_tokens)) w.uint32(a.prompt_tokens!);
    if (!w.isNull(a.completion_tokens)) w.uint32(a.completion_tokens!);
    if (!w.isNull(a.cost_usd)) w.int64(usdToNanos(a.cost_usd!));
    if (!w.isNull(a.accepted)) w.bool(a.accepted!);
    if (!w.isNull(a.reject_reason)) w.string(a.reject_reason!);
  }
}
