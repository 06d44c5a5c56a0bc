// Analytics by routing (DESIGN §5, §8): the TASK_TYPE, RULE, EXPERIMENT and VARIANT dimensions
// and filters in every analytics question, UsageRow.reasoningTokens, experimentResults, and the
// receipt fields of version 2 in GraphQL. Traffic goes through the proxy with the official
// openai client: an A/B experiment sticky by task (the control keeps the route's rule, the
// candidate has its own target and answers with reasoning tokens), errors in both variants,
// task types, two teams, a task outcome, and a cascade. Every number is then recomputed here
// from the receipts (read back through GraphQL `receipts`) and must be equal.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gqlOk } from '../support/graphql.js';
import { storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let admin: string;
let keyA: { secret: string; id: string; teamId: string };
let keyB: { secret: string; id: string; teamId: string };
let all: R[] = [];
let sent = 0;
let cascadeReceiptId = '';
let t0 = 0;
let t1 = 0;

interface Attempt {
  provider: string;
  model: string;
  status: number;
  error: string | null;
  latencyMs: number;
  promptTokens: number | null;
  completionTokens: number | null;
  costUsd: number | null;
  accepted: boolean | null;
  rejectReason: string | null;
}
interface R {
  receiptId: string;
  startedAt: string;
  seq: number;
  teamId: string | null;
  taskId: string | null;
  route: string | null;
  model: string | null;
  status: string;
  cacheStatus: string | null;
  costUsd: number | null;
  savedCostUsd: number | null;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  latencyMs: number;
  ttftMs: number | null;
  overheadMs: number | null;
  receiptVersion: number;
  taskType: string | null;
  rule: string | null;
  classifierTier: string | null;
  experiment: string | null;
  variant: string | null;
  accepted: boolean | null;
  reasoningTokens: number | null;
  cacheWriteTokens: number | null;
  attempts: Attempt[];
}
const RECEIPT_FIELDS = `receiptId startedAt seq teamId taskId route model status cacheStatus costUsd savedCostUsd
  promptTokens completionTokens cachedTokens latencyMs ttftMs overheadMs
  receiptVersion taskType rule classifierTier experiment variant accepted reasoningTokens cacheWriteTokens
  attempts { provider model status error latencyMs promptTokens completionTokens costUsd accepted rejectReason }`;

const NEW_DIMS = ['TASK_TYPE', 'RULE', 'EXPERIMENT', 'VARIANT'] as const;
type Dim = (typeof NEW_DIMS)[number] | 'MODEL' | 'TEAM';
const FIELD: Record<Dim, keyof R & keyof GroupKeyShape> = {
  TASK_TYPE: 'taskType',
  RULE: 'rule',
  EXPERIMENT: 'experiment',
  VARIANT: 'variant',
  MODEL: 'model',
  TEAM: 'teamId',
};
interface GroupKeyShape {
  taskType: string | null;
  rule: string | null;
  experiment: string | null;
  variant: string | null;
  model: string | null;
  teamId: string | null;
}
const KEY = 'key { taskType rule experiment variant model teamId }';
const GROUPINGS: Dim[][] = [
  ['TASK_TYPE'],
  ['RULE'],
  ['EXPERIMENT'],
  ['VARIANT'],
  ['EXPERIMENT', 'VARIANT'],
  ['VARIANT', 'MODEL'],
  ['TEAM', 'VARIANT'],
  [...NEW_DIMS],
];

const keyOf = (r: R, dims: readonly Dim[]) => JSON.stringify(dims.map((d) => r[FIELD[d]] ?? null));
const rowKey = (row: { key: GroupKeyShape }, dims: readonly Dim[]) => JSON.stringify(dims.map((d) => row.key[FIELD[d]] ?? null));
function groups(rs: R[], dims: readonly Dim[]): Map<string, R[]> {
  const m = new Map<string, R[]>();
  for (const r of rs) m.set(keyOf(r, dims), [...(m.get(keyOf(r, dims)) ?? []), r]);
  return m;
}
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
/** ClickHouse's quantileExact: the element at floor(level × n) of the sorted values (the last for level 1); null without values. */
function quantileExact(values: Array<number | null>, level: number): number | null {
  const xs = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  return xs[Math.min(Math.floor(level * xs.length), xs.length - 1)]!;
}

/** Whole UTC days around the traffic: both the hourly rollup and latency's daily sketch could answer such a range. */
function windowOf(extra: Record<string, unknown> = {}, aligned = true) {
  const day = 86_400_000;
  const from = aligned ? Math.floor(t0 / day) * day - day : t0 - 1234;
  const to = aligned ? Math.ceil((t1 + 1) / day) * day + day : t1 + 4321;
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...extra };
}

