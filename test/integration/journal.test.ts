// The receipts pipeline against the embedded ClickHouse (chDB): migrations, the WAL and
// its group commit, the batcher, crash recovery and exactly-once replay, ClickHouse
// outages, and reading receipts back with valid signatures.
//
// chDB allows one data directory per process, so every test shares one store; tests keep
// apart by team id (and instance id), and each journal has its own WAL directory.
import { spawn } from 'node:child_process';
import fs, { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClickHouseLogLevel, createClient } from '@clickhouse/client';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReceiptJournal, type ReceiptJournalOptions } from '../../src/receipts/journal.js';
import { unsignedReceipt } from '../../src/receipts/normalize.js';
import type { Receipt, ReceiptDraft, UnsignedReceipt } from '../../src/receipts/receipt.js';
import { fetchReceipt, rowToReceipt } from '../../src/receipts/rows.js';
import { SegmentWorker } from '../../src/receipts/segment-preparer.js';
import { canonicalReceiptJson, ReceiptSigner, SIGNING_KEY_FILE } from '../../src/receipts/signer.js';
import { GENESIS_PREV_HASH, receiptHash, verifyChain, verifyReceipt } from '../../src/receipts/verify.js';
import { sha256Hex } from '../../src/receipts/wal.js';
import { type ClickHouseStore, execRowsInserter, openClickHouse, type RowsInserter } from '../../src/store/clickhouse.js';
import { clusterStatements, loadMigrations, MigrationError, migrateClickHouse, migrationsDir, splitStatements } from '../../src/store/clickhouse-migrate.js';
import { RowBinaryWriter } from '../../src/store/row-binary.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'tollgate-journal-test-'));
let store: ClickHouseStore;

beforeAll(async () => {
  store = await openClickHouse({ dataDir: root });
  await migrateClickHouse(store.client);
}, 60_000);

