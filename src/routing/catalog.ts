// An immutable snapshot of providers, routes (with their compiled rules), experiments, prices
// and team names, built from the config store and swapped atomically when the store's catalog
// version changes. The hot path only reads it.
import { PRESETS, type ProviderKind, type ProviderPreset } from '../providers/presets.js';
import type { PriceRecord } from '../store/admin/pricing.js';
import type { ProviderRecord } from '../store/admin/providers.js';
import type { ExperimentRecord, RouteRecord, RouteTargetRecord } from '../store/admin/routing.js';
import { type CompiledCondition, compileCondition } from './rules.js';

export type Strategy = 'PRIORITY' | 'WEIGHTED' | 'LEAST_LATENCY' | 'LOWEST_COST' | 'CASCADE';
export type AcceptCheck = RouteRecord['accept'][number];
export type StickyBy = ExperimentRecord['stickyBy'];
export type CacheMode = 'OFF' | 'EXACT' | 'SEMANTIC';

// The catalog is built from the config store's records (the gateway's view: secrets decrypted).
export type ProviderInput = Omit<ProviderRecord, 'id'>;
export type RouteInput = Omit<RouteRecord, 'id' | 'createdAt' | 'updatedAt'>;
export type ExperimentInput = Omit<ExperimentRecord, 'id' | 'createdAt' | 'updatedAt'>;
export type PriceInput = Pick<PriceRecord, 'version' | 'provider' | 'model' | 'inputPerMTokUsd' | 'outputPerMTokUsd' | 'cachedInputPerMTokUsd'> &
  Partial<Pick<PriceRecord, 'cacheWritePerMTokUsd'>>;

export interface Provider {
  name: string;
  kind: ProviderKind;
  preset: ProviderPreset;
  /** e.g. https://openrouter.ai — undici pools are keyed by origin. */
  origin: string;
  /** e.g. /api/v1 — prefixed to /chat/completions. */
  basePath: string;
  /** The base URL's query (`?api-version=…`, as Azure OpenAI needs), appended to every path; usually ''. */
  query: string;
  /** Precomputed request headers (auth + preset + extra), so the hot path only spreads them. */
  headers: Record<string, string>;
  timeoutMs: number | null;
  modelMap: Record<string, string>;
}

export interface Target {
  /** `provider/model`: the unit of health, breakers and prices. */
  key: string;
  provider: Provider;
  model: string;
  upstreamModel: string;
  weight: number;
  priority: number;
  price: PriceInput | null;
}

export interface Route {
  name: string;
  strategy: Strategy | 'PINNED';
  retries: number;
  timeoutMs: number | null;
  cache: RouteInput['cache'];
  targets: Target[];
  pinned: boolean;
  /** In order; the first whose condition holds decides (DESIGN §5). */
  rules: RouteRule[];
  /** Some rule reads `request.promptTokens` (so the estimate is worth making). */
  rulesReadPromptTokens: boolean;
  /** CASCADE: what ends the climb. */
  accept: AcceptCheck[];
}

export interface RouteRule {
  name: string;
  condition: CompiledCondition;
  /** Replaces the route's targets… */
  targets: Target[] | null;
  /** …or hands the request to another route (which runs its own rules). */
  route: string | null;
}

export interface Experiment {
  name: string;
  route: string;
  stickyBy: StickyBy;
  variants: Variant[];
}

export interface Variant {
  name: string;
  weight: number;
  /** Neither targets nor route: the control (the route as configured). */
  targets: Target[] | null;
  route: string | null;
}

export interface CatalogExtras {
  experiments?: ExperimentInput[];
  teams?: ReadonlyArray<{ id: string; name: string }>;
  defaultRetries?: number;
  /** A rule that no longer compiles (saved by an older version) is left out and reported. */
  onRuleError?: (route: string, rule: string, err: unknown) => void;
}

export class Catalog {
  readonly providers = new Map<string, Provider>();
  readonly routes = new Map<string, Route>();
  /** The active experiment of each route that has one. */
  readonly experiments = new Map<string, Experiment>();
  /** Team id → name (`request.team` in rules). */
  readonly teams = new Map<string, string>();
  private readonly prices = new Map<string, PriceInput>();
  private readonly pinnedCache = new Map<string, Route>();
  private readonly defaultRetries: number;

