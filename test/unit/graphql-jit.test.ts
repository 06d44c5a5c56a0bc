// Compiled analytics queries (src/graphql/jit.ts) in a real yoga server: which operations are
// compiled (counted at graphql-jit's compileQuery), that a document with several operations
// runs the one the request names, and that the answers and a bad variable's error are
// graphql's own.
import { GraphQLInt, GraphQLList, GraphQLObjectType, GraphQLScalarType, GraphQLSchema, GraphQLString } from 'graphql';
import { createYoga } from 'graphql-yoga';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { compiledQueries } from '../../src/graphql/jit.js';
import { ANALYTICS_QUERY_FIELDS } from '../../src/graphql/schema/analytics.js';
import { buildSchema } from '../../src/graphql/schema/index.js';

const compileCalls = vi.hoisted(() => ({ count: 0 }));
vi.mock('graphql-jit', async (importOriginal) => {
  const jit = await importOriginal<typeof import('graphql-jit')>();
  return {
    ...jit,
    compileQuery: (...args: Parameters<typeof jit.compileQuery>) => {
      compileCalls.count++;
      return jit.compileQuery(...args);
    },
  };
});

// A custom scalar keeps its serializer when compiled (built-in scalars and enums skip theirs).
const Day = new GraphQLScalarType({ name: 'Day', serialize: (d) => (d as Date).toISOString().slice(0, 10) });
const Row = new GraphQLObjectType({
  name: 'Row',
  fields: {
    n: { type: GraphQLInt },
    label: { type: GraphQLString, resolve: (r: { n: number }) => `row ${r.n}` },
    day: { type: Day, resolve: (r: { n: number }) => new Date(Date.UTC(2026, 11, 1 + r.n)) },
  },
});
const rowsArgs = { count: { type: GraphQLInt } };
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      rows: { type: new GraphQLList(Row), args: rowsArgs, resolve: (_r, a: { count?: number }) => Array.from({ length: a.count ?? 3 }, (_, n) => ({ n })) },
      other: { type: GraphQLString, resolve: () => 'other' },
    },
  }),
  mutation: new GraphQLObjectType({ name: 'Mutation', fields: { rows: { type: GraphQLInt, resolve: () => 1 } } }),
});

function server() {
  return createYoga<{ token?: string }>({
    schema,
    maskedErrors: false,
    context: ({ request }) => ({ token: request.headers.get('authorization') ?? undefined }),
    plugins: [compiledQueries({ fields: new Set(['rows']), mayCompile: (ctx) => (ctx as { token?: string }).token !== undefined })],
  });
}

async function post(yoga: ReturnType<typeof server>, body: object, token: string | null = 'Bearer t') {
  const res = await yoga.fetch('http://test/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: token } : {}) },
    body: JSON.stringify(body),
  });
  return (await res.json()) as { data?: Record<string, unknown>; errors?: Array<{ message: string }> };
}

afterEach(() => {
  compileCalls.count = 0;
});

describe('compiled analytics queries', () => {
  it('compiles a query on its listed fields once, and answers as graphql does', async () => {
    const yoga = server();
    const query = 'query($c: Int) { rows(count: $c) { n label day } }';
    const first = await post(yoga, { query, variables: { c: 2 } });
    const second = await post(yoga, { query, variables: { c: 3 } });
    expect(first).toEqual({
      data: {
        rows: [
          { n: 0, label: 'row 0', day: '2026-12-01' },
          { n: 1, label: 'row 1', day: '2026-12-02' },
        ],
      },
    });
    expect(second.data?.rows).toHaveLength(3);
    expect(compileCalls.count).toBe(1);
  });

  it('runs the operation the request names, in a document with several', async () => {
    const yoga = server();
    const query = 'query A { rows(count: 1) { n } } query B { rows(count: 2) { label } }';
    const b = await post(yoga, { query, operationName: 'B' });
    const a = await post(yoga, { query, operationName: 'A' });
    const b2 = await post(yoga, { query, operationName: 'B' });
    expect(a).toEqual({ data: { rows: [{ n: 0 }] } });
    expect(b).toEqual({ data: { rows: [{ label: 'row 0' }, { label: 'row 1' }] } });
    expect(b2).toEqual(b);
    expect(compileCalls.count).toBe(2);
  });

  it('leaves other fields, mutations and callers without a token to yoga’s executor', async () => {
    const yoga = server();
    expect(await post(yoga, { query: '{ rows { n } other }' })).toEqual({ data: { rows: [{ n: 0 }, { n: 1 }, { n: 2 }], other: 'other' } });
    expect(await post(yoga, { query: 'mutation { rows }' })).toEqual({ data: { rows: 1 } });
    expect(await post(yoga, { query: '{ rows { n } }' }, null)).toEqual({ data: { rows: [{ n: 0 }, { n: 1 }, { n: 2 }] } });
    expect(compileCalls.count).toBe(0);
  });

  it('gives a bad variable graphql’s own error', async () => {
    const yoga = server();
    const res = await post(yoga, { query: 'query($c: Int) { rows(count: $c) { n } }', variables: { c: 'many' } });
    expect(res.data).toBeUndefined();
    expect(res.errors?.map((e) => e.message)).toEqual(['Variable "$c" got invalid value "many"; Int cannot represent non-integer value: "many"']);
  });

  it('names only root query fields of the real schema', () => {
    const fields = buildSchema().getQueryType()!.getFields();
    for (const name of ANALYTICS_QUERY_FIELDS) expect(fields[name], name).toBeDefined();
  });
});