afterAll(async () => {
  await store?.close();
  rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// helpers

let draftCounter = 0;
/** Receipt drafts with the values that are hard to round-trip, varied by a counter. */
function draft(team: string, overrides: Partial<ReceiptDraft> = {}): ReceiptDraft {
  const i = draftCounter++;
  const failed = i % 4 === 3;
  return {
    receipt_id: uuidv7(),
    request_id: `req_${i}`,
    started_at: new Date(Date.UTC(2026, 10, 21, 22, 0, 0) + i * 61_001).toISOString(),
    finished_at: new Date(Date.UTC(2026, 10, 21, 22, 0, 1) + i * 61_001).toISOString(),
    team_id: team,
    api_key_id: i % 3 === 0 ? null : `key_${i % 2}`,
    feature: [null, 'résumé ✨', '要約', 'chat "quoted"\n'][i % 4],
    task_id: i % 2 === 0 ? `task_${i % 5}` : null,
    end_user: i % 5 === 0 ? null : `user_${i % 3}`,
    endpoint: i % 7 === 0 ? '/v1/embeddings' : '/v1/chat/completions',
    requested_model: 'chat-default',
    route: i % 6 === 0 ? null : 'chat-default',
    strategy: 'PRIORITY',
    provider: 'openrouter',
    model: `openai/gpt-4o-mini-${i % 2}`,
    attempts: failed
      ? [
          { provider: 'ark', model: 'doubao', status: 0, error: 'timeout_first_byte', latency_ms: 30_000.125 },
          { provider: 'openrouter', model: 'gpt', status: 503, error: 'http_503', latency_ms: 0.001 },
        ]
      : [{ provider: 'openrouter', model: 'gpt', status: 200, error: null, latency_ms: 812.3456 }],
    status: failed ? 'error' : 'ok',
    http_status: failed ? 502 : 200,
    error_code: failed ? 'upstream_error' : null,
    stream: i % 2 === 1,
    ttft_ms: i % 3 === 0 ? null : 230.125 + i / 1000,
    latency_ms: 1333.5 + i / 7,
    upstream_ms: i % 2 === 0 ? null : 1300.25,
    overhead_ms: 0.333,
    prompt_tokens: 1200 + i,
    completion_tokens: failed ? 0 : 340,
    cached_tokens: i % 4,
    usage_estimated: i % 5 === 0,
    cost_usd: i % 5 === 2 ? null : [1.5e-7, 0.000384, 1.234567891, 0][i % 4],
    price_version: i % 5 === 2 ? null : 3,
    cache_status: (['miss', 'exact', 'semantic', 'bypass'] as const)[i % 4],
    cache_similarity: i % 4 === 2 ? 0.9731 : null,
    saved_cost_usd: i % 4 === 1 ? 0.002 : null,
    request_sha256: 'a'.repeat(64),
    response_sha256: failed ? null : 'b'.repeat(64),
    ...overrides,
  };
}

async function rows<T = Record<string, unknown>>(query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const rs = await store.client.query({
    query,
    query_params: params,
    format: 'JSONEachRow',
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0, output_format_json_quote_decimals: 0 },
  });
  return rs.json<T>();
}

/** What a team's receipts add up to in `receipts` and in every rollup. */
async function totals(team: string) {
  const [t] = await rows<Record<string, number>>(
    `SELECT
       (SELECT count() FROM receipts WHERE team_id = {team:String}) AS receipts,
       (SELECT uniqExact(receipt_id) FROM receipts WHERE team_id = {team:String}) AS unique_ids,
       (SELECT sum(requests) FROM receipts_hourly WHERE team_id = {team:String}) AS hourly_requests,
       (SELECT sum(errors) FROM receipts_hourly WHERE team_id = {team:String}) AS hourly_errors,
       (SELECT countIf(status != 'ok') FROM receipts WHERE team_id = {team:String}) AS receipt_errors,
       (SELECT toFloat64(sum(cost_usd)) FROM receipts WHERE team_id = {team:String}) AS cost,
       (SELECT toFloat64(sum(cost_usd)) FROM receipts_hourly WHERE team_id = {team:String}) AS hourly_cost,
       (SELECT sum(prompt_tokens) FROM receipts WHERE team_id = {team:String}) AS prompt_tokens,
       (SELECT sum(prompt_tokens) FROM receipts_hourly WHERE team_id = {team:String}) AS hourly_prompt_tokens,
       (SELECT countIf(task_id != '') FROM receipts WHERE team_id = {team:String}) AS task_receipts,
       (SELECT sum(requests) FROM task_costs WHERE team_id = {team:String}) AS task_requests,
       (SELECT toFloat64(sum(cost_usd)) FROM task_costs WHERE team_id = {team:String}) AS task_cost`,
    { team },
  );
  return t;
}

/** Asserts that `n` receipts of the team are stored exactly once everywhere. */
async function expectExactlyOnce(team: string, n: number) {
  const t = await totals(team);
  expect(t.receipts).toBe(n);
  expect(t.unique_ids).toBe(n);
  expect(t.hourly_requests).toBe(n);
  expect(t.hourly_errors).toBe(t.receipt_errors);
  expect(t.hourly_prompt_tokens).toBe(t.prompt_tokens);
  expect(t.hourly_cost).toBeCloseTo(t.cost, 9);
  expect(t.task_requests).toBe(t.task_receipts);
  const withTasks = await rows<{ c: number }>(`SELECT toFloat64(sum(cost_usd)) AS c FROM receipts WHERE team_id = {team:String} AND task_id != ''`, { team });
  expect(t.task_cost).toBeCloseTo(withTasks[0].c, 9);
  return t;
}

async function storedReceipts(instanceId: string): Promise<Receipt[]> {
  const found = await rows(`SELECT * FROM receipts WHERE instance_id = {id:String} ORDER BY seq`, { id: instanceId });
  return found.map(rowToReceipt);
}

const segmentsIn = (dataDir: string) =>
  readdirSync(path.join(dataDir, 'wal'))
    .filter((f) => f.endsWith('.jsonl'))
    .sort();

async function openJournal(name: string, overrides: Partial<ReceiptJournalOptions> = {}) {
  const dataDir = path.join(root, name);
  const signer = await ReceiptSigner.open(dataDir);
  const journal = await ReceiptJournal.open({
    dataDir,
    signer,
    insertRows: store.insertRows,
    sync: 'write',
    batchMaxRows: 10,
    batchMaxMs: 20,
    retryMaxDelayMs: 200,
    closeTimeoutMs: 2000,
    ...overrides,
  });
  return { journal, signer, dataDir };
}

async function until(condition: () => boolean, timeoutMs = 10_000) {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------

describe('ClickHouse store (chDB)', () => {
  it('keeps a setting given to one query out of the next query', async () => {
    const iso = await store.client.query({
      query: `SELECT toDateTime64('2026-11-21 22:00:00.123', 3, 'UTC') AS t`,
      format: 'JSONEachRow',
      clickhouse_settings: { date_time_output_format: 'iso' },
    });
    expect(await iso.json()).toEqual([{ t: '2026-11-21T22:00:00.123Z' }]);
    const plain = await store.client.query({ query: `SELECT toDateTime64('2026-11-21 22:00:00.123', 3, 'UTC') AS t`, format: 'JSONEachRow' });
    expect(await plain.json()).toEqual([{ t: '2026-11-21 22:00:00.123' }]);
  });

  it('inserts encoded rows once per deduplication token, and keeps the insert settings out of later queries', async () => {
    await store.client.command({
      query: `CREATE TABLE rows_insert_test (n UInt32, s String) ENGINE = MergeTree ORDER BY n SETTINGS non_replicated_deduplication_window = 100`,
    });
    const body = (columns: Array<readonly [string, string]>, rows: Array<[number, string]>) => {
      const w = new RowBinaryWriter();
      w.header(columns);
      for (const [n, s] of rows) {
        w.uint32(n);
        w.string(s);
      }
      return w.bytes();
    };
    const columns = [
      ['n', 'UInt32'],
      ['s', 'String'],
    ] as const;
    const insert = (token: string) =>
      store.insertRows({
        table: 'rows_insert_test',
        columns: ['n', 's'],
        body: body(
          [...columns],
          [
            [1, 'é'],
            [2, 'two'],
          ],
        ),
        settings: { insert_deduplicate: 1, insert_deduplication_token: token },
      });
    await insert('token-a');
    await insert('token-a'); // a retried insert: a no-op
    await insert('token-b');
    expect(await rows('SELECT n, s FROM rows_insert_test ORDER BY n, s')).toEqual([
      { n: 1, s: 'é' },
      { n: 1, s: 'é' },
      { n: 2, s: 'two' },
      { n: 2, s: 'two' },
    ]);
    expect(await rows(`SELECT getSetting('insert_deduplication_token') AS token`)).toEqual([{ token: '' }]);
    // A body cut short, and one whose header's types are not the table's: refused, nothing stored.
    const whole = body([...columns], [[3, 'three']]);
    await expect(
      store.insertRows({
        table: 'rows_insert_test',
        columns: ['n', 's'],
        body: whole.subarray(0, whole.length - 2),
        settings: { insert_deduplication_token: 'token-c' },
      }),
    ).rejects.toThrow(/Cannot read all data/);
    const wrongTypes = body(
      [
        ['n', 'UInt32'],
        ['s', 'UInt32'],
      ] as const as Array<readonly [string, string]>,
      [],
    );
    await expect(store.insertRows({ table: 'rows_insert_test', columns: ['n', 's'], body: wrongTypes, settings: {} })).rejects.toThrow(
      /Type of 's' must be String/,
    );
    expect(await rows('SELECT count() AS c FROM rows_insert_test')).toEqual([{ c: 4 }]);
    // Each body's file lives only as long as its insert.
    expect(readdirSync(path.join(root, 'clickhouse-inserts'))).toEqual([]);
  });

  it('runs its inserts at nice 10', async () => {
    // Background work yields the gateway's cores to the event loop (src/store/clickhouse.ts).
    // A column default is computed in the insert, with the insert's settings.
    await store.client.command({
      query: `CREATE TABLE nice_insert_test (n UInt64, nice Int64 DEFAULT toInt64(getSetting('os_thread_priority'))) ENGINE = MergeTree ORDER BY n`,
    });
    const w = new RowBinaryWriter();
    w.header([['n', 'UInt64']]);
    w.int64(1);
    await store.insertRows({ table: 'nice_insert_test', columns: ['n'], body: w.bytes(), settings: {} });
    expect(await rows('SELECT n, nice FROM nice_insert_test')).toEqual([{ n: 1, nice: 10 }]);
  });

  it('refuses a data directory whose path file() would read as a glob, before opening anything', async () => {
    // Inserts read their body through file(), which expands `{…}` in a path: under `tollgate{prod}`
    // an insert read no file, stored nothing and succeeded, and its WAL segment was deleted.
    for (const name of ['tollgate{prod}', 'data{1..2}', 'star*dir', 'what?']) {
      const dataDir = path.join(root, 'glob', name);
      await expect(openClickHouse({ dataDir })).rejects.toThrow(/has one of \{ \} \* \? in its path/);
      expect(fs.existsSync(dataDir)).toBe(false);
    }
  });

  it('refuses a second data directory in the same process', async () => {
    await expect(openClickHouse({ dataDir: path.join(root, 'other-store') })).rejects.toThrow(/only one active data directory per process/);
    // …and the open store is unaffected.
    expect(await (await store.client.query({ query: 'SELECT 1 AS one', format: 'JSONEachRow' })).json()).toEqual([{ one: 1 }]);
  });
});

describe('migrations', () => {
  it('are applied once, recorded with their checksums, and idempotent', async () => {
    expect(await migrateClickHouse(store.client)).toEqual({ applied: [] });
    const files = await loadMigrations(migrationsDir());
    const recorded = await rows<{ name: string; sha256: string }>(`SELECT name, sha256 FROM tollgate_migrations ORDER BY name`);
    expect(recorded).toEqual(files.map((f) => ({ name: f.name, sha256: f.sha256 })));
    expect(recorded.map((r) => r.name)).toEqual(expect.arrayContaining(['001_receipts.sql', '002_rollups.sql']));
    const tables = await rows<{ name: string; engine: string }>(
      `SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND name NOT LIKE '.%' ORDER BY name`,
    );
    expect(tables).toEqual(
      expect.arrayContaining([
        { name: 'receipts', engine: 'MergeTree' },
        { name: 'receipts_hourly', engine: 'AggregatingMergeTree' },
        { name: 'receipts_hourly_mv', engine: 'MaterializedView' },
        { name: 'task_costs', engine: 'AggregatingMergeTree' },
        { name: 'task_costs_mv', engine: 'MaterializedView' },
        { name: 'task_outcomes', engine: 'ReplacingMergeTree' },
        { name: 'tollgate_migrations', engine: 'MergeTree' },
      ]),
    );
    // Every view target keeps a deduplication log, or a replayed batch would double its rows.
    const windows = await rows<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'
         AND create_table_query LIKE '%non_replicated_deduplication_window = 10000%' ORDER BY name`,
    );
    expect(windows.map((t) => t.name)).toEqual(expect.arrayContaining(['receipts', 'receipts_hourly', 'task_costs']));
  });

  it('applies a new file once, and refuses to run when an applied file changed', async () => {
    const dir = path.join(root, 'migrations-copy');
    mkdirSync(dir);
    for (const f of readdirSync(migrationsDir())) copyFileSync(path.join(migrationsDir(), f), path.join(dir, f));
    writeFileSync(path.join(dir, '003_test.sql'), 'CREATE TABLE IF NOT EXISTS migration_test (x UInt8) ENGINE = MergeTree ORDER BY x;\n');
    expect(await migrateClickHouse(store.client, { dir })).toEqual({ applied: ['003_test.sql'] });
    expect(await migrateClickHouse(store.client, { dir })).toEqual({ applied: [] });

    // Same content with CRLF line ends is not a change.
    const crlf = readFileSync(path.join(dir, '002_rollups.sql'), 'utf8').replace(/\n/g, '\r\n');
    writeFileSync(path.join(dir, '002_rollups.sql'), crlf);
    expect(await migrateClickHouse(store.client, { dir })).toEqual({ applied: [] });

    appendFileSync(path.join(dir, '001_receipts.sql'), '-- an innocent-looking edit\n');
    writeFileSync(path.join(dir, '004_never.sql'), 'CREATE TABLE IF NOT EXISTS never_created (x UInt8) ENGINE = MergeTree ORDER BY x;\n');
    const failure = migrateClickHouse(store.client, { dir });
    await expect(failure).rejects.toThrow(MigrationError);
    await expect(failure).rejects.toThrow(/001_receipts\.sql was changed after it was applied/);
    // Nothing after a changed file runs.
    expect(await rows(`SELECT name FROM system.tables WHERE name = 'never_created'`)).toEqual([]);
  });

  it('splits statements on a semicolon at the end of a line, ignoring comment lines', () => {
    expect(splitStatements("-- a; comment;\nSELECT 1;\n\nSELECT ';' ;  \n-- trailing;\n")).toEqual(['SELECT 1', "SELECT ';'"]);
    const statements = readFileSync(path.join(migrationsDir(), '002_rollups.sql'), 'utf8');
    expect(splitStatements(statements)).toHaveLength(5);
  });

  it('rewrites statements for a cluster', () => {
    expect(
      clusterStatements(
        'CREATE TABLE IF NOT EXISTS receipts\n(\n    x UInt8\n)\nENGINE = MergeTree\nORDER BY x\nSETTINGS non_replicated_deduplication_window = 10000',
        'prod',
      ),
    ).toEqual([
      "CREATE TABLE IF NOT EXISTS receipts ON CLUSTER 'prod'\n(\n    x UInt8\n)\nENGINE = ReplicatedMergeTree\nORDER BY x\nSETTINGS replicated_deduplication_window = 10000",
      "CREATE TABLE IF NOT EXISTS receipts_distributed ON CLUSTER 'prod' AS receipts ENGINE = Distributed('prod', currentDatabase(), receipts, cityHash64(team_id))",
    ]);
    expect(clusterStatements('CREATE TABLE IF NOT EXISTS t (v DateTime) ENGINE = ReplacingMergeTree(v) ORDER BY v', '{cluster}')).toEqual([
      "CREATE TABLE IF NOT EXISTS t ON CLUSTER '{cluster}' (v DateTime) ENGINE = ReplicatedReplacingMergeTree(v) ORDER BY v",
    ]);
    expect(clusterStatements('ALTER TABLE receipts ADD COLUMN y UInt8', 'c')).toEqual([
      "ALTER TABLE receipts ON CLUSTER 'c' ADD COLUMN y UInt8",
      "ALTER TABLE receipts_distributed ON CLUSTER 'c' ADD COLUMN y UInt8",
    ]);
    expect(clusterStatements('ALTER TABLE t ADD COLUMN y UInt8', 'c')).toEqual(["ALTER TABLE t ON CLUSTER 'c' ADD COLUMN y UInt8"]);
    expect(clusterStatements('INSERT INTO t SELECT 1', 'c')).toEqual(['INSERT INTO t SELECT 1']);
    expect(() => clusterStatements('SELECT 1', "x'; DROP")).toThrow(MigrationError);

    // The real files: every object is created on the cluster, every table is replicated.
    return loadMigrations(migrationsDir()).then((files) => {
      const out = files.flatMap((f) => f.statements.flatMap((s) => clusterStatements(s, 'c')));
      const receiptAlters = files.flatMap((f) => f.statements).filter((s) => /^ALTER TABLE receipts\s/.test(s)).length;
      expect(receiptAlters).toBeGreaterThan(0);
      // One Distributed table, and each change to receipts made to it too.
      expect(out).toHaveLength(files.reduce((n, f) => n + f.statements.length, 0) + 1 + receiptAlters);
      for (const s of out) expect(s).toMatch(/^(CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS|ALTER TABLE) \w+ ON CLUSTER 'c'\s/);
      const engines = out.map((s) => /ENGINE = (\w+)/.exec(s)?.[1]).filter(Boolean);
      expect(engines.slice(0, 5)).toEqual([
        'ReplicatedMergeTree',
        'Distributed',
        'ReplicatedAggregatingMergeTree',
        'ReplicatedAggregatingMergeTree',
        'ReplicatedReplacingMergeTree',
      ]);
      expect(out.join('\n')).not.toMatch(/non_replicated/);
      expect(out.filter((s) => s.includes('MATERIALIZED VIEW')).length).toBeGreaterThanOrEqual(2);
    });
  });
});

describe('receipt journal', () => {
  it('appends land in ClickHouse after flush, and read back with valid signatures', async () => {
    const team = 'team_flush';
    const { journal, signer, dataDir } = await openJournal('flush');
    const appended: UnsignedReceipt[] = [];
    for (let i = 0; i < 5; i++) appended.push(await journal.append(draft(team)));
    appended.push(...(await Promise.all(Array.from({ length: 25 }, () => journal.append(draft(team))))));
    appended.push(await journal.append(draft(team, { team_id: team, feature: null, api_key_id: null, end_user: null, cost_usd: null, attempts: [] })));
    expect(journal.stats().appendedRecords).toBe(31);
    expect(journal.stats().pendingRecords).toBeGreaterThan(0);

    await journal.flush();
    expect(journal.stats()).toMatchObject({ pendingRecords: 0, pendingSegments: 0, insertedRecords: 31, appendedRecords: 31 });
    expect(segmentsIn(dataDir)).toEqual([]);
    await expectExactlyOnce(team, 31);

    for (const r of appended) {
      const stored = await fetchReceipt(store.client, r.receipt_id);
      // Signed by the worker for the insert, or on demand: the same bytes.
      expect(stored).toEqual(journal.sign(r));
      expect(verifyReceipt(stored!, signer.jwks())).toEqual({ valid: true });
    }
    expect(await fetchReceipt(store.client, uuidv7())).toBeNull();
    expect(await fetchReceipt(store.client, "nope' OR 1=1")).toBeNull();

    const chain = await storedReceipts(journal.instanceId);
    expect(chain.map((r) => r.seq)).toEqual(appended.map((_, i) => i + 1));
    expect(chain[0].prev_hash).toBe(GENESIS_PREV_HASH);
    expect(verifyChain(chain)).toEqual({ valid: true, breaks: [] });
    await journal.close();
  });

  it('stores version 2 receipts with every kind of value byte for byte: long and non-ASCII text, many attempts, nulls, extreme numbers', async () => {
    const team = 'team_values';
    const { journal, signer } = await openJournal('values');
    const attempt = (i: number) => ({
      provider: i % 2 ? 'ark' : 'openrouter',
      model: i % 3 ? 'doubao-✨' : 'gpt',
      status: i % 2 ? 429 : 200,
      error: i % 2 ? 'rate_limited' : null,
      latency_ms: 0.001 * i,
      prompt_tokens: i % 4 === 0 ? null : i,
      completion_tokens: i % 5 === 0 ? null : 4_294_967_295 - i,
      cost_usd: i % 6 === 0 ? null : i * 1e-9,
      accepted: [null, true, false][i % 3]!,
      reject_reason: i % 3 === 2 ? `too short ${'é'.repeat(i)}` : null,
    });
    const v2 = (overrides: Partial<ReceiptDraft>): ReceiptDraft => ({
      ...draft(team),
      receipt_version: 2,
      task_type: 'code',
      rule: 'long-prompts',
      classifier_tier: null,
      experiment: 'exp-1',
      variant: 'b',
      accepted: null,
      reasoning_tokens: 12,
      cache_write_tokens: 0,
      ...overrides,
    });
    const appended = [
      // 400 attempts: the row outgrows its WAL line; lengths of 2 and 3 LEB128 bytes.
      await journal.append(v2({ attempts: Array.from({ length: 400 }, (_, i) => attempt(i)), accepted: true })),
      await journal.append(v2({ end_user: 'é'.repeat(9000), feature: '要約✨'.repeat(40), cost_usd: 999_999.999999999, saved_cost_usd: 0.000000001 })),
      await journal.append(v2({ task_id: 'x'.repeat(127), request_id: 'y'.repeat(128), prompt_tokens: 4_294_967_295, cost_usd: null, accepted: false })),
      await journal.append(draft(team, { feature: 'v1 after v2' })),
    ];
    await journal.flush();
    for (const r of appended) {
      const stored = await fetchReceipt(store.client, r.receipt_id);
      expect(stored).toEqual(journal.sign(r));
      expect(verifyReceipt(stored!, signer.jwks())).toEqual({ valid: true });
    }
    expect(verifyChain(await storedReceipts(journal.instanceId))).toEqual({ valid: true, breaks: [] });
    await journal.close();
  });

  it('writes the appends of one event-loop turn with one write', async () => {
    const never: RowsInserter = () => new Promise(() => undefined);
    const { journal, dataDir } = await openJournal('group-commit', { insertRows: never, batchMaxRows: 20, batchMaxMs: 60_000, closeTimeoutMs: 10 });
    const writeSync = fs.writeSync;
    let writes = 0;
    fs.writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
      writes++;
      return (writeSync as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync;
    syncBuiltinESMExports();
    try {
      await Promise.all(Array.from({ length: 15 }, () => journal.append(draft('team_group'))));
      expect(writes).toBe(1);
      // 30 more in one turn fill segment 1 (5), segment 2 (20) and start segment 3 (5):
      // one write per segment.
      await Promise.all(Array.from({ length: 30 }, () => journal.append(draft('team_group'))));
      expect(writes).toBe(4);
      await journal.append(draft('team_group'));
      await journal.append(draft('team_group'));
      expect(writes).toBe(6);
    } finally {
      fs.writeSync = writeSync;
      syncBuiltinESMExports();
    }
    expect(segmentsIn(dataDir)).toHaveLength(3);
    expect(journal.stats()).toMatchObject({ pendingRecords: 47, pendingSegments: 3, appendedRecords: 47 });
    const lines = segmentsIn(dataDir).map((f) => readFileSync(path.join(dataDir, 'wal', f), 'utf8').split('\n').length - 1);
    expect(lines).toEqual([20, 20, 7]);
    await journal.close();
  });

  it('answers the appends whose lines reached the WAL before a write failed, and refuses the rest', async () => {
    const team = 'team_partial_write';
    const { journal } = await openJournal('partial-write', { batchMaxRows: 5, batchMaxMs: 60_000 });
    const openSync = fs.openSync;
    let segmentsOpened = 0;
    fs.openSync = ((...args: Parameters<typeof fs.openSync>) => {
      if (String(args[0]).endsWith('.jsonl') && ++segmentsOpened === 2) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
      return (openSync as (...a: unknown[]) => number)(...args);
    }) as typeof fs.openSync;
    syncBuiltinESMExports();
    let outcomes: Array<PromiseSettledResult<UnsignedReceipt>>;
    try {
      // One turn, one write: five lines fill the first segment, then the second cannot be opened.
      outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => journal.append(draft(team))));
    } finally {
      fs.openSync = openSync;
      syncBuiltinESMExports();
    }
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected']);
    expect((outcomes[5] as PromiseRejectedResult).reason).toMatchObject({ status: 503, code: 'receipts_unavailable' });
    const lastWritten = (outcomes[4] as PromiseFulfilledResult<UnsignedReceipt>).value;
    // The chain goes on from the last line in the WAL; the refused receipts are nowhere.
    const next = await journal.append(draft(team));
    expect(next.seq).toBe(lastWritten.seq + 1);
    expect(next.prev_hash).toBe(receiptHash(lastWritten));
    await journal.flush();
    await expectExactlyOnce(team, 6);
    expect(journal.stats().appendedRecords).toBe(6);
    await journal.close();
  });

  it('drains the WAL on a full disk: a segment is deleted without head.json while a later one keeps the chain', async () => {
    const team = 'team_disk_full';
    const { journal, dataDir } = await openJournal('disk-full', { batchMaxRows: 5, batchMaxMs: 60_000 });
    const first = path.join(dataDir, 'wal', '000000000001.jsonl');
    // The disk is full until the first segment's file is gone: head.json cannot be replaced.
    const promises = fs.promises;
    const open = promises.open;
    let refused = 0;
    promises.open = ((...args: Parameters<typeof promises.open>) => {
      if (String(args[0]).endsWith('head.json.tmp') && fs.existsSync(first)) {
        refused++;
        return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
      }
      return open(...args);
    }) as typeof promises.open;
    syncBuiltinESMExports();
    let landed: boolean;
    try {
      await Promise.all(Array.from({ length: 12 }, () => journal.append(draft(team))));
      landed = await journal.flush(10_000);
    } finally {
      promises.open = open;
      syncBuiltinESMExports();
    }
    expect(refused).toBeGreaterThan(0);
    expect(landed).toBe(true);
    await expectExactlyOnce(team, 12);
    expect(segmentsIn(dataDir)).toEqual([]);
    expect(JSON.parse(readFileSync(path.join(dataDir, 'wal', 'head.json'), 'utf8'))).toMatchObject({ segment: 3, seq: 12 });
    await journal.close();
  });

  it('counts an insert once when its acknowledgement was lost and it is retried', async () => {
    const team = 'team_lost_ack';
    let calls = 0;
    const flaky: RowsInserter = async (params) => {
      calls++;
      const result = await store.insertRows(params);
      if (calls === 1) throw new Error('socket hang up');
      return result;
    };
    const { journal } = await openJournal('lost-ack', { insertRows: flaky });
    await Promise.all(Array.from({ length: 25 }, () => journal.append(draft(team))));
    await journal.flush();
    expect(calls).toBeGreaterThan(3);
    expect(journal.stats().insertErrors).toBe(1);
    await expectExactlyOnce(team, 25);
    await journal.close();
  });

  it('replays exactly once after a crash between an acknowledged insert and the segment delete', async () => {
    const team = 'team_crash_window';
    let firstInsertDone!: () => void;
    const inserted = new Promise<void>((r) => (firstInsertDone = r));
    // Inserts for real, then "crashes": the acknowledgement never reaches the journal.
    const crashing: RowsInserter = async (params) => {
      await store.insertRows(params);
      firstInsertDone();
      return new Promise(() => undefined);
    };
    const first = await openJournal('crash-window', { insertRows: crashing, closeTimeoutMs: 50 });
    const before = await Promise.all(Array.from({ length: 35 }, () => first.journal.append(draft(team))));
    await inserted;
    await first.journal.close();
    expect(segmentsIn(first.dataDir)).toEqual(['000000000001.jsonl', '000000000002.jsonl', '000000000003.jsonl', '000000000004.jsonl']);
    expect((await totals(team)).receipts).toBe(10); // segment 1 is in ClickHouse and still in the WAL

    const logs: string[] = [];
    const second = await openJournal('crash-window', { log: (msg) => logs.push(msg) });
    expect(second.journal.instanceId).toBe(first.journal.instanceId);
    await second.journal.flush();
    expect(logs).toContain('receipts WAL: replaying segments left by the previous run');
    expect(second.journal.stats().insertedRecords).toBe(35);
    await expectExactlyOnce(team, 35);

    const next = await second.journal.append(draft(team));
    expect(next.seq).toBe(36);
    expect(next.prev_hash).toBe(receiptHash(before[34]));
    await second.journal.flush();
    const chain = await storedReceipts(second.journal.instanceId);
    expect(chain).toHaveLength(36);
    expect(verifyChain(chain)).toEqual({ valid: true, breaks: [] });
    await second.journal.close();
  });

  it('cuts a torn last line off at open and continues the chain after the last whole receipt', async () => {
    const team = 'team_torn';
    const down: RowsInserter = () => Promise.reject(new Error('ClickHouse is down'));
    const first = await openJournal('torn', { insertRows: down, batchMaxMs: 60_000, closeTimeoutMs: 10 });
    const receipts = await Promise.all(Array.from({ length: 3 }, () => first.journal.append(draft(team))));
    await first.journal.close();
    const [segment] = segmentsIn(first.dataDir);
    // A crash of the machine can also leave zeros; a crash of the process, half a line.
    const torn = `${'\u0000'.repeat(8)}\n{"api_key_id":null,"attempts":[{"error":nu`;
    appendFileSync(path.join(first.dataDir, 'wal', segment), torn);

    const logs: Array<{ msg: string; fields?: object }> = [];
    const second = await openJournal('torn', { insertRows: down, batchMaxMs: 60_000, closeTimeoutMs: 10, log: (msg, fields) => logs.push({ msg, fields }) });
    expect(logs).toContainEqual({ msg: 'receipts WAL: cut a torn tail off the last segment', fields: { segment: 1, bytes: torn.length } });
    expect(readFileSync(path.join(first.dataDir, 'wal', segment), 'utf8').endsWith('}\n')).toBe(true);
    const next = await second.journal.append(draft(team));
    expect(next.seq).toBe(4);
    expect(next.prev_hash).toBe(receiptHash(receipts[2]));
    await second.journal.close();

    const third = await openJournal('torn');
    await third.journal.flush();
    await expectExactlyOnce(team, 4);
    expect(verifyChain(await storedReceipts(third.journal.instanceId))).toEqual({ valid: true, breaks: [] });
    await third.journal.close();
  });

  it('keeps accepting receipts while ClickHouse is down, and drains the WAL when it is back', async () => {
    const team = 'team_outage';
    let up = false;
    const outage: RowsInserter = (params) => (up ? store.insertRows(params) : Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8123')));
    const { journal, dataDir } = await openJournal('outage', { insertRows: outage, batchMaxRows: 5 });
    for (let i = 0; i < 6; i++) await Promise.all(Array.from({ length: 4 }, () => journal.append(draft(team))));
    await until(() => journal.stats().insertErrors >= 2);
    expect(journal.stats()).toMatchObject({ pendingRecords: 24, insertedRecords: 0, appendedRecords: 24 });
    expect(journal.stats().pendingSegments).toBeGreaterThanOrEqual(5);
    expect(segmentsIn(dataDir).length).toBeGreaterThanOrEqual(5);
    expect((await totals(team)).receipts).toBe(0);

    up = true;
    await journal.flush();
    expect(journal.stats()).toMatchObject({ pendingRecords: 0, pendingSegments: 0, insertedRecords: 24 });
    await expectExactlyOnce(team, 24);
    await journal.close();
  });

  it('survives a client that points at a closed port, and replays at the next start', async () => {
    const team = 'team_closed_port';
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const unreachable = createClient({ url: `http://127.0.0.1:${port}`, request_timeout: 1000, log: { level: ClickHouseLogLevel.OFF } });
    const first = await openJournal('closed-port', { insertRows: execRowsInserter(unreachable), closeTimeoutMs: 100 });
    const appended = await Promise.all(Array.from({ length: 7 }, () => first.journal.append(draft(team))));
    expect(appended).toHaveLength(7);
    await until(() => first.journal.stats().insertErrors >= 1);
    await first.journal.close();
    await unreachable.close();
    expect(segmentsIn(first.dataDir).length).toBeGreaterThan(0);

    const second = await openJournal('closed-port');
    await second.journal.flush();
    await expectExactlyOnce(team, 7);
    await second.journal.close();
  });

  it('works with fsync, and continues instance id and seq across restarts with an empty WAL', async () => {
    const team = 'team_fsync';
    const first = await openJournal('fsync', { sync: 'fsync' });
    await Promise.all(Array.from({ length: 12 }, () => first.journal.append(draft(team))));
    await first.journal.append(draft(team));
    await first.journal.close();
    expect(segmentsIn(first.dataDir)).toEqual([]);
    // 13 receipts in at least two segments (batches of at most 10; a slow fsync may split more).
    const head = JSON.parse(readFileSync(path.join(first.dataDir, 'wal', 'head.json'), 'utf8'));
    expect(head.seq).toBe(13);
    expect(head.segment).toBeGreaterThanOrEqual(2);

    const second = await openJournal('fsync', { sync: 'fsync' });
    expect(second.journal.instanceId).toBe(first.journal.instanceId);
    const r = await second.journal.append(draft(team));
    expect(r.seq).toBe(14);
    await second.journal.flush();
    // The segment counter continued too: segment numbers (and insert tokens) are never reused.
    expect(JSON.parse(readFileSync(path.join(first.dataDir, 'wal', 'head.json'), 'utf8'))).toMatchObject({ seq: 14, segment: head.segment + 1 });
    await expectExactlyOnce(team, 14);
    expect(verifyChain(await storedReceipts(r.instance_id)).valid).toBe(true);
    await second.journal.close();
  });

  it('refuses a second journal on the same WAL, and bad drafts without touching the chain', async () => {
    const { journal } = await openJournal('lock');
    await expect(openJournal('lock')).rejects.toThrow(/already open in this process/);
    await expect(journal.append(draft('team_lock', { receipt_id: 'nope' }))).rejects.toThrow(/receipt_id must be a UUID/);
    expect((await journal.append(draft('team_lock'))).seq).toBe(1);
    await journal.close();
    await expect(journal.append(draft('team_lock'))).rejects.toThrow(/closed/);
  });
});

describe('signing off the request path', () => {
  it('serves a receipt appended but not yet signed: sign() verifies and equals what is stored later', async () => {
    const team = 'team_sign_on_demand';
    let up = false;
    const gated: RowsInserter = (params) => (up ? store.insertRows(params) : Promise.reject(new Error('ClickHouse is down')));
    const { journal, signer } = await openJournal('sign-on-demand', { insertRows: gated, batchMaxRows: 4 });
    const appended = await Promise.all(Array.from({ length: 6 }, () => journal.append(draft(team))));
    // The journal hands out the receipt before any signature exists.
    for (const r of appended) expect(r).not.toHaveProperty('signature');
    const served = appended.map((r) => journal.sign(r));
    for (const r of served) expect(verifyReceipt(r, signer.jwks())).toEqual({ valid: true });
    expect(verifyChain(served)).toEqual({ valid: true, breaks: [] });
    // Signing again (or in the worker) gives the same bytes: Ed25519 is deterministic.
    expect(journal.sign(served[0])).toEqual(served[0]);
    expect(await fetchReceipt(store.client, appended[0].receipt_id)).toBeNull();

    up = true;
    await journal.flush();
    await expectExactlyOnce(team, 6);
    for (const r of served) expect(await fetchReceipt(store.client, r.receipt_id)).toEqual(r);
    await journal.close();
  });

  it('retries a batch whose worker thread died mid-batch: nothing lost, nothing doubled', async () => {
    const team = 'team_worker_crash';
    const dataDir = path.join(root, 'worker-crash');
    const signer = await ReceiptSigner.open(dataDir);
    const worker = new SegmentWorker(ReceiptSigner.privateKeyOf(signer), signer.keyId);
    let prepares = 0;
    const killedWhile: string[] = [];
    // The thread is killed while it prepares the first segment, and again with the third.
    const preparer = {
      prepare(file: string) {
        const prepared = worker.prepare(file);
        if (++prepares === 1 || prepares === 3) {
          killedWhile.push(path.basename(file));
          void worker.kill();
        }
        return prepared;
      },
      recycle: (body: Uint8Array) => worker.recycle(body),
      close: () => worker.close(),
    };
    const { journal } = await openJournal('worker-crash', { preparer, batchMaxRows: 10 });
    const appended = await Promise.all(Array.from({ length: 35 }, () => journal.append(draft(team))));
    await journal.flush();
    expect(killedWhile).toEqual(['000000000001.jsonl', '000000000002.jsonl']);
    expect(worker.started).toBe(3);
    expect(journal.stats()).toMatchObject({ insertErrors: 2, insertedRecords: 35, pendingRecords: 0 });
    await expectExactlyOnce(team, 35);
    const chain = await storedReceipts(journal.instanceId);
    expect(chain.map((r) => r.receipt_id)).toEqual(appended.map((r) => r.receipt_id));
    expect(verifyChain(chain)).toEqual({ valid: true, breaks: [] });
    for (const r of chain) expect(verifyReceipt(r, signer.jwks()).valid).toBe(true);
    await journal.close();
    await expect(worker.prepare(path.join(dataDir, 'wal', 'x.jsonl'))).rejects.toThrow(/closed/);
  });

  it('never stores a receipt under a signing key other than the one it names', async () => {
    const team = 'team_key_swap';
    const down: RowsInserter = () => Promise.reject(new Error('ClickHouse is down'));
    const first = await openJournal('key-swap', { insertRows: down, closeTimeoutMs: 10 });
    await Promise.all(Array.from({ length: 3 }, () => first.journal.append(draft(team))));
    await first.journal.close();
    // The key file is lost and a new key is made: the WAL's receipts name the old one.
    rmSync(path.join(first.dataDir, SIGNING_KEY_FILE));
    const logs: Array<{ msg: string; fields?: object }> = [];
    const second = await openJournal('key-swap', { closeTimeoutMs: 10, log: (msg, fields) => logs.push({ msg, fields }) });
    expect(second.signer.keyId).not.toBe(first.signer.keyId);
    await until(() => second.journal.stats().insertErrors >= 1);
    const failure = logs.find((l) => l.msg === 'receipts insert failed, will retry');
    expect(failure?.fields).toMatchObject({ error: expect.stringMatching(/names signing key .* restore the receipt-signing-key\.pem/) });
    expect((await totals(team)).receipts).toBe(0);
    expect(second.journal.stats().pendingRecords).toBe(3);
    await second.journal.close();
  });

  it('replays a WAL of signed lines written by the previous version, then chains on', async () => {
    const team = 'team_legacy_wal';
    const dataDir = path.join(root, 'legacy-wal');
    const walDir = path.join(dataDir, 'wal');
    mkdirSync(walDir, { recursive: true });
    const instanceId = uuidv7();
    writeFileSync(path.join(dataDir, 'instance-id'), `${instanceId}\n`);
    const signer = await ReceiptSigner.open(dataDir);
    // The old format: signed canonical JSON per line, prev_hash over the signed line.
    const lines: string[] = [];
    let prev = GENESIS_PREV_HASH;
    for (let seq = 1; seq <= 4; seq++) {
      const u = unsignedReceipt(draft(team), { instance_id: instanceId, seq, prev_hash: prev, key_id: signer.keyId });
      lines.push(canonicalReceiptJson(u, signer.sign(u)));
      prev = sha256Hex(lines.at(-1)!);
    }
    writeFileSync(path.join(walDir, '000000000001.jsonl'), `${lines.join('\n')}\n`);
    const tokens: string[] = [];
    const recording: RowsInserter = (params) => {
      tokens.push(String(params.settings.insert_deduplication_token));
      return store.insertRows(params);
    };
    const { journal } = await openJournal('legacy-wal', { insertRows: recording });
    await journal.flush();
    // Same token as the previous version gave this segment: a replay of an insert it made is a no-op.
    expect(tokens).toEqual([`${instanceId}:1:${sha256Hex(lines[3])}`]);
    const next = await journal.append(draft(team));
    expect(next.seq).toBe(5);
    await journal.flush();
    const stored = await storedReceipts(instanceId);
    expect(stored.map((r) => canonicalReceiptJson(r, r.signature))).toEqual(lines.concat(canonicalReceiptJson(next, journal.sign(next).signature)));
    for (const r of stored) expect(verifyReceipt(r, signer.jwks()).valid).toBe(true);
    // The new receipt links to the last old one by the current definition.
    expect(next.prev_hash).toBe(receiptHash(stored[3]));
    await expectExactlyOnce(team, 5);
    await journal.close();
  });
});

describe('find: receipts served from the WAL until they land', () => {
  it('reads each receipt from its WAL line, signed as ClickHouse will hold it, until its segment is inserted', async () => {
    const { journal, signer, dataDir } = await openJournal('find', { batchMaxRows: 100, batchMaxMs: 10_000 });
    // Multi-byte features (the draft's) and a line longer than the reader's first 4 KB read.
    const manyAttempts = Array.from({ length: 80 }, (_, i) => ({ provider: 'ark', model: `doubao-${i}`, status: 503, error: 'http_503', latency_ms: i }));
    const drafts = [...Array.from({ length: 11 }, () => draft('team_find')), draft('team_find', { attempts: manyAttempts })];
    const appended = await Promise.all(drafts.map((d) => journal.append(d)));
    expect(Buffer.byteLength(canonicalReceiptJson(appended.at(-1)!))).toBeGreaterThan(4096);
    expect(journal.landedSeq).toBe(0);
    for (const r of appended) {
      const served = await journal.find(r.receipt_id);
      expect(served).toEqual(journal.sign(r));
      expect(verifyReceipt(served!, signer.jwks())).toEqual({ valid: true });
    }
    expect(await journal.find(uuidv7())).toBeUndefined();

    await journal.flush();
    expect(journal.landedSeq).toBe(appended.at(-1)!.seq);
    // Inserted: the segment file is gone, find() says so, and ClickHouse serves the same bytes.
    expect(readdirSync(path.join(dataDir, 'wal')).filter((f) => f.endsWith('.jsonl'))).toEqual([]);
    for (const r of appended) {
      expect(await journal.find(r.receipt_id)).toBeUndefined();
      expect(await fetchReceipt(store.client, r.receipt_id)).toEqual(journal.sign(r));
    }
    const next = await journal.append(draft('team_find'));
    expect((await journal.find(next.receipt_id))?.seq).toBe(next.seq);
    await journal.close();
  });

  it('on a cluster, keeps serving an inserted segment for the grace period (a replica may lag), then deletes its file', async () => {
    const { journal, dataDir } = await openJournal('find-grace', { batchMaxRows: 100, batchMaxMs: 10_000, landedGraceMs: 300 });
    const walFiles = () => readdirSync(path.join(dataDir, 'wal')).filter((f) => f.endsWith('.jsonl'));
    const landed = [await journal.append(draft('team_find_grace')), await journal.append(draft('team_find_grace'))];
    await journal.flush();
    expect(journal.landedSeq).toBe(landed[1]!.seq);
    // Inserted, but within the grace: still served from the WAL.
    const pending = await journal.append(draft('team_find_grace'));
    for (const r of landed) expect((await journal.find(r.receipt_id))?.receipt_id).toBe(r.receipt_id);
    expect(walFiles()).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 400));
    for (const r of landed) expect(await journal.find(r.receipt_id)).toBeUndefined();
    // The one that never landed is served whatever the grace.
    expect((await journal.find(pending.receipt_id))?.receipt_id).toBe(pending.receipt_id);
    expect(walFiles()).toHaveLength(1);
    // Closing deletes files still in their grace: they are inserted, nothing to replay.
    await journal.flush();
    expect(walFiles()).toHaveLength(1);
    await journal.close();
    expect(walFiles()).toEqual([]);
  });

  it('with ClickHouse unreachable, finds at most its limit: the newest receipts', async () => {
    const down: RowsInserter = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8123'));
    const { journal } = await openJournal('find-down', { insertRows: down, batchMaxRows: 4, closeTimeoutMs: 100, findLimit: 10 });
    const appended: UnsignedReceipt[] = [];
    for (let i = 0; i < 30; i++) appended.push(await journal.append(draft('team_find_down')));
    expect(journal.landedSeq).toBe(0);
    // Whole segments go: between the limit and the limit plus one segment are found.
    const found = [];
    for (const r of appended) if (await journal.find(r.receipt_id)) found.push(r.seq);
    expect(found.length).toBeGreaterThanOrEqual(10);
    expect(found.length).toBeLessThanOrEqual(13);
    expect(found).toEqual(appended.slice(-found.length).map((r) => r.seq));
    await journal.close();
  });
});

describe('find after a restart', () => {
  it('serves the receipts the previous run left in the WAL (the newest, within the limit) until they land', async () => {
    const down: RowsInserter = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8123'));
    const first = await openJournal('find-restart', { insertRows: down, batchMaxRows: 4, closeTimeoutMs: 100 });
    const appended: UnsignedReceipt[] = [];
    for (let i = 0; i < 30; i++) appended.push(await first.journal.append(draft('team_find_restart')));
    await first.journal.close();

    // Still down: the ids a client holds from before the restart are found in the WAL.
    const second = await openJournal('find-restart', { insertRows: down, batchMaxRows: 4, closeTimeoutMs: 100, findLimit: 10 });
    const found: number[] = [];
    for (const r of appended) {
      const served = await second.journal.find(r.receipt_id);
      if (served) {
        expect(served).toEqual(second.journal.sign(r));
        found.push(r.seq);
      }
    }
    expect(found.length).toBeGreaterThanOrEqual(10);
    expect(found).toEqual(appended.slice(-found.length).map((r) => r.seq));
    // This run's receipts come after them, found too.
    const next = await second.journal.append(draft('team_find_restart'));
    expect((await second.journal.find(next.receipt_id))?.seq).toBe(next.seq);
    await second.journal.close();

    // Up again: they land, and are no longer served from the WAL.
    const third = await openJournal('find-restart');
    await third.journal.flush();
    expect(await third.journal.find(appended.at(-1)!.receipt_id)).toBeUndefined();
    expect(await fetchReceipt(store.client, appended.at(-1)!.receipt_id)).toEqual(third.journal.sign(appended.at(-1)!));
    await third.journal.close();
  });
});

describe('kill -9', () => {
  const child = fileURLToPath(new URL('./journal-crash-child.ts', import.meta.url));

  /** Runs the child until it has reported `minResolved` resolved appends (and a bit more), then SIGKILLs it. */
  function runUntilKilled(walDir: string, team: string, minResolved: number, extraMs: number) {
    return new Promise<Map<number, string>>((resolve, reject) => {
      const proc = spawn(process.execPath, ['--import', 'tsx', child, root, walDir, team], { stdio: ['ignore', 'pipe', 'pipe'] });
      const resolved = new Map<number, string>();
      let buffer = '';
      let stderr = '';
      let killing = false;
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (chunk: string) => {
        buffer += chunk;
        const lines = buffer.split('\n');
        buffer = lines.pop()!;
        for (const line of lines) {
          const [seq, id] = line.split(' ');
          if (id) resolved.set(Number(seq), id);
        }
        if (!killing && resolved.size >= minResolved) {
          killing = true;
          setTimeout(() => proc.kill('SIGKILL'), extraMs);
        }
      });
      proc.stderr.on('data', (chunk) => (stderr += chunk));
      proc.on('close', (code, signal) => {
        if (signal === 'SIGKILL') resolve(resolved);
        else reject(new Error(`child exited with ${code ?? signal}: ${stderr}`));
      });
    });
  }

  it('loses no acknowledged receipt and duplicates none, through two crashes', async () => {
    const team = 'team_kill9';
    const walDir = path.join(root, 'kill9');
    // One chDB data directory per process: the child owns the store while it runs.
    await store.close();
    const run1 = await runUntilKilled(walDir, team, 400, 37);
    const run2 = await runUntilKilled(walDir, team, 300, 5);
    store = await openClickHouse({ dataDir: root });

    const signer = await ReceiptSigner.open(walDir);
    const journal = await ReceiptJournal.open({ dataDir: walDir, signer, insertRows: store.insertRows, sync: 'write', batchMaxRows: 40, batchMaxMs: 15 });
    await journal.flush();
    await journal.close();

    const chain = await storedReceipts(journal.instanceId);
    const stored = new Set(chain.map((r) => r.receipt_id));
    for (const [seq, id] of [...run1, ...run2]) expect(stored.has(id), `seq ${seq}`).toBe(true);
    // Every line that reached the WAL was replayed once: seqs 1..n without a gap or a repeat.
    expect(chain.map((r) => r.seq)).toEqual(chain.map((_, i) => i + 1));
    expect(chain.length).toBeGreaterThanOrEqual(run1.size + run2.size);
    expect(Math.min(...run2.keys())).toBeGreaterThan(Math.max(...run1.keys()));
    await expectExactlyOnce(team, chain.length);
    expect(verifyChain(chain)).toEqual({ valid: true, breaks: [] });
    for (const r of chain.filter((_, i) => i % 50 === 0)) expect(verifyReceipt(r, signer.jwks()).valid).toBe(true);
  }, 120_000);
});
