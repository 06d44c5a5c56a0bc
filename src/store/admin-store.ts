// Data access for the configuration store, shared by the gateway, the CLI and GraphQL: one
// store per admin domain (src/store/admin/<domain>.ts, mirroring src/graphql/schema/), over
// the shared validators and transaction shape in src/store/admin/validators.ts.
//
// Rules every domain keeps:
//   - inputs are validated (zod) and every failure is an AdminStoreError with a stable code;
//   - secrets: API key and access token secrets are returned once and stored only as
//     SHA-256; provider API keys are sealed with the SecretBox and only the gateway's
//     catalog load ever sees them in clear;
//   - every mutation bumps the catalog version in the same transaction, so gateways poll
//     one cheap row (catalogVersion()) to know when to reload providers, routes, prices,
//     keys and budgets;
//   - upserts: the same provider name, route name, provider+model (price, as a new
//     version) or scope+target+period (budget) replaces the old one (DESIGN §8).
import type { PrismaClient } from './prisma.js';
import type { SecretBox } from './secret-box.js';
import { PricingStore, type BudgetRecord, type PriceRecord } from './admin/pricing.js';
import { ProviderStore, type ProviderRecord } from './admin/providers.js';
import { RoutingStore, type ExperimentRecord, type RouteRecord } from './admin/routing.js';
import { TeamStore, type TeamRecord } from './admin/teams.js';
import { Mutations } from './admin/validators.js';

/** What a gateway needs to build its catalog: everything, with provider secrets in clear. */
export interface CatalogRecords {
  providers: ProviderRecord[];
  routes: RouteRecord[];
  experiments: ExperimentRecord[];
  prices: PriceRecord[];
  budgets: BudgetRecord[];
  teams: TeamRecord[];
}

export class AdminStore {
  readonly teams: TeamStore;
  readonly providers: ProviderStore;
  readonly routing: RoutingStore;
  readonly pricing: PricingStore;
  private readonly mutations: Mutations;

  constructor(prisma: PrismaClient, secretBox: SecretBox) {
    this.mutations = new Mutations(prisma);
    this.teams = new TeamStore(this.mutations);
    this.providers = new ProviderStore(this.mutations, secretBox);
    this.routing = new RoutingStore(this.mutations);
    this.pricing = new PricingStore(this.mutations);
  }

  /** Opaque; changes with every mutation of any domain. */
  catalogVersion(): Promise<string> {
    return this.mutations.catalogVersion();
  }

  /** The gateway's one read across domains. */
  async loadCatalog(): Promise<CatalogRecords> {
    const [providers, routes, experiments, prices, budgets, teams] = await Promise.all([
      this.providers.loadProvidersWithSecrets(),
      this.routing.listRoutes(),
      this.routing.listExperiments(),
      this.pricing.currentPrices(),
      this.pricing.listBudgets(),
      this.teams.listTeams(),
    ]);
    return { providers, routes, experiments, prices, budgets, teams };
  }
}
