// The routing configuration as a whole, checked before any change is saved (DESIGN §5): every
// `when` compiles, every target names a configured provider, every rule or variant route
// exists, rules do not lead in a circle, an experiment's weights add up to something, and a
// route has at most one active experiment. A problem is reported against the object being
// saved, with the path of the offending field, so the running catalog never sees it.
import { compileCondition, RuleSyntaxError } from './rules.js';

export interface TargetSpec {
  provider: string;
  model: string;
}

export interface RuleSpec {
  name: string;
  when: string;
  targets?: TargetSpec[] | null;
  route?: string | null;
}

export interface RouteSpec {
  name: string;
  strategy: string;
  targets: TargetSpec[];
  rules: RuleSpec[];
  accept: string[];
  /** A semantic cache's embeddings model: a route's name or `provider/model`. */
  cache?: { embeddingModel: string | null } | null;
}

export interface VariantSpec {
  name: string;
  weight: number;
  targets?: TargetSpec[] | null;
  route?: string | null;
}

export interface ExperimentSpec {
  name: string;
  route: string;
  active: boolean;
  variants: VariantSpec[];
}

export interface RoutingSpec {
  providers: ReadonlySet<string>;
  routes: readonly RouteSpec[];
  experiments: readonly ExperimentSpec[];
}

export interface RoutingProblem {
  /** Which object: `route smart`, `experiment ds-vs-gpt`. */
  subject: string;
  /** The field inside it, e.g. `rules[1].when`. */
  path: string;
  message: string;
}

/** The first problem, the focused object's first; null when the configuration is sound. */
export function validateRouting(spec: RoutingSpec, focus?: { route?: string; experiment?: string; written?: readonly string[] }): RoutingProblem | null {
  // Checks added over time hold for the routes being written: a route stored before one existed
  // must not make every other change (and the configuration applied at start) fail.
  const written = new Set(focus?.written ?? (focus?.route ? [focus.route] : []));
  const routes = new Map(spec.routes.map((r) => [r.name, r]));
  const routeOrder = [...spec.routes].sort((a, b) => Number(b.name === focus?.route) - Number(a.name === focus?.route));
  const experimentOrder = [...spec.experiments].sort((a, b) => Number(b.name === focus?.experiment) - Number(a.name === focus?.experiment));
  const checks = [
    ...(focus?.experiment ? experimentOrder.map((e) => () => checkExperiment(e, spec, routes)) : []),
    ...routeOrder.map((r) => () => checkRoute(r, spec, routes, written.has(r.name)) ?? (written.has(r.name) ? checkEmbeddingModel(r, spec, routes) : null)),
    ...experimentOrder.map((e) => () => checkExperiment(e, spec, routes)),
    () => checkOneActiveExperimentPerRoute(spec.experiments, focus?.experiment),
  ];
  for (const check of checks) {
    const problem = check();
    if (problem) return problem;
  }
  return null;
}

function checkTargets(targets: readonly TargetSpec[] | null | undefined, at: string, providers: ReadonlySet<string>): { path: string; message: string } | null {
  for (const [i, t] of (targets ?? []).entries()) {
    if (!providers.has(t.provider)) return { path: `${at}[${i}].provider`, message: `unknown provider "${t.provider}"` };
  }
  return null;
}

/** `beingWritten`: a stored route's rule that no longer compiles (a function refused since) is left out by the catalog, not a reason to refuse other changes. */
function checkRoute(route: RouteSpec, spec: RoutingSpec, routes: Map<string, RouteSpec>, beingWritten: boolean): RoutingProblem | null {
  const subject = `route ${route.name}`;
  const problem = (path: string, message: string): RoutingProblem => ({ subject, path, message });
  const bad = checkTargets(route.targets, 'targets', spec.providers);
  if (bad) return { subject, ...bad };
  if (route.strategy === 'CASCADE' && route.accept.length === 0) return problem('accept', 'a CASCADE route needs at least one acceptance check');
  const names = new Set<string>();
  for (const [i, rule] of route.rules.entries()) {
    const at = `rules[${i}]`;
    if (names.has(rule.name)) return problem(`${at}.name`, `another rule of this route is already named "${rule.name}"`);
    names.add(rule.name);
    try {
      compileCondition(rule.when);
    } catch (err) {
      if (!(err instanceof RuleSyntaxError)) throw err;
      if (beingWritten) return problem(`${at}.when`, `invalid CEL: ${err.message}`);
    }
    const hasTargets = (rule.targets?.length ?? 0) > 0;
    if (hasTargets === Boolean(rule.route)) return problem(at, 'a rule needs either targets or a route, not both');
    const badTarget = checkTargets(rule.targets, `${at}.targets`, spec.providers);
    if (badTarget) return { subject, ...badTarget };
    if (rule.route && !routes.has(rule.route)) return problem(`${at}.route`, `unknown route "${rule.route}"`);
  }
  const cycle = ruleCycle(route.name, routes);
  if (cycle) return problem(`rules[${cycle.rule}].route`, `rules lead in a circle: ${cycle.path.join(' → ')}`);
  return null;
}

