// Synthetic receipts for the scale test and the benchmark: `INSERT … SELECT … FROM numbers()`
// straight into `receipts` (the materialized views fill the rollups). Not used by the gateway.
//
// The dimensions are correlated the way a real deployment's are, so the hourly rollup
// compresses the way it would in production (independent random dimensions would give it
// nearly one row per receipt):
//   * requests come in sessions of 4 consecutive receipts (same team, feature, key, model,
//     end user); a quarter of the sessions are tasks (task_id), so a task is 4 requests;
//   * teams are uniform; each team has 3–4 features (from a global pool of `features`),
//     and each feature calls through one of the team's 2–3 api keys;
//   * each (team, feature) uses a primary model (75 %) and a secondary one (25 %); the
//     provider is determined by the model, and so is the price and the latency scale;
//   * about a quarter of the (team, feature) pairs bypass the cache; elsewhere 6 % exact
//     hits, 2 % semantic hits, the rest misses. Cache hits cost 0 and save the price;
//   * status: 2.5 % 'error' (502), 0.3 % 'cancelled' (499, streams only), the rest 'ok';
//   * `endUsersPerTeam` end users per team (default 200);
//   * 2 % of the non-hit requests are unpriced (cost_usd NULL);
//   * with `receiptVersion: 2` (for a schema with 005_receipt_v2.sql): a session has a task type (classify, summarize, extract,
//     or none, a quarter each); half the (team, feature) pairs are in experiment `ab`, where
//     a session is `control` (80 %) or `candidate` (20 %); control's classify sessions are
//     decided by rule `classify-rule`; candidate answers carry reasoning tokens (30 % of the
//     completion). Each attempt carries its tokens and cost.
// Receipts are spread uniformly over [from, from + spanMs) in `number` order.
import type { ClickHouseClient } from '@clickhouse/client';
import { RECEIPT_COLUMNS, RECEIPT_V1_FIELDS } from '../receipts/rows.js';
import { sql, trusted } from './sql.js';

/** The columns written, per receipt version (version 1 works on a schema before 005). */
const COLS: Readonly<Record<'v1' | 'v2', string>> = { v1: RECEIPT_V1_FIELDS.join(', '), v2: RECEIPT_COLUMNS.join(', ') };

export interface SyntheticOptions {
  rows: number;
  /** Receipts are spread uniformly over [from, from + spanMs). */
  from: Date;
  spanMs: number;
  teams?: number;
  models?: number;
  /** Size of the global feature pool; each team uses 3–4 of them. */
  features?: number;
  endUsersPerTeam?: number;
  /** Offset added to `number`, so several inserts make distinct receipts. */
  offset?: number;
  /** Rows per INSERT (default 1M). */
  chunk?: number;
  /** 2: also the version 2 columns (routing dimensions, reasoning tokens); default 1. */
  receiptVersion?: 1 | 2;
}

/**
 * Latency: log-normal around ~60 ms (scaled per model) with a long tail; ttft 40 % of it for
 * streams (half the rows); overhead ~1-3 ms. See the file comment for the dimensions.
 */
