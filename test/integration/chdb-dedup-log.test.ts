// The embedded engine's deduplication logs after a crash (src/store/chdb-dedup-log.ts).
//
// ClickHouse records an insert's block id before it commits the part. A kill -9 in between
// (chDB runs inside Tollgate) leaves a record for a part that is not there, and the WAL replay
// of that segment, with the same token, was dropped as a duplicate: receipts lost. Found by
// the durability test in CI; reproduced by killing a process that inserts in a loop (about
// once in 100 kills: the record's part was missing on disk, its view target had the rows).
// Here the crash's outcome is made exactly: the part's directory is removed while the engine
// is closed, its record stays.
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { repairDeduplicationLogs } from '../../src/store/chdb-dedup-log.js';
import { type ClickHouseStore, openClickHouse } from '../../src/store/clickhouse.js';

let dataDir: string;
let ch: ClickHouseStore;
const logged: Array<{ msg: string; fields: object }> = [];
const open = () => openClickHouse({ dataDir, log: (msg, fields) => logged.push({ msg, fields }) });

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-dedup-log-'));
  logged.length = 0;
  ch = await open();
  for (const query of [
    'CREATE TABLE t (id UInt64, team String) ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100',
    'CREATE TABLE per_team (team String, n AggregateFunction(count)) ENGINE = AggregatingMergeTree ORDER BY team SETTINGS non_replicated_deduplication_window = 100',
    'CREATE MATERIALIZED VIEW per_team_mv TO per_team AS SELECT team, countState() AS n FROM t GROUP BY team',
  ]) {
    await ch.client.command({ query });
  }
}, 60_000);

afterEach(async () => {
  await ch?.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** One insert as the receipt batcher makes it: a block named by its token. */
async function insertBatch(batch: number) {
  await ch.client.insert({
    table: 't',
    values: Array.from({ length: 10 }, (_, i) => ({ id: batch * 10 + i, team: `team-${batch}` })),
    format: 'JSONEachRow',
    clickhouse_settings: {
      insert_deduplicate: 1,
      insert_deduplication_token: `segment-${batch}`,
      deduplicate_blocks_in_dependent_materialized_views: 1,
      async_insert: 0,
    },
  });
}

async function counts(batch: number) {
  const rows = async (query: string) => Number((await (await ch.client.query({ query, format: 'JSONCompactEachRow' })).json<[string]>())[0][0]);
  return {
    table: await rows(`SELECT count() FROM t WHERE team = 'team-${batch}'`),
    view: await rows(`SELECT countMerge(n) FROM per_team WHERE team = 'team-${batch}'`),
  };
}

/** The newest part of a table and its directory. */
async function newestPart(table: string) {
  const rs = await ch.client.query({
    query:
      'SELECT name, path FROM system.parts WHERE database = currentDatabase() AND table = {table:String} AND active ORDER BY max_block_number DESC LIMIT 1',
    query_params: { table },
    format: 'JSONEachRow',
  });
  return (await rs.json<{ name: string; path: string }>())[0];
}

/** What a kill between the record and the commit leaves: the record, and no part. */
async function crashBeforeCommit(table: string) {
  const part = await newestPart(table);
  await ch.close();
  await rm(part.path, { recursive: true });
  ch = await open();
}

describe('deduplication logs after a crash (embedded ClickHouse)', () => {
  it('replays a batch whose table part was never committed, and does not double its view', async () => {
    await insertBatch(1);
    await insertBatch(2);
    await crashBeforeCommit('t');
    expect(await counts(2)).toEqual({ table: 0, view: 10 }); // as found after the kill in the loop

    await insertBatch(2); // the WAL replay, same token
    expect(await counts(2)).toEqual({ table: 10, view: 10 });
    expect(await counts(1)).toEqual({ table: 10, view: 10 });
    expect(logged).toEqual([{ msg: expect.stringMatching(/dropped deduplication records/), fields: { table: 'default.t', dropped: 1 } }]);
  });

  it('replays a batch whose view part was never committed, and does not double the table', async () => {
    await insertBatch(1);
    await crashBeforeCommit('per_team');
    expect(await counts(1)).toEqual({ table: 10, view: 0 });

    await insertBatch(1);
    expect(await counts(1)).toEqual({ table: 10, view: 10 });
    expect(logged.map((l) => l.fields)).toEqual([{ table: 'default.per_team', dropped: 1 }]);
  });

  it('keeps the records of parts that landed, merged or not: a replay stays a no-op', async () => {
    for (let b = 1; b <= 4; b++) await insertBatch(b);
    await ch.client.command({ query: 'OPTIMIZE TABLE t FINAL' });
    await insertBatch(5);
    await ch.close();
    ch = await open();
    for (let b = 1; b <= 5; b++) await insertBatch(b);
    for (let b = 1; b <= 5; b++) expect(await counts(b)).toEqual({ table: 10, view: 10 });
    expect(logged).toEqual([]);
  });

  it('drops the older record when a block number was given out again', async () => {
    await insertBatch(1);
    await ch.close();
    // A log from before this repair: the first record is a crash's orphan, the next start gave
    // its block number to another insert (whose part now covers it), recorded after it.
    const log = await logFile('t');
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    const [, part, blockId] = lines[0].split('\t');
    await appendFile(log, `1\t${part}\tall_1_2\n`);
    expect(await repairDeduplicationLogs(path.join(dataDir, 'clickhouse'))).toEqual([{ table: 'default.t', dropped: 1 }]);
    expect((await readFile(log, 'utf8')).trim().split('\n').at(-1)).toBe(`2\t${part}\t${blockId}`);
    ch = await open();
  });

  it('leaves a log it does not understand alone, and says so', async () => {
    await insertBatch(1);
    await ch.close();
    const log = await logFile('t');
    const before = `${await readFile(log, 'utf8')}9\tsomething new\n`;
    await appendFile(log, '9\tsomething new\n');
    const repairs = await repairDeduplicationLogs(path.join(dataDir, 'clickhouse'));
    expect(repairs).toEqual([{ table: 'default.t', dropped: 0, skipped: expect.stringMatching(/unexpected line/) }]);
    expect(await readFile(log, 'utf8')).toBe(before);
    await rm(log); // so that the engine opens again
  });

  it('appends nothing after a record cut short', async () => {
    await insertBatch(1);
    const part = await newestPart('t');
    await ch.close();
    await rm(part.path, { recursive: true }); // an orphan the repair would drop…
    const log = await logFile('t');
    await appendFile(log, '1\tall_9_9_0\tall_12'); // …but the log ends mid-record
    const before = await readFile(log, 'utf8');
    expect(await repairDeduplicationLogs(path.join(dataDir, 'clickhouse'))).toEqual([
      { table: 'default.t', dropped: 0, skipped: expect.stringMatching(/incomplete record/) },
    ]);
    expect(await readFile(log, 'utf8')).toBe(before);
    await rm(log);
    ch = await open();
    ch = await open();
  });
});

/** A table's (single) deduplication log file, through the engine's `data/<db>/<table>` link. */
async function logFile(table: string): Promise<string> {
  const dir = path.join(dataDir, 'clickhouse', 'data', 'default', table, 'deduplication_logs');
  return path.join(dir, (await readdir(dir))[0]);
}
