// Keeps the live Catalog current: loads it from the config store at start, then polls the
// store's catalog version (one tiny query) and rebuilds only when it changed, or when a price
// scheduled for later takes effect. A failing
// store keeps the last good catalog: routing must not stop because Postgres blinked.
import type { BudgetRecord } from '../store/admin/pricing.js';
import { Catalog, type ExperimentInput, type PriceInput, type ProviderInput, type RouteInput } from './catalog.js';

export interface CatalogStore {
  catalogVersion(): Promise<string>;
  loadCatalog(): Promise<{
    providers: ProviderInput[];
    routes: RouteInput[];
    prices: PriceInput[];
    budgets: BudgetRecord[];
    experiments?: ExperimentInput[];
    teams?: ReadonlyArray<{ id: string; name: string }>;
    /** When a scheduled price takes effect: the catalog is loaded again then, its version unchanged. */
    pricesChangeAt?: Date | null;
  }>;
}

export class CatalogSource {
  private current: Catalog = new Catalog([], [], [], 'empty');
  private currentBudgets: readonly BudgetRecord[] = [];
  /** Epoch ms at which a scheduled price takes effect; null when none is scheduled. */
  private reloadAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(
    private readonly store: CatalogStore,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  get catalog(): Catalog {
    return this.current;
  }

  /** Budgets change with the same catalog version as routes and prices. */
  get budgets(): readonly BudgetRecord[] {
    return this.currentBudgets;
  }

  /** `knownVersion`: the version the caller just read, so it is not asked for twice. */
  async load(knownVersion?: string): Promise<Catalog> {
    const version = knownVersion ?? (await this.store.catalogVersion());
    const { providers, routes, prices, budgets, experiments, teams, pricesChangeAt } = await this.store.loadCatalog();
    this.reloadAt = pricesChangeAt ? pricesChangeAt.getTime() : null;
    this.current = new Catalog(providers, routes, prices, version, {
      experiments,
      teams,
      onRuleError: (route, rule, err) => this.onError(new Error(`route ${route}: rule ${rule} no longer compiles (${String(err)}); left out`)),
    });
    this.currentBudgets = budgets;
    return this.current;
  }

  /**
   * Reloads if the store's version moved; concurrent callers share one reload. A caller that
   * arrives while one is running may have just written to the store after it read the
   * version: it waits for one more check (shared too), so it always sees its own write.
   */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.queued ??= this.refreshing.then(() => {
        this.queued = null;
        return this.refresh();
      });
      return this.queued;
    }
    this.refreshing = (async () => {
      try {
        const version = await this.store.catalogVersion();
        const priceDue = this.reloadAt !== null && Date.now() >= this.reloadAt;
        if (version !== this.current.version || priceDue) await this.load(version);
      } catch (err) {
        this.onError(err);
      }
    })().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  startPolling(intervalMs: number): void {
    this.stopPolling();
    this.timer = setInterval(() => void this.refresh(), intervalMs);
    this.timer.unref();
  }

  stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
