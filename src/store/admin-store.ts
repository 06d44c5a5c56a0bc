// Data access for the configuration store, shared by the gateway, the CLI and GraphQL.
//
// Rules kept here, so that every caller gets them:
//   - inputs are validated (zod) and every failure is an AdminStoreError with a stable code;
//   - secrets: API key and access token secrets are returned once and stored only as
//     SHA-256; provider API keys are sealed with the SecretBox and only
//     loadProvidersWithSecrets() (the gateway) ever sees them in clear;
//   - every mutation bumps the catalog version in the same transaction, so gateways poll
//     one cheap row (catalogVersion()) to know when to reload providers, routes, prices,
//     keys and budgets;
//   - upserts: the same provider name, route name, provider+model (price, as a new
//     version) or scope+target+period (budget) replaces the old one (DESIGN §8).
import { z } from 'zod';
import {
  AccessRole,
  BudgetAction,
  BudgetPeriod,
  BudgetScope,
  CacheMode,
  Prisma,
  ProviderKind,
  RouteStrategy,
  type PrismaClient,
} from './prisma.js';
import { displayPrefixOf, generateAccessTokenSecret, generateApiKeySecret, hashSecret } from './credentials.js';
import type { SecretBox } from './secret-box.js';

type Tx = Prisma.TransactionClient;

// ---------------------------------------------------------------------------------------
// Errors

export type AdminStoreErrorCode = 'NOT_FOUND' | 'CONFLICT' | 'INVALID_INPUT' | 'SECRET_UNREADABLE';

export class AdminStoreError extends Error {
  constructor(
    readonly code: AdminStoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AdminStoreError';
  }
}

// ---------------------------------------------------------------------------------------
// Records (plain objects: no Prisma types, no Decimals, never a secret unless named so)

export interface TeamRecord {
  id: string;
  name: string;
  createdAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  teamId: string;
  name: string;
  displayPrefix: string;
  rpmLimit: number | null;
  tpmLimit: number | null;
  /** Route names this key may use; empty = all. */
  allowedRoutes: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export interface AccessTokenRecord {
  id: string;
  name: string;
  role: AccessRole;
  teamId: string | null;
  revokedAt: Date | null;
  createdAt: Date;
}

/** A provider as any admin may see it: the API key is write-only. */
export interface ProviderInfo {
  id: string;
  name: string;
  kind: ProviderKind;
  baseUrl: string | null;
  hasApiKey: boolean;
  timeoutMs: number | null;
  extraHeaders: Record<string, string>;
  modelMap: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

/** A provider with its decrypted API key: for the gateway only. */
export interface ProviderRecord {
  id: string;
  name: string;
  kind: ProviderKind;
  baseUrl: string | null;
  apiKey: string | null;
  timeoutMs: number | null;
  extraHeaders: Record<string, string>;
  modelMap: Record<string, string>;
}

export interface RouteTargetRecord {
  provider: string;
  model: string;
  weight: number;
  priority: number;
}

export interface CachePolicyRecord {
  mode: CacheMode;
  ttlSeconds: number | null;
  similarityThreshold: number | null;
  /** SEMANTIC: a route or provider/model serving /v1/embeddings; null = the local embedder. */
  embeddingModel: string | null;
  /** Cache answers to sampled requests (temperature > 0 without a seed, n > 1). */
  cacheSampled: boolean;
  /** Cache answers that call tools. */
  cacheToolCalls: boolean;
}

export interface RouteRecord {
  id: string;
  name: string;
  strategy: RouteStrategy;
  retries: number;
  timeoutMs: number | null;
  cache: CachePolicyRecord;
  /** In the order given (position). */
  targets: RouteTargetRecord[];
  createdAt: Date;
  updatedAt: Date;
}

export interface PriceRecord {
  /** The Price row id: the `price_version` receipts carry. */
  version: number;
  provider: string;
  model: string;
  /** USD per million tokens (converted with `usdRate` when the price was set in another currency). */
  inputPerMTokUsd: number;
  outputPerMTokUsd: number;
  cachedInputPerMTokUsd: number | null;
  /** As entered. */
  currency: string;
  usdRate: number | null;
  source: string | null;
  effectiveFrom: Date;
  createdAt: Date;
}

export interface BudgetRecord {
  id: string;
  scope: BudgetScope;
  /** TEAM: the team; API_KEY: the key's team; FEATURE: the team it is limited to, or null for all. */
  teamId: string | null;
  apiKeyId: string | null;
  feature: string | null;
  period: BudgetPeriod;
  limitUsd: number;
  action: BudgetAction;
  webhookUrl: string | null;
  /** When the counter store is unreachable: admit (true) or refuse with 503 (false). */
  failOpen: boolean;
  createdAt: Date;
  updatedAt: Date;
}

// ---------------------------------------------------------------------------------------
// Inputs

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SHA256_HEX = /^[0-9a-f]{64}$/;
// Names show up in logs, receipts and URLs; no control characters anywhere.
// eslint-disable-next-line no-control-regex
const NO_CONTROL = /^[^\u0000-\u001f\u007f]*$/;

const label = z.string().trim().min(1).max(128).regex(NO_CONTROL, 'must not contain control characters');
/**
 * Provider names are the first segment of `provider/model` in requests, and route names
 * are model aliases: neither may contain '/', or `a/b` would be ambiguous.
 */
const slug = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "letters, digits, '.', '_', ':' and '-' only, starting with a letter or digit");
const modelName = z.string().trim().min(1).max(256).regex(NO_CONTROL, 'must not contain control characters');
const uuid = z.string().regex(UUID, 'must be a UUID');
const positiveInt = z.number().int().positive().max(2_147_483_647);
const httpUrl = z
  .string()
  .trim()
  .max(2048)
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL');
const date = z.union([z.date(), z.iso.datetime({ offset: true })]).transform((d) => (d instanceof Date ? d : new Date(d)));
const usd = z.number().nonnegative().max(1e9);
const stringMap = (keyPattern?: RegExp) =>
  z.record(keyPattern ? z.string().regex(keyPattern) : z.string().min(1), z.string().max(8192).regex(NO_CONTROL));
// RFC 9110 token characters.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const createApiKeyInput = z.object({
  teamId: uuid,
  name: label,
  rpmLimit: positiveInt.nullish(),
  tpmLimit: positiveInt.nullish(),
  expiresAt: date.nullish(),
  allowedRoutes: z.array(slug).max(1000).nullish(),
});
export type CreateApiKeyInput = z.input<typeof createApiKeyInput>;

