// The receipt: one per request, exactly the object that is signed (DESIGN §6).
// Field names are the ClickHouse column names. Every value must survive the round trip
// through ClickHouse unchanged, because GET /v1/receipts/{id} rebuilds this object from the
// stored row and the signature must still verify:
//   - timestamps are ISO-8601 strings with milliseconds and a `Z` (DateTime64(3, 'UTC'));
//   - money is a number rounded to 9 decimals (Decimal(18, 9)), or null when unpriced;
//   - durations are numbers rounded to 3 decimals (Float64);
//   - absent attribution is null (stored as '' in ClickHouse, so it can be in sort keys).

export type ReceiptStatus = 'ok' | 'error' | 'partial' | 'rejected' | 'cancelled';
export type CacheStatus = 'miss' | 'exact' | 'semantic' | 'bypass';

export interface Attempt {
  provider: string;
  model: string;
  /** HTTP status the upstream answered, 0 when it never answered (connection error, timeout). */
  status: number;
  /** Short machine-readable reason (`timeout_first_byte`, `connect_refused`, `http_503`, …), null on success. */
  error: string | null;
  latency_ms: number;
  // Version 2 on (present, maybe null, exactly when the receipt's receipt_version is 2):
  /** Tokens and cost of this attempt alone (the receipt's are sums over attempts). */
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  cost_usd?: number | null;
  /** CASCADE: whether this answer passed the route's acceptance checks, and if not, why. */
  accepted?: boolean | null;
  reject_reason?: string | null;
}

/**
 * Receipt format versions (DESIGN §6). A receipt's signed object is exactly the fields of its
 * version, so receipts written before a field existed keep verifying. Version 1 has no
 * `receipt_version` field; from version 2 on every receipt names its version.
 */
export const RECEIPT_VERSION = 2;

/** The fields version 2 adds (and its attempts: see Attempt). */
export interface ReceiptV2Fields {
  receipt_version: 2;
  task_type: string | null;
  /** The routing rule that decided, when one did. */
  rule: string | null;
  classifier_tier: string | null;
  experiment: string | null;
  /** The bare variant name. */
  variant: string | null;
  /** CASCADE: whether the answer given passed the acceptance checks (null: no checks ran). */
  accepted: boolean | null;
  /** The reasoning part of completion_tokens. */
  reasoning_tokens: number;
  /** Prompt tokens written to the provider's prompt cache (part of prompt_tokens). */
  cache_write_tokens: number;
}

/** The version 1 fields, which every receipt has. */
export interface UnsignedReceiptV1 {
  receipt_id: string;
  request_id: string;
  instance_id: string;
  started_at: string;
  finished_at: string;
  team_id: string | null;
  api_key_id: string | null;
  feature: string | null;
  task_id: string | null;
  end_user: string | null;
  endpoint: string;
  requested_model: string | null;
  route: string | null;
  strategy: string | null;
  provider: string | null;
  model: string | null;
  attempts: Attempt[];
  status: ReceiptStatus;
  http_status: number;
  error_code: string | null;
  stream: boolean;
  ttft_ms: number | null;
  latency_ms: number;
  upstream_ms: number | null;
  overhead_ms: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  usage_estimated: boolean;
  cost_usd: number | null;
  price_version: number | null;
  cache_status: CacheStatus;
  cache_similarity: number | null;
  saved_cost_usd: number | null;
  request_sha256: string;
  response_sha256: string | null;
  seq: number;
  prev_hash: string;
  key_id: string;
}

/** A receipt of any version: version 2 fields are present exactly when receipt_version is 2. */
export type UnsignedReceipt = UnsignedReceiptV1 & Partial<ReceiptV2Fields>;

export interface Receipt extends UnsignedReceipt {
  /** base64url Ed25519 over the RFC 8785 canonical JSON of the receipt without this field. */
  signature: string;
}

/** Receipt content before the chain (seq, prev_hash) and the signing key are attached. */
export type ReceiptDraft = Omit<UnsignedReceipt, 'seq' | 'prev_hash' | 'key_id' | 'instance_id'>;

export const roundMs = (ms: number): number => Math.round(ms * 1000) / 1000;
export const roundUsd = (usd: number): number => Math.round(usd * 1e9) / 1e9;
/**
 * Decimal(18, 9) would hold ±1e9, but a double only round-trips decimals of up to 15
 * significant digits: with 9 decimals that is below one million dollars per request.
 */
export const MAX_ABS_USD = 1_000_000;
