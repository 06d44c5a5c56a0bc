// Synthetic receipts for the scale test and the benchmark: `INSERT … SELECT … FROM numbers()`
// straight into `receipts` (the materialized views fill the rollups). Not used by the gateway.
import type { ClickHouseClient } from '@clickhouse/client';
import { RECEIPT_FIELDS } from '../receipts/rows.js';
import { sql, trusted } from './sql.js';

const COLS: Readonly<Record<'all', string>> = { all: RECEIPT_FIELDS.join(', ') };

export interface SyntheticOptions {
  rows: number;
  /** Receipts are spread uniformly over [from, from + spanMs). */
  from: Date;
  spanMs: number;
  teams?: number;
  models?: number;
  features?: number;
  /** Offset added to `number`, so several inserts make distinct receipts. */
  offset?: number;
  /** Rows per INSERT (default 1M). */
  chunk?: number;
}

/**
 * Latency: log-normal around ~60 ms with a long tail; ttft 40 % of it for streams (half the
 * rows); overhead ~1-3 ms; 3 % errors; 5 % exact cache hits; 2 % unpriced.
 */
export async function insertSyntheticReceipts(client: ClickHouseClient, o: SyntheticOptions): Promise<void> {
  const chunk = o.chunk ?? 1_000_000;
  const teams = o.teams ?? 10;
  const models = o.models ?? 5;
  const features = o.features ?? 8;
  for (let start = 0; start < o.rows; start += chunk) {
    const n = Math.min(chunk, o.rows - start);
    const base = (o.offset ?? 0) + start;
    const q = sql`INSERT INTO receipts (${trusted(COLS, 'all')})
      SELECT ${trusted(COLS, 'all')} FROM (SELECT
        generateUUIDv4(n) AS receipt_id,
        concat('req-', toString(n)) AS request_id,
        'synthetic' AS instance_id,
        addMilliseconds(${o.from}, intDiv(n * ${Math.floor(o.spanMs)}, ${Math.max(1, o.rows + (o.offset ?? 0))})) AS started_at,
        addMilliseconds(started_at, toInt64(latency_ms)) AS finished_at,
        concat('team-', toString(cityHash64(n, 1) % ${teams})) AS team_id,
        concat('key-', toString(cityHash64(n, 2) % ${teams * 3})) AS api_key_id,
        concat('feature-', toString(cityHash64(n, 3) % ${features})) AS feature,
        if(cityHash64(n, 4) % 4 = 0, concat('task-', toString(intDiv(n, 4))), '') AS task_id,
        concat('user-', toString(cityHash64(n, 5) % 1000)) AS end_user,
        '/v1/chat/completions' AS endpoint,
        concat('model-', toString(cityHash64(n, 6) % ${models})) AS requested_model,
        'chat-default' AS route,
        'PRIORITY' AS strategy,
        if(cityHash64(n, 7) % 2 = 0, 'sim', 'sim-b') AS provider,
        requested_model AS model,
        [tuple(provider, model, toUInt16(if(status = 'ok', 200, 500)), if(status = 'ok', NULL, 'http_500'), latency_ms)] AS attempts,
        if(cityHash64(n, 8) % 100 < 3, 'error', 'ok') AS status,
        toUInt16(if(status = 'ok', 200, 502)) AS http_status,
        if(status = 'ok', '', 'upstream_error') AS error_code,
        cityHash64(n, 9) % 2 = 0 AS stream,
        if(stream, round(latency_ms * 0.4, 3), NULL) AS ttft_ms,
        round(5 + exp(4 + 0.8 * randNormal(0, 1, n)), 3) AS latency_ms,
        round(latency_ms - overhead_ms, 3) AS upstream_ms,
        round(1 + (cityHash64(n, 10) % 2000) / 1000, 3) AS overhead_ms,
        toUInt32(20 + cityHash64(n, 11) % 2000) AS prompt_tokens,
        toUInt32(cityHash64(n, 12) % 500) AS completion_tokens,
        toUInt32(0) AS cached_tokens,
        false AS usage_estimated,
        if(cityHash64(n, 13) % 100 < 2, NULL, toDecimal64((prompt_tokens * 0.15 + completion_tokens * 0.6) / 1000000, 9)) AS cost_usd,
        if(cost_usd IS NULL, NULL, toUInt32(1)) AS price_version,
        if(cityHash64(n, 14) % 100 < 5, 'exact', 'miss') AS cache_status,
        NULL AS cache_similarity,
        if(cache_status = 'exact', toDecimal64(0.0001, 9), NULL) AS saved_cost_usd,
        hex(SHA256(toString(n))) AS request_sha256,
        '' AS response_sha256,
        toUInt64(n + 1) AS seq,
        '' AS prev_hash,
        'synthetic' AS key_id,
        '' AS signature
      FROM (SELECT number + ${base} AS n FROM numbers(${n})))`;
    const { query, query_params } = q.toQuery();
    await client.command({ query, query_params, clickhouse_settings: { max_execution_time: 0 } as never });
  }
}

