// Routing rules (DESIGN §5): `when` expressions in CEL over what is known of a request,
// compiled and type-checked once (when the catalog is built, and before a change is saved),
// evaluated per request in order; the first that holds decides.
//
// CEL with @marcbachmann/cel-js: a maintained, dependency-free implementation with a type
// checker, so a misspelt field or a string compared with a number is refused at save time,
// not discovered at 3 a.m. The context is typed classes (no per-evaluation conversion):
// about a microsecond per rule.
import { Environment } from '@marcbachmann/cel-js';
import type { Tier } from './classifier.js';

/** `request.*` in a rule: what the client sent and who it is. Ints are bigints (CEL's int). */
export class RequestFacts {
  constructor(
    readonly model: string,
    readonly endpoint: string,
    readonly feature: string,
    readonly taskId: string,
    readonly taskType: string,
    readonly team: string,
    readonly teamId: string,
    readonly apiKey: string,
    readonly endUser: string,
    readonly headers: Map<string, string>,
    readonly metadata: Map<string, string>,
    readonly promptTokens: bigint,
    readonly messages: bigint,
    readonly hasTools: boolean,
    readonly hasImages: boolean,
    readonly stream: boolean,
    readonly jsonMode: string,
    readonly maxTokens: bigint,
  ) {}
}

/** `classifier.*`: the prompt classifier's verdict (computed only when a rule reads it). */
export class ClassifierFacts {
  constructor(
    readonly tier: Tier,
    readonly confidence: number,
  ) {}
}

/** `now.*`: the time of the decision, in UTC. */
export class NowFacts {
  constructor(
    readonly hourUtc: bigint,
    readonly weekdayUtc: bigint,
  ) {}
}

export interface RuleContext {
  request: RequestFacts;
  classifier: ClassifierFacts;
  now: NowFacts;
}

const environment = new Environment({
  // Rules are short; these bound what a hostile or careless expression can cost to parse.
  limits: { maxAstNodes: 1000, maxDepth: 32, maxListElements: 1000, maxMapEntries: 1000, maxCallArguments: 32 },
})
  .registerType('Request', {
    ctor: RequestFacts,
    fields: {
      model: 'string',
      endpoint: 'string',
      feature: 'string',
      taskId: 'string',
      taskType: 'string',
      team: 'string',
      teamId: 'string',
      apiKey: 'string',
      endUser: 'string',
      headers: 'map<string, string>',
      metadata: 'map<string, string>',
      promptTokens: 'int',
      messages: 'int',
      hasTools: 'bool',
      hasImages: 'bool',
      stream: 'bool',
      jsonMode: 'string',
      maxTokens: 'int',
    },
  })
  .registerType('Classifier', { ctor: ClassifierFacts, fields: { tier: 'string', confidence: 'double' } })
  .registerType('Now', { ctor: NowFacts, fields: { hourUtc: 'int', weekdayUtc: 'int' } })
  .registerVariable('request', 'Request')
  .registerVariable('classifier', 'Classifier')
  .registerVariable('now', 'Now');

export interface CompiledCondition {
  source: string;
  /** True when the condition holds. Throws when it fails to evaluate (a missing map key, …). */
  test(ctx: RuleContext): boolean;
  /** Reads `classifier.*`: the classifier runs only for requests that reach such a rule. */
  readsClassifier: boolean;
  /** Reads `request.promptTokens`: the estimate is made only when some rule needs it. */
  readsPromptTokens: boolean;
}

export class RuleSyntaxError extends Error {}

/** Parses and type-checks a `when`; throws RuleSyntaxError with CEL's message (first line, position). */
export function compileCondition(source: string): CompiledCondition {
  if (typeof source !== 'string' || !source.trim()) throw new RuleSyntaxError('empty expression');
  if (source.length > 4096) throw new RuleSyntaxError('expression longer than 4096 characters');
  let checked: ReturnType<Environment['check']>;
  try {
    checked = environment.check(source);
  } catch (err) {
    throw new RuleSyntaxError(firstLine(err));
  }
  if (!checked.valid) throw new RuleSyntaxError(firstLine(checked.error));
  if (checked.type !== 'bool') throw new RuleSyntaxError(`must be a bool expression, not ${checked.type}`);
  const program = environment.parse(source);
  if (callsFunction(program.ast, 'matches')) {
    // cel-js runs it as a JavaScript RegExp, which backtracks: a pattern like ^([a-z]+-?)*$ over
    // a header the client chose took a second per 28 characters, the event loop (every tenant's
    // requests) blocked meanwhile. cel-js does not let it be replaced by a linear-time engine.
    throw new RuleSyntaxError(
      'matches() is not allowed in rules: a regular expression over what a client sends can take seconds; use contains, startsWith, endsWith or in',
    );
  }
  const reads = memberReads(program.ast);
  return {
    source,
    test: (ctx) => program(ctx) === true,
    readsClassifier: reads.has('classifier'),
    readsPromptTokens: reads.has('request.promptTokens') || reads.has('request'),
  };
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String((err as { message?: unknown })?.message ?? err);
  return message.split('\n')[0]!.trim().slice(0, 300);
}

type CelNode = { op?: unknown; args?: unknown };

/**
 * Visits every node of a cel-js AST: a node is `{op, args}`, and its args nest further nodes
 * inside arrays at any depth (a call's argument list, a map literal's entries). `enter` says
 * whether to go on into a node's args.
 */
function visit(value: unknown, enter: (node: CelNode) => boolean): void {
  if (Array.isArray(value)) {
    for (const v of value) visit(v, enter);
  } else if (value && typeof value === 'object' && enter(value as CelNode)) {
    visit((value as CelNode).args, enter);
  }
}

/** Whether an expression calls `name`, as a function or a method, anywhere. */
function callsFunction(ast: unknown, name: string): boolean {
  let found = false;
  visit(ast, ({ op, args }) => {
    if ((op === 'call' || op === 'rcall') && Array.isArray(args) && args[0] === name) found = true;
    return !found;
  });
  return found;
}

/** `id` and `id.field` paths an expression reads (the whole variable when used bare). */
function memberReads(ast: unknown): Set<string> {
  const reads = new Set<string>();
  visit(ast, ({ op, args }) => {
    const target = Array.isArray(args) ? (args[0] as CelNode | undefined) : undefined;
    if (op === '.' && target?.op === 'id' && typeof (args as unknown[])[1] === 'string') {
      reads.add(`${target.args}.${(args as unknown[])[1]}`);
      if (target.args === 'classifier') reads.add('classifier');
      return false;
    }
    if (op === 'id' && typeof args === 'string') reads.add(args);
    return true;
  });
  return reads;
}
