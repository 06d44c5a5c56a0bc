// Prices and budgets (DESIGN §8). Any token reads prices; only a global admin sets them,
// imports the shipped price snapshot or re-prices receipts (src/pricing/).
// Budgets: an ADMIN sets them (a team-bound one only for its own team); a team-bound token
// sees only its team's budgets. Enforcement lives elsewhere: this is just the table.
//
// Price and Budget are plugin-prisma objects (`budgets { team }` is one Prisma call);
// mutations go through the AdminStore and re-read the row with the planned selection.
import { GraphQLError } from 'graphql';
import type { BudgetStatus } from '../../budgets/enforcer.js';
import { RepriceError, type RepricingResult, type RepricingRow, repriceReceipts } from '../../pricing/reprice.js';
import { importSnapshot, type SnapshotImport } from '../../pricing/snapshot.js';
import { BudgetAction, BudgetPeriod, BudgetScope, Prisma } from '../../store/prisma.js';
import { type Builder, invalidInput } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { forbidden, notFound, store } from './errors.js';
import { boundTeam, canSeeTeam, isUuid, TeamRef, teamScopedWhere } from './teams.js';

/** A stored amount in USD: converted with `usdRate` when the price was set in another currency. */
function usd(row: { currency: string; usdRate: Prisma.Decimal | null }, amount: Prisma.Decimal): number {
  const v = new Prisma.Decimal(amount);
  const rate = row.currency === 'USD' || row.usdRate === null ? null : new Prisma.Decimal(row.usdRate);
  return (rate ? v.mul(rate) : v).toDecimalPlaces(9).toNumber();
}