const createAccessTokenInput = z.object({
  name: label,
  role: z.enum(AccessRole),
  teamId: uuid.nullish(),
});
export type CreateAccessTokenInput = z.input<typeof createAccessTokenInput>;

const upsertProviderInput = z.object({
  name: slug,
  kind: z.enum(ProviderKind),
  baseUrl: httpUrl.nullish(),
  apiKey: z.string().trim().min(1).max(8192).nullish(),
  timeoutMs: positiveInt.nullish(),
  extraHeaders: stringMap(HEADER_NAME).nullish(),
  modelMap: stringMap().nullish(),
});
/**
 * Optional fields: `undefined` keeps the stored value (nothing on create), `null` clears it.
 * This matters most for `apiKey`, which can never be read back.
 */
export type UpsertProviderInput = z.input<typeof upsertProviderInput>;

const upsertRouteInput = z.object({
  name: slug,
  strategy: z.enum(RouteStrategy),
  targets: z
    .array(
      z.object({
        provider: slug,
        model: modelName,
        weight: z.number().nonnegative().max(1e6).optional(),
        priority: z.number().int().min(-1_000_000).max(1_000_000).optional(),
      }),
    )
    .min(1)
    .max(64),
  retries: z.number().int().min(0).max(10).nullish(),
  timeoutMs: positiveInt.nullish(),
  cache: z
    .object({
      mode: z.enum(CacheMode),
      ttlSeconds: positiveInt.nullish(),
      similarityThreshold: z.number().min(0).max(1).nullish(),
      embeddingModel: modelName.nullish(),
      cacheSampled: z.boolean().nullish(),
      cacheToolCalls: z.boolean().nullish(),
    })
    .nullish(),
});
/** A route is replaced whole: absent fields take their defaults (retries 1, cache OFF). */
export type UpsertRouteInput = z.input<typeof upsertRouteInput>;

