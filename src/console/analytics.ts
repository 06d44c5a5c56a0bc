// Analytics over a chosen range, grouped by model, team, feature, provider or route: the
// `usage`, `costPerTask`, `latency`, `cacheStats` and `timeSeries` queries, shown as they
// come. Each number on screen keeps the raw GraphQL value in data-value, with data-query
// and data-field naming where it came from.
import { type Chart, lineChart, PALETTE } from './charts.js';
import type { Ctx, View } from './context.js';
import { fill, h } from './dom.js';
import { count, FORMAT, type Kind, usd } from './format.js';

const RANGES: ReadonlyArray<[string, number]> = [
  ['Last 15 minutes', 15 * 60_000],
  ['Last hour', 3_600_000],
  ['Last 6 hours', 6 * 3_600_000],
  ['Last 24 hours', 24 * 3_600_000],
  ['Last 7 days', 7 * 86_400_000],
  ['Last 30 days', 30 * 86_400_000],
];
const DIMENSIONS = ['MODEL', 'TEAM', 'FEATURE', 'PROVIDER', 'ROUTE'] as const;
type Dimension = (typeof DIMENSIONS)[number];
const INTERVAL_MS = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 } as const;
type Interval = keyof typeof INTERVAL_MS;
const REFRESH_MS = 30_000;
const TOP_GROUPS = 6;

interface Key {
  model: string | null;
  provider: string | null;
  route: string | null;
  feature: string | null;
  teamId: string | null;
  team: { name: string } | null;
}
type Row = { key: Key } & Record<string, number | null | Key>;
interface Answers {
  totalUsage: Row[];
  totalTasks: Row[];
  totalLatency: Row[];
  totalCache: Row[];
  usage: Row[];
  costPerTask: Row[];
  latency: Row[];
  cacheStats: Row[];
}
interface Series {
  totals: Array<{ start: string; requests: number; errors: number; cacheHits: number; costUsd: number }>;
  byGroup: Array<{ start: string; key: Key; costUsd: number }>;
}

const KEY = 'key { model provider route feature teamId team { name } }';
const ANALYTICS_QUERY = `query ConsoleAnalytics($filter: AnalyticsFilter!, $groupBy: [Dimension!]) {
  totalUsage: usage(filter: $filter) { requests errors costUsd unpricedRequests }
  totalTasks: costPerTask(filter: $filter) { tasks succeededTasks costPerTaskUsd costPerSucceededTaskUsd }
  totalLatency: latency(filter: $filter) { p50Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms }
  totalCache: cacheStats(filter: $filter) { hits hitRate savedCostUsd }
  usage(filter: $filter, groupBy: $groupBy) { ${KEY} requests errors costUsd unpricedRequests }
  costPerTask(filter: $filter, groupBy: $groupBy) { ${KEY} tasks succeededTasks costPerTaskUsd costPerSucceededTaskUsd }
  latency(filter: $filter, groupBy: $groupBy) { ${KEY} requests p50Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms }
  cacheStats(filter: $filter, groupBy: $groupBy) { ${KEY} requests hits hitRate savedCostUsd }
}`;
const SERIES_QUERY = `query ConsoleSeries($filter: AnalyticsFilter!, $interval: Interval!, $groupBy: [Dimension!]) {
  totals: timeSeries(filter: $filter, interval: $interval) { start requests errors cacheHits costUsd }
  byGroup: timeSeries(filter: $filter, interval: $interval, groupBy: $groupBy) { start ${KEY} costUsd }
}`;

/** The raw value of a group (what data-key holds): '' for "none". */
function keyValue(key: Key, dim: Dimension): string {
  const v = { MODEL: key.model, TEAM: key.teamId, FEATURE: key.feature, PROVIDER: key.provider, ROUTE: key.route }[dim];
  return v ?? '';
}
const keyLabel = (key: Key, dim: Dimension): string => (dim === 'TEAM' ? (key.team?.name ?? key.teamId) : keyValue(key, dim)) || '(none)';

function intervalFor(spanMs: number): Interval {
  return spanMs <= 6 * 3_600_000 ? 'MINUTE' : spanMs <= 7 * 86_400_000 ? 'HOUR' : 'DAY';
}