export async function insertSyntheticReceipts(client: ClickHouseClient, o: SyntheticOptions): Promise<void> {
  const chunk = o.chunk ?? 1_000_000;
  const teams = Math.max(1, o.teams ?? 10);
  const models = Math.max(1, o.models ?? 5);
  const features = Math.max(1, o.features ?? 8);
  const users = Math.max(1, o.endUsersPerTeam ?? 200);
  const cols = trusted(COLS, o.receiptVersion === 2 ? 'v2' : 'v1');
  for (let start = 0; start < o.rows; start += chunk) {
    const n = Math.min(chunk, o.rows - start);
    const base = (o.offset ?? 0) + start;
    const q = sql`INSERT INTO receipts (${cols})
      SELECT ${cols} FROM (SELECT
        generateUUIDv4(n) AS receipt_id,
        concat('req-', toString(n)) AS request_id,
        'synthetic' AS instance_id,
        addMilliseconds(${o.from}, intDiv(n * ${Math.floor(o.spanMs)}, ${Math.max(1, o.rows + (o.offset ?? 0))})) AS started_at,
        addMilliseconds(started_at, toInt64(latency_ms)) AS finished_at,
        -- session: 4 consecutive receipts share team, feature, key, model choice and end user
        intDiv(n, 4) AS s,
        toUInt32(cityHash64(s, 1) % ${teams}) AS t,
        toUInt32(least(3 + t % 2, ${features})) AS team_features,
        toUInt32(cityHash64(s, 3) % team_features) AS fi,
        toUInt32((t * 3 + fi) % ${features}) AS gf,
        toUInt32(if(cityHash64(s, 6) % 100 < 75, (t + fi) % ${models}, (t + fi + 1) % ${models})) AS m,
        cityHash64(t, gf, 99) % 4 = 0 AS bypass_cache,
        concat('team-', toString(t)) AS team_id,
        concat('key-', toString(t), '-', toString(fi % (2 + t % 2))) AS api_key_id,
        concat('feature-', toString(gf)) AS feature,
        if(cityHash64(s, 4) % 4 = 0, concat('task-', toString(s)), '') AS task_id,
        concat('user-', toString(t), '-', toString(cityHash64(s, 5) % ${users})) AS end_user,
        '/v1/chat/completions' AS endpoint,
        concat('model-', toString(m)) AS requested_model,
        'chat-default' AS route,
        'PRIORITY' AS strategy,
        if(m % 2 = 0, 'sim', 'sim-b') AS provider,
        requested_model AS model,
        [tuple(provider, model, toUInt16(http_status), if(status = 'error', 'http_502', NULL), latency_ms)] AS attempts,
        cityHash64(n, 8) % 1000 AS status_draw,
        multiIf(cache_status IN ('exact', 'semantic'), 'ok', status_draw < 25, 'error', status_draw < 28 AND stream, 'cancelled', 'ok') AS status,
        toUInt16(multiIf(status = 'ok', 200, status = 'error', 502, 499)) AS http_status,
        multiIf(status = 'error', 'upstream_error', status = 'cancelled', 'client_cancelled', '') AS error_code,
        cityHash64(n, 9) % 2 = 0 AS stream,
        if(stream, round(latency_ms * 0.4, 3), NULL) AS ttft_ms,
        round(5 + exp(4 + 0.1 * (m % 4) + 0.8 * randNormal(0, 1, n)), 3) AS latency_ms,
        round(latency_ms - overhead_ms, 3) AS upstream_ms,
        round(1 + (cityHash64(n, 10) % 2000) / 1000, 3) AS overhead_ms,
        toUInt32(20 + cityHash64(n, 11) % 2000) AS prompt_tokens,
        toUInt32(cityHash64(n, 12) % 500) AS completion_tokens,
        toUInt32(0) AS cached_tokens,
        false AS usage_estimated,
        (prompt_tokens * (0.15 * (1 + m % 4)) + completion_tokens * (0.6 * (1 + m % 4))) / 1000000 AS price,
        cityHash64(n, 14) % 100 AS cache_draw,
        multiIf(bypass_cache, 'bypass', cache_draw < 6, 'exact', cache_draw < 8, 'semantic', 'miss') AS cache_status,
        if(cache_status = 'semantic', 0.9 + (cityHash64(n, 15) % 1000) / 10000, NULL) AS cache_similarity,
        multiIf(cache_status IN ('exact', 'semantic'), toNullable(toDecimal64(0, 9)),
                cityHash64(n, 13) % 100 < 2, NULL,
                toNullable(toDecimal64(price, 9))) AS cost_usd,
        if(cost_usd IS NULL, NULL, toUInt32(1)) AS price_version,
        if(cache_status IN ('exact', 'semantic'), toDecimal64(price, 9), NULL) AS saved_cost_usd,
        hex(SHA256(toString(n))) AS request_sha256,
        '' AS response_sha256,
        toUInt64(n + 1) AS seq,
        '' AS prev_hash,
        'synthetic' AS key_id,
        '' AS signature,
        toUInt8(2) AS receipt_version,
        ['classify', 'summarize', 'extract', ''][1 + cityHash64(s, 20) % 4] AS task_type,
        if(cityHash64(t, gf, 21) % 2 = 0, 'ab', '') AS experiment,
        multiIf(experiment = '', '', cityHash64(s, 22) % 10 < 8, 'control', 'candidate') AS variant,
        if(task_type = 'classify' AND variant != 'candidate', 'classify-rule', '') AS rule,
        '' AS classifier_tier,
        CAST(NULL AS Nullable(Bool)) AS accepted,
        toUInt32(if(variant = 'candidate', intDiv(completion_tokens * 3, 10), 0)) AS reasoning_tokens,
        toUInt32(0) AS cache_write_tokens,
        CAST([(prompt_tokens, completion_tokens, cost_usd, NULL, NULL)]
             AS Array(Tuple(Nullable(UInt32), Nullable(UInt32), Nullable(Decimal(18, 9)), Nullable(Bool), Nullable(String)))) AS attempt_usage
      FROM (SELECT number + ${base} AS n FROM numbers(${n})))`;
    const { query, query_params } = q.toQuery();
    await client.command({ query, query_params, clickhouse_settings: { max_execution_time: 0 } as never });
  }
}
