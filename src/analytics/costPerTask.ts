// costPerTask: tasks (requests sharing a task id, per team), how many succeeded, and the
// cost per task and per succeeded task (DESIGN §8 "Meanings").
//
// Only the filtered requests count (range, attribution filters). A task's verdict: the
// latest outcome in task_outcomes, else the status of its last request among them
// ((started_at, seq) order), `ok` meaning succeeded. With a grouping, a task counts in every
// group it has requests in, with those requests' cost, and its verdict is the task's own.
// Raw receipts (one scan): a per-task question the rollups cannot answer for an arbitrary
// window (task_costs covers a task's whole life).
import {
  type AnalyticsContext,
  type AnalyticsFilter,
  type Dimension,
  dimensionAliases,
  dimensionSelect,
  filterConditions,
  fromTable,
  type GroupKey,
  groupByClause,
  groupKeyReader,
  matchesNothing,
  orderByClause,
  scopeFilter,
  uniqueDimensions,
} from './common.js';
import { num, runQuery } from './run.js';
import { sql } from './sql.js';

export interface TaskCostRow {
  key: GroupKey;
  tasks: number;
  succeededTasks: number;
  failedTasks: number;
  requests: number;
  costUsd: number;
  unpricedRequests: number;
  costPerTaskUsd: number | null;
  costPerSucceededTaskUsd: number | null;
}

export function costPerTaskQuery(ctx: AnalyticsContext, filter: AnalyticsFilter, dims: Dimension[]) {
  const keys = dimensionAliases(dims);
  // One scan of receipts: per (team, task, group) the group's requests and cost, and its
  // latest request as one number, last_request = (started_at, seq, status = 'ok') packed
  // into a UInt128: milliseconds (shifted to be ≥ 0 from 1900 on, DateTime64's first year) in
  // the high bits, seq below them, and whether that request was ok in the lowest bit. Its max
  // is the latest request in (started_at, seq) order, and its last bit that request's
  // verdict. One max() over a UInt128 instead of max and argMax over a (started_at, seq)
  // tuple: ~300 ms less per aggregate at 10M receipts (tuples compare column by column).
  // (seq is per gateway instance: two requests of one task on two instances with the same
  // started_at and seq rank ok first, where argMax picked either.)
  // When a grouping can split a task (any dimension but TEAM), the task's last request is the
  // latest over its groups: a window over the task. The hash in front of the partition key
  // only makes the window's sort cheaper (~1.5× here); team and task after it keep the
  // partitions exact.
  const splitsTasks = dims.some((d) => d !== 'TEAM');
  const taskLastRequest = splitsTasks ? sql`max(last_request) OVER (PARTITION BY cityHash64(t_team, t_task), t_team, t_task)` : sql`last_request`;
  // A task's verdict: its latest outcome if it has one, else its last request's status. The
  // outcomes are two sets of (team, task), read for the scoped teams only: a set lookup per
  // task, where a JOIN let the planner build its hash table from the big side (3× slower).
  const outcomeTeams = filter.teamIds == null ? sql.empty() : sql`WHERE team_id IN ${[...filter.teamIds]}`;
  return sql`SELECT count() AS m_tasks,
      countIf(if(
        (t_team, t_task) IN (SELECT team_id, task_id FROM task_outcomes ${outcomeTeams}),
        (t_team, t_task) IN (SELECT team_id AS o_team, task_id AS o_task FROM task_outcomes ${outcomeTeams}
                             GROUP BY o_team, o_task HAVING argMax(success, recorded_at)),
        task_last_request % 2 = 1)) AS m_succeeded,
      sum(requests) AS m_requests,
      toFloat64(sum(cost)) AS m_cost_usd,
      sum(unpriced) AS m_unpriced_requests${keys}
    FROM
    (
      SELECT *, ${taskLastRequest} AS task_last_request
      FROM
      (
        SELECT team_id AS t_team, task_id AS t_task, count() AS requests,
               sum(ifNull(cost_usd, toDecimal64(0, 9))) AS cost, countIf(cost_usd IS NULL) AS unpriced,
               max(bitShiftLeft(toUInt128(toUnixTimestamp64Milli(started_at) + 2208988800000), 65)
                   + bitShiftLeft(toUInt128(seq), 1) + (status = 'ok')) AS last_request${dimensionSelect(dims)}
        FROM ${fromTable(ctx, 'raw')}
        WHERE ${filterConditions(filter, 'raw')} AND task_id != ''
        GROUP BY t_team, t_task${keys}
      )
    )
    ${groupByClause(dims)}
    ${dims.length === 0 ? sql`HAVING m_tasks > 0` : sql.empty()}
    ${orderByClause(dims)}`;
}

export async function costPerTask(ctx: AnalyticsContext, rawFilter: AnalyticsFilter, groupBy?: readonly Dimension[] | null): Promise<TaskCostRow[]> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if (matchesNothing(filter)) return [];
  const rows = await runQuery(ctx, costPerTaskQuery(ctx, filter, dims));
  const keyOf = groupKeyReader(dims);
  return rows.map((r) => {
    const tasks = num(r.m_tasks);
    const succeededTasks = num(r.m_succeeded);
    const costUsd = num(r.m_cost_usd);
    return {
      key: keyOf(r),
      tasks,
      succeededTasks,
      failedTasks: tasks - succeededTasks,
      requests: num(r.m_requests),
      costUsd,
      unpricedRequests: num(r.m_unpriced_requests),
      costPerTaskUsd: tasks > 0 ? costUsd / tasks : null,
      costPerSucceededTaskUsd: succeededTasks > 0 ? costUsd / succeededTasks : null,
    };
  });
}
