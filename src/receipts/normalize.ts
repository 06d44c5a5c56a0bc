// Draft normalization: the receipt the journal signs, built from the pipeline's draft. A
// stored receipt must be rebuilt byte-for-byte as it was signed (rows.ts), so every value is
// put here, before signing, in the form that survives the round trip through ClickHouse:
//   - optional strings: null, never '' (they are stored as '' so they can be in sort keys);
//   - timestamps: `YYYY-MM-DDTHH:MM:SS.mmmZ` (DateTime64(3, 'UTC'));
//   - money: rounded to 9 decimals (Decimal(18, 9)); durations: rounded to 3 decimals;
//   - nothing a column would reject (an unparseable row would block its whole WAL segment).
import { type Attempt, type CacheStatus, MAX_ABS_USD, type ReceiptDraft, type ReceiptStatus, roundMs, roundUsd, type UnsignedReceipt } from './receipt.js';

const STATUSES: ReadonlySet<string> = new Set<ReceiptStatus>(['ok', 'error', 'partial', 'rejected', 'cancelled']);
const CACHE_STATUSES: ReadonlySet<string> = new Set<CacheStatus>(['miss', 'exact', 'semantic', 'bypass']);
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(2299, 11, 31);

export class InvalidReceiptError extends TypeError {}

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
