// Forward-only ClickHouse migrations (DESIGN §2, §7).
//
// Files `clickhouse/migrations/NNN_name.sql` are applied in name order, each recorded with
// the sha256 of its text in `tollgate_migrations`. Applying is idempotent: a file already
// recorded is skipped, and every statement is written `IF NOT EXISTS` so that a file
// interrupted half-way (crash, lost connection) can simply be applied again. An applied
// file whose text changed is an error: migrations are history, fix forward with a new file.
//
// The same files serve chDB, a single server and a cluster. For a cluster the runner
// rewrites each statement (see clusterStatements): Replicated engines, ON CLUSTER, and a
// Distributed table in front of `receipts`.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';

export const MIGRATIONS_TABLE = 'tollgate_migrations';
/** In cluster mode, the table that receives inserts and serves reads of all shards' receipts. */
export const RECEIPTS_DISTRIBUTED_TABLE = 'receipts_distributed';

const MIGRATIONS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE}
(
    name       String,
    sha256     String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY name`;

const FILE_NAME = /^\d+_[A-Za-z0-9_-]+\.sql$/;

export interface MigrationFile {
  name: string;
  sha256: string;
  statements: string[];
}

export class MigrationError extends Error {}

/**
 * Apply pending migrations. Returns the names of the files applied by this call.
 * `dir` defaults to the package's `clickhouse/migrations` (tests point it elsewhere).
 */
export async function migrateClickHouse(client: ClickHouseClient, opts: { cluster?: string; dir?: string } = {}): Promise<{ applied: string[] }> {
  const files = await loadMigrations(opts.dir ?? migrationsDir());
  const run = async (sql: string) => {
    for (const statement of opts.cluster ? clusterStatements(sql, opts.cluster) : [sql]) {
      await client.command({ query: statement });
    }
  };

  await run(MIGRATIONS_TABLE_DDL);
  const recorded = await appliedMigrations(client);

  // Check every recorded file before applying anything: a changed history is fatal.
  for (const file of files) {
    const sha = recorded.get(file.name);
    if (sha !== undefined && sha !== file.sha256) {
      throw new MigrationError(
        `ClickHouse migration ${file.name} was changed after it was applied ` +
          `(recorded sha256 ${sha}, file now ${file.sha256}); restore it and add a new migration instead`,
      );
    }
  }

  const applied: string[] = [];
  for (const file of files) {
    if (recorded.has(file.name)) continue;
    for (const statement of file.statements) {
      try {
        await run(statement);
      } catch (err) {
        throw new MigrationError(`ClickHouse migration ${file.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
    // Recorded only once every statement succeeded; the statements are idempotent, so a
    // crash before this line re-applies the file harmlessly on the next start.
    await client.insert({
      table: MIGRATIONS_TABLE,
      values: [{ name: file.name, sha256: file.sha256 }],
      format: 'JSONEachRow',
    });
    applied.push(file.name);
  }
  return { applied };
}

/** name → sha256 of the migrations recorded as applied. */
export async function appliedMigrations(client: ClickHouseClient): Promise<Map<string, string>> {
  const rs = await client.query({
    query: `SELECT name, sha256 FROM ${MIGRATIONS_TABLE} ORDER BY name, applied_at`,
    format: 'JSONEachRow',
  });
  const rows = await rs.json<{ name: string; sha256: string }>();
  return new Map(rows.map((r) => [r.name, r.sha256]));
}

/** The names of migration files that are not recorded yet (for /readyz and `tollgate migrate`). */
export async function pendingMigrations(client: ClickHouseClient, dir = migrationsDir()): Promise<string[]> {
  const [files, recorded] = await Promise.all([loadMigrations(dir), appliedMigrations(client).catch(() => new Map())]);
  return files.filter((f) => !recorded.has(f.name)).map((f) => f.name);
}

export async function loadMigrations(dir: string): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((n) => FILE_NAME.test(n)).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    // CRLF from a Windows checkout must not look like an edited migration.
    const text = (await readFile(path.join(dir, name), 'utf8')).replace(/\r\n/g, '\n');
    files.push({ name, sha256: createHash('sha256').update(text).digest('hex'), statements: splitStatements(text) });
  }
  return files;
}

/**
 * Statements of a migration file: separated by `;` at the end of a line. Whole-line `--`
 * comments are dropped (a `;` inside a comment must not split), nothing else is touched.
 */
export function splitStatements(text: string): string[] {
  const code = text
    .split('\n')
    .filter((line) => !/^\s*--/.test(line))
    .join('\n');
  return code
    .split(/;[ \t]*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** `clickhouse/migrations` of this package: found from this file, in src/ (tsx, vitest) or dist/. */
export function migrationsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return path.join(dir, 'clickhouse', 'migrations');
    const parent = path.dirname(dir);
    if (parent === dir) throw new MigrationError(`cannot find the package root (package.json) above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

const CLUSTER_NAME = /^[A-Za-z0-9_.{}-]+$/;
const CREATE_OR_ALTER =
  /^(\s*(?:CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW|VIEW)(?:\s+IF\s+NOT\s+EXISTS)?|ALTER\s+TABLE|DROP\s+(?:TABLE|VIEW)(?:\s+IF\s+EXISTS)?)\s+)([A-Za-z_][A-Za-z0-9_.]*)/i;

/**
 * The cluster form of one statement (DESIGN §7):
 *   - `ON CLUSTER '<cluster>'` after the object name of CREATE / ALTER / DROP;
 *   - `…MergeTree` engines become `Replicated…MergeTree` (replica path and name from the
 *     server's default_replica_path / default_replica_name, so no arguments are added);
 *   - `non_replicated_deduplication_window` becomes `replicated_deduplication_window`;
 *   - after `CREATE TABLE … receipts`, a Distributed table `receipts_distributed` over it,
 *     sharded by team so that a team's rows (and its rollup rows) stay on one shard; after
 *     `ALTER TABLE receipts`, the same change to that table.
 * Other statements (INSERT … SELECT backfills) are returned unchanged and run on the
 * node the client is connected to.
 */
export function clusterStatements(sql: string, cluster: string): string[] {
  if (!CLUSTER_NAME.test(cluster)) throw new MigrationError(`invalid ClickHouse cluster name: ${JSON.stringify(cluster)}`);
  const onCluster = `ON CLUSTER '${cluster}'`;
  const match = CREATE_OR_ALTER.exec(sql);
  if (!match) return [sql];
  const [, head, name] = match;
  let out = `${head}${name} ${onCluster}${sql.slice(match[0].length)}`;
  out = out.replace(/\bENGINE\s*=\s*(Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing)?MergeTree\b/g, 'ENGINE = Replicated$1MergeTree');
  out = out.replace(/\bnon_replicated_deduplication_window\b/g, 'replicated_deduplication_window');
  const statements = [out];
  if (/^\s*CREATE\s+TABLE/i.test(head) && name === 'receipts') {
    statements.push(
      `CREATE TABLE IF NOT EXISTS ${RECEIPTS_DISTRIBUTED_TABLE} ${onCluster} AS receipts ` +
        `ENGINE = Distributed('${cluster}', currentDatabase(), receipts, cityHash64(team_id))`,
    );
  }
  // The Distributed table mirrors the columns of `receipts`: it gains what receipts gains.
  if (/^\s*ALTER\s+TABLE/i.test(head) && name === 'receipts') {
    statements.push(`${head}${RECEIPTS_DISTRIBUTED_TABLE} ${onCluster}${sql.slice(match[0].length)}`);
  }
  return statements;
}
