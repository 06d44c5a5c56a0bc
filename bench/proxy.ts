// npm run bench:proxy — three arms side by side, interleaved, in one process tree:
//   direct   → the simulated provider (its own process)
//   bare     → a 20-line undici pass-through proxy (its own process): the Node proxy limit
//   tollgate → Tollgate with receipts on (its own process, embedded stores)
// Prints a table and writes bench/results/proxy.json. Ratios and differences are computed
// within one run, so a noisy shared machine moves all arms together.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { runTollgate, startTollgateProcess } from '../test/support/processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const LAT_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const LAT_PER_ROUND = 200;
// Smaller values only for smoke-testing the runner (BENCH_QUICK=1 npm run bench).
const TP_ROUNDS = Number(process.env.BENCH_TP_ROUNDS ?? 3);
const TP_SECONDS = Number(process.env.BENCH_TP_SECONDS ?? 4);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 300);
const TP_CONCURRENCY = 32;

type Arm = 'direct' | 'bare' | 'tollgate';
const ARMS: Arm[] = ['direct', 'bare', 'tollgate'];

function forkTs(file: string, args: string[]): Promise<{ child: ChildProcess; message: any }> {
  const child = fork(path.join(here, file), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve({ child, message }));
    child.once('exit', (code) => reject(new Error(`${file} exited ${code}`)));
  });
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100 Hz)
}
function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

