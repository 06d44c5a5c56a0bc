// Vitest global setup: one migrated PGlite database for the whole run, copied into each test
// gateway's fresh data dir. A new PGlite runs initdb and every migration (about 8 s on a busy
// machine), which most test files paid once per gateway; this pays it once. The template is
// made by the product's own open-and-migrate path, and first-run tests still start on empty dirs.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { openConfigDb } from '../../src/store/prisma.js';
import { migrateConfigDb } from '../../src/store/prisma-migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A data dir whose `pg/` holds a migrated PGlite database ('' with DATABASE_URL set). */
    pgTemplateDir: string;
  }
}

export default async function setup(project: TestProject) {
  if (process.env.DATABASE_URL) {
    project.provide('pgTemplateDir', '');
    return;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-pg-template-'));
  const db = await openConfigDb({ dataDir: dir });
  try {
    await migrateConfigDb(db);
  } finally {
    await db.close();
  }
  project.provide('pgTemplateDir', dir);
  return () => rm(dir, { recursive: true, force: true });
}
