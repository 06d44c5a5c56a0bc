// Applies prisma/migrations/*/migration.sql to the config database.
//
// Why not `prisma migrate deploy`: with the JS engine (the only one available offline)
// it fails on PostgreSQL (upstream bug "Column type 'name' could not be deserialized"),
// and it needs the CLI at run time. So Tollgate applies the files itself, in name order,
// and records each one in Prisma's own `_prisma_migrations` table, with Prisma's columns
// and checksum (SHA-256 hex of the file's bytes), so `prisma migrate status` on a machine
// with the native engines agrees with what is applied.
//
// Concurrency: every runner takes the same session advisory lock Prisma Migrate uses
// (key 72707369), so two Tollgate processes starting together, or Tollgate and
// `prisma migrate deploy`, never apply a migration twice. Each migration runs in one
// transaction together with its `_prisma_migrations` row (Postgres DDL is transactional):
// either both land or neither does, and a failed migration leaves nothing behind and is
// retried on the next start.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConfigDb } from './prisma.js';

/** The advisory lock key of Prisma Migrate (prisma-engines), shared on purpose. */
const MIGRATE_LOCK_KEY = 72707369;

// Prisma's own definition of the table (schema engine, PostgreSQL flavour).
const CREATE_MIGRATIONS_TABLE = `
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export interface MigrationFile {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrateResult {
  /** Migrations applied by this call, in order. */
  applied: string[];
  /** Applied earlier, but the file changed since (its checksum differs). Not re-applied. */
  modified: string[];
}

export class MigrationError extends Error {
  constructor(
    message: string,
    readonly migration?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The repository's prisma/migrations folder, found by walking up from this file to the
 * directory holding package.json: works from src/store (tsx, vitest) and dist/store (tsc).
 */
export function defaultMigrationsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'prisma', 'migrations'))) {
      return path.join(dir, 'prisma', 'migrations');
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new MigrationError(`cannot find prisma/migrations above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Migration folders (those holding a migration.sql), sorted by name = timestamp order. */
export function readMigrations(migrationsDir = defaultMigrationsDir()): MigrationFile[] {
  return readdirSync(migrationsDir)
    .filter((name) => {
      const file = path.join(migrationsDir, name, 'migration.sql');
      return existsSync(file) && statSync(file).isFile();
    })
    .sort()
    .map((name) => {
      const bytes = readFileSync(path.join(migrationsDir, name, 'migration.sql'));
      return { name, sql: bytes.toString('utf8'), checksum: createHash('sha256').update(bytes).digest('hex') };
    });
}

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

export async function migrateConfigDb(db: ConfigDb, opts: { migrationsDir?: string } = {}): Promise<MigrateResult> {
  const files = readMigrations(opts.migrationsDir);
  // A dedicated connection: the advisory lock is per session, and migration files hold
  // several statements, which only the simple query protocol accepts (no parameters).
  const client = await db.pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATE_LOCK_KEY]);
    try {
      await client.query(CREATE_MIGRATIONS_TABLE);
      const { rows } = await client.query<MigrationRow>(
        'SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY started_at',
      );
      const live = rows.filter((r) => r.rolled_back_at === null);
      const failed = live.find((r) => r.finished_at === null);
      if (failed) {
        // Same rule as Prisma (P3009): a half-applied migration needs a human.
        throw new MigrationError(
          `migration ${failed.migration_name} failed earlier and is recorded as unfinished in _prisma_migrations; ` +
            'fix the database, then mark it rolled back (prisma migrate resolve --rolled-back) or applied',
          failed.migration_name,
        );
      }
      const done = new Map(live.map((r) => [r.migration_name, r.checksum]));
      const applied: string[] = [];
      const modified: string[] = [];
      for (const m of files) {
        const recorded = done.get(m.name);
        if (recorded !== undefined) {
          if (recorded !== m.checksum) modified.push(m.name);
          continue;
        }
        await client.query('BEGIN');
        try {
          // The database's clock for both times (now() would be the transaction start).
          const started = await client.query<{ t: Date }>('SELECT clock_timestamp() AS t');
          await client.query(m.sql);
          await client.query(
            `INSERT INTO "_prisma_migrations"
               (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
             VALUES ($1, $2, clock_timestamp(), $3, NULL, NULL, $4, 1)`,
            [randomUUID(), m.checksum, m.name, started.rows[0]!.t],
          );
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {
            broken = true;
          });
          throw new MigrationError(`migration ${m.name} failed and was rolled back: ${(err as Error).message}`, m.name, { cause: err });
        }
        applied.push(m.name);
      }
      return { applied, modified };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATE_LOCK_KEY]).catch(() => {
        broken = true;
      });
    }
  } finally {
    // A connection whose state is unknown is destroyed rather than reused.
    client.release(broken ? true : undefined);
  }
}

/** Names of migration files not yet applied (for readiness checks). */
export async function pendingConfigMigrations(db: ConfigDb, opts: { migrationsDir?: string } = {}): Promise<string[]> {
  const files = readMigrations(opts.migrationsDir);
  const exists = await db.prisma.$queryRaw<{ t: string | null }[]>`SELECT to_regclass('"_prisma_migrations"')::text AS t`;
  if (!exists[0]?.t) return files.map((f) => f.name);
  const rows = await db.prisma.$queryRaw<{ migration_name: string }[]>`
    SELECT migration_name FROM "_prisma_migrations"
    WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`;
  const done = new Set(rows.map((r) => r.migration_name));
  return files.filter((f) => !done.has(f.name)).map((f) => f.name);
}