async function main() {
  const sim = await forkTs('support/sim-process.ts', [JSON.stringify({ completionTokens: 16 })]);
  const simUrl: string = sim.message.url;
  const bare = await forkTs('support/bare-proxy.ts', [simUrl]);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-'));
  const configFile = path.join(dataDir, 'tollgate.yaml');
  await writeFile(
    configFile,
    `providers:\n  - { name: sim, kind: SIMULATED, baseUrl: "${simUrl}" }\nroutes:\n  - name: chat-default\n    strategy: PRIORITY\n    targets: [{ provider: sim, model: sim-chat }]\nprices:\n  - { provider: sim, model: sim-chat, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }\n`,
  );
  const env = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_CONFIG: configFile, TOLLGATE_LOG_LEVEL: 'warn' };
  const tollgate = await startTollgateProcess(env);
  const keyProc = runTollgate(['keys', 'create', '--team', 'bench', '--json'], env);
  await keyProc.exited;
  const secret: string = JSON.parse(keyProc.output().trim().split('\n').at(-1)!).secret;

  const bases: Record<Arm, URL> = {
    direct: new URL(simUrl),
    bare: new URL(`http://127.0.0.1:${bare.message.port}/v1`),
    tollgate: new URL(`${tollgate.url}/v1`),
  };
  const pools = Object.fromEntries(ARMS.map((a) => [a, new Pool(bases[a].origin, { connections: 64 })])) as Record<Arm, Pool>;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${secret}` };
  const jsonBody = (arm: Arm) => JSON.stringify({ model: arm === 'tollgate' ? 'chat-default' : 'sim-chat', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }] });
  const streamBody = (arm: Arm) => JSON.stringify({ model: arm === 'tollgate' ? 'chat-default' : 'sim-chat', stream: true, messages: [{ role: 'user', content: 'Stream to the benchmark.' }] });

  async function once(arm: Arm): Promise<number> {
    const t0 = performance.now();
    const res = await pools[arm].request({ method: 'POST', path: `${bases[arm].pathname}/chat/completions`, headers, body: jsonBody(arm) });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`${arm}: HTTP ${res.statusCode}`);
    return performance.now() - t0;
  }

  async function streamOnce(arm: Arm): Promise<{ ttft: number; events: number }> {
    const t0 = performance.now();
    const res = await pools[arm].request({ method: 'POST', path: `${bases[arm].pathname}/chat/completions`, headers, body: streamBody(arm) });
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

  // ── warm-up ──
  for (const arm of ARMS) for (let i = 0; i < WARMUP; i++) await once(arm);

  // ── latency at concurrency 1, interleaved rounds ──
  const lat: Record<Arm, number[]> = { direct: [], bare: [], tollgate: [] };
  for (let round = 0; round < LAT_ROUNDS; round++) {
    for (const arm of ARMS) for (let i = 0; i < LAT_PER_ROUND; i++) lat[arm].push(await once(arm));
  }
  const latStats = Object.fromEntries(
    ARMS.map((a) => {
      const s = [...lat[a]].sort((x, y) => x - y);
      return [a, { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length }];
    }),
  ) as Record<Arm, { p50: number; p99: number; n: number }>;

  // ── throughput at fixed concurrency, interleaved ──
  const rps: Record<Arm, number[]> = { direct: [], bare: [], tollgate: [] };
  const cpuPer1k: Record<'bare' | 'tollgate', number[]> = { bare: [], tollgate: [] };
  let rssMax = 0;
  const pids = { bare: bare.child.pid!, tollgate: tollgate.child.pid! };
  for (let round = 0; round < TP_ROUNDS; round++) {
    for (const arm of ARMS) {
      const cpu0 = arm !== 'direct' ? cpuSeconds(pids[arm]) : 0;
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
      if (arm !== 'direct') cpuPer1k[arm].push(((cpuSeconds(pids[arm]) - cpu0) / done) * 1000);
      if (arm === 'tollgate') rssMax = Math.max(rssMax, rssMb(pids.tollgate));
    }
  }

  // ── streaming TTFT at concurrency 1, interleaved ──
  const ttft: Record<Arm, number[]> = { direct: [], bare: [], tollgate: [] };
  const events: Record<Arm, number[]> = { direct: [], bare: [], tollgate: [] };
  for (let round = 0; round < LAT_ROUNDS; round++) {
    for (const arm of ARMS) {
      for (let i = 0; i < 50; i++) {
        const r = await streamOnce(arm);
        ttft[arm].push(r.ttft);
        events[arm].push(r.events);
      }
    }
  }
  const ttftStats = Object.fromEntries(ARMS.map((a) => [a, median(ttft[a])])) as Record<Arm, number>;

  const results = {
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, memoryGb: Math.round(os.totalmem() / 2 ** 30), node: process.version, cpu: os.cpus()[0]?.model },
    latencyC1Ms: latStats,
    addedLatencyMs: { p50: latStats.tollgate.p50 - latStats.direct.p50, p99: latStats.tollgate.p99 - latStats.direct.p99 },
    bareAddedLatencyMs: { p50: latStats.bare.p50 - latStats.direct.p50, p99: latStats.bare.p99 - latStats.direct.p99 },
    throughputRps: Object.fromEntries(ARMS.map((a) => [a, median(rps[a])])),
    throughputRatioVsBare: median(rps.tollgate) / median(rps.bare),
    streamTtftMs: ttftStats,
    streamAddedTtftMs: ttftStats.tollgate - ttftStats.direct,
    streamEventsPerResponse: Object.fromEntries(ARMS.map((a) => [a, median(events[a])])),
    cpuSecondsPer1k: { bare: median(cpuPer1k.bare), tollgate: median(cpuPer1k.tollgate) },
    tollgateRssMb: rssMax,
    concurrency: TP_CONCURRENCY,
    targets: { addedP50Ms: 0.4, addedP99Ms: 1, throughputRatio: 0.7, streamAddedTtftMs: 1, rssMb: 200 },
  };

  const f = (n: number) => n.toFixed(3);
  const rows: Array<[string, string, string]> = [
    ['added latency p50 (c=1)', `${f(results.addedLatencyMs.p50)} ms`, '≤ 0.4 ms'],
    ['added latency p99 (c=1)', `${f(results.addedLatencyMs.p99)} ms`, '≤ 1 ms'],
    ['bare proxy added p50 / p99', `${f(results.bareAddedLatencyMs.p50)} / ${f(results.bareAddedLatencyMs.p99)} ms`, '(reference)'],
    [`throughput c=${TP_CONCURRENCY} direct / bare / tollgate`, ARMS.map((a) => Math.round(results.throughputRps[a]!)).join(' / ') + ' rps', ''],
    ['throughput vs bare proxy', `${results.throughputRatioVsBare.toFixed(2)}×`, '≥ 0.7×'],
    ['stream added TTFT (median)', `${f(results.streamAddedTtftMs)} ms`, '≤ 1 ms'],
    ['stream events direct / tollgate', `${results.streamEventsPerResponse.direct} / ${results.streamEventsPerResponse.tollgate}`, 'one for one'],
    ['CPU-s per 1k req bare / tollgate', `${f(results.cpuSecondsPer1k.bare)} / ${f(results.cpuSecondsPer1k.tollgate)}`, ''],
    ['tollgate RSS under load', `${rssMax.toFixed(0)} MB`, '≤ 200 MB'],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  process.stdout.write(`\nproxy benchmark (${results.machine.cores} cores, node ${process.version})\n`);
  for (const [k, v, t] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v.padEnd(28)} ${t}\n`);
  const out = path.join(here, 'results', 'proxy.json');
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(results, null, 2));
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), out)}\n`);

  await Promise.all(ARMS.map((a) => pools[a].close()));
  tollgate.child.kill('SIGTERM');
  await tollgate.exited;
  bare.child.kill();
  sim.child.disconnect();
  await rm(dataDir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
