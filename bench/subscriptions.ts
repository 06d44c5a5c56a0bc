// npm run bench:subscriptions — live routing decisions under load.
//
//   sim       the simulated provider (its own process)
//   tollgate  Tollgate with receipts on (its own process, embedded stores)
//   subs      BENCH_SUBSCRIBERS graphql-ws subscribers, one connection each (their own process):
//             BENCH_UNFILTERED of them watch everything (ops dashboards), the rest are
//             spread over BENCH_TEAMS teams with filter { teamIds: [team] } (team dashboards)
//   load      this process: open-loop BENCH_RPS chat requests/s (2 decisions each: ATTEMPT,
//             SUCCESS) spread over the teams' keys
//
// Arms, interleaved for BENCH_ROUNDS rounds: `none` (no subscription open: the proxy builds
// no decision at all) and `subs` (all subscribers connected). Measured: the proxy's request
// latency in both arms (its added latency from subscriptions = subs − none), each event's
// delivery latency (receive time − the decision's `at`, same machine clock, ms resolution),
// and, per subscriber, events expected vs received (lost) and droppedBefore (buffer drops);
// Tollgate's extra CPU per delivery; and the CPU every other process on the machine used
// meanwhile (foreignCpuCores) and the steal time of the VM (stolenCpuCores): with only 2 cores,
// someone else's build makes every latency here a measure of waiting for a core, and the run
// says so.
// Prints a table and writes bench/results/subscriptions.json.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Client, createClient } from 'graphql-ws';
import { Pool } from 'undici';
import WebSocket from 'ws';
import { startTollgateProcess } from '../test/support/processes.js';
import { forkTs, writeSimConfig } from './support/processes.js';
import { cpuSeconds, percentile } from './support/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = (name: string, dflt: number) => Number(process.env[name] ?? dflt);
const SUBSCRIBERS = env('BENCH_SUBSCRIBERS', 200);
const UNFILTERED = env('BENCH_UNFILTERED', 10);
const TEAMS = env('BENCH_TEAMS', 20);
const RPS = env('BENCH_RPS', 500); // × 2 decisions = ~1000 decisions/s
const SECONDS = env('BENCH_SECONDS', 8);
const ROUNDS = env('BENCH_ROUNDS', 2);
/**
 * Load before each `subs` round is measured, after its subscribers connected. 200 websockets
 * connecting at once cost the event loop tens of ms, and frames waited 100–450 ms for their
 * write in the two seconds after (per-second p99 on a 2-core VM); from the third second on,
 * 25–60 ms. The target is the steady state: with one second of settling, the storm's second
 * second was part of the measurement and made its p99 on a slower machine.
 */
const SETTLE_SECONDS = env('BENCH_SETTLE_SECONDS', 3);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** CPU time of the whole machine (all cores) at 100 Hz: used by its processes, and stolen by the hypervisor. */
function machineCpuSeconds(): { busy: number; stolen: number } {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks as number[];
  return { busy: (user! + nice! + system! + irq! + softirq!) / 100, stolen: steal! / 100 };
}

// ── the subscribers' process ─────────────────────────────────────────────────────────────
interface SubSpec {
  team: string | null;
}
interface SubReport {
  latencies: number[];
  perSub: Array<{ team: string | null; received: number; droppedBefore: number; errors: number }>;
}

