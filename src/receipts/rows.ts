// How a signed receipt is stored in ClickHouse (its columns and its row; insert-body.ts writes
// that row in binary for the journal's inserts) and rebuilt from it. A rebuilt receipt must
// be byte-for-byte the signed object (its canonical JSON), or
// its signature stops verifying; normalize.ts puts every draft, before it is signed, in the
// form this mapping round-trips.
import type { ClickHouseClient } from '@clickhouse/client';
import { UUID } from './normalize.js';
import type { Attempt, CacheStatus, Receipt, ReceiptStatus } from './receipt.js';

/** Version 1's receipt fields in their documented order (DESIGN §6). */
export const RECEIPT_V1_FIELDS = [
  'receipt_id',
  'request_id',
  'instance_id',
  'started_at',
  'finished_at',
  'team_id',
  'api_key_id',
  'feature',
  'task_id',
  'end_user',
  'endpoint',
  'requested_model',
  'route',
  'strategy',
  'provider',
  'model',
  'attempts',
  'status',
  'http_status',
  'error_code',
  'stream',
  'ttft_ms',
  'latency_ms',
  'upstream_ms',
  'overhead_ms',
  'prompt_tokens',
  'completion_tokens',
  'cached_tokens',
  'usage_estimated',
  'cost_usd',
  'price_version',
  'cache_status',
  'cache_similarity',
  'saved_cost_usd',
  'request_sha256',
  'response_sha256',
  'seq',
  'prev_hash',
  'key_id',
  'signature',
] as const satisfies ReadonlyArray<keyof Receipt>;

/** Every receipt field, version 2 included. */
export const RECEIPT_FIELDS = [
  ...RECEIPT_V1_FIELDS,
  'receipt_version',
  'task_type',
  'rule',
  'classifier_tier',
  'experiment',
  'variant',
  'accepted',
  'reasoning_tokens',
  'cache_write_tokens',
] as const satisfies ReadonlyArray<keyof Receipt>;

/** The columns that store a receipt: its fields, and the per-attempt additions of version 2. */
export const RECEIPT_COLUMNS = [...RECEIPT_FIELDS, 'attempt_usage'] as const;

/** Optional strings, stored as '' when absent. */
const OPTIONAL_STRINGS = [
  'team_id',
  'api_key_id',
  'feature',
  'task_id',
  'end_user',
  'requested_model',
  'route',
  'strategy',
  'provider',
  'model',
  'error_code',
  'response_sha256',
  'task_type',
  'rule',
  'classifier_tier',
  'experiment',
  'variant',
] as const;
type OptionalStringField = (typeof OPTIONAL_STRINGS)[number];

/** ClickHouse row of `receipts` (its values, in RECEIPT_COLUMNS order, are what an insert sends). */
export interface ReceiptRow {
  receipt_id: string;
  request_id: string;
  instance_id: string;
  started_at: string;
  finished_at: string;
  team_id: string;
  api_key_id: string;
  feature: string;
  task_id: string;
  end_user: string;
  endpoint: string;
  requested_model: string;
  route: string;
  strategy: string;
  provider: string;
  model: string;
  attempts: AttemptTuple[];
  status: string;
  http_status: number;
  error_code: string;
  stream: boolean;
  ttft_ms: number | null;
  latency_ms: number;
  upstream_ms: number | null;
  overhead_ms: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  usage_estimated: boolean;
  /** Decimal as an exact decimal string, so no float formatting (1.5e-7) reaches the parser. */
  cost_usd: string | null;
  price_version: number | null;
  cache_status: string;
  cache_similarity: number | null;
  saved_cost_usd: string | null;
  request_sha256: string;
  response_sha256: string;
  seq: number;
  prev_hash: string;
  key_id: string;
  signature: string;
  receipt_version: number;
  task_type: string;
  rule: string;
  classifier_tier: string;
  experiment: string;
  variant: string;
  accepted: boolean | null;
  reasoning_tokens: number;
  cache_write_tokens: number;
  attempt_usage: AttemptUsageTuple[];
}

/** An attempt as its tuple in `attempts`, written as a JSON array (RECEIPT_INSERT_SETTINGS). */
type AttemptTuple = [provider: string, model: string, status: number, error: string | null, latency_ms: number];

/** Version 2's per-attempt fields, parallel to `attempts` (empty for version 1). */
type AttemptUsageTuple = [
  prompt_tokens: number | null,
  completion_tokens: number | null,
  cost_usd: string | null,
  accepted: boolean | null,
  reject_reason: string | null,
];

// ---------------------------------------------------------------------------------------
// Receipt ⇄ row

/** The row a receipt is stored as, by column name (for JSON inserts: RECEIPT_INSERT_SETTINGS). */
export function receiptToRow(r: Receipt): ReceiptRow {
  const values = rowValues(r);
  return Object.fromEntries(RECEIPT_COLUMNS.map((column, i) => [column, values[i]])) as unknown as ReceiptRow;
}