const OUTCOME_TASK = 'task-3'; // recorded as failed, whatever its requests say
const outcomes = new Map<string, boolean>();

async function chat(secret: string, model: string, opts: { task?: string; taskType?: string; stream?: boolean } = {}) {
  const headers: Record<string, string> = { 'x-tollgate-cache': 'no-store' };
  if (opts.task) headers['x-tollgate-task-id'] = opts.task;
  if (opts.taskType) headers['x-tollgate-task-type'] = opts.taskType;
  const client = gw.client(secret, { defaultHeaders: headers });
  sent++;
  const content = `question ${sent}: ${'why '.repeat(sent % 7)}`;
  try {
    if (opts.stream) {
      const s = await client.chat.completions.create({ model, stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content }] });
      for await (const _chunk of s) {
        /* drain */
      }
    } else {
      await client.chat.completions.create({ model, messages: [{ role: 'user', content }] });
    }
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  gw = await startTestGateway();
  admin = gw.adminToken;
  keyA = await gw.createKey('team-routing-a');
  keyB = await gw.createKey('team-routing-b');
  const sim = (model: string) => [{ provider: 'sim', model }];
  const store = gw.started.runtime.adminStore;
  await store.routing.applyRouting({
    routes: [
      {
        name: 'exp-chat',
        strategy: 'PRIORITY',
        retries: 0,
        targets: sim('control-model'),
        rules: [
          { name: 'classify-rule', when: 'request.taskType == "classify"', targets: sim('rule-model') },
          { name: 'hard', when: 'classifier.tier == "REASONING"', targets: sim('hard-model') },
        ],
      },
      {
        name: 'smart',
        strategy: 'CASCADE',
        accept: ['NON_EMPTY'],
        targets: [
          { provider: 'sim', model: 'cheap' },
          { provider: 'sim-b', model: 'strong' },
        ],
      },
    ],
    experiments: [
      {
        name: 'ab',
        route: 'exp-chat',
        stickyBy: 'TASK',
        variants: [
          { name: 'control', weight: 1 },
          { name: 'candidate', weight: 1, targets: sim('candidate-model') },
        ],
      },
    ],
  } as any);
  for (const [provider, model, input, output] of [
    ['sim', 'control-model', 1, 2],
    ['sim', 'candidate-model', 3, 5],
    ['sim', 'rule-model', 0.5, 1],
    ['sim', 'hard-model', 7, 9],
    ['sim', 'cheap', 1, 2],
    ['sim-b', 'strong', 10, 30],
  ] as const) {
    await store.pricing.setPrice({ provider, model, inputPerMTokUsd: input, outputPerMTokUsd: output });
  }
  await gw.started.runtime.app.catalog.refresh();

  // The candidate reasons; each variant's upstream fails now and then (retries 0: the
  // receipt says error).
  gw.sim.behave('candidate-model', { reasoningTokens: 11 });
  gw.sim.behave('candidate-model', { status: 500, times: 2 });
  gw.sim.behave('control-model', { status: 503, times: 1 });
  gw.sim.behave('rule-model', { status: 500, times: 1 });
  t0 = Date.now();
  const TYPES = ['classify', 'summarize', undefined];
  // Team A: 14 tasks of 1 to 3 requests (sticky by task: a task stays in its variant),
  // and requests without a task (sticky by API key then).
  for (let task = 0; task < 14; task++) {
    for (let n = 0; n <= task % 3; n++) {
      await chat(keyA.secret, 'exp-chat', { task: `task-${task}`, taskType: TYPES[task % 3], stream: (task + n) % 4 === 0 });
    }
  }
  for (let n = 0; n < 5; n++) await chat(keyA.secret, 'exp-chat', { taskType: TYPES[n % 3], stream: n % 2 === 1 });
  gw.sim.behave('control-model', { status: 500, times: 1 });
  gw.sim.behave('candidate-model', { status: 500, times: 1 });
  // Team B: the same experiment, its own tasks (tasks are per team: task-0 here is another task).
  for (let task = 0; task < 4; task++) {
    for (let n = 0; n < 2; n++) await chat(keyB.secret, 'exp-chat', { task: `task-${task}`, taskType: TYPES[(task + 1) % 3] });
  }
  // A cascade whose cheap step answers empty: it climbs to the strong step.
  gw.sim.behave('cheap', { content: '   ', times: 1 });
  const { response } = await gw
    .client(keyA.secret, { defaultHeaders: { 'x-tollgate-task-type': 'extract', 'x-tollgate-task-id': 'cascade-task' } })
    .chat.completions.create({ model: 'smart', messages: [{ role: 'user', content: 'Where is the Eiffel tower?' }] })
    .withResponse();
  sent++;
  cascadeReceiptId = response.headers.get('x-tollgate-receipt-id')!;
  t1 = Date.now();
  await gw.started.runtime.journal.flush();
  await gqlOk(gw.url, admin, `mutation($i: TaskOutcomeInput!) { recordTaskOutcome(input: $i) { taskId } }`, {
    i: { teamId: keyA.teamId, taskId: OUTCOME_TASK, success: false },
  });
  outcomes.set(`${keyA.teamId}|${OUTCOME_TASK}`, false);
  all = await walk(windowOf());
}, 180_000);

