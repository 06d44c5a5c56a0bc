#!/usr/bin/env node
// Prisma tooling that works offline as well as online.
//
//   node scripts/prisma-generate.mjs
//       `prisma generate` (Prisma Client into node_modules/@prisma/client's .prisma/client,
//       and the Pothos types). Quiet on success; prints Prisma's output and exits non-zero
//       on failure. Idempotent. Called by `npm install` (postinstall) and `npm run build`.
//
//   node scripts/prisma-generate.mjs migration <name> [--from <old-schema.prisma>]
//       Writes prisma/migrations/<UTC timestamp>_<name>/migration.sql: the SQL that takes a
//       database from the old schema to prisma/schema.prisma. The old schema defaults to
//       the committed one (`git show HEAD:prisma/schema.prisma`), or empty when there are
//       no migrations yet. Development only.
//
// Why this wrapper exists. Prisma 6.19's CLI downloads its native engines (schema engine,
// query-engine library) from binaries.prisma.sh at start, even for commands that never
// use them: `generate` with `engineType = "client"` only needs the WASM schema parser in
// the CLI package, and `migrate diff` between two datamodels runs on the WASM schema
// engine when a driver adapter is configured. The CLI skips the download when
// PRISMA_SCHEMA_ENGINE_BINARY and PRISMA_QUERY_ENGINE_LIBRARY name existing files (it only
// checks that they exist), so we point them at empty stub files in a temporary directory,
// for the child process only. Nothing else changes, so the same path runs on a machine
// with internet access (where no download is then needed either). Variables already set
// by the user are respected.
//
// `migrate diff` with the JS schema engine needs a driver adapter to a live Postgres even
// between two datamodels, so `migration` starts an in-memory PGlite in this process,
// serves it on a private Unix socket, and hands the CLI a temporary prisma.config.mjs
// whose adapter connects there. Diffing *from a live database* or *from the migrations
// folder* is not possible with the JS engine (upstream bug: "Column type 'name' could not
// be deserialized from the database"), hence the diff from the previous schema file.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const schemaPath = path.join(root, 'prisma', 'schema.prisma');
const migrationsDir = path.join(root, 'prisma', 'migrations');

/** Runs the Prisma CLI with the offline stubs; resolves to { code, out } (stdout+stderr). */
async function runPrisma(args, extraEnv = {}) {
  const stubDir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-prisma-'));
  try {
    const schemaEngine = path.join(stubDir, 'schema-engine');
    const queryLibrary = path.join(stubDir, 'libquery_engine.so.node');
    writeFileSync(schemaEngine, '', { mode: 0o755 });
    writeFileSync(queryLibrary, '');
    const env = {
      ...process.env,
      PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY || schemaEngine,
      PRISMA_QUERY_ENGINE_LIBRARY: process.env.PRISMA_QUERY_ENGINE_LIBRARY || queryLibrary,
      // No telemetry / update checks (network calls that only slow an offline run down).
      CHECKPOINT_DISABLE: '1',
      PRISMA_HIDE_UPDATE_MESSAGE: '1',
      // Generators named by `provider = "prisma-pothos-types"` are looked up on PATH.
      PATH: [path.join(root, 'node_modules', '.bin'), process.env.PATH ?? ''].join(path.delimiter),
      ...extraEnv,
    };
    const cli = require.resolve('prisma/build/index.js');
    const child = spawn(process.execPath, [cli, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d) => {
      out += d;
      stdout += d;
    });
    child.stderr.on('data', (d) => (out += d));
    const code = await new Promise((resolve) => {
      child.on('error', (err) => {
        out += String(err);
        resolve(1);
      });
      child.on('close', (c) => resolve(c ?? 1));
    });
    return { code, out, stdout };
  } finally {
    rmSync(stubDir, { recursive: true, force: true });
  }
}

async function generate() {
  const { code, out } = await runPrisma(['generate', '--schema', schemaPath]);
  if (code !== 0) {
    process.stderr.write(out);
    process.stderr.write(`\nprisma generate failed (exit ${code})\n`);
    process.exit(code || 1);
  }
}

async function migration(name, fromFile) {
  if (!name || !/^[a-z0-9_]+$/.test(name)) {
    throw new Error('usage: node scripts/prisma-generate.mjs migration <name: [a-z0-9_]+> [--from old.prisma]');
  }
  const existing = existsSync(migrationsDir) ? readdirSync(migrationsDir).filter((d) => existsSync(path.join(migrationsDir, d, 'migration.sql'))) : [];
  const work = mkdtempSync(path.join(os.tmpdir(), 'tollgate-migration-'));
  // Declared outside try so the finally can stop them.
  let pglite;
  let server;
  try {
    let from = ['--from-empty'];
    if (fromFile) {
      from = ['--from-schema-datamodel', path.resolve(fromFile)];
    } else if (existing.length > 0) {
      const old = path.join(work, 'old.prisma');
      writeFileSync(old, execFileSync('git', ['show', 'HEAD:prisma/schema.prisma'], { cwd: root }));
      from = ['--from-schema-datamodel', old];
    }

    // An in-memory PGlite for the JS schema engine to connect to.
    const { PGlite } = await import(pathToFileURL(require.resolve('@electric-sql/pglite')).href);
    const { PGLiteSocketServer } = await import(pathToFileURL(require.resolve('@electric-sql/pglite-socket')).href);
    pglite = await PGlite.create();
    const socketPath = path.join(work, '.s.PGSQL.5432');
    server = new PGLiteSocketServer({ db: pglite, path: socketPath, maxConnections: 4 });
    await server.start();

    const adapterUrl = pathToFileURL(require.resolve('@prisma/adapter-pg')).href;
    const config = path.join(work, 'prisma.config.mjs');
    writeFileSync(
      config,
      `import { PrismaPg } from ${JSON.stringify(adapterUrl)};
export default {
  experimental: { adapter: true },
  engine: 'js',
  schema: ${JSON.stringify(schemaPath)},
  adapter: async () => new PrismaPg({ host: ${JSON.stringify(work)}, port: 5432, user: 'postgres', database: 'postgres', max: 1, allowExitOnIdle: true }),
};
`,
    );
    const { code, out, stdout } = await runPrisma(['migrate', 'diff', '--config', config, ...from, '--to-schema-datamodel', schemaPath, '--script']);
    if (code !== 0) {
      process.stderr.write(out);
      throw new Error(`prisma migrate diff failed (exit ${code})`);
    }
    // stdout is the SQL; the "Loaded Prisma config" notice goes to stderr.
    const sql = `${stdout.trimEnd()}\n`;
    if (!/\S/.test(stdout) || /^-- This is an empty migration\./m.test(sql)) {
      console.log('schema unchanged: no migration written');
      return;
    }
    const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
    const dir = path.join(migrationsDir, `${stamp}_${name}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'migration.sql'), sql);
    const lock = path.join(migrationsDir, 'migration_lock.toml');
    if (!existsSync(lock)) {
      writeFileSync(
        lock,
        '# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "postgresql"\n',
      );
    }
    console.log(`wrote ${path.relative(root, path.join(dir, 'migration.sql'))}`);
  } finally {
    await server?.stop().catch(() => {});
    await pglite?.close().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

const [cmd, ...rest] = process.argv.slice(2);
try {
  if (cmd === undefined || cmd === 'generate') {
    await generate();
  } else if (cmd === 'migration') {
    const fromAt = rest.indexOf('--from');
    await migration(rest[0], fromAt >= 0 ? rest[fromAt + 1] : undefined);
  } else {
    throw new Error(`unknown command ${cmd}; expected: generate | migration <name> [--from old.prisma]`);
  }
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
