// npm run bench:proxy — the arms side by side, interleaved, in one process tree:
//   direct       → the simulated provider (its own process)
//   bare         → a 20-line undici pass-through proxy (its own process): the Node proxy limit
//   floor        → throughput rounds only: Tollgate's own inbound server and upstream client
//                  with an empty handler (bench/support/floor-proxy.ts); Tollgate − floor is
//                  what the pipeline costs
//   tollgate     → Tollgate with receipts on (its own process, embedded stores: chDB and
//                  PGlite inside the process)
//   protocols    → the tollgate arm again, one protocol per round (chat completions, Responses,
//                  Anthropic Messages; the same question), to show what translating a protocol costs
//   tollgate-ext → only when DATABASE_URL is set: a second Tollgate, same config, with
//                  external stores as in production: CLICKHOUSE_URL → the test-only ClickHouse
//                  HTTP endpoint (test/faults/clickhouse-http.ts: chDB in its own process) and
//                  DATABASE_URL → a scratch database on DATABASE_URL's server (dropped at the
//                  end). Without DATABASE_URL it is skipped and proxy.json says so.
// Then, after the measured rounds, a fresh Tollgate (embedded stores) runs the same c=32 load
// under `--cpu-prof`: its top-15 functions by self time (main thread, load window only), and
// each thread's share (a worker's with its own top functions), go to
// bench/results/proxy-profile.json; and another one at c=1 (`c1` there), where each request
// runs on an idle event loop and costs ~3× the main-thread CPU it costs under load. The
// receipt signature's own cost (one Ed25519 signature over a real receipt's canonical JSON) is
// measured in this process.
// Prints a table and writes bench/results/proxy.json. Ratios and differences are computed
// within one run, so a noisy shared machine moves all arms together.
import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Pool } from 'undici';
import { ed25519Implementation, ed25519Signer } from '../src/receipts/ed25519.js';
import { canonicalize } from '../src/receipts/verify.js';
import { startClickHouseHttp } from '../test/faults/clickhouse-http.js';
import { type ServerProcess, startTollgateProcess } from '../test/support/processes.js';
import { profileStart, type SelfTimeRow, selfTimeByModule, selfTimeTable } from './support/cpu-profile.js';
import { BUILT, Cleanups, createKey, forkTs, stopTollgate, writeSimConfig } from './support/processes.js';
import { cpuSeconds, mainThreadCpuSeconds, median, minorFaults, percentile, rssMb } from './support/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const LAT_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const LAT_PER_ROUND = 200;
// Smaller values only for smoke-testing the runner (BENCH_QUICK=1 npm run bench).
const TP_ROUNDS = Number(process.env.BENCH_TP_ROUNDS ?? 3);
const TP_SECONDS = Number(process.env.BENCH_TP_SECONDS ?? 4);
/**
 * c=1 requests per arm before anything is measured. Every process here (client, simulator,
 * proxies) is slower for its first few thousand requests: measured 2026-12-06 in one run,
 * interleaved rounds after 500 warm-up requests per arm gave p50 0.72 ms through Tollgate and
 * 0.34 ms through the bare proxy, the same rounds right after them 0.36 and 0.22 ms; after 3000
 * the first rounds are already there (0.37 / 0.28). With 300 the c=1 figures measured warm-up.
 */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3000);
const TP_CONCURRENCY = 32;
const PROFILE_SECONDS = Number(process.env.BENCH_PROFILE_SECONDS ?? 8);
/** Rows of each worker thread's own table (the segment worker: signing, insert bodies). */
const WORKER_TOP = 8;
const EXTERNAL_DB = process.env.DATABASE_URL;

type Arm = 'direct' | 'bare' | 'floor' | 'tollgate' | 'tollgate-ext';
type ProxyArm = Exclude<Arm, 'direct'>;
const BASE_ARMS = ['direct', 'bare', 'tollgate'] as const;
const ARMS: Arm[] = EXTERNAL_DB ? [...BASE_ARMS, 'tollgate-ext'] : [...BASE_ARMS];
/** The throughput and c=1 rounds also run the floor: Tollgate's own server and upstream client, empty handler. */
const ARMS_WITH_FLOOR: Arm[] = [...ARMS.slice(0, 2), 'floor', ...ARMS.slice(2)];
const isTollgate = (arm: Arm) => arm === 'tollgate' || arm === 'tollgate-ext';
/** One value per arm that runs (no 'tollgate-ext' entry when it is skipped). */
const perArm = <T>(make: (arm: Arm) => T, arms = ARMS) => Object.fromEntries(arms.map((a) => [a, make(a)])) as Record<Arm, T>;
const baseOnly = <T>(r: Record<Arm, T>) => Object.fromEntries(BASE_ARMS.map((a) => [a, r[a]])) as Record<(typeof BASE_ARMS)[number], T>;

