// Data access for the configuration store, shared by the gateway, the CLI and GraphQL: one
// store per admin domain (src/store/admin/<domain>.ts, mirroring src/graphql/schema/), over
// the shared validators and transaction shape in src/store/admin/validators.ts.
//
// Rules every domain keeps:
//   - inputs are validated (zod) and every failure is an AdminStoreError with a stable code;
//   - secrets: API key and access token secrets are returned once and stored only as
//     SHA-256; provider API keys are sealed with the SecretBox and only the gateway's
//     catalog load ever sees them in clear;
//   - every mutation writes its audit entry (who, what, before/after without secrets) and
//     bumps the catalog version in the same transaction, so gateways poll one cheap row
//     (catalogVersion()) to know when to reload providers, routes, prices, keys and budgets;
//   - who: a store made with `as(actor)` names that actor in the audit log (GraphQL gives
//     each request's context one); the plain store is the `system` (start-up config, CLI);
//   - upserts: the same provider name, route name, provider+model (price, as a new
//     version) or scope+target+period (budget) replaces the old one (DESIGN §8).

import { type Actor, SYSTEM_ACTOR } from './admin/audit.js';
import { AuditLog } from './admin/audit-log.js';
import { type BudgetRecord, type PriceRecord, PricingStore } from './admin/pricing.js';
import { type ProviderRecord, ProviderStore } from './admin/providers.js';
import { type ExperimentRecord, type RouteRecord, RoutingStore } from './admin/routing.js';
import { type TeamRecord, TeamStore } from './admin/teams.js';
import { Mutations } from './admin/validators.js';
import type { PrismaClient } from './prisma.js';
import type { SecretBox } from './secret-box.js';

/** What a gateway needs to build its catalog: everything, with provider secrets in clear. */
export interface CatalogRecords {
  providers: ProviderRecord[];
  routes: RouteRecord[];
  experiments: ExperimentRecord[];
  prices: PriceRecord[];
  budgets: BudgetRecord[];
  teams: TeamRecord[];
  /** When a price version scheduled for later takes effect (the catalog is loaded again then). */
  pricesChangeAt: Date | null;
}

export class AdminStore {
  readonly teams: TeamStore;
  readonly providers: ProviderStore;
  readonly routing: RoutingStore;
  readonly pricing: PricingStore;
  readonly audit: AuditLog;
  private readonly mutations: Mutations;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly secretBox: SecretBox,
    actor: Actor = SYSTEM_ACTOR,
  ) {
    this.mutations = new Mutations(prisma, actor);
    this.teams = new TeamStore(this.mutations);
    this.providers = new ProviderStore(this.mutations, secretBox);
    this.routing = new RoutingStore(this.mutations);
    this.pricing = new PricingStore(this.mutations);
    this.audit = new AuditLog(prisma);
  }

  /** The same store, naming `actor` in the audit log for every change made through it. */
  as(actor: Actor): AdminStore {
    return new AdminStore(this.prisma, this.secretBox, actor);
  }

  /** Audits an admin action on data rather than configuration (see Mutations.record). */
  recordAction(action: string, target: string, teamId: string | null, after: unknown): Promise<void> {
    return this.mutations.record(action, target, teamId, after);
  }

  /** Opaque; changes with every mutation of any domain. */
  catalogVersion(): Promise<string> {
    return this.mutations.catalogVersion();
  }

  /** The gateway's one read across domains. */
  async loadCatalog(): Promise<CatalogRecords> {
    const at = new Date();
    const [providers, routes, experiments, prices, budgets, teams, pricesChangeAt] = await Promise.all([
      this.providers.loadProvidersWithSecrets(),
      this.routing.listRoutes(),
      this.routing.listExperiments(),
      this.pricing.currentPrices(at),
      this.pricing.listBudgets(),
      this.teams.listTeams(),
      this.pricing.nextPriceChange(at),
    ]);
    return { providers, routes, experiments, prices, budgets, teams, pricesChangeAt };
  }
}
