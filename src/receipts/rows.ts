// The one place that knows how a signed receipt is stored in ClickHouse and rebuilt from
// it. A rebuilt receipt must be byte-for-byte the signed object (its canonical JSON), or
// its signature stops verifying; so the journal normalizes every draft here before it is
// signed, to values that survive the round trip:
//   - optional strings: null, never '' (they are stored as '' so they can be in sort keys);
//   - timestamps: `YYYY-MM-DDTHH:MM:SS.mmmZ` (DateTime64(3, 'UTC'));
//   - money: rounded to 9 decimals (Decimal(18, 9)); durations: rounded to 3 decimals;
//   - nothing a column would reject (an unparseable row would block its whole WAL segment).
import type { ClickHouseClient } from '@clickhouse/client';
import { type Attempt, type CacheStatus, type Receipt, type ReceiptDraft, type ReceiptStatus, roundMs, roundUsd, type UnsignedReceipt } from './receipt.js';

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

const STATUSES: ReadonlySet<string> = new Set<ReceiptStatus>(['ok', 'error', 'partial', 'rejected', 'cancelled']);
const CACHE_STATUSES: ReadonlySet<string> = new Set<CacheStatus>(['miss', 'exact', 'semantic', 'bypass']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/**
 * Decimal(18, 9) would hold ±1e9, but a double only round-trips decimals of up to 15
 * significant digits: with 9 decimals that is below one million dollars per request.
 */
const MAX_ABS_USD = 1_000_000;
const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(2299, 11, 31);

export class InvalidReceiptError extends TypeError {}

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
  attempts: Attempt[];
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
  attempt_usage: AttemptUsageRow[];
}

/** Version 2's per-attempt fields, parallel to `attempts` (empty for version 1). */
interface AttemptUsageRow {
  prompt_tokens: number | null;
  completion_tokens: number | null;
  cost_usd: string | null;
  accepted: boolean | null;
  reject_reason: string | null;
}

// ---------------------------------------------------------------------------------------
// Draft normalization (before signing)

/** The fields the journal adds to a draft. */
export type ChainFields = Pick<UnsignedReceipt, 'instance_id' | 'seq' | 'prev_hash' | 'key_id'>;

/**
 * The receipt to sign: exactly the receipt's fields, in their documented order, with the
 * draft's values in storable form. Throws InvalidReceiptError for a value no column can
 * hold: that is a bug in the receipt builder, and refusing it here keeps it out of the WAL,
 * where it would block every later segment.
 */
