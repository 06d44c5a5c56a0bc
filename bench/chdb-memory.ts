// npm run bench:chdb-memory — where the embedded stores' memory goes under a soak's receipts
// load, with nothing else in the process (not in CI, not in `npm run bench`: it takes minutes).
//
// The embedded-stores soak's RSS rises for several minutes while its JS heap is flat. This
// runs the receipts path alone, as Tollgate runs it — the real ReceiptJournal (WAL, segment
// worker, signatures) inserting into chDB migrated with Tollgate's own migrations — at
// BENCH_RPS receipts/s (default 50, the soak's rate) for BENCH_MINUTES (default 10), and every
// 10 s records what each layer holds:
//   process   RSS and thread count (/proc)
//   V8        heap used
//   chDB      MemoryTracking (what ClickHouse's allocations add up to, caches included), and
//             jemalloc's own totals (system.jemalloc_stats): allocated, resident, retained
//   parts     active parts and rows of every table (merges keep the count bounded)
// A growth of RSS that MemoryTracking shares is ClickHouse holding data; one that only
// jemalloc's resident shares is the allocator keeping freed pages; one that neither shares is
// outside ClickHouse's allocator (thread stacks, Node). The threads are counted by name: a
// pool that grows shows there (it found the part-removal burst that tuneEmbeddedTables
// stops). Prints a table and slopes after warm-up (the first third), writes
// bench/results/chdb-memory.json.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { v7 as uuidv7 } from 'uuid';
import { ReceiptJournal } from '../src/receipts/journal.js';
import type { ReceiptDraft } from '../src/receipts/receipt.js';
import { ReceiptSigner } from '../src/receipts/signer.js';
import { openClickHouse, tuneEmbeddedTables } from '../src/store/clickhouse.js';
import { migrateClickHouse } from '../src/store/clickhouse-migrate.js';
import { machine, slope } from './support/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const RPS = Number(process.env.BENCH_RPS ?? 50);
const MINUTES = Number(process.env.BENCH_MINUTES ?? 10);
const SAMPLE_MS = 10_000;
const MB = 2 ** 20;

interface Sample {
  at: number;
  receipts: number;
  rssMb: number;
  /** RSS of anonymous memory (heaps, stacks) and of mapped files (chDB's ~500 MB library is code). */
  rssAnonMb: number;
  rssFileMb: number;
  threads: number;
  heapUsedMb: number;
  trackedMb: number;
  jemallocAllocatedMb: number;
  jemallocResidentMb: number;
  jemallocRetainedMb: number;
  parts: number;
  rows: number;
}

/** A receipt like the soak's traffic makes: 20 teams, 50 keys, 4 models, 10 % streams. */
function draft(n: number): ReceiptDraft {
  const now = new Date().toISOString();
  const model = `soak-${[50, 100, 150, 300][n % 4]}`;
  return {
    receipt_id: uuidv7(),
    request_id: `req_${n}`,
    started_at: now,
    finished_at: now,
    team_id: `team_${n % 20}`,
    api_key_id: `key_${n % 50}`,
    feature: `feature-${n % 7}`,
    task_id: `task-${n}`,
    end_user: null,
    endpoint: '/v1/chat/completions',
    requested_model: 'soak-nocache',
    route: 'soak-nocache',
    strategy: 'PRIORITY',
    provider: 'sim-primary',
    model,
    attempts: [{ provider: 'sim-primary', model, status: 200, error: null, latency_ms: 50 + (n % 300) }],
    status: 'ok',
    http_status: 200,
    error_code: null,
    stream: n % 10 === 0,
    ttft_ms: null,
    latency_ms: 51 + (n % 300),
    upstream_ms: 50 + (n % 300),
    overhead_ms: 0.5,
    prompt_tokens: 20 + (n % 100),
    completion_tokens: 16,
    cached_tokens: 0,
    usage_estimated: false,
    cost_usd: 1.5e-6 * (1 + (n % 13)),
    price_version: null,
    cache_status: 'miss',
    cache_similarity: null,
    saved_cost_usd: 0,
    request_sha256: 'a'.repeat(64),
    response_sha256: 'b'.repeat(64),
  };
}

