// The cost limit once more at execution, with the operation's variables known. graphql-armor's
// cost limit runs at validation, before variables exist, and its list multiplier reads only a
// literal `first`/`last`: `receipts(first: $n)` counts as one row, so fifteen aliases of it with
// n = 500 pass a limit that refuses one `receipts(first: 500)`. This applies armor's formula
// (objectCost 2, scalarCost 1, depthCostFactor 1.5, fragments not flattened, introspection
// free) with a variable's value as well, and a paginated field without `first` counted at its
// default page (armor counts it as one row: fourteen `receipts` aliases without `first` beside a
// `receipts(first: 500)` passed, ~1,200 full receipts). Written here because no library
// computes the cost with the variables.
import { type DocumentNode, type FieldNode, type FragmentDefinitionNode, GraphQLError, Kind, type OperationDefinitionNode, type SelectionNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';

const OBJECT_COST = 2;
const SCALAR_COST = 1;
const DEPTH_COST_FACTOR = 1.5;

/** Field name → the page it returns when `first` is not given. */
export type DefaultPages = Readonly<Record<string, number>>;

/** Refuses an operation whose cost with its variables is over `maxCost` (HTTP and websockets). */
export function costLimitWithVariables(maxCost: number, defaultPages: DefaultPages = {}): Plugin {
  const check = (args: { document: DocumentNode; operationName?: string | null; variableValues?: Record<string, unknown> | null }) => {
    const cost = operationCost(args.document, args.operationName ?? null, args.variableValues ?? {}, defaultPages);
    if (cost <= maxCost) return null;
    return new GraphQLError(`Query Cost limit of ${maxCost} exceeded, found ${cost}.`, { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const refused = check(args);
      if (refused) setResultAndStopExecution({ errors: [refused] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const refused = check(args);
      if (refused) setResultAndStopExecution({ errors: [refused] });
    },
  };
}

export function operationCost(
  document: DocumentNode,
  operationName: string | null,
  variables: Record<string, unknown>,
  defaultPages: DefaultPages = {},
): number {
  const fragments = new Map<string, FragmentDefinitionNode>();
  let operation: OperationDefinitionNode | undefined;
  for (const d of document.definitions) {
    if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
    else if (d.kind === Kind.OPERATION_DEFINITION && (operationName === null || d.name?.value === operationName)) operation ??= d;
  }
  if (!operation) return 0;
  // A fragment spread again costs what it cost the first time (-1 while it is being costed).
  const spreadCost = new Map<string, number>();

  const childrenCost = (selections: readonly SelectionNode[]) => selections.reduce((sum, child) => sum + DEPTH_COST_FACTOR * cost(child), 0);
  // A variable's value as execution will see it: sent, or else its declared default.
  const variableValue = (name: string): unknown => {
    if (variables[name] !== undefined) return variables[name];
    const fallback = operation!.variableDefinitions?.find((v) => v.variable.name.value === name)?.defaultValue;
    return fallback?.kind === Kind.INT ? Number.parseInt(fallback.value, 10) : undefined;
  };
  const listSize = (field: FieldNode): number => {
    const arg = field.arguments?.find((a) => a.name.value === 'first' || a.name.value === 'last');
    const value =
      arg?.value.kind === Kind.INT ? Number.parseInt(arg.value.value, 10) : arg?.value.kind === Kind.VARIABLE ? variableValue(arg.value.name.value) : null;
    if (typeof value === 'number' && Number.isFinite(value)) return Math.max(value, 1);
    // Not given, null, or not a number (then execution refuses it anyway).
    return Object.hasOwn(defaultPages, field.name.value) ? defaultPages[field.name.value]! : 1;
  };
  function cost(node: SelectionNode | FragmentDefinitionNode): number {
    if (node.kind === Kind.FIELD) {
      if (node.name.value === '__schema') return 0;
      if (!node.selectionSet) return SCALAR_COST;
      return (OBJECT_COST + childrenCost(node.selectionSet.selections)) * listSize(node);
    }
    if (node.kind === Kind.INLINE_FRAGMENT || node.kind === Kind.FRAGMENT_DEFINITION) return OBJECT_COST + childrenCost(node.selectionSet.selections);
    const name = node.name.value;
    const known = spreadCost.get(name);
    if (known !== undefined) return SCALAR_COST + DEPTH_COST_FACTOR * known;
    spreadCost.set(name, -1);
    const fragment = fragments.get(name);
    const fragmentCost = fragment ? cost(fragment) : 0;
    spreadCost.set(name, fragmentCost);
    return SCALAR_COST + DEPTH_COST_FACTOR * fragmentCost;
  }
  return operation.selectionSet.selections.reduce((sum, child) => sum + cost(child), 0);
}
