// costPerTask: tasks (requests sharing a task id, per team), how many succeeded, and the
// cost per task and per succeeded task (DESIGN §8 "Meanings").
//
// Only the filtered requests count (range, attribution filters). A task's verdict: the
// latest outcome in task_outcomes, else the status of its last request among them
// ((started_at, seq) order), `ok` meaning succeeded. With a grouping, a task counts in every
// group it has requests in, with those requests' cost, and its verdict is the task's own.
// Raw receipts: a per-task join the rollups cannot answer for an arbitrary window.
import {
  dimensionSelect, filterConditions, fromTable, groupByClause, groupKeyOf, matchesNothing, num, orderByClause,
  runQuery, scopeFilter, uniqueDimensions,
  type AnalyticsContext, type AnalyticsFilter, type Dimension, type GroupKey, DIMENSION_ALIAS,
} from './common.js';
import { sql, trusted } from './sql.js';

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
  const where = filterConditions(filter, 'raw');
  const outerDims = sql.join(dims.map((d) => sql`, ${trusted(DIMENSION_ALIAS, d)}`), ' ');
  return sql`SELECT count() AS m_tasks,
      countIf(if(o.has_outcome = 1, o.o_success, s.last_status = 'ok')) AS m_succeeded,
      sum(g.requests) AS m_requests,
      toFloat64(sum(g.cost)) AS m_cost_usd,
      sum(g.unpriced) AS m_unpriced_requests${outerDims}
    FROM
    (
      SELECT team_id AS t_team, task_id AS t_task, count() AS requests,
             sum(ifNull(cost_usd, toDecimal64(0, 9))) AS cost, countIf(cost_usd IS NULL) AS unpriced${dimensionSelect(dims)}
      FROM ${fromTable(ctx, 'raw')}
      WHERE ${where} AND task_id != ''
      GROUP BY t_team, t_task${sql.join(dims.map((d) => sql`, ${trusted(DIMENSION_ALIAS, d)}`), ' ')}
    ) AS g
    INNER JOIN
    (
      SELECT team_id AS t_team, task_id AS t_task, argMax(toString(status), (started_at, seq)) AS last_status
      FROM ${fromTable(ctx, 'raw')}
      WHERE ${where} AND task_id != ''
      GROUP BY t_team, t_task
    ) AS s ON g.t_team = s.t_team AND g.t_task = s.t_task
    LEFT JOIN
    (
      SELECT toString(team_id) AS t_team, task_id AS t_task, argMax(success, recorded_at) AS o_success, toUInt8(1) AS has_outcome
      FROM task_outcomes
      WHERE (team_id, task_id) IN (
        SELECT team_id, task_id FROM ${fromTable(ctx, 'raw')} WHERE ${where} AND task_id != ''
      )
      GROUP BY t_team, t_task
    ) AS o ON g.t_team = o.t_team AND g.t_task = o.t_task
    ${groupByClause(dims)}
    ${dims.length === 0 ? sql`HAVING m_tasks > 0` : sql.empty()}
    ${orderByClause(dims)}
    SETTINGS join_use_nulls = 0`;
}

export async function costPerTask(ctx: AnalyticsContext, rawFilter: AnalyticsFilter, groupBy?: readonly Dimension[] | null): Promise<TaskCostRow[]> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const dims = uniqueDimensions(groupBy);
  if (matchesNothing(filter)) return [];
  const rows = await runQuery(ctx, costPerTaskQuery(ctx, filter, dims));
  return rows.map((r) => {
    const tasks = num(r.m_tasks);
    const succeededTasks = num(r.m_succeeded);
    const costUsd = num(r.m_cost_usd);
    return {
      key: groupKeyOf(r, dims),
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