afterAll(async () => {
  await gw?.close();
});

async function walk(filter: Record<string, unknown>): Promise<R[]> {
  const out: R[] = [];
  let after: string | null = null;
  for (;;) {
    // The largest page (500) with every field: within the cost limit, as a variable or a literal.
    const d: any = await gqlOk(
      gw.url,
      admin,
      `query($f: AnalyticsFilter!, $first: Int, $after: String) {
      receipts(filter: $f, first: $first, after: $after) { edges { node { ${RECEIPT_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
      { f: filter, first: 500, after },
    );
    out.push(...d.receipts.edges.map((e: any) => e.node));
    if (!d.receipts.pageInfo.hasNextPage) return out;
    after = d.receipts.pageInfo.endCursor;
  }
}

/** A task's verdict (DESIGN §8): its outcome if one was recorded, else its last request's status. */
function succeeded(taskKey: string): boolean {
  if (outcomes.has(taskKey)) return outcomes.get(taskKey)!;
  const rs = all.filter((r) => `${r.teamId}|${r.taskId}` === taskKey).sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt) || a.seq - b.seq);
  return rs[rs.length - 1]!.status === 'OK';
}

const USAGE = `usage(filter: $f, groupBy: $g) { ${KEY} requests errors promptTokens completionTokens cachedTokens reasoningTokens costUsd unpricedRequests }`;
const LATENCY = `latency(filter: $f, groupBy: $g) { ${KEY} requests p50Ms p90Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms overheadP50Ms overheadP99Ms exact }`;
const CACHE = `cacheStats(filter: $f, groupBy: $g) { ${KEY} requests hits exactHits semanticHits hitRate savedCostUsd }`;
const TASKS = `costPerTask(filter: $f, groupBy: $g) { ${KEY} tasks succeededTasks failedTasks requests costUsd unpricedRequests costPerTaskUsd costPerSucceededTaskUsd }`;
const SERIES = `hours: timeSeries(filter: $f, interval: HOUR, groupBy: $g) { start ${KEY} requests errors promptTokens completionTokens costUsd unpricedRequests cacheHits }
  days: timeSeries(filter: $f, interval: DAY, groupBy: $g) { start ${KEY} requests errors promptTokens completionTokens costUsd unpricedRequests cacheHits }`;

/** Asks every question with filter f grouped by dims, and checks each number against the receipts rs. */
async function expectEveryQuestionMatches(f: Record<string, unknown>, dims: Dim[], rs: R[]) {
  const label = `${JSON.stringify(f)} by [${dims}]`;
  const d: any = await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!, $g: [Dimension!]) { ${USAGE} ${LATENCY} ${CACHE} ${TASKS} ${SERIES} }`, {
    f,
    g: dims,
  });
  const expected = groups(rs, dims);
  for (const q of ['usage', 'latency', 'cacheStats']) {
    expect(new Set(d[q].map((row: any) => rowKey(row, dims))), `${q} ${label}`).toEqual(new Set(expected.keys()));
    expect(d[q].length, `${q} ${label}`).toBe(expected.size);
  }
  for (const row of d.usage) {
    const g = expected.get(rowKey(row, dims))!;
    expect([row.requests, row.errors, row.promptTokens, row.completionTokens, row.cachedTokens, row.reasoningTokens, row.unpricedRequests], label).toEqual([
      g.length,
      g.filter((r) => r.status !== 'OK').length,
      sum(g.map((r) => r.promptTokens)),
      sum(g.map((r) => r.completionTokens)),
      sum(g.map((r) => r.cachedTokens)),
      sum(g.map((r) => r.reasoningTokens ?? 0)),
      g.filter((r) => r.costUsd === null).length,
    ]);
    expect(Math.abs(row.costUsd - sum(g.map((r) => r.costUsd ?? 0))), label).toBeLessThan(1e-9);
  }
  for (const row of d.latency) {
    const g = expected.get(rowKey(row, dims))!;
    const lat = g.map((r) => r.latencyMs);
    const ttft = g.map((r) => r.ttftMs);
    const ovh = g.map((r) => r.overheadMs);
    expect(row, label).toEqual({
      key: row.key,
      requests: g.length,
      exact: true,
      p50Ms: quantileExact(lat, 0.5),
      p90Ms: quantileExact(lat, 0.9),
      p95Ms: quantileExact(lat, 0.95),
      p99Ms: quantileExact(lat, 0.99),
      ttftP50Ms: quantileExact(ttft, 0.5),
      ttftP95Ms: quantileExact(ttft, 0.95),
      ttftP99Ms: quantileExact(ttft, 0.99),
      overheadP50Ms: quantileExact(ovh, 0.5),
      overheadP99Ms: quantileExact(ovh, 0.99),
    });
  }
  for (const row of d.cacheStats) {
    const g = expected.get(rowKey(row, dims))!;
    const exact = g.filter((r) => r.cacheStatus === 'exact').length;
    const semantic = g.filter((r) => r.cacheStatus === 'semantic').length;
    expect([row.requests, row.exactHits, row.semanticHits, row.hits, row.hitRate], label).toEqual([
      g.length,
      exact,
      semantic,
      exact + semantic,
      (exact + semantic) / g.length,
    ]);
    expect(Math.abs(row.savedCostUsd - sum(g.map((r) => r.savedCostUsd ?? 0)))).toBeLessThan(1e-9);
  }
  // costPerTask: a task counts in every group it has requests in, with those requests' cost.
  const taskGroups = groups(
    rs.filter((r) => r.taskId),
    dims,
  );
  expect(new Set(d.costPerTask.map((row: any) => rowKey(row, dims))), `costPerTask ${label}`).toEqual(new Set(taskGroups.keys()));
  for (const row of d.costPerTask) {
    const g = taskGroups.get(rowKey(row, dims))!;
    const tasks = [...new Set(g.map((r) => `${r.teamId}|${r.taskId}`))];
    const ok = tasks.filter(succeeded).length;
    const cost = sum(g.map((r) => r.costUsd ?? 0));
    expect([row.tasks, row.succeededTasks, row.failedTasks, row.requests, row.unpricedRequests], label).toEqual([
      tasks.length,
      ok,
      tasks.length - ok,
      g.length,
      g.filter((r) => r.costUsd === null).length,
    ]);
    expect(Math.abs(row.costUsd - cost)).toBeLessThan(1e-9);
    expect(Math.abs(row.costPerTaskUsd - cost / tasks.length)).toBeLessThan(1e-9);
    if (ok === 0) expect(row.costPerSucceededTaskUsd).toBeNull();
    else expect(Math.abs(row.costPerSucceededTaskUsd - cost / ok)).toBeLessThan(1e-9);
  }
  for (const [q, size] of [
    ['hours', 3_600_000],
    ['days', 86_400_000],
  ] as const) {
    const buckets = new Map<string, R[]>();
    for (const r of rs) {
      const k = `${Math.floor(Date.parse(r.startedAt) / size) * size}|${keyOf(r, dims)}`;
      buckets.set(k, [...(buckets.get(k) ?? []), r]);
    }
    expect(d[q].length, `${q} ${label}`).toBe(buckets.size);
    for (const b of d[q]) {
      const g = buckets.get(`${Date.parse(b.start)}|${rowKey(b, dims)}`)!;
      expect(g, `${q} ${b.start} ${label}`).toBeDefined();
      expect([b.requests, b.errors, b.promptTokens, b.completionTokens, b.unpricedRequests, b.cacheHits], label).toEqual([
        g.length,
        g.filter((r) => r.status !== 'OK').length,
        sum(g.map((r) => r.promptTokens)),
        sum(g.map((r) => r.completionTokens)),
        g.filter((r) => r.costUsd === null).length,
        g.filter((r) => r.cacheStatus === 'exact' || r.cacheStatus === 'semantic').length,
      ]);
      expect(Math.abs(b.costUsd - sum(g.map((r) => r.costUsd ?? 0)))).toBeLessThan(1e-9);
    }
  }
}

describe('analytics by routing dimensions', () => {
  it('the traffic covers what the questions distinguish', () => {
    expect(all.length).toBe(sent);
    const variants = (team: string | null) => new Set(all.filter((r) => r.teamId === team && r.experiment === 'ab').map((r) => r.variant));
    expect(variants(keyA.teamId)).toEqual(new Set(['control', 'candidate']));
    for (const v of ['control', 'candidate']) {
      // errors and tasks in each variant, so that error rates and success rates differ from 0 and 1
      const rs = all.filter((r) => r.variant === v);
      expect(
        rs.some((r) => r.status !== 'OK'),
        v,
      ).toBe(true);
      expect(
        rs.some((r) => r.status === 'OK'),
        v,
      ).toBe(true);
      expect(new Set(rs.filter((r) => r.taskId).map((r) => r.taskId)).size, v).toBeGreaterThan(1);
    }
    // the control runs the route's rule, the candidate replaces targets and rules
    expect(all.some((r) => r.rule === 'classify-rule' && r.variant === 'control')).toBe(true);
    expect(all.filter((r) => r.variant === 'candidate').every((r) => r.rule === null)).toBe(true);
    expect(new Set(all.map((r) => r.taskType))).toEqual(new Set(['classify', 'summarize', 'extract', null]));
    expect(all.filter((r) => r.variant === 'candidate' && r.status === 'OK').every((r) => r.reasoningTokens === 11)).toBe(true);
    expect(all.some((r) => r.experiment === null)).toBe(true); // the cascade
    expect(all.every((r) => r.receiptVersion === 2)).toBe(true);
  });

  for (const dims of GROUPINGS) {
    it(`every question grouped by [${dims.join(', ')}] equals the receipts (whole days, and an unaligned range)`, async () => {
      await expectEveryQuestionMatches(windowOf(), dims, all);
      await expectEveryQuestionMatches(windowOf({}, false), dims, all);
    });
  }

  const FILTERS: Array<[string, string[], (r: R) => boolean]> = [
    ['taskTypes', ['classify'], (r) => r.taskType === 'classify'],
    ['taskTypes', ['summarize', 'extract'], (r) => r.taskType === 'summarize' || r.taskType === 'extract'],
    ['rules', ['classify-rule'], (r) => r.rule === 'classify-rule'],
    ['experiments', ['ab'], (r) => r.experiment === 'ab'],
    ['variants', ['candidate'], (r) => r.variant === 'candidate'],
    ['variants', ['control', 'candidate'], (r) => r.variant === 'control' || r.variant === 'candidate'],
    ['variants', ['no-such-variant'], () => false],
  ];
  for (const [field, values, match] of FILTERS) {
    it(`every question filtered by ${field}: ${values} equals the matching receipts`, async () => {
      const rs = all.filter(match);
      for (const dims of [[], ['MODEL'], ['VARIANT', 'TASK_TYPE']] as Dim[][]) {
        await expectEveryQuestionMatches(windowOf({ [field]: values }), dims, rs);
      }
      const d: any = await gqlOk(
        gw.url,
        admin,
        `query($f: AnalyticsFilter!, $first: Int) { receipts(filter: $f, first: $first) { totalCount edges { node { receiptId } } } }`,
        { f: windowOf({ [field]: values }), first: 500 },
      );
      expect(d.receipts.totalCount).toBe(rs.length);
      expect(new Set(d.receipts.edges.map((e: any) => e.node.receiptId))).toEqual(new Set(rs.map((r) => r.receiptId)));
      // an empty list matches nothing
      const none: any = await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { usage(filter: $f) { requests } costPerTask(filter: $f) { tasks } }`, {
        f: windowOf({ [field]: [] }),
      });
      expect(none).toEqual({ usage: [], costPerTask: [] });
    });
  }

  it('reasoningTokens on a range the hourly rollup answers (no routing dimension): the sum over the receipts', async () => {
    const d: any = await gqlOk(
      gw.url,
      admin,
      `query($f: AnalyticsFilter!) {
      total: usage(filter: $f) { requests reasoningTokens }
      byModel: usage(filter: $f, groupBy: [MODEL]) { key { model } ...Reasoning }
      without: usage(filter: $f) { requests completionTokens } }
      fragment Reasoning on UsageRow { requests reasoningTokens }`,
      { f: windowOf() },
    );
    const reasoning = sum(all.map((r) => r.reasoningTokens ?? 0));
    expect(reasoning).toBeGreaterThan(0);
    expect(d.total).toEqual([{ requests: all.length, reasoningTokens: reasoning }]);
    const byModel = groups(all, ['MODEL']);
    expect(d.byModel.length).toBe(byModel.size);
    for (const row of d.byModel) {
      const g = byModel.get(JSON.stringify([row.key.model]))!;
      expect(row).toEqual({ key: row.key, requests: g.length, reasoningTokens: sum(g.map((r) => r.reasoningTokens ?? 0)) });
    }
    expect(d.without).toEqual([{ requests: all.length, completionTokens: sum(all.map((r) => r.completionTokens)) }]);
  });
});

describe('experimentResults', () => {
  const Z = 1.959963984540054;
  /** Wilson score interval, written out from the textbook form (2np + z² ± z√(z² + 4np(1−p))) / (2(n + z²)). */
  const wilson = (k: number, n: number) => {
    const p = k / n;
    const root = Z * Math.sqrt(Z * Z + 4 * n * p * (1 - p));
    return [(2 * n * p + Z * Z - root) / (2 * (n + Z * Z)), (2 * n * p + Z * Z + root) / (2 * (n + Z * Z))];
  };
  const RESULT = 'variant requests errorRate p50Ms p95Ms costUsd tasks succeededTasks successRate successRateLow successRateHigh costPerSucceededTaskUsd';

  function expectResults(got: any[], rs: R[]) {
    const byVariant = groups(
      rs.filter((r) => r.experiment === 'ab'),
      ['VARIANT'],
    );
    expect(new Set(got.map((v) => v.variant))).toEqual(new Set([...byVariant.keys()].map((k) => JSON.parse(k)[0])));
    for (const v of got) {
      const g = byVariant.get(JSON.stringify([v.variant]))!;
      const tasks = [...new Set(g.filter((r) => r.taskId).map((r) => `${r.teamId}|${r.taskId}`))];
      const ok = tasks.filter(succeeded).length;
      const taskCost = sum(g.filter((r) => r.taskId).map((r) => r.costUsd ?? 0));
      expect(v.variant === 'control' || v.variant === 'candidate').toBe(true);
      expect([v.requests, v.tasks, v.succeededTasks], v.variant).toEqual([g.length, tasks.length, ok]);
      expect(v.errorRate).toBe(g.filter((r) => r.status !== 'OK').length / g.length);
      expect(v.p50Ms).toBe(
        quantileExact(
          g.map((r) => r.latencyMs),
          0.5,
        ),
      );
      expect(v.p95Ms).toBe(
        quantileExact(
          g.map((r) => r.latencyMs),
          0.95,
        ),
      );
      expect(Math.abs(v.costUsd - sum(g.map((r) => r.costUsd ?? 0)))).toBeLessThan(1e-9);
      if (tasks.length === 0) {
        expect([v.successRate, v.successRateLow, v.successRateHigh, v.costPerSucceededTaskUsd]).toEqual([null, null, null, null]);
        continue;
      }
      const [low, high] = wilson(ok, tasks.length);
      expect(v.successRate).toBe(ok / tasks.length);
      expect(v.successRateLow).toBeCloseTo(low!, 12);
      expect(v.successRateHigh).toBeCloseTo(high!, 12);
      expect(v.successRateLow).toBeLessThanOrEqual(v.successRate);
      expect(v.successRateHigh).toBeGreaterThanOrEqual(v.successRate);
      if (ok === 0) expect(v.costPerSucceededTaskUsd).toBeNull();
      else expect(Math.abs(v.costPerSucceededTaskUsd - taskCost / ok)).toBeLessThan(1e-9);
    }
  }

  it('per variant: requests, error rate, p50/p95, cost, tasks and the Wilson interval equal the receipts', async () => {
    for (const aligned of [true, false]) {
      const d: any = await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { experimentResults(name: "ab", filter: $f) { ${RESULT} } }`, {
        f: windowOf({}, aligned),
      });
      expect(d.experimentResults).toHaveLength(2);
      expectResults(d.experimentResults, all);
    }
    // the other filters narrow it like any question: one team, one task type
    const d: any = await gqlOk(
      gw.url,
      admin,
      `query($a: AnalyticsFilter!, $b: AnalyticsFilter!) {
      a: experimentResults(name: "ab", filter: $a) { ${RESULT} } b: experimentResults(name: "ab", filter: $b) { ${RESULT} } }`,
      { a: windowOf({ teamIds: [keyB.teamId] }), b: windowOf({ taskTypes: ['summarize'] }) },
    );
    expectResults(
      d.a,
      all.filter((r) => r.teamId === keyB.teamId),
    );
    expectResults(
      d.b,
      all.filter((r) => r.taskType === 'summarize'),
    );
    // an experiment with no receipts, or a filter naming another experiment: no variants
    const none: any = await gqlOk(
      gw.url,
      admin,
      `query($f: AnalyticsFilter!, $g: AnalyticsFilter!) {
      x: experimentResults(name: "no-such-experiment", filter: $f) { variant } y: experimentResults(name: "ab", filter: $g) { variant } }`,
      { f: windowOf(), g: windowOf({ experiments: ['other'] }) },
    );
    expect(none).toEqual({ x: [], y: [] });
  });

  it("a team-bound token sees its team's variants only, whatever its filter says", async () => {
    const { secret } = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'analyst-a', role: 'ANALYST', teamId: keyA.teamId });
    for (const teamIds of [undefined, [keyA.teamId, keyB.teamId]]) {
      const d: any = await gqlOk(gw.url, secret, `query($f: AnalyticsFilter!) { experimentResults(name: "ab", filter: $f) { ${RESULT} } }`, {
        f: windowOf(teamIds ? { teamIds } : {}),
      });
      expectResults(
        d.experimentResults,
        all.filter((r) => r.teamId === keyA.teamId),
      );
    }
    const other: any = await gqlOk(gw.url, secret, `query($f: AnalyticsFilter!) { experimentResults(name: "ab", filter: $f) { variant } }`, {
      f: windowOf({ teamIds: [keyB.teamId] }),
    });
    expect(other.experimentResults).toEqual([]);
  });
});

