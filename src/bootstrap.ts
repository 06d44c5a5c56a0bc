// Configuration without GraphQL: provider presets from well-known environment variables,
// and the declarative file (TOLLGATE_CONFIG=tollgate.yaml) upserted at start.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Config } from './config.js';
import { importSnapshot, PRICE_SNAPSHOT, type SnapshotTarget } from './pricing/snapshot.js';
import { PRESETS, type ProviderKind } from './providers/presets.js';
import type { PriceInput } from './routing/catalog.js';
import type { PriceRecord, SetPriceInput } from './store/admin/pricing.js';

export interface BootstrapStore {
  teams: { ensureTeam(name: string): Promise<unknown> };
  providers: {
    upsertProvider(
      input: {
        name: string;
        kind: ProviderKind;
        baseUrl?: string | null;
        apiKey?: string | null;
        timeoutMs?: number | null;
        extraHeaders?: Record<string, string>;
        modelMap?: Record<string, string>;
      },
      opts?: { fromConfigFile?: boolean },
    ): Promise<unknown>;
  };
  routing: { applyRouting(batch: { routes: DeclaredRoute[]; experiments: DeclaredExperiment[] }): Promise<unknown> };
  pricing: {
    setPrice(input: DeclaredPrice): Promise<unknown>;
    currentPrices(): Promise<PriceInput[]>;
    setPriceIfChanged(input: SetPriceInput): Promise<{ price: PriceRecord; created: boolean }>;
  };
}

const kind = z.enum(['OPENAI_COMPATIBLE', 'OPENROUTER', 'ARK', 'OPENAI', 'DEEPSEEK', 'QWEN', 'ZHIPU', 'ANTHROPIC', 'SIMULATED']);
const name = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'letters, digits, . _ : - only');
/**
 * A number in the file, or one from a `${VAR}` (a string of decimal digits: nothing else, a
 * blank included, becomes one); likewise `true`/`false` for a boolean.
 */
const fileNumber = (n: z.ZodNumber) => z.preprocess((v) => (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v) ? Number(v) : v), n);
const fileBoolean = () => z.preprocess((v) => (v === 'true' ? true : v === 'false' ? false : v), z.boolean());
const strategy = z.enum(['PRIORITY', 'WEIGHTED', 'LEAST_LATENCY', 'LOWEST_COST', 'CASCADE']);
const TargetDecl = z.strictObject({
  provider: name,
  model: z.string().min(1),
  weight: fileNumber(z.number().min(0)).optional(),
  priority: fileNumber(z.number().int()).optional(),
});
/** `accept: [json, tool_args]` in the file (DESIGN §5); the enum's names elsewhere. */
const acceptCheck = z
  .string()
  .transform((s) => s.toUpperCase())
  .pipe(z.enum(['JSON', 'TOOL_ARGS', 'NOT_TRUNCATED', 'NON_EMPTY', 'NOT_REFUSED']));

const ProviderDecl = z.strictObject({
  name,
  kind,
  baseUrl: z.url().optional(),
  apiKey: z.string().optional(),
  timeoutMs: fileNumber(z.number().int().positive()).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  modelMap: z.record(z.string(), z.string()).optional(),
});
const RouteDecl = z.strictObject({
  name: z.string().min(1).max(128),
  strategy: strategy.default('PRIORITY'),
  retries: fileNumber(z.number().int().min(0).max(10)).optional(),
  timeoutMs: fileNumber(z.number().int().positive()).optional(),
  cache: z
    .strictObject({
      mode: z.enum(['OFF', 'EXACT', 'SEMANTIC']),
      ttlSeconds: fileNumber(z.number().int().positive()).optional(),
      similarityThreshold: fileNumber(z.number().min(0).max(1)).optional(),
      embeddingModel: z.string().min(1).optional(),
      cacheSampled: fileBoolean().optional(),
      cacheToolCalls: fileBoolean().optional(),
    })
    .optional(),
  targets: z.array(TargetDecl).min(1),
  rules: z.array(z.strictObject({ name: z.string().min(1), when: z.string(), targets: z.array(TargetDecl).optional(), route: name.optional() })).optional(),
  accept: z.array(acceptCheck).optional(),
});
const ExperimentDecl = z.strictObject({
  name,
  route: name,
  stickyBy: z.enum(['END_USER', 'TASK', 'API_KEY', 'REQUEST']).default('END_USER'),
  active: fileBoolean().optional(),
  variants: z.array(z.strictObject({ name, weight: fileNumber(z.number().min(0)), targets: z.array(TargetDecl).optional(), route: name.optional() })).min(1),
});
const PriceDecl = z.strictObject({
  provider: name,
  model: z.string().min(1),
  inputPerMTokUsd: fileNumber(z.number().min(0)),
  outputPerMTokUsd: fileNumber(z.number().min(0)),
  cachedInputPerMTokUsd: fileNumber(z.number().min(0)).optional(),
  cacheWritePerMTokUsd: fileNumber(z.number().min(0)).optional(),
  source: z.string().optional(),
});
const ConfigFile = z.strictObject({
  providers: z.array(ProviderDecl).default([]),
  routes: z.array(RouteDecl).default([]),
  experiments: z.array(ExperimentDecl).default([]),
  prices: z.array(PriceDecl).default([]),
  teams: z.array(z.union([name, z.strictObject({ name })])).default([]),
});

