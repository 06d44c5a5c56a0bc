// Analytics truth: a known, varied mix of requests goes through the proxy with the official
// client; every analytics number is then recomputed here from the receipts and compared.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../src/analytics/sql.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql, gqlOk } from '../support/graphql.js';

let gw: TestGateway;
let admin: string;
let teamA: string;
let teamB: string;
let keyA1: string;
let keyA2: string;
let keyB: string;
let sent = 0;
let t0: number;
let t1: number;
let all: R[] = [];

interface R {
  receiptId: string;
  startedAt: string;
  teamId: string | null;
  apiKeyId: string | null;
  feature: string | null;
  taskId: string | null;
  endUser: string | null;
  route: string | null;
  provider: string | null;
  model: string | null;
  status: string;
  cacheStatus: string | null;
  costUsd: number | null;
  savedCostUsd: number | null;
  promptTokens: number;
  completionTokens: number;
  latencyMs: number;
  ttftMs: number | null;
  overheadMs: number | null;
  stream: boolean;
  seq: number;
  signature: string;
  keyId: string;
  attempts: Array<{ provider: string; model: string; status: number; error: string | null; latencyMs: number }>;
}
const RECEIPT_FIELDS = `receiptId startedAt teamId apiKeyId feature taskId endUser route provider model status cacheStatus costUsd savedCostUsd
  promptTokens completionTokens latencyMs ttftMs overheadMs stream seq signature keyId attempts { provider model status error latencyMs }`;

const DIMS = ['MODEL', 'PROVIDER', 'ROUTE', 'TEAM', 'FEATURE', 'API_KEY', 'END_USER', 'STATUS', 'CACHE_STATUS'] as const;
type Dim = (typeof DIMS)[number];
const DIM_FIELD: Record<Dim, keyof R> = {
  MODEL: 'model',
  PROVIDER: 'provider',
  ROUTE: 'route',
  TEAM: 'teamId',
  FEATURE: 'feature',
  API_KEY: 'apiKeyId',
  END_USER: 'endUser',
  STATUS: 'status',
  CACHE_STATUS: 'cacheStatus',
};
const KEY_FIELD: Record<Dim, string> = {
  MODEL: 'model',
  PROVIDER: 'provider',
  ROUTE: 'route',
  TEAM: 'teamId',
  FEATURE: 'feature',
  API_KEY: 'apiKeyId',
  END_USER: 'endUser',
  STATUS: 'status',
  CACHE_STATUS: 'cacheStatus',
};
const KEY_SELECTION = 'key { model provider route teamId feature apiKeyId endUser status cacheStatus team { id name } }';

/** Group key of a receipt as the API reports it (status lower-case like the stored value). */
function keyOf(r: R, dims: readonly Dim[]): string {
  return JSON.stringify(
    dims.map((d) => {
      const v = r[DIM_FIELD[d]];
      return d === 'STATUS' ? String(v).toLowerCase() : (v ?? null);
    }),
  );
}
function apiKeyOf(row: any, dims: readonly Dim[]): string {
  return JSON.stringify(dims.map((d) => row.key[KEY_FIELD[d]] ?? null));
}
function groups(rs: R[], dims: readonly Dim[]): Map<string, R[]> {
  const m = new Map<string, R[]>();
  for (const r of rs) {
    const k = keyOf(r, dims);
    m.set(k, [...(m.get(k) ?? []), r]);
  }
  return m;
}

function filterVar(extra: Record<string, unknown> = {}, aligned = false) {
  const hour = 3_600_000;
  const from = aligned ? Math.floor(t0 / hour) * hour : t0 - 1234;
  const to = aligned ? Math.ceil((t1 + 1) / hour) * hour : t1 + 4321;
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...extra };
}

