// The configuration store: one Prisma client over a driver adapter, on either
//   - PostgreSQL (`databaseUrl` set): a `pg` Pool + @prisma/adapter-pg, or
//   - embedded PGlite (Postgres compiled to WASM) with its data in `${dataDir}/pg`.
//
// Prisma 6.19's JS engine (`engineType = "client"`) needs a driver adapter. There is no
// official PGlite adapter for it, so the embedded case exposes PGlite over the Postgres
// wire protocol with @electric-sql/pglite-socket and uses the same @prisma/adapter-pg as
// production: one code path for both (DESIGN §2).
//
// Why a Unix socket in a private temporary directory and not a loopback TCP port: PGlite
// has no authentication, so anything that can reach the socket owns the config database
// (it could mint an admin token). A socket inside a 0700 directory is reachable only by
// this user; a loopback port is reachable by every local user. (TCP is the fallback where
// a Unix socket path cannot be used.)
//
// Why a pool of exactly one connection for PGlite: PGlite is a single-session database;
// pglite-socket multiplexes connections message by message, which is not safe with the
// extended query protocol (a Parse from one connection can land between another
// connection's Parse and Execute). One connection keeps every statement and every
// transaction strictly serial, which is what PGlite does internally anyway.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '@prisma/client';
import pg from 'pg';
import { takeLock } from './process-lock.js';

export {
  AcceptCheck,
  AccessRole,
  BudgetAction,
  BudgetPeriod,
  BudgetScope,
  CacheMode,
  Prisma,
  PrismaClient,
  ProviderKind,
  RouteStrategy,
  StickyBy,
} from '@prisma/client';

export interface ConfigDb {
  prisma: PrismaClient;
  kind: 'pglite' | 'postgres';
  /**
   * The pg Pool under Prisma. Used by the migration runner, which needs one dedicated
   * connection (session advisory lock, multi-statement SQL files). For PGlite the pool has
   * a single connection: do not hold a client from it while awaiting Prisma queries.
   */
  pool: pg.Pool;
  close(): Promise<void>;
}

export interface OpenConfigDbOptions {
  /** PostgreSQL connection string; when absent, embedded PGlite in `${dataDir}/pg`. */
  databaseUrl?: string;
  dataDir: string;
}

/** Thrown when another live process already has the embedded database open. */
export class ConfigDbLockedError extends Error {
  readonly code = 'CONFIG_DB_LOCKED';
  constructor(
    readonly lockFile: string,
    readonly ownerPid: number | null,
  ) {
    super(
      `the embedded config database ${path.dirname(lockFile)}/pg is in use by ${ownerPid === null ? 'another process' : `process ${ownerPid}`}; ` +
        'stop that process or go through its admin API',
    );
  }
}

/**
 * Interactive transactions wait for a connection (maxWait) and then run (timeout). Prisma's
 * defaults (2 s / 5 s) are tight for PGlite's single connection under a burst of reads;
 * admin mutations are rare and short, so waiting longer beats failing.
 */
const TRANSACTION_OPTIONS = { maxWait: 15_000, timeout: 30_000 };

export async function openConfigDb(opts: OpenConfigDbOptions): Promise<ConfigDb> {
  return opts.databaseUrl ? openPostgres(opts.databaseUrl) : openPglite(opts.dataDir);
}

