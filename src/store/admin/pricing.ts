// Prices and budgets (GraphQL: src/graphql/schema/pricing.ts). A price is versioned: every
// change is a new row, and receipts name the version they were billed with. A budget is
// upserted by scope + target + period.
import { z } from 'zod';
import { BudgetAction, BudgetPeriod, BudgetScope, Prisma, type PrismaClient } from '../prisma.js';
import {
  AdminStoreError,
  advisoryLock,
  date,
  decimal,
  httpUrl,
  LOCKS,
  label,
  MAX_STORED_USD,
  type Mutations,
  modelName,
  NO_CONTROL,
  parse,
  requireTeam,
  slug,
  usd,
  uuid,
} from './validators.js';

export interface PriceRecord {
  /** The Price row id: the `price_version` receipts carry. */
  version: number;
  provider: string;
  model: string;
  /** USD per million tokens (converted with `usdRate` when the price was set in another currency). */
  inputPerMTokUsd: number;
  outputPerMTokUsd: number;
  cachedInputPerMTokUsd: number | null;
  /** Prompt tokens written to the provider's cache (Anthropic cache creation); null: billed at the input price. */
  cacheWritePerMTokUsd: number | null;
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
  /** Set by a global admin (or the configuration): its team's own admins may only tighten it. */
  imposed: boolean;
  createdAt: Date;
  updatedAt: Date;
}

const PRICE_FIELDS = ['inputPerMTokUsd', 'outputPerMTokUsd', 'cachedInputPerMTokUsd', 'cacheWritePerMTokUsd'] as const;
/**
 * Far above any model's price (the dearest are a few hundred dollars), and low enough that no
 * request's cost passes what a receipt holds: a unit slip (a price per token entered per million)
 * is refused here rather than turning every request of the model into an unpriced one.
 */
const MAX_PRICE_PER_MTOK_USD = 10_000;

const setPriceInput = z
  .object({
    provider: slug,
    model: modelName,
    inputPerMTokUsd: usd,
    outputPerMTokUsd: usd,
    cachedInputPerMTokUsd: usd.nullish(),
    cacheWritePerMTokUsd: usd.nullish(),
    currency: z
      .string()
      .trim()
      .regex(/^[A-Za-z]{3}$/, 'must be an ISO 4217 code')
      .transform((s) => s.toUpperCase())
      .optional(),
    usdRate: z.number().positive().max(1e6).nullish(),
    source: z.string().trim().max(512).regex(NO_CONTROL, 'must not contain control characters').nullish(),
    effectiveFrom: date.optional(),
  })
  .refine((p) => (p.currency ?? 'USD') === 'USD' || p.usdRate != null, {
    message: 'usdRate (USD per unit of currency) is required when currency is not USD',
    path: ['usdRate'],
  })
  .superRefine((p, ctx) => {
    const rate = (p.currency ?? 'USD') === 'USD' ? 1 : (p.usdRate ?? 1);
    for (const field of PRICE_FIELDS) {
      const perMTok = p[field];
      if (perMTok != null && perMTok * rate > MAX_PRICE_PER_MTOK_USD) {
        ctx.addIssue({
          code: 'custom',
          path: [field],
          message: `at most ${MAX_PRICE_PER_MTOK_USD} USD per million tokens (a cent a token); is this a price per token or per thousand?`,
        });
      }
    }
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
  limitUsd: z.number().positive().max(MAX_STORED_USD),
  action: z.enum(BudgetAction),
  webhookUrl: httpUrl.nullish(),
  failOpen: z.boolean().nullish(),
});
/**
 * TEAM needs teamId; API_KEY needs apiKeyId; FEATURE needs feature and may name a teamId
 * to limit the feature within one team.
 */
export type SetBudgetInput = z.input<typeof setBudgetInput>;

type PriceRow = Prisma.PriceGetPayload<object>;
type BudgetRow = Prisma.BudgetGetPayload<object>;

export class PricingStore {
  private readonly prisma: PrismaClient;

  constructor(private readonly mutations: Mutations) {
    this.prisma = mutations.prisma;
  }

  // --- prices -------------------------------------------------------------------------

