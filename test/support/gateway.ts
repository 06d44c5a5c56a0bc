// Starts a real Tollgate (embedded stores in a temp dir, or the machine's PostgreSQL when
// DATABASE_URL is set: then a fresh database per test file) in front of the loopback
// simulated provider, and hands out OpenAI clients for it.
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import pg from 'pg';
import { inject } from 'vitest';
import { type Config, loadConfig } from '../../src/config.js';
import { type Started, startServer } from '../../src/main.js';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';

export interface TestGateway {
  url: string;
  baseURL: string;
  started: Started;
  sim: SimulatedProvider;
  dataDir: string;
  config: Config;
  adminToken: string;
  /** Creates a key for `team` (team created if missing) and returns its secret. */
  createKey(
    team?: string,
    opts?: { rpmLimit?: number; tpmLimit?: number; allowedRoutes?: string[]; allowedCidrs?: string[]; expiresAt?: Date },
  ): Promise<{ secret: string; id: string; teamId: string }>;
  client(secret: string, opts?: { maxRetries?: number; timeout?: number; defaultHeaders?: Record<string, string> }): OpenAI;
  /** Stops the gateway (drain + flush) and removes everything. */
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  env?: Record<string, string>;
  /** Keep the data dir (to restart on it). */
  dataDir?: string;
  keepDataDir?: boolean;
  /** Settings no environment variable can reach (e.g. a retention shorter than the variable's unit). */
  config?: Partial<Config>;
}

/** A fresh PostgreSQL database per call when DATABASE_URL is set; undefined otherwise. */
export async function scratchDatabase(): Promise<{ url: string; drop(): Promise<void> } | undefined> {
  const base = process.env.DATABASE_URL;
  if (!base) return undefined;
  const name = `tollgate_t_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export async function startTestGateway(opts: TestGatewayOptions = {}): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'tollgate-test-')));
  const db = opts.dataDir ? undefined : await scratchDatabase();
  // A fresh embedded database starts as a copy of the run's migrated one (pg-template.ts).
  const template = opts.dataDir || db ? '' : inject('pgTemplateDir');
  if (template) await cp(path.join(template, 'pg'), path.join(dataDir, 'pg'), { recursive: true });
  const sim = await startSimulatedProvider();
  const env: Record<string, string | undefined> = {
    TOLLGATE_DATA_DIR: dataDir,
    TOLLGATE_PORT: '0',
    TOLLGATE_LOG_LEVEL: 'silent',
    TOLLGATE_BATCH_MAX_MS: '50',
    TOLLGATE_DRAIN_TIMEOUT_MS: '2000',
    CLICKHOUSE_URL: process.env.CLICKHOUSE_URL,
    ...(db ? { DATABASE_URL: db.url } : {}),
    ...opts.env,
  };
  const config: Config = { ...loadConfig(env as NodeJS.ProcessEnv), ...opts.config };
  const started = await startServer(config, { quiet: true });
  const store = started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'sim', kind: 'SIMULATED', baseUrl: sim.url, apiKey: 'sim-upstream-secret' });
  await store.providers.upsertProvider({ name: 'sim-b', kind: 'SIMULATED', baseUrl: sim.url, apiKey: 'sim-upstream-secret-b' });
  await store.routing.upsertRoute({ name: 'chat-default', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'sim-large' }] });
  await store.routing.upsertRoute({
    name: 'failover',
    strategy: 'PRIORITY',
    retries: 0,
    targets: [
      { provider: 'sim', model: 'primary', priority: 0 },
      { provider: 'sim-b', model: 'backup', priority: 1 },
    ],
  });
  await store.routing.upsertRoute({ name: 'embed-default', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'sim-embed' }] });
  await store.pricing.setPrice({ provider: 'sim', model: 'sim-large', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 });
  await store.pricing.setPrice({ provider: 'sim', model: 'primary', inputPerMTokUsd: 1, outputPerMTokUsd: 2 });
  await store.pricing.setPrice({ provider: 'sim-b', model: 'backup', inputPerMTokUsd: 0.5, outputPerMTokUsd: 1.5, cachedInputPerMTokUsd: 0.25 });
  await store.pricing.setPrice({ provider: 'sim', model: 'sim-embed', inputPerMTokUsd: 0.02, outputPerMTokUsd: 0 });
  await started.runtime.app.catalog.load();

  return {
    url: started.url,
    baseURL: `${started.url}/v1`,
    started,
    sim,
    dataDir,
    config,
    adminToken: started.runtime.adminToken.token,
    async createKey(team = 'team-a', keyOpts = {}) {
      const t = await store.teams.ensureTeam(team);
      const k = await store.teams.createApiKey({ teamId: t.id, name: 'test', ...keyOpts });
      return { secret: k.secret, id: k.apiKey.id, teamId: t.id };
    },
    client(secret, clientOpts = {}) {
      return new OpenAI({ baseURL: `${started.url}/v1`, apiKey: secret, maxRetries: 0, timeout: 20_000, ...clientOpts });
    },
    async close() {
      await started.stop();
      await sim.close();
      // Kept state means the database too: a test restarts on it.
      if (!opts.keepDataDir) {
        await db?.drop().catch(() => undefined);
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