async function openPostgres(databaseUrl: string): Promise<ConfigDb> {
  // Prisma's `?schema=` URL parameter is not supported: queries and migrations use "public".
  // Refuse it rather than silently writing somewhere other than asked.
  let schema: string | null = null;
  try {
    schema = new URL(databaseUrl).searchParams.get('schema');
  } catch {
    // not a URL (e.g. a key=value connection string): pg parses it
  }
  if (schema !== null && schema !== 'public') {
    throw new Error(`DATABASE_URL: schema=${schema} is not supported; Tollgate uses the "public" schema of its database`);
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    // Fail instead of hanging when the server is unreachable (pg waits forever by default).
    connectionTimeoutMillis: 10_000,
  });
  // An idle client that loses its server (restart, network) emits 'error' on the pool;
  // without a listener that would crash the process. The pool replaces the client.
  pool.on('error', () => {});
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool), transactionOptions: TRANSACTION_OPTIONS });
  try {
    // Fail fast with a clear error at start rather than on the first request.
    await prisma.$queryRaw`SELECT 1`;
  } catch (err) {
    await prisma.$disconnect().catch(() => {});
    await pool.end().catch(() => {});
    throw err;
  }
  let closed = false;
  return {
    prisma,
    pool,
    kind: 'postgres',
    async close() {
      if (closed) return;
      closed = true;
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

const execFileAsync = promisify(execFile);

// The configuration data is tiny; PGlite's default 128 MB of shared buffers would be most of
// the gateway's resident memory (measured: 293 MB → 179 MB RSS at open).
const PGLITE_CONF = 'shared_buffers = 16MB';

// Run by a child process: PGlite (its CommonJS build, at a resolved path) creates the cluster.
const INITDB_SCRIPT = `
const [pglite, dataDir, conf] = process.argv.slice(1);
require(pglite).PGlite.create({ dataDir, postgresqlconf: conf }).then((db) => db.close());
`;

/**
 * A new cluster is made (initdb) by a short-lived child process. initdb grows PGlite's
 * WebAssembly memory to ~600 MB and WebAssembly memory never shrinks: in this process it would
 * stay for its whole life (and a worker thread's leaves its malloc arenas behind). Measured at
 * an idle first start: 606 MB RSS in-process, 579–610 MB with a worker, ≈ 450 MB as a child, the
 * same as any restart. It costs one Node start (~50 ms), once per data dir.
 */
async function initdbInChild(pgDir: string): Promise<void> {
  const pglite = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  await execFileAsync(process.execPath, ['-e', INITDB_SCRIPT, pglite, pgDir, PGLITE_CONF], { env: {}, timeout: 120_000 });
}

async function openPglite(dataDir: string): Promise<ConfigDb> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const releaseLock = await acquireLock(path.join(dataDir, 'pg.lock'));
  const socketNote = path.join(dataDir, 'pg.socket-dir');
  let pglite: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  let socketDir: string | undefined;
  let pool: pg.Pool | undefined;
  try {
    const pgDir = path.join(dataDir, 'pg');
    if (!existsSync(path.join(pgDir, 'PG_VERSION'))) await initdbInChild(pgDir);
    pglite = await PGlite.create({ dataDir: pgDir, postgresqlconf: PGLITE_CONF });

    // mkdtemp creates the directory with mode 0700. Its path is noted in the data dir, so
    // that the next open removes it if this process dies without close() (kill -9).
    await removeStaleSocketDir(socketNote);
    socketDir = await mkdtemp(path.join(os.tmpdir(), SOCKET_DIR_PREFIX));
    writeFileSync(socketNote, socketDir, { mode: 0o600 });
    // libpq convention, which `pg` follows: host = socket directory, file `.s.PGSQL.<port>`.
    const port = 5432;
    const socketPath = path.join(socketDir, `.s.PGSQL.${port}`);
    let poolConfig: pg.PoolConfig;
    // sun_path is 104 bytes on macOS, 108 on Linux; Windows has no such sockets for `pg`.
    if (process.platform !== 'win32' && Buffer.byteLength(socketPath) < 100) {
      // maxConnections 2, not 1: when the pool replaces a broken connection, the server may
      // not have noticed the old one closing yet.
      server = new PGLiteSocketServer({ db: pglite, path: socketPath, maxConnections: 2 });
      await server.start();
      poolConfig = { host: socketDir, port };
    } else {
      server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0, maxConnections: 2 });
      await server.start();
      const listening = server.getServerConn(); // "127.0.0.1:<port>"
      poolConfig = { host: '127.0.0.1', port: Number(listening.slice(listening.lastIndexOf(':') + 1)) };
    }

    pool = new pg.Pool({
      ...poolConfig,
      user: 'postgres',
      database: 'postgres',
      max: 1,
      // Keep the one connection for the life of the store: reconnecting costs a startup
      // handshake and nothing is gained by closing it.
      idleTimeoutMillis: 0,
    });
    pool.on('error', () => {});
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool), transactionOptions: TRANSACTION_OPTIONS });
    await prisma.$queryRaw`SELECT 1`;

    const db = pglite;
    const srv = server;
    const dir = socketDir;
    const p = pool;
    let closed = false;
    return {
      prisma,
      pool: p,
      kind: 'pglite',
      async close() {
        if (closed) return;
        closed = true;
        try {
          await prisma.$disconnect();
          await p.end();
          await waitForNoConnections(srv);
          await srv.stop();
          // A clean shutdown: PGlite checkpoints and flushes its files, so a reopen sees
          // every committed row without WAL replay.
          await db.close();
        } finally {
          await rm(dir, { recursive: true, force: true });
          rmSync(socketNote, { force: true });
          releaseLock();
        }
      },
    };
  } catch (err) {
    await pool?.end().catch(() => {});
    await server?.stop().catch(() => {});
    await pglite?.close().catch(() => {});
    if (socketDir) {
      await rm(socketDir, { recursive: true, force: true });
      rmSync(socketNote, { force: true });
    }
    releaseLock();
    throw err;
  }
}

const SOCKET_DIR_PREFIX = 'tollgate-pg-';

/** Removes the socket directory a previous owner of this data dir left behind, if any. */
async function removeStaleSocketDir(note: string): Promise<void> {
  let stale: string;
  try {
    stale = readFileSync(note, 'utf8').trim();
  } catch {
    return;
  }
  // Only ever a directory this code made: directly in the temp dir, with our prefix.
  if (path.dirname(stale) === os.tmpdir() && path.basename(stale).startsWith(SOCKET_DIR_PREFIX)) {
    await rm(stale, { recursive: true, force: true });
  }
  rmSync(note, { force: true });
}

/**
 * After the pool closes its socket, the server's handler notices on a later tick (and may
 * still roll back an open transaction). Wait for that, briefly, before closing PGlite under it.
 */
async function waitForNoConnections(server: PGLiteSocketServer): Promise<void> {
  const deadline = Date.now() + 2000;
  while (server.getStats().activeConnections > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * PGlite must never be opened by two processes at once (each would write the same files
 * without any coordination), nor twice by one: a lock the kernel releases with its holder
 * (process-lock.ts), so a lock left by a process killed with -9 is taken over.
 */
async function acquireLock(lockFile: string): Promise<() => void> {
  const attempt = await takeLock(lockFile);
  if ('held' in attempt) return () => attempt.held.release();
  throw new ConfigDbLockedError(lockFile, attempt.holderPid);
}