export function unsignedReceipt(d: ReceiptDraft, chain: ChainFields): UnsignedReceipt {
  if (d === null || typeof d !== 'object') throw new InvalidReceiptError('receipt draft must be an object');
  const receiptId = requiredString(d.receipt_id, 'receipt_id').toLowerCase();
  if (!UUID.test(receiptId)) throw new InvalidReceiptError(`receipt_id must be a UUID: ${JSON.stringify(d.receipt_id)}`);
  if (!STATUSES.has(d.status)) throw new InvalidReceiptError(`invalid status ${JSON.stringify(d.status)}`);
  if (!CACHE_STATUSES.has(d.cache_status)) throw new InvalidReceiptError(`invalid cache_status ${JSON.stringify(d.cache_status)}`);
  if (!Array.isArray(d.attempts)) throw new InvalidReceiptError('attempts must be an array');
  const v2 = d.receipt_version === 2;
  if (d.receipt_version !== undefined && !v2) throw new InvalidReceiptError(`unknown receipt_version ${JSON.stringify(d.receipt_version)}`);
  const receipt: UnsignedReceipt = {
    receipt_id: receiptId,
    request_id: requiredString(d.request_id, 'request_id'),
    instance_id: chain.instance_id,
    started_at: timestamp(d.started_at, 'started_at'),
    finished_at: timestamp(d.finished_at, 'finished_at'),
    team_id: optionalString(d.team_id, 'team_id'),
    api_key_id: optionalString(d.api_key_id, 'api_key_id'),
    feature: optionalString(d.feature, 'feature'),
    task_id: optionalString(d.task_id, 'task_id'),
    end_user: optionalString(d.end_user, 'end_user'),
    endpoint: requiredString(d.endpoint, 'endpoint'),
    requested_model: optionalString(d.requested_model, 'requested_model'),
    route: optionalString(d.route, 'route'),
    strategy: optionalString(d.strategy, 'strategy'),
    provider: optionalString(d.provider, 'provider'),
    model: optionalString(d.model, 'model'),
    attempts: d.attempts.map((a, i) => {
      const attempt: Attempt = {
        provider: requiredString(a?.provider, `attempts[${i}].provider`),
        model: requiredString(a?.model, `attempts[${i}].model`),
        status: integer(a?.status, `attempts[${i}].status`, 0xffff),
        // Nullable(String) in the tuple: '' and null are both kept as they are.
        error: nullableString(a?.error, `attempts[${i}].error`),
        latency_ms: ms(a?.latency_ms, `attempts[${i}].latency_ms`),
      };
      if (v2) {
        attempt.prompt_tokens = optionalInteger(a?.prompt_tokens, `attempts[${i}].prompt_tokens`, 0xffffffff);
        attempt.completion_tokens = optionalInteger(a?.completion_tokens, `attempts[${i}].completion_tokens`, 0xffffffff);
        attempt.cost_usd = optionalUsd(a?.cost_usd, `attempts[${i}].cost_usd`);
        attempt.accepted = optionalBoolean(a?.accepted);
        attempt.reject_reason = nullableString(a?.reject_reason, `attempts[${i}].reject_reason`);
      }
      return attempt;
    }),
    status: d.status,
    http_status: integer(d.http_status, 'http_status', 0xffff),
    error_code: optionalString(d.error_code, 'error_code'),
    stream: Boolean(d.stream),
    ttft_ms: optionalMs(d.ttft_ms, 'ttft_ms'),
    latency_ms: ms(d.latency_ms, 'latency_ms'),
    upstream_ms: optionalMs(d.upstream_ms, 'upstream_ms'),
    overhead_ms: optionalMs(d.overhead_ms, 'overhead_ms'),
    prompt_tokens: integer(d.prompt_tokens, 'prompt_tokens', 0xffffffff),
    completion_tokens: integer(d.completion_tokens, 'completion_tokens', 0xffffffff),
    cached_tokens: integer(d.cached_tokens, 'cached_tokens', 0xffffffff),
    usage_estimated: Boolean(d.usage_estimated),
    cost_usd: optionalUsd(d.cost_usd, 'cost_usd'),
    price_version: d.price_version === null || d.price_version === undefined ? null : integer(d.price_version, 'price_version', 0xffffffff),
    cache_status: d.cache_status,
    cache_similarity: d.cache_similarity === null || d.cache_similarity === undefined ? null : finite(d.cache_similarity, 'cache_similarity') + 0,
    saved_cost_usd: optionalUsd(d.saved_cost_usd, 'saved_cost_usd'),
    request_sha256: requiredString(d.request_sha256, 'request_sha256'),
    response_sha256: optionalString(d.response_sha256, 'response_sha256'),
    seq: chain.seq,
    prev_hash: chain.prev_hash,
    key_id: chain.key_id,
  };
  if (v2) {
    receipt.receipt_version = 2;
    receipt.task_type = optionalString(d.task_type, 'task_type');
    receipt.rule = optionalString(d.rule, 'rule');
    receipt.classifier_tier = optionalString(d.classifier_tier, 'classifier_tier');
    receipt.experiment = optionalString(d.experiment, 'experiment');
    receipt.variant = optionalString(d.variant, 'variant');
    receipt.accepted = optionalBoolean(d.accepted);
    receipt.reasoning_tokens = integer(d.reasoning_tokens ?? 0, 'reasoning_tokens', 0xffffffff);
    receipt.cache_write_tokens = integer(d.cache_write_tokens ?? 0, 'cache_write_tokens', 0xffffffff);
  }
  return receipt;
}

