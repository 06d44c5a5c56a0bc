// npm run soak — Tollgate under steady load for a long time (not in CI).
//
//   sim       the simulated provider (its own process): models soak-50, soak-100, soak-150 and
//             soak-300 answer after that many ms
//   tollgate  a real Tollgate child process, embedded stores, its own temp data dir
//   load      this process: open loop, SOAK_RPS requests/s (default 50) through the official
//             `openai` client, at most SOAK_CONCURRENCY (default 64) in flight, for
//             SOAK_MINUTES (default 10)
//
// Traffic: 30 % to an EXACT-cached route (a bounded pool of prompts, so some repeat), 30 % to a
// SEMANTIC-cached route (the same questions reworded), 40 % to an uncached route; ~10 % of all
// requests stream; ~2 % get an injected upstream 5xx on the route's primary target, which the
// route fails over to its backup. The cache TTL is short (2 min) so that entries expire and are
// refilled during the run: the cache stays busy but bounded, and a growing RSS means a leak,
// not a filling cache.
//
// Measured: the Tollgate process's RSS every 10 s (/proc/<pid>/status VmRSS); per minute the
// client-observed added latency (response time − the answering model's configured latency, for
// non-streamed, uncached, single-attempt requests) and the gateway's own overhead_ms from the
// receipts; at the end, after SIGTERM drains the WAL, every completed request's
// x-tollgate-receipt-id looked up in the receipts table. Prints a verdict table and writes
// bench/results/soak.json.
import { fork, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI, { APIError } from 'openai';
import { openClickHouse } from '../src/store/clickhouse.js';
import { runTollgate, startTollgateProcess } from '../test/support/processes.js';
import { machine, percentile, rssMb, slope } from './support/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const num = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const MINUTES = num('SOAK_MINUTES', 10);
const RPS = num('SOAK_RPS', 50);
const CONCURRENCY = num('SOAK_CONCURRENCY', 64);
const STREAM_SHARE = num('SOAK_STREAM_SHARE', 0.1);
const FAIL_SHARE = num('SOAK_FAIL_SHARE', 0.02);
// A control arm: this share of extra requests goes straight to the simulator with the same
// client. On a busy machine, client time − configured latency is mostly the machine's
// scheduling; the control shows how much of it Tollgate is not responsible for.
const DIRECT_SHARE = num('SOAK_DIRECT_SHARE', 0.05);
// Verdict bounds. A leak of ~0.7 KB per request at 50 req/s is 2 MB/min.
const RSS_SLOPE_MAX_MB_PER_MIN = num('SOAK_RSS_SLOPE_MAX', 2);
const P99_RATIO_MAX = num('SOAK_P99_RATIO_MAX', 1.5);
const RSS_SAMPLE_MS = 10_000;

/** Each model's configured upstream latency, in ms. */
const MODEL_LATENCY: Record<string, number> = { 'soak-50': 50, 'soak-100': 100, 'soak-150': 150, 'soak-300': 300 };
type Kind = 'exact' | 'semantic' | 'nocache';
/** Route per kind: its primary model (failures are injected there) and its share of traffic. */
const ROUTES: Record<Kind, { route: string; primary: string; share: number }> = {
  exact: { route: 'soak-exact', primary: 'soak-50', share: 0.3 },
  semantic: { route: 'soak-semantic', primary: 'soak-300', share: 0.3 },
  nocache: { route: 'soak-nocache', primary: 'soak-150', share: 0.4 },
};
const BACKUP = 'soak-100';
/** The control arm's model: used by no route, so no injected failure lands on it. */
const CONTROL = { model: 'control-150', latencyMs: 150 };
const EXACT_POOL = 2000;
const SEMANTIC_POOL = 1000;

// Seeded, so two soaks send the same traffic.
let seed = 7;
const rand = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
const TOPICS = ['billing', 'login failures', 'slow exports', 'API rate limits', 'invoice errors', 'SSO setup', 'data retention'];
const CITIES = ['Lisbon', 'Osaka', 'Denver', 'Nairobi', 'Tallinn', 'Quito', 'Perth', 'Bergen'];

function nextRequest(n: number): { kind: Kind; content: string; temperature?: number } {
  const r = rand();
  const kind: Kind = r < ROUTES.exact.share ? 'exact' : r < ROUTES.exact.share + ROUTES.semantic.share ? 'semantic' : 'nocache';
  if (kind === 'exact') {
    const i = Math.floor(rand() * EXACT_POOL);
    return { kind, temperature: 0, content: `Summarize support ticket #${i} about ${TOPICS[i % TOPICS.length]} in two sentences.` };
  }
  if (kind === 'semantic') {
    // One question, four surface forms the local embedder is meant to match (case,
    // punctuation, politeness): a different form of a stored question is a semantic hit.
    const i = Math.floor(rand() * SEMANTIC_POOL);
    const q = `What is the shipping cost for order ${i} to ${CITIES[i % CITIES.length]}?`;
    const forms = [q, q.toLowerCase().replace('?', ''), `Hey, ${q.toUpperCase()}`, `Please, ${q} Thanks!`];
    return { kind, temperature: 0, content: pick(forms) };
  }
  return { kind, content: `Request ${n}: draft a short status update for project ${n % 97}.` };
}

interface Sample {
  /** Seconds since the start of the load when the request was sent. */
  at: number;
  kind: Kind;
  stream: boolean;
  ms: number;
  ok: boolean;
  receiptId: string | null;
  cache: string | null;
  attempts: number;
  model: string | null;
}

function forkTs(file: string, args: string[]): Promise<{ child: ChildProcess; message: any }> {
  const child = fork(path.join(here, file), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve({ child, message }));
    child.once('exit', (code) => reject(new Error(`${file} exited ${code}`)));
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const startedAt = new Date();
  const machineAtStart = machine();
  const sim = await forkTs('support/soak-sim.ts', [JSON.stringify({ ...MODEL_LATENCY, [CONTROL.model]: CONTROL.latencyMs })]);
  const simUrl: string = sim.message.url;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-soak-'));
  const configFile = path.join(dataDir, 'tollgate.yaml');
  const route = (name: string, primary: string, cache: string) =>
    `  - name: ${name}\n    strategy: PRIORITY\n    retries: 0\n${cache}    targets:\n      - { provider: sim-primary, model: ${primary}, priority: 0 }\n      - { provider: sim-backup, model: ${BACKUP}, priority: 1 }\n`;
  await writeFile(
    configFile,
    'providers:\n' +
      `  - { name: sim-primary, kind: SIMULATED, baseUrl: "${simUrl}" }\n` +
      `  - { name: sim-backup, kind: SIMULATED, baseUrl: "${simUrl}" }\n` +
      'routes:\n' +
      route(ROUTES.exact.route, ROUTES.exact.primary, '    cache: { mode: EXACT, ttlSeconds: 120 }\n') +
      route(ROUTES.semantic.route, ROUTES.semantic.primary, '    cache: { mode: SEMANTIC, ttlSeconds: 120 }\n') +
      route(ROUTES.nocache.route, ROUTES.nocache.primary, '') +
      'prices:\n' +
      Object.keys(MODEL_LATENCY)
        .flatMap((m) => ['sim-primary', 'sim-backup'].map((p) => `  - { provider: ${p}, model: ${m}, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }\n`))
        .join('') +
      'teams: [soak]\n',
  );
  const env = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_CONFIG: configFile, TOLLGATE_LOG_LEVEL: 'warn' };
  const tollgate = await startTollgateProcess(env);
  const pid = tollgate.child.pid!;
  let tollgateExited = false;
  try {
    const keyProc = runTollgate(['keys', 'create', '--team', 'soak', '--json'], env);
    await keyProc.exited;
    const secret: string = JSON.parse(keyProc.output().trim().split('\n').at(-1)!).secret;
    const client = new OpenAI({ baseURL: `${tollgate.url}/v1`, apiKey: secret, maxRetries: 0, timeout: 30_000 });
    const direct = new OpenAI({ baseURL: simUrl, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });

    console.log(`soak: ${MINUTES} min at ${RPS} req/s (≤ ${CONCURRENCY} in flight), tollgate pid ${pid}, data dir ${dataDir}`);
    const samples: Sample[] = [];
    /** Control arm: seconds since start and time beyond the configured latency, straight to the simulator. */
    const directSamples: Array<{ at: number; addedMs: number }> = [];
    const rss: Array<{ at: number; mb: number }> = [];
    let injected = 0;
    let shed = 0;
    let controlErrors = 0;

    async function control(at: number): Promise<void> {
      const t0 = performance.now();
      try {
        await direct.chat.completions.create({ model: CONTROL.model, messages: [{ role: 'user', content: `Control request at ${at.toFixed(3)}` }] });
        directSamples.push({ at, addedMs: performance.now() - t0 - CONTROL.latencyMs });
      } catch {
        controlErrors++; // reported: the control arm has no failures injected
      }
    }

    async function one(n: number, at: number): Promise<void> {
      const req = nextRequest(n);
      const stream = rand() < STREAM_SHARE;
      if (rand() < FAIL_SHARE) {
        // Queued on the simulator before the request leaves: consumed by the next upstream call
        // to that model (this one, or a concurrent one), which then fails over.
        sim.child.send({ model: ROUTES[req.kind].primary, status: rand() < 0.5 ? 500 : 503 });
        injected++;
      }
      const body = { model: ROUTES[req.kind].route, messages: [{ role: 'user' as const, content: req.content }], ...(req.temperature === undefined ? {} : { temperature: req.temperature }) };
      const sample: Sample = { at, kind: req.kind, stream, ms: 0, ok: false, receiptId: null, cache: null, attempts: 0, model: null };
      const t0 = performance.now();
      let headers: Headers | undefined;
      try {
        if (stream) {
          const { data, response } = await client.chat.completions.create({ ...body, stream: true }).withResponse();
          headers = response.headers;
          let finished = false;
          for await (const chunk of data) if (chunk.choices[0]?.finish_reason) finished = true;
          sample.ok = finished;
        } else {
          const { response } = await client.chat.completions.create(body).withResponse();
          headers = response.headers;
          sample.ok = true;
        }
      } catch (err) {
        // An error answer still has a receipt; a network error has no headers.
        if (err instanceof APIError) headers = err.headers;
      }
      sample.ms = performance.now() - t0;
      sample.receiptId = headers?.get('x-tollgate-receipt-id') ?? null;
      sample.cache = headers?.get('x-tollgate-cache') ?? null;
      sample.attempts = Number(headers?.get('x-tollgate-attempts') ?? 0);
      sample.model = headers?.get('x-tollgate-model') ?? null;
      samples.push(sample);
    }

    const durationMs = MINUTES * 60_000;
    const start = performance.now();
    const startWallMs = Date.now(); // receipts are bucketed into the same minutes as the samples
    const sampleRss = () => rss.push({ at: (performance.now() - start) / 1000, mb: rssMb(pid) });
    sampleRss();
    const rssTimer = setInterval(sampleRss, RSS_SAMPLE_MS);
    let lastReported = 0;
    const inflight = new Set<Promise<void>>();
    let n = 0;
    while (performance.now() - start < durationMs) {
      // Open loop on the clock: every request due by now is sent, whatever the timer jitter.
      // Beyond the concurrency bound a request is shed (counted), not queued, so a stall in
      // Tollgate shows up as shed requests instead of a burst afterwards.
      const elapsed = performance.now() - start;
      const due = Math.min(Math.floor((elapsed / 1000) * RPS), Math.floor((durationMs / 1000) * RPS));
      for (; n < due; n++) {
        if (inflight.size >= CONCURRENCY) {
          shed++;
          continue;
        }
        const p = one(n, elapsed / 1000).finally(() => inflight.delete(p));
        inflight.add(p);
        if (rand() < DIRECT_SHARE) {
          const c = control(elapsed / 1000).finally(() => inflight.delete(c));
          inflight.add(c);
        }
      }
      const minute = Math.floor(elapsed / 60_000);
      if (minute > lastReported) {
        lastReported = minute;
        const row = minuteRows(samples, directSamples, rss).find((r) => r.minute === minute - 1);
        if (row) console.log(`  minute ${minute}: ${row.requests} req, ${row.errors} errors, hits ${row.cacheHits}, added p50 ${row.addedP50Ms.toFixed(2)} / p99 ${row.addedP99Ms.toFixed(2)} ms (direct ${row.directP50Ms.toFixed(2)} / ${row.directP99Ms.toFixed(2)}), RSS ${row.rssMb.toFixed(0)} MB`);
      }
      await sleep(10 - (elapsed % 10));
    }
    await Promise.all(inflight);
    sampleRss();
    clearInterval(rssTimer);
    const loadSeconds = (performance.now() - start) / 1000;

    // What the process says before it stops: appended to the WAL vs acknowledged by ClickHouse.
    const metricsText = await (await fetch(`${tollgate.url}/metrics`)).text();
    const gauge = (name: string) => Number(metricsText.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1] ?? NaN);
    const metrics = { receiptsAppended: gauge('tollgate_receipts_appended'), receiptsWritten: gauge('tollgate_receipts_written'), receiptsQueued: gauge('tollgate_receipts_queued') };

    // SIGTERM drains the WAL into ClickHouse; then the receipts table is read directly.
    tollgate.child.kill('SIGTERM');
    let drainTimer: NodeJS.Timeout | undefined;
    const exitCode = await Promise.race([tollgate.exited, new Promise<string>((r) => (drainTimer = setTimeout(() => r('timeout'), 120_000)))]);
    clearTimeout(drainTimer); // a pending timer would keep this process alive after the verdict
    tollgateExited = exitCode !== 'timeout';
    const ch = await openClickHouse({ dataDir });
    let receipts: { rows: number; uniqueIds: number; completedFound: number; overheadPerMinute: Array<{ minute: number; p50: number; p99: number; n: number }> };
    try {
      const q = async (query: string, params: Record<string, unknown> = {}) =>
        (await (await ch.client.query({ query, query_params: params, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } as never })).json()) as any[];
      const [totals] = await q('SELECT count() AS rows, uniqExact(receipt_id) AS ids FROM receipts');
      // A completed response without the header counts as not found.
      const completedIds = samples.filter((s) => s.ok && s.receiptId !== null).map((s) => s.receiptId!);
      let completedFound = 0;
      // In chunks: one query parameter with tens of thousands of ids is needlessly large.
      for (let i = 0; i < completedIds.length; i += 5000) {
        const [r] = await q('SELECT uniqExact(receipt_id) AS u FROM receipts WHERE receipt_id IN {ids:Array(String)}', { ids: completedIds.slice(i, i + 5000) });
        completedFound += Number(r.u);
      }
      const overhead = await q(
        `SELECT intDiv(toUnixTimestamp64Milli(started_at) - {t0:Int64}, 60000) AS minute, quantileExact(0.5)(overhead_ms) AS p50, quantileExact(0.99)(overhead_ms) AS p99, count() AS n
         FROM receipts WHERE overhead_ms IS NOT NULL GROUP BY minute HAVING minute >= 0 ORDER BY minute`,
        { t0: startWallMs },
      );
      receipts = {
        rows: Number(totals.rows),
        uniqueIds: Number(totals.ids),
        completedFound,
        overheadPerMinute: overhead.map((r) => ({ minute: Number(r.minute), p50: Number(r.p50), p99: Number(r.p99), n: Number(r.n) })),
      };
    } finally {
      await ch.close();
    }

    // ── verdict ──
    const perMinute = minuteRows(samples, directSamples, rss).map((r) => ({ ...r, overheadP50Ms: receipts.overheadPerMinute.find((o) => o.minute === r.minute)?.p50 ?? NaN, overheadP99Ms: receipts.overheadPerMinute.find((o) => o.minute === r.minute)?.p99 ?? NaN }));
    const sent = samples.length;
    const completed = samples.filter((s) => s.ok).length;
    const failed = sent - completed;
    const warm = rss.filter((r) => r.at >= loadSeconds / 3);
    const rssSlope = slope(warm.map((r) => [r.at / 60, r.mb])); // MB per minute
    const second = perMinute[1] ?? perMinute[0];
    const last = perMinute.at(-1);
    const p99Ratio = second && last ? last.addedP99Ms / second.addedP99Ms : NaN;
    // Under three minutes the second minute is the last one: nothing to compare, not a pass.
    const p99Comparable = second !== undefined && last !== undefined && second.minute !== last.minute;
    const failovers = samples.filter((s) => s.attempts > 1).length;
    const checks = {
      rssFlat: { value: rssSlope, bound: RSS_SLOPE_MAX_MB_PER_MIN, pass: rssSlope <= RSS_SLOPE_MAX_MB_PER_MIN },
      receiptsEqualRequests: {
        value: { sent, receipts: receipts.rows, uniqueIds: receipts.uniqueIds, completed, completedFound: receipts.completedFound },
        pass: receipts.rows === sent && receipts.uniqueIds === receipts.rows && receipts.completedFound === completed,
      },
      p99Stable: { value: p99Ratio, bound: P99_RATIO_MAX, pass: p99Comparable ? p99Ratio <= P99_RATIO_MAX : null, comparedMinutes: [second?.minute, last?.minute] },
      noClientErrors: { value: failed, pass: failed === 0 },
      noShed: { value: shed, pass: shed === 0 },
    };
    const rssMax = Math.max(...rss.map((r) => r.mb));
    const sorted = (xs: number[]) => xs.sort((a, b) => a - b);
    const addedAll = sorted(samples.filter(addedSampleable).map((s) => s.ms - MODEL_LATENCY[s.model!]!));
    const directAll = sorted(directSamples.map((d) => d.addedMs));
    const overall = {
      addedP50Ms: percentile(addedAll, 50),
      addedP99Ms: percentile(addedAll, 99),
      directP50Ms: percentile(directAll, 50),
      directP99Ms: percentile(directAll, 99),
    };

    const f = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');
    console.log(`\nper minute (ms; added = client time − configured upstream latency; direct = the same straight to the simulator, the control; overhead = receipts' overhead_ms)`);
    console.log('minute | requests | errors | cache hits | failovers | added p50 | added p99 | direct p50 | direct p99 | overhead p50 | overhead p99 | RSS MB');
    for (const r of perMinute) {
      console.log(
        `${String(r.minute + 1).padStart(6)} | ${String(r.requests).padStart(8)} | ${String(r.errors).padStart(6)} | ${String(r.cacheHits).padStart(10)} | ${String(r.failovers).padStart(9)} | ${f(r.addedP50Ms).padStart(9)} | ${f(r.addedP99Ms).padStart(9)} | ${f(r.directP50Ms).padStart(10)} | ${f(r.directP99Ms).padStart(10)} | ${f(r.overheadP50Ms).padStart(12)} | ${f(r.overheadP99Ms).padStart(12)} | ${f(r.rssMb, 0).padStart(6)}`,
      );
    }
    const pf = (b: boolean | null) => (b === null ? 'n/a' : b ? 'PASS' : 'FAIL');
    const short = p99Comparable ? '' : ' (run < 3 min: same minute)';
    const rows: Array<[string, string, string, string]> = [
      ['RSS slope after warm-up (last 2/3)', `${f(rssSlope)} MB/min (max ${f(rssMax, 0)} MB)`, `≤ ${RSS_SLOPE_MAX_MB_PER_MIN} MB/min`, pf(checks.rssFlat.pass)],
      ['receipts = requests', `${receipts.rows} receipts / ${sent} sent; ${receipts.completedFound} of ${completed} completed ids found`, 'all, no duplicate', pf(checks.receiptsEqualRequests.pass)],
      [`added p99 last / second minute${short}`, `${f(last?.addedP99Ms ?? NaN)} / ${f(second?.addedP99Ms ?? NaN)} ms = ${f(p99Ratio)}×`, `≤ ${P99_RATIO_MAX}×`, pf(checks.p99Stable.pass)],
      ['requests failed (client saw an error)', `${failed} (${injected} failures injected, ${failovers} failed over)`, '0', pf(checks.noClientErrors.pass)],
      ['requests shed (concurrency bound)', String(shed), '0', pf(checks.noShed.pass)],
      ['added p50 / p99, whole run (direct control)', `${f(overall.addedP50Ms)} / ${f(overall.addedP99Ms)} ms (${f(overall.directP50Ms)} / ${f(overall.directP99Ms)} ms)`, '', 'info'],
    ];
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    console.log(`\nsoak verdict (${machineAtStart.cores} cores, node ${process.version}, load ${machineAtStart.loadAverage.join(' ')} at start)`);
    for (const [k, v, t, p] of rows) console.log(`  ${k.padEnd(w0)}  ${v.padEnd(w1)}  ${t.padEnd(18)} ${p}`);

    const out = {
      date: startedAt.toISOString(),
      machine: machineAtStart,
      params: { minutes: MINUTES, rps: RPS, concurrency: CONCURRENCY, streamShare: STREAM_SHARE, failShare: FAIL_SHARE, directShare: DIRECT_SHARE, modelLatencyMs: MODEL_LATENCY, routes: ROUTES },
      loadSeconds,
      sent,
      completed,
      shed,
      controlRequests: directSamples.length,
      controlErrors,
      injectedFailures: injected,
      failovers,
      cacheHits: { exact: samples.filter((s) => s.cache === 'exact').length, semantic: samples.filter((s) => s.cache === 'semantic').length },
      streams: samples.filter((s) => s.stream).length,
      metricsBeforeStop: metrics,
      tollgateExit: exitCode,
      receipts: { rows: receipts.rows, uniqueIds: receipts.uniqueIds, completedFound: receipts.completedFound },
      rssSamples: rss,
      rssMaxMb: rssMax,
      overall,
      perMinute,
      checks,
      pass: Object.values(checks).every((c) => c.pass !== false),
    };
    await mkdir(path.join(here, 'results'), { recursive: true });
    await writeFile(path.join(here, 'results', 'soak.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log(`\nwrote bench/results/soak.json — ${out.pass ? 'PASS' : 'FAIL'}`);
    if (!out.pass) process.exitCode = 1;
  } finally {
    if (!tollgateExited) {
      tollgate.child.kill('SIGKILL');
      await tollgate.exited;
    }
    sim.child.disconnect();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/**
 * Only answers whose upstream time is known exactly count for added latency: not streamed (the
 * stream's own timing is not part of the configured latency), not a cache hit (no upstream),
 * one attempt (a failover adds the failed attempt).
 */
function addedSampleable(s: Sample): boolean {
  return s.ok && !s.stream && s.attempts === 1 && s.model !== null && s.model in MODEL_LATENCY && s.cache !== 'exact' && s.cache !== 'semantic';
}

/** Per minute of load: requests, errors, hits, failovers, client-side added latency, last RSS. */
function minuteRows(samples: Sample[], directSamples: Array<{ at: number; addedMs: number }>, rss: Array<{ at: number; mb: number }>) {
  const byMinute = new Map<number, Sample[]>();
  for (const s of samples) {
    const m = Math.floor(s.at / 60);
    let list = byMinute.get(m);
    if (!list) byMinute.set(m, (list = []));
    list.push(s);
  }
  return [...byMinute.keys()]
    .sort((a, b) => a - b)
    .map((minute) => {
      const list = byMinute.get(minute)!;
      const added = list
        .filter(addedSampleable)
        .map((s) => s.ms - MODEL_LATENCY[s.model!]!)
        .sort((a, b) => a - b);
      const control = directSamples.filter((d) => Math.floor(d.at / 60) === minute).map((d) => d.addedMs).sort((a, b) => a - b);
      const rssInMinute = rss.filter((r) => r.at < (minute + 1) * 60);
      return {
        minute,
        requests: list.length,
        errors: list.filter((s) => !s.ok).length,
        cacheHits: list.filter((s) => s.cache === 'exact' || s.cache === 'semantic').length,
        failovers: list.filter((s) => s.attempts > 1).length,
        addedN: added.length,
        addedP50Ms: percentile(added, 50),
        addedP99Ms: percentile(added, 99),
        directN: control.length,
        directP50Ms: percentile(control, 50),
        directP99Ms: percentile(control, 99),
        rssMb: rssInMinute.at(-1)?.mb ?? NaN,
      };
    });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
