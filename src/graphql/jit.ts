// Analytics queries run compiled (graphql-jit): each operation is turned once into a function
// that resolves and completes its own selection set, instead of walking the document for every
// field of every row. An analytics answer is thousands of small objects (timeSeries: 2,100
// rows of eight fields in bench:analytics), where the walk, not the resolvers, was most of
// the GraphQL time.
//
// Only for a caller with a valid token, and only for queries whose root fields are all in
// `fields` (the analytics ones, which resolve plain rows):
// - compiling a new document costs about a millisecond, which an anonymous client must not be
//   able to make us pay over and over;
// - @pothos/plugin-prisma plans its SQL from graphql's resolve info, and under graphql-jit it
//   loads nested relations with more statements (the N+1 test in graphql-admin.test.ts);
// - mutations and subscriptions are small, and keep yoga's own executor.
// Variables are checked by graphql's own coercion first, so a bad one gets graphql's error,
// and graphql-jit's errors (its own class, with a read-only message) are turned into graphql's
// before yoga's masking, which may rewrite a message, sees them.
//
// Built-in scalars and enums are not serialized again (graphql-jit's disableLeafSerialization):
// the analytics rows already hold what those types carry (finite numbers, strings, enum names
// as values), and the ~15,000 serializer calls of a 2,100-row timeSeries were ~0.3 ms of its
// ~4 ms over direct SQL. Custom scalars (DateTime) keep their serializers. The difference:
// a count past 2^31 in an Int field is answered as the number, where graphql would fail it.
//
// Not @envelop/graphql-jit: it caches the compiled form by document alone, so a document
// holding several operations would run whichever was compiled first, whatever operationName
// the request names.
import {
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  GraphQLError,
  getOperationAST,
  getVariableValues,
  type OperationDefinitionNode,
} from 'graphql';
import { type CompiledQuery, compileQuery, isCompiledQuery } from 'graphql-jit';
import type { Plugin } from 'graphql-yoga';

export interface CompiledQueriesOptions {
  /** Root query fields whose operations may run compiled. */
  fields: ReadonlySet<string>;
  /** Whether this caller's operations may be compiled (a valid token). */
  mayCompile: (contextValue: unknown) => boolean;
}

/** graphql's own error for one of graphql-jit's (same message, path, locations, cause and extensions). */
function asGraphQLError(error: GraphQLError): GraphQLError {
  const copy = new GraphQLError(error.message, { path: error.path, originalError: error.originalError, extensions: error.extensions });
  // graphql-jit gives locations, not the nodes graphql derives them from.
  return Object.assign(copy, { locations: error.locations });
}

function withGraphQLErrors(result: ExecutionResult): ExecutionResult {
  return result.errors ? { ...result, errors: result.errors.map(asGraphQLError) } : result;
}

const onlyFieldsIn = (operation: OperationDefinitionNode, fields: ReadonlySet<string>) =>
  operation.selectionSet.selections.every((s) => s.kind === 'Field' && (fields.has(s.name.value) || s.name.value === '__typename'));

export function compiledQueries({ fields, mayCompile }: CompiledQueriesOptions): Plugin {
  // yoga's parser cache hands out one DocumentNode per query text, so this holds what that
  // cache holds. null: graphql-jit could not compile it (yoga's executor runs it).
  const compiled = new WeakMap<DocumentNode, Map<string, CompiledQuery | null>>();

  function compiledFor(args: ExecutionArgs): CompiledQuery | null {
    let byOperation = compiled.get(args.document);
    if (!byOperation) {
      byOperation = new Map();
      compiled.set(args.document, byOperation);
    }
    const name = args.operationName ?? '';
    let query = byOperation.get(name);
    if (query === undefined) {
      const result = compileQuery(args.schema, args.document, args.operationName ?? undefined, { disableLeafSerialization: true });
      query = isCompiledQuery(result) ? result : null;
      byOperation.set(name, query);
    }
    return query;
  }

  return {
    onExecute({ args, setExecuteFn }) {
      const operation = getOperationAST(args.document, args.operationName);
      if (operation?.operation !== 'query' || !onlyFieldsIn(operation, fields) || !mayCompile(args.contextValue)) return;
      const query = compiledFor(args);
      if (!query) return;
      setExecuteFn((run: ExecutionArgs): ExecutionResult | Promise<ExecutionResult> => {
        const variables = getVariableValues(run.schema, operation.variableDefinitions ?? [], run.variableValues ?? {});
        if (variables.errors) return { errors: variables.errors };
        // graphql-jit coerces the raw values again: it takes them as the request sent them.
        const result = query.query(run.rootValue, run.contextValue, run.variableValues);
        return result instanceof Promise ? result.then(withGraphQLErrors) : withGraphQLErrors(result);
      });
    },
  };
}