// Lone UTF-16 surrogates cannot be stored as UTF-8; they would come back as U+FFFD and
// break the signature, so they become U+FFFD before signing.
const LONE_SURROGATE = /\p{Surrogate}/u;
const wellFormed = (s: string): string => (LONE_SURROGATE.test(s) ? s.replace(/\p{Surrogate}/gu, '\uFFFD') : s);

function requiredString(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new InvalidReceiptError(`${field} must be a string`);
  return wellFormed(v);
}
function optionalString(v: unknown, field: string): string | null {
  if (v === null || v === undefined || v === '') return null;
  return requiredString(v, field);
}
function nullableString(v: unknown, field: string): string | null {
  return v === null || v === undefined ? null : requiredString(v, field);
}
function optionalBoolean(v: unknown): boolean | null {
  return v === null || v === undefined ? null : Boolean(v);
}
function optionalInteger(v: unknown, field: string, max: number): number | null {
  return v === null || v === undefined ? null : integer(v, field, max);
}
function finite(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidReceiptError(`${field} must be a finite number`);
  return v;
}
function integer(v: unknown, field: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidReceiptError(`${field} must be an integer in [0, ${max}]: ${String(v)}`);
  }
  return v;
}
// `+ 0` turns -0 into 0: JSON has no -0, so a stored -0 comes back as 0.
const ms = (v: unknown, field: string): number => roundMs(finite(v, field)) + 0;
function optionalMs(v: unknown, field: string): number | null {
  return v === null || v === undefined ? null : ms(v, field);
}
function optionalUsd(v: unknown, field: string): number | null {
  if (v === null || v === undefined) return null;
  const usd = finite(v, field);
  if (Math.abs(usd) >= MAX_ABS_USD) throw new InvalidReceiptError(`${field} out of range: ${usd}`);
  return roundUsd(usd) + 0;
}
function timestamp(v: unknown, field: string): string {
  // The gateway's own times are already in the stored form: skip Date.parse and toISOString.
  if (typeof v === 'string' && isStoredTimestamp(v)) return v;
  const ms = typeof v === 'string' ? Date.parse(v) : NaN;
  if (!(ms >= MIN_TIME && ms <= MAX_TIME)) throw new InvalidReceiptError(`${field} must be an ISO-8601 time: ${String(v)}`);
  return new Date(ms).toISOString();
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * Whether `s` is exactly what toISOString() gives for a time in [1970, 2298]:
 * `YYYY-MM-DDTHH:MM:SS.mmmZ` with every field in range (so Date.parse would not roll it over).
 */
function isStoredTimestamp(s: string): boolean {
  if (s.length !== 24) return false;
  if (s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45 || s.charCodeAt(10) !== 84 || s.charCodeAt(13) !== 58) return false; // - - T :
  if (s.charCodeAt(16) !== 58 || s.charCodeAt(19) !== 46 || s.charCodeAt(23) !== 90) return false; // : . Z
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  if (year < 1970 || year > 2298 || month < 1 || month > 12 || day < 1) return false;
  const leap = month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > DAYS_IN_MONTH[month - 1] + (leap ? 1 : 0)) return false;
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  const second = digits(s, 17, 2);
  return hour >= 0 && hour <= 23 && minute >= 0 && minute <= 59 && second >= 0 && second <= 59 && digits(s, 20, 3) >= 0;
}

/** The decimal number of `s[start, start + n)`, -1 if any of them is not a digit. */
function digits(s: string, start: number, n: number): number {
  let value = 0;
  for (let i = start; i < start + n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    value = value * 10 + d;
  }
  return value;
}

// ---------------------------------------------------------------------------------------
// Receipt ⇄ row

