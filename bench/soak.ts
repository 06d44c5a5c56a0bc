// npm run soak — Tollgate under steady load for a long time (not in CI).
//
//   sim       the simulated provider (its own process): models soak-50, soak-100, soak-150 and
//             soak-300 answer after that many ms
//   tollgate  a real Tollgate child process, its own temp data dir (WAL), and its stores per
//             SOAK_STORES:
//               embedded (default)  chDB and PGlite inside the Tollgate process
//               external            as in production, out of process: ClickHouse is the test-only
//                                   HTTP endpoint over chDB in its own child process
//                                   (test/faults/clickhouse-http.ts, CLICKHOUSE_URL); PostgreSQL
//                                   is a scratch database on DATABASE_URL's server (required in
//                                   this mode), dropped at the end
//   load      this process: open loop, SOAK_RPS requests/s (default 50) through the official
//             `openai` client, at most SOAK_CONCURRENCY (default 64) in flight, for
//             SOAK_MINUTES (default 10)
//
// Traffic: 30 % to an EXACT-cached route (a bounded pool of prompts, so some repeat), 30 % to a
// SEMANTIC-cached route (the same questions reworded), 40 % to an uncached route; ~10 % of all
// requests stream; ~2 % get an injected upstream 5xx on the route's primary target, which the
// route fails over to its backup. The cache TTL is short (2 min) so that entries expire and are
// refilled during the run: the cache stays busy but bounded, and a growing RSS means a leak,
// not a filling cache. Traffic and checks are the same in both store modes.
//
// Measured: every 10 s the Tollgate process's RSS (/proc/<pid>/status VmRSS) and its V8 heap
// used and external memory (from its /metrics). Those heap samples land anywhere on the
// garbage collector's saw-tooth (±7 MB within a minute), so the heap verdict is taken from the
// live heap after each full garbage collection instead: Tollgate runs with --trace-gc, and
// every Mark-Compact line of its main isolate gives the heap size the collection left.
// In embedded mode the RSS includes the native engines' memory, which the V8 heap does not:
// a flat heap under a rising RSS points at the engines, a rising heap at Tollgate's own JS.
// In external mode the ClickHouse endpoint's RSS is sampled too (info only: where the
// engine's memory went). Per minute, the client-observed added latency (response time − the
// answering model's configured latency, for non-streamed, uncached, single-attempt requests)
// and the gateway's own overhead_ms from the receipts; at
// the end, after SIGTERM drains the WAL, every completed request's x-tollgate-receipt-id looked
// up in the receipts table (read from wherever Tollgate wrote it). Prints a verdict table and
// writes bench/results/soak.json (soak-external.json with SOAK_STORES=external).
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type ClickHouseClient, createClient } from '@clickhouse/client';
import OpenAI, { APIError } from 'openai';
import { openClickHouse } from '../src/store/clickhouse.js';
import { type ClickHouseHttp, startClickHouseHttp } from '../test/faults/clickhouse-http.js';
import { scratchDatabase } from '../test/support/gateway.js';
import { runTollgate, type ServerProcess, startTollgateProcess } from '../test/support/processes.js';
import { forkTs } from './support/processes.js';
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
const RSS_SLOPE_MAX_MB_PER_MIN = num('SOAK_RSS_SLOPE_MAX', 0.2);
const P99_RATIO_MAX = num('SOAK_P99_RATIO_MAX', 1.5);
const RSS_SAMPLE_MS = 10_000;
const STORES = process.env.SOAK_STORES ?? 'embedded';
const EXTERNAL = STORES === 'external';
const MB = 2 ** 20;

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

/** The Tollgate process's V8 heap, from its /metrics, in MB. */
interface HeapSample {
  at: number;
  usedMb: number;
  /** Committed by V8 (RSS counts it): may grow while usedMb stays flat. */
  totalMb: number;
  externalMb: number;
  /** Committed per V8 heap space (new, old, code, large objects…): which of them grows. */
  spacesMb?: Record<string, number>;
}

/** The heap one full collection (Mark-Compact) left, from a --trace-gc line, in MB. */
interface FullGcSample {
  at: number;
  /** V8 isolate address: the main thread's and the segment worker's collections are told apart. */
  isolate: string;
  afterMb: number;
}

