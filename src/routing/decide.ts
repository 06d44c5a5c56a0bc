// Where one request goes (DESIGN §5, "Order of decision"): the route it names → that
// route's active experiment assigns a variant (a variant with targets or a route replaces
// the route's targets and rules; the control keeps the route as configured) → the effective
// route's rules, in order, the first that holds deciding (a rule may hand over to another
// route, which runs its own rules but no second experiment) → the route's strategy orders
// the chosen targets (strategy.ts). Pure but for the clock and the classifier it is given:
// the pipeline and explainRoute decide the same way.
import { hash } from 'node:crypto';
import type { Catalog, Experiment, Route, Variant } from './catalog.js';
import type { Classification, ClassifierInput } from './classifier.js';
import { classifierInput, type DecisionRequest, nowFacts, requestFacts } from './facts.js';
import { ClassifierFacts, type RuleContext } from './rules.js';

export interface RouteDecision {
  /** The route whose targets and strategy serve the request (after variant and rules). */
  route: Route;
  /** The rule that decided, when one did. */
  rule: string | null;
  /** Set when some rule read it. */
  classifier: Classification | null;
  experiment: string | null;
  /** The bare variant name. */
  variant: string | null;
}

export interface DecideHooks {
  classify(input: ClassifierInput): Classification;
  /** A `when` that failed to evaluate (it counts as false). */
  onRuleError(route: string, rule: string, err: unknown): void;
}

/** How far rules may hand a request on; saving refuses cycles, this bounds anything else. */
const MAX_RULE_HOPS = 8;

export function decideRoute(catalog: Catalog, requested: Route, request: DecisionRequest, hooks: DecideHooks, now = new Date()): RouteDecision {
  const decision: RouteDecision = { route: requested, rule: null, classifier: null, experiment: null, variant: null };
  const experiment = requested.pinned ? undefined : catalog.experiments.get(requested.name);
  if (experiment) {
    const variant = assignVariant(experiment, stickyValue(experiment, request));
    decision.experiment = experiment.name;
    decision.variant = variant.name;
    decision.route = variantRoute(catalog, requested, variant);
  }

  let ctx: RuleContext | null = null;
  let ctxHasPromptTokens = false;
  for (let hop = 0; hop < MAX_RULE_HOPS; hop++) {
    const route = decision.route;
    let next: Route | null = null;
    for (const rule of route.rules) {
      // Built once, and again with the prompt's length when a route handed the request needs it.
      if (!ctx || (route.rulesReadPromptTokens && !ctxHasPromptTokens)) {
        const previous = ctx as RuleContext | null;
        ctx = {
          request: requestFacts(request, route.rulesReadPromptTokens),
          classifier: previous?.classifier ?? UNCLASSIFIED,
          now: previous?.now ?? nowFacts(now),
        };
        ctxHasPromptTokens = route.rulesReadPromptTokens;
      }
      if (rule.condition.readsClassifier && !decision.classifier) {
        decision.classifier = hooks.classify(classifierInput(request.chat));
        ctx.classifier = new ClassifierFacts(decision.classifier.tier, decision.classifier.confidence);
      }
      let holds: boolean;
      try {
        holds = rule.condition.test(ctx);
      } catch (err) {
        hooks.onRuleError(route.name, rule.name, err);
        holds = false;
      }
      if (!holds) continue;
      decision.rule = rule.name;
      if (rule.targets) decision.route = { ...route, targets: rule.targets, rules: [], rulesReadPromptTokens: false };
      else next = catalog.routes.get(rule.route!) ?? null;
      break;
    }
    if (!next) break;
    decision.route = next;
  }
  return decision;
}

/** Before any rule reads it the classifier has said nothing (rules that read it force it first). */
const UNCLASSIFIED = new ClassifierFacts('MEDIUM', 0);

function variantRoute(catalog: Catalog, requested: Route, variant: Variant): Route {
  if (variant.targets) return { ...requested, targets: variant.targets, rules: [], rulesReadPromptTokens: false };
  if (variant.route) return catalog.routes.get(variant.route) ?? requested;
  return requested; // the control: the route as configured
}

/** The value an assignment sticks to; the API key when the chosen one is missing. */
function stickyValue(e: Experiment, r: DecisionRequest): string {
  switch (e.stickyBy) {
    case 'END_USER':
      return r.endUser ? `user:${r.endUser}` : `key:${r.apiKeyId}`;
    case 'TASK':
      return r.taskId ? `task:${r.taskId}` : `key:${r.apiKeyId}`;
    case 'REQUEST':
      return `request:${r.requestId}`;
    default:
      return `key:${r.apiKeyId}`;
  }
}

/**
 * Weighted rendezvous hashing: each variant scores -ln(u) / weight with u a uniform hash of
 * (experiment, variant, sticky value); the lowest score wins. The same value always lands on
 * the same variant (across restarts and instances: nothing is stored), each variant gets its
 * weight's share, and changing one variant's weight moves only traffic to or from that
 * variant — a user in the control stays there when the candidate's share shrinks.
 */
export function assignVariant(e: Experiment, value: string): Variant {
  let best = e.variants[0]!;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const v of e.variants) {
    if (!(v.weight > 0)) continue;
    const score = -Math.log(unitHash(`${e.name}\u0000${v.name}\u0000${value}`)) / v.weight;
    if (score < bestScore) {
      bestScore = score;
      best = v;
    }
  }
  return best;
}

/** A uniform number in (0, 1) from the first 52 bits of sha256(text). */
function unitHash(text: string): number {
  return (parseInt(hash('sha256', text).slice(0, 13), 16) + 0.5) / 2 ** 52;
}