const setPriceInput = z
  .object({
    provider: slug,
    model: modelName,
    inputPerMTokUsd: usd,
    outputPerMTokUsd: usd,
    cachedInputPerMTokUsd: usd.nullish(),
    currency: z
      .string()
      .trim()
      .regex(/^[A-Za-z]{3}$/, 'must be an ISO 4217 code')
      .transform((s) => s.toUpperCase())
      .optional(),
    usdRate: z.number().positive().max(1e6).nullish(),
    source: z.string().trim().max(512).nullish(),
    effectiveFrom: date.optional(),
  })
  .refine((p) => (p.currency ?? 'USD') === 'USD' || p.usdRate != null, {
    message: 'usdRate (USD per unit of currency) is required when currency is not USD',
    path: ['usdRate'],
  });
/**
 * Amounts are per million tokens in `currency` (default USD; the `…Usd` names are the
 * GraphQL contract's). For another currency, `usdRate` converts to USD.
 */
export type SetPriceInput = z.input<typeof setPriceInput>;

const setBudgetInput = z.object({
  scope: z.enum(BudgetScope),
  teamId: uuid.nullish(),
  apiKeyId: uuid.nullish(),
  feature: label.nullish(),
  period: z.enum(BudgetPeriod),
  limitUsd: z.number().positive().max(1e12),
  action: z.enum(BudgetAction),
  webhookUrl: httpUrl.nullish(),
  failOpen: z.boolean().nullish(),
});
/**
 * TEAM needs teamId; API_KEY needs apiKeyId; FEATURE needs feature and may name a teamId
 * to limit the feature within one team.
 */
export type SetBudgetInput = z.input<typeof setBudgetInput>;

function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const r = schema.safeParse(input);
  if (!r.success) {
    const first = r.error.issues[0];
    const where = first?.path.length ? first.path.join('.') : 'input';
    throw new AdminStoreError('INVALID_INPUT', `${where}: ${first?.message ?? 'invalid'}`);
  }
  return r.data;
}

// ---------------------------------------------------------------------------------------

const CATALOG_VERSION_KEY = 'catalog_version';

type ApiKeyRow = Prisma.ApiKeyGetPayload<object>;
type RouteRow = Prisma.RouteGetPayload<{ include: { targets: true } }>;
type PriceRow = Prisma.PriceGetPayload<object>;
type BudgetRow = Prisma.BudgetGetPayload<object>;
type ProviderRow = Prisma.ProviderGetPayload<object>;