  constructor(
    providers: ProviderInput[],
    routes: RouteInput[],
    prices: PriceInput[],
    readonly version: string,
    extras: CatalogExtras = {},
  ) {
    this.defaultRetries = extras.defaultRetries ?? 1;
    for (const p of prices) this.prices.set(`${p.provider}/${p.model}`, p);
    for (const p of providers) {
      const provider = buildProvider(p);
      if (provider) this.providers.set(p.name, provider);
    }
    for (const t of extras.teams ?? []) this.teams.set(t.id, t.name);
    for (const r of routes) {
      const rules: RouteRule[] = [];
      for (const rule of r.rules ?? []) {
        try {
          rules.push({
            name: rule.name,
            condition: compileCondition(rule.when),
            targets: rule.targets ? this.targets(rule.targets) : null,
            route: rule.route ?? null,
          });
        } catch (err) {
          extras.onRuleError?.(r.name, rule.name, err);
        }
      }
      this.routes.set(r.name, {
        ...r,
        targets: this.targets(r.targets),
        pinned: false,
        rules,
        rulesReadPromptTokens: rules.some((rule) => rule.condition.readsPromptTokens),
        accept: r.accept ?? [],
      });
    }
    for (const e of extras.experiments ?? []) {
      if (!e.active) continue;
      const variants = e.variants.map((v) => ({ name: v.name, weight: v.weight, targets: v.targets ? this.targets(v.targets) : null, route: v.route ?? null }));
      this.experiments.set(e.route, { name: e.name, route: e.route, stickyBy: e.stickyBy, variants });
    }
  }

  /** Targets whose provider is configured (saving refuses others; older data may have them). */
  private targets(records: readonly RouteTargetRecord[]): Target[] {
    return records.flatMap((t) => {
      const provider = this.providers.get(t.provider);
      return provider ? [this.target(provider, t.model, t.weight, t.priority)] : [];
    });
  }

  /** A route name (alias) or `provider/model`; null when neither exists. */
  resolve(model: string): Route | null {
    const route = this.routes.get(model);
    if (route) return route;
    const slash = model.indexOf('/');
    if (slash <= 0 || slash === model.length - 1) return null;
    const provider = this.providers.get(model.slice(0, slash));
    if (!provider) return null;
    let pinned = this.pinnedCache.get(model);
    if (!pinned) {
      pinned = {
        name: model,
        strategy: 'PINNED',
        retries: this.defaultRetries,
        timeoutMs: null,
        cache: { mode: 'OFF', ttlSeconds: null, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false },
        targets: [this.target(provider, model.slice(slash + 1), 1, 0)],
        pinned: true,
        rules: [],
        rulesReadPromptTokens: false,
        accept: [],
      };
      // Bounded: pins are client-chosen strings.
      if (this.pinnedCache.size > 10_000) this.pinnedCache.clear();
      this.pinnedCache.set(model, pinned);
    }
    return pinned;
  }

  price(provider: string, model: string): PriceInput | null {
    return this.prices.get(`${provider}/${model}`) ?? null;
  }

  /** Every `provider/model` the catalog knows of (route targets and priced models). */
  knownPins(): string[] {
    const pins = new Set<string>();
    for (const r of this.routes.values()) for (const t of r.targets) pins.add(t.key);
    for (const key of this.prices.keys()) if (this.providers.has(key.slice(0, key.indexOf('/')))) pins.add(key);
    return [...pins].sort();
  }

  private target(provider: Provider, model: string, weight: number, priority: number): Target {
    return {
      key: `${provider.name}/${model}`,
      provider,
      model,
      // Own keys only: a model named "constructor" or "__proto__" is not a mapping.
      upstreamModel: Object.hasOwn(provider.modelMap, model) ? provider.modelMap[model]! : model,
      weight: Math.max(weight, 0),
      priority,
      price: this.price(provider.name, model),
    };
  }
}

function buildProvider(p: ProviderInput): Provider | null {
  const preset = PRESETS[p.kind];
  const base = p.baseUrl ?? preset.baseUrl;
  if (!base) return null; // a generic provider without a base URL cannot be called
  const url = new URL(base);
  // Lower-cased (HTTP names are case-insensitive): an extra `Authorization` or `X-Title` replaces
  // the preset's or the key's header instead of going out beside it.
  const headers: Record<string, string> = { ...preset.headers };
  for (const [name, value] of Object.entries(p.extraHeaders)) headers[name.toLowerCase()] = value;
  // Credentials in the URL (https://user:pass@host) are HTTP Basic auth; an API key goes over them.
  if (url.username || url.password) {
    headers.authorization = `Basic ${Buffer.from(`${percentDecoded(url.username)}:${percentDecoded(url.password)}`).toString('base64')}`;
  }
  if (p.apiKey) {
    if (preset.authHeader === 'authorization') headers.authorization = `Bearer ${p.apiKey}`;
    else headers[preset.authHeader] = p.apiKey;
  }
  return {
    name: p.name,
    kind: p.kind,
    preset,
    origin: url.origin,
    basePath: url.pathname.replace(/\/+$/, ''),
    query: url.search,
    headers,
    timeoutMs: p.timeoutMs,
    modelMap: p.modelMap,
  };
}

/** A URL's user or password as written, its %-escapes decoded where they are valid (a stray `%` stays). */
function percentDecoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Route names are allowed per key; `provider/*` allows every pin on that provider. */
export function isRouteAllowed(allowed: readonly string[], route: Route): boolean {
  if (allowed.length === 0) return true;
  if (allowed.includes(route.name)) return true;
  if (route.pinned) {
    const provider = route.name.slice(0, route.name.indexOf('/'));
    return allowed.includes(`${provider}/*`);
  }
  return false;
}