describe('receipt fields of version 2', () => {
  it('a cascade that climbed: the receipt and its attempts carry tokens, costs and verdicts', async () => {
    const d: any = await gqlOk(gw.url, admin, `query($id: ID!) { receipt(id: $id) { ${RECEIPT_FIELDS} } }`, { id: cascadeReceiptId });
    const r: R = d.receipt;
    expect(r).toMatchObject({
      receiptVersion: 2,
      taskType: 'extract',
      taskId: 'cascade-task',
      route: 'smart',
      model: 'strong',
      status: 'OK',
      accepted: true,
      experiment: null,
      variant: null,
      rule: null,
      reasoningTokens: 0,
      cacheWriteTokens: 0,
    });
    expect(r.attempts.map((a) => [a.model, a.accepted])).toEqual([
      ['cheap', false],
      ['strong', true],
    ]);
    expect(r.attempts[0]!.rejectReason).toMatch(/^non_empty: /);
    expect(r.attempts[1]!.rejectReason).toBeNull();
    // the receipt's tokens and cost are the sums over its attempts, each priced at its own model
    expect(r.promptTokens).toBe(sum(r.attempts.map((a) => a.promptTokens!)));
    expect(r.completionTokens).toBe(sum(r.attempts.map((a) => a.completionTokens!)));
    expect(r.costUsd).toBeCloseTo(sum(r.attempts.map((a) => a.costUsd!)), 9);
    const [cheap, strong] = r.attempts;
    expect(cheap!.costUsd).toBeCloseTo((cheap!.promptTokens! * 1 + cheap!.completionTokens! * 2) / 1e6, 9);
    expect(strong!.costUsd).toBeCloseTo((strong!.promptTokens! * 10 + strong!.completionTokens! * 30) / 1e6, 9);

    // GraphQL says what the signed receipt says.
    const stored = (await storedReceipts(gw, keyA.teamId)).find((x) => x.receipt_id === cascadeReceiptId)!;
    expect({
      receiptVersion: r.receiptVersion,
      taskType: r.taskType,
      rule: r.rule,
      classifierTier: r.classifierTier,
      experiment: r.experiment,
      variant: r.variant,
      accepted: r.accepted,
      reasoningTokens: r.reasoningTokens,
      cacheWriteTokens: r.cacheWriteTokens,
      attempts: r.attempts.map((a) => [a.promptTokens, a.completionTokens, a.costUsd, a.accepted, a.rejectReason]),
    }).toEqual({
      receiptVersion: stored.receipt_version,
      taskType: stored.task_type,
      rule: stored.rule,
      classifierTier: stored.classifier_tier,
      experiment: stored.experiment,
      variant: stored.variant,
      accepted: stored.accepted,
      reasoningTokens: stored.reasoning_tokens,
      cacheWriteTokens: stored.cache_write_tokens,
      attempts: stored.attempts.map((a) => [a.prompt_tokens, a.completion_tokens, a.cost_usd, a.accepted, a.reject_reason]),
    });
  });

  it("an experiment's receipts name the experiment, the bare variant, the rule and the classifier's tier", async () => {
    const stored = new Map((await storedReceipts(gw, keyA.teamId)).map((s) => [s.receipt_id, s]));
    for (const r of all.filter((x) => x.teamId === keyA.teamId)) {
      const s = stored.get(r.receiptId)!;
      expect([r.taskType, r.rule, r.classifierTier, r.experiment, r.variant, r.reasoningTokens], r.receiptId).toEqual([
        s.task_type,
        s.rule,
        s.classifier_tier,
        s.experiment,
        s.variant,
        s.reasoning_tokens,
      ]);
    }
    // the control's rules ran the classifier; its tier is on the receipt
    expect(all.some((r) => r.variant === 'control' && r.classifierTier !== null)).toBe(true);
  });
});
