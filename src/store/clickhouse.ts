// The receipts store (DESIGN §2): a ClickHouse server over HTTP when a URL is configured,
// otherwise chDB (the ClickHouse engine in-process) in `${dataDir}/clickhouse`. Both are
// driven through the same `@clickhouse/client` API.
import { randomUUID } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { type ClickHouseClient, type ClickHouseSettings, createClient } from '@clickhouse/client';
import { repairDeduplicationLogs } from './chdb-dedup-log.js';

export interface ClickHouseStore {
  client: ClickHouseClient;
  kind: 'chdb' | 'server';
  /** Inserts rows already encoded (the receipts journal's segments). */
  insertRows: RowsInserter;
  close(): Promise<void>;
}

/** One insert of rows already encoded (row-binary.ts). */
export interface RowsInsert {
  table: string;
  /** The columns the body's rows hold, in their order (the body's header names them too). */
  columns: readonly string[];
  /** RowBinaryWithNamesAndTypes: the header, then the rows. */
  body: Uint8Array;
  settings: Record<string, string | number>;
  signal?: AbortSignal;
}

/** Resolves once the server (or the embedded engine) acknowledged the insert. */
export type RowsInserter = (insert: RowsInsert) => Promise<void>;

/** Inserts through the client's `exec`: the body is sent as it is, not serialized again. */
export function execRowsInserter(client: ClickHouseClient): RowsInserter {
  return async ({ table, columns, body, settings, signal }) => {
    const result = await client.exec({
      query: `INSERT INTO ${table} (${columns.join(', ')}) FORMAT RowBinaryWithNamesAndTypes`,
      values: Readable.from([Buffer.from(body.buffer, body.byteOffset, body.byteLength)], { objectMode: false }),
      abort_signal: signal,
      clickhouse_settings: settings,
    });
    // The (empty) response must be read to the end, or an HTTP socket stays busy.
    await finished(result.stream.resume());
  };
}

export interface OpenClickHouseOptions {
  /** Server URL (`http://host:8123`). Without it the embedded engine (chDB) is used. */
  url?: string;
  username?: string;
  password?: string;
  /**
   * Server database; it must exist. Ignored by the embedded engine, whose data directory is
   * private to Tollgate and always uses `default` (chdb/connection has no database option).
   */
  database?: string;
  /** Where the embedded engine keeps its data: `${dataDir}/clickhouse`. */
  dataDir: string;
  requestTimeoutMs?: number;
  /** Told what the crash repair of the embedded engine's deduplication logs did. */
  log?: (msg: string, fields: object) => void;
}

type ClientConfig = NonNullable<Parameters<typeof createClient>[0]>;
type Connection = NonNullable<ClientConfig['connection']>;

export async function openClickHouse(opts: OpenClickHouseOptions): Promise<ClickHouseStore> {
  if (opts.url) {
    // No network traffic here: a gateway must be able to start while ClickHouse is down
    // (receipts wait in the WAL).
    const client = createClient({
      url: opts.url,
      username: opts.username,
      password: opts.password,
      database: opts.database,
      request_timeout: opts.requestTimeoutMs,
      application: 'tollgate',
      // Parameters past a few KB (an analytics filter naming thousands of end users) go in a
      // multipart body: in the URL they pass proxies' and the server's request-line limits.
      use_multipart_params_auto: true,
    });
    return { client, kind: 'server', insertRows: execRowsInserter(client), close: () => client.close() };
  }

  const dataDir = path.resolve(opts.dataDir);
  // Insert bodies are read through file(), which takes its path as a glob. `{a,b}` or `{x}`
  // name other files: an insert would read none, store nothing and succeed, and its WAL
  // segment would be deleted as landed. `*` and `?` would make every insert list directories
  // to find its own file. So such a directory is refused, before anything is opened.
  if (GLOB_CHARACTERS.test(dataDir)) {
    throw new Error(
      `The data directory ${JSON.stringify(dataDir)} has one of { } * ? in its path, which the embedded ClickHouse reads as a pattern; ` +
        'choose a directory without them, or point CLICKHOUSE_URL at a ClickHouse server.',
    );
  }
  const { createChdbConnection } = await loadChdb();
  const dir = path.join(dataDir, 'clickhouse');
  await mkdir(dir, { recursive: true });
  // Before chDB loads them: records of inserts that a kill cut short would drop their replay.
  for (const repair of await repairDeduplicationLogs(dir)) {
    opts.log?.(
      repair.skipped ? 'could not check a deduplication log of the embedded ClickHouse' : 'dropped deduplication records of inserts a crash cut short',
      repair,
    );
  }
  // chDB binds one data directory per process: opening a second, different path while
  // this one is open throws "only one active data directory per process".
  const connection = await withPerQuerySettings(createChdbConnection({ path: dir }));
  const client = createClient({ connection, request_timeout: opts.requestTimeoutMs });
  const insertsDir = path.join(dataDir, 'clickhouse-inserts');
  await rm(insertsDir, { recursive: true, force: true }); // bodies of inserts a crash cut short
  await mkdir(insertsDir);
  return { client, kind: 'chdb', insertRows: fileRowsInserter(client, insertsDir), close: () => client.close() };
}

interface ChdbConnectionModule {
  createChdbConnection(opts: { path: string }): Connection;
}

/** What ClickHouse's file() reads as a glob in a path (a backslash does not escape them in chDB 3.4). */
const GLOB_CHARACTERS = /[{}*?]/;