export function registerPricing(builder: Builder) {
  const BudgetScopeEnum = builder.enumType(BudgetScope, { name: 'BudgetScope' });
  const BudgetPeriodEnum = builder.enumType(BudgetPeriod, { name: 'BudgetPeriod' });
  const BudgetActionEnum = builder.enumType(BudgetAction, { name: 'BudgetAction' });

  const Price = builder.prismaObject('Price', {
    description: 'The current price of one provider+model, per million tokens, in USD.',
    fields: (t) => ({
      version: t.exposeInt('id', { description: 'The price version receipts carry (`price_version`).' }),
      provider: t.exposeString('provider'),
      model: t.exposeString('model'),
      inputPerMTokUsd: t.float({ resolve: (p) => usd(p, p.inputPerMTok) }),
      outputPerMTokUsd: t.float({ resolve: (p) => usd(p, p.outputPerMTok) }),
      cachedInputPerMTokUsd: t.float({ nullable: true, resolve: (p) => (p.cachedInputPerMTok === null ? null : usd(p, p.cachedInputPerMTok)) }),
      cacheWritePerMTokUsd: t.float({
        nullable: true,
        description: "Prompt tokens written to the provider's cache (Anthropic cache creation); null: billed at the input price.",
        resolve: (p) => (p.cacheWritePerMTok === null ? null : usd(p, p.cacheWritePerMTok)),
      }),
      currency: t.exposeString('currency', { description: 'The currency the price was entered in.' }),
      usdRate: t.float({
        nullable: true,
        description: 'USD per unit of `currency` when it is not USD.',
        resolve: (p) => (p.currency === 'USD' || p.usdRate === null ? null : new Prisma.Decimal(p.usdRate).toNumber()),
      }),
      source: t.exposeString('source', { nullable: true }),
      effectiveFrom: t.expose('effectiveFrom', { type: 'DateTime' }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
    }),
  });

  const Budget = builder.prismaObject('Budget', {
    fields: (t) => ({
      id: t.exposeID('id'),
      scope: t.expose('scope', { type: BudgetScopeEnum }),
      teamId: t.exposeID('teamId', { nullable: true }),
      team: t.field({
        type: TeamRef,
        nullable: true,
        // Planned by plugin-prisma like a relation; a team the token may not see reads as null.
        select: (_args, _ctx, nestedSelection) => ({ team: nestedSelection(true) }),
        resolve: (b, _args, ctx) => (b.team && canSeeTeam(ctx, b.team.id) ? b.team : null),
      }),
      apiKeyId: t.exposeID('apiKeyId', { nullable: true }),
      feature: t.exposeString('feature', { nullable: true }),
      period: t.expose('period', { type: BudgetPeriodEnum }),
      limitUsd: t.float({ resolve: (b) => new Prisma.Decimal(b.limitUsd).toNumber() }),
      action: t.expose('action', { type: BudgetActionEnum }),
      failOpen: t.exposeBoolean('failOpen', { description: 'When the counter store is unreachable: admit (true) or refuse with 503 (false).' }),
      imposed: t.exposeBoolean('imposed', {
        description: "Set by a global admin (or the configuration): the team's own admins may tighten it (a lower limit, BLOCK, fail-closed), not loosen it.",
      }),
      hasWebhook: t.boolean({
        description: 'Whether alerts are also POSTed to a webhook (the URL itself is write-only).',
        resolve: (b) => b.webhookUrl !== null,
      }),
      // Live figures of the current period (UTC boundaries), from the enforcement counters.
      spentUsd: t.float({
        nullable: true,
        description: 'Spent in the current period (settled receipts).',
        resolve: async (b, _a, ctx) => (await budgetStatusOf(b.id, ctx))?.spentUsd ?? null,
      }),
      reservedUsd: t.float({
        nullable: true,
        description: 'Held by requests in flight (their estimated maximum cost).',
        resolve: async (b, _a, ctx) => (await budgetStatusOf(b.id, ctx))?.reservedUsd ?? null,
      }),
      remainingUsd: t.float({
        nullable: true,
        description: 'limitUsd - spent - reserved, not below 0.',
        resolve: async (b, _a, ctx) => (await budgetStatusOf(b.id, ctx))?.remainingUsd ?? null,
      }),
      periodStart: t.field({ type: 'DateTime', nullable: true, resolve: async (b, _a, ctx) => (await budgetStatusOf(b.id, ctx))?.periodStart ?? null }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    }),
  });

  const PriceInput = builder.inputType('PriceInput', {
    fields: (t) => ({
      provider: t.string({ required: true }),
      model: t.string({ required: true }),
      inputPerMTokUsd: t.float({ required: true }),
      outputPerMTokUsd: t.float({ required: true }),
      cachedInputPerMTokUsd: t.float(),
      cacheWritePerMTokUsd: t.float({ description: "Prompt tokens written to the provider's cache (Anthropic cache creation); omitted: the input price." }),
      currency: t.string({ description: 'ISO 4217 code the amounts are in (default USD); others need usdRate.' }),
      usdRate: t.float({ description: 'USD per unit of currency.' }),
      source: t.string(),
      effectiveFrom: t.field({ type: 'DateTime' }),
    }),
  });

  const BudgetInput = builder.inputType('BudgetInput', {
    description: 'TEAM needs teamId; API_KEY needs apiKeyId; FEATURE needs feature and may name a teamId.',
    fields: (t) => ({
      scope: t.field({ type: BudgetScopeEnum, required: true }),
      teamId: t.id(),
      apiKeyId: t.id(),
      feature: t.string(),
      period: t.field({ type: BudgetPeriodEnum, required: true }),
      limitUsd: t.float({ required: true }),
      action: t.field({ type: BudgetActionEnum, required: true }),
      webhookUrl: t.string({ description: 'http(s) URL that receives each budget event, signed (x-tollgate-signature).' }),
      failOpen: t.boolean({ description: 'Admit requests when the counter store is unreachable (default false: 503).' }),
    }),
  });

  const SnapshotImportRef = builder.objectRef<SnapshotImport>('PriceSnapshotImport');
  SnapshotImportRef.implement({
    description: 'What importing the price snapshot shipped with Tollgate did.',
    fields: (t) => ({
      snapshot: t.exposeString('snapshot'),
      asOf: t.exposeString('asOf', { description: 'The date (YYYY-MM-DD) the list prices were taken: check them against the vendors.' }),
      created: t.field({
        type: [Price],
        description: 'The price versions created.',
        resolve: (r, _args, ctx) =>
          r.created.length === 0 ? [] : ctx.prisma.price.findMany({ where: { id: { in: r.created.map((p) => p.version) } }, orderBy: { id: 'asc' } }),
      }),
      unchanged: t.exposeInt('unchanged', { description: 'Entries whose current version already bills the same.' }),
      skipped: t.exposeInt('skipped', { description: 'Entries left alone because the model already had a price (onlyMissing).' }),
    }),
  });

  const RepricingRowRef = builder.objectRef<RepricingRow>('RepricingRow');
  RepricingRowRef.implement({
    fields: (t) => ({
      provider: t.exposeString('provider'),
      model: t.exposeString('model'),
      receipts: t.exposeInt('receipts', { description: 'Receipts in range (cache hits, which cost 0, excluded).' }),
      unpricedBefore: t.exposeInt('unpricedBefore', { description: 'Receipts whose signed cost is null (unpriced).' }),
      originalCostUsd: t.exposeFloat('originalCostUsd', { description: 'Sum of the signed costs (unpriced receipts add nothing).' }),
      recomputedCostUsd: t.exposeFloat('recomputedCostUsd'),
      deltaUsd: t.exposeFloat('deltaUsd', { description: 'recomputedCostUsd - originalCostUsd.' }),
      pending: t.exposeInt('pending', { description: 'Receipts an apply would write (not yet re-priced to this version and cost).' }),
    }),
  });

  const RepricingResultRef = builder.objectRef<RepricingResult>('RepricingResult');
  RepricingResultRef.implement({
    fields: (t) => ({
      priceVersion: t.exposeInt('priceVersion'),
      applied: t.exposeBoolean('applied'),
      written: t.exposeInt('written', { description: 'Rows written to receipt_repricings (0 for a dry run).' }),
      rows: t.field({ type: [RepricingRowRef], resolve: (r) => r.rows }),
    }),
  });

  const ImportPriceSnapshotInput = builder.inputType('ImportPriceSnapshotInput', {
    fields: (t) => ({
      providers: t.stringList({ description: 'Provider names to price (default: every configured provider).' }),
      onlyMissing: t.boolean({ description: 'Leave models that already have a price alone (default false).' }),
    }),
  });

  const RepriceReceiptsInput = builder.inputType('RepriceReceiptsInput', {
    fields: (t) => ({
      from: t.field({ type: 'DateTime', required: true }),
      to: t.field({ type: 'DateTime', required: true }),
      provider: t.string({ required: true }),
      model: t.string({ required: true }),
      priceVersion: t.int({ description: "A version of this provider+model's price (default: the current one)." }),
      apply: t.boolean({ required: true, description: 'false: dry run; true: write the recomputed costs to receipt_repricings.' }),
    }),
  });

  builder.queryFields((t) => ({
    prices: t.prismaField({
      type: [Price],
      authScopes: { authenticated: true },
      description: 'The price of every provider+model in effect now (a version scheduled for later is not, yet).',
      resolve: async (query, _root, _args, ctx) => {
        // The version in effect for each provider+model, then those rows with the planned selection.
        const current = await store(() => ctx.admin.pricing.currentVersionIds());
        if (current.length === 0) return [];
        return ctx.prisma.price.findMany({
          ...query,
          where: { id: { in: current } },
          orderBy: [{ provider: 'asc' }, { model: 'asc' }],
        });
      },
    }),
    budgets: t.prismaField({
      type: [Budget],
      authScopes: { authenticated: true },
      description: "Every budget (a team-bound token: its own team's).",
      resolve: (query, _root, _args, ctx) =>
        ctx.prisma.budget.findMany({ ...query, where: teamScopedWhere(ctx), orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] }),
    }),
  }));

  builder.mutationFields((t) => ({
    setPrice: t.prismaField({
      type: Price,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: PriceInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        const price = await store(() =>
          ctx.admin.pricing.setPrice({
            provider: input.provider,
            model: input.model,
            inputPerMTokUsd: input.inputPerMTokUsd,
            outputPerMTokUsd: input.outputPerMTokUsd,
            cachedInputPerMTokUsd: input.cachedInputPerMTokUsd,
            cacheWritePerMTokUsd: input.cacheWritePerMTokUsd,
            currency: input.currency ?? undefined,
            usdRate: input.usdRate,
            source: input.source,
            effectiveFrom: input.effectiveFrom ?? undefined,
          }),
        );
        await ctx.configChanged();
        return ctx.prisma.price.findUniqueOrThrow({ ...query, where: { id: price.version } });
      },
    }),

    importPriceSnapshot: t.field({
      type: SnapshotImportRef,
      authScopes: { globalAdmin: true },
      description: 'Prices configured providers from the list prices shipped with Tollgate (mapped by provider kind).',
      args: { input: t.arg({ type: ImportPriceSnapshotInput }) },
      resolve: async (_root, { input }, ctx) => {
        const providers = await store(() => ctx.admin.providers.listProviders());
        const names = input?.providers ?? null;
        for (const name of names ?? []) if (!providers.some((p) => p.name === name)) throw notFound(`provider "${name}"`);
        const targets = names ? providers.filter((p) => names.includes(p.name)) : providers;
        const result = await store(() => importSnapshot(ctx.admin.pricing, targets, { onlyMissing: input?.onlyMissing ?? false }));
        if (result.created.length) await ctx.configChanged();
        return result;
      },
    }),

    repriceReceipts: t.field({
      type: RepricingResultRef,
      authScopes: { globalAdmin: true },
      description:
        'Recomputes the cost of receipts in [from, to) from their tokens and a price version. Receipts stay as signed; ' +
        'with apply the recomputed costs go to the receipt_repricings table.',
      args: { input: t.arg({ type: RepriceReceiptsInput, required: true }) },
      resolve: async (_root, { input }, ctx) => {
        try {
          const result = await repriceReceipts(
            { clickhouse: ctx.clickhouse, receiptsTable: ctx.receiptsTable, prices: ctx.admin.pricing },
            { ...input, priceVersion: input.priceVersion ?? null },
          );
          // What an apply changed (the costs analytics report) is on record; a dry run changes nothing.
          if (result.applied) {
            const { from, to, provider, model } = input;
            const after = { from, to, priceVersion: result.priceVersion, written: result.written };
            await store(() => ctx.admin.recordAction('repriceReceipts', `receipts:${provider}/${model}`, null, after));
          }
          return result;
        } catch (err) {
          if (err instanceof RepriceError)
            throw err.code === 'NOT_FOUND' ? new GraphQLError(err.message, { extensions: { code: 'NOT_FOUND' } }) : invalidInput(err.message);
          throw err;
        }
      },
    }),

    setBudget: t.prismaField({
      type: Budget,
      authScopes: { admin: true },
      args: { input: t.arg({ type: BudgetInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        const teamId = input.teamId == null ? null : String(input.teamId);
        const apiKeyId = input.apiKeyId == null ? null : String(input.apiKeyId);
        // A team-bound admin: only budgets of its own team (another team's reads as not found).
        if (boundTeam(ctx) !== null) {
          if (input.scope === 'API_KEY') {
            if (apiKeyId !== null && isUuid(apiKeyId)) {
              const key = await store(() => ctx.admin.teams.getApiKey(apiKeyId));
              if (!key || !canSeeTeam(ctx, key.teamId)) throw notFound('API key');
            }
          } else if (teamId === null) {
            if (input.scope === 'FEATURE') throw forbidden('A team-bound token may only set budgets of its own team (set teamId).');
          } else if (!canSeeTeam(ctx, teamId)) {
            throw notFound('team');
          }
        }
        const budget = await store(() =>
          ctx.admin.pricing.setBudget(
            {
              scope: input.scope,
              teamId,
              apiKeyId,
              feature: input.feature,
              period: input.period,
              limitUsd: input.limitUsd,
              action: input.action,
              webhookUrl: input.webhookUrl,
              failOpen: input.failOpen,
            },
            { teamBound: boundTeam(ctx) !== null },
          ),
        );
        await ctx.configChanged();
        return ctx.prisma.budget.findUniqueOrThrow({ ...query, where: { id: budget.id } });
      },
    }),

    deleteBudget: t.boolean({
      authScopes: { admin: true },
      description: 'Removes a budget; false when there is none (a team-bound token: none of its team, or one imposed on it: FORBIDDEN).',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (_root, { id }, ctx) => {
        const budgetId = String(id);
        if (!isUuid(budgetId)) return false;
        // A team-bound admin: another team's budget reads as none.
        if (boundTeam(ctx) !== null) {
          const budget = await ctx.prisma.budget.findUnique({ where: { id: budgetId }, select: { teamId: true } });
          if (!budget || !canSeeTeam(ctx, budget.teamId)) return false;
        }
        const deleted = await store(() => ctx.admin.pricing.deleteBudget(budgetId, { teamBound: boundTeam(ctx) !== null }), 'id');
        if (deleted) await ctx.configChanged();
        return deleted;
      },
    }),
  }));
}

/** One status read per budget per operation, however many of its figures are selected. */
const statusMemo = new WeakMap<GraphQLContext, Map<string, Promise<BudgetStatus | null>>>();
function budgetStatusOf(budgetId: string, ctx: GraphQLContext): Promise<BudgetStatus | null> {
  let memo = statusMemo.get(ctx);
  if (!memo) statusMemo.set(ctx, (memo = new Map()));
  let status = memo.get(budgetId);
  if (!status) memo.set(budgetId, (status = ctx.budgetStatus?.(budgetId) ?? Promise.resolve(null)));
  return status;
}
