// What a receipt costs a budget, and what a budget's subject has spent in a period, summed
// from the receipts in ClickHouse: the source the counters are rebuilt from after a restart,
// on a new instance, or when a counter expired. Both count the same thing: the receipt's cost
// or, when a cascade climbed through an unpriced step (the receipt's cost is then unknown,
// never a fake sum), what its priced steps cost; an unpriced request books nothing.
import type { ClickHouseClient } from '@clickhouse/client';
import { sql } from '../analytics/sql.js';
import type { UnsignedReceipt } from '../receipts/receipt.js';
import type { BudgetRecord } from '../store/admin/pricing.js';
import type { PeriodWindow } from './periods.js';

/** What `receipt` books against its budgets (null: nothing is priced). */
export function budgetCostOf(receipt: Pick<UnsignedReceipt, 'cost_usd' | 'attempts'>): number | null {
  if (receipt.cost_usd !== null) return receipt.cost_usd;
  let known: number | null = null;
  for (const a of receipt.attempts) if (typeof a.cost_usd === 'number') known = (known ?? 0) + a.cost_usd;
  return known;
}

export async function spentInWindow(client: ClickHouseClient, table: string, budget: BudgetRecord, window: PeriodWindow): Promise<number> {
  const subject =
    budget.scope === 'TEAM'
      ? sql`team_id = ${budget.teamId}`
      : budget.scope === 'API_KEY'
        ? sql`api_key_id = ${budget.apiKeyId}`
        : budget.teamId
          ? sql`feature = ${budget.feature} AND team_id = ${budget.teamId}`
          : sql`feature = ${budget.feature}`;
  const end = window.endMs === null ? sql`` : sql` AND started_at < fromUnixTimestamp64Milli(${sql.typed(window.endMs, 'Int64')})`;
  const q = sql`SELECT sum(ifNull(toFloat64(cost_usd), arraySum(a -> toFloat64(ifNull(a.cost_usd, 0)), attempt_usage))) AS spent FROM ${sql.typed(table, 'Identifier')}
    WHERE ${subject} AND started_at >= fromUnixTimestamp64Milli(${sql.typed(window.startMs, 'Int64')})${end}`;
  const { query, query_params } = q.toQuery();
  const rs = await client.query({ query, query_params, format: 'JSONEachRow' });
  const rows = (await rs.json()) as Array<{ spent: number }>;
  return Number(rows[0]?.spent ?? 0);
}
