// Repairs the embedded engine's insert-deduplication logs after a crash, before chDB opens
// them (DESIGN §7: a WAL segment replayed after kill -9 must land exactly once).
//
// A non-replicated MergeTree remembers the block ids of its recent inserts in
// `deduplication_logs/deduplication_log_<n>.txt`, one record a line:
// `<op>\t<part name>\t<block id>`, op 1 = added, 2 = dropped. ClickHouse writes the "added"
// record *before* it commits the part. chDB runs inside Tollgate, so a kill -9 in between
// (about once in 100 kills of a process inserting in a loop) leaves a record for a part that
// never became visible: the replay of that WAL segment, with the same deduplication token, is
// then taken for a duplicate and dropped, and its receipts are lost from that table (the
// `receipts` table and each rollup keep their own log, so any one of them can lose them).
// The durability test caught it in CI; test/integration/chdb-dedup-log.test.ts makes it exact.
//
// The repair appends a "dropped" record, exactly what ClickHouse writes when it drops a part,
// for every "added" record whose part is not on disk: no part directory covers its block
// range, or a later record reuses its block numbers (ClickHouse numbers blocks from the parts
// it finds, so a number whose part was never committed can be given out again). Then the
// replay inserts what is missing, and deduplicates what did land.
//
// Only the embedded engine's own directory is touched, only while no chDB has it open (the
// data dir is claimed by this process), and only a log whose every line has the expected
// shape: anything else is left alone and reported.
import { appendFile, readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';

const LOG_DIR = 'deduplication_logs';
const LOG_FILE = /^deduplication_log_(\d+)\.txt$/;
const RECORD = /^([12])\t([^\t]+)\t([^\t]+)$/;
/** `<partition>_<min block>_<max block>_<level>[_<mutation>]`; partition ids have no `_`. */
const PART_NAME = /^([^_]+)_(\d+)_(\d+)_(\d+)(?:_(\d+))?$/;
const ADDED = '1';
const DROPPED = '2';

interface Entry {
  part: string;
  range: BlockRange;
}

interface BlockRange {
  partition: string;
  min: number;
  max: number;
}

export interface DeduplicationLogRepair {
  /** `database.table` (or its directory, relative to the engine's data directory). */
  table: string;
  /** "Added" records without a part, now dropped. */
  dropped: number;
  /** Set when the log was left alone: why. */
  skipped?: string;
}

/**
 * Drops the deduplication records of parts that never landed, in every table of the
 * embedded engine's data directory. Returns the tables it changed, and those it left alone.
 */
export async function repairDeduplicationLogs(engineDir: string): Promise<DeduplicationLogRepair[]> {
  const repairs: DeduplicationLogRepair[] = [];
  const names = await tableNames(engineDir);
  for (const tableDir of await tableDirs(engineDir)) {
    const repair = await repairTable(tableDir);
    if (repair.dropped > 0 || repair.skipped) repairs.push({ ...repair, table: names.get(await realpath(tableDir)) ?? path.relative(engineDir, tableDir) });
  }
  return repairs;
}

/** `store/<prefix>/<uuid>/` directories (Atomic databases) that keep a deduplication log. */
async function tableDirs(engineDir: string): Promise<string[]> {
  const store = path.join(engineDir, 'store');
  const dirs: string[] = [];
  for (const prefix of await listDirs(store)) {
    for (const table of await listDirs(path.join(store, prefix))) {
      const dir = path.join(store, prefix, table);
      if ((await listDirs(dir)).includes(LOG_DIR)) dirs.push(dir);
    }
  }
  return dirs;
}

/** `database.table` by table directory, from the engine's `data/<database>/<table>` links. */
async function tableNames(engineDir: string): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  const data = path.join(engineDir, 'data');
  for (const database of await listDirs(data)) {
    for (const table of await readdir(path.join(data, database))) {
      const dir = await realpath(path.join(data, database, table)).catch(() => null);
      if (dir) names.set(dir, `${database}.${table}`);
    }
  }
  return names;
}