async function chat(secret: string, model: string, opts: { feature?: string; task?: string; user?: string; stream?: boolean } = {}) {
  const headers: Record<string, string> = {};
  if (opts.feature) headers['x-tollgate-feature'] = opts.feature;
  if (opts.task) headers['x-tollgate-task-id'] = opts.task;
  const client = gw.client(secret, { defaultHeaders: headers });
  sent++;
  try {
    if (opts.stream) {
      const s = await client.chat.completions.create({
        model,
        stream: true,
        stream_options: { include_usage: true },
        user: opts.user,
        messages: [{ role: 'user', content: `hello ${sent} ${'x'.repeat(sent * 7)}` }],
      });
      for await (const _chunk of s) {
        /* drain */
      }
    } else {
      await client.chat.completions.create({ model, user: opts.user, messages: [{ role: 'user', content: `hi ${sent} ${'y'.repeat(sent * 5)}` }] });
    }
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  gw = await startTestGateway();
  admin = gw.adminToken;
  const a1 = await gw.createKey('team-a');
  const a2 = await gw.createKey('team-a');
  const b = await gw.createKey('team-b');
  [keyA1, keyA2, keyB, teamA, teamB] = [a1.secret, a2.secret, b.secret, a1.teamId, b.teamId];
  t0 = Date.now();
  // team A, key 1: feature search, tasks t1 (3 requests), t2 (2), t3 (last one fails), t4 (ok)
  await chat(keyA1, 'chat-default', { feature: 'search', task: 't1', user: 'alice' });
  await chat(keyA1, 'chat-default', { feature: 'search', task: 't1', user: 'alice', stream: true });
  await chat(keyA1, 'chat-default', { feature: 'search', task: 't1', user: 'bob' });
  await chat(keyA1, 'chat-default', { feature: 'search', task: 't2', stream: true });
  await chat(keyA1, 'sim-b/x', { feature: 'search', task: 't2', user: 'alice' }); // unpriced, pinned
  await chat(keyA1, 'chat-default', { feature: 'summarize', task: 't3' });
  gw.sim.behave('sim-large', { status: 400, times: 1 });
  expect(await chat(keyA1, 'chat-default', { feature: 'summarize', task: 't3' })).toBe(false); // 400 → error, last of t3
  await chat(keyA1, 'chat-default', { feature: 'summarize', task: 't4', stream: true, user: 'carol' });
  // failover: primary 500 then backup answers
  gw.sim.behave('primary', { status: 500, times: 1 });
  await chat(keyA1, 'failover', { feature: 'summarize', task: 't4' });
  // both targets fail → 502
  gw.sim.behave('primary', { status: 500, times: 1 });
  gw.sim.behave('backup', { status: 500, times: 1 });
  expect(await chat(keyA1, 'failover', { feature: 'summarize' })).toBe(false);
  // team A, key 2
  await chat(keyA2, 'failover', { feature: 'search', user: 'dave', stream: true });
  await chat(keyA2, 'sim-b/x', { user: 'dave' });
  await chat(keyA2, 'chat-default', { feature: 'search', task: 't5' });
  // streaming break mid-stream
  gw.sim.behave('sim-large', { breakAfterChunks: 2, times: 1 });
  await chat(keyA2, 'chat-default', { feature: 'search', task: 't5', stream: true });
  // team B: same task id as team A (tasks are per team)
  await chat(keyB, 'chat-default', { feature: 'search', task: 't1', user: 'alice' });
  await chat(keyB, 'chat-default', { feature: 'chat', task: 't1', stream: true });
  await chat(keyB, 'failover', { feature: 'chat', task: 'tb2' });
  await chat(keyB, 'sim-b/x', { feature: 'chat' });
  t1 = Date.now();
  await gw.started.runtime.journal.flush();
  // Outcomes: A/t1 failed then succeeded (latest wins), A/t2 failed explicitly, B/t1 succeeded.
  const ch = gw.started.runtime.clickhouse.client;
  const outcome = async (team: string, task: string, success: boolean, at: number) => {
    const q = sql`INSERT INTO task_outcomes (team_id, task_id, success, score, note, recorded_at)
                  VALUES (${team}, ${task}, ${success}, NULL, ${'test'}, ${new Date(at)})`.toQuery();
    await ch.command({ query: q.query, query_params: q.query_params });
  };
  await outcome(teamA, 't1', false, t1);
  await outcome(teamA, 't1', true, t1 + 10);
  await outcome(teamA, 't2', false, t1);
  await outcome(teamB, 't1', true, t1);
  // every receipt, through the paginated API
  all = await walk(admin, filterVar(), 5);
}, 120_000);

afterAll(async () => {
  await gw?.close();
});