/**
 * CPU seconds of a process's threads in three groups: the main (event-loop) thread; the other
 * Node threads (the receipt worker that signs segments, V8's GC helpers, libuv's pool: Node 20
 * names them all "node"); and the embedded ClickHouse engine's own threads (chDB names its
 * pools: ThreadPool, MergeMutate, …), taken as the rest of the process's CPU, so threads that
 * exited count too. Node 20 leaves its threads unnamed ("node"); a later Node that names them
 * would move them into the engine group.
 */
type ThreadGroups = { main: number; node: number; engine: number };
function cpuByThreadGroup(pid: number): ThreadGroups {
  const groups: ThreadGroups = { main: 0, node: 0, engine: 0 };
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / 100;
    if (tid === String(pid)) groups.main += seconds;
    else if (name === 'node') groups.node += seconds;
  }
  // The engine's threads come and go: what the process used beyond the main and Node threads
  // (counted whole, dead threads included, by /proc/<pid>/stat) is theirs.
  groups.engine = cpuSeconds(pid) - groups.main - groups.node;
  return groups;
}
/** The V8 heap of a Tollgate process, from its /metrics (prom-client's default gauges), in MB. */
async function v8HeapMb(origin: string): Promise<{ committed: number; used: number; external: number }> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN) / 2 ** 20;
  return {
    committed: gauge('tollgate_nodejs_heap_size_total_bytes'),
    used: gauge('tollgate_nodejs_heap_size_used_bytes'),
    external: gauge('tollgate_nodejs_external_memory_bytes'),
  };
}

const cleanups = new Cleanups('proxy bench');
const defer = (what: string, run: () => unknown) => cleanups.defer(what, run);

/** A fresh database on DATABASE_URL's server, as scratchDatabase() in test/support/gateway.ts
 * does; not imported from there, which would load all of src/ into the load generator. */
async function scratchDatabase(base: string): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `tollgate_bench_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  return { url: url.toString(), name, drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

async function load(pool: Pool, headers: Record<string, string>, body: string, seconds: number, concurrency = TP_CONCURRENCY): Promise<number> {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const res = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body });
        await res.body.arrayBuffer();
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
        done++;
      }
    }),
  );
  return done;
}

/** µs for one Ed25519 signature over the canonical JSON of a receipt Tollgate just wrote. */
async function measureSignature(pool: Pool, headers: Record<string, string>, body: string): Promise<number> {
  const res = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body });
  await res.body.arrayBuffer();
  const id = String(res.headers['x-tollgate-receipt-id']);
  let receipt: Record<string, unknown> | null = null;
  // The receipt is readable once its segment is signed and flushed (well under a second).
  for (let i = 0; i < 50 && !receipt; i++) {
    const r = await pool.request({ method: 'GET', path: `/v1/receipts/${id}`, headers: { authorization: headers.authorization! } });
    if (r.statusCode === 200) receipt = (await r.body.json()) as Record<string, unknown>;
    else await r.body.arrayBuffer().then(() => new Promise((ok) => setTimeout(ok, 100)));
  }
  if (!receipt) throw new Error(`receipt ${id} never became readable`);
  const { signature: _signature, ...signed } = receipt;
  const data = Buffer.from(canonicalize(signed)!, 'utf8');
  // The implementation Tollgate signs with (libsodium where it loads; src/receipts/ed25519.ts).
  const sign = ed25519Signer(generateKeyPairSync('ed25519').privateKey);
  for (let i = 0; i < 200; i++) sign(data);
  const times: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t0 = performance.now();
    sign(data);
    times.push((performance.now() - t0) * 1000);
  }
  return median(times);
}

interface ProfileResult {
  rps: number;
  cpuUsPerRequest: number;
  top: Array<SelfTimeRow & { usPerRequest: number }>;
  /** The main thread's self time by where the code lives (our modules by file, libraries by package, Node by area). */
  byModule: Array<{ module: string; share: number; usPerRequest: number }>;
  /** Each profiled thread's sampled time per request (main, segment worker, …), with its top functions (main's are `top`). */
  threads: Array<{ thread: string; usPerRequest: number; top?: Array<SelfTimeRow & { usPerRequest: number }> }>;
}

/**
 * A fresh Tollgate with `--cpu-prof` under `concurrency` clients, its profiles cut to the load
 * window (start-up and shutdown left out). Its own data dir: two instances never share one.
 */
async function profileTollgate(configFile: string, body: () => string, concurrency: number): Promise<ProfileResult> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-prof-'));
  defer("remove the profiled instance's dir", () => rm(dataDir, { recursive: true, force: true }));
  const profDir = path.join(dataDir, 'profiles');
  const env = { TOLLGATE_DATA_DIR: path.join(dataDir, 'data'), TOLLGATE_CONFIG: configFile, TOLLGATE_LOG_LEVEL: 'warn' };
  const spawnedAt = performance.now();
  const proc = await startTollgateProcess({ ...env, NODE_ARGS: `--cpu-prof --cpu-prof-dir=${profDir}` }, BUILT);
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${await createKey(env)}` };
  const pool = new Pool(proc.url, { connections: 64 });
  let done: number;
  let cpu: number;
  let window: { fromMs: number; toMs: number };
  try {
    await load(pool, headers, body(), 2, concurrency); // warm-up
    const cpu0 = cpuSeconds(proc.child.pid!);
    const fromMs = performance.now() - spawnedAt;
    done = await load(pool, headers, body(), PROFILE_SECONDS, concurrency);
    window = { fromMs, toMs: performance.now() - spawnedAt };
    cpu = cpuSeconds(proc.child.pid!) - cpu0;
  } finally {
    await pool.close();
    await stopTollgate(proc); // the profiles are written at exit
  }
  // File names are CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile; thread 0 is the main one.
  const files = (await readdir(profDir)).filter((f) => f.endsWith('.cpuprofile'));
  const threadOf = (f: string) => Number(f.split('.').at(-3));
  const root = path.resolve(here, '..');
  const threads: ProfileResult['threads'] = [];
  let top: ProfileResult['top'] = [];
  let byModule: ProfileResult['byModule'] = [];
  files.sort((a, b) => threadOf(a) - threadOf(b));
  // The main thread's clock starts a little after spawn (the window is off by that much, some
  // ms); workers start later and are cut on the main thread's clock.
  const originUs = await profileStart(path.join(profDir, files[0]!));
  for (const f of files) {
    const { rows, totalMs } = await selfTimeTable(path.join(profDir, f), root, 15, { ...window, originUs });
    const thread = threadOf(f) === 0 ? 'main' : `worker ${threadOf(f)}`;
    const perRequest = rows.map((r) => ({ ...r, usPerRequest: (r.selfMs / done) * 1000 }));
    threads.push({
      thread,
      usPerRequest: (totalMs / done) * 1000,
      ...(threadOf(f) === 0 || perRequest.length === 0 ? {} : { top: perRequest.slice(0, WORKER_TOP) }),
    });
    if (threadOf(f) === 0) {
      top = perRequest;
      const modules = await selfTimeByModule(path.join(profDir, f), root, { ...window, originUs });
      byModule = modules.slice(0, 15).map((m) => ({ module: m.module, share: m.share, usPerRequest: (m.selfMs / done) * 1000 }));
    }
  }
  return { rps: done / PROFILE_SECONDS, cpuUsPerRequest: (cpu / done) * 1e6, top, byModule, threads };
}

