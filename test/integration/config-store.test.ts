// The configuration store: migrations, durability, secrets at rest, data access rules.
// Runs on embedded PGlite by default, and on PostgreSQL when DATABASE_URL is set (each
// database used here is created fresh from that URL and dropped afterwards).

import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminStoreError, Mutations } from '../../src/store/admin/validators.js';
import { AdminStore } from '../../src/store/admin-store.js';
import {
  ensureAdminToken,
  generateAccessTokenSecret,
  generateApiKeySecret,
  hashSecret,
  isWellFormedAccessToken,
  isWellFormedApiKey,
} from '../../src/store/credentials.js';
import { type ConfigDb, ConfigDbLockedError, openConfigDb } from '../../src/store/prisma.js';
import { defaultMigrationsDir, MigrationError, migrateConfigDb, readMigrations } from '../../src/store/prisma-migrate.js';
import { SecretBox, SecretBoxError } from '../../src/store/secret-box.js';

const BASE_URL = process.env.DATABASE_URL || undefined;
const KIND = BASE_URL ? 'postgres' : 'pglite';
const LONG = 120_000;

const cleanups: Array<() => Promise<void>> = [];

async function tempDir(tag: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `tollgate-cfg-${tag}-`));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A new, empty database of the kind under test: its own data dir, or its own PG database. */
async function freshTarget(tag: string): Promise<{ dataDir: string; databaseUrl?: string }> {
  const dataDir = await tempDir(tag);
  if (!BASE_URL) return { dataDir };
  const name = `tollgate_cfg_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: BASE_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  cleanups.push(async () => {
    const c = new pg.Client({ connectionString: BASE_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(BASE_URL);
  url.pathname = `/${name}`;
  return { dataDir, databaseUrl: url.toString() };
}

function expectStoreError(code: string) {
  return (err: unknown) => {
    expect(err).toBeInstanceOf(AdminStoreError);
    expect((err as AdminStoreError).code).toBe(code);
    return true;
  };
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => new Error('expected a rejection'),
    (e: unknown) => e,
  );
  expectStoreError(code)(err);
}

let target: { dataDir: string; databaseUrl?: string };
let db: ConfigDb;
let box: SecretBox;
let store: AdminStore;
let firstMigration: { applied: string[]; modified: string[] };

beforeAll(async () => {
  target = await freshTarget('main');
  db = await openConfigDb(target);
  firstMigration = await migrateConfigDb(db);
  box = await SecretBox.open({ dataDir: target.dataDir });
  store = new AdminStore(db.prisma, box);
}, LONG);

afterAll(async () => {
  await db?.close();
  for (const c of cleanups.reverse()) await c().catch(() => {});
}, LONG);

describe(`config store on ${KIND}`, () => {
  describe('migrations', () => {
    it('applies every migration once, records it like Prisma, and is idempotent', async () => {
      const files = readMigrations();
      expect(files.length).toBeGreaterThan(0);
      expect(firstMigration.applied).toEqual(files.map((f) => f.name));

      const again = await migrateConfigDb(db);
      expect(again).toEqual({ applied: [], modified: [] });

      const rows = await db.prisma.$queryRaw<
        {
          migration_name: string;
          checksum: string;
          finished_at: Date | null;
          rolled_back_at: Date | null;
          started_at: Date;
          applied_steps_count: number;
        }[]
      >`SELECT * FROM "_prisma_migrations" ORDER BY migration_name`;
      expect(rows.map((r) => r.migration_name)).toEqual(files.map((f) => f.name));
      for (const [i, r] of rows.entries()) {
        const bytes = readFileSync(path.join(defaultMigrationsDir(), files[i]!.name, 'migration.sql'));
        expect(r.checksum).toBe(createHash('sha256').update(bytes).digest('hex'));
        expect(r.finished_at).toBeInstanceOf(Date);
        expect(r.finished_at!.getTime()).toBeGreaterThanOrEqual(r.started_at.getTime());
        expect(r.rolled_back_at).toBeNull();
        expect(r.applied_steps_count).toBe(1);
      }
      // The tables the schema declares exist.
      const tables = await db.prisma.$queryRaw<{ t: string }[]>`
        SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'public'`;
      expect(tables.map((t) => t.t)).toEqual(
        expect.arrayContaining(['Team', 'ApiKey', 'AccessToken', 'Provider', 'Route', 'RouteTarget', 'Price', 'Budget', 'Setting', 'AuditEntry']),
      );
    });

    it(
      'serializes concurrent runners, reports edited files, and rolls back a failing migration whole',
      async () => {
        const t = await freshTarget('race');
        // Two independent stores on the same database (on PGlite: the same store twice,
        // which still exercises the lock path).
        const a = await openConfigDb(t);
        const b = t.databaseUrl ? await openConfigDb(t) : a;
        try {
          const [ra, rb] = await Promise.all([migrateConfigDb(a), migrateConfigDb(b)]);
          const names = readMigrations().map((f) => f.name);
          expect([...ra.applied, ...rb.applied].sort()).toEqual(names);
          const count = await a.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n FROM "_prisma_migrations"`;
          expect(Number(count[0]!.n)).toBe(names.length);

          // A private copy of the migrations folder with extra files.
          const dir = path.join(await tempDir('migrations'), 'migrations');
          cpSync(defaultMigrationsDir(), dir, { recursive: true });
          const extra = path.join(dir, '29990101000000_extra');
          mkdirSync(extra);
          writeFileSync(path.join(extra, 'migration.sql'), 'CREATE TABLE "ExtraThing" ("id" INTEGER PRIMARY KEY);\n');
          expect((await migrateConfigDb(a, { migrationsDir: dir })).applied).toEqual(['29990101000000_extra']);

          writeFileSync(path.join(extra, 'migration.sql'), 'CREATE TABLE "ExtraThing" ("id" BIGINT PRIMARY KEY);\n');
          expect(await migrateConfigDb(a, { migrationsDir: dir })).toEqual({
            applied: [],
            modified: ['29990101000000_extra'],
          });

          const bad = path.join(dir, '29990102000000_bad');
          mkdirSync(bad);
          writeFileSync(path.join(bad, 'migration.sql'), 'CREATE TABLE "HalfDone" ("id" INTEGER);\nSELECT * FROM "does_not_exist";\n');
          const err = await migrateConfigDb(a, { migrationsDir: dir }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(MigrationError);
          expect((err as MigrationError).migration).toBe('29990102000000_bad');
          const half = await a.prisma.$queryRaw<{ t: string | null }[]>`SELECT to_regclass('"HalfDone"')::text AS t`;
          expect(half[0]!.t).toBeNull();
          const recorded = await a.prisma.$queryRaw<{ n: bigint }[]>`
            SELECT count(*) AS n FROM "_prisma_migrations" WHERE migration_name = '29990102000000_bad'`;
          expect(Number(recorded[0]!.n)).toBe(0);
          // The connection is still usable after the failure.
          expect((await migrateConfigDb(a)).applied).toEqual([]);
        } finally {
          if (b !== a) await b.close();
          await a.close();
        }
      },
      LONG,
    );
  });

  describe('durability', () => {
    it(
      'keeps committed data across close and reopen, also after a process died holding it',
      async () => {
        const t = await freshTarget('reopen');
        const first = await openConfigDb(t);
        await migrateConfigDb(first);
        const s1 = new AdminStore(first.prisma, await SecretBox.open({ dataDir: t.dataDir }));
        const team = await s1.teams.createTeam('durable-team');
        const { secret } = await s1.teams.createApiKey({ teamId: team.id, name: 'k' });
        await s1.providers.upsertProvider({ name: 'durable', kind: 'OPENAI', apiKey: 'sk-durable' });
        const version = await s1.catalogVersion();
        await first.close();
        await first.close(); // idempotent

        // Leave what a process killed with -9 would leave: its lock and its socket directory.
        const dead = spawnSync(process.execPath, ['-e', '']).pid!;
        writeFileSync(path.join(t.dataDir, 'pg.lock'), `${dead} stale`);
        const staleSocketDir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-pg-'));
        writeFileSync(path.join(t.dataDir, 'pg.socket-dir'), staleSocketDir);

        const second = await openConfigDb(t);
        if (!t.databaseUrl) expect(existsSync(staleSocketDir)).toBe(false);
        rmSync(staleSocketDir, { recursive: true, force: true });
        try {
          expect((await migrateConfigDb(second)).applied).toEqual([]);
          const s2 = new AdminStore(second.prisma, await SecretBox.open({ dataDir: t.dataDir }));
          expect((await s2.teams.getTeam(team.id))?.name).toBe('durable-team');
          expect((await s2.teams.findApiKeyBySecretHash(hashSecret(secret)))?.teamId).toBe(team.id);
          expect((await s2.providers.loadProvidersWithSecrets())[0]?.apiKey).toBe('sk-durable');
          expect(await s2.catalogVersion()).toBe(version);
        } finally {
          await second.close();
        }
      },
      LONG,
    );

    it.runIf(KIND === 'pglite')('refuses a second open of the same embedded database', async () => {
      const err = await openConfigDb({ dataDir: target.dataDir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigDbLockedError);
      // The first store is unaffected.
      expect(await store.teams.listTeams()).toBeInstanceOf(Array);
    });
  });

  describe('teams', () => {
    it('creates, refuses duplicates, ensures idempotently', async () => {
      const t = await store.teams.createTeam('alpha');
      await rejectsWith(store.teams.createTeam('alpha'), 'CONFLICT');
      expect((await store.teams.ensureTeam('alpha')).id).toBe(t.id);
      const [x, y] = await Promise.all([store.teams.ensureTeam('beta'), store.teams.ensureTeam('beta')]);
      expect(x.id).toBe(y.id);
      expect((await store.teams.listTeams()).filter((team) => team.name === 'beta')).toHaveLength(1);
      expect(await store.teams.getTeam('not-a-uuid')).toBeNull();
      expect(await store.teams.getTeam('00000000-0000-4000-8000-000000000000')).toBeNull();
      await rejectsWith(store.teams.createTeam('  '), 'INVALID_INPUT');
      await rejectsWith(store.teams.createTeam('bad\nname'), 'INVALID_INPUT');
    });
  });

  describe('API keys', () => {
    it('returns the secret once, stores only its hash, finds by hash, revokes', async () => {
      const team = await store.teams.ensureTeam('keys-team');
      const expiresAt = new Date(Date.now() + 86_400_000);
      const { apiKey, secret } = await store.teams.createApiKey({
        teamId: team.id,
        name: 'backend',
        rpmLimit: 60,
        tpmLimit: 100_000,
        expiresAt,
        allowedRoutes: ['chat-default', 'chat-default', 'embed'],
      });
      expect(isWellFormedApiKey(secret)).toBe(true);
      expect(secret.startsWith(apiKey.displayPrefix)).toBe(true);
      expect(apiKey.displayPrefix.length).toBeLessThan(secret.length / 2);
      expect(apiKey).toMatchObject({
        teamId: team.id,
        name: 'backend',
        rpmLimit: 60,
        tpmLimit: 100_000,
        allowedRoutes: ['chat-default', 'embed'],
        revokedAt: null,
      });
      expect(apiKey.expiresAt?.getTime()).toBe(expiresAt.getTime());

      // Nothing in the stored row is the secret; the hash is SHA-256 of it.
      const raw = await db.prisma.$queryRaw<Record<string, unknown>[]>`SELECT * FROM "ApiKey" WHERE id = ${apiKey.id}::uuid`;
      expect(raw).toHaveLength(1);
      const dump = JSON.stringify(raw[0]);
      expect(dump).not.toContain(secret);
      expect(dump).not.toContain(secret.slice(apiKey.displayPrefix.length));
      expect(raw[0]!.secretHash).toBe(createHash('sha256').update(secret).digest('hex'));

      const found = await store.teams.findApiKeyBySecretHash(hashSecret(secret));
      expect(found?.id).toBe(apiKey.id);
      expect(await store.teams.findApiKeyBySecretHash(hashSecret(generateApiKeySecret()))).toBeNull();
      expect(await store.teams.findApiKeyBySecretHash('not-a-hash')).toBeNull();

      const revoked = await store.teams.revokeApiKey(apiKey.id);
      expect(revoked.revokedAt).toBeInstanceOf(Date);
      const again = await store.teams.revokeApiKey(apiKey.id);
      expect(again.revokedAt?.getTime()).toBe(revoked.revokedAt!.getTime());
      expect((await store.teams.findApiKeyBySecretHash(hashSecret(secret)))?.revokedAt).toBeInstanceOf(Date);

      await store.teams.touchApiKey(apiKey.id, new Date('2030-01-01T00:00:00Z'));
      expect((await store.teams.getApiKey(apiKey.id))?.lastUsedAt?.toISOString()).toBe('2030-01-01T00:00:00.000Z');

      expect((await store.teams.listApiKeys(team.id)).map((k) => k.id)).toEqual([apiKey.id]);
      await rejectsWith(store.teams.revokeApiKey('00000000-0000-4000-8000-000000000000'), 'NOT_FOUND');
      await rejectsWith(store.teams.createApiKey({ teamId: '00000000-0000-4000-8000-000000000000', name: 'x' }), 'NOT_FOUND');
      await rejectsWith(store.teams.createApiKey({ teamId: team.id, name: 'x', rpmLimit: -1 }), 'INVALID_INPUT');
      await rejectsWith(store.teams.createApiKey({ teamId: team.id, name: 'x', allowedRoutes: ['a/b'] }), 'INVALID_INPUT');
    });

    it('stores allowedCidrs normalized (IPv4 and IPv6), deduplicated; refuses what is not a range', async () => {
      const team = await store.teams.ensureTeam('keys-team');
      const { apiKey, secret } = await store.teams.createApiKey({
        teamId: team.id,
        name: 'office',
        allowedCidrs: ['10.1.2.3/8', '10.0.0.0/8', '2001:DB8::1/32', '192.0.2.7'],
      });
      expect(apiKey.allowedCidrs).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.7/32']);
      expect((await store.teams.findApiKeyBySecretHash(hashSecret(secret)))?.allowedCidrs).toEqual(apiKey.allowedCidrs);
      expect((await store.teams.createApiKey({ teamId: team.id, name: 'anywhere' })).apiKey.allowedCidrs).toEqual([]);
      for (const bad of ['10.0.0.0/33', 'example.com', '']) {
        await rejectsWith(store.teams.createApiKey({ teamId: team.id, name: 'x', allowedCidrs: [bad] }), 'INVALID_INPUT');
      }
    });

    it('keeps an already expired key findable (the gateway decides) with its expiry', async () => {
      const team = await store.teams.ensureTeam('keys-team');
      const past = new Date(Date.now() - 1000);
      const { secret } = await store.teams.createApiKey({ teamId: team.id, name: 'old', expiresAt: past.toISOString() });
      const found = await store.teams.findApiKeyBySecretHash(hashSecret(secret));
      expect(found?.expiresAt?.getTime()).toBe(past.getTime());
      expect(found!.expiresAt!.getTime()).toBeLessThan(Date.now());
    });
  });

  describe('access tokens', () => {
    it('creates team-bound analyst tokens, stored as hashes only', async () => {
      const team = await store.teams.ensureTeam('analysts');
      const { token, secret } = await store.teams.createAccessToken({ name: 'bi', role: 'ANALYST', teamId: team.id });
      expect(isWellFormedAccessToken(secret)).toBe(true);
      expect(isWellFormedApiKey(secret)).toBe(false);
      expect(token).toMatchObject({ name: 'bi', role: 'ANALYST', teamId: team.id, revokedAt: null });
      const raw = await db.prisma.$queryRaw<Record<string, unknown>[]>`SELECT * FROM "AccessToken" WHERE id = ${token.id}::uuid`;
      expect(JSON.stringify(raw[0])).not.toContain(secret);
      expect((await store.teams.findAccessTokenBySecretHash(hashSecret(secret)))?.id).toBe(token.id);
      expect((await store.teams.revokeAccessToken(token.id)).revokedAt).toBeInstanceOf(Date);
      const admin = await store.teams.createAccessToken({ name: 'ops', role: 'ADMIN' });
      expect(admin.token.teamId).toBeNull();
      await rejectsWith(store.teams.createAccessToken({ name: 'x', role: 'OWNER' as never }), 'INVALID_INPUT');
    });

    it('stores an expiry and an IP allowlist, and finds expired tokens too (the verifier decides)', async () => {
      const expiresAt = new Date(Date.now() - 1000);
      const { token, secret } = await store.teams.createAccessToken({ name: 'ci', role: 'ADMIN', expiresAt, allowedCidrs: ['::1', '127.0.0.0/8'] });
      expect(token).toMatchObject({ allowedCidrs: ['::1/128', '127.0.0.0/8'], expiresAt });
      expect(await store.teams.findAccessTokenBySecretHash(hashSecret(secret))).toMatchObject({
        id: token.id,
        name: 'ci',
        expiresAt,
        allowedCidrs: token.allowedCidrs,
      });
      await rejectsWith(store.teams.createAccessToken({ name: 'x', role: 'ADMIN', allowedCidrs: ['not-an-ip'] }), 'INVALID_INPUT');
      await rejectsWith(store.teams.createAccessToken({ name: 'x', role: 'ADMIN', expiresAt: 'tomorrow' as never }), 'INVALID_INPUT');
    });
  });

  describe('providers', () => {
    it('seals the API key at rest, never lists it, and detects tampering', async () => {
      const plain = 'sk-or-v1-0123456789abcdef-very-secret';
      const info = await store.providers.upsertProvider({
        name: 'openrouter',
        kind: 'OPENROUTER',
        baseUrl: 'https://openrouter.ai/api/v1',
        apiKey: plain,
        timeoutMs: 30_000,
        extraHeaders: { 'HTTP-Referer': 'https://example.test' },
        modelMap: { 'gpt-4o-mini': 'openai/gpt-4o-mini' },
      });
      expect(info.hasApiKey).toBe(true);
      expect(info).not.toHaveProperty('apiKey');

      const raw = await db.prisma.$queryRaw<{ apiKeyCiphertext: string }[]>`
        SELECT "apiKeyCiphertext" FROM "Provider" WHERE name = 'openrouter'`;
      const sealed = raw[0]!.apiKeyCiphertext;
      expect(sealed).not.toContain(plain);
      expect(sealed).not.toContain(Buffer.from(plain).toString('base64url'));
      expect(sealed.startsWith('v1.')).toBe(true);
      expect(box.open(sealed, 'tollgate/provider/openrouter/apiKey')).toBe(plain);

      const listed = await store.providers.listProviders();
      expect(JSON.stringify(listed)).not.toContain(plain);
      const loaded = (await store.providers.loadProvidersWithSecrets()).find((p) => p.name === 'openrouter');
      expect(loaded).toMatchObject({
        apiKey: plain,
        baseUrl: 'https://openrouter.ai/api/v1',
        timeoutMs: 30_000,
        extraHeaders: { 'HTTP-Referer': 'https://example.test' },
        modelMap: { 'gpt-4o-mini': 'openai/gpt-4o-mini' },
      });

      // A ciphertext copied onto another provider's row does not open there (bound by name).
      await store.providers.upsertProvider({ name: 'copycat', kind: 'OPENAI' });
      await db.prisma.$executeRaw`UPDATE "Provider" SET "apiKeyCiphertext" = ${sealed} WHERE name = 'copycat'`;
      await rejectsWith(store.providers.loadProvidersWithSecrets(), 'SECRET_UNREADABLE');
      await store.providers.upsertProvider({ name: 'copycat', kind: 'OPENAI', apiKey: null });

      // Flip one character of the ciphertext part: authentication fails.
      const parts = sealed.split('.');
      const ct = parts[3]!;
      parts[3] = (ct[0] === 'A' ? 'B' : 'A') + ct.slice(1);
      await db.prisma.$executeRaw`UPDATE "Provider" SET "apiKeyCiphertext" = ${parts.join('.')} WHERE name = 'openrouter'`;
      await rejectsWith(store.providers.loadProvidersWithSecrets(), 'SECRET_UNREADABLE');
      await db.prisma.$executeRaw`UPDATE "Provider" SET "apiKeyCiphertext" = ${sealed} WHERE name = 'openrouter'`;
      expect((await store.providers.loadProvidersWithSecrets()).find((p) => p.name === 'openrouter')?.apiKey).toBe(plain);
    });

    it('a kind with no URL of its own needs a baseUrl (without one the catalog left it out, its rules with no target)', async () => {
      for (const kind of ['OPENAI_COMPATIBLE', 'SIMULATED'] as const) {
        await rejectsWith(store.providers.upsertProvider({ name: `nourl-${kind.toLowerCase()}`, kind }), 'INVALID_INPUT');
      }
      await store.providers.upsertProvider({ name: 'hasurl', kind: 'OPENAI_COMPATIBLE', baseUrl: 'http://127.0.0.1:9/v1' });
      await store.providers.upsertProvider({ name: 'hasurl', kind: 'OPENAI_COMPATIBLE', timeoutMs: 5000 }); // keeps its URL
      await rejectsWith(store.providers.upsertProvider({ name: 'hasurl', kind: 'OPENAI_COMPATIBLE', baseUrl: null }), 'INVALID_INPUT');
      await store.providers.upsertProvider({ name: 'preset', kind: 'DEEPSEEK' }); // a preset's own URL
    });

    it('upserts by name: undefined keeps a field, null clears it', async () => {
      const first = await store.providers.upsertProvider({ name: 'ark', kind: 'ARK', apiKey: 'ark-1', timeoutMs: 1000 });
      // Moving a provider with a stored key elsewhere takes the key again (it is write-only).
      await rejectsWith(store.providers.upsertProvider({ name: 'ark', kind: 'ARK', baseUrl: 'https://ark.example.test/api/v3' }), 'INVALID_INPUT');
      await rejectsWith(store.providers.upsertProvider({ name: 'ark', kind: 'OPENAI_COMPATIBLE' }), 'INVALID_INPUT');
      await store.providers.upsertProvider({ name: 'ark', kind: 'ARK', timeoutMs: 1000 }); // staying put keeps it
      // The operator's config file at start may move it keeping the key (it holds the keys too).
      await store.providers.upsertProvider({ name: 'ark', kind: 'ARK', baseUrl: 'https://proxy.example.test/v3' }, { fromConfigFile: true });
      expect((await store.providers.loadProvidersWithSecrets()).find((p) => p.name === 'ark')).toMatchObject({ apiKey: 'ark-1' });
      const second = await store.providers.upsertProvider({ name: 'ark', kind: 'ARK', baseUrl: 'https://ark.example.test/api/v3', apiKey: 'ark-1' });
      expect(second.id).toBe(first.id);
      const rows = await db.prisma.provider.count({ where: { name: 'ark' } });
      expect(rows).toBe(1);
      let ark = (await store.providers.loadProvidersWithSecrets()).find((p) => p.name === 'ark')!;
      expect(ark).toMatchObject({ apiKey: 'ark-1', timeoutMs: 1000, baseUrl: 'https://ark.example.test/api/v3' });

      await store.providers.upsertProvider({ name: 'ark', kind: 'ARK', apiKey: 'ark-2', timeoutMs: null });
      ark = (await store.providers.loadProvidersWithSecrets()).find((p) => p.name === 'ark')!;
      expect(ark).toMatchObject({ apiKey: 'ark-2', timeoutMs: null });

      const cleared = await store.providers.upsertProvider({ name: 'ark', kind: 'ARK', apiKey: null });
      expect(cleared.hasApiKey).toBe(false);
      expect((await store.providers.loadProvidersWithSecrets()).find((p) => p.name === 'ark')?.apiKey).toBeNull();

      await rejectsWith(store.providers.upsertProvider({ name: 'a/b', kind: 'OPENAI' }), 'INVALID_INPUT');
      await rejectsWith(store.providers.upsertProvider({ name: 'x', kind: 'NOPE' as never }), 'INVALID_INPUT');
      await rejectsWith(store.providers.upsertProvider({ name: 'x', kind: 'OPENAI', baseUrl: 'file:///etc/passwd' }), 'INVALID_INPUT');
      await rejectsWith(store.providers.upsertProvider({ name: 'x', kind: 'OPENAI', extraHeaders: { 'bad header': 'v' } }), 'INVALID_INPUT');
      // Headers of the connection itself would make every call fail in the HTTP client.
      for (const name of ['Content-Length', 'transfer-encoding', 'Connection', 'host'])
        await rejectsWith(store.providers.upsertProvider({ name: 'x', kind: 'OPENAI', extraHeaders: { [name]: '1' } }), 'INVALID_INPUT');
    });
  });

  describe('routes', () => {
    it('replaces a route and its targets atomically, keeping target order', async () => {
      for (const name of ['openrouter', 'ark', 'deepseek'])
        await store.providers.upsertProvider({ name, kind: 'OPENAI_COMPATIBLE', baseUrl: 'http://127.0.0.1:9/v1', apiKey: null });
      const r1 = await store.routing.upsertRoute({
        name: 'chat-default',
        strategy: 'PRIORITY',
        targets: [
          { provider: 'openrouter', model: 'openai/gpt-4o-mini' },
          { provider: 'ark', model: 'doubao-seed-1-6-250615', priority: 1 },
          { provider: 'deepseek', model: 'deepseek-chat', weight: 3, priority: 2 },
        ],
        cache: { mode: 'SEMANTIC', ttlSeconds: 600, similarityThreshold: 0.95 },
        retries: 2,
        timeoutMs: 20_000,
      });
      expect(r1.targets.map((t) => t.model)).toEqual(['openai/gpt-4o-mini', 'doubao-seed-1-6-250615', 'deepseek-chat']);
      expect(r1.targets[2]).toEqual({ provider: 'deepseek', model: 'deepseek-chat', weight: 3, priority: 2 });
      expect(r1.cache).toEqual({
        mode: 'SEMANTIC',
        ttlSeconds: 600,
        similarityThreshold: 0.95,
        embeddingModel: null,
        cacheSampled: false,
        cacheToolCalls: false,
      });

      const r2 = await store.routing.upsertRoute({
        name: 'chat-default',
        strategy: 'WEIGHTED',
        targets: [
          { provider: 'ark', model: 'b', weight: 1 },
          { provider: 'openrouter', model: 'a', weight: 2 },
        ],
      });
      expect(r2.id).toBe(r1.id);
      expect(r2).toMatchObject({ strategy: 'WEIGHTED', retries: 1, timeoutMs: null });
      expect(r2.cache).toEqual({ mode: 'OFF', ttlSeconds: null, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false });
      expect(r2.targets).toEqual([
        { provider: 'ark', model: 'b', weight: 1, priority: 0 },
        { provider: 'openrouter', model: 'a', weight: 2, priority: 0 },
      ]);
      const stored = await db.prisma.routeTarget.count({ where: { routeId: r1.id } });
      expect(stored).toBe(2);
      const listed = (await store.routing.listRoutes()).find((r) => r.name === 'chat-default');
      expect(listed?.targets.map((t) => t.provider)).toEqual(['ark', 'openrouter']);

      // An invalid replacement changes nothing.
      await rejectsWith(store.routing.upsertRoute({ name: 'chat-default', strategy: 'PRIORITY', targets: [] }), 'INVALID_INPUT');
      await rejectsWith(
        store.routing.upsertRoute({ name: 'chat-default', strategy: 'PRIORITY', targets: [{ provider: 'a', model: 'm', weight: -1 }] }),
        'INVALID_INPUT',
      );
      expect((await store.routing.listRoutes()).find((r) => r.name === 'chat-default')?.strategy).toBe('WEIGHTED');
    });

    it('refuses a routing change that would break the configuration, naming the field, and keeps the old one', async () => {
      await store.providers.upsertProvider({ name: 'p1', kind: 'OPENAI_COMPATIBLE', baseUrl: 'http://127.0.0.1:9/v1' });
      // A provider may be local (vLLM, Ollama), but never a cloud metadata endpoint.
      for (const baseUrl of ['http://169.254.169.254/latest', 'http://metadata.google.internal/v1', 'http://[fe80::1]/v1']) {
        const err = await store.providers.upsertProvider({ name: 'meta', kind: 'OPENAI_COMPATIBLE', baseUrl }).then(
          () => null,
          (e) => e,
        );
        expect(err?.message, baseUrl).toMatch(/^baseUrl: /);
      }
      const base = { strategy: 'PRIORITY' as const, targets: [{ provider: 'p1', model: 'm' }] };
      await store.routing.upsertRoute({ name: 'strong', ...base });
      await store.routing.upsertRoute({ name: 'smart', ...base, rules: [{ name: 'hard', when: 'request.promptTokens > 6000', route: 'strong' }] });
      const refused = async (input: Parameters<typeof store.routing.upsertRoute>[0], message: RegExp) => {
        const err = await store.routing.upsertRoute(input).then(
          () => null,
          (e) => e,
        );
        expect(err).toBeInstanceOf(AdminStoreError);
        expect(err.code).toBe('INVALID_INPUT');
        expect(err.message).toMatch(message);
      };
      await refused({ name: 'smart', ...base, rules: [{ name: 'bad', when: 'request.promptTokens >', route: 'strong' }] }, /^rules\[0\]\.when: invalid CEL/);
      await refused(
        { name: 'smart', ...base, rules: [{ name: 'typo', when: 'request.promptTokenz > 1', route: 'strong' }] },
        /^rules\[0\]\.when: invalid CEL: .*promptTokenz/,
      );
      await refused(
        { name: 'smart', ...base, rules: [{ name: 'str', when: 'request.promptTokens > "many"', route: 'strong' }] },
        /^rules\[0\]\.when: invalid CEL/,
      );
      await refused(
        { name: 'smart', ...base, rules: [{ name: 'num', when: 'request.promptTokens', route: 'strong' }] },
        /^rules\[0\]\.when: invalid CEL: must be a bool/,
      );
      // A backtracking regular expression over a client's header froze the event loop for seconds.
      for (const when of ['request.headers["x-app"].matches("^([a-z]+-?)*$")', 'request.feature.matches(request.team)'])
        await refused({ name: 'smart', ...base, rules: [{ name: 're', when, route: 'strong' }] }, /^rules\[0\]\.when: invalid CEL: matches\(\) is not allowed/);
      await refused({ name: 'smart', strategy: 'PRIORITY', targets: [{ provider: 'nope', model: 'm' }] }, /^targets\[0\]\.provider: unknown provider "nope"/);
      await refused(
        { name: 'smart', ...base, rules: [{ name: 'r', when: 'true', targets: [{ provider: 'nope', model: 'm' }] }] },
        /^rules\[0\]\.targets\[0\]\.provider/,
      );
      await refused({ name: 'smart', ...base, rules: [{ name: 'r', when: 'true', route: 'missing' }] }, /^rules\[0\]\.route: unknown route "missing"/);
      await refused({ name: 'smart', ...base, rules: [{ name: 'r', when: 'true' }] }, /^rules\[0\]: a rule needs either targets or a route/);
      await refused(
        { name: 'strong', ...base, rules: [{ name: 'back', when: 'true', route: 'smart' }] },
        /^rules\[0\]\.route: rules lead in a circle: strong → smart → strong/,
      );
      await refused({ name: 'smart', ...base, rules: [{ name: 'self', when: 'true', route: 'smart' }] }, /circle: smart → smart/);
      await refused({ name: 'smart', ...base, strategy: 'CASCADE' }, /^accept: a CASCADE route needs at least one acceptance check/);
      for (const embeddingModel of ['no-such-route', 'nope/embed', 'p1/'])
        await refused(
          { name: 'smart', ...base, cache: { mode: 'SEMANTIC', embeddingModel } },
          /^cache\.embeddingModel: ".*" is neither a route nor provider\/model/,
        );
      for (const embeddingModel of ['strong', 'p1/embed'])
        await store.routing.upsertRoute({ name: 'embedded', ...base, cache: { mode: 'SEMANTIC', embeddingModel } });
      // One stored before the check existed (or whose model went since) does not block other changes.
      await db.prisma.route.update({ where: { name: 'embedded' }, data: { cacheEmbeddingModel: 'gone-route' } });
      await store.routing.upsertRoute({ name: 'strong', ...base });
      await store.routing.applyRouting({ routes: [{ name: 'strong', ...base }], experiments: [] });
      await refused({ name: 'embedded', ...base, cache: { mode: 'SEMANTIC', embeddingModel: 'gone-route' } }, /^cache\.embeddingModel/);
      await store.routing.upsertRoute({ name: 'embedded', ...base });
      // Nor does a stored rule that no longer compiles (matches(), refused since): the catalog leaves it out.
      await db.prisma.route.update({
        where: { name: 'embedded' },
        data: { rules: [{ name: 'old-regex', when: 'request.feature.matches("^a")', targets: null, route: 'strong' }] },
      });
      await store.routing.upsertRoute({ name: 'strong', ...base });
      await store.routing.upsertRoute({ name: 'embedded', ...base });
      // Two writes at once that close a circle together (each alone is fine): one lands, the
      // other is refused. On PostgreSQL each transaction would see the other's route unchanged.
      await store.routing.upsertRoute({ name: 'ring-a', ...base });
      await store.routing.upsertRoute({ name: 'ring-b', ...base });
      const both = await Promise.allSettled([
        store.routing.upsertRoute({ name: 'ring-a', ...base, rules: [{ name: 'to-b', when: 'true', route: 'ring-b' }] }),
        store.routing.upsertRoute({ name: 'ring-b', ...base, rules: [{ name: 'to-a', when: 'true', route: 'ring-a' }] }),
      ]);
      expect(both.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      expect(String((both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason)).toMatch(/circle/);
      const kept = (await store.routing.listRoutes()).find((r) => r.name === 'smart')!;
      expect(kept.rules).toEqual([{ name: 'hard', when: 'request.promptTokens > 6000', targets: null, route: 'strong' }]);

      const experiment = {
        name: 'ab',
        route: 'smart',
        stickyBy: 'END_USER' as const,
        variants: [
          { name: 'control', weight: 90 },
          { name: 'cand', weight: 10, targets: [{ provider: 'p1', model: 'cheap' }] },
        ],
      };
      expect((await store.routing.upsertExperiment(experiment)).variants).toHaveLength(2);
      const refusedExperiment = async (input: Parameters<typeof store.routing.upsertExperiment>[0], message: RegExp) => {
        const err = await store.routing.upsertExperiment(input).then(
          () => null,
          (e) => e,
        );
        expect(err?.code).toBe('INVALID_INPUT');
        expect(err.message).toMatch(message);
      };
      await refusedExperiment(
        {
          ...experiment,
          variants: [
            { name: 'a', weight: 0 },
            { name: 'b', weight: 0 },
          ],
        },
        /^variants: variant weights sum to 0/,
      );
      await refusedExperiment({ ...experiment, route: 'missing' }, /^route: unknown route/);
      await refusedExperiment({ ...experiment, name: 'ab2' }, /^route: route "smart" already has an active experiment \("ab"\)/);
      await refusedExperiment({ ...experiment, variants: [{ name: 'a', weight: 1, route: 'missing' }] }, /^variants\[0\]\.route: unknown route/);
      expect(await store.routing.upsertExperiment({ ...experiment, name: 'ab2', active: false })).toMatchObject({ active: false });
      expect((await store.routing.listExperiments()).map((e) => e.name)).toEqual(['ab', 'ab2']);
      expect(await store.routing.deleteExperiment('ab2')).toBe(true);
      expect(await store.routing.deleteExperiment('ab2')).toBe(false);
    });

    it('applies a batch of routes and experiments whole: forward references work, a bad one rolls all back', async () => {
      await store.providers.upsertProvider({ name: 'p2', kind: 'OPENAI_COMPATIBLE', baseUrl: 'http://127.0.0.1:9/v1' });
      const t = [{ provider: 'p2', model: 'm' }];
      await store.routing.applyRouting({
        routes: [
          { name: 'front', strategy: 'PRIORITY', targets: t, rules: [{ name: 'to-back', when: 'request.hasTools', route: 'back' }] },
          { name: 'back', strategy: 'PRIORITY', targets: t },
        ],
        experiments: [{ name: 'front-ab', route: 'front', stickyBy: 'API_KEY', variants: [{ name: 'control', weight: 1 }] }],
      });
      expect((await store.routing.listRoutes()).map((r) => r.name)).toEqual(expect.arrayContaining(['front', 'back']));
      const err = await store.routing
        .applyRouting({
          routes: [
            { name: 'front2', strategy: 'PRIORITY', targets: t },
            { name: 'back2', strategy: 'PRIORITY', targets: [{ provider: 'ghost', model: 'm' }] },
          ],
          experiments: [],
        })
        .then(
          () => null,
          (e) => e,
        );
      expect(err.message).toMatch(/route back2: targets\[0\]\.provider: unknown provider "ghost"/);
      expect((await store.routing.listRoutes()).map((r) => r.name)).not.toContain('front2');
    });
  });

  describe('prices', () => {
    it('adds a version per set and serves the latest per provider+model, in USD', async () => {
      const v1 = await store.pricing.setPrice({ provider: 'openrouter', model: 'openai/gpt-4o-mini', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
      const v2 = await store.pricing.setPrice({
        provider: 'openrouter',
        model: 'openai/gpt-4o-mini',
        inputPerMTokUsd: 0.1,
        outputPerMTokUsd: 0.4,
        cachedInputPerMTokUsd: 0.025,
        source: 'test',
      });
      expect(v2.version).toBeGreaterThan(v1.version);
      const cny = await store.pricing.setPrice({
        provider: 'ark',
        model: 'doubao',
        inputPerMTokUsd: 0.8,
        outputPerMTokUsd: 8,
        currency: 'cny',
        usdRate: 0.14,
      });
      expect(cny).toMatchObject({ currency: 'CNY', usdRate: 0.14, inputPerMTokUsd: 0.112, outputPerMTokUsd: 1.12 });

      const current = await store.pricing.currentPrices();
      const mini = current.filter((p) => p.provider === 'openrouter' && p.model === 'openai/gpt-4o-mini');
      expect(mini).toHaveLength(1);
      expect(mini[0]).toMatchObject({
        version: v2.version,
        inputPerMTokUsd: 0.1,
        outputPerMTokUsd: 0.4,
        cachedInputPerMTokUsd: 0.025,
      });
      expect(current.find((p) => p.provider === 'ark')).toMatchObject({ version: cny.version, inputPerMTokUsd: 0.112 });
      expect((await store.pricing.priceHistory('openrouter', 'openai/gpt-4o-mini')).map((p) => p.version)).toEqual([v2.version, v1.version]);

      await rejectsWith(store.pricing.setPrice({ provider: 'ark', model: 'x', inputPerMTokUsd: 1, outputPerMTokUsd: 1, currency: 'EUR' }), 'INVALID_INPUT');
      await rejectsWith(store.pricing.setPrice({ provider: 'ark', model: 'x', inputPerMTokUsd: -1, outputPerMTokUsd: 1 }), 'INVALID_INPUT');
    });
  });

  describe('budgets', () => {
    it('upserts on scope + target + period, also when the target columns are null', async () => {
      const team = await store.teams.ensureTeam('budget-team');
      const b1 = await store.pricing.setBudget({ scope: 'TEAM', teamId: team.id, period: 'MONTH', limitUsd: 100, action: 'ALERT' });
      const b2 = await store.pricing.setBudget({ scope: 'TEAM', teamId: team.id, period: 'MONTH', limitUsd: 250.5, action: 'BLOCK' });
      expect(b2.id).toBe(b1.id);
      expect(b2).toMatchObject({ limitUsd: 250.5, action: 'BLOCK' });
      const day = await store.pricing.setBudget({ scope: 'TEAM', teamId: team.id, period: 'DAY', limitUsd: 10, action: 'BLOCK' });
      expect(day.id).not.toBe(b1.id);

      // A FEATURE budget for all teams has teamId and apiKeyId null: still one row.
      const f1 = await store.pricing.setBudget({ scope: 'FEATURE', feature: 'summarize', period: 'DAY', limitUsd: 5, action: 'ALERT' });
      const f2 = await store.pricing.setBudget({ scope: 'FEATURE', feature: 'summarize', period: 'DAY', limitUsd: 6, action: 'ALERT' });
      expect(f2.id).toBe(f1.id);
      const scoped = await store.pricing.setBudget({ scope: 'FEATURE', feature: 'summarize', teamId: team.id, period: 'DAY', limitUsd: 1, action: 'BLOCK' });
      expect(scoped.id).not.toBe(f1.id);

      const { apiKey } = await store.teams.createApiKey({ teamId: team.id, name: 'budgeted' });
      const kb = await store.pricing.setBudget({
        scope: 'API_KEY',
        apiKeyId: apiKey.id,
        period: 'TOTAL',
        limitUsd: 1,
        action: 'BLOCK',
        webhookUrl: 'https://hooks.example.test/x',
      });
      expect(kb).toMatchObject({ teamId: team.id, apiKeyId: apiKey.id, webhookUrl: 'https://hooks.example.test/x' });

      const all = await store.pricing.listBudgets();
      expect(all.filter((b) => b.scope === 'FEATURE' && b.feature === 'summarize')).toHaveLength(2);
      expect(all.filter((b) => b.scope === 'TEAM' && b.teamId === team.id)).toHaveLength(2);

      await rejectsWith(store.pricing.setBudget({ scope: 'TEAM', period: 'DAY', limitUsd: 1, action: 'BLOCK' }), 'INVALID_INPUT');
      await rejectsWith(store.pricing.setBudget({ scope: 'FEATURE', period: 'DAY', limitUsd: 1, action: 'BLOCK' }), 'INVALID_INPUT');
      await rejectsWith(
        store.pricing.setBudget({ scope: 'API_KEY', apiKeyId: '00000000-0000-4000-8000-000000000000', period: 'DAY', limitUsd: 1, action: 'BLOCK' }),
        'NOT_FOUND',
      );
      await rejectsWith(store.pricing.setBudget({ scope: 'TEAM', teamId: team.id, period: 'DAY', limitUsd: 0, action: 'BLOCK' }), 'INVALID_INPUT');
    });
  });

  describe('audit log', () => {
    it('two revokes of one key or token at once: one sets the time, both return it, one change is recorded', async () => {
      const actor = { id: `token:${randomUUID()}`, name: 'revoker' };
      const as = store.as(actor);
      const team = await as.teams.createTeam(`revoke-${randomUUID().slice(0, 8)}`);
      const { apiKey } = await as.teams.createApiKey({ teamId: team.id, name: 'k' });
      const { token } = await as.teams.createAccessToken({ name: 't', role: 'ANALYST', teamId: team.id });
      const keys = await Promise.all([as.teams.revokeApiKey(apiKey.id), as.teams.revokeApiKey(apiKey.id)]);
      const tokens = await Promise.all([as.teams.revokeAccessToken(token.id), as.teams.revokeAccessToken(token.id)]);
      expect(keys[0].revokedAt!.getTime()).toBe(keys[1].revokedAt!.getTime());
      expect(tokens[0].revokedAt!.getTime()).toBe(tokens[1].revokedAt!.getTime());
      const entries = (await store.audit.list({ actors: [actor.id] }, 50)).entries.map((e) => e.entry);
      for (const action of ['revokeApiKey', 'revokeAccessToken']) {
        const revokes = entries.filter((e) => e.action === action);
        expect(revokes).toHaveLength(2);
        expect(revokes.filter((e) => (e.before as { revokedAt: unknown }).revokedAt === null)).toHaveLength(1);
      }
    });

    it('every mutation appends one entry in its own transaction, naming the actor; a failed one appends none', async () => {
      const actor = { id: `token:${randomUUID()}`, name: 'auditor' };
      const as = store.as(actor);
      const mine = async () => (await store.audit.list({ actors: [actor.id] }, 500)).entries.map((e) => e.entry);

      const team = await as.teams.createTeam(`audit-${randomUUID().slice(0, 8)}`);
      const { apiKey } = await as.teams.createApiKey({ teamId: team.id, name: 'k', allowedCidrs: ['10.0.0.0/8'] });
      await as.teams.revokeApiKey(apiKey.id);
      const { token } = await as.teams.createAccessToken({ name: 't', role: 'ANALYST', teamId: team.id });
      await as.teams.revokeAccessToken(token.id);
      await as.providers.upsertProvider({
        name: 'audit-p',
        kind: 'OPENAI_COMPATIBLE',
        baseUrl: 'https://u:base-url-pass@llm.example.com/v1?key=query-key',
        apiKey: 'sk-audit-plain-secret',
        extraHeaders: { 'x-api-key': 'header-secret' },
      });
      await as.providers.upsertProvider({ name: 'audit-p', kind: 'OPENAI_COMPATIBLE', timeoutMs: 5000 });
      await as.routing.upsertRoute({ name: 'audit-r', strategy: 'PRIORITY', targets: [{ provider: 'audit-p', model: 'm' }] });
      await as.pricing.setPrice({ provider: 'audit-p', model: 'm', inputPerMTokUsd: 1, outputPerMTokUsd: 2 });
      await as.pricing.setBudget({
        scope: 'TEAM',
        teamId: team.id,
        period: 'DAY',
        limitUsd: 5,
        action: 'ALERT',
        webhookUrl: 'https://hooks.example.com/b?token=hook-token',
      });

      const before = (await mine()).length;
      await rejectsWith(as.teams.createApiKey({ teamId: '00000000-0000-4000-8000-000000000000', name: 'x' }), 'NOT_FOUND');
      await rejectsWith(as.teams.createTeam(team.name), 'CONFLICT');
      expect((await mine()).length).toBe(before);

      const entries = (await mine()).reverse();
      expect(entries.map((e) => e.action)).toEqual([
        'createTeam',
        'createApiKey',
        'revokeApiKey',
        'createAccessToken',
        'revokeAccessToken',
        'upsertProvider',
        'upsertProvider',
        'upsertRoute',
        'setPrice',
        'setBudget',
      ]);
      expect(entries.every((e) => e.actor === actor.id && e.actorName === 'auditor')).toBe(true);
      expect(entries.map((e) => e.target)).toEqual([
        `team:${team.id}`,
        `api_key:${apiKey.id}`,
        `api_key:${apiKey.id}`,
        `access_token:${token.id}`,
        `access_token:${token.id}`,
        'provider:audit-p',
        'provider:audit-p',
        'route:audit-r',
        'price:audit-p/m',
        expect.stringMatching(/^budget:/),
      ]);
      expect(entries.map((e) => e.teamId)).toEqual([team.id, team.id, team.id, team.id, team.id, null, null, null, null, team.id]);
      const [, createKey, revokeKey, , , provider1, provider2, , , budget] = entries;
      expect(createKey!.before).toBeNull();
      expect(createKey!.after).toMatchObject({ id: apiKey.id, name: 'k', allowedCidrs: ['10.0.0.0/8'], revokedAt: null });
      expect(revokeKey!.before).toMatchObject({ revokedAt: null });
      expect((revokeKey!.after as { revokedAt: string }).revokedAt).toMatch(/^\d{4}-/);
      expect(provider1!.before).toBeNull();
      expect(provider1!.after).toMatchObject({
        name: 'audit-p',
        hasApiKey: true,
        apiKeyChanged: true,
        extraHeaders: ['x-api-key'],
        baseUrl: 'https://u:***@llm.example.com/v1?key=***',
      });
      expect(provider2!.before).toMatchObject({ timeoutMs: null });
      expect(provider2!.after).toMatchObject({ timeoutMs: 5000, hasApiKey: true, apiKeyChanged: false });
      expect(budget!.after).toMatchObject({ limitUsd: 5, webhookOrigin: 'https://hooks.example.com' });

      // Secrets never: not in the API rows, not in the database.
      const raw = JSON.stringify(await db.prisma.$queryRaw`SELECT "actor", "action", "target", "before"::text, "after"::text FROM "AuditEntry"`);
      for (const secret of ['sk-audit-plain-secret', 'header-secret', 'base-url-pass', 'query-key', 'hook-token', 'secretHash', 'apiKeyCiphertext']) {
        expect(raw).not.toContain(secret);
      }
    });

    it('lists newest first with filters and cursor pages', async () => {
      const actor = { id: `oidc:${randomUUID()}`, name: null };
      const as = store.as(actor);
      const t0 = new Date();
      const teams = [];
      for (let i = 0; i < 5; i++) teams.push(await as.teams.createTeam(`page-${randomUUID().slice(0, 8)}`));
      const keyTeam = teams[0]!;
      const key = await as.teams.createApiKey({ teamId: keyTeam.id, name: 'k' });

      const all = await store.audit.list({ actors: [actor.id] });
      expect(all.entries.map((e) => e.entry.action)).toEqual(['createApiKey', ...Array(5).fill('createTeam')]);
      expect(all.entries.map((e) => e.entry.target)).toEqual([`api_key:${key.apiKey.id}`, ...[...teams].reverse().map((t) => `team:${t.id}`)]);

      const seen: string[] = [];
      let after: string | null = null;
      for (;;) {
        const page = await store.audit.list({ actors: [actor.id] }, 2, after);
        seen.push(...page.entries.map((e) => e.entry.id));
        if (!page.hasNextPage) break;
        expect(page.entries).toHaveLength(2);
        after = page.endCursor;
      }
      expect(seen).toEqual(all.entries.map((e) => e.entry.id));

      expect((await store.audit.list({ actors: [actor.id], actions: ['createApiKey'] })).entries).toHaveLength(1);
      expect((await store.audit.list({ actors: [actor.id], teamId: keyTeam.id })).entries.map((e) => e.entry.action)).toEqual(['createApiKey', 'createTeam']);
      expect((await store.audit.list({ actors: [actor.id], from: new Date(Date.now() + 60_000) })).entries).toHaveLength(0);
      expect((await store.audit.list({ actors: [actor.id], to: t0 })).entries).toHaveLength(0);
      expect((await store.audit.list({ actors: [actor.id], from: t0 })).entries).toHaveLength(6);
      await rejectsWith(store.audit.list({}, 501), 'INVALID_INPUT');
      await rejectsWith(store.audit.list({}, 10, 'bm90LWEtY3Vyc29y'), 'INVALID_INPUT');
    });

    it('is append-only in the database too: UPDATE, DELETE and TRUNCATE are refused', async () => {
      await store.teams.createTeam(`ro-${randomUUID().slice(0, 8)}`);
      const count = async () => (await db.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n FROM "AuditEntry"`)[0]!.n;
      const n = await count();
      await expect(db.prisma.$executeRaw`UPDATE "AuditEntry" SET "actor" = 'someone-else'`).rejects.toThrow(/append-only/);
      await expect(db.prisma.$executeRaw`DELETE FROM "AuditEntry"`).rejects.toThrow(/append-only/);
      await expect(db.prisma.$executeRaw`TRUNCATE "AuditEntry"`).rejects.toThrow(/append-only/);
      expect(await count()).toBe(n);
      const actors = await db.prisma.$queryRaw<{ n: bigint }[]>`SELECT count(*) AS n FROM "AuditEntry" WHERE "actor" = 'someone-else'`;
      expect(actors[0]!.n).toBe(0n);
    });
  });

  describe('catalog version', () => {
    it('is bumped by every mutation, not by reads, and never loses a concurrent bump', async () => {
      const v = async () => BigInt(await store.catalogVersion());
      let last = await v();
      const expectBump = async (what: string, op: () => Promise<unknown>) => {
        await op();
        const now = await v();
        expect(now, what).toBeGreaterThan(last);
        last = now;
      };
      const team = await store.teams.ensureTeam('catalog-team');
      last = await v();
      let keyId = '';
      await expectBump('createApiKey', async () => {
        keyId = (await store.teams.createApiKey({ teamId: team.id, name: 'c' })).apiKey.id;
      });
      await expectBump('revokeApiKey', () => store.teams.revokeApiKey(keyId));
      await expectBump('upsertProvider', () => store.providers.upsertProvider({ name: 'cat', kind: 'SIMULATED', baseUrl: 'http://127.0.0.1:9/v1' }));
      await expectBump('upsertRoute', () => store.routing.upsertRoute({ name: 'cat', strategy: 'PRIORITY', targets: [{ provider: 'cat', model: 'm' }] }));
      await expectBump('setPrice', () => store.pricing.setPrice({ provider: 'cat', model: 'm', inputPerMTokUsd: 1, outputPerMTokUsd: 2 }));
      await expectBump('setBudget', () => store.pricing.setBudget({ scope: 'TEAM', teamId: team.id, period: 'TOTAL', limitUsd: 9, action: 'ALERT' }));

      await store.providers.listProviders();
      await store.routing.listRoutes();
      await store.pricing.currentPrices();
      await store.teams.findApiKeyBySecretHash('0'.repeat(64));
      await store.teams.touchApiKey(keyId);
      expect(await v()).toBe(last);

      // A failed mutation does not bump (the bump is in its transaction).
      await rejectsWith(store.teams.createApiKey({ teamId: '00000000-0000-4000-8000-000000000000', name: 'x' }), 'NOT_FOUND');
      expect(await v()).toBe(last);

      const bumps = await Promise.all(Array.from({ length: 10 }, () => new Mutations(db.prisma).bumpCatalogVersion()));
      expect(new Set(bumps).size).toBe(10);
      expect(await v()).toBe(last + 10n);
    });
  });
});

describe('credentials', () => {
  it('generates checksummed keys and rejects malformed ones without a lookup', () => {
    const key = generateApiKeySecret();
    expect(key).toMatch(/^tg-[0-9A-Za-z]{49}$/);
    expect(isWellFormedApiKey(key)).toBe(true);
    expect(generateApiKeySecret()).not.toBe(key);
    // One changed character breaks the checksum.
    const i = 10;
    const flipped = key.slice(0, i) + (key[i] === 'a' ? 'b' : 'a') + key.slice(i + 1);
    expect(isWellFormedApiKey(flipped)).toBe(false);
    expect(isWellFormedApiKey(key.slice(0, -1))).toBe(false);
    expect(isWellFormedApiKey(`${key}x`)).toBe(false);
    expect(isWellFormedApiKey(key.replace('tg-', 'tx-'))).toBe(false);
    expect(isWellFormedApiKey(`${key.slice(0, 20)}-${key.slice(21)}`)).toBe(false);
    expect(isWellFormedApiKey('')).toBe(false);
    expect(isWellFormedApiKey(`sk-${key.slice(3)}`)).toBe(false);

    const token = generateAccessTokenSecret();
    expect(token).toMatch(/^tga-[0-9A-Za-z]{49}$/);
    expect(isWellFormedAccessToken(token)).toBe(true);
    expect(isWellFormedAccessToken(key)).toBe(false);
    expect(isWellFormedApiKey(token)).toBe(false);

    expect(hashSecret('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('creates the admin token once with mode 0600, and prefers a configured one', async () => {
    const dir = await tempDir('admin');
    const first = await ensureAdminToken({ dataDir: dir });
    expect(first.created).toBe(true);
    expect(isWellFormedAccessToken(first.token)).toBe(true);
    const file = path.join(dir, 'admin-token');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toBe(first.token);
    const second = await ensureAdminToken({ dataDir: dir });
    expect(second).toEqual({ token: first.token, created: false });

    const other = await tempDir('admin-configured');
    expect(await ensureAdminToken({ dataDir: other, configured: ' my-configured-token ' })).toEqual({
      token: 'my-configured-token',
      created: false,
    });
    expect(() => statSync(path.join(other, 'admin-token'))).toThrow();
  });
});

describe('SecretBox', () => {
  it('creates secret.key with mode 0600 once and reuses it', async () => {
    const dir = await tempDir('box');
    const a = await SecretBox.open({ dataDir: dir });
    const file = path.join(dir, 'secret.key');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const content = readFileSync(file, 'utf8');
    const sealed = a.seal('hello');
    const b = await SecretBox.open({ dataDir: dir });
    expect(readFileSync(file, 'utf8')).toBe(content);
    expect(b.open(sealed)).toBe('hello');
    expect(b.keySource).toBe('key-file');

    // Concurrent first opens agree on one key.
    const dir2 = await tempDir('box-race');
    const boxes = await Promise.all(Array.from({ length: 5 }, () => SecretBox.open({ dataDir: dir2 })));
    const s = boxes[0]!.seal('x');
    for (const bx of boxes) expect(bx.open(s)).toBe('x');

    // A damaged key file is an error, never silently replaced.
    const dir3 = await tempDir('box-damaged');
    writeFileSync(path.join(dir3, 'secret.key'), 'garbage\n');
    await expect(SecretBox.open({ dataDir: dir3 })).rejects.toBeInstanceOf(SecretBoxError);
    expect(readFileSync(path.join(dir3, 'secret.key'), 'utf8')).toBe('garbage\n');
  });

  it('accepts hex, base64 and base64url keys and passphrases; rejects weak ones', async () => {
    const dir = await tempDir('box-config');
    const raw = Buffer.alloc(32, 7);
    const hex = await SecretBox.open({ dataDir: dir, secretKey: raw.toString('hex') });
    const b64 = await SecretBox.open({ dataDir: dir, secretKey: raw.toString('base64') });
    const b64u = await SecretBox.open({ dataDir: dir, secretKey: raw.toString('base64url') });
    expect(hex.keySource).toBe('configured-key');
    const sealed = hex.seal('same key');
    expect(b64.open(sealed)).toBe('same key');
    expect(b64u.open(sealed)).toBe('same key');
    expect(() => statSync(path.join(dir, 'secret.key'))).toThrow(); // no key file when configured

    const p1 = await SecretBox.open({ dataDir: dir, secretKey: 'correct horse battery staple' });
    const p2 = await SecretBox.open({ dataDir: dir, secretKey: 'correct horse battery staple' });
    expect(p1.keySource).toBe('configured-passphrase');
    expect(p2.open(p1.seal('pass'))).toBe('pass');
    expect(() => hex.open(p1.seal('pass'))).toThrow(SecretBoxError);
    await expect(SecretBox.open({ dataDir: dir, secretKey: 'short' })).rejects.toBeInstanceOf(SecretBoxError);
  });

  it('detects tampering with any part, a wrong key, or a wrong context', () => {
    const box1 = SecretBox.fromKey(Buffer.alloc(32, 1));
    const box2 = SecretBox.fromKey(Buffer.alloc(32, 2));
    const sealed = box1.seal('top secret', 'ctx');
    expect(sealed).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
    expect(box1.seal('top secret', 'ctx')).not.toBe(sealed); // random IV
    expect(box1.open(sealed, 'ctx')).toBe('top secret');
    const parts = sealed.split('.');
    for (const i of [1, 2, 3]) {
      const p = [...parts];
      const s = p[i]!;
      p[i] = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
      expect(() => box1.open(p.join('.'), 'ctx')).toThrow(SecretBoxError);
    }
    expect(() => box1.open(sealed, 'other')).toThrow(SecretBoxError);
    expect(() => box1.open(sealed)).toThrow(SecretBoxError);
    expect(() => box2.open(sealed, 'ctx')).toThrow(SecretBoxError);
    expect(() => box1.open(`v2.${parts.slice(1).join('.')}`, 'ctx')).toThrow(SecretBoxError);
    expect(() => box1.open('top secret')).toThrow(SecretBoxError);
  });
});