async function subscriberProcess(): Promise<void> {
  const { wsUrl, token, specs } = JSON.parse(process.argv[3]!) as { wsUrl: string; token: string; specs: SubSpec[] };
  let phase = '';
  let latencies: number[] = [];
  let clients: Client[] = [];
  let state: Array<{ team: string | null; seen: Set<string>; droppedBefore: number; errors: number }> = [];

  async function connect(): Promise<void> {
    state = specs.map((s) => ({ team: s.team, seen: new Set<string>(), droppedBefore: 0, errors: 0 }));
    let open = 0;
    clients = specs.map((spec, i) => {
      const client = createClient({
        url: wsUrl,
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${token}` },
        retryAttempts: 0,
        lazy: false,
        on: { connected: () => open++ },
      });
      const filter = spec.team ? `(filter: { teamIds: ["${spec.team}"] })` : '';
      client.subscribe<{ routingDecisions: { requestId: string; outcome: string; at: string; droppedBefore: number } }>(
        { query: `subscription { routingDecisions${filter} { requestId outcome at droppedBefore teamId route provider model attempt } }` },
        {
          next: (r) => {
            const d = r.data?.routingDecisions;
            if (!d) return void state[i]!.errors++;
            const now = Date.now();
            state[i]!.droppedBefore += d.droppedBefore;
            if (!d.requestId.startsWith(phase)) return;
            state[i]!.seen.add(`${d.requestId}:${d.outcome}`);
            latencies.push(now - Date.parse(d.at));
          },
          error: () => void state[i]!.errors++,
          complete: () => undefined,
        },
      );
      return client;
    });
    while (open < specs.length) await sleep(10);
  }

  process.on('message', async (msg: { cmd: string; phase?: string }) => {
    if (msg.cmd === 'connect') {
      await connect();
      process.send!({ ok: true });
    } else if (msg.cmd === 'phase') {
      phase = msg.phase!;
      latencies = [];
      for (const s of state) s.seen.clear();
      process.send!({ ok: true });
    } else if (msg.cmd === 'report') {
      const report: SubReport = {
        latencies,
        perSub: state.map((s) => ({ team: s.team, received: s.seen.size, droppedBefore: s.droppedBefore, errors: s.errors })),
      };
      process.send!(report);
    } else if (msg.cmd === 'disconnect') {
      await Promise.all(clients.map((c) => c.dispose()));
      clients = [];
      process.send!({ ok: true });
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true });
}

// ── the load generator / coordinator ─────────────────────────────────────────────────────
function ask<T = any>(child: ChildProcess, msg: object): Promise<T> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as T));
    child.send(msg);
  });
}

async function gql(url: string, token: string, query: string, variables: object): Promise<any> {
  const res = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await res.json()) as { data?: any; errors?: unknown };
  if (body.errors || !body.data) throw new Error(`GraphQL: ${JSON.stringify(body.errors)}`);
  return body.data;
}

async function main(): Promise<void> {
  const sim = await forkTs(path.join(here, 'support/sim-process.ts'), [JSON.stringify({ completionTokens: 16 })]);
  const simUrl: string = sim.message.url;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-subs-'));
  const configFile = await writeSimConfig(dataDir, simUrl);
  const adminToken = `bench-admin-${randomBytes(16).toString('hex')}`;
  const tollgate = await startTollgateProcess(
    {
      TOLLGATE_DATA_DIR: dataDir,
      TOLLGATE_CONFIG: configFile,
      TOLLGATE_LOG_LEVEL: 'warn',
      TOLLGATE_ADMIN_TOKEN: adminToken,
      ...(process.env.BENCH_NODE_ARGS ? { NODE_ARGS: process.env.BENCH_NODE_ARGS } : {}),
    },
    { built: true },
  ); // as deployed: dist/
  let subs: ChildProcess | null = null;
  try {
    // Teams and one key each, through the GraphQL API.
    const teams: Array<{ id: string; secret: string }> = [];
    for (let i = 0; i < TEAMS; i++) {
      const t = await gql(tollgate.url, adminToken, 'mutation($n: String!) { createTeam(input: { name: $n }) { id } }', { n: `bench-team-${i}` });
      const k = await gql(tollgate.url, adminToken, 'mutation($t: ID!) { createApiKey(input: { teamId: $t, name: "bench" }) { secret } }', {
        t: t.createTeam.id,
      });
      teams.push({ id: t.createTeam.id, secret: k.createApiKey.secret });
    }
    const specs: SubSpec[] = Array.from({ length: SUBSCRIBERS }, (_, i) => ({ team: i < UNFILTERED ? null : teams[(i - UNFILTERED) % TEAMS]!.id }));
    const wsUrl = `${tollgate.url.replace(/^http/, 'ws')}/graphql`;
    const forked = await forkTs(fileURLToPath(import.meta.url), ['subscribers', JSON.stringify({ wsUrl, token: adminToken, specs })]);
    subs = forked.child;

    const pool = new Pool(tollgate.url, { connections: 128 });
    const body = JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }] });

    /** Open loop: RPS requests/s for `seconds`, round-robin over the teams. */
    async function drive(phase: string, seconds: number) {
      const latencies: number[] = [];
      const perTeam = new Map<string, number>();
      let errors = 0;
      let n = 0;
      const inflight: Promise<void>[] = [];
      const tickMs = 10;
      const start = performance.now();
      while (performance.now() - start < seconds * 1000) {
        // Open loop on the clock: as many requests as are due by now, whatever the timer jitter.
        const due = Math.floor(((performance.now() - start) / 1000) * RPS);
        for (; n < due; ) {
          const team = teams[n % teams.length]!;
          const id = `${phase}-${n++}`;
          const t0 = performance.now();
          inflight.push(
            pool
              .request({
                method: 'POST',
                path: '/v1/chat/completions',
                headers: { 'content-type': 'application/json', authorization: `Bearer ${team.secret}`, 'x-request-id': id },
                body,
              })
              .then(async (res) => {
                await res.body.arrayBuffer();
                if (res.statusCode !== 200) errors++;
                else {
                  latencies.push(performance.now() - t0);
                  perTeam.set(team.id, (perTeam.get(team.id) ?? 0) + 1);
                }
              })
              .catch(() => void errors++),
          );
        }
        const next = start + (Math.floor((performance.now() - start) / tickMs) + 1) * tickMs;
        await sleep(Math.max(0, next - performance.now()));
      }
      await Promise.all(inflight);
      const _elapsed = (performance.now() - start) / 1000;
      return { latencies, perTeam, errors, sent: n, elapsed: seconds };
    }

    await drive('warmup', 2);

    type ArmName = 'none' | 'subs';
    const results: Record<
      ArmName,
      {
        proxy: number[];
        delivery: number[];
        sent: number;
        errors: number;
        seconds: number;
        expected: number;
        received: number;
        lostSubscribers: number;
        droppedBefore: number;
        subErrors: number;
        tollgateCpuSeconds: number;
        otherCpuSeconds: number;
        foreignCpuSeconds: number;
        stolenCpuSeconds: number;
      }
    > = {
      none: {
        proxy: [],
        delivery: [],
        sent: 0,
        errors: 0,
        seconds: 0,
        expected: 0,
        received: 0,
        lostSubscribers: 0,
        droppedBefore: 0,
        subErrors: 0,
        tollgateCpuSeconds: 0,
        otherCpuSeconds: 0,
        foreignCpuSeconds: 0,
        stolenCpuSeconds: 0,
      },
      subs: {
        proxy: [],
        delivery: [],
        sent: 0,
        errors: 0,
        seconds: 0,
        expected: 0,
        received: 0,
        lostSubscribers: 0,
        droppedBefore: 0,
        subErrors: 0,
        tollgateCpuSeconds: 0,
        otherCpuSeconds: 0,
        foreignCpuSeconds: 0,
        stolenCpuSeconds: 0,
      },
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const arm of ['none', 'subs'] as ArmName[]) {
        const phase = `r${round}${arm}`;
        if (arm === 'subs') {
          await ask(subs, { cmd: 'connect' });
          await drive(`w${phase}`, SETTLE_SECONDS); // connections settle; a different prefix: not counted
          await ask(subs, { cmd: 'phase', phase });
        }
        const cpu0 = cpuSeconds(tollgate.child.pid!);
        const other0 = cpuSeconds(subs.pid!) + cpuSeconds(sim.child.pid!) + cpuSeconds(process.pid);
        const machine0 = machineCpuSeconds();
        const r = await drive(phase, SECONDS);
        const res = results[arm];
        const tollgateCpu = cpuSeconds(tollgate.child.pid!) - cpu0;
        const otherCpu = cpuSeconds(subs.pid!) + cpuSeconds(sim.child.pid!) + cpuSeconds(process.pid) - other0;
        res.tollgateCpuSeconds += tollgateCpu;
        res.otherCpuSeconds += otherCpu;
        // Whatever else the machine ran meanwhile (other users' builds and tests): when it is
        // large the latencies above mostly measure waiting for a core, not Tollgate.
        const machine1 = machineCpuSeconds();
        res.foreignCpuSeconds += Math.max(0, machine1.busy - machine0.busy - tollgateCpu - otherCpu);
        res.stolenCpuSeconds += machine1.stolen - machine0.stolen;
        for (const x of r.latencies) res.proxy.push(x);
        res.sent += r.sent;
        res.errors += r.errors;
        res.seconds += r.elapsed;
        if (arm === 'subs') {
          // Let the last deliveries land: late is not lost. Wait until nothing more arrives.
          let rep = await ask<SubReport>(subs, { cmd: 'report' });
          for (let waited = 0; waited < 15_000; waited += 500) {
            await sleep(500);
            const again = await ask<SubReport>(subs, { cmd: 'report' });
            const count = (x: SubReport) => x.perSub.reduce((a, b) => a + b.received, 0);
            const settled = count(again) === count(rep);
            rep = again;
            if (settled) break;
          }
          for (const x of rep.latencies) res.delivery.push(x);
          const total = [...r.perTeam.values()].reduce((a, b) => a + b, 0);
          for (const s of rep.perSub) {
            const expected = 2 * (s.team ? (r.perTeam.get(s.team) ?? 0) : total);
            res.expected += expected;
            res.received += Math.min(s.received, expected);
            if (s.received < expected) res.lostSubscribers++;
            res.droppedBefore += s.droppedBefore;
            res.subErrors += s.errors;
          }
          await ask(subs, { cmd: 'disconnect' });
          await sleep(500);
        }
      }
    }
    await pool.close();

    const summary = Object.fromEntries(
      (['none', 'subs'] as ArmName[]).map((arm) => {
        const r = results[arm];
        const p = [...r.proxy].sort((a, b) => a - b);
        const d = [...r.delivery].sort((a, b) => a - b);
        return [
          arm,
          {
            requests: r.sent,
            requestErrors: r.errors,
            requestsPerSecond: r.sent / r.seconds,
            decisionsPerSecond: (2 * (r.sent - r.errors)) / r.seconds,
            proxyP50Ms: percentile(p, 50),
            proxyP99Ms: percentile(p, 99),
            deliveries: d.length,
            deliveryP50Ms: percentile(d, 50),
            deliveryP99Ms: percentile(d, 99),
            deliveryMaxMs: d.length ? d[d.length - 1] : NaN,
            expectedEvents: r.expected,
            lostEvents: r.expected - r.received,
            subscribersWithLoss: r.lostSubscribers,
            droppedBefore: r.droppedBefore,
            subscriptionErrors: r.subErrors,
            tollgateCpuCores: r.tollgateCpuSeconds / r.seconds,
            /** The load generator, the subscribers' process and the simulated provider, on the same machine. */
            benchCpuCores: r.otherCpuSeconds / r.seconds,
            /** Every other process on the machine. */
            foreignCpuCores: r.foreignCpuSeconds / r.seconds,
            /** CPU the hypervisor gave to other machines while ours wanted it (steal time). */
            stolenCpuCores: r.stolenCpuSeconds / r.seconds,
          },
        ];
      }),
    ) as unknown as Record<ArmName, Record<string, number>>;
    const added = { p50Ms: summary.subs.proxyP50Ms! - summary.none.proxyP50Ms!, p99Ms: summary.subs.proxyP99Ms! - summary.none.proxyP99Ms! };
    // Tollgate's extra CPU in the `subs` arm per event delivered: what subscriptions cost,
    // and much less sensitive than latencies to what else the machine is doing.
    const cpuUsPerDelivery = summary.subs.deliveries
      ? ((summary.subs.tollgateCpuCores! - summary.none.tollgateCpuCores!) * results.subs.seconds * 1e6) / summary.subs.deliveries
      : NaN;
    const pass = {
      deliveryP99: summary.subs.deliveryP99Ms! <= 50,
      zeroLost: summary.subs.lostEvents === 0 && summary.subs.droppedBefore === 0,
      noRequestErrors: summary.none.requestErrors === 0 && summary.subs.requestErrors === 0,
    };

    const fmt = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '—' : Number.isInteger(x) ? String(x) : x.toFixed(2));
    const rows = Object.keys(summary.subs);
    console.log(
      `\nsubscriptions: ${SUBSCRIBERS} graphql-ws subscribers (${UNFILTERED} unfiltered, ${SUBSCRIBERS - UNFILTERED} filtered to one of ${TEAMS} teams), target ${RPS} req/s = ${2 * RPS} decisions/s, ${ROUNDS}×${SECONDS}s per arm`,
    );
    console.log(`${'metric'.padEnd(22)} ${'none'.padStart(12)} ${'subs'.padStart(12)}`);
    for (const k of rows) console.log(`${k.padEnd(22)} ${fmt(summary.none[k]).padStart(12)} ${fmt(summary.subs[k]).padStart(12)}`);
    console.log(`added proxy latency    p50 ${fmt(added.p50Ms)} ms, p99 ${fmt(added.p99Ms)} ms`);
    console.log(`added tollgate CPU     ${fmt(cpuUsPerDelivery)} µs per delivery`);
    const foreign = Math.max(summary.none.foreignCpuCores! + summary.none.stolenCpuCores!, summary.subs.foreignCpuCores! + summary.subs.stolenCpuCores!);
    if (foreign > 0.25)
      console.log(
        `WARNING                other processes and the hypervisor took up to ${fmt(foreign)} of ${os.cpus().length} cores during the run: latencies are not representative`,
      );
    console.log(
      `checks                 delivery p99 ≤ 50 ms: ${pass.deliveryP99 ? 'PASS' : 'FAIL'}; zero lost: ${pass.zeroLost ? 'PASS' : 'FAIL'}; no request errors: ${pass.noRequestErrors ? 'PASS' : 'FAIL'}`,
    );

    await mkdir(path.join(here, 'results'), { recursive: true });
    await writeFile(
      path.join(here, 'results/subscriptions.json'),
      `${JSON.stringify(
        {
          at: new Date().toISOString(),
          machine: { cpus: os.cpus().length, node: process.version, loadAverage1m: os.loadavg()[0] },
          params: { subscribers: SUBSCRIBERS, unfiltered: UNFILTERED, teams: TEAMS, rps: RPS, seconds: SECONDS, rounds: ROUNDS },
          summary,
          addedProxyLatency: added,
          addedTollgateCpuUsPerDelivery: cpuUsPerDelivery,
          pass,
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    subs?.kill();
    tollgate.child.kill('SIGTERM');
    await Promise.race([tollgate.exited, sleep(15_000)]);
    sim.child.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'subscribers') await subscriberProcess();
else
  await main().catch((err) => {
    console.error(err);
    process.exitCode = 1;
  });
