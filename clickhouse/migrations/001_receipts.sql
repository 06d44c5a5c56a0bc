-- Receipts: one row per gateway request, cache hits and rejected requests included
-- (DESIGN §6). Column names are the receipt's field names (src/receipts/receipt.ts); the
-- mapping between a signed receipt and a row lives in src/receipts/rows.ts.
--
-- Conventions that let a stored row rebuild the exact signed object:
--   * absent attribution and other optional strings are stored as '' (never NULL), so they
--     can sit in sort keys and GROUP BY without Nullable; rows.ts turns '' back into null
--     and the journal never signs '' for those fields;
--   * money is Decimal(18, 9) (a receipt's money is rounded to 9 decimals), cost_usd is
--     Nullable because an unpriced request has no cost, not a cost of 0;
--   * timestamps are DateTime64(3, 'UTC'), durations Float64 rounded to 3 decimals.
--
-- Append-only MergeTree: no FINAL on reads, and the materialized views in 002 stay exact.
-- The deduplication window makes a retried batch (same insert_deduplication_token) a no-op
-- in this table and, with deduplicate_blocks_in_dependent_materialized_views, in every
-- rollup. It must cover every insert made by all gateway instances while one of them is
-- down with an acknowledged-but-undeleted WAL segment, hence 10000 blocks rather than 1000.
CREATE TABLE IF NOT EXISTS receipts
(
    receipt_id        UUID,
    request_id        String,
    instance_id       LowCardinality(String),
    started_at        DateTime64(3, 'UTC'),
    finished_at       DateTime64(3, 'UTC'),
    team_id           LowCardinality(String),
    api_key_id        LowCardinality(String),
    feature           LowCardinality(String),
    task_id           String,
    end_user          String,
    endpoint          LowCardinality(String),
    requested_model   LowCardinality(String),
    route             LowCardinality(String),
    strategy          LowCardinality(String),
    provider          LowCardinality(String),
    model             LowCardinality(String),
    attempts          Array(Tuple(provider String, model String, status UInt16, error Nullable(String), latency_ms Float64)),
    status            LowCardinality(String),
    http_status       UInt16,
    error_code        LowCardinality(String),
    stream            Bool,
    ttft_ms           Nullable(Float64),
    latency_ms        Float64,
    upstream_ms       Nullable(Float64),
    overhead_ms       Nullable(Float64),
    prompt_tokens     UInt32,
    completion_tokens UInt32,
    cached_tokens     UInt32,
    usage_estimated   Bool,
    cost_usd          Nullable(Decimal(18, 9)),
    price_version     Nullable(UInt32),
    cache_status      LowCardinality(String),
    cache_similarity  Nullable(Float64),
    saved_cost_usd    Nullable(Decimal(18, 9)),
    request_sha256    String,
    response_sha256   String,
    seq               UInt64,
    prev_hash         String,
    key_id            LowCardinality(String),
    signature         String,
    -- Point lookups that the sort key cannot serve: GET /v1/receipts/{id}, one task's
    -- requests, one end user's requests.
    INDEX idx_receipt_id receipt_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_task_id task_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_end_user end_user TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(started_at)
-- Every analytics question is per team (team-bound tokens) and per time range, then
-- usually per feature or model.
ORDER BY (team_id, toStartOfHour(started_at), feature, model, started_at)
SETTINGS non_replicated_deduplication_window = 10000;
