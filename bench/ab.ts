// A/B of two builds of Tollgate on one noisy machine (`npm run bench:ab`, not in CI).
//
// Whole bench runs of the same code moved the bare proxy's CPU per request by ±30 % from one run
// to the next on a shared 2-core VM, so "before" and "after" in separate runs say little. Here
// both builds run at once, each in its own process in front of one simulated provider, and the
// c=32 load alternates between them in short rounds (the order flips every round): the machine's
// drift lands on both. Per round, each process's CPU per request (all threads, from /proc) and
// its requests per second; the verdict is the median of the per-round ratios B / A.
//
// AB_A: the root of the other checkout (built: `npm ci && npm run build` there, or a `git
// worktree` with node_modules linked); B is this one. Without AB_A both are this checkout, and
// AB_A_ENV / AB_B_ENV ("K=V K2=V2"; NODE_ARGS=--flag,--flag2 for node's own) make the difference:
// a V8 flag, glibc's MALLOC_ARENA_MAX, a TOLLGATE_ setting. AB_ARM=floor compares the floor
// proxies (bench/support/floor-proxy.ts: server + upstream client only) instead of whole
// Tollgates with embedded stores. AB_ROUNDS (20), AB_ROUND_SECONDS (2), AB_CONCURRENCY (32; 1 for
// the c=1 latency targets: each side's p50 and p99 over all its requests are printed); AB_STREAM=1
// asks for streamed answers, and the latency is then the time to the first chunk holding content
// (TTFT, as bench:proxy measures it; AB_CONCURRENCY=1 for its target). Each round also reads
// each process's RSS (its largest over the rounds is reported, with how much of it is mapped
// files). Writes bench/results/ab.json.
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { Cleanups, forkTs, writeSimConfig } from './support/processes.js';
import { cpuSeconds, machine, median, percentile, rssFileMb, rssMb } from './support/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT_B = path.resolve(here, '..');
const ROOT_A = process.env.AB_A ? path.resolve(process.env.AB_A) : ROOT_B;
/** "K=V K2=V2" → { K: 'V', K2: 'V2' } (a value may hold '=' but no space). */
const envList = (text = '') =>
  Object.fromEntries(
    text
      .split(' ')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  ) as Record<string, string>;
const EXTRA_ENV = { A: envList(process.env.AB_A_ENV), B: envList(process.env.AB_B_ENV) };
const ARM = process.env.AB_ARM === 'floor' ? 'floor' : 'tollgate';
const ROUNDS = Number(process.env.AB_ROUNDS ?? 20);
const ROUND_SECONDS = Number(process.env.AB_ROUND_SECONDS ?? 2);
const CONCURRENCY = Number(process.env.AB_CONCURRENCY ?? 32);
const STREAM = process.env.AB_STREAM === '1';
const REQUEST_PATH = '/v1/chat/completions';

interface Build {
  label: 'A' | 'B';
  root: string;
  child: ChildProcess;
  pool: Pool;
  headers: Record<string, string>;
  cpuUsPerRequest: number[];
  rps: number[];
  rssMb: number[];
  /** Every request's latency (ms; streamed: time to first content), all rounds: the c=1 targets are p50 and p99. */
  latenciesMs: number[];
}

const cleanups = new Cleanups('bench:ab');

/** Runs `bin/tollgate.js` of `root` with only `env` (and PATH, HOME), its stdout piped; env.NODE_ARGS are node's flags. */
function tollgateCli(root: string, args: string[], { NODE_ARGS, ...env }: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...(NODE_ARGS ? NODE_ARGS.split(',') : []), path.join(root, 'bin/tollgate.js'), ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

function output(child: ChildProcess, until: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d) => {
      text += d;
      const m = until.exec(text);
      if (m) resolve(m[1] ?? text);
    });
    child.once('exit', (code) => (until.test(text) ? resolve(text) : reject(new Error(`exited ${code} before /${until.source}/:\n${text}`))));
  });
}