/** The settings a JSON insert of receiptToRow's rows needs: tuples are JSON arrays. */
export const RECEIPT_INSERT_SETTINGS = { input_format_json_named_tuples_as_objects: 0 } as const;

/** The row's values in RECEIPT_COLUMNS order (receiptToRow's). */
function rowValues(r: Receipt): unknown[] {
  const v2 = r.receipt_version === 2;
  return [
    r.receipt_id,
    r.request_id,
    r.instance_id,
    isoToClickHouse(r.started_at),
    isoToClickHouse(r.finished_at),
    r.team_id ?? '',
    r.api_key_id ?? '',
    r.feature ?? '',
    r.task_id ?? '',
    r.end_user ?? '',
    r.endpoint,
    r.requested_model ?? '',
    r.route ?? '',
    r.strategy ?? '',
    r.provider ?? '',
    r.model ?? '',
    r.attempts.map((a) => [a.provider, a.model, a.status, a.error, a.latency_ms]),
    r.status,
    r.http_status,
    r.error_code ?? '',
    r.stream,
    r.ttft_ms,
    r.latency_ms,
    r.upstream_ms,
    r.overhead_ms,
    r.prompt_tokens,
    r.completion_tokens,
    r.cached_tokens,
    r.usage_estimated,
    r.cost_usd === null ? null : usdToDecimal(r.cost_usd),
    r.price_version,
    r.cache_status,
    r.cache_similarity,
    r.saved_cost_usd === null ? null : usdToDecimal(r.saved_cost_usd),
    r.request_sha256,
    r.response_sha256 ?? '',
    r.seq,
    r.prev_hash,
    r.key_id,
    r.signature,
    v2 ? 2 : 1,
    r.task_type ?? '',
    r.rule ?? '',
    r.classifier_tier ?? '',
    r.experiment ?? '',
    r.variant ?? '',
    r.accepted ?? null,
    r.reasoning_tokens ?? 0,
    r.cache_write_tokens ?? 0,
    v2
      ? r.attempts.map((a) => [
          a.prompt_tokens ?? null,
          a.completion_tokens ?? null,
          a.cost_usd === null || a.cost_usd === undefined ? null : usdToDecimal(a.cost_usd),
          a.accepted ?? null,
          a.reject_reason ?? null,
        ])
      : [],
  ];
}

/**
 * The receipt a `receipts` row (JSONEachRow output) stores. Tolerates either output
 * setting for dates (simple / iso), decimals and 64-bit integers (quoted or not) and
 * tuples (objects or arrays), so a reader's session settings cannot break signatures.
 */
export function rowToReceipt(row: Record<string, unknown>): Receipt {
  const str = (k: keyof Receipt) => String(row[k] ?? '');
  const opt = (k: OptionalStringField) => {
    const v = row[k];
    return v === null || v === undefined || v === '' ? null : String(v);
  };
  const num = (k: keyof Receipt) => Number(row[k]);
  const optNum = (k: keyof Receipt) => (row[k] === null || row[k] === undefined ? null : Number(row[k]));
  const bool = (k: keyof Receipt) => row[k] === true || row[k] === 1 || row[k] === '1' || row[k] === 'true';
  const receipt: Receipt = {
    receipt_id: str('receipt_id'),
    request_id: str('request_id'),
    instance_id: str('instance_id'),
    started_at: clickHouseToIso(str('started_at')),
    finished_at: clickHouseToIso(str('finished_at')),
    team_id: opt('team_id'),
    api_key_id: opt('api_key_id'),
    feature: opt('feature'),
    task_id: opt('task_id'),
    end_user: opt('end_user'),
    endpoint: str('endpoint'),
    requested_model: opt('requested_model'),
    route: opt('route'),
    strategy: opt('strategy'),
    provider: opt('provider'),
    model: opt('model'),
    attempts: (Array.isArray(row.attempts) ? row.attempts : []).map(attemptFromRow),
    status: str('status') as ReceiptStatus,
    http_status: num('http_status'),
    error_code: opt('error_code'),
    stream: bool('stream'),
    ttft_ms: optNum('ttft_ms'),
    latency_ms: num('latency_ms'),
    upstream_ms: optNum('upstream_ms'),
    overhead_ms: optNum('overhead_ms'),
    prompt_tokens: num('prompt_tokens'),
    completion_tokens: num('completion_tokens'),
    cached_tokens: num('cached_tokens'),
    usage_estimated: bool('usage_estimated'),
    cost_usd: optNum('cost_usd'),
    price_version: optNum('price_version'),
    cache_status: str('cache_status') as CacheStatus,
    cache_similarity: optNum('cache_similarity'),
    saved_cost_usd: optNum('saved_cost_usd'),
    request_sha256: str('request_sha256'),
    response_sha256: opt('response_sha256'),
    seq: num('seq'),
    prev_hash: str('prev_hash'),
    key_id: str('key_id'),
    signature: str('signature'),
  };
  if (num('receipt_version') !== 2) return receipt; // version 1: exactly the fields it was signed with
  const usage = Array.isArray(row.attempt_usage) ? row.attempt_usage : [];
  for (const [i, a] of receipt.attempts.entries()) Object.assign(a, attemptUsageFromRow(usage[i]));
  receipt.receipt_version = 2;
  receipt.task_type = opt('task_type');
  receipt.rule = opt('rule');
  receipt.classifier_tier = opt('classifier_tier');
  receipt.experiment = opt('experiment');
  receipt.variant = opt('variant');
  receipt.accepted = row.accepted === null || row.accepted === undefined ? null : bool('accepted');
  receipt.reasoning_tokens = num('reasoning_tokens');
  receipt.cache_write_tokens = num('cache_write_tokens');
  return receipt;
}