async function repairTable(tableDir: string): Promise<Omit<DeduplicationLogRepair, 'table'>> {
  const logDir = path.join(tableDir, LOG_DIR);
  const logs = (await readdir(logDir))
    .map((name) => ({ name, n: LOG_FILE.exec(name)?.[1] }))
    .filter((f): f is { name: string; n: string } => f.n !== undefined)
    .sort((a, b) => Number(a.n) - Number(b.n));
  if (logs.length === 0) return { dropped: 0 };

  // The records in force, in the order ClickHouse applies them when it loads the log.
  const live = new Map<string, Entry>();
  for (const log of logs) {
    const text = await readFile(path.join(logDir, log.name), 'utf8');
    // A record cut short (only a crash of the machine could) is ClickHouse's to read; appending
    // after it would glue our record to it.
    if (text !== '' && !text.endsWith('\n')) return { dropped: 0, skipped: `${log.name} ends in an incomplete record` };
    const lines = text.split('\n');
    lines.pop();
    for (const line of lines) {
      const record = RECORD.exec(line);
      const range = record && blockRange(record[2]);
      if (!record || !range) return { dropped: 0, skipped: `unexpected line in ${log.name}: ${JSON.stringify(line.slice(0, 200))}` };
      const [, op, part, blockId] = record;
      if (op !== ADDED) live.delete(blockId);
      else if (!live.has(blockId)) live.set(blockId, { part, range });
    }
  }

  const landed = landedBlocks((await listDirs(tableDir)).map(blockRange).filter((r): r is BlockRange => r !== null));
  // Walking the records newest first, a block number already claimed was given out again.
  const claimed = new Set<string>();
  const orphaned: Array<[string, Entry]> = [];
  for (const [blockId, entry] of [...live.entries()].reverse()) {
    const blocks = blockKeys(entry.range);
    if (blocks.some((b) => claimed.has(b)) || !isLanded(landed, entry.range)) orphaned.push([blockId, entry]);
    for (const b of blocks) claimed.add(b);
  }
  if (orphaned.length === 0) return { dropped: 0 };
  // One append to the newest log, like ClickHouse's own "dropped" records.
  const records = orphaned.map(([blockId, entry]) => `${DROPPED}\t${entry.part}\t${blockId}\n`).join('');
  await appendFile(path.join(logDir, logs.at(-1)!.name), records, { flush: true });
  return { dropped: orphaned.length };
}

function blockRange(partName: string): BlockRange | null {
  const m = PART_NAME.exec(partName);
  return m ? { partition: m[1], min: Number(m[2]), max: Number(m[3]) } : null;
}

/** Per partition, the block ranges the parts on disk cover: sorted, disjoint, merged. */
function landedBlocks(parts: BlockRange[]): Map<string, Array<[number, number]>> {
  const byPartition = new Map<string, Array<[number, number]>>();
  for (const p of [...parts].sort((a, b) => a.min - b.min)) {
    const ranges = byPartition.get(p.partition) ?? byPartition.set(p.partition, []).get(p.partition)!;
    const last = ranges.at(-1);
    if (last && p.min <= last[1] + 1) last[1] = Math.max(last[1], p.max);
    else ranges.push([p.min, p.max]);
  }
  return byPartition;
}

/** Whether one merged range covers r (the parts on disk leave few gaps: a linear scan will do). */
const isLanded = (landed: Map<string, Array<[number, number]>>, r: BlockRange) =>
  (landed.get(r.partition) ?? []).some(([min, max]) => min <= r.min && r.max <= max);

/** An inserted part spans one block number (a few at most): one key per block. */
const blockKeys = (r: BlockRange) => Array.from({ length: Math.min(r.max - r.min + 1, 1000) }, (_, i) => `${r.partition}_${r.min + i}`);

async function listDirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