/** The process's threads by name (/proc/self/task/<tid>/comm; ClickHouse names its pools' threads). */
function threadsByName(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const tid of readdirSync('/proc/self/task')) {
    let name: string;
    try {
      name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
    } catch {
      continue; // the thread ended meanwhile
    }
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/** RSS (VmRSS = RssAnon + RssFile + RssShmem, the last ~0 here) and threads, from one /proc/self/status. */
function processStatus(): { rssMb: number; rssAnonMb: number; rssFileMb: number; threads: number } {
  const text = readFileSync('/proc/self/status', 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rssMb: field('VmRSS') / 1024, rssAnonMb: field('RssAnon') / 1024, rssFileMb: field('RssFile') / 1024, threads: field('Threads') };
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-chdb-memory-'));
  const startedAt = new Date();
  const ch = await openClickHouse({ dataDir });
  let journal: ReceiptJournal | undefined;
  try {
    await migrateClickHouse(ch.client, {});
    await tuneEmbeddedTables(ch.client); // as runtime.ts does for the embedded engine
    // The same batching as `tollgate start`'s defaults.
    journal = await ReceiptJournal.open({
      dataDir,
      signer: ReceiptSigner.ephemeral(),
      insertRows: ch.insertRows,
      sync: 'write',
      batchMaxRows: 1000,
      batchMaxMs: 1000,
    });
    const query = async (sql: string) => (await (await ch.client.query({ query: sql, format: 'JSONEachRow' })).json()) as Array<Record<string, unknown>>;

    const samples: Sample[] = [];
    let sent = 0;
    const t0 = performance.now();
    const sample = async () => {
      const [metrics, [jemalloc], [parts]] = await Promise.all([
        query("SELECT metric, value FROM system.metrics WHERE metric = 'MemoryTracking'"),
        query('SELECT stats FROM system.jemalloc_stats'),
        query('SELECT count() AS parts, sum(rows) AS rows FROM system.parts WHERE active AND database = currentDatabase()'),
      ]);
      // malloc_stats_print's totals line: "Allocated: A, active: B, metadata: C (…), resident: D, mapped: E, retained: F"
      const totals = /Allocated: (\d+), active: \d+, metadata: \d+.*?resident: (\d+), mapped: \d+, retained: (\d+)/s.exec(String(jemalloc?.stats ?? ''));
      samples.push({
        at: (performance.now() - t0) / 1000,
        receipts: sent,
        ...processStatus(),
        heapUsedMb: process.memoryUsage().heapUsed / MB,
        trackedMb: Number(metrics[0]?.value) / MB,
        jemallocAllocatedMb: Number(totals?.[1]) / MB,
        jemallocResidentMb: Number(totals?.[2]) / MB,
        jemallocRetainedMb: Number(totals?.[3]) / MB,
        parts: Number(parts?.parts),
        rows: Number(parts?.rows),
      });
    };
    await sample();
    const threadsAtStart = threadsByName();
    let nextSample = SAMPLE_MS;
    while (performance.now() - t0 < MINUTES * 60_000) {
      // Open loop on the clock, as the soak sends its requests.
      const due = Math.floor(((performance.now() - t0) / 1000) * RPS);
      for (; sent < due; sent++) journal.append(draft(sent)).catch((err) => console.error('append failed', err));
      if (performance.now() - t0 >= nextSample) {
        nextSample += SAMPLE_MS;
        await sample();
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await journal.flush();
    await sample();
    const threadsAtEnd = threadsByName();

    const warm = (MINUTES * 60) / 3;
    const slopeOf = (field: keyof Sample) => slope(samples.filter((s) => s.at >= warm).map((s): [number, number] => [s.at / 60, s[field]]));
    const fields: Array<[keyof Sample, string]> = [
      ['rssMb', 'process RSS'],
      ['rssAnonMb', '  of it anonymous (heaps, stacks)'],
      ['rssFileMb', '  of it mapped files (code)'],
      ['jemallocResidentMb', 'jemalloc resident'],
      ['jemallocAllocatedMb', 'jemalloc allocated'],
      ['trackedMb', 'ClickHouse MemoryTracking'],
      ['jemallocRetainedMb', 'jemalloc retained (virtual, pages released)'],
      ['heapUsedMb', 'V8 heap used'],
    ];
    const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '—');
    console.log(`\nchDB memory under the receipts path alone: ${RPS} receipts/s for ${MINUTES} min (${machine().cores} cores, node ${process.version})`);
    console.log('minute | receipts | RSS MB | anon | file | threads | jemalloc resident | jemalloc allocated | MemoryTracking | heap used | parts');
    for (const s of samples.filter((_, i) => i % 6 === 0 || i === samples.length - 1)) {
      console.log(
        `${f(s.at / 60).padStart(6)} | ${String(s.receipts).padStart(8)} | ${f(s.rssMb).padStart(6)} | ${f(s.rssAnonMb, 0).padStart(4)} | ${f(s.rssFileMb, 0).padStart(4)} | ${String(s.threads).padStart(7)} | ${f(s.jemallocResidentMb).padStart(17)} | ${f(s.jemallocAllocatedMb).padStart(18)} | ${f(s.trackedMb).padStart(14)} | ${f(s.heapUsedMb).padStart(9)} | ${String(s.parts).padStart(5)}`,
      );
    }
    const first = samples[0]!;
    const last = samples.at(-1)!;
    console.log('\nMB/min after warm-up (last two thirds), and change over the whole run');
    const slopes: Record<string, number> = {};
    for (const [field, label] of fields) {
      slopes[field] = slopeOf(field);
      console.log(`  ${label.padEnd(42)} ${f(slopes[field]!, 2).padStart(7)} MB/min   ${f(first[field] as number)} → ${f(last[field] as number)} MB`);
    }
    console.log('\nthreads by name, at start → at the end (the names whose count changed)');
    for (const name of Object.keys({ ...threadsAtStart, ...threadsAtEnd }).sort()) {
      const [a, b] = [threadsAtStart[name] ?? 0, threadsAtEnd[name] ?? 0];
      if (a !== b) console.log(`  ${name.padEnd(18)} ${a} → ${b}`);
    }
    const out = {
      date: startedAt.toISOString(),
      machine: machine(),
      params: { rps: RPS, minutes: MINUTES, batchMaxRows: 1000, batchMaxMs: 1000 },
      slopes,
      threadsAtStart,
      threadsAtEnd,
      samples,
    };
    await mkdir(path.join(here, 'results'), { recursive: true });
    await writeFile(path.join(here, 'results', 'chdb-memory.json'), `${JSON.stringify(out, null, 2)}\n`);
    console.log('\nwrote bench/results/chdb-memory.json');
  } finally {
    await journal?.close();
    await ch.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0), // chDB's threads would keep the process alive
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
