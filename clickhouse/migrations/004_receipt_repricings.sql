-- Re-priced receipt costs (src/pricing/reprice.ts; `tollgate prices reprice --apply`,
-- GraphQL `repriceReceipts(input: {…, apply: true})`).
--
-- Receipts are signed and immutable: their cost_usd is what the gateway billed with the
-- price it had. When a price was missing or wrong, re-pricing writes the corrected cost of
-- each receipt here instead, one row per (receipt, repricing). ReplacingMergeTree on the
-- receipt (provider and model are fixed per receipt, so the key still means "one receipt")
-- keeps the latest by repriced_at after merges; read the latest with argMax, or FINAL:
--
--   -- the cost of each receipt: re-priced when it was, signed otherwise
--   SELECT r.receipt_id, if(rp.receipt_id IS NULL, r.cost_usd, rp.cost_usd) AS cost_usd
--   FROM receipts AS r
--   LEFT JOIN (SELECT receipt_id, argMax(cost_usd, repriced_at) AS cost_usd
--              FROM receipt_repricings WHERE started_at >= {from} AND started_at < {to}
--              GROUP BY receipt_id) AS rp ON rp.receipt_id = r.receipt_id
--   WHERE r.started_at >= {from} AND r.started_at < {to}
--   SETTINGS join_use_nulls = 1
--
-- started_at, team_id, provider and model are copied from the receipt so that a question
-- about a range or a model reads only this table's matching partitions and rows. The
-- rollups (receipts_hourly, task costs) keep the signed costs; a re-priced total is the
-- rollup's total plus sum(cost_usd - ifNull(original_cost_usd, 0)) over the latest rows here.
--
-- On a cluster this table is replicated but not distributed: rows are written on the node
-- the repricing ran on (reprice from one node, and read there).
CREATE TABLE IF NOT EXISTS receipt_repricings
(
    receipt_id             UUID,
    started_at             DateTime64(3, 'UTC'),
    team_id                LowCardinality(String),
    provider               LowCardinality(String),
    model                  LowCardinality(String),
    -- the receipt's signed cost and price version (NULL: it was unpriced)
    original_cost_usd      Nullable(Decimal(18, 9)),
    original_price_version Nullable(UInt32),
    -- the Price row (config store) the cost was recomputed with
    price_version          UInt32,
    cost_usd               Decimal(18, 9),
    repriced_at            DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(repriced_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (provider, model, receipt_id);