async function startBuild(label: 'A' | 'B', root: string, simUrl: string): Promise<Build> {
  if (ARM === 'floor') {
    const child = fork(path.join(root, 'bench/support/floor-proxy.ts'), [simUrl], { execArgv: ['--import', 'tsx'], cwd: root });
    cleanups.defer(`stop floor ${label}`, () => child.kill());
    const { port } = await new Promise<{ port: number }>((resolve) => child.once('message', (m) => resolve(m as { port: number })));
    return runningBuild(label, root, child, `http://127.0.0.1:${port}`, { 'content-type': 'application/json' });
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), `tollgate-ab-${label}-`));
  cleanups.defer(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  const env = { TOLLGATE_DATA_DIR: path.join(dir, 'data'), TOLLGATE_CONFIG: await writeSimConfig(dir, simUrl), TOLLGATE_LOG_LEVEL: 'warn' };
  const keys = tollgateCli(root, ['keys', 'create', '--team', 'ab', '--json'], env);
  const secret = JSON.parse((await output(keys, /(\{[^\n]*"secret"[^\n]*\})\n/)).trim()).secret as string;
  const child = tollgateCli(root, ['start'], { ...env, ...EXTRA_ENV[label], TOLLGATE_PORT: '0', TOLLGATE_HOST: '127.0.0.1' });
  // Nothing of its state is kept: no graceful drain to wait for.
  cleanups.defer(`stop Tollgate ${label}`, () => child.kill('SIGKILL'));
  const url = await output(child, /(http:\/\/127\.0\.0\.1:\d+)/);
  return runningBuild(label, root, child, url, { 'content-type': 'application/json', authorization: `Bearer ${secret}` });
}

function runningBuild(label: 'A' | 'B', root: string, child: ChildProcess, url: string, headers: Record<string, string>): Build {
  return { label, root, child, pool: new Pool(url, { connections: 64 }), headers, cpuUsPerRequest: [], rps: [], rssMb: [], latenciesMs: [] };
}

async function load(build: Build, body: string, seconds: number, record = true): Promise<number> {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        const res = await build.pool.request({ method: 'POST', path: REQUEST_PATH, headers: build.headers, body });
        let latency = -1;
        if (STREAM) {
          for await (const chunk of res.body) if (latency < 0 && chunk.toString().includes('"content"')) latency = performance.now() - t0;
        } else {
          await res.body.arrayBuffer();
          latency = performance.now() - t0;
        }
        if (res.statusCode !== 200 || latency < 0) throw new Error(`${build.label}: HTTP ${res.statusCode}${latency < 0 ? ', no content' : ''}`);
        if (record) build.latenciesMs.push(latency);
        done++;
      }
    }),
  );
  return done;
}