export class AdminStore {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly secretBox: SecretBox,
  ) {}

  // --- catalog version ----------------------------------------------------------------

  /**
   * A counter bumped by every mutation, as an opaque string ("0" on a fresh database):
   * callers compare it for equality only. Decimal digits, so it also sorts numerically.
   */
  async catalogVersion(): Promise<string> {
    const row = await this.prisma.setting.findUnique({ where: { key: CATALOG_VERSION_KEY } });
    return row ? row.value : '0';
  }

  /** Increments the catalog version atomically (also across processes) and returns it. */
  async bumpCatalogVersion(tx: Tx | PrismaClient = this.prisma): Promise<string> {
    // One statement: concurrent bumps serialize on the row lock, none is lost.
    const rows = await tx.$queryRaw<{ value: string }[]>`
      INSERT INTO "Setting" ("key", "value") VALUES (${CATALOG_VERSION_KEY}, '1')
      ON CONFLICT ("key") DO UPDATE SET "value" = (("Setting"."value")::bigint + 1)::text
      RETURNING "value"`;
    return rows[0]!.value;
  }

  /** Runs `fn` in a transaction that also bumps the catalog version. */
  private mutate<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.prisma
      .$transaction(async (tx) => {
        const result = await fn(tx);
        await this.bumpCatalogVersion(tx);
        return result;
      })
      .catch((err: unknown) => {
        throw translatePrismaError(err);
      });
  }

  // --- teams --------------------------------------------------------------------------

  async createTeam(name: string): Promise<TeamRecord> {
    const n = parse(label, name);
    return this.mutate(async (tx) => {
      const existing = await tx.team.findUnique({ where: { name: n } });
      if (existing) throw new AdminStoreError('CONFLICT', `team "${n}" already exists`);
      return toTeam(await tx.team.create({ data: { name: n } }));
    });
  }

  /** The team with this name, created if missing (safe against concurrent callers). */
  async ensureTeam(name: string): Promise<TeamRecord> {
    const n = parse(label, name);
    const found = await this.prisma.team.findUnique({ where: { name: n } });
    if (found) return toTeam(found);
    try {
      return await this.createTeam(n);
    } catch (err) {
      // Lost a race with another creator: theirs is as good as ours.
      if (err instanceof AdminStoreError && err.code === 'CONFLICT') {
        const again = await this.prisma.team.findUnique({ where: { name: n } });
        if (again) return toTeam(again);
      }
      throw err;
    }
  }

  async listTeams(): Promise<TeamRecord[]> {
    return (await this.prisma.team.findMany({ orderBy: { name: 'asc' } })).map(toTeam);
  }

  async getTeam(id: string): Promise<TeamRecord | null> {
    if (!UUID.test(id)) return null;
    const row = await this.prisma.team.findUnique({ where: { id } });
    return row ? toTeam(row) : null;
  }

  // --- API keys -----------------------------------------------------------------------

  /** Creates a key; `secret` is returned here only, the store keeps its hash. */
  async createApiKey(input: CreateApiKeyInput): Promise<{ apiKey: ApiKeyRecord; secret: string }> {
    const p = parse(createApiKeyInput, input);
    const secret = generateApiKeySecret();
    const apiKey = await this.mutate(async (tx) => {
      await requireTeam(tx, p.teamId);
      return tx.apiKey.create({
        data: {
          teamId: p.teamId,
          name: p.name,
          displayPrefix: displayPrefixOf(secret),
          secretHash: hashSecret(secret),
          rpmLimit: p.rpmLimit ?? null,
          tpmLimit: p.tpmLimit ?? null,
          expiresAt: p.expiresAt ?? null,
          allowedRoutes: [...new Set(p.allowedRoutes ?? [])],
        },
      });
    });
    return { apiKey: toApiKey(apiKey), secret };
  }

  /** Revokes a key (idempotent: a second revoke keeps the first time). */
  async revokeApiKey(id: string): Promise<ApiKeyRecord> {
    if (!UUID.test(id)) throw new AdminStoreError('NOT_FOUND', 'API key not found');
    return this.mutate(async (tx) => {
      const row = await tx.apiKey.findUnique({ where: { id } });
      if (!row) throw new AdminStoreError('NOT_FOUND', 'API key not found');
      if (row.revokedAt) return toApiKey(row);
      return toApiKey(await tx.apiKey.update({ where: { id }, data: { revokedAt: new Date() } }));
    });
  }

  async listApiKeys(teamId?: string): Promise<ApiKeyRecord[]> {
    if (teamId !== undefined && !UUID.test(teamId)) return [];
    const rows = await this.prisma.apiKey.findMany({
      where: teamId === undefined ? {} : { teamId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    return rows.map(toApiKey);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    if (!UUID.test(id)) return null;
    const row = await this.prisma.apiKey.findUnique({ where: { id } });
    return row ? toApiKey(row) : null;
  }

  /**
   * The key whose secret hashes to `hash`, revoked and expired ones included (the caller
   * decides, and answers all of them alike). Null for an unknown or malformed hash.
   */
  async findApiKeyBySecretHash(hash: string): Promise<ApiKeyRecord | null> {
    if (!SHA256_HEX.test(hash)) return null;
    const row = await this.prisma.apiKey.findUnique({ where: { secretHash: hash } });
    return row ? toApiKey(row) : null;
  }

  /** Records use (not a catalog change: no version bump). Best effort for the caller. */
  async touchApiKey(id: string, at: Date = new Date()): Promise<void> {
    if (!UUID.test(id)) return;
    await this.prisma.apiKey.updateMany({ where: { id }, data: { lastUsedAt: at } });
  }

  // --- access tokens ------------------------------------------------------------------

  async createAccessToken(input: CreateAccessTokenInput): Promise<{ token: AccessTokenRecord; secret: string }> {
    const p = parse(createAccessTokenInput, input);
    const secret = generateAccessTokenSecret();
    const token = await this.mutate(async (tx) => {
      if (p.teamId) await requireTeam(tx, p.teamId);
      return tx.accessToken.create({
        data: { name: p.name, role: p.role, teamId: p.teamId ?? null, secretHash: hashSecret(secret) },
      });
    });
    return { token: toAccessToken(token), secret };
  }

  async revokeAccessToken(id: string): Promise<AccessTokenRecord> {
    if (!UUID.test(id)) throw new AdminStoreError('NOT_FOUND', 'access token not found');
    return this.mutate(async (tx) => {
      const row = await tx.accessToken.findUnique({ where: { id } });
      if (!row) throw new AdminStoreError('NOT_FOUND', 'access token not found');
      if (row.revokedAt) return toAccessToken(row);
      return toAccessToken(await tx.accessToken.update({ where: { id }, data: { revokedAt: new Date() } }));
    });
  }

  async listAccessTokens(): Promise<AccessTokenRecord[]> {
    const rows = await this.prisma.accessToken.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return rows.map(toAccessToken);
  }

  /** Revoked tokens included (the caller rejects them). Null for unknown or malformed. */
  async findAccessTokenBySecretHash(hash: string): Promise<AccessTokenRecord | null> {
    if (!SHA256_HEX.test(hash)) return null;
    const row = await this.prisma.accessToken.findUnique({ where: { secretHash: hash } });
    return row ? toAccessToken(row) : null;
  }

  // --- providers ----------------------------------------------------------------------

  async upsertProvider(input: UpsertProviderInput): Promise<ProviderInfo> {
    const p = parse(upsertProviderInput, input);
    // Sealed outside the transaction (pure CPU), bound to the provider's name.
    const sealed =
      p.apiKey === undefined ? undefined : p.apiKey === null ? null : this.secretBox.seal(p.apiKey, providerAad(p.name));
    const json = (v: Record<string, string> | null | undefined) =>
      v === undefined ? undefined : v === null ? Prisma.DbNull : v;
    const data = {
      kind: p.kind,
      baseUrl: p.baseUrl,
      apiKeyCiphertext: sealed,
      timeoutMs: p.timeoutMs,
      extraHeaders: json(p.extraHeaders),
      modelMap: json(p.modelMap),
    };
    const row = await this.mutate((tx) =>
      tx.provider.upsert({
        where: { name: p.name },
        create: {
          name: p.name,
          kind: p.kind,
          baseUrl: p.baseUrl ?? null,
          apiKeyCiphertext: sealed ?? null,
          timeoutMs: p.timeoutMs ?? null,
          extraHeaders: json(p.extraHeaders) ?? Prisma.DbNull,
          modelMap: json(p.modelMap) ?? Prisma.DbNull,
        },
        // `undefined` fields are left out of the UPDATE: the stored value stays.
        update: data,
      }),
    );
    return toProviderInfo(row);
  }

  /** Providers without their secrets (`hasApiKey` tells whether one is stored). */
  async listProviders(): Promise<ProviderInfo[]> {
    return (await this.prisma.provider.findMany({ orderBy: { name: 'asc' } })).map(toProviderInfo);
  }

  /** For the gateway only: providers with their API keys decrypted. */
  async loadProvidersWithSecrets(): Promise<ProviderRecord[]> {
    const rows = await this.prisma.provider.findMany({ orderBy: { name: 'asc' } });
    return rows.map((r) => {
      let apiKey: string | null = null;
      if (r.apiKeyCiphertext !== null) {
        try {
          apiKey = this.secretBox.open(r.apiKeyCiphertext, providerAad(r.name));
        } catch (err) {
          throw new AdminStoreError(
            'SECRET_UNREADABLE',
            `cannot decrypt the API key of provider "${r.name}": the secret key (TOLLGATE_SECRET_KEY or ` +
              'secret.key in the data dir) is not the one it was stored with, or the value was altered',
            { cause: err },
          );
        }
      }
      const info = toProviderInfo(r);
      return {
        id: info.id,
        name: info.name,
        kind: info.kind,
        baseUrl: info.baseUrl,
        apiKey,
        timeoutMs: info.timeoutMs,
        extraHeaders: info.extraHeaders,
        modelMap: info.modelMap,
      };
    });
  }

  // --- routes -------------------------------------------------------------------------

  /** Creates or replaces a route; its targets are replaced atomically. */
  async upsertRoute(input: UpsertRouteInput): Promise<RouteRecord> {
    const p = parse(upsertRouteInput, input);
    const fields = {
      strategy: p.strategy,
      retries: p.retries ?? 1,
      timeoutMs: p.timeoutMs ?? null,
      cacheMode: p.cache?.mode ?? CacheMode.OFF,
      cacheTtlSeconds: p.cache?.ttlSeconds ?? null,
      cacheSimilarityThreshold: p.cache?.similarityThreshold ?? null,
      cacheEmbeddingModel: p.cache?.embeddingModel ?? null,
      cacheSampled: p.cache?.cacheSampled ?? false,
      cacheToolCalls: p.cache?.cacheToolCalls ?? false,
    };
    const targets = p.targets.map((t, position) => ({
      providerName: t.provider,
      model: t.model,
      weight: t.weight ?? 1,
      priority: t.priority ?? 0,
      position,
    }));
    const row = await this.mutate(async (tx) => {
      const route = await tx.route.upsert({
        where: { name: p.name },
        create: { name: p.name, ...fields },
        update: fields,
      });
      await tx.routeTarget.deleteMany({ where: { routeId: route.id } });
      await tx.routeTarget.createMany({ data: targets.map((t) => ({ ...t, routeId: route.id })) });
      return tx.route.findUniqueOrThrow({
        where: { id: route.id },
        include: { targets: { orderBy: { position: 'asc' } } },
      });
    });
    return toRoute(row);
  }

  async listRoutes(): Promise<RouteRecord[]> {
    const rows = await this.prisma.route.findMany({
      orderBy: { name: 'asc' },
      include: { targets: { orderBy: { position: 'asc' } } },
    });
    return rows.map(toRoute);
  }

  // --- prices -------------------------------------------------------------------------

  /** Records a new price version for provider+model; it becomes the current one. */
  async setPrice(input: SetPriceInput): Promise<PriceRecord> {
    const p = parse(setPriceInput, input);
    const currency = p.currency ?? 'USD';
    const row = await this.mutate((tx) =>
      tx.price.create({
        data: {
          provider: p.provider,
          model: p.model,
          inputPerMTok: decimal(p.inputPerMTokUsd),
          outputPerMTok: decimal(p.outputPerMTokUsd),
          cachedInputPerMTok: p.cachedInputPerMTokUsd == null ? null : decimal(p.cachedInputPerMTokUsd),
          currency,
          usdRate: currency === 'USD' || p.usdRate == null ? null : decimal(p.usdRate),
          source: p.source ?? null,
          effectiveFrom: p.effectiveFrom ?? new Date(),
        },
      }),
    );
    return toPrice(row);
  }

  /**
   * Like setPrice, but records a new version only when something billed differs from the
   * current version (amounts, currency, rate): re-importing the same price list is a no-op
   * and leaves the version receipts carry unchanged. `source` alone does not make a version.
   */
  async setPriceIfChanged(input: SetPriceInput): Promise<{ price: PriceRecord; created: boolean }> {
    const p = parse(setPriceInput, input);
    const latest = await this.prisma.price.findFirst({ where: { provider: p.provider, model: p.model }, orderBy: { id: 'desc' } });
    if (latest && samePrice(latest, p)) return { price: toPrice(latest), created: false };
    return { price: await this.setPrice(input), created: true };
  }

  /** One price version by its id (the `price_version` receipts carry); null if unknown. */
  async getPriceVersion(version: number): Promise<PriceRecord | null> {
    if (!Number.isSafeInteger(version) || version <= 0 || version > 2_147_483_647) return null;
    const row = await this.prisma.price.findUnique({ where: { id: version } });
    return row ? toPrice(row) : null;
  }

  /** The latest version of every provider+model price, in USD. */
  async currentPrices(): Promise<PriceRecord[]> {
    // DISTINCT ON picks the highest id per (provider, model), served by the
    // (provider, model, id) index.
    const rows = await this.prisma.$queryRaw<PriceRow[]>`
      SELECT DISTINCT ON ("provider", "model") *
      FROM "Price"
      ORDER BY "provider", "model", "id" DESC`;
    return rows.map(toPrice);
  }

  /** Every version of one provider+model price, newest first. */
  async priceHistory(provider: string, model: string): Promise<PriceRecord[]> {
    const rows = await this.prisma.price.findMany({ where: { provider, model }, orderBy: { id: 'desc' } });
    return rows.map(toPrice);
  }

  // --- budgets ------------------------------------------------------------------------

  /** Creates or replaces the budget of scope+target+period. */
  async setBudget(input: SetBudgetInput): Promise<BudgetRecord> {
    const p = parse(setBudgetInput, input);
    const row = await this.mutate(async (tx) => {
      let teamId: string | null = null;
      let apiKeyId: string | null = null;
      let feature: string | null = null;
      let targetKey: string;
      switch (p.scope) {
        case BudgetScope.TEAM:
          if (!p.teamId) throw new AdminStoreError('INVALID_INPUT', 'teamId: required for a TEAM budget');
          await requireTeam(tx, p.teamId);
          teamId = p.teamId;
          targetKey = `team:${teamId}`;
          break;
        case BudgetScope.API_KEY: {
          if (!p.apiKeyId) throw new AdminStoreError('INVALID_INPUT', 'apiKeyId: required for an API_KEY budget');
          const key = await tx.apiKey.findUnique({ where: { id: p.apiKeyId } });
          if (!key) throw new AdminStoreError('NOT_FOUND', 'API key not found');
          apiKeyId = key.id;
          teamId = key.teamId;
          targetKey = `api_key:${apiKeyId}`;
          break;
        }
        case BudgetScope.FEATURE:
          if (!p.feature) throw new AdminStoreError('INVALID_INPUT', 'feature: required for a FEATURE budget');
          if (p.teamId) await requireTeam(tx, p.teamId);
          feature = p.feature;
          teamId = p.teamId ?? null;
          targetKey = `feature:${teamId ?? '*'}:${feature}`;
          break;
      }
      const fields = {
        teamId,
        apiKeyId,
        feature,
        limitUsd: decimal(p.limitUsd),
        action: p.action,
        webhookUrl: p.webhookUrl ?? null,
        failOpen: p.failOpen ?? false,
      };
      return tx.budget.upsert({
        where: { scope_targetKey_period: { scope: p.scope, targetKey, period: p.period } },
        create: { scope: p.scope, targetKey, period: p.period, ...fields },
        update: fields,
      });
    });
    return toBudget(row);
  }

  async listBudgets(): Promise<BudgetRecord[]> {
    const rows = await this.prisma.budget.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return rows.map(toBudget);
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

function providerAad(name: string): string {
  return `tollgate/provider/${name}/apiKey`;
}

async function requireTeam(tx: Tx, teamId: string): Promise<void> {
  const team = await tx.team.findUnique({ where: { id: teamId }, select: { id: true } });
  if (!team) throw new AdminStoreError('NOT_FOUND', 'team not found');
}

/** Numbers to Decimal through their shortest decimal string, so 0.15 stays 0.15. */
function decimal(n: number): Prisma.Decimal {
  return new Prisma.Decimal(String(n));
}

/** Whether a stored price bills exactly like a validated setPrice input. */
function samePrice(row: PriceRow, p: z.output<typeof setPriceInput>): boolean {
  const currency = p.currency ?? 'USD';
  const eq = (a: Prisma.Decimal.Value | null, b: number | null | undefined) =>
    a === null || b == null ? a === null && b == null : new Prisma.Decimal(a).equals(decimal(b));
  return (
    row.currency === currency &&
    eq(row.inputPerMTok, p.inputPerMTokUsd) &&
    eq(row.outputPerMTok, p.outputPerMTokUsd) &&
    eq(row.cachedInputPerMTok, p.cachedInputPerMTokUsd) &&
    (currency === 'USD' || eq(row.usdRate, p.usdRate))
  );
}

/** Maps Prisma's known errors to store errors; anything else passes through. */
function translatePrismaError(err: unknown): unknown {
  if (err instanceof AdminStoreError) return err;
  if (err instanceof Prisma.PrismaClientKnownRequestError) {
    switch (err.code) {
      case 'P2002':
        return new AdminStoreError('CONFLICT', 'already exists', { cause: err });
      case 'P2025':
        return new AdminStoreError('NOT_FOUND', 'not found', { cause: err });
      case 'P2003':
        return new AdminStoreError('INVALID_INPUT', 'refers to something that does not exist', { cause: err });
    }
  }
  return err;
}

function toTeam(r: { id: string; name: string; createdAt: Date }): TeamRecord {
  return { id: r.id, name: r.name, createdAt: r.createdAt };
}

function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  return {
    id: r.id,
    teamId: r.teamId,
    name: r.name,
    displayPrefix: r.displayPrefix,
    rpmLimit: r.rpmLimit,
    tpmLimit: r.tpmLimit,
    allowedRoutes: r.allowedRoutes,
    expiresAt: r.expiresAt,
    revokedAt: r.revokedAt,
    createdAt: r.createdAt,
    lastUsedAt: r.lastUsedAt,
  };
}

function toAccessToken(r: Prisma.AccessTokenGetPayload<object>): AccessTokenRecord {
  return { id: r.id, name: r.name, role: r.role, teamId: r.teamId, revokedAt: r.revokedAt, createdAt: r.createdAt };
}

function asStringMap(v: Prisma.JsonValue | null): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

function toProviderInfo(r: ProviderRow): ProviderInfo {
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    baseUrl: r.baseUrl,
    hasApiKey: r.apiKeyCiphertext !== null,
    timeoutMs: r.timeoutMs,
    extraHeaders: asStringMap(r.extraHeaders),
    modelMap: asStringMap(r.modelMap),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

function toRoute(r: RouteRow): RouteRecord {
  return {
    id: r.id,
    name: r.name,
    strategy: r.strategy,
    retries: r.retries,
    timeoutMs: r.timeoutMs,
    cache: cachePolicyOf(r),
    targets: [...r.targets]
      .sort((a, b) => a.position - b.position)
      .map((t) => ({ provider: t.providerName, model: t.model, weight: t.weight, priority: t.priority })),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

function toPrice(r: PriceRow): PriceRecord {
  // $queryRaw rows carry the same column names; numeric columns come back as Decimal.
  const rate = r.currency === 'USD' || r.usdRate === null ? null : new Prisma.Decimal(r.usdRate);
  const usd = (d: Prisma.Decimal.Value) => {
    const v = new Prisma.Decimal(d);
    return (rate ? v.mul(rate) : v).toDecimalPlaces(9).toNumber();
  };
  return {
    version: Number(r.id),
    provider: r.provider,
    model: r.model,
    inputPerMTokUsd: usd(r.inputPerMTok),
    outputPerMTokUsd: usd(r.outputPerMTok),
    cachedInputPerMTokUsd: r.cachedInputPerMTok === null ? null : usd(r.cachedInputPerMTok),
    currency: r.currency,
    usdRate: rate ? rate.toNumber() : null,
    source: r.source,
    effectiveFrom: r.effectiveFrom,
    createdAt: r.createdAt,
  };
}

/** A Route row's cache columns as one policy (the GraphQL Route type reads the same). */
export function cachePolicyOf(r: Prisma.RouteGetPayload<object>): CachePolicyRecord {
  return {
    mode: r.cacheMode,
    ttlSeconds: r.cacheTtlSeconds,
    similarityThreshold: r.cacheSimilarityThreshold,
    embeddingModel: r.cacheEmbeddingModel,
    cacheSampled: r.cacheSampled,
    cacheToolCalls: r.cacheToolCalls,
  };
}

function toBudget(r: BudgetRow): BudgetRecord {
  return {
    id: r.id,
    scope: r.scope,
    teamId: r.teamId,
    apiKeyId: r.apiKeyId,
    feature: r.feature,
    period: r.period,
    limitUsd: new Prisma.Decimal(r.limitUsd).toNumber(),
    action: r.action,
    webhookUrl: r.webhookUrl,
    failOpen: r.failOpen,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}
