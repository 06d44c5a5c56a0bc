// Running an analytics query: its bounds (time, memory, rows), numbers as JSON numbers, and
// ClickHouse's refusals as errors a client can act on.
// createGraphQLError (not `new GraphQLError`): it builds the error with the same `graphql`
// module instance as yoga, so yoga's `instanceof` check recognizes it and does not mask it
// even where two copies of `graphql` are loaded (ESM/CJS, e.g. under vitest).
import { createGraphQLError } from 'graphql-yoga';
import type { AnalyticsContext } from './common.js';
import type { SqlFragment } from './sql.js';

/** Settings of every analytics query: bounded time and memory, numbers as JSON numbers. */
export function querySettings(ctx: AnalyticsContext): Record<string, unknown> {
  return {
    max_execution_time: Math.max(0.001, ctx.analyticsTimeoutMs / 1000),
    timeout_overflow_mode: 'throw',
    ...(ctx.analyticsMaxMemoryBytes > 0 ? { max_memory_usage: ctx.analyticsMaxMemoryBytes } : {}),
    ...(ctx.analyticsEmbedded ? { max_result_rows: ctx.analyticsMaxRows + 1, result_overflow_mode: 'throw' } : {}),
    output_format_json_quote_64bit_integers: 0,
    output_format_json_quote_decimals: 0,
    output_format_json_quote_denormals: 0,
    date_time_output_format: 'simple',
    output_format_json_named_tuples_as_objects: 1,
  };
}

/**
 * Runs an analytics query and collects its rows, at most `ctx.analyticsMaxRows` of them: a
 * fine grouping over a long range (minutes × end users × models) can be millions of rows,
 * which would be held in this process and then serialized as one GraphQL answer. Past the
 * bound the read stops (closing the response ends the query) with a clear error.
 */
export async function runQuery<T = Record<string, unknown>>(ctx: AnalyticsContext, q: SqlFragment): Promise<T[]> {
  const { query, query_params } = q.toQuery();
  try {
    const rs = await ctx.clickhouse.query({ query, query_params, format: 'JSONEachRow', clickhouse_settings: querySettings(ctx) as never });
    const rows: T[] = [];
    for await (const batch of rs.stream<T>()) {
      if (rows.length + batch.length > ctx.analyticsMaxRows) {
        rs.close();
        throw tooManyRows(ctx);
      }
      for (const row of batch) rows.push(row.json());
    }
    return rows;
  } catch (err) {
    throw analyticsError(err, ctx);
  }
}

function tooManyRows(ctx: AnalyticsContext): Error {
  return createGraphQLError(
    `The analytics answer has more than ${ctx.analyticsMaxRows} rows; narrow the range, use a longer interval or fewer groupings (TOLLGATE_ANALYTICS_MAX_ROWS raises the bound).`,
    { extensions: { code: 'ANALYTICS_RESULT_TOO_LARGE' } },
  );
}

/** ClickHouse's refusals of a query that asked too much, as errors a client can act on. */
function analyticsError(err: unknown, ctx: AnalyticsContext): unknown {
  const message = (err as Error)?.message ?? String(err);
  if (/TOO_MANY_ROWS_OR_BYTES|code: 396/i.test(message)) return tooManyRows(ctx);
  if (/TIMEOUT_EXCEEDED|Timeout exceeded|code: 159/i.test(message)) {
    return createGraphQLError('The analytics query took too long; narrow the range or the grouping.', {
      extensions: { code: 'ANALYTICS_TIMEOUT' },
    });
  }
  if (/MEMORY_LIMIT_EXCEEDED|Memory limit .*exceeded|code: 241/i.test(message)) {
    return createGraphQLError('The analytics query needed more memory than ClickHouse allows it; narrow the range or the grouping.', {
      extensions: { code: 'ANALYTICS_RESULT_TOO_LARGE' },
    });
  }
  return err;
}

/** A ClickHouse number that may be null, NaN (`null` in JSON) or a string. */
export function numOrNull(v: unknown): number | null {
  if (v === null || v === undefined) return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

export function num(v: unknown): number {
  return numOrNull(v) ?? 0;
}
