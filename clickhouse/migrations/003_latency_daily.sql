-- Daily latency rollup for the `latency` question (src/analytics/latency.ts).
--
-- Why a second rollup: a month of receipts_hourly holds ~190k rows per 10M receipts, and
-- merging their TDigest states costs about as much as reading the raw receipts (a TDigest
-- of a few dozen values is still one centroid per value). One row per day instead of per
-- hour cuts the states ~20×, and DDSketch states (quantilesDD) merge ~2× faster than
-- TDigest ones at this grain. quantilesDD(0.01, …) answers within 1 % of the true value
-- (relative accuracy by construction), inside the 2 % that DESIGN §8 promises.
-- latency.ts reads this table for the whole UTC days of a range and raw receipts for the
-- rest; groups under 10k requests are still recomputed exactly from raw receipts.
--
-- Same dimensions as receipts_hourly (END_USER is not one, see 002), so any filter or
-- grouping the hourly rollup answers, this one answers for whole days.
-- Read with sum(requests) and quantilesDDMerge(0.01, 0.5, 0.9, 0.95, 0.99)(…_dd); an empty
-- state (e.g. ttft of non-streaming requests only) merges to NaN, i.e. no value.
--
-- Created together with its backfill (CREATE … AS SELECT over the receipts stored so far),
-- so that applying this file again after a crash cannot backfill twice: IF NOT EXISTS skips
-- the whole statement once the table exists. (The hourly rollup's TDigest states cannot be
-- turned into DDSketch ones, so the backfill reads `receipts` once.) On a cluster each shard
-- backfills from its own receipts.
CREATE TABLE IF NOT EXISTS latency_daily
(
    day               DateTime('UTC'),
    team_id           LowCardinality(String),
    api_key_id        LowCardinality(String),
    feature           LowCardinality(String),
    route             LowCardinality(String),
    provider          LowCardinality(String),
    model             LowCardinality(String),
    status            LowCardinality(String),
    cache_status      LowCardinality(String),
    requests          SimpleAggregateFunction(sum, UInt64),
    latency_dd        AggregateFunction(quantilesDD(0.01, 0.5, 0.9, 0.95, 0.99), Float64),
    ttft_dd           AggregateFunction(quantilesDD(0.01, 0.5, 0.9, 0.95, 0.99), Nullable(Float64)),
    overhead_dd       AggregateFunction(quantilesDD(0.01, 0.5, 0.9, 0.95, 0.99), Nullable(Float64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (team_id, day, feature, route, provider, model, api_key_id, status, cache_status)
SETTINGS non_replicated_deduplication_window = 10000
AS
SELECT
    toStartOfDay(r.started_at) AS day,
    r.team_id AS team_id,
    r.api_key_id AS api_key_id,
    r.feature AS feature,
    r.route AS route,
    r.provider AS provider,
    r.model AS model,
    r.status AS status,
    r.cache_status AS cache_status,
    count() AS requests,
    quantilesDDState(0.01, 0.5, 0.9, 0.95, 0.99)(r.latency_ms) AS latency_dd,
    quantilesDDState(0.01, 0.5, 0.9, 0.95, 0.99)(r.ttft_ms) AS ttft_dd,
    quantilesDDState(0.01, 0.5, 0.9, 0.95, 0.99)(r.overhead_ms) AS overhead_dd
FROM receipts AS r
GROUP BY day, team_id, api_key_id, feature, route, provider, model, status, cache_status;

-- The view feeds every receipt inserted from now on. The embedded engine applies migrations
-- before the receipt journal starts inserting, so nothing falls between the backfill above
-- and this view. With a ClickHouse server that other gateways keep writing to during the
-- migration, a batch inserted between the two statements would be missing here: apply with
-- `tollgate migrate` while writers are paused.
CREATE MATERIALIZED VIEW IF NOT EXISTS latency_daily_mv TO latency_daily AS
SELECT
    toStartOfDay(r.started_at) AS day,
    r.team_id AS team_id,
    r.api_key_id AS api_key_id,
    r.feature AS feature,
    r.route AS route,
    r.provider AS provider,
    r.model AS model,
    r.status AS status,
    r.cache_status AS cache_status,
    count() AS requests,
    quantilesDDState(0.01, 0.5, 0.9, 0.95, 0.99)(r.latency_ms) AS latency_dd,
    quantilesDDState(0.01, 0.5, 0.9, 0.95, 0.99)(r.ttft_ms) AS ttft_dd,
    quantilesDDState(0.01, 0.5, 0.9, 0.95, 0.99)(r.overhead_ms) AS overhead_dd
FROM receipts AS r
GROUP BY day, team_id, api_key_id, feature, route, provider, model, status, cache_status;