function attemptUsageFromRow(u: unknown): Pick<Attempt, 'prompt_tokens' | 'completion_tokens' | 'cost_usd' | 'accepted' | 'reject_reason'> {
  const [prompt, completion, cost, accepted, reason] = Array.isArray(u)
    ? u
    : [(u as Attempt)?.prompt_tokens, (u as Attempt)?.completion_tokens, (u as Attempt)?.cost_usd, (u as Attempt)?.accepted, (u as Attempt)?.reject_reason];
  const optNum = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    prompt_tokens: optNum(prompt),
    completion_tokens: optNum(completion),
    cost_usd: optNum(cost),
    accepted: accepted === null || accepted === undefined ? null : accepted === true || accepted === 1 || accepted === 'true',
    reject_reason: reason === null || reason === undefined ? null : String(reason),
  };
}

function attemptFromRow(a: unknown): Attempt {
  const [provider, model, status, error, latency] = Array.isArray(a)
    ? a
    : [(a as Attempt).provider, (a as Attempt).model, (a as Attempt).status, (a as Attempt).error, (a as Attempt).latency_ms];
  return {
    provider: String(provider),
    model: String(model),
    status: Number(status),
    error: error === null || error === undefined ? null : String(error),
    latency_ms: Number(latency),
  };
}

// ---------------------------------------------------------------------------------------
// Values

/** '2026-11-21T22:00:00.123Z' → '2026-11-21 22:00:00.123' (parsed by every date_time_input_format). */
export function isoToClickHouse(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}

/** '2026-11-21 22:00:00.123' or '2026-11-21T22:00:00.123Z' → '2026-11-21T22:00:00.123Z'. */
export function clickHouseToIso(value: string): string {
  if (value.length === 23 && value[10] === ' ') return `${value.slice(0, 10)}T${value.slice(11)}Z`;
  return new Date(value.endsWith('Z') || value.includes('+') ? value : `${value}Z`).toISOString();
}

/** 1.5e-7 → 150: a receipt's (rounded) amount as a Decimal(18, 9)'s integer. */
export function usdToNanos(usd: number): number {
  return Math.round(usd * 1e9);
}

/** 1.5e-7 → '0.000000150': the exact 9-decimal value of a receipt's (rounded) amount. */
export function usdToDecimal(usd: number): string {
  const nanos = usdToNanos(usd);
  const sign = nanos < 0 ? '-' : '';
  const digits = String(Math.abs(nanos)).padStart(10, '0');
  return `${sign}${digits.slice(0, -9)}.${digits.slice(-9)}`;
}

// ---------------------------------------------------------------------------------------
// Reading

const SELECT_COLUMNS = RECEIPT_COLUMNS.join(', ');

/**
 * The stored receipt with this id, rebuilt so that its signature verifies, or null.
 * `table` is `receipts_distributed` on a cluster.
 */
export async function fetchReceipt(client: ClickHouseClient, receiptId: string, opts: { table?: string } = {}): Promise<Receipt | null> {
  const id = receiptId.toLowerCase();
  if (!UUID.test(id)) return null; // not a receipt id; the UUID parameter would reject it
  const rs = await client.query({
    query: `SELECT ${SELECT_COLUMNS} FROM {table:Identifier} WHERE receipt_id = {id:UUID} LIMIT 1`,
    query_params: { table: opts.table ?? 'receipts', id },
    format: 'JSONEachRow',
    clickhouse_settings: {
      date_time_output_format: 'simple',
      output_format_json_quote_decimals: 0,
      output_format_json_named_tuples_as_objects: 1,
    },
  });
  const rows = await rs.json<Record<string, unknown>>();
  return rows.length > 0 ? rowToReceipt(rows[0]) : null;
}