  /** Records a new price version for provider+model; it becomes the current one. */
  async setPrice(input: SetPriceInput): Promise<PriceRecord> {
    const p = parse(setPriceInput, input);
    const currency = p.currency ?? 'USD';
    const row = await this.mutations.run('setPrice', async (tx, audit) => {
      const before = await tx.price.findFirst({ where: { provider: p.provider, model: p.model }, orderBy: { id: 'desc' } });
      const after = await tx.price.create({
        data: {
          provider: p.provider,
          model: p.model,
          inputPerMTok: decimal(p.inputPerMTokUsd),
          outputPerMTok: decimal(p.outputPerMTokUsd),
          cachedInputPerMTok: p.cachedInputPerMTokUsd == null ? null : decimal(p.cachedInputPerMTokUsd),
          cacheWritePerMTok: p.cacheWritePerMTokUsd == null ? null : decimal(p.cacheWritePerMTokUsd),
          currency,
          usdRate: currency === 'USD' || p.usdRate == null ? null : decimal(p.usdRate),
          source: p.source ?? null,
          effectiveFrom: p.effectiveFrom ?? new Date(),
        },
      });
      audit.change(`price:${p.provider}/${p.model}`, null, before && toPrice(before), toPrice(after));
      return after;
    });
    return toPrice(row);
  }

  /**
   * Like setPrice, but records a new version only when something billed differs from the
   * current version (amounts, currency, rate): re-importing the same price list is a no-op
   * and leaves the version receipts carry unchanged. `source` alone does not make a version.
   */
  async setPriceIfChanged(input: SetPriceInput): Promise<{ price: PriceRecord; created: boolean }> {
    const p = parse(setPriceInput, input);
    // Compared with the version in effect when this one would take effect (not merely the newest
    // row: one scheduled for later must not make today's amounts look new).
    const ids = await this.currentVersionIds(p.effectiveFrom ?? new Date());
    const latest = await this.prisma.price.findFirst({ where: { provider: p.provider, model: p.model, id: { in: ids } } });
    if (latest && samePrice(latest, p)) return { price: toPrice(latest), created: false };
    return { price: await this.setPrice(input), created: true };
  }

  /** One price version by its id (the `price_version` receipts carry); null if unknown. */
  async getPriceVersion(version: number): Promise<PriceRecord | null> {
    if (!Number.isSafeInteger(version) || version <= 0 || version > 2_147_483_647) return null;
    const row = await this.prisma.price.findUnique({ where: { id: version } });
    return row ? toPrice(row) : null;
  }

  /**
   * The id of the version in effect at `at` for every provider+model: the latest
   * `effectiveFrom` not after it (a later id breaks a tie). A version scheduled for later is not
   * in effect yet; one dated back is in effect only from its date to the next version's.
   */
  async currentVersionIds(at = new Date()): Promise<number[]> {
    const rows = await this.prisma.$queryRaw<Array<{ id: number }>>`
      SELECT DISTINCT ON ("provider", "model") "id"
      FROM "Price"
      WHERE "effectiveFrom" <= ${at}
      ORDER BY "provider", "model", "effectiveFrom" DESC, "id" DESC`;
    return rows.map((r) => Number(r.id));
  }

  /** The version of every provider+model price in effect now, in USD. */
  async currentPrices(at = new Date()): Promise<PriceRecord[]> {
    const ids = await this.currentVersionIds(at);
    if (ids.length === 0) return [];
    const rows = await this.prisma.price.findMany({ where: { id: { in: ids } }, orderBy: [{ provider: 'asc' }, { model: 'asc' }] });
    return rows.map(toPrice);
  }

  /** When the next scheduled price version takes effect after `at` (the catalog reloads then); null if none. */
  async nextPriceChange(at = new Date()): Promise<Date | null> {
    const next = await this.prisma.price.aggregate({ where: { effectiveFrom: { gt: at } }, _min: { effectiveFrom: true } });
    return next._min.effectiveFrom;
  }

  /** Every version of one provider+model price, newest first. */
  async priceHistory(provider: string, model: string): Promise<PriceRecord[]> {
    const rows = await this.prisma.price.findMany({ where: { provider, model }, orderBy: { id: 'desc' } });
    return rows.map(toPrice);
  }

  // --- budgets ------------------------------------------------------------------------

  /**
   * Creates or replaces the budget of scope+target+period. `teamBound`: the caller is a team's
   * own admin, who may set its team's budgets but only tighten one imposed on it (a lower limit,
   * ALERT to BLOCK, fail-open to fail-closed): a budget is a control on the team, not of it.
   */
  async setBudget(input: SetBudgetInput, { teamBound = false } = {}): Promise<BudgetRecord> {
    const p = parse(setBudgetInput, input);
    const row = await this.mutations.run('setBudget', async (tx, audit) => {
      // Budget writes one at a time: a team admin's write read no budget (so nothing imposed to
      // tighten) while the platform's imposed one was being created, then overwrote it, looser
      // and no longer imposed.
      await advisoryLock(tx, LOCKS.budgets);
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
      const where = { scope_targetKey_period: { scope: p.scope, targetKey, period: p.period } };
      const before = await tx.budget.findUnique({ where });
      if (teamBound && before?.imposed) {
        // The platform's alert channel stays: left out, it is kept; another one is refused.
        if (p.webhookUrl === undefined || p.webhookUrl === null) fields.webhookUrl = before.webhookUrl;
        assertTightens(before, fields);
      }
      const imposed = teamBound ? (before?.imposed ?? false) : true;
      const after = await tx.budget.upsert({
        where,
        create: { scope: p.scope, targetKey, period: p.period, ...fields, imposed },
        update: { ...fields, imposed },
      });
      audit.change(`budget:${after.id}`, after.teamId, before && budgetAudit(before), budgetAudit(after));
      return after;
    });
    return toBudget(row);
  }