async function main() {
  const sim = await forkTs(path.join(here, 'support/sim-process.ts'), [JSON.stringify({ completionTokens: 16 })]);
  defer('stop the simulated provider', () => sim.child.disconnect());
  const simUrl: string = sim.message.url;
  const bare = await forkTs(path.join(here, 'support/bare-proxy.ts'), [simUrl]);
  defer('stop the bare proxy', () => bare.child.kill());
  const floor = await forkTs(path.join(here, 'support/floor-proxy.ts'), [simUrl]);
  defer('stop the floor proxy', () => floor.child.kill());
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-'));
  defer('remove the data dir', () => rm(dataDir, { recursive: true, force: true }));
  const configFile = await writeSimConfig(dataDir, simUrl);
  // runTollgate passes only PATH and HOME from this process: the embedded arm stays embedded
  // even when DATABASE_URL is set here.
  const env = {
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_CONFIG: configFile,
    TOLLGATE_LOG_LEVEL: 'warn',
    // Experiments: node flags for both Tollgate arms (not the profiled instance).
    ...(process.env.BENCH_NODE_ARGS ? { NODE_ARGS: process.env.BENCH_NODE_ARGS } : {}),
  };
  const tollgate = await startTollgateProcess(env, BUILT);
  defer('stop Tollgate (embedded stores)', () => stopTollgate(tollgate));
  const secret = await createKey(env);

  // ── the external-stores arm: same config, its own data dir, ClickHouse over HTTP, PostgreSQL ──
  let ext: { proc: ServerProcess; chPid: number; secret: string; postgres: string } | null = null;
  if (EXTERNAL_DB) {
    const extDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-ext-'));
    defer("remove the external arm's dir", () => rm(extDir, { recursive: true, force: true }));
    const db = await scratchDatabase(EXTERNAL_DB);
    defer(`drop the scratch database ${db.name}`, () => db.drop());
    const ch = await startClickHouseHttp(path.join(extDir, 'clickhouse-http'));
    defer('close the ClickHouse endpoint', () => ch.close());
    const extEnv = { ...env, TOLLGATE_DATA_DIR: path.join(extDir, 'data'), CLICKHOUSE_URL: ch.url, DATABASE_URL: db.url };
    const proc = await startTollgateProcess(extEnv, BUILT);
    defer('stop Tollgate (external stores)', () => stopTollgate(proc));
    ext = { proc, chPid: ch.child.pid!, secret: await createKey(extEnv), postgres: `scratch database ${db.name} on ${new URL(db.url).host}` };
  }

  const bases = perArm((a) => {
    if (a === 'direct') return new URL(simUrl);
    if (a === 'bare') return new URL(`http://127.0.0.1:${bare.message.port}/v1`);
    if (a === 'floor') return new URL(`http://127.0.0.1:${floor.message.port}/v1`);
    return new URL(`${(a === 'tollgate' ? tollgate : ext!.proc).url}/v1`);
  }, ARMS_WITH_FLOOR);
  const pools = perArm((a) => new Pool(bases[a].origin, { connections: 64 }), ARMS_WITH_FLOOR);
  defer('close the client pools', () => Promise.all(ARMS_WITH_FLOOR.map((a) => pools[a].close())));
  const headers = perArm(
    (a) => ({ 'content-type': 'application/json', authorization: `Bearer ${a === 'tollgate-ext' ? ext!.secret : secret}` }),
    ARMS_WITH_FLOOR,
  );
  const jsonBody = (arm: Arm) =>
    JSON.stringify({ model: isTollgate(arm) ? 'chat-default' : 'sim-chat', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }] });
  const streamBody = (arm: Arm) =>
    JSON.stringify({ model: isTollgate(arm) ? 'chat-default' : 'sim-chat', stream: true, messages: [{ role: 'user', content: 'Stream to the benchmark.' }] });

  async function once(arm: Arm): Promise<number> {
    const t0 = performance.now();
    const res = await pools[arm].request({ method: 'POST', path: `${bases[arm].pathname}/chat/completions`, headers: headers[arm], body: jsonBody(arm) });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`${arm}: HTTP ${res.statusCode}`);
    return performance.now() - t0;
  }

  async function streamOnce(arm: Arm): Promise<{ ttft: number; events: number }> {
    const t0 = performance.now();
    const res = await pools[arm].request({ method: 'POST', path: `${bases[arm].pathname}/chat/completions`, headers: headers[arm], body: streamBody(arm) });
    let ttft = -1;
    let text = '';
    for await (const chunk of res.body) {
      const s = chunk.toString();
      if (ttft < 0 && s.includes('"content"')) ttft = performance.now() - t0;
      text += s;
    }
    const events = text.split('\n\n').filter((e) => e.startsWith('data: {')).length;
    return { ttft, events };
  }

  /**
   * Tollgate (embedded stores) answering the same question in each client protocol, with the
   * same output limit (Messages requires one), so the upstream is asked the same thing.
   */
  const protocols = {
    chat: {
      path: '/v1/chat/completions',
      body: JSON.stringify({ model: 'chat-default', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello to the benchmark.' }] }),
    },
    // store: false, so the number is the translation's cost, not the stored response's write.
    responses: {
      path: '/v1/responses',
      body: JSON.stringify({ model: 'chat-default', input: 'Say hello to the benchmark.', max_output_tokens: 64, store: false }),
    },
    messages: {
      path: '/v1/messages',
      body: JSON.stringify({ model: 'chat-default', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello to the benchmark.' }] }),
    },
  };
  type Protocol = keyof typeof protocols;
  async function protocolOnce(protocol: Protocol): Promise<number> {
    const t0 = performance.now();
    const res = await pools.tollgate.request({ method: 'POST', path: protocols[protocol].path, headers: headers.tollgate, body: protocols[protocol].body });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`tollgate ${protocol}: HTTP ${res.statusCode}`);
    return performance.now() - t0;
  }

  // ── memory at rest: each proxy process after its start, before any proxied request ──
  const rssAtStart: Partial<Record<ProxyArm, number>> = {
    bare: rssMb(bare.child.pid!),
    floor: rssMb(floor.child.pid!),
    tollgate: rssMb(tollgate.child.pid!),
    ...(ext ? { 'tollgate-ext': rssMb(ext.proc.child.pid!) } : {}),
  };

  // ── warm-up ──
  for (const arm of ARMS_WITH_FLOOR) for (let i = 0; i < WARMUP; i++) await once(arm);

  const pids: Partial<Record<Arm, number>> = {
    bare: bare.child.pid!,
    floor: floor.child.pid!,
    tollgate: tollgate.child.pid!,
    ...(ext ? { 'tollgate-ext': ext.proc.child.pid! } : {}),
  };

  // ── latency at concurrency 1, interleaved rounds ──
  // With each proxy's main-thread CPU over its rounds: at c=1 that thread's work is the
  // request's critical path, so Tollgate − floor here is what its pipeline adds to the p50.
  const lat = perArm((): number[] => [], ARMS_WITH_FLOOR);
  const c1MainSeconds = perArm(() => 0, ARMS_WITH_FLOOR);
  for (let round = 0; round < LAT_ROUNDS; round++) {
    for (const arm of ARMS_WITH_FLOOR) {
      const pid = pids[arm];
      const main0 = pid ? mainThreadCpuSeconds(pid) : 0;
      for (let i = 0; i < LAT_PER_ROUND; i++) lat[arm].push(await once(arm));
      if (pid) c1MainSeconds[arm] += mainThreadCpuSeconds(pid) - main0;
    }
  }
  const c1MainUsPerRequest = Object.fromEntries(
    ARMS_WITH_FLOOR.filter((a) => pids[a]).map((a) => [a, (c1MainSeconds[a] / (LAT_ROUNDS * LAT_PER_ROUND)) * 1e6]),
  ) as Partial<Record<Arm, number>>;
  const latStats = perArm((a) => {
    const s = [...lat[a]].sort((x, y) => x - y);
    return { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length };
  }, ARMS_WITH_FLOOR);

  // ── the same at concurrency 1 per client protocol, interleaved ──
  const protocolNames = Object.keys(protocols) as Protocol[];
  const protoLat = Object.fromEntries(protocolNames.map((p) => [p, [] as number[]])) as Record<Protocol, number[]>;
  for (const p of protocolNames) for (let i = 0; i < WARMUP; i++) await protocolOnce(p);
  for (let round = 0; round < LAT_ROUNDS; round++) {
    for (const p of protocolNames) for (let i = 0; i < LAT_PER_ROUND; i++) protoLat[p].push(await protocolOnce(p));
  }
  const protoStats = Object.fromEntries(
    protocolNames.map((p) => {
      const s = [...protoLat[p]].sort((x, y) => x - y);
      return [p, { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length, p50OverChatMs: 0 }];
    }),
  ) as Record<Protocol, { p50: number; p99: number; n: number; p50OverChatMs: number }>;
  for (const p of protocolNames) protoStats[p].p50OverChatMs = protoStats[p].p50 - protoStats.chat.p50;

  // ── throughput at fixed concurrency, interleaved ──
  const rps = perArm((): number[] => [], ARMS_WITH_FLOOR);
  const cpuPer1k = perArm((): number[] => [], ARMS_WITH_FLOOR);
  const faultsPerRequest = perArm((): number[] => [], ARMS_WITH_FLOOR);
  const threadUs = perArm(() => ({ main: [] as number[], node: [] as number[], engine: [] as number[] }));
  const rssMax = perArm(() => 0, ARMS_WITH_FLOOR);
  /** Each Tollgate arm's V8 heap when its max RSS was sampled: how much of the RSS is JS. */
  const heapAtRssMax = perArm((): Awaited<ReturnType<typeof v8HeapMb>> | null => null);
  let chRssMax = 0;
  for (let round = 0; round < TP_ROUNDS; round++) {
    for (const arm of ARMS_WITH_FLOOR) {
      const pid = arm !== 'direct' ? pids[arm]! : 0;
      const cpu0 = pid ? cpuSeconds(pid) : 0;
      const faults0 = pid ? minorFaults(pid) : 0;
      const threads0 = isTollgate(arm) ? cpuByThreadGroup(pid) : null;
      let done = 0;
      const end = performance.now() + TP_SECONDS * 1000;
      await Promise.all(
        Array.from({ length: TP_CONCURRENCY }, async () => {
          while (performance.now() < end) {
            await once(arm);
            done++;
          }
        }),
      );
      rps[arm].push(done / TP_SECONDS);
      if (pid) {
        cpuPer1k[arm].push(((cpuSeconds(pid) - cpu0) / done) * 1000);
        faultsPerRequest[arm].push((minorFaults(pid) - faults0) / done);
      }
      if (threads0) {
        const threads1 = cpuByThreadGroup(pid);
        // The kernel ticks the process total and each thread apart: with no engine threads the
        // rest can come out a tick below 0.
        for (const g of ['main', 'node', 'engine'] as const) threadUs[arm][g].push(Math.max(0, ((threads1[g] - threads0[g]) / done) * 1e6));
      }
      if (pid && rssMb(pid) > rssMax[arm]) {
        rssMax[arm] = rssMb(pid);
        if (isTollgate(arm)) heapAtRssMax[arm] = await v8HeapMb(bases[arm].origin);
      }
      // The endpoint takes tollgate-ext's receipt batches, which may land after its round.
      if (ext) chRssMax = Math.max(chRssMax, rssMb(ext.chPid));
    }
  }

  // ── streaming TTFT at concurrency 1, interleaved ──
  const ttft = perArm((): number[] => []);
  const events = perArm((): number[] => []);
  for (let round = 0; round < LAT_ROUNDS; round++) {
    for (const arm of ARMS) {
      for (let i = 0; i < 50; i++) {
        const r = await streamOnce(arm);
        ttft[arm].push(r.ttft);
        events[arm].push(r.events);
      }
    }
  }
  // ── the receipt signature's own cost: one Ed25519 signature over a real receipt ──
  const signatureUs = await measureSignature(pools.tollgate, headers.tollgate, jsonBody('tollgate'));

  // ── where the Tollgate arm's CPU goes: a fresh instance under --cpu-prof, same load ──
  const profile = await profileTollgate(configFile, () => jsonBody('tollgate'), TP_CONCURRENCY);
  // …and at c=1, where the added latency is measured: every request runs on an idle loop.
  const profileC1 = await profileTollgate(configFile, () => jsonBody('tollgate'), 1);

  const ttftStats = perArm((a) => median(ttft[a]));
  /** Median µs per request of each thread group (main / other Node threads / chDB engine). */
  const byThread = (arm: Arm) => ({ main: median(threadUs[arm].main), node: median(threadUs[arm].node), engine: median(threadUs[arm].engine) });
  const rpsMedian = perArm((a) => median(rps[a]), ARMS_WITH_FLOOR);

  /**
   * Where a Tollgate arm's RSS under load comes from: its RSS at start (modules, schema, the
   * stores' clients), its V8 heap when the max was sampled (committed, and used of that), and
   * the bare proxy's and the floor's RSS under the same load.
   */
  const memoryOf = (arm: 'tollgate' | 'tollgate-ext') => ({
    rssAtStart: rssAtStart[arm]!,
    rssUnderLoad: rssMax[arm],
    v8HeapAtMax: heapAtRssMax[arm],
    bareRssUnderLoad: rssMax.bare,
    floorRssUnderLoad: rssMax.floor,
  });

  const externalStores = ext
    ? {
        clickhouse: 'CLICKHOUSE_URL → test-only ClickHouse HTTP endpoint over chDB (test/faults/clickhouse-http.ts), its own process',
        postgres: `DATABASE_URL → ${ext.postgres}, dropped at the end`,
        latencyC1Ms: latStats['tollgate-ext'],
        addedLatencyMs: { p50: latStats['tollgate-ext'].p50 - latStats.direct.p50, p99: latStats['tollgate-ext'].p99 - latStats.direct.p99 },
        throughputRps: rpsMedian['tollgate-ext'],
        throughputRatioVsBare: rpsMedian['tollgate-ext'] / rpsMedian.bare,
        streamTtftMs: ttftStats['tollgate-ext'],
        streamAddedTtftMs: ttftStats['tollgate-ext'] - ttftStats.direct,
        streamEventsPerResponse: median(events['tollgate-ext']),
        cpuSecondsPer1k: median(cpuPer1k['tollgate-ext']),
        cpuUsPerRequestByThread: byThread('tollgate-ext'),
        cpuRatioVsBare: median(cpuPer1k['tollgate-ext']) / median(cpuPer1k.bare),
        /** Max VmRSS of the Tollgate process over the throughput rounds. */
        tollgateRssMb: rssMax['tollgate-ext'],
        memoryMb: memoryOf('tollgate-ext'),
        /** Info: max VmRSS of the ClickHouse endpoint process, sampled after every throughput round. */
        clickhouseEndpointRssMb: chRssMax,
      }
    : null;

  const results = {
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, cpu: os.cpus()[0]?.model },
    latencyC1Ms: baseOnly(latStats),
    addedLatencyMs: { p50: latStats.tollgate.p50 - latStats.direct.p50, p99: latStats.tollgate.p99 - latStats.direct.p99 },
    bareAddedLatencyMs: { p50: latStats.bare.p50 - latStats.direct.p50, p99: latStats.bare.p99 - latStats.direct.p99 },
    /** What Tollgate's own server and upstream client add with an empty handler, c=1: the latency floor of this design. */
    floorAddedLatencyMs: { p50: latStats.floor.p50 - latStats.direct.p50, p99: latStats.floor.p99 - latStats.direct.p99 },
    /** Main-thread CPU (utime + stime) per request over the c=1 rounds, per proxy process. */
    c1MainThreadCpuUsPerRequest: c1MainUsPerRequest,
    throughputRps: baseOnly(rpsMedian),
    throughputRatioVsBare: rpsMedian.tollgate / rpsMedian.bare,
    streamTtftMs: baseOnly(ttftStats),
    streamAddedTtftMs: ttftStats.tollgate - ttftStats.direct,
    streamEventsPerResponse: baseOnly(perArm((a) => median(events[a]))),
    cpuSecondsPer1k: { bare: median(cpuPer1k.bare), tollgate: median(cpuPer1k.tollgate) },
    /** CPU time of all the process's threads (/proc utime + stime) per request, c=32. */
    cpuUsPerRequest: Object.fromEntries(ARMS_WITH_FLOOR.filter((a) => a !== 'direct').map((a) => [a, median(cpuPer1k[a]) * 1000])),
    /** Tollgate's server and upstream client with an empty handler (bench/support/floor-proxy.ts): the transport's floor. */
    floor: { throughputRps: rpsMedian.floor, cpuUsPerRequest: median(cpuPer1k.floor) * 1000, throughputRatioVsBare: rpsMedian.floor / rpsMedian.bare },
    cpuRatioVsBare: median(cpuPer1k.tollgate) / median(cpuPer1k.bare),
    /** Minor page faults per request (all threads, /proc minflt), c=32: memory mapped in on first touch. */
    minorFaultsPerRequest: Object.fromEntries(ARMS_WITH_FLOOR.filter((a) => a !== 'direct').map((a) => [a, median(faultsPerRequest[a])])),
    /** The Tollgate arm's CPU per request by thread group: main (event loop), other Node threads (receipt worker, GC, libuv), engine (chDB). */
    cpuUsPerRequestByThread: byThread('tollgate'),
    /** One Ed25519 signature over a real receipt's RFC 8785 JSON, in this process (median of 2000). */
    receiptSignatureUs: signatureUs,
    /** Which Ed25519 implementation signed (src/receipts/ed25519.ts). */
    receiptSignatureBy: ed25519Implementation(),
    /** The profiled instance's throughput and CPU per request (slower than unprofiled: the profiler samples). */
    profile: { rps: profile.rps, cpuUsPerRequest: profile.cpuUsPerRequest, threads: profile.threads, file: 'bench/results/proxy-profile.json' },
    /** The same at c=1 (its tables are `c1` in proxy-profile.json). */
    profileC1: { rps: profileC1.rps, cpuUsPerRequest: profileC1.cpuUsPerRequest, threads: profileC1.threads },
    tollgateRssMb: rssMax.tollgate,
    memoryMb: memoryOf('tollgate'),
    /** Tollgate (embedded) at c=1 per client protocol; p50OverChatMs: what translation adds. */
    protocolLatencyMs: protoStats,
    concurrency: TP_CONCURRENCY,
    targets: {
      addedP50Ms: 0.4,
      addedP99Ms: 1,
      throughputRatio: 0.6,
      cpuRatio: 2,
      streamAddedTtftMs: 1,
      rssMbEmbedded: 400,
      rssMbExternal: 200,
      protocolP50OverChatMs: 0.05,
    },
    /** The tollgate-ext arm (ClickHouse over HTTP, PostgreSQL); null when it was skipped. */
    externalStores,
    ...(externalStores ? {} : { externalStoresSkipped: 'DATABASE_URL not set (the external-stores arm needs a PostgreSQL server for its scratch database)' }),
  };

  const f = (n: number) => n.toFixed(3);
  const x = results.externalStores;
  const memoryRow = (m: ReturnType<typeof memoryOf>): [string, string, string] => [
    '  at start / V8 heap at the max (used) / bare / floor',
    `${m.rssAtStart.toFixed(0)} / ${m.v8HeapAtMax?.committed.toFixed(0)} (${m.v8HeapAtMax?.used.toFixed(0)}) / ${m.bareRssUnderLoad.toFixed(0)} / ${m.floorRssUnderLoad.toFixed(0)} MB`,
    '',
  ];
  const names = x ? 'direct / bare / tollgate / tollgate-ext' : 'direct / bare / tollgate';
  const rows: Array<[string, string, string]> = [
    ['added latency p50 (c=1), embedded stores', `${f(results.addedLatencyMs.p50)} ms`, '≤ 0.4 ms'],
    ['added latency p99 (c=1), embedded stores', `${f(results.addedLatencyMs.p99)} ms`, '≤ 1 ms'],
    ...(x
      ? ([
          ['added latency p50 (c=1), external stores', `${f(x.addedLatencyMs.p50)} ms`, '≤ 0.4 ms'],
          ['added latency p99 (c=1), external stores', `${f(x.addedLatencyMs.p99)} ms`, '≤ 1 ms'],
        ] as Array<[string, string, string]>)
      : []),
    ['bare proxy added p50 / p99', `${f(results.bareAddedLatencyMs.p50)} / ${f(results.bareAddedLatencyMs.p99)} ms`, '(reference)'],
    ['floor (empty handler) added p50 / p99', `${f(results.floorAddedLatencyMs.p50)} / ${f(results.floorAddedLatencyMs.p99)} ms`, '(reference)'],
    [
      `main-thread CPU per request at c=1, bare / floor / ${x ? 'tollgate / tollgate-ext' : 'tollgate'}`,
      `${(['bare', 'floor', 'tollgate', ...(x ? ['tollgate-ext'] : [])] as ProxyArm[]).map((a) => (c1MainUsPerRequest[a] ?? 0).toFixed(0)).join(' / ')} µs`,
      '(reference)',
    ],
    [`throughput c=${TP_CONCURRENCY} ${names}`, `${ARMS.map((a) => Math.round(rpsMedian[a])).join(' / ')} rps`, ''],
    [
      'floor (Tollgate server + upstream client, empty handler)',
      `${Math.round(rpsMedian.floor)} rps, ${(median(cpuPer1k.floor) * 1000).toFixed(0)} µs CPU per request`,
      '(reference)',
    ],
    ['throughput vs bare proxy, embedded stores', `${results.throughputRatioVsBare.toFixed(2)}×`, '≥ 0.6×'],
    ...(x ? ([['throughput vs bare proxy, external stores', `${x.throughputRatioVsBare.toFixed(2)}×`, '≥ 0.6×']] as Array<[string, string, string]>) : []),
    ['stream added TTFT (median), embedded stores', `${f(results.streamAddedTtftMs)} ms`, '≤ 1 ms'],
    ...(x ? ([['stream added TTFT (median), external stores', `${f(x.streamAddedTtftMs)} ms`, '≤ 1 ms']] as Array<[string, string, string]>) : []),
    [
      `stream events ${names.replace('bare / ', '')}`,
      ARMS.filter((a) => a !== 'bare')
        .map((a) => median(events[a]))
        .join(' / '),
      'one for one',
    ],
    [
      `CPU µs per request ${names.replace('direct / ', '')}`,
      ARMS.filter((a) => a !== 'direct')
        .map((a) => (median(cpuPer1k[a]) * 1000).toFixed(0))
        .join(' / '),
      '',
    ],
    ['CPU per request, tollgate / bare', `${results.cpuRatioVsBare.toFixed(2)}×`, '≤ 2×'],
    [
      `minor page faults per request ${names.replace('direct / ', '')} / floor`,
      [...ARMS, 'floor' as const]
        .filter((a) => a !== 'direct')
        .map((a) => results.minorFaultsPerRequest[a]!.toFixed(2))
        .join(' / '),
      '',
    ],
    ...ARMS.filter(isTollgate).map((a): [string, string, string] => {
      const t = byThread(a);
      return [`  ${a}: main / other Node threads / chDB engine`, `${t.main.toFixed(0)} / ${t.node.toFixed(0)} / ${t.engine.toFixed(0)} µs`, ''];
    }),
    ['  of which: one receipt signature (Ed25519)', `${results.receiptSignatureUs.toFixed(1)} µs`, `(${results.receiptSignatureBy}, in the segment worker)`],
    ['tollgate RSS under load, embedded stores', `${rssMax.tollgate.toFixed(0)} MB`, '≤ 400 MB'],
    memoryRow(results.memoryMb),
    ...protocolNames
      .filter((p) => p !== 'chat')
      .map((p): [string, string, string] => [
        `${protocols[p].path} p50 over chat (c=1)`,
        `${f(protoStats[p].p50OverChatMs)} ms (${f(protoStats[p].p50)} vs ${f(protoStats.chat.p50)})`,
        '≤ 0.05 ms',
      ]),
    ...(x
      ? ([
          ['tollgate RSS under load, external stores', `${x.tollgateRssMb.toFixed(0)} MB`, '≤ 200 MB'],
          memoryRow(x.memoryMb),
          ['ClickHouse test endpoint RSS (chDB)', `${x.clickhouseEndpointRssMb.toFixed(0)} MB`, '(info)'],
        ] as Array<[string, string, string]>)
      : ([['external stores arm (tollgate-ext)', 'skipped', 'DATABASE_URL not set']] as Array<[string, string, string]>)),
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\nproxy benchmark (${results.machine.cores} cores, node ${process.version})\n`);
  for (const [k, v, t] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v.padEnd(28)} ${t}\n`);
  const printRows = (rows: Array<{ share: number; usPerRequest: number; function: string; location: string }>) => {
    for (const r of rows)
      process.stdout.write(`  ${r.share.toFixed(1).padStart(5)} %  ${r.usPerRequest.toFixed(1).padStart(6)} µs  ${r.function}  ${r.location}\n`);
  };
  const printProfile = (p: ProfileResult, concurrency: number, workers: boolean) => {
    process.stdout.write(
      `\ntop ${p.top.length} functions by self time, Tollgate main thread under c=${concurrency} (${p.rps.toFixed(0)} rps profiled; µs per request)\n`,
    );
    printRows(p.top);
    process.stdout.write(`\nthe same samples by module (main thread, c=${concurrency})\n`);
    printRows(p.byModule.map((m) => ({ ...m, function: m.module, location: '' })));
    process.stdout.write(`  threads: ${p.threads.map((t) => `${t.thread} ${t.usPerRequest.toFixed(0)} µs/req`).join(', ')}\n`);
    for (const t of workers ? p.threads.filter((t) => t.top) : []) {
      process.stdout.write(`\ntop ${t.top!.length} functions by self time, Tollgate ${t.thread} (share of its own time; µs per request)\n`);
      printRows(t.top!);
    }
  };
  printProfile(profile, TP_CONCURRENCY, true);
  printProfile(profileC1, 1, false);
  const out = path.join(here, 'results', 'proxy.json');
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(results, null, 2));
  await writeFile(
    path.join(here, 'results', 'proxy-profile.json'),
    JSON.stringify({ date: results.date, concurrency: TP_CONCURRENCY, seconds: PROFILE_SECONDS, ...profile, c1: profileC1 }, null, 2),
  );
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), out)}\n`);
}

main()
  .finally(() => cleanups.run())
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
