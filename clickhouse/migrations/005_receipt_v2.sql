-- Receipt format version 2 (DESIGN §6): the fields receipts gained in December 2026.
--
-- Rows written before keep receipt_version = 1 and the defaults below; src/receipts/rows.ts
-- rebuilds a version 1 row without the new fields, so its signature still verifies.
-- Optional strings are '' when absent, as in 001; `accepted` is NULL when no acceptance
-- check ran. The per-attempt additions live in their own array, parallel to `attempts`
-- (empty for version 1), so no existing column changes type.
ALTER TABLE receipts
    ADD COLUMN IF NOT EXISTS receipt_version    UInt8 DEFAULT 1,
    ADD COLUMN IF NOT EXISTS task_type          LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS rule               LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS classifier_tier    LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS experiment         LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS variant            LowCardinality(String) DEFAULT '',
    ADD COLUMN IF NOT EXISTS accepted           Nullable(Bool),
    ADD COLUMN IF NOT EXISTS reasoning_tokens   UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cache_write_tokens UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS attempt_usage      Array(Tuple(prompt_tokens Nullable(UInt32), completion_tokens Nullable(UInt32), cost_usd Nullable(Decimal(18, 9)), accepted Nullable(Bool), reject_reason Nullable(String))) DEFAULT [];