/** p50 and p99 of a side's request latencies (client to Tollgate to the simulator and back). */
function latencyOf(ms: number[]): { p50: number; p99: number } {
  const sorted = [...ms].sort((x, y) => x - y);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

async function main(): Promise<void> {
  // The floor proxies take no environment: only another checkout differs there.
  if (ROOT_A === ROOT_B && (ARM === 'floor' || (!process.env.AB_A_ENV && !process.env.AB_B_ENV)))
    throw new Error('nothing to compare: set AB_A (another built checkout), or AB_A_ENV / AB_B_ENV for whole Tollgates');
  const sim = await forkTs(path.join(here, 'support/sim-process.ts'), [JSON.stringify({ completionTokens: 16 })]);
  cleanups.defer('stop the simulated provider', () => sim.child.disconnect());
  const builds = [await startBuild('A', ROOT_A, sim.message.url), await startBuild('B', ROOT_B, sim.message.url)];
  const body = JSON.stringify({
    model: ARM === 'floor' ? 'sim-chat' : 'chat-default',
    ...(STREAM && { stream: true }),
    messages: [{ role: 'user', content: 'Say hello to the benchmark.' }],
  });
  for (const b of builds) await load(b, body, 2, false); // warm-up
  for (let round = 0; round < ROUNDS; round++) {
    for (const b of round % 2 === 0 ? builds : [...builds].reverse()) {
      const cpu0 = cpuSeconds(b.child.pid!);
      const done = await load(b, body, ROUND_SECONDS);
      b.cpuUsPerRequest.push(((cpuSeconds(b.child.pid!) - cpu0) / done) * 1e6);
      b.rps.push(done / ROUND_SECONDS);
      b.rssMb.push(rssMb(b.child.pid!));
    }
  }
  const [a, b] = builds as [Build, Build];
  const ratio = (xs: number[], ys: number[]) => median(ys.map((y, i) => y / xs[i]!));
  const result = {
    date: new Date().toISOString(),
    machine: machine(),
    arm: ARM,
    a: { root: ROOT_A, env: EXTRA_ENV.A },
    b: { root: ROOT_B, env: EXTRA_ENV.B },
    rounds: ROUNDS,
    concurrency: CONCURRENCY,
    stream: STREAM,
    roundSeconds: ROUND_SECONDS,
    cpuUsPerRequest: { a: median(a.cpuUsPerRequest), b: median(b.cpuUsPerRequest), bOverA: ratio(a.cpuUsPerRequest, b.cpuUsPerRequest) },
    rps: { a: median(a.rps), b: median(b.rps), bOverA: ratio(a.rps, b.rps) },
    latencyMs: { a: latencyOf(a.latenciesMs), b: latencyOf(b.latenciesMs) },
    rssMaxMb: { a: Math.max(...a.rssMb), b: Math.max(...b.rssMb) },
    rssFileMbAtEnd: { a: rssFileMb(a.child.pid!), b: rssFileMb(b.child.pid!) },
    perRound: { cpuUsPerRequest: { a: a.cpuUsPerRequest, b: b.cpuUsPerRequest }, rps: { a: a.rps, b: b.rps }, rssMb: { a: a.rssMb, b: b.rssMb } },
  };
  console.log(
    `A/B of ${ARM === 'floor' ? 'the floor proxies' : 'Tollgate (embedded stores)'}, ${STREAM ? 'streamed, ' : ''}${ROUNDS} rounds × ${ROUND_SECONDS} s, c=${CONCURRENCY}`,
  );
  console.log(`  A ${ROOT_A} ${JSON.stringify(EXTRA_ENV.A)}\n  B ${ROOT_B} ${JSON.stringify(EXTRA_ENV.B)}`);
  console.log('                          A          B          B / A (median of rounds)');
  console.log(
    `  CPU µs per request   ${result.cpuUsPerRequest.a.toFixed(1).padStart(8)}   ${result.cpuUsPerRequest.b.toFixed(1).padStart(8)}   ${result.cpuUsPerRequest.bOverA.toFixed(3)}`,
  );
  console.log(`  requests per second  ${result.rps.a.toFixed(0).padStart(8)}   ${result.rps.b.toFixed(0).padStart(8)}   ${result.rps.bOverA.toFixed(3)}`);
  for (const p of ['p50', 'p99'] as const)
    console.log(
      `  ${STREAM ? 'TTFT' : 'latency'} ${p} ms${STREAM ? '   ' : ''}       ${result.latencyMs.a[p].toFixed(3).padStart(8)}   ${result.latencyMs.b[p].toFixed(3).padStart(8)}   ${(result.latencyMs.b[p] - result.latencyMs.a[p]).toFixed(3)} (B − A, all requests)`,
    );
  console.log(
    `  RSS max MB           ${result.rssMaxMb.a.toFixed(0).padStart(8)}   ${result.rssMaxMb.b.toFixed(0).padStart(8)}   (mapped files at the end: ${result.rssFileMbAtEnd.a.toFixed(0)} / ${result.rssFileMbAtEnd.b.toFixed(0)})`,
  );
  const file = path.join(here, 'results/ab.json');
  await writeFile(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
  for (const build of builds) await build.pool.close();
}

try {
  await main();
} finally {
  await cleanups.run();
}