async function walk(token: string, filter: Record<string, unknown>, first: number): Promise<R[]> {
  const out: R[] = [];
  let after: string | null = null;
  for (let i = 0; i < 1000; i++) {
    const d: any = await gqlOk(
      gw.url,
      token,
      `query($f: AnalyticsFilter!, $first: Int, $after: String) {
      receipts(filter: $f, first: $first, after: $after) { totalCount edges { cursor node { ${RECEIPT_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
      { f: filter, first, after },
    );
    out.push(...d.receipts.edges.map((e: any) => e.node));
    if (!d.receipts.pageInfo.hasNextPage) {
      expect(d.receipts.totalCount).toBe(out.length);
      break;
    }
    after = d.receipts.pageInfo.endCursor;
  }
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const _statusLower = (r: R) => r.status.toLowerCase();

const GROUPINGS: Dim[][] = [
  [],
  ['MODEL'],
  ['TEAM'],
  ['FEATURE', 'TEAM'],
  ['PROVIDER', 'ROUTE'],
  ['API_KEY'],
  ['END_USER'],
  ['STATUS', 'CACHE_STATUS'],
  ['MODEL', 'TEAM', 'FEATURE'],
  [...DIMS],
];

describe('analytics truth', () => {
  it('has one receipt per request sent, with priced and unpriced ones', () => {
    expect(all.length).toBe(sent);
    expect(new Set(all.map((r) => r.receiptId)).size).toBe(sent);
    expect(all.some((r) => r.costUsd === null)).toBe(true);
    expect(all.some((r) => r.status !== 'OK')).toBe(true);
    expect(all.filter((r) => r.teamId === teamB).length).toBe(4);
    // a sim-large answer costs exactly its tokens at 0.15 / 0.6 per MTok
    const r = all.find((x) => x.model === 'sim-large' && x.status === 'OK')!;
    expect(r.costUsd!).toBeCloseTo((r.promptTokens * 0.15 + r.completionTokens * 0.6) / 1e6, 9);
  });

  for (const aligned of [false, true]) {
    for (const dims of GROUPINGS) {
      it(`usage, latency, cacheStats by [${dims.join(',')}] (${aligned ? 'hour-aligned' : 'unaligned'})`, async () => {
        const d: any = await gqlOk(
          gw.url,
          admin,
          `query($f: AnalyticsFilter!, $g: [Dimension!]) {
          usage(filter: $f, groupBy: $g) { ${KEY_SELECTION} requests errors promptTokens completionTokens costUsd unpricedRequests }
          latency(filter: $f, groupBy: $g) { ${KEY_SELECTION} requests p50Ms p90Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms overheadP50Ms overheadP99Ms exact }
          cacheStats(filter: $f, groupBy: $g) { ${KEY_SELECTION} requests hits exactHits semanticHits hitRate savedCostUsd } }`,
          { f: filterVar({}, aligned), g: dims },
        );
        const expected = groups(all, dims);
        for (const field of ['usage', 'latency', 'cacheStats']) {
          expect(d[field].length, field).toBe(expected.size);
          expect(new Set(d[field].map((row: any) => apiKeyOf(row, dims)))).toEqual(new Set(expected.keys()));
        }
        for (const row of d.usage) {
          const rs = expected.get(apiKeyOf(row, dims))!;
          expect(row.requests).toBe(rs.length);
          expect(row.errors).toBe(rs.filter((r) => r.status !== 'OK').length);
          expect(row.promptTokens).toBe(sum(rs.map((r) => r.promptTokens)));
          expect(row.completionTokens).toBe(sum(rs.map((r) => r.completionTokens)));
          expect(Math.abs(row.costUsd - sum(rs.map((r) => r.costUsd ?? 0)))).toBeLessThan(1e-9);
          expect(row.unpricedRequests).toBe(rs.filter((r) => r.costUsd === null).length);
          if (dims.includes('TEAM')) expect(row.key.team?.name).toBe(row.key.teamId === teamA ? 'team-a' : 'team-b');
        }
        for (const row of d.latency) {
          const rs = expected.get(apiKeyOf(row, dims))!;
          expect(row.requests).toBe(rs.length);
          expect(row.exact).toBe(true);
          const check = (values: Array<number | null>, q: number, got: number | null) => {
            const xs = values.filter((v): v is number => v !== null).sort((a, b) => a - b);
            if (xs.length === 0) return expect(got).toBeNull();
            const rank = q * (xs.length - 1);
            expect(got).not.toBeNull();
            expect(got!).toBeGreaterThanOrEqual(xs[Math.floor(rank)]!);
            expect(got!).toBeLessThanOrEqual(xs[Math.ceil(rank)]!);
          };
          const lat = rs.map((r) => r.latencyMs);
          check(lat, 0.5, row.p50Ms);
          check(lat, 0.9, row.p90Ms);
          check(lat, 0.95, row.p95Ms);
          check(lat, 0.99, row.p99Ms);
          const ttft = rs.map((r) => r.ttftMs);
          check(ttft, 0.5, row.ttftP50Ms);
          check(ttft, 0.95, row.ttftP95Ms);
          check(ttft, 0.99, row.ttftP99Ms);
          const ovh = rs.map((r) => r.overheadMs);
          check(ovh, 0.5, row.overheadP50Ms);
          check(ovh, 0.99, row.overheadP99Ms);
        }
        for (const row of d.cacheStats) {
          const rs = expected.get(apiKeyOf(row, dims))!;
          const exact = rs.filter((r) => r.cacheStatus === 'exact').length;
          const semantic = rs.filter((r) => r.cacheStatus === 'semantic').length;
          expect([row.requests, row.exactHits, row.semanticHits, row.hits]).toEqual([rs.length, exact, semantic, exact + semantic]);
          expect(row.hitRate).toBeCloseTo((exact + semantic) / rs.length, 12);
          expect(Math.abs(row.savedCostUsd - sum(rs.map((r) => r.savedCostUsd ?? 0)))).toBeLessThan(1e-9);
        }
      });
    }
  }

  it('timeSeries per minute, hour and day adds up to the receipts', async () => {
    for (const interval of ['MINUTE', 'HOUR', 'DAY'] as const) {
      for (const dims of [[], ['TEAM', 'MODEL']] as Dim[][]) {
        for (const aligned of [false, true]) {
          const d: any = await gqlOk(
            gw.url,
            admin,
            `query($f: AnalyticsFilter!, $i: Interval!, $g: [Dimension!]) {
            timeSeries(filter: $f, interval: $i, groupBy: $g) { start ${KEY_SELECTION} requests errors promptTokens completionTokens costUsd unpricedRequests cacheHits } }`,
            { f: filterVar({}, aligned), i: interval, g: dims },
          );
          const size = { MINUTE: 60_000, HOUR: 3_600_000, DAY: 86_400_000 }[interval];
          const expected = new Map<string, R[]>();
          for (const r of all) {
            const k = `${Math.floor(Date.parse(r.startedAt) / size) * size}|${keyOf(r, dims)}`;
            expected.set(k, [...(expected.get(k) ?? []), r]);
          }
          expect(d.timeSeries.length).toBe(expected.size);
          for (const b of d.timeSeries) {
            const rs = expected.get(`${Date.parse(b.start)}|${apiKeyOf(b, dims)}`)!;
            expect(rs, `${interval} ${b.start}`).toBeDefined();
            expect(b.requests).toBe(rs.length);
            expect(b.errors).toBe(rs.filter((r) => r.status !== 'OK').length);
            expect(b.promptTokens).toBe(sum(rs.map((r) => r.promptTokens)));
            expect(b.completionTokens).toBe(sum(rs.map((r) => r.completionTokens)));
            expect(Math.abs(b.costUsd - sum(rs.map((r) => r.costUsd ?? 0)))).toBeLessThan(1e-9);
            expect(b.unpricedRequests).toBe(rs.filter((r) => r.costUsd === null).length);
          }
        }
      }
    }
  });

  it('costPerTask: explicit outcomes win (latest), else the last request decides', async () => {
    // independent expectation
    const outcomes = new Map<string, boolean>([
      [`${teamA}|t1`, true],
      [`${teamA}|t2`, false],
      [`${teamB}|t1`, true],
    ]);
    const tasks = new Map<string, R[]>();
    for (const r of all) if (r.taskId) tasks.set(`${r.teamId}|${r.taskId}`, [...(tasks.get(`${r.teamId}|${r.taskId}`) ?? []), r]);
    const succeeded = (k: string) => {
      if (outcomes.has(k)) return outcomes.get(k)!;
      const rs = [...tasks.get(k)!].sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt) || a.seq - b.seq);
      return rs[rs.length - 1]!.status === 'OK';
    };
    expect(succeeded(`${teamA}|t3`)).toBe(false); // its last request was the 400
    expect(succeeded(`${teamA}|t4`)).toBe(true);
    for (const dims of [[], ['TEAM'], ['TEAM', 'FEATURE'], ['MODEL'], ['END_USER'], ['TEAM', 'END_USER']] as Dim[][]) {
      const d: any = await gqlOk(
        gw.url,
        admin,
        `query($f: AnalyticsFilter!, $g: [Dimension!]) {
        costPerTask(filter: $f, groupBy: $g) { ${KEY_SELECTION} tasks succeededTasks failedTasks requests costUsd unpricedRequests costPerTaskUsd costPerSucceededTaskUsd } }`,
        { f: filterVar(), g: dims },
      );
      const expected = groups(
        all.filter((r) => r.taskId),
        dims,
      );
      expect(d.costPerTask.length).toBe(expected.size);
      for (const row of d.costPerTask) {
        const rs = expected.get(apiKeyOf(row, dims))!;
        const taskKeys = [...new Set(rs.map((r) => `${r.teamId}|${r.taskId}`))];
        const ok = taskKeys.filter(succeeded).length;
        const cost = sum(rs.map((r) => r.costUsd ?? 0));
        expect([row.tasks, row.succeededTasks, row.failedTasks, row.requests]).toEqual([taskKeys.length, ok, taskKeys.length - ok, rs.length]);
        expect(Math.abs(row.costUsd - cost)).toBeLessThan(1e-9);
        expect(Math.abs(row.costPerTaskUsd - cost / taskKeys.length)).toBeLessThan(1e-9);
        if (ok === 0) expect(row.costPerSucceededTaskUsd).toBeNull();
        else expect(Math.abs(row.costPerSucceededTaskUsd - cost / ok)).toBeLessThan(1e-9);
        expect(row.unpricedRequests).toBe(rs.filter((r) => r.costUsd === null).length);
      }
      if (dims.length === 0) {
        expect(d.costPerTask[0].tasks).toBe(7); // A: t1..t5, B: t1, tb2
      }
    }
  });

  it('every filter selects exactly the matching receipts', async () => {
    const pick = <K extends keyof R>(k: K) => [...new Set(all.map((r) => r[k]).filter((v) => v !== null))] as string[];
    const cases: Array<[string, unknown[], (r: R) => boolean]> = [
      ['teamIds', [teamB], (r) => r.teamId === teamB],
      ['features', ['search'], (r) => r.feature === 'search'],
      ['features', ['search', 'chat'], (r) => r.feature === 'search' || r.feature === 'chat'],
      ['models', ['sim-large'], (r) => r.model === 'sim-large'],
      ['providers', ['sim-b'], (r) => r.provider === 'sim-b'],
      ['routes', ['failover'], (r) => r.route === 'failover'],
      ['apiKeyIds', [pick('apiKeyId')[0]], (r) => r.apiKeyId === pick('apiKeyId')[0]],
      ['endUsers', ['alice'], (r) => r.endUser === 'alice'],
      ['statuses', ['ERROR'], (r) => r.status === 'ERROR'],
      ['statuses', ['OK', 'PARTIAL'], (r) => r.status === 'OK' || r.status === 'PARTIAL'],
    ];
    for (const [field, values, match] of cases) {
      for (const aligned of [false, true]) {
        const f = filterVar({ [field]: values }, aligned);
        const d: any = {
          ...(await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { usage(filter: $f) { requests costUsd } }`, { f })),
          ...(await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { receipts(filter: $f, first: 100) { totalCount edges { node { receiptId } } } }`, {
            f,
          })),
        };
        const rs = all.filter(match);
        expect(rs.length, field).toBeGreaterThan(0);
        expect(d.usage[0]?.requests, `${field}=${values}`).toBe(rs.length);
        expect(Math.abs(d.usage[0].costUsd - sum(rs.map((r) => r.costUsd ?? 0)))).toBeLessThan(1e-9);
        expect(d.receipts.totalCount).toBe(rs.length);
        expect(new Set(d.receipts.edges.map((e: any) => e.node.receiptId))).toEqual(new Set(rs.map((r) => r.receiptId)));
      }
    }
    // a range that excludes everything
    const empty: any = await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { usage(filter: $f) { requests } }`, {
      f: { from: new Date(t0 - 7_200_000).toISOString(), to: new Date(t0 - 3_600_000).toISOString() },
    });
    expect(empty.usage).toEqual([]);
  });

  it('SQL injection payloads in every string filter match nothing and do not error', async () => {
    const payloads = [
      `' OR 1=1 --`,
      `\\'); DROP TABLE receipts; --`,
      `search' OR '1'='1`,
      `x}{p0:String}`,
      `{p0:String}`,
      `') OR 1=1 UNION SELECT * FROM system.tables --`,
    ];
    for (const field of ['teamIds', 'features', 'models', 'providers', 'routes', 'apiKeyIds', 'endUsers']) {
      for (const p of payloads) {
        const r = await gql(
          gw.url,
          admin,
          `query($f: AnalyticsFilter!) {
          usage(filter: $f, groupBy: [MODEL]) { requests } costPerTask(filter: $f) { tasks } latency(filter: $f) { requests }
          cacheStats(filter: $f) { requests } timeSeries(filter: $f, interval: HOUR) { requests } receipts(filter: $f) { totalCount } }`,
          { f: filterVar({ [field]: [p] }) },
        );
        expect(r.errors, `${field} ${p}`).toBeUndefined();
        expect(r.data.usage).toEqual([]);
        expect(r.data.costPerTask).toEqual([]);
        expect(r.data.latency).toEqual([]);
        expect(r.data.cacheStats).toEqual([]);
        expect(r.data.timeSeries).toEqual([]);
        expect(r.data.receipts.totalCount).toBe(0);
      }
    }
    // receipt ids and cursors
    for (const p of payloads) {
      const r = await gql(gw.url, admin, `query($id: ID!) { receipt(id: $id) { receiptId } verifyReceipt(id: $id) { valid } }`, { id: p });
      expect(r.errors).toBeUndefined();
      expect(r.data.receipt).toBeNull();
      expect(r.data.verifyReceipt.valid).toBe(false);
      const c = await gql(gw.url, admin, `query($f: AnalyticsFilter!, $a: String) { receipts(filter: $f, after: $a) { totalCount } }`, {
        f: filterVar(),
        a: p,
      });
      expect(c.errors?.[0]?.extensions?.code, JSON.stringify(c.errors) + p).toBe('BAD_USER_INPUT');
    }
    // the table is intact
    const d: any = await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { usage(filter: $f) { requests } }`, { f: filterVar() });
    expect(d.usage[0].requests).toBe(sent);
  });

  it('cursor pagination walks every receipt exactly once, in a stable order', async () => {
    for (const first of [1, 3, 7, 100]) {
      const walked = await walk(admin, filterVar(), first);
      expect(walked.map((r) => r.receiptId)).toEqual(all.map((r) => r.receiptId));
    }
    for (let i = 1; i < all.length; i++) expect(Date.parse(all[i - 1]!.startedAt)).toBeGreaterThanOrEqual(Date.parse(all[i]!.startedAt));
    // first: 0 sizes a result without reading it: no edges, and whether there is anything to read.
    const q = `query($f: AnalyticsFilter!, $a: String) { receipts(filter: $f, first: 0, after: $a) { totalCount edges { cursor } pageInfo { hasNextPage } } }`;
    const sized: any = await gqlOk(gw.url, admin, q, { f: filterVar() });
    expect(sized.receipts).toMatchObject({ totalCount: all.length, edges: [], pageInfo: { hasNextPage: true } });
    const lastPage: any = await gqlOk(gw.url, admin, `query($f: AnalyticsFilter!) { receipts(filter: $f, first: ${all.length}) { pageInfo { endCursor } } }`, {
      f: filterVar(),
    });
    const atEnd: any = await gqlOk(gw.url, admin, q, { f: filterVar(), a: lastPage.receipts.pageInfo.endCursor });
    expect(atEnd.receipts.pageInfo.hasNextPage).toBe(false);
  });

  it('a team-bound ANALYST token sees only its team', async () => {
    const { secret } = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'analyst-a', role: 'ANALYST', teamId: teamA });
    const mine = all.filter((r) => r.teamId === teamA);
    const q = `query($f: AnalyticsFilter!) { usage(filter: $f, groupBy: [TEAM]) { key { teamId } requests }
      costPerTask(filter: $f, groupBy: [TEAM]) { key { teamId } tasks } latency(filter: $f) { requests } cacheStats(filter: $f) { requests }
      timeSeries(filter: $f, interval: DAY) { requests } }`;
    const qr = `query($f: AnalyticsFilter!) { receipts(filter: $f, first: 100) { totalCount edges { node { teamId } } } }`;
    const both = async (f: unknown) => ({ ...(await gqlOk(gw.url, secret, q, { f })), ...(await gqlOk(gw.url, secret, qr, { f })) });
    for (const teamIds of [undefined, [teamA], [teamA, teamB]]) {
      const d: any = await both(filterVar(teamIds ? { teamIds } : {}));
      expect(d.usage).toEqual([{ key: { teamId: teamA }, requests: mine.length }]);
      expect(d.costPerTask.map((r: any) => r.key.teamId)).toEqual([teamA]);
      expect(d.latency[0].requests).toBe(mine.length);
      expect(d.cacheStats[0].requests).toBe(mine.length);
      expect(sum(d.timeSeries.map((b: any) => b.requests))).toBe(mine.length);
      expect(d.receipts.totalCount).toBe(mine.length);
      expect(new Set(d.receipts.edges.map((e: any) => e.node.teamId))).toEqual(new Set([teamA]));
    }
    const other: any = await both(filterVar({ teamIds: [teamB] }));
    expect(other.usage).toEqual([]);
    expect(other.costPerTask).toEqual([]);
    expect(other.latency).toEqual([]);
    expect(other.receipts.totalCount).toBe(0);
    // receipt(id): another team's reads as not found
    const bId = all.find((r) => r.teamId === teamB)!.receiptId;
    const aId = mine[0]!.receiptId;
    const d: any = await gqlOk(
      gw.url,
      secret,
      `query($a: ID!, $b: ID!) { a: receipt(id: $a) { receiptId } b: receipt(id: $b) { receiptId }
      va: verifyReceipt(id: $a) { valid } vb: verifyReceipt(id: $b) { valid reason receipt { receiptId } } }`,
      { a: aId, b: bId },
    );
    expect(d.a.receiptId).toBe(aId);
    expect(d.b).toBeNull();
    expect(d.va.valid).toBe(true);
    expect(d.vb).toEqual({ valid: false, reason: 'receipt not found', receipt: null });
  });

  it('receipt(id) and verifyReceipt(id) for the admin; every field needs a token', async () => {
    const r0 = all.find((r) => r.attempts.length === 2 && r.status === 'OK')!;
    const d: any = await gqlOk(
      gw.url,
      admin,
      `query($id: ID!) { receipt(id: $id) { ${RECEIPT_FIELDS} }
      verifyReceipt(id: $id) { valid reason keyId receipt { receiptId signature } } }`,
      { id: r0.receiptId.toUpperCase() },
    );
    expect(d.receipt).toEqual(r0);
    expect(d.receipt.attempts.map((a: any) => [a.provider, a.model, a.status])).toEqual([
      ['sim', 'primary', 500],
      ['sim-b', 'backup', 200],
    ]);
    expect(d.verifyReceipt).toEqual({ valid: true, reason: null, keyId: r0.keyId, receipt: { receiptId: r0.receiptId, signature: r0.signature } });
    for (const field of [
      'usage(filter: $f) { requests }',
      'receipts(filter: $f) { totalCount }',
      'latency(filter: $f) { requests }',
      'costPerTask(filter: $f) { tasks }',
      'cacheStats(filter: $f) { requests }',
      'timeSeries(filter: $f, interval: HOUR) { requests }',
    ]) {
      const r = await gql(gw.url, null, `query($f: AnalyticsFilter!) { ${field} }`, { f: filterVar() });
      // The code is UNAUTHENTICATED under Node; under vitest builder.ts's `new GraphQLError` is
      // masked by yoga (two copies of graphql), so only the refusal itself is asserted here.
      expect(r.errors?.length, field).toBe(1);
      expect(Object.values(r.data ?? {}).every((v) => v === null)).toBe(true);
    }
    const r = await gql(gw.url, 'tga-not-a-token', `query { receipt(id: "${r0.receiptId}") { receiptId } }`);
    expect(r.errors?.length).toBe(1);
    expect(r.data?.receipt ?? null).toBeNull();
  });
});