export function receiptToRow(r: Receipt): ReceiptRow {
  return {
    receipt_id: r.receipt_id,
    request_id: r.request_id,
    instance_id: r.instance_id,
    started_at: isoToClickHouse(r.started_at),
    finished_at: isoToClickHouse(r.finished_at),
    team_id: r.team_id ?? '',
    api_key_id: r.api_key_id ?? '',
    feature: r.feature ?? '',
    task_id: r.task_id ?? '',
    end_user: r.end_user ?? '',
    endpoint: r.endpoint,
    requested_model: r.requested_model ?? '',
    route: r.route ?? '',
    strategy: r.strategy ?? '',
    provider: r.provider ?? '',
    model: r.model ?? '',
    attempts: r.attempts,
    status: r.status,
    http_status: r.http_status,
    error_code: r.error_code ?? '',
    stream: r.stream,
    ttft_ms: r.ttft_ms,
    latency_ms: r.latency_ms,
    upstream_ms: r.upstream_ms,
    overhead_ms: r.overhead_ms,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    cached_tokens: r.cached_tokens,
    usage_estimated: r.usage_estimated,
    cost_usd: r.cost_usd === null ? null : usdToDecimal(r.cost_usd),
    price_version: r.price_version,
    cache_status: r.cache_status,
    cache_similarity: r.cache_similarity,
    saved_cost_usd: r.saved_cost_usd === null ? null : usdToDecimal(r.saved_cost_usd),
    request_sha256: r.request_sha256,
    response_sha256: r.response_sha256 ?? '',
    seq: r.seq,
    prev_hash: r.prev_hash,
    key_id: r.key_id,
    signature: r.signature,
    receipt_version: r.receipt_version ?? 1,
    task_type: r.task_type ?? '',
    rule: r.rule ?? '',
    classifier_tier: r.classifier_tier ?? '',
    experiment: r.experiment ?? '',
    variant: r.variant ?? '',
    accepted: r.accepted ?? null,
    reasoning_tokens: r.reasoning_tokens ?? 0,
    cache_write_tokens: r.cache_write_tokens ?? 0,
    attempt_usage:
      r.receipt_version === 2
        ? r.attempts.map((a) => ({
            prompt_tokens: a.prompt_tokens ?? null,
            completion_tokens: a.completion_tokens ?? null,
            cost_usd: a.cost_usd === null || a.cost_usd === undefined ? null : usdToDecimal(a.cost_usd),
            accepted: a.accepted ?? null,
            reject_reason: a.reject_reason ?? null,
          }))
        : [],
  };
}

/**
 * The insert form of a receipt: its row's values in RECEIPT_COLUMNS order, for
 * `INSERT INTO receipts (RECEIPT_COLUMNS) FORMAT JSONCompactEachRow`. Without the column
 * names on every line the body is half the size, and ClickHouse parses it without matching
 * keys: about a fifth less engine CPU per row than JSONEachRow (measured on chDB).
 */
export function receiptToInsertValues(r: Receipt): unknown[] {
  const row = receiptToRow(r);
  return RECEIPT_COLUMNS.map((column) => row[column]);
}

/** The statement that inserts receiptToInsertValues() lines into `table`. */
export const insertStatement = (table: string) => `INSERT INTO ${table} (${RECEIPT_COLUMNS.join(', ')}) FORMAT JSONCompactEachRow`;

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
    : [
        (u as AttemptUsageRow)?.prompt_tokens,
        (u as AttemptUsageRow)?.completion_tokens,
        (u as AttemptUsageRow)?.cost_usd,
        (u as AttemptUsageRow)?.accepted,
        (u as AttemptUsageRow)?.reject_reason,
      ];
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

/** '2026-11-21T22:00:00.123Z' → '2026-11-21 22:00:00.123' (parsed by every date_time_input_format). */
export function isoToClickHouse(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}

/** '2026-11-21 22:00:00.123' or '2026-11-21T22:00:00.123Z' → '2026-11-21T22:00:00.123Z'. */
export function clickHouseToIso(value: string): string {
  if (value.length === 23 && value[10] === ' ') return `${value.slice(0, 10)}T${value.slice(11)}Z`;
  return new Date(value.endsWith('Z') || value.includes('+') ? value : `${value}Z`).toISOString();
}

/** 1.5e-7 → '0.000000150': the exact 9-decimal value of a receipt's (rounded) amount. */
export function usdToDecimal(usd: number): string {
  const nanos = Math.round(usd * 1e9);
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
