// npm run bench:alloc — what the proxy allocates per request, and what it keeps.
//
// A fresh Tollgate (dist/, embedded stores) under bench:proxy's throughput load (c=32, chat
// completions against the simulated provider), with V8's sampling heap profiler attached over
// the inspector, in two windows of BENCH_ALLOC_SECONDS after a warm-up:
//
//   allocated  every sampled allocation, also those a scavenge or a mark-compact has freed
//              since: the bytes a request allocates, by the function that allocated them.
//              This is what the scavenger, the GC share of the CPU profile and the promotion
//              into the old generation are paid for.
//   live       only what is still reachable at the end of the window: what requests leave
//              behind (the receipts on their way to ClickHouse are only positions in the
//              WAL, outside the heap: receipts/wal-index.ts). If this grows with the window,
//              something leaks.
//
// Prints the top allocators per request and writes bench/results/alloc.json.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import WebSocket from 'ws';
import { startTollgateProcess } from '../test/support/processes.js';
import { shortLocation } from './support/cpu-profile.js';
import { BUILT, Cleanups, createKey, forkTs, stopTollgate, writeSimConfig } from './support/processes.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const SECONDS = Number(process.env.BENCH_ALLOC_SECONDS ?? 8);
const CONCURRENCY = 32;
const TOP = 15;
/** Bytes between samples: small enough for a steady per-request figure at a few thousand requests/s. */
const SAMPLING_INTERVAL = 4096;

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

interface AllocRow {
  function: string;
  location: string;
  bytesPerRequest: number;
}

/** A port nobody listens on now, for the inspector. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A minimal Chrome DevTools Protocol client: one request, one answer. */
async function inspector(port: number) {
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const ws = new WebSocket(target!.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  let lastId = 0;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  ws.on('message', (data) => {
    const message = JSON.parse(String(data)) as { id?: number; result?: unknown; error?: { message: string } };
    const waiter = message.id === undefined ? undefined : pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id!);
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
  });
  return {
    call: (method: string, params: object = {}) =>
      new Promise<any>((resolve, reject) => {
        const id = ++lastId;
        pending.set(id, { resolve, reject });
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

/** Bytes per request by allocating function (name and location), largest first. */
function perFunction(head: SamplingNode, requests: number): { totalPerRequest: number; rows: AllocRow[] } {
  const bytes = new Map<string, AllocRow>();
  let total = 0;
  const visit = (node: SamplingNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    if (node.selfSize > 0) {
      const location = shortLocation(url, lineNumber, root);
      const key = `${functionName}\u0000${location}`;
      const row = bytes.get(key) ?? { function: functionName || '(anonymous)', location: location || '(builtin or generated code)', bytesPerRequest: 0 };
      row.bytesPerRequest += node.selfSize;
      bytes.set(key, row);
      total += node.selfSize;
    }
    for (const child of node.children) visit(child);
  };
  visit(head);
  const rows = [...bytes.values()].map((r) => ({ ...r, bytesPerRequest: Math.round(r.bytesPerRequest / requests) }));
  rows.sort((a, b) => b.bytesPerRequest - a.bytesPerRequest);
  return { totalPerRequest: Math.round(total / requests), rows: rows.slice(0, TOP) };
}

async function main() {
  const cleanups = new Cleanups('bench:alloc');
  try {
    const sim = await forkTs(path.join(here, 'support/sim-process.ts'), [JSON.stringify({ completionTokens: 16 })]);
    cleanups.defer('stop the simulated provider', () => sim.child.disconnect());
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-alloc-'));
    cleanups.defer('remove the data dir', () => rm(dataDir, { recursive: true, force: true }));
    const configFile = await writeSimConfig(dataDir, sim.message.url);
    const port = await freePort();
    const env = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_CONFIG: configFile, TOLLGATE_LOG_LEVEL: 'warn' };
    const tollgate = await startTollgateProcess({ ...env, NODE_ARGS: `--inspect=127.0.0.1:${port}` }, BUILT);
    cleanups.defer('stop Tollgate', () => stopTollgate(tollgate));
    const secret = await createKey(env);
    const devtools = await inspector(port);
    cleanups.defer('close the inspector', () => devtools.close());

    const pool = new Pool(tollgate.url, { connections: 64 });
    cleanups.defer('close the client pool', () => pool.close());
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${secret}` };
    const body = JSON.stringify({ model: 'chat-default', messages: [{ role: 'user', content: 'Say hello to the benchmark.' }] });
    let done = 0;
    let stop = false;
    const clients = Array.from({ length: CONCURRENCY }, async () => {
      while (!stop) {
        const res = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body });
        await res.body.arrayBuffer();
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
        done++;
      }
    });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    /** One window under load with the sampling profiler on; `collected` keeps what GC freed. */
    const window = async (collected: boolean) => {
      await devtools.call('HeapProfiler.startSampling', {
        samplingInterval: SAMPLING_INTERVAL,
        includeObjectsCollectedByMinorGC: collected,
        includeObjectsCollectedByMajorGC: collected,
      });
      const before = done;
      await sleep(SECONDS * 1000);
      const requests = done - before;
      const { profile } = (await devtools.call('HeapProfiler.getSamplingProfile')) as { profile: { head: SamplingNode } };
      await devtools.call('HeapProfiler.stopSampling');
      return { requests, ...perFunction(profile.head, requests) };
    };

    await devtools.call('HeapProfiler.enable');
    await sleep(3000); // warm-up: JIT, pools, the first segments
    const allocated = await window(true);
    const live = await window(false);
    stop = true;
    await Promise.all(clients);

    const results = { date: new Date().toISOString(), concurrency: CONCURRENCY, seconds: SECONDS, samplingIntervalBytes: SAMPLING_INTERVAL, allocated, live };
    await writeFile(path.join(here, 'results/alloc.json'), `${JSON.stringify(results, null, 2)}\n`);

    const kb = (b: number) => `${(b / 1024).toFixed(1)} KB`;
    console.log(`\nallocation per request, Tollgate main thread, embedded stores, c=${CONCURRENCY}, ${SECONDS} s windows`);
    console.log(`  allocated (freed since or not)   ${kb(allocated.totalPerRequest)}   (${allocated.requests} requests)`);
    console.log(`  still live at the window's end   ${kb(live.totalPerRequest)}   (${live.requests} requests)`);
    console.log(`\ntop ${TOP} allocators, bytes per request`);
    for (const r of allocated.rows) console.log(`${String(r.bytesPerRequest).padStart(8)}  ${r.function}  ${r.location}`);
    console.log('\nwrote bench/results/alloc.json');
  } finally {
    await cleanups.run();
  }
}

await main();
