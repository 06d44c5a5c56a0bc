// Analytics queries run compiled (graphql-jit): each operation is turned once into a function
// that resolves and completes its own selection set, instead of walking the document for every
// field of every row. An analytics answer is thousands of small objects (timeSeries: 2,100
// rows of eight fields in bench:analytics), where the walk, not the resolvers, was most of
// the GraphQL time.
//
// Subscriptions run compiled too: each live event is one execution of the subscription's
// selection set, once per fan-out group (src/live/fanout.ts). Under bench:subscriptions (~1,000
// decisions/s, two executions each) graphql-tools' executor took ~34 µs an execution, most of
// it walking the document and coercing the root field's literal arguments again per event.
//
// Only for a caller with a valid token; queries only when their root fields are all in
// `fields` (the analytics ones, which resolve plain rows), subscriptions always (live events):
// - compiling a new document costs about a millisecond, which an anonymous client must not be
//   able to make us pay over and over;
// - @pothos/plugin-prisma plans its SQL from graphql's resolve info, and under graphql-jit it
//   loads nested relations with more statements (the N+1 test in graphql-admin.test.ts);
// - mutations are small, and keep yoga's own executor.
// Variables are checked by graphql's own coercion first, so a bad one gets graphql's error,
// and graphql-jit's errors (its own class, with a read-only message) are turned into graphql's
// before yoga's masking, which may rewrite a message, sees them.
//
// Built-in scalars and enums are not serialized again (graphql-jit's disableLeafSerialization):
// the analytics rows already hold what those types carry (finite numbers, strings, enum names
// as values), and the ~15,000 serializer calls of a 2,100-row timeSeries were ~0.3 ms of its
// ~4 ms over direct SQL. Custom scalars (DateTime) keep their serializers. The difference:
// a count past 2^31 in an Int field is answered as the number, where graphql would fail it.
// Subscriptions keep every serializer: live events carry enums by internal value ('closed' for
// BreakerState CLOSED).
//
// Not @envelop/graphql-jit: it caches the compiled form by document alone, so a document
// holding several operations would run whichever was compiled first, whatever operationName
// the request names.
import {
  createSourceEventStream,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  GraphQLError,
  getOperationAST,
  getVariableValues,
  type OperationDefinitionNode,
  type Source,
  type SourceLocation,
} from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';
import type { Plugin } from 'graphql-yoga';
import { isAsyncIterable, mapAsyncIterator } from 'graphql-yoga';

export interface CompiledQueriesOptions {
  /** Root query fields whose operations may run compiled (every subscription may). */
  fields: ReadonlySet<string>;
  /** Whether this caller's operations may be compiled (a valid token). */
  mayCompile: (contextValue: unknown) => boolean;
}

/** Offset in `body` of a line and column (both from 1), counting line breaks as graphql does. */
function positionOf(body: string, { line, column }: SourceLocation): number {
  const lineBreak = /\r\n|[\n\r]/g;
  let lineStart = 0;
  for (let l = 1; l < line; l++) {
    const found = lineBreak.exec(body);
    if (!found) break;
    lineStart = found.index + found[0].length;
  }
  return lineStart + column - 1;
}

/**
 * graphql's own error for one of graphql-jit's (same message, path, locations, cause and
 * extensions). graphql-jit gives locations, not the nodes graphql derives them from; yoga
 * rebuilds every error it sends from nodes or source positions, so the locations are given
 * back as positions in the document's source.
 */
function asGraphQLError(error: GraphQLError, source: Source | undefined): GraphQLError {
  const positions = source && error.locations?.map((location) => positionOf(source.body, location));
  return new GraphQLError(error.message, { source, positions, path: error.path, originalError: error.originalError, extensions: error.extensions });
}

function withGraphQLErrors(result: ExecutionResult, source: Source | undefined): ExecutionResult {
  return result.errors ? { ...result, errors: result.errors.map((e) => asGraphQLError(e, source)) } : result;
}

/** Runs a compiled operation on `root`; its errors come back as graphql's. */
function runCompiled(query: CompiledQuery, root: unknown, run: ExecutionArgs): ExecutionResult | Promise<ExecutionResult> {
  // graphql-jit coerces the raw variables again: it takes them as the request sent them.
  const result = query.query(root, run.contextValue, run.variableValues);
  const source = run.document.loc?.source;
  return result instanceof Promise ? result.then((r) => withGraphQLErrors(r, source)) : withGraphQLErrors(result, source);
}

const onlyFieldsIn = (operation: OperationDefinitionNode, fields: ReadonlySet<string>) =>
  operation.selectionSet.selections.every((s) => s.kind === 'Field' && (fields.has(s.name.value) || s.name.value === '__typename'));

export function compiledQueries({ fields, mayCompile }: CompiledQueriesOptions): Plugin {
  // yoga's parser cache hands out one DocumentNode per query text, so this holds what that
  // cache holds. null: graphql-jit could not compile it (yoga's executor runs it).
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery | null>>();

  function compiledFor(args: ExecutionArgs, operation: OperationDefinitionNode): CompiledQuery | null {
    let byOperation = compiled.get(args.document);
    if (!byOperation) {
      byOperation = new Map();
      compiled.set(args.document, byOperation);
    }
    const name = args.operationName ?? '';
    let query = byOperation.get(name);
    if (query === undefined) {
      const result = compileQuery(args.schema, args.document, args.operationName ?? undefined, { disableLeafSerialization: operation.operation === 'query' });
      query = isCompiledQuery(result) ? result : null;
      byOperation.set(name, query);
    }
    return query;
  }

  return {
    onExecute({ args, setExecuteFn }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'query' || !onlyFieldsIn(operation, fields) || !mayCompile(args.contextValue)) return;
      const query = compiledFor(args, operation);
      if (!query) return;
      setExecuteFn((run: ExecutionArgs): ExecutionResult | Promise<ExecutionResult> => {
        const variables = getVariableValues(run.schema, operation.variableDefinitions ?? [], run.variableValues ?? {});
        if (variables.errors) return { errors: variables.errors };
        return runCompiled(query, run.rootValue, run);
      });
    },
    onSubscribe({ args, setSubscribeFn }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'subscription' || !mayCompile(args.contextValue)) return;
      const query = compiledFor(args, operation);
      if (!query) return;
      setSubscribeFn(async (run: ExecutionArgs) => {
        // The event stream as graphql opens it: the root field's arguments coerced once and its
        // subscribe resolver called (graphql-jit's own subscribe would pass that resolver the
        // operation's variables as its arguments). Then each event runs compiled.
        const stream = await createSourceEventStream(run);
        return isAsyncIterable(stream) ? mapAsyncIterator(stream, (event) => runCompiled(query, event, run)) : stream;
      });
    },
  };
}