export function analyticsView(ctx: Ctx): View {
  const rangeSel = h(
    'select',
    { id: 'analytics-range-select', 'aria-label': 'Time range', onchange: () => onRangeChange() },
    ...RANGES.map(([label, span], i) => h('option', { value: span, selected: i === 1 }, label)),
    h('option', { value: 'custom' }, 'Custom…'),
  );
  const fromInput = h('input', { id: 'analytics-from', 'aria-label': 'From', type: 'datetime-local', hidden: true });
  const toInput = h('input', { id: 'analytics-to', 'aria-label': 'To', type: 'datetime-local', hidden: true });
  const groupSel = h(
    'select',
    { id: 'analytics-group', 'aria-label': 'Group by', onchange: () => void refresh() },
    ...DIMENSIONS.map((d) => h('option', { value: d }, `by ${d.toLowerCase()}`)),
  );
  const teamSel = h(
    'select',
    { id: 'analytics-team', 'aria-label': 'Team', onchange: () => void refresh() },
    h('option', { value: '' }, 'All teams'),
    ...[...ctx.teams].map(([id, name]) => h('option', { value: id }, name)),
  );
  const refreshBtn = h('button', { id: 'analytics-refresh', type: 'button', onclick: () => void refresh() }, 'Refresh');
  const rangeNote = h('div', { id: 'analytics-range', class: 'note' });
  const errorBox = h('div', { class: 'error', role: 'alert' });
  const tiles = h('div', { class: 'tiles', id: 'analytics-summary' });
  const tables = h('div', { id: 'analytics-tables' });
  const trafficBox = h('div', { class: 'chart' });
  const costBox = h('div', { class: 'chart' });
  const costTitle = h('h2', {});
  const trafficTitle = h('h2', {});

  const el = h(
    'section',
    { class: 'view analytics', 'data-state': 'loading' },
    h('div', { class: 'toolbar' }, rangeSel, fromInput, toInput, groupSel, teamSel, refreshBtn, h('span', { class: 'spacer' }), rangeNote),
    errorBox,
    tiles,
    h('div', { class: 'panel' }, trafficTitle, trafficBox),
    h('div', { class: 'panel' }, costTitle, costBox),
    tables,
  );

  let trafficChart: Chart | null = null;
  let costChart: Chart | null = null;
  let generation = 0;
  // The timer's refresh waits for one still running (slow 30-day queries must not stack up on
  // ClickHouse); a user's change starts one at once, the older answer then discarded.
  let loading = false;
  const timer = setInterval(() => {
    if (rangeSel.value !== 'custom' && !loading) void refresh();
  }, REFRESH_MS);
  void refresh();

  function onRangeChange(): void {
    const custom = rangeSel.value === 'custom';
    fromInput.hidden = toInput.hidden = !custom;
    if (custom && !fromInput.value) {
      const to = new Date();
      toInput.value = localInput(to);
      fromInput.value = localInput(new Date(to.getTime() - 86_400_000));
    }
    void refresh();
  }

  function range(): { from: Date; to: Date } | null {
    if (rangeSel.value === 'custom') {
      const from = new Date(fromInput.value);
      const to = new Date(toInput.value);
      return Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || to <= from ? null : { from, to };
    }
    // Up to the end of the current minute, so the last bucket is whole.
    const to = new Date(Math.ceil(Date.now() / 60_000) * 60_000);
    return { from: new Date(to.getTime() - Number(rangeSel.value)), to };
  }

  async function refresh(): Promise<void> {
    const r = range();
    if (!r) {
      errorBox.textContent = 'Choose a start before the end.';
      return;
    }
    const mine = ++generation;
    const dim = groupSel.value as Dimension;
    const interval = intervalFor(r.to.getTime() - r.from.getTime());
    const filter = { from: r.from.toISOString(), to: r.to.toISOString(), ...(teamSel.value ? { teamIds: [teamSel.value] } : {}) };
    el.dataset.state = 'loading';
    loading = true;
    try {
      const [answers, series] = await Promise.all([
        ctx.query<Answers>(ANALYTICS_QUERY, { filter, groupBy: [dim] }),
        ctx.query<Series>(SERIES_QUERY, { filter, interval, groupBy: [dim] }),
      ]).finally(() => {
        if (mine === generation) loading = false;
      });
      if (mine !== generation) return; // a newer refresh is on its way
      errorBox.textContent = '';
      rangeNote.dataset.from = filter.from;
      rangeNote.dataset.to = filter.to;
      rangeNote.dataset.group = dim;
      rangeNote.textContent = `${r.from.toLocaleString()} → ${r.to.toLocaleString()} · per ${interval.toLowerCase()}`;
      renderSummary(answers);
      renderTables(answers, dim);
      renderCharts(series, r, interval, dim);
      el.dataset.state = 'ready';
    } catch (err) {
      if (mine !== generation) return;
      errorBox.textContent = `Analytics failed: ${(err as Error).message}`;
      el.dataset.state = 'error';
    }
  }

  function renderSummary(a: Answers): void {
    const u = a.totalUsage[0];
    const t = a.totalTasks[0];
    const l = a.totalLatency[0];
    const c = a.totalCache[0];
    fill(
      tiles,
      stat('requests', 'totalUsage', 'requests', u, 'count'),
      stat('errors', 'totalUsage', 'errors', u, 'count'),
      stat('cost', 'totalUsage', 'costUsd', u, 'usd'),
      // A model with no price adds nothing to the cost: how many requests that is, beside it.
      stat('unpriced requests (not in cost)', 'totalUsage', 'unpricedRequests', u, 'count'),
      stat('tasks', 'totalTasks', 'tasks', t, 'count'),
      stat('cost / task', 'totalTasks', 'costPerTaskUsd', t, 'usd'),
      stat('cost / successful task', 'totalTasks', 'costPerSucceededTaskUsd', t, 'usd'),
      stat('latency p50', 'totalLatency', 'p50Ms', l, 'ms'),
      stat('p95', 'totalLatency', 'p95Ms', l, 'ms'),
      stat('p99', 'totalLatency', 'p99Ms', l, 'ms'),
      stat('TTFT p50', 'totalLatency', 'ttftP50Ms', l, 'ms'),
      stat('TTFT p95', 'totalLatency', 'ttftP95Ms', l, 'ms'),
      stat('cache hit rate', 'totalCache', 'hitRate', c, 'pct'),
      stat('cache savings', 'totalCache', 'savedCostUsd', c, 'usd'),
    );
  }

  function renderTables(a: Answers, dim: Dimension): void {
    const by = (rows: Row[]) => new Map(rows.map((r) => [keyValue(r.key, dim), r]));
    const usage = by(a.usage);
    const tasks = by(a.costPerTask);
    const keys = new Map<string, Key>();
    for (const r of [...a.usage, ...a.costPerTask]) keys.set(keyValue(r.key, dim), r.key);
    const costRows = [...keys].sort(([ka], [kb]) => num(usage.get(kb), 'costUsd') - num(usage.get(ka), 'costUsd') || ka.localeCompare(kb));
    const sortBy = (rows: Row[], field: string) => [...rows].sort((x, y) => num(y, field) - num(x, field));
    fill(
      tables,
      table(
        'analytics-cost',
        `Cost ${label(dim)}`,
        ['requests', 'errors', 'cost', 'unpriced', 'tasks', 'successful tasks', 'cost / task', 'cost / successful task'],
        costRows.map(([k, key]) =>
          groupRow(k, keyLabel(key, dim), [
            cell('usage', 'requests', usage.get(k), 'count'),
            cell('usage', 'errors', usage.get(k), 'count'),
            cell('usage', 'costUsd', usage.get(k), 'usd'),
            cell('usage', 'unpricedRequests', usage.get(k), 'count'),
            cell('costPerTask', 'tasks', tasks.get(k), 'count'),
            cell('costPerTask', 'succeededTasks', tasks.get(k), 'count'),
            cell('costPerTask', 'costPerTaskUsd', tasks.get(k), 'usd'),
            cell('costPerTask', 'costPerSucceededTaskUsd', tasks.get(k), 'usd'),
          ]),
        ),
      ),
      table(
        'analytics-latency',
        `Latency ${label(dim)}`,
        ['requests', 'p50', 'p95', 'p99', 'TTFT p50', 'TTFT p95', 'TTFT p99'],
        sortBy(a.latency, 'requests').map((r) =>
          groupRow(keyValue(r.key, dim), keyLabel(r.key, dim), [
            cell('latency', 'requests', r, 'count'),
            ...(['p50Ms', 'p95Ms', 'p99Ms', 'ttftP50Ms', 'ttftP95Ms', 'ttftP99Ms'] as const).map((f) => cell('latency', f, r, 'ms')),
          ]),
        ),
      ),
      table(
        'analytics-cache',
        `Cache ${label(dim)}`,
        ['requests', 'hits', 'hit rate', 'savings'],
        sortBy(a.cacheStats, 'requests').map((r) =>
          groupRow(keyValue(r.key, dim), keyLabel(r.key, dim), [
            cell('cacheStats', 'requests', r, 'count'),
            cell('cacheStats', 'hits', r, 'count'),
            cell('cacheStats', 'hitRate', r, 'pct'),
            cell('cacheStats', 'savedCostUsd', r, 'usd'),
          ]),
        ),
      ),
    );
  }

  function renderCharts(s: Series, r: { from: Date; to: Date }, interval: Interval, dim: Dimension): void {
    const step = INTERVAL_MS[interval];
    const starts = new Set<number>();
    for (let t = Math.floor(r.from.getTime() / step) * step; t < r.to.getTime() && starts.size < 2000; t += step) starts.add(t);
    for (const b of [...s.totals, ...s.byGroup]) starts.add(Date.parse(b.start));
    const xs = [...starts].sort((a, b) => a - b);
    const at = new Map(xs.map((t, i) => [t, i]));
    const column = () => xs.map(() => 0);

    const requests = column();
    const errors = column();
    const hits = column();
    for (const b of s.totals) {
      const i = at.get(Date.parse(b.start))!;
      requests[i] = b.requests;
      errors[i] = b.errors;
      hits[i] = b.cacheHits;
    }
    const per = interval.toLowerCase();
    // Days are UTC days (analytics buckets on UTC boundaries): drawn and labelled in UTC.
    const utc = interval === 'DAY';
    trafficTitle.textContent = `Requests, errors and cache hits per ${per}${utc ? ' (UTC)' : ''}`;
    trafficChart?.destroy();
    trafficChart = lineChart(trafficBox, { series: [{ label: 'requests' }, { label: 'errors' }, { label: 'cache hits' }], value: count, utc });
    trafficChart.setData([xs.map((t) => t / 1000), requests, errors, hits]);

    // Cost per bucket for the most expensive groups; the rest summed as "other".
    const totals = new Map<string, { label: string; cost: number }>();
    for (const b of s.byGroup) {
      const k = keyValue(b.key, dim);
      const e = totals.get(k) ?? { label: keyLabel(b.key, dim), cost: 0 };
      e.cost += b.costUsd;
      totals.set(k, e);
    }
    const top = [...totals].sort((a, b) => b[1].cost - a[1].cost).slice(0, TOP_GROUPS);
    const topIndex = new Map(top.map(([k], i) => [k, i]));
    const cols = top.map(() => column());
    const other = column();
    for (const b of s.byGroup) {
      const i = at.get(Date.parse(b.start))!;
      const g = topIndex.get(keyValue(b.key, dim));
      if (g === undefined) other[i] += b.costUsd;
      else cols[g]![i] += b.costUsd;
    }
    const hasOther = other.some((v) => v > 0);
    costTitle.textContent = `Cost per ${per}${utc ? ' (UTC)' : ''} ${label(dim)}`;
    costChart?.destroy();
    costChart = lineChart(costBox, {
      series: [...top.map(([, e], i) => ({ label: e.label, color: PALETTE[i] })), ...(hasOther ? [{ label: 'other', color: PALETTE[6] }] : [])],
      value: usd,
      utc,
    });
    costChart.setData([xs.map((t) => t / 1000), ...cols, ...(hasOther ? [other] : [])]);
  }

  return {
    el,
    stop() {
      clearInterval(timer);
      generation++;
      trafficChart?.destroy();
      costChart?.destroy();
    },
  };
}