/**
 * Inserts into chDB through a file: the body is written to `dir` and read by the engine's
 * `file()` table function. chDB's own insert of bytes (`rawInsert`) takes text formats only,
 * and a binary body sent inline with the statement is cut short; through a file the engine
 * reads RowBinary as a server does. A segment's file lives as long as its insert: the WAL
 * segment stays the record, and openClickHouse empties `dir` after a crash.
 */
function fileRowsInserter(client: ClickHouseClient, dir: string): RowsInserter {
  return async ({ table, columns, body, settings, signal }) => {
    const file = path.join(dir, `${randomUUID()}.rowbinary`);
    try {
      await writeFile(file, body, { signal });
      await client.command({
        query: `INSERT INTO ${table} (${columns.join(', ')}) SELECT * FROM file({file:String}, 'RowBinaryWithNamesAndTypes')`,
        query_params: { file },
        clickhouse_settings: { ...settings, os_thread_priority: String(EMBEDDED_INSERT_NICE) } as ClickHouseSettings,
        abort_signal: signal,
      });
    } finally {
      await rm(file, { force: true });
    }
  };
}

/**
 * The embedded engine's insert threads run on the gateway's own cores, and a segment's insert
 * is background work: like the receipt segment worker, they yield to the event loop (nice 10,
 * ClickHouse's os_thread_priority; raising a nice value needs no privilege, and the engine
 * restores the thread's priority after the query). bench:ab, c=32, embedded stores, four runs
 * of 16–20 rounds, two each way: requests per second +5.1, +4.8, +2.5 and −1.2 %, CPU per
 * request unchanged (−4.3 to +1.6 %); every receipt still written.
 */
const EMBEDDED_INSERT_NICE = 10;

async function loadChdb(): Promise<ChdbConnectionModule> {
  // chdb is an optional dependency (~540 MB): a variable specifier keeps TypeScript and
  // bundlers from requiring it when it was installed with --omit=optional.
  const specifier = 'chdb/connection';
  try {
    return (await import(specifier)) as ChdbConnectionModule;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new Error(
        'No ClickHouse URL is configured (CLICKHOUSE_URL) and the embedded engine is not installed: ' +
          'install the optional dependency with `npm install chdb`, or point CLICKHOUSE_URL at a ClickHouse server.',
        { cause: err },
      );
    }
    throw err;
  }
}

type Settings = Record<string, unknown>;

/**
 * chdb/connection applies `clickhouse_settings` as `SET …; <query>` on its single session,
 * so a setting passed with one query stays in force for every later query of the process
 * (an `insert_deduplication_token` leaking into someone else's insert, a
 * `date_time_output_format` changing every reader's dates). On a server, settings are per
 * query. This wrapper restores server semantics: every setting that any earlier call
 * changed and this call does not set is reset to the value it had when the session opened.
 * chDB runs one query at a time per session, so the `SET …; query` pairs cannot interleave.
 */
async function withPerQuerySettings(connection: Connection): Promise<Connection> {
  const rs = await connection.query({ query: 'SELECT name, value FROM system.settings FORMAT JSONEachRow' });
  const baseline = new Map<string, string>();
  let text = '';
  for await (const chunk of rs.stream) text += chunk.toString();
  for (const line of text.split('\n')) {
    if (!line) continue;
    const { name, value } = JSON.parse(line) as { name: string; value: string };
    baseline.set(name, value);
  }
  const touched = new Set<string>();
  const isolate = <P extends { clickhouse_settings?: Settings }>(params: P): P => {
    const own = params.clickhouse_settings ?? {};
    const settings: Settings = {};
    for (const name of touched) {
      if (!(name in own) && baseline.has(name)) settings[name] = baseline.get(name);
    }
    for (const [name, value] of Object.entries(own)) {
      if (value === undefined) continue;
      settings[name] = value;
      touched.add(name);
    }
    return { ...params, clickhouse_settings: settings };
  };
  return {
    ping: (p) => connection.ping(p),
    query: (p) => connection.query(isolate(p)),
    insert: (p) => connection.insert(isolate(p)),
    command: (p) => connection.command(isolate(p)),
    exec: (p) => connection.exec(isolate(p)),
    close: () => connection.close(),
  };
}

/** Above any number of parts Tollgate's tables have due for removal at once. */
const SERIAL_PART_REMOVAL = 1_000_000;

/**
 * Tunes Tollgate's tables for the embedded engine, after its migrations (every start: new
 * tables get it too). ClickHouse removes merged-away parts on up to 128 threads at once
 * (`cleanup_threads`) when more than `concurrent_part_removal_threshold` (100) are due, and
 * its global thread pool keeps idle threads for good: inside Tollgate's process, one such
 * round a few minutes into a steady load left ~125 idle threads and ~23 MB more RSS
 * (bench:chdb-memory). Such a round is a few hundred small local part directories: removed
 * one after another, it takes milliseconds. A ClickHouse server is left as its operator set it.
 */
export async function tuneEmbeddedTables(client: ClickHouseClient): Promise<void> {
  const rs = await client.query({
    query: `SELECT name FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%MergeTree'
            AND engine_full NOT LIKE {tuned:String}`,
    query_params: { tuned: `%concurrent_part_removal_threshold = ${SERIAL_PART_REMOVAL}%` },
    format: 'JSONEachRow',
  });
  for (const { name } of await rs.json<{ name: string }>()) {
    await client.command({
      query: 'ALTER TABLE {table:Identifier} MODIFY SETTING concurrent_part_removal_threshold = {threshold:UInt64}',
      query_params: { table: name, threshold: SERIAL_PART_REMOVAL },
    });
  }
}
