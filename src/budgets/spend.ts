// What a receipt costs a budget, and what a budget's subject has spent in a period, summed
// from the receipts in ClickHouse: the source the counters are rebuilt from after a restart,
// on a new instance, or when a counter expired. Both count the same thing: the receipt's cost
// or, when a cascade climbed through an unpriced step (the receipt's cost is then unknown,
// never a fake sum), what its priced steps cost; an unpriced request books nothing.
//
// The receipts a previous run left in the WAL are replayed into ClickHouse after the start, so
// a rebuild meanwhile would miss them (after a kill -9, or a restart while ClickHouse was
// down: up to the whole outage's spend). The journal shows each of them to LeftoverSpend
// before its replay begins; a rebuild sums ClickHouse without their seq range plus what they
// cost, so each counts exactly once whether its insert has landed yet or not.
import type { ClickHouseClient } from '@clickhouse/client';
import { sql } from '../analytics/sql.js';
import type { UnsignedReceipt } from '../receipts/receipt.js';
import type { BudgetRecord } from '../store/admin/pricing.js';
import type { PeriodWindow } from './periods.js';

const HOUR_MS = 3_600_000;

/** What `receipt` books against its budgets (null: nothing is priced). */
export function budgetCostOf(receipt: Pick<UnsignedReceipt, 'cost_usd' | 'attempts'>): number | null {
  if (receipt.cost_usd !== null) return receipt.cost_usd;
  let known: number | null = null;
  for (const a of receipt.attempts) if (typeof a.cost_usd === 'number') known = (known ?? 0) + a.cost_usd;
  return known;
}

/** The receipts of one chain (instance_id) with seq in [fromSeq, toSeq]. */
export interface SeqRange {
  instanceId: string;
  fromSeq: number;
  toSeq: number;
}

/** What the replayed receipts cost, summed per team, key, feature and UTC hour (periods start on an hour). */
export class LeftoverSpend {
  private readonly spend = new Map<string, { teamId: string | null; apiKeyId: string | null; feature: string | null; hourMs: number; usd: number }>();
  private range: SeqRange | null = null;

  add(receipt: Pick<UnsignedReceipt, 'instance_id' | 'seq' | 'team_id' | 'api_key_id' | 'feature' | 'started_at' | 'cost_usd' | 'attempts'>): void {
    const r = this.range;
    if (r === null) this.range = { instanceId: receipt.instance_id, fromSeq: receipt.seq, toSeq: receipt.seq };
    else if (r.instanceId !== receipt.instance_id)
      return; // one WAL holds one chain
    else {
      r.fromSeq = Math.min(r.fromSeq, receipt.seq);
      r.toSeq = Math.max(r.toSeq, receipt.seq);
    }
    const usd = budgetCostOf(receipt);
    if (!usd) return;
    const hourMs = Math.floor(Date.parse(receipt.started_at) / HOUR_MS) * HOUR_MS;
    const key = `${receipt.team_id}\n${receipt.api_key_id}\n${receipt.feature}\n${hourMs}`;
    const entry = this.spend.get(key);
    if (entry) entry.usd += usd;
    else this.spend.set(key, { teamId: receipt.team_id, apiKeyId: receipt.api_key_id, feature: receipt.feature, hourMs, usd });
  }

  /** The replayed receipts, which a rebuild leaves out of its ClickHouse sum (null: none). */
  get replayed(): SeqRange | null {
    return this.range;
  }

  /** What the replayed receipts cost `budget` in `window`. */
  spentIn(budget: BudgetRecord, window: PeriodWindow): number {
    let usd = 0;
    for (const e of this.spend.values()) {
      if (e.hourMs < window.startMs || (window.endMs !== null && e.hourMs >= window.endMs)) continue;
      const ofSubject =
        budget.scope === 'TEAM'
          ? e.teamId === budget.teamId
          : budget.scope === 'API_KEY'
            ? e.apiKeyId === budget.apiKeyId
            : e.feature === budget.feature && (!budget.teamId || e.teamId === budget.teamId);
      if (ofSubject) usd += e.usd;
    }
    return usd;
  }
}

export async function spentInWindow(
  client: ClickHouseClient,
  table: string,
  budget: BudgetRecord,
  window: PeriodWindow,
  leftover: LeftoverSpend | null = null,
): Promise<number> {
  const subject =
    budget.scope === 'TEAM'
      ? sql`team_id = ${budget.teamId}`
      : budget.scope === 'API_KEY'
        ? sql`api_key_id = ${budget.apiKeyId}`
        : budget.teamId
          ? sql`feature = ${budget.feature} AND team_id = ${budget.teamId}`
          : sql`feature = ${budget.feature}`;
  const end = window.endMs === null ? sql`` : sql` AND started_at < fromUnixTimestamp64Milli(${sql.typed(window.endMs, 'Int64')})`;
  const r = leftover?.replayed;
  const notReplayed = r ? sql` AND NOT (instance_id = ${r.instanceId} AND seq BETWEEN ${r.fromSeq} AND ${r.toSeq})` : sql``;
  const q = sql`SELECT sum(ifNull(toFloat64(cost_usd), arraySum(a -> toFloat64(ifNull(a.cost_usd, 0)), attempt_usage))) AS spent FROM ${sql.typed(table, 'Identifier')}
    WHERE ${subject} AND started_at >= fromUnixTimestamp64Milli(${sql.typed(window.startMs, 'Int64')})${end}${notReplayed}`;
  const { query, query_params } = q.toQuery();
  const rs = await client.query({ query, query_params, format: 'JSONEachRow' });
  const rows = (await rs.json()) as Array<{ spent: number }>;
  return Number(rows[0]?.spent ?? 0) + (leftover?.spentIn(budget, window) ?? 0);
}