export type DeclaredRoute = z.infer<typeof RouteDecl>;
export type DeclaredExperiment = z.infer<typeof ExperimentDecl>;
export type DeclaredPrice = z.infer<typeof PriceDecl>;

/** A `${VAR}` reference. */
const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** What a reference is while the file is parsed: plain text wherever YAML takes text (a flow mapping, a key). */
const PLACEHOLDER = /tollgate-env-ref--([A-Za-z_][A-Za-z0-9_]*)--/g;

/**
 * References → the variables' values, in every string (and key) of `value`; an unset variable
 * is an error, not an empty secret.
 */
export function substituteEnv<T>(value: T, env: Readonly<Record<string, string | undefined>>, pattern = REFERENCE): T {
  if (typeof value === 'string') {
    return value.replace(pattern, (_, variable: string) => {
      const set = env[variable];
      if (set === undefined) throw new Error(`config file references \${${variable}}, which is not set`);
      return set;
    }) as T;
  }
  if (Array.isArray(value)) return value.map((v) => substituteEnv(v, env, pattern)) as T;
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [substituteEnv(k, env, pattern), substituteEnv(v, env, pattern)])) as T;
  }
  return value;
}

/**
 * The file, its references replaced after it is parsed, not before: a value is never read as
 * YAML (a key holding ` #` was cut, one starting with `@` or a backtick refused with the
 * parser's error showing it, a number-like one read as a number). Fields that take numbers or
 * booleans read them from a variable's text (fileNumber, fileBoolean).
 */
export async function loadConfigFile(path: string, env: Readonly<Record<string, string | undefined>>) {
  const text = await readFile(path, 'utf8');
  const marked = text.replace(REFERENCE, 'tollgate-env-ref--$1--');
  const parsed = ConfigFile.safeParse(substituteEnv(parseYaml(marked) ?? {}, env, PLACEHOLDER));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid config file ${path}: ${problems}`);
  }
  return parsed.data;
}

/** Upserts presets and the declarative file. Returns what it did, for the start banner. */
export async function bootstrap(config: Config, store: BootstrapStore): Promise<string[]> {
  const done: string[] = [];
  const presets: Array<[ProviderKind, string | undefined]> = [
    ['OPENROUTER', config.presetKeys.openrouter],
    ['ARK', config.presetKeys.ark],
    ['OPENAI', config.presetKeys.openai],
    ['DEEPSEEK', config.presetKeys.deepseek],
    ['QWEN', config.presetKeys.qwen],
    ['ZHIPU', config.presetKeys.zhipu],
    ['ANTHROPIC', config.presetKeys.anthropic],
  ];
  const fromEnvironment: SnapshotTarget[] = [];
  for (const [k, apiKey] of presets) {
    if (!apiKey) continue;
    await store.providers.upsertProvider({ name: PRESETS[k].defaultName, kind: k, apiKey });
    fromEnvironment.push({ name: PRESETS[k].defaultName, kind: k });
    done.push(`provider ${PRESETS[k].defaultName} (from environment)`);
  }
  if (config.configFile) done.push(await applyConfigFile(config.configFile, config, store));

  // After the file, so that its prices win: the snapshot only fills in models that have no
  // price at all, which also makes every later start a no-op.
  if (fromEnvironment.length) {
    const imported = await importSnapshot(store.pricing, fromEnvironment, { onlyMissing: true });
    if (imported.created.length) {
      done.push(
        `${imported.created.length} prices for ${fromEnvironment.map((t) => t.name).join(', ')}: vendor list prices as of ${PRICE_SNAPSHOT.asOf}, check them`,
      );
    }
  }
  return done;
}

async function applyConfigFile(configFile: string, config: Config, store: BootstrapStore): Promise<string> {
  const file = await loadConfigFile(configFile, config.envForReferences);
  for (const t of file.teams) await store.teams.ensureTeam(typeof t === 'string' ? t : t.name);
  for (const p of file.providers) {
    await store.providers.upsertProvider(
      {
        name: p.name,
        kind: p.kind,
        baseUrl: p.baseUrl ?? null,
        apiKey: p.apiKey,
        timeoutMs: p.timeoutMs ?? null,
        extraHeaders: p.headers ?? {},
        modelMap: p.modelMap ?? {},
      },
      { fromConfigFile: true },
    );
  }
  // Routes and experiments land together, so they may refer to each other in any order.
  await store.routing.applyRouting({ routes: file.routes, experiments: file.experiments });
  // A price is versioned: only an actual change makes a new version.
  const current = new Map((await store.pricing.currentPrices()).map((p) => [`${p.provider}/${p.model}`, p]));
  for (const p of file.prices) {
    const was = current.get(`${p.provider}/${p.model}`);
    const same =
      was &&
      was.inputPerMTokUsd === p.inputPerMTokUsd &&
      was.outputPerMTokUsd === p.outputPerMTokUsd &&
      (was.cachedInputPerMTokUsd ?? undefined) === p.cachedInputPerMTokUsd &&
      (was.cacheWritePerMTokUsd ?? undefined) === p.cacheWritePerMTokUsd;
    if (!same) await store.pricing.setPrice(p);
  }
  return `${configFile}: ${file.providers.length} providers, ${file.routes.length} routes, ${file.experiments.length} experiments, ${file.prices.length} prices, ${file.teams.length} teams`;
}
