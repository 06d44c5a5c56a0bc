// Re-pricing: what receipts of a time range cost under a given price version.
//
// Receipts are signed and immutable, so their `cost_usd` never changes. A dry run only
// compares; `apply` writes each receipt's recomputed cost to `receipt_repricings`
// (clickhouse/migrations/004_receipt_repricings.sql), where analytics can prefer it over
// the signed cost. Everything runs inside ClickHouse (one aggregate, one INSERT … SELECT),
// so a month of receipts never travels through Node.
//
// The cost formula is the gateway's (src/gateway/usage.ts costOf): cached prompt tokens at
// the cached-input price (the input price when there is none), the rest of the prompt at
// the input price, completion tokens at the output price; per receipt, rounded to 9
// decimals. Here it is computed in exact decimal arithmetic, so a recomputed cost may differ
// from a float-computed receipt cost in the 9th decimal.
//
// Cache hits are left out: they cost 0 by definition (DESIGN §6), whatever the price.
import type { ClickHouseClient } from '@clickhouse/client';
import { type SqlFragment, sql, trusted } from '../analytics/sql.js';
import type { PriceRecord } from '../store/admin/pricing.js';

export interface RepriceInput {
  from: Date;
  to: Date;
  provider: string;
  model: string;
  /** A version of this provider+model's price; default the current one. */
  priceVersion?: number | null;
  apply: boolean;
}

export interface RepricingRow {
  provider: string;
  model: string;
  /** Receipts in range (cache hits excluded). */
  receipts: number;
  /** Of those, how many the gateway could not price (cost_usd null). */
  unpricedBefore: number;
  /** Sum of the signed costs (unpriced receipts count as nothing, not as 0 cost). */
  originalCostUsd: number;
  recomputedCostUsd: number;
  deltaUsd: number;
  /** Receipts an apply would write: not yet repriced to this version and cost. */
  pending: number;
}

export interface RepricingResult {
  priceVersion: number;
  applied: boolean;
  /** Rows written to receipt_repricings by this call (0 for a dry run). */
  written: number;
  rows: RepricingRow[];
}

export interface RepriceDeps {
  clickhouse: ClickHouseClient;
  /** `receipts`, or `receipts_distributed` on a cluster. */
  receiptsTable: string;
  prices: {
    currentPrices(): Promise<PriceRecord[]>;
    getPriceVersion(version: number): Promise<PriceRecord | null>;
  };
}

export class RepriceError extends Error {
  constructor(
    readonly code: 'INVALID_INPUT' | 'NOT_FOUND',
    message: string,
  ) {
    super(message);
    this.name = 'RepriceError';
  }
}

const RECEIPT_TABLES = { receipts: 'receipts', receipts_distributed: 'receipts_distributed' } as const;

export async function repriceReceipts(deps: RepriceDeps, input: RepriceInput): Promise<RepricingResult> {
  if (!(input.from instanceof Date) || !(input.to instanceof Date) || Number.isNaN(input.from.getTime()) || Number.isNaN(input.to.getTime())) {
    throw new RepriceError('INVALID_INPUT', 'from and to must be dates');
  }
  if (input.from >= input.to) throw new RepriceError('INVALID_INPUT', 'from must be before to');
  if (!input.provider || !input.model) throw new RepriceError('INVALID_INPUT', 'provider and model are required');

  const price = await resolvePrice(deps, input);
  const table = trusted(RECEIPT_TABLES, deps.receiptsTable as keyof typeof RECEIPT_TABLES);
  const selection = selectRepriced(table, input, price);

  const rs = await deps.clickhouse.query({
    ...sql`
      SELECT provider, model, count() AS receipts, countIf(original_cost IS NULL) AS unpriced_before,
             toString(sum(ifNull(original_cost, toDecimal64(0, 9)))) AS original,
             toString(sum(new_cost)) AS recomputed,
             countIf(NOT already) AS pending
      FROM (${selection})
      GROUP BY provider, model
      ORDER BY provider, model`.toQuery(),
    format: 'JSONEachRow',
  });
  const raw = await rs.json<{
    provider: string;
    model: string;
    receipts: string | number;
    unpriced_before: string | number;
    original: string;
    recomputed: string;
    pending: string | number;
  }>();
  const rows = raw.map((r) => {
    const original = Number(r.original);
    const recomputed = Number(r.recomputed);
    return {
      provider: r.provider,
      model: r.model,
      receipts: Number(r.receipts),
      unpricedBefore: Number(r.unpriced_before),
      originalCostUsd: original,
      recomputedCostUsd: recomputed,
      // From the decimals, so 0.3 - 0.1 does not come back as 0.19999999999999998.
      deltaUsd: Number(decimalDiff(r.recomputed, r.original)),
      pending: Number(r.pending),
    };
  });

  const pending = rows.reduce((n, r) => n + r.pending, 0);
  if (!input.apply || pending === 0) return { priceVersion: price.version, applied: input.apply, written: 0, rows };

  // Only receipts not already repriced to this version and cost: applying twice writes
  // nothing the second time, and the latest repricing of each receipt stays the one asked for.
  const insert = sql`
    INSERT INTO receipt_repricings
      (receipt_id, started_at, team_id, provider, model, original_cost_usd, original_price_version, price_version, cost_usd, repriced_at)
    SELECT receipt_id, started_at, team_id, provider, model, original_cost, original_price_version, ${sql.typed(price.version, 'UInt32')}, new_cost, now64(3)
    FROM (${selection})
    WHERE NOT already`.toQuery();
  await deps.clickhouse.command({ query: insert.query, query_params: insert.query_params });
  return { priceVersion: price.version, applied: true, written: pending, rows: rows.map((r) => ({ ...r, pending: 0 })) };
}