const label = (dim: Dimension) => `by ${dim.toLowerCase()}`;

function num(row: Row | undefined, field: string): number {
  const v = row?.[field];
  return typeof v === 'number' ? v : 0;
}

function stat(title: string, query: string, field: string, row: Row | undefined, kind: Kind): HTMLElement {
  const value = row ? (row[field] as number | null) : null;
  return h(
    'div',
    { class: 'tile' },
    h('div', { class: 'label' }, title),
    h('div', { class: 'value', 'data-query': query, 'data-field': field, 'data-value': JSON.stringify(value), title: String(value) }, FORMAT[kind](value)),
  );
}

/** A number from one GraphQL row, shown formatted, raw in data-value (null: no such row or no value). */
function cell(query: string, field: string, row: Row | undefined, kind: Kind): HTMLTableCellElement {
  const value = row ? ((row[field] as number | null | undefined) ?? null) : null;
  return h(
    'td',
    { 'data-query': query, 'data-field': field, 'data-value': JSON.stringify(value), title: value === null ? '' : String(value) },
    FORMAT[kind](value),
  );
}

function groupRow(key: string, text: string, cells: HTMLElement[]): HTMLTableRowElement {
  return h('tr', { 'data-key': key }, h('th', { scope: 'row' }, text), ...cells);
}

function table(id: string, title: string, columns: string[], rows: HTMLTableRowElement[]): HTMLElement {
  return h(
    'div',
    { class: 'panel' },
    h('h2', {}, title),
    h(
      'table',
      { class: 'grid numbers', id },
      h('thead', {}, h('tr', {}, h('th', {}, ''), ...columns.map((c) => h('th', {}, c)))),
      h('tbody', {}, ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: columns.length + 1, class: 'empty' }, 'No requests in this range.'))])),
    ),
  );
}

/** A Date as a datetime-local input's value (local time, minutes). */
function localInput(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