// `[pid:isolate]  1234 ms: Mark-Compact 45.6 (60.2) -> 38.1 (58.4) MB, …` (also `Mark-Compact (reduce)`,
// and newer V8's `Incremental Mark-Compact`). The time is since the isolate started.
const FULL_GC_LINE = /^\[\d+:(0x[0-9a-f]+)\]\s+([\d.]+) ms: (?:Incremental )?Mark-Compact(?: \(reduce\))? [\d.]+ \([\d.]+\) -> ([\d.]+) \([\d.]+\) MB/;

/**
 * The main isolate's full collections: the isolate whose collections left the largest heap
 * (the segment worker's heap is a few MB).
 */
function mainIsolateGcs(gcs: FullGcSample[]): FullGcSample[] {
  const largest = new Map<string, number>();
  for (const g of gcs) largest.set(g.isolate, Math.max(largest.get(g.isolate) ?? 0, g.afterMb));
  const main = [...largest].sort((a, b) => b[1] - a[1])[0]?.[0];
  return gcs.filter((g) => g.isolate === main);
}

/** An unlabelled sample's value in Prometheus text (NaN when absent). */
function metricValue(text: string, name: string): number {
  return Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1] ?? NaN);
}

/** Committed bytes per V8 heap space, from prom-client's nodejs_heap_space_size_total_bytes, in MB. */
function heapSpacesMb(text: string): Record<string, number> {
  const spaces: Record<string, number> = {};
  for (const m of text.matchAll(/^tollgate_nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)$/gm)) spaces[m[1]!] = Number(m[2]) / MB;
  return spaces;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  if (STORES !== 'embedded' && STORES !== 'external') {
    console.error(`soak: SOAK_STORES must be "embedded" (default) or "external", not "${STORES}"`);
    process.exit(2);
  }
  if (EXTERNAL && !process.env.DATABASE_URL) {
    console.error(
      'soak: SOAK_STORES=external needs DATABASE_URL, a PostgreSQL server on which a scratch database is created (and dropped at the end), ' +
        'e.g. DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres',
    );
    process.exit(2);
  }
  const startedAt = new Date();
  const machineAtStart = machine();
  const sim = await forkTs(path.join(here, 'support/soak-sim.ts'), [JSON.stringify({ ...MODEL_LATENCY, [CONTROL.model]: CONTROL.latencyMs })]);
  const simUrl: string = sim.message.url;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-soak-'));
  let clickhouseHttp: ClickHouseHttp | undefined;
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let started: ServerProcess | undefined;
  let tollgateExited = false;
  try {
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
    if (EXTERNAL) {
      // Inside the soak's data dir, so that the rm at the end removes it too.
      clickhouseHttp = await startClickHouseHttp(path.join(dataDir, 'clickhouse-http'));
      db = await scratchDatabase();
    }
    const env: Record<string, string> = {
      TOLLGATE_DATA_DIR: dataDir,
      TOLLGATE_CONFIG: configFile,
      TOLLGATE_LOG_LEVEL: 'warn',
      ...(clickhouseHttp && db ? { CLICKHOUSE_URL: clickhouseHttp.url, DATABASE_URL: db.url } : {}),
    };
    // As deployed (dist/, not src/ through tsx), with its collections traced (start only: the
    // CLI call below prints JSON on stdout). V8 stamps each line with the time since the
    // process started, and writes it through a buffer: the stamp, not the arrival, dates it.
    const spawnedAt = performance.now();
    started = await startTollgateProcess({ ...env, NODE_ARGS: '--trace-gc' }, { built: true });
    const tollgate = started;
    const pid = tollgate.child.pid!;
    const clickhousePid = clickhouseHttp?.child.pid;
    const keyProc = runTollgate(['keys', 'create', '--team', 'soak', '--json'], env, { built: true });
    await keyProc.exited;
    const secret: string = JSON.parse(keyProc.output().trim().split('\n').at(-1)!).secret;
    const client = new OpenAI({ baseURL: `${tollgate.url}/v1`, apiKey: secret, maxRetries: 0, timeout: 30_000 });
    const direct = new OpenAI({ baseURL: simUrl, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });

    const storesText =
      clickhouseHttp && db
        ? `external (ClickHouse: test endpoint over chDB, pid ${clickhousePid}, ${clickhouseHttp.url}; PostgreSQL: scratch database ${new URL(db.url).pathname.slice(1)} on ${new URL(db.url).host})`
        : 'embedded (chDB and PGlite in the Tollgate process)';
    console.log(`soak: ${MINUTES} min at ${RPS} req/s (≤ ${CONCURRENCY} in flight), stores ${storesText}, tollgate pid ${pid}, data dir ${dataDir}`);
    const samples: Sample[] = [];
    /** Control arm: seconds since start and time beyond the configured latency, straight to the simulator. */
    const directSamples: Array<{ at: number; addedMs: number }> = [];
    const rss: Array<{ at: number; mb: number }> = [];
    const heap: HeapSample[] = [];
    /** External mode only: the ClickHouse endpoint process's RSS. */
    const clickhouseRss: Array<{ at: number; mb: number }> = [];
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
      const body = {
        model: ROUTES[req.kind].route,
        messages: [{ role: 'user' as const, content: req.content }],
        ...(req.temperature === undefined ? {} : { temperature: req.temperature }),
      };
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
    const fullGcs: FullGcSample[] = [];
    createInterface({ input: tollgate.child.stdout! }).on('line', (line) => {
      const m = FULL_GC_LINE.exec(line);
      if (m) fullGcs.push({ at: (spawnedAt + Number(m[2]) - start) / 1000, isolate: m[1]!, afterMb: Number(m[3]) });
    });
    const startWallMs = Date.now(); // receipts are bucketed into the same minutes as the samples
    // RSS is read at the tick; heap used and external memory come from Tollgate's /metrics
    // (prom-client reads process.memoryUsage() when scraped), a few ms later, under the same `at`.
    const sampleMemory = async () => {
      const at = (performance.now() - start) / 1000;
      rss.push({ at, mb: rssMb(pid) });
      if (clickhousePid !== undefined) clickhouseRss.push({ at, mb: rssMb(clickhousePid) });
      try {
        const text = await (await fetch(`${tollgate.url}/metrics`)).text();
        const usedMb = metricValue(text, 'tollgate_nodejs_heap_size_used_bytes') / MB;
        const totalMb = metricValue(text, 'tollgate_nodejs_heap_size_total_bytes') / MB;
        const externalMb = metricValue(text, 'tollgate_nodejs_external_memory_bytes') / MB;
        if (!Number.isFinite(usedMb) || !Number.isFinite(externalMb)) throw new Error('heap metrics missing from /metrics');
        heap.push({ at, usedMb, totalMb, externalMb, spacesMb: heapSpacesMb(text) });
      } catch (err) {
        // A missed heap sample is reported, not fatal: the RSS sample above is already taken.
        console.warn(`  heap sample at ${at.toFixed(0)} s failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    let lastSample = sampleMemory();
    const memoryTimer = setInterval(() => (lastSample = sampleMemory()), RSS_SAMPLE_MS);
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
        const row = minuteRows(samples, directSamples, rss, heap, clickhouseRss).find((r) => r.minute === minute - 1);
        if (row)
          console.log(
            `  minute ${minute}: ${row.requests} req, ${row.errors} errors, hits ${row.cacheHits}, added p50 ${row.addedP50Ms.toFixed(2)} / p99 ${row.addedP99Ms.toFixed(2)} ms (direct ${row.directP50Ms.toFixed(2)} / ${row.directP99Ms.toFixed(2)}), RSS ${row.rssMb.toFixed(0)} MB, heap ${row.heapMb.toFixed(0)} MB${EXTERNAL ? `, ClickHouse endpoint RSS ${row.clickhouseRssMb.toFixed(0)} MB` : ''}`,
          );
      }
      await sleep(10 - (elapsed % 10));
    }
    await Promise.all(inflight);
    clearInterval(memoryTimer);
    await lastSample;
    await sampleMemory();
    const loadSeconds = (performance.now() - start) / 1000;

    // What the process says before it stops: appended to the WAL vs acknowledged by ClickHouse.
    const metricsText = await (await fetch(`${tollgate.url}/metrics`)).text();
    const gauge = (name: string) => metricValue(metricsText, name);
    const metrics = {
      receiptsAppended: gauge('tollgate_receipts_appended'),
      receiptsWritten: gauge('tollgate_receipts_written'),
      receiptsQueued: gauge('tollgate_receipts_queued'),
    };

    // SIGTERM drains the WAL into ClickHouse; then the receipts table is read directly.
    tollgate.child.kill('SIGTERM');
    let drainTimer: NodeJS.Timeout | undefined;
    const exitCode = await Promise.race([tollgate.exited, new Promise<string>((r) => (drainTimer = setTimeout(() => r('timeout'), 120_000)))]);
    clearTimeout(drainTimer); // a pending timer would keep this process alive after the verdict
    tollgateExited = exitCode !== 'timeout';
    // From wherever Tollgate wrote them: the endpoint in external mode, else its chDB data dir.
    // Over HTTP, 5000 ids in the URL exceed Node's 16 KB header limit (the endpoint resets the
    // connection): the client sends such parameters as multipart form parts instead.
    const ch: ClickHouseClient = clickhouseHttp
      ? createClient({ url: clickhouseHttp.url, use_multipart_params_auto: true })
      : (await openClickHouse({ dataDir })).client;
    let receipts: {
      rows: number;
      uniqueIds: number;
      completedFound: number;
      overheadPerMinute: Array<{ minute: number; p50: number; p99: number; n: number }>;
    };
    try {
      const q = async (query: string, params: Record<string, unknown> = {}) =>
        (await (
          await ch.query({ query, query_params: params, format: 'JSONEachRow', clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } as never })
        ).json()) as any[];
      const [totals] = await q('SELECT count() AS rows, uniqExact(receipt_id) AS ids FROM receipts');
      // A completed response without the header counts as not found.
      const completedIds = samples.filter((s) => s.ok && s.receiptId !== null).map((s) => s.receiptId!);
      let completedFound = 0;
      // In chunks: one query parameter with tens of thousands of ids is needlessly large.
      for (let i = 0; i < completedIds.length; i += 5000) {
        const [r] = await q('SELECT uniqExact(receipt_id) AS u FROM receipts WHERE receipt_id IN {ids:Array(String)}', {
          ids: completedIds.slice(i, i + 5000),
        });
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
    const perMinute = minuteRows(samples, directSamples, rss, heap, clickhouseRss).map((r) => ({
      ...r,
      overheadP50Ms: receipts.overheadPerMinute.find((o) => o.minute === r.minute)?.p50 ?? NaN,
      overheadP99Ms: receipts.overheadPerMinute.find((o) => o.minute === r.minute)?.p99 ?? NaN,
    }));
    const sent = samples.length;
    const completed = samples.filter((s) => s.ok).length;
    const failed = sent - completed;
    // MB per minute over the samples after warm-up (the first third of the run).
    const slopeAfterWarmUp = <T extends { at: number }>(xs: T[], mb: (x: T) => number) =>
      slope(xs.filter((x) => x.at >= loadSeconds / 3).map((x): [number, number] => [x.at / 60, mb(x)]));
    const rssSlope = slopeAfterWarmUp(rss, (r) => r.mb);
    const heapSlope = slopeAfterWarmUp(heap, (h) => h.usedMb);
    // The load's collections only: the drain after SIGTERM collects too.
    const mainGcs = mainIsolateGcs(fullGcs.filter((g) => g.at <= loadSeconds));
    const liveHeapSlope = slopeAfterWarmUp(mainGcs, (g) => g.afterMb);
    const afterWarmUp = mainGcs.filter((g) => g.at >= loadSeconds / 3).map((g) => g.afterMb);
    if (fullGcs.length === 0) console.warn("soak: no Mark-Compact line in Tollgate's --trace-gc output: has its format changed? The heap check fails.");
    const externalMemorySlope = slopeAfterWarmUp(heap, (h) => h.externalMb);
    const heapTotalSlope = slopeAfterWarmUp(heap, (h) => h.totalMb);
    // Which space the committed heap grows in (the samples before this field have none).
    const spaceSlopes = Object.keys(heap.at(-1)?.spacesMb ?? {})
      .map((space) => ({ space, slope: slopeAfterWarmUp(heap, (h) => h.spacesMb?.[space] ?? 0), lastMb: heap.at(-1)!.spacesMb![space]! }))
      .filter((s) => s.lastMb > 0);
    const clickhouseRssSlope = slopeAfterWarmUp(clickhouseRss, (r) => r.mb);
    const second = perMinute[1] ?? perMinute[0];
    const last = perMinute.at(-1);
    const p99Ratio = second && last ? last.addedP99Ms / second.addedP99Ms : NaN;
    // Under three minutes the second minute is the last one: nothing to compare, not a pass.
    const p99Comparable = second !== undefined && last !== undefined && second.minute !== last.minute;
    const failovers = samples.filter((s) => s.attempts > 1).length;
    const checks = {
      rssFlat: { value: rssSlope, bound: RSS_SLOPE_MAX_MB_PER_MIN, pass: rssSlope <= RSS_SLOPE_MAX_MB_PER_MIN },
      // Same bound as RSS: the JS heap is the part of the RSS that is Tollgate's own code. Its
      // level after full collections; fewer than three after warm-up give no trend (n/a), none
      // at all means the trace could not be read (fail).
      heapFlat: {
        value: liveHeapSlope,
        bound: RSS_SLOPE_MAX_MB_PER_MIN,
        pass: fullGcs.length === 0 ? false : afterWarmUp.length >= 3 ? liveHeapSlope <= RSS_SLOPE_MAX_MB_PER_MIN : null,
        fullCollections: afterWarmUp.length,
      },
      receiptsEqualRequests: {
        value: { sent, receipts: receipts.rows, uniqueIds: receipts.uniqueIds, completed, completedFound: receipts.completedFound },
        pass: receipts.rows === sent && receipts.uniqueIds === receipts.rows && receipts.completedFound === completed,
      },
      p99Stable: {
        value: p99Ratio,
        bound: P99_RATIO_MAX,
        pass: p99Comparable ? p99Ratio <= P99_RATIO_MAX : null,
        comparedMinutes: [second?.minute, last?.minute],
      },
      noClientErrors: { value: failed, pass: failed === 0 },
      noShed: { value: shed, pass: shed === 0 },
    };
    const rssMax = Math.max(...rss.map((r) => r.mb));
    const heapMax = Math.max(...heap.map((h) => h.usedMb));
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
    console.log(
      `\nper minute (ms; added = client time − configured upstream latency; direct = the same straight to the simulator, the control; overhead = receipts' overhead_ms)`,
    );
    console.log(
      `minute | requests | errors | cache hits | failovers | added p50 | added p99 | direct p50 | direct p99 | overhead p50 | overhead p99 | RSS MB | heap MB${EXTERNAL ? ' | CH RSS MB' : ''}`,
    );
    for (const r of perMinute) {
      console.log(
        `${String(r.minute + 1).padStart(6)} | ${String(r.requests).padStart(8)} | ${String(r.errors).padStart(6)} | ${String(r.cacheHits).padStart(10)} | ${String(r.failovers).padStart(9)} | ${f(r.addedP50Ms).padStart(9)} | ${f(r.addedP99Ms).padStart(9)} | ${f(r.directP50Ms).padStart(10)} | ${f(r.directP99Ms).padStart(10)} | ${f(r.overheadP50Ms).padStart(12)} | ${f(r.overheadP99Ms).padStart(12)} | ${f(r.rssMb, 0).padStart(6)} | ${f(r.heapMb, 0).padStart(7)}` +
          (EXTERNAL ? ` | ${f(r.clickhouseRssMb, 0).padStart(9)}` : ''),
      );
    }
    if (EXTERNAL) console.log('(CH RSS = the ClickHouse endpoint process, where the engine runs in this mode)');
    const pf = (b: boolean | null) => (b === null ? 'n/a' : b ? 'PASS' : 'FAIL');
    const short = p99Comparable ? '' : ' (run < 3 min: same minute)';
    const rows: Array<[string, string, string, string]> = [
      ['RSS slope after warm-up (last 2/3)', `${f(rssSlope)} MB/min (max ${f(rssMax, 0)} MB)`, `≤ ${RSS_SLOPE_MAX_MB_PER_MIN} MB/min`, pf(checks.rssFlat.pass)],
      [
        'JS heap after full GCs, slope after warm-up',
        `${f(liveHeapSlope)} MB/min (${afterWarmUp.length} collections, ${f(Math.min(...afterWarmUp), 0)}–${f(Math.max(...afterWarmUp), 0)} MB)`,
        `≤ ${RSS_SLOPE_MAX_MB_PER_MIN} MB/min`,
        pf(checks.heapFlat.pass),
      ],
      [
        'JS heap used, sampled every 10 s, slope',
        `${f(heapSlope)} MB/min (max ${f(heapMax, 0)} MB; committed ${f(heapTotalSlope)}, external ${f(externalMemorySlope)} MB/min)`,
        '',
        'info',
      ],
      [
        'V8 committed heap by space, slope (size at the end)',
        spaceSlopes.map((s) => `${s.space} ${f(s.slope)} (${f(s.lastMb, 0)} MB)`).join(', ') || 'n/a',
        '',
        'info',
      ],
      [
        'receipts = requests',
        `${receipts.rows} receipts / ${sent} sent; ${receipts.completedFound} of ${completed} completed ids found`,
        'all, no duplicate',
        pf(checks.receiptsEqualRequests.pass),
      ],
      [
        `added p99 last / second minute${short}`,
        `${f(last?.addedP99Ms ?? NaN)} / ${f(second?.addedP99Ms ?? NaN)} ms = ${f(p99Ratio)}×`,
        `≤ ${P99_RATIO_MAX}×`,
        pf(checks.p99Stable.pass),
      ],
      ['requests failed (client saw an error)', `${failed} (${injected} failures injected, ${failovers} failed over)`, '0', pf(checks.noClientErrors.pass)],
      ['requests shed (concurrency bound)', String(shed), '0', pf(checks.noShed.pass)],
      [
        'added p50 / p99, whole run (direct control)',
        `${f(overall.addedP50Ms)} / ${f(overall.addedP99Ms)} ms (${f(overall.directP50Ms)} / ${f(overall.directP99Ms)} ms)`,
        '',
        'info',
      ],
    ];
    if (EXTERNAL) {
      const chFirst = clickhouseRss[0]?.mb ?? NaN;
      const chLast = clickhouseRss.at(-1)?.mb ?? NaN;
      rows.push(['ClickHouse endpoint RSS (own process)', `${f(chFirst, 0)} → ${f(chLast, 0)} MB, ${f(clickhouseRssSlope)} MB/min after warm-up`, '', 'info']);
    }
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    console.log(
      `\nsoak verdict (stores ${STORES}, ${machineAtStart.cores} cores, node ${process.version}, load ${machineAtStart.loadAverage.join(' ')} at start)`,
    );
    for (const [k, v, t, p] of rows) console.log(`  ${k.padEnd(w0)}  ${v.padEnd(w1)}  ${t.padEnd(18)} ${p}`);

    const out = {
      date: startedAt.toISOString(),
      machine: machineAtStart,
      params: {
        stores: STORES,
        minutes: MINUTES,
        rps: RPS,
        concurrency: CONCURRENCY,
        streamShare: STREAM_SHARE,
        failShare: FAIL_SHARE,
        directShare: DIRECT_SHARE,
        modelLatencyMs: MODEL_LATENCY,
        routes: ROUTES,
      },
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
      heapSamples: heap,
      heapMaxMb: heapMax,
      heapSlopeMbPerMin: heapSlope,
      fullGcSamples: mainGcs,
      liveHeapSlopeMbPerMin: liveHeapSlope,
      externalMemorySlopeMbPerMin: externalMemorySlope,
      heapTotalSlopeMbPerMin: heapTotalSlope,
      heapSpaceSlopesMbPerMin: Object.fromEntries(spaceSlopes.map((s) => [s.space, s.slope])),
      ...(EXTERNAL ? { clickhouseRssSamples: clickhouseRss, clickhouseRssSlopeMbPerMin: clickhouseRssSlope } : {}),
      overall,
      perMinute,
      checks,
      pass: Object.values(checks).every((c) => c.pass !== false),
    };
    await mkdir(path.join(here, 'results'), { recursive: true });
    // One file per stores mode, so that bench/RESULTS.md can show both.
    const file = STORES === 'external' ? 'soak-external.json' : 'soak.json';
    await writeFile(path.join(here, 'results', file), `${JSON.stringify(out, null, 2)}\n`);
    console.log(`\nwrote bench/results/${file} — ${out.pass ? 'PASS' : 'FAIL'}`);
    if (!out.pass) process.exitCode = 1;
  } finally {
    if (started && !tollgateExited) {
      started.child.kill('SIGKILL');
      await started.exited;
    }
    await clickhouseHttp?.close();
    await db?.drop().catch((err) => console.warn(`soak: could not drop the scratch database: ${err instanceof Error ? err.message : String(err)}`));
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

/** Per minute of load: requests, errors, hits, failovers, client-side added latency, last memory samples. */
function minuteRows(
  samples: Sample[],
  directSamples: Array<{ at: number; addedMs: number }>,
  rss: Array<{ at: number; mb: number }>,
  heap: HeapSample[],
  clickhouseRss: Array<{ at: number; mb: number }>,
) {
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
      const control = directSamples
        .filter((d) => Math.floor(d.at / 60) === minute)
        .map((d) => d.addedMs)
        .sort((a, b) => a - b);
      const lastBy = <T extends { at: number }>(xs: T[]) => xs.filter((x) => x.at < (minute + 1) * 60).at(-1);
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
        rssMb: lastBy(rss)?.mb ?? NaN,
        heapMb: lastBy(heap)?.usedMb ?? NaN,
        clickhouseRssMb: lastBy(clickhouseRss)?.mb ?? NaN,
      };
    });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