async function resolvePrice(deps: RepriceDeps, input: RepriceInput): Promise<PriceRecord> {
  if (input.priceVersion != null) {
    const p = await deps.prices.getPriceVersion(input.priceVersion);
    // A version of another model would silently bill one model at another's price.
    if (!p || p.provider !== input.provider || p.model !== input.model) {
      throw new RepriceError('NOT_FOUND', `price version ${input.priceVersion} is not a price of ${input.provider}/${input.model}`);
    }
    return p;
  }
  const current = (await deps.prices.currentPrices()).find((p) => p.provider === input.provider && p.model === input.model);
  if (!current) throw new RepriceError('NOT_FOUND', `${input.provider}/${input.model} has no price; set one first (setPrice)`);
  return current;
}

/**
 * One row per receipt in range: its signed cost, its recomputed cost (`new_cost`), and
 * whether its latest repricing already is this version at this cost (`already`).
 * A receipt never repriced has no row in `l`: the LEFT JOIN fills l.version with 0, and no
 * price version is 0 (ids start at 1), so `already` is false for it.
 */
function selectRepriced(table: SqlFragment, input: RepriceInput, price: PriceRecord): SqlFragment {
  const money = (usd: number) => sql.typed(usd.toFixed(9), 'Decimal128(9)');
  const cachedRate = price.cachedInputPerMTokUsd ?? price.inputPerMTokUsd;
  const version = sql.typed(price.version, 'UInt32');
  return sql`
    SELECT r.receipt_id AS receipt_id, r.started_at AS started_at, r.team_id AS team_id, r.provider AS provider, r.model AS model,
           r.cost_usd AS original_cost, r.price_version AS original_price_version,
           toDecimal64(round(toDecimal128(
               toDecimal128(r.prompt_tokens - least(r.cached_tokens, r.prompt_tokens), 0) * ${money(price.inputPerMTokUsd)}
             + toDecimal128(least(r.cached_tokens, r.prompt_tokens), 0) * ${money(cachedRate)}
             + toDecimal128(r.completion_tokens, 0) * ${money(price.outputPerMTokUsd)}, 15) / 1000000, 9), 9) AS new_cost,
           (l.version = ${version} AND l.cost = new_cost) AS already
    FROM ${table} AS r
    LEFT JOIN (
      SELECT receipt_id, argMax(price_version, repriced_at) AS version, argMax(cost_usd, repriced_at) AS cost
      FROM receipt_repricings
      WHERE provider = ${input.provider} AND model = ${input.model} AND started_at >= ${input.from} AND started_at < ${input.to}
      GROUP BY receipt_id
    ) AS l ON l.receipt_id = r.receipt_id
    WHERE r.provider = ${input.provider} AND r.model = ${input.model} AND r.started_at >= ${input.from} AND r.started_at < ${input.to}
      AND r.cache_status NOT IN ('exact', 'semantic')`;
}

/** a - b for two decimal strings, exactly (both have at most 9 decimals). */
function decimalDiff(a: string, b: string): string {
  const scaled = (s: string) => {
    const [int, frac = ''] = s.split('.');
    const neg = int!.startsWith('-');
    const v = BigInt(int!.replace('-', '') + frac.padEnd(9, '0').slice(0, 9));
    return neg ? -v : v;
  };
  const d = scaled(a) - scaled(b);
  const abs = d < 0n ? -d : d;
  const digits = abs.toString().padStart(10, '0');
  return `${d < 0n ? '-' : ''}${digits.slice(0, -9)}.${digits.slice(-9)}`;
}
