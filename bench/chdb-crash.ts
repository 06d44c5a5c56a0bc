// npm run bench:chdb-crash — does a batch replayed after kill -9 land exactly once in chDB?
// (Not in CI, not in `npm run bench`: it takes minutes; the finding it made is pinned down by
// test/integration/chdb-dedup-log.test.ts.)
//
// A child process inserts numbered batches of 20 rows into a MergeTree table with a
// materialized view into an AggregatingMergeTree, each with its own insert_deduplication_token,
// as the receipt batcher does, logging "a N" before and "d N" after each insert. The parent
// kills it with -9 at a random moment, BENCH_ROUNDS times (default 300). Each new child first
// replays every batch attempted but not acknowledged, with the same token (the WAL replay),
// then counts every attempted batch in the table and in the view: a batch short in either is
// lost. The child opens the engine as Tollgate does (openClickHouse, which repairs the
// deduplication logs first) and inserts as the receipts journal does (a RowBinary body through
// the store's insertRows); BENCH_REPAIR=0 opens chDB bare and inserts JSON, to see the loss. Prints a table,
// writes bench/results/chdb-crash.json.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ClickHouseSettings, createClient } from '@clickhouse/client';
import { openClickHouse } from '../src/store/clickhouse.js';
import { RowBinaryWriter } from '../src/store/row-binary.js';
import { machine } from './support/stats.js';

const here = fileURLToPath(import.meta.url);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 300);
const REPAIR = process.env.BENCH_REPAIR !== '0';
const ROWS = 20;

interface ChildReport {
  attempted: number;
  replayed: number;
  missingInTable: number[];
  missingInView: number[];
  repairs: string[];
}

if (process.argv[2] === 'child') await child(process.argv[3]);
else await parent();

async function child(dir: string): Promise<void> {
  const repairs: string[] = [];
  const store = REPAIR ? await openClickHouse({ dataDir: dir, log: (_msg, fields) => repairs.push(JSON.stringify(fields)) }) : null;
  const client =
    store?.client ?? createClient({ connection: (await import('chdb/connection' as string)).createChdbConnection({ path: path.join(dir, 'clickhouse') }) });
  for (const query of [
    'CREATE TABLE IF NOT EXISTS t (id UInt64, batch UInt64, pad String) ENGINE = MergeTree ORDER BY (pad, id) SETTINGS non_replicated_deduplication_window = 10000',
    'CREATE TABLE IF NOT EXISTS per_batch (batch UInt64, n AggregateFunction(count)) ENGINE = AggregatingMergeTree ORDER BY batch SETTINGS non_replicated_deduplication_window = 10000',
    'CREATE MATERIALIZED VIEW IF NOT EXISTS per_batch_mv TO per_batch AS SELECT batch, countState() AS n FROM t GROUP BY batch',
  ]) {
    await client.command({ query });
  }
  const log = path.join(dir, 'batches.log');
  const attempted = new Set<number>();
  const acknowledged = new Set<number>();
  for (const line of existsSync(log) ? readFileSync(log, 'utf8').split('\n') : []) {
    const [op, n] = line.split(' ');
    if (op === 'a') attempted.add(Number(n));
    if (op === 'd') acknowledged.add(Number(n));
  }
  const insert = async (batch: number) => {
    const rows = Array.from({ length: ROWS }, (_, i) => ({ id: batch * ROWS + i, batch, pad: `${'x'.repeat(200)}${i}` }));
    const settings = {
      insert_deduplicate: 1,
      insert_deduplication_token: `batch-${batch}`,
      deduplicate_blocks_in_dependent_materialized_views: 1,
      async_insert: 0,
    };
    if (store) {
      // As the receipts journal inserts: a RowBinary body through the store's inserter.
      const body = new RowBinaryWriter();
      body.header([
        ['id', 'UInt64'],
        ['batch', 'UInt64'],
        ['pad', 'String'],
      ]);
      for (const row of rows) {
        body.int64(row.id);
        body.int64(row.batch);
        body.string(row.pad);
      }
      await store.insertRows({ table: 't', columns: ['id', 'batch', 'pad'], body: body.bytes(), settings });
    } else {
      await client.insert({ table: 't', values: rows, format: 'JSONEachRow', clickhouse_settings: settings as ClickHouseSettings });
    }
    appendFileSync(log, `d ${batch}\n`);
  };
  let replayed = 0;
  for (const batch of [...attempted].sort((a, b) => a - b)) {
    if (acknowledged.has(batch)) continue;
    await insert(batch);
    replayed++;
  }
  const counts = async (query: string) =>
    new Map((await (await client.query({ query, format: 'JSONCompactEachRow' })).json<[string, string]>()).map(([b, n]) => [Number(b), Number(n)]));
  const inTable = await counts('SELECT batch, count() FROM t GROUP BY batch');
  const inView = await counts('SELECT batch, countMerge(n) FROM per_batch GROUP BY batch');
  const report: ChildReport = {
    attempted: attempted.size,
    replayed,
    missingInTable: [...attempted].filter((b) => inTable.get(b) !== ROWS),
    missingInView: [...attempted].filter((b) => inView.get(b) !== ROWS),
    repairs,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  for (let batch = attempted.size === 0 ? 0 : Math.max(...attempted) + 1; ; batch++) {
    appendFileSync(log, `a ${batch}\n`);
    await insert(batch);
  }
}

async function parent(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-chdb-crash-'));
  const totals = { rounds: 0, batches: 0, replayed: 0, repairs: 0, lostInTable: new Set<number>(), lostInView: new Set<number>() };
  try {
    for (let round = 0; round <= ROUNDS; round++) {
      const proc = spawn(process.execPath, ['--import', 'tsx', here, 'child', dir], { stdio: ['ignore', 'pipe', 'inherit'] });
      const report = await new Promise<ChildReport>((resolve, reject) => {
        let out = '';
        proc.stdout.on('data', (d: Buffer) => {
          out += d;
          if (out.includes('\n')) resolve(JSON.parse(out.slice(0, out.indexOf('\n'))));
        });
        proc.on('exit', (code) => reject(new Error(`child exited with ${code}`)));
      });
      totals.rounds = round;
      totals.batches = report.attempted;
      totals.replayed += report.replayed;
      totals.repairs += report.repairs.length;
      // Said once, when first seen: a lost batch stays lost in every later round.
      const newly = (lost: Set<number>, missing: number[]) => missing.filter((b) => !lost.has(b) && lost.add(b));
      const table = newly(totals.lostInTable, report.missingInTable);
      const view = newly(totals.lostInView, report.missingInView);
      if (report.repairs.length > 0 || table.length > 0 || view.length > 0) {
        console.log(
          `round ${round}: repaired ${report.repairs.join(' ') || '-'}; lost in the table ${table.join(',') || '-'}, in the view ${view.join(',') || '-'}`,
        );
      }
      if (round === ROUNDS) {
        proc.kill('SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 200 + Math.random() * 600));
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const result = {
    repair: REPAIR,
    kills: totals.rounds,
    batches: totals.batches,
    replayedBatches: totals.replayed,
    repairedRecords: totals.repairs,
    batchesLostInTable: totals.lostInTable.size,
    batchesLostInView: totals.lostInView.size,
  };
  console.table(result);
  const out = path.join(path.dirname(here), 'results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, `chdb-crash${REPAIR ? '' : '-bare'}.json`), `${JSON.stringify({ machine: machine(), ...result }, null, 2)}\n`);
  console.log(`wrote bench/results/chdb-crash${REPAIR ? '' : '-bare'}.json`);
  if (totals.lostInTable.size + totals.lostInView.size > 0) process.exitCode = 1;
}
