-- Rollups fed by materialized views on `receipts` (DESIGN §7).
--
-- Every view target carries non_replicated_deduplication_window: a batch replayed after a
-- crash is deduplicated in a view target only if that target keeps a deduplication log too.
--
-- Inside the views, source columns are referenced as r.<column>: an output alias with the
-- same name as a source column (e.g. `sum(...) AS cost_usd`) would otherwise be substituted
-- into later expressions that mean the source column.

-- Hourly usage, latency and cache rollup, one row per (team, hour, feature, route,
-- provider, model, api key, status, cache status).
-- END_USER is deliberately not a dimension here: end users are per-application identities
-- (often one per human), so including them would multiply this table towards the size of
-- `receipts` itself. Questions grouped or filtered by end user read `receipts` (it has a
-- bloom filter on end_user).
-- Read with sum() for the SimpleAggregateFunction columns and
-- quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(…_tdigest) (any levels work) for latencies.
CREATE TABLE IF NOT EXISTS receipts_hourly
(
    hour              DateTime('UTC'),
    team_id           LowCardinality(String),
    api_key_id        LowCardinality(String),
    feature           LowCardinality(String),
    route             LowCardinality(String),
    provider          LowCardinality(String),
    model             LowCardinality(String),
    status            LowCardinality(String),
    cache_status      LowCardinality(String),
    requests          SimpleAggregateFunction(sum, UInt64),
    -- status != 'ok'
    errors            SimpleAggregateFunction(sum, UInt64),
    prompt_tokens     SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens     SimpleAggregateFunction(sum, UInt64),
    -- sum over priced requests; unpriced ones are counted in unpriced_requests, never as 0
    cost_usd          SimpleAggregateFunction(sum, Decimal(38, 9)),
    unpriced_requests SimpleAggregateFunction(sum, UInt64),
    saved_cost_usd    SimpleAggregateFunction(sum, Decimal(38, 9)),
    -- cache_status IN ('exact', 'semantic')
    cache_hits        SimpleAggregateFunction(sum, UInt64),
    latency_tdigest   AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    ttft_tdigest      AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    overhead_tdigest  AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (team_id, hour, feature, route, provider, model, api_key_id, status, cache_status)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS receipts_hourly_mv TO receipts_hourly AS
SELECT
    toStartOfHour(r.started_at) AS hour,
    r.team_id AS team_id,
    r.api_key_id AS api_key_id,
    r.feature AS feature,
    r.route AS route,
    r.provider AS provider,
    r.model AS model,
    r.status AS status,
    r.cache_status AS cache_status,
    count() AS requests,
    countIf(r.status != 'ok') AS errors,
    sum(r.prompt_tokens) AS prompt_tokens,
    sum(r.completion_tokens) AS completion_tokens,
    sum(r.cached_tokens) AS cached_tokens,
    sum(ifNull(r.cost_usd, 0)) AS cost_usd,
    countIf(r.cost_usd IS NULL) AS unpriced_requests,
    sum(ifNull(r.saved_cost_usd, 0)) AS saved_cost_usd,
    countIf(r.cache_status IN ('exact', 'semantic')) AS cache_hits,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(r.latency_ms) AS latency_tdigest,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(r.ttft_ms) AS ttft_tdigest,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(r.overhead_ms) AS overhead_tdigest
FROM receipts AS r
GROUP BY hour, team_id, api_key_id, feature, route, provider, model, status, cache_status;

-- Cost per task: one row per (team, task) over the task's whole life (no time partition,
-- a task may span months). Receipts without a task id are not tasks.
-- last_status: the status of the task's latest request, ordered by (started_at, seq);
-- read with argMaxMerge(last_status). Whether a task succeeded is decided with
-- task_outcomes first (DESIGN §8).
CREATE TABLE IF NOT EXISTS task_costs
(
    team_id           LowCardinality(String),
    task_id           String,
    requests          SimpleAggregateFunction(sum, UInt64),
    errors            SimpleAggregateFunction(sum, UInt64),
    cost_usd          SimpleAggregateFunction(sum, Decimal(38, 9)),
    unpriced_requests SimpleAggregateFunction(sum, UInt64),
    first_started_at  SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_started_at   SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    last_status       AggregateFunction(argMax, String, Tuple(DateTime64(3, 'UTC'), UInt64))
)
ENGINE = AggregatingMergeTree
ORDER BY (team_id, task_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS task_costs_mv TO task_costs AS
SELECT
    r.team_id AS team_id,
    r.task_id AS task_id,
    count() AS requests,
    countIf(r.status != 'ok') AS errors,
    sum(ifNull(r.cost_usd, 0)) AS cost_usd,
    countIf(r.cost_usd IS NULL) AS unpriced_requests,
    min(r.started_at) AS first_started_at,
    max(r.started_at) AS last_started_at,
    argMaxState(CAST(r.status AS String), (r.started_at, r.seq)) AS last_status
FROM receipts AS r
WHERE r.task_id != ''
GROUP BY team_id, task_id;

-- Task verdicts from POST /v1/tasks/{taskId}/outcome and recordTaskOutcome: the latest
-- recorded_at wins. Not a view target; read with FINAL or argMax(…, recorded_at).
CREATE TABLE IF NOT EXISTS task_outcomes
(
    team_id     LowCardinality(String),
    task_id     String,
    success     Bool,
    score       Nullable(Float64),
    note        String,
    recorded_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (team_id, task_id);