  /**
   * Removes a budget (its period or scope changes by setting a new one and deleting the old:
   * both are upserts on scope+target+period). `teamBound` as for setBudget: a team's own admin
   * may remove its team's own budgets, not one imposed on it. False when there is none.
   */
  async deleteBudget(id: string, { teamBound = false } = {}): Promise<boolean> {
    const budgetId = parse(z.uuid(), id);
    return this.mutations.run('deleteBudget', async (tx, audit) => {
      await advisoryLock(tx, LOCKS.budgets); // as setBudget: it reads `imposed` before it acts
      const before = await tx.budget.findUnique({ where: { id: budgetId } });
      if (!before) return false;
      if (teamBound && before.imposed)
        throw new AdminStoreError('FORBIDDEN', 'this budget was set for the team by the platform: a team admin may tighten it, not remove it');
      await tx.budget.delete({ where: { id: budgetId } });
      audit.change(`budget:${before.id}`, before.teamId, budgetAudit(before), null);
      return true;
    });
  }

  async listBudgets(): Promise<BudgetRecord[]> {
    const rows = await this.prisma.budget.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return rows.map(toBudget);
  }
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
    eq(row.cacheWritePerMTok, p.cacheWritePerMTokUsd) &&
    (currency === 'USD' || eq(row.usdRate, p.usdRate))
  );
}

function toPrice(r: PriceRow): PriceRecord {
  // $queryRaw rows carry the same column names; numeric columns come back as Decimal.
  const rate = r.currency === 'USD' || r.usdRate === null ? null : new Prisma.Decimal(r.usdRate);
  const usdOf = (d: Prisma.Decimal.Value) => {
    const v = new Prisma.Decimal(d);
    return (rate ? v.mul(rate) : v).toDecimalPlaces(9).toNumber();
  };
  return {
    version: Number(r.id),
    provider: r.provider,
    model: r.model,
    inputPerMTokUsd: usdOf(r.inputPerMTok),
    outputPerMTokUsd: usdOf(r.outputPerMTok),
    cachedInputPerMTokUsd: r.cachedInputPerMTok === null ? null : usdOf(r.cachedInputPerMTok),
    cacheWritePerMTokUsd: r.cacheWritePerMTok === null ? null : usdOf(r.cacheWritePerMTok),
    currency: r.currency,
    usdRate: rate ? rate.toNumber() : null,
    source: r.source,
    effectiveFrom: r.effectiveFrom,
    createdAt: r.createdAt,
  };
}

/**
 * A budget as the audit log keeps it: the webhook only by its origin. Webhook URLs carry their
 * credentials in the path (Slack's, Discord's), so the URL itself stays write-only there too.
 */
function budgetAudit(r: BudgetRow): Omit<BudgetRecord, 'webhookUrl'> & { webhookOrigin: string | null } {
  const { webhookUrl, ...rest } = toBudget(r);
  return { ...rest, webhookOrigin: webhookUrl === null ? null : new URL(webhookUrl).origin };
}

/** Refuses a team-bound change that would loosen an imposed budget. */
function assertTightens(before: BudgetRow, after: { limitUsd: Prisma.Decimal; action: BudgetAction; failOpen: boolean; webhookUrl: string | null }): void {
  const loosened = [
    after.limitUsd.greaterThan(before.limitUsd) && 'raise its limit',
    before.action === BudgetAction.BLOCK && after.action !== BudgetAction.BLOCK && 'turn BLOCK into ALERT',
    !before.failOpen && after.failOpen && 'make it fail open',
    before.webhookUrl !== null && after.webhookUrl !== before.webhookUrl && 'change its webhook',
  ].filter(Boolean);
  if (loosened.length > 0) {
    throw new AdminStoreError('FORBIDDEN', `This budget was set by a global admin: a team's own admin may tighten it, not ${loosened.join(' or ')}.`);
  }
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
    imposed: r.imposed,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}
