// deploy/grafana/tollgate.json: importable as is, and every metric it queries is one /metrics
// serves (the registry createMetrics() builds is what GET /metrics renders).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/metrics.js';

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ refId: string; expr: string; datasource?: { type: string; uid: string } }>;
  panels?: Panel[];
}

const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/tollgate.json', import.meta.url), 'utf8')) as {
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query: unknown; datasource?: { uid: string } }> };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
const DATASOURCE = '${datasource}';

/** The series names /metrics serves: histograms as their _bucket, _sum and _count series. */
async function servedSeries(): Promise<Set<string>> {
  const text = await createMetrics().registry.metrics();
  const series = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const suffixes = type === 'histogram' ? ['_bucket', '_sum', '_count'] : type === 'summary' ? ['', '_sum', '_count'] : [''];
    for (const suffix of suffixes) series.add(name! + suffix);
  }
  return series;
}

/** Every string value under a `uid` key, anywhere in the document. */
function uids(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(uids);
  if (!node || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([k, v]) => (k === 'uid' && typeof v === 'string' ? [v] : uids(v)));
}

describe('the Grafana dashboard', () => {
  it('queries only metrics that /metrics serves', async () => {
    const served = await servedSeries();
    expect(queries.length).toBeGreaterThan(20);
    for (const { panel, expr } of queries) {
      const names = expr.match(/\btollgate_[a-z0-9_]+/g) ?? [];
      expect(names.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(served.has(name), `${panel}: ${name} is not served`).toBe(true);
    }
  });

  it('shows what an on-call engineer looks for', () => {
    const queried = new Set(queries.flatMap(({ expr }) => expr.match(/\btollgate_[a-z0-9_]+/g) ?? []));
    const needed = [
      'tollgate_requests_total',
      'tollgate_request_errors_total',
      'tollgate_request_duration_seconds_bucket',
      'tollgate_overhead_seconds_bucket',
      'tollgate_upstream_attempts_total',
      'tollgate_retries_refused_total',
      'tollgate_cache_requests_total',
      'tollgate_receipts_appended',
      'tollgate_receipts_written',
      'tollgate_receipts_queued',
      'tollgate_wal_segments',
      'tollgate_receipt_insert_errors',
      'tollgate_ws_slow_consumer_closes_total',
      'tollgate_rule_errors_total',
      'tollgate_process_resident_memory_bytes',
      'tollgate_process_cpu_user_seconds_total',
      'tollgate_nodejs_eventloop_lag_p99_seconds',
    ];
    expect(needed.filter((n) => !queried.has(n))).toEqual([]);
    // Latency and overhead are shown as quantiles of their histograms.
    for (const metric of ['tollgate_request_duration_seconds_bucket', 'tollgate_overhead_seconds_bucket']) {
      expect(queries.some(({ expr }) => expr.includes(metric) && expr.startsWith('histogram_quantile(0.99,'))).toBe(true);
    }
  });

  it('is importable as is: a Prometheus data source variable that every panel uses, no hard-coded uid', () => {
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(variable).toMatchObject({ name: 'datasource', query: 'prometheus' });
    expect(new Set(uids(dashboard))).toEqual(new Set([DATASOURCE]));
    for (const panel of panels.filter((p) => p.type !== 'row')) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: DATASOURCE });
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets!) expect(target.datasource?.uid ?? DATASOURCE).toBe(DATASOURCE);
    }
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const { title, gridPos } of panels) expect(gridPos.x + gridPos.w, title).toBeLessThanOrEqual(24);
  });
});