/**
 * A semantic cache's embeddings model, resolved as a request's model is (Catalog.resolve):
 * unknown, the semantic cache would be off for the route with an error logged on every request.
 */
function checkEmbeddingModel(route: RouteSpec, spec: RoutingSpec, routes: Map<string, RouteSpec>): RoutingProblem | null {
  const embeddings = route.cache?.embeddingModel;
  if (!embeddings || routes.has(embeddings)) return null;
  const slash = embeddings.indexOf('/');
  if (slash > 0 && slash < embeddings.length - 1 && spec.providers.has(embeddings.slice(0, slash))) return null;
  return {
    subject: `route ${route.name}`,
    path: 'cache.embeddingModel',
    message: `"${embeddings}" is neither a route nor provider/model with a known provider`,
  };
}

/** A path of rule delegations from `start` back to a route already on it, if there is one. */
function ruleCycle(start: string, routes: Map<string, RouteSpec>): { rule: number; path: string[] } | null {
  // Routes whose every delegation was followed to its end without a cycle: not followed again
  // (without it, routes handing off to the next through two rules each cost 2^n: 18 took 0.3 s).
  const explored = new Set<string>();
  const visit = (name: string, path: string[]): string[] | null => {
    const route = routes.get(name);
    if (!route || explored.has(name)) return null;
    for (const rule of route.rules) {
      if (!rule.route) continue;
      if (path.includes(rule.route)) return [...path, rule.route];
      const found = visit(rule.route, [...path, rule.route]);
      if (found) return found;
    }
    explored.add(name);
    return null;
  };
  const route = routes.get(start)!;
  for (const [i, rule] of route.rules.entries()) {
    if (!rule.route) continue;
    const path = rule.route === start ? [start, start] : visit(rule.route, [start, rule.route]);
    if (path) return { rule: i, path };
  }
  return null;
}

function checkExperiment(e: ExperimentSpec, spec: RoutingSpec, routes: Map<string, RouteSpec>): RoutingProblem | null {
  const subject = `experiment ${e.name}`;
  const problem = (path: string, message: string): RoutingProblem => ({ subject, path, message });
  if (!routes.has(e.route)) return problem('route', `unknown route "${e.route}"`);
  if (e.variants.length === 0) return problem('variants', 'an experiment needs at least one variant');
  const names = new Set<string>();
  let total = 0;
  for (const [i, v] of e.variants.entries()) {
    const at = `variants[${i}]`;
    if (names.has(v.name)) return problem(`${at}.name`, `another variant is already named "${v.name}"`);
    names.add(v.name);
    if (!(v.weight >= 0) || !Number.isFinite(v.weight)) return problem(`${at}.weight`, 'must be a finite number >= 0');
    total += v.weight;
    if ((v.targets?.length ?? 0) > 0 && v.route) return problem(at, 'a variant has targets or a route (or neither: the control), not both');
    const badTarget = checkTargets(v.targets, `${at}.targets`, spec.providers);
    if (badTarget) return { subject, ...badTarget };
    if (v.route && !routes.has(v.route)) return problem(`${at}.route`, `unknown route "${v.route}"`);
  }
  if (!(total > 0)) return problem('variants', 'variant weights sum to 0: no traffic could be assigned');
  return null;
}

function checkOneActiveExperimentPerRoute(experiments: readonly ExperimentSpec[], focus?: string): RoutingProblem | null {
  const active = new Map<string, string>();
  const ordered = [...experiments].sort((a, b) => Number(a.name === focus) - Number(b.name === focus));
  for (const e of ordered) {
    if (!e.active) continue;
    const other = active.get(e.route);
    if (other) return { subject: `experiment ${e.name}`, path: 'route', message: `route "${e.route}" already has an active experiment ("${other}")` };
    active.set(e.route, e.name);
  }
  return null;
}
