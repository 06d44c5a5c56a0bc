// Compiled analytics queries and subscriptions (src/graphql/jit.ts) in a real yoga server:
// which operations are compiled (counted at graphql-jit's compileQuery), that a document with
// several operations runs the one the request names, and that the answers, the events and a
// bad variable's error are graphql's own.
import { GraphQLEnumType, GraphQLInt, GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLScalarType, GraphQLSchema, GraphQLString } from 'graphql';
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

// Live events: an enum whose values are not its names (as BreakerState's), a custom scalar,
// a field that fails for one event, and a stream that records that it was ended.
const Level = new GraphQLEnumType({ name: 'Level', values: { LOW: { value: 'low' }, HIGH: { value: 'high' } } });
const Tick = new GraphQLObjectType({
  name: 'Tick',
  fields: {
    n: { type: GraphQLInt },
    level: { type: Level, resolve: (t: { n: number }) => (t.n % 2 === 0 ? 'low' : 'high') },
    day: { type: Day, resolve: (t: { n: number }) => new Date(Date.UTC(2026, 11, 1 + t.n)) },
    checked: {
      type: GraphQLString,
      resolve: (t: { n: number }) => {
        if (t.n === 3) throw new Error('three is not allowed');
        return 'ok';
      },
    },
  },
});
const ticksEnded = { count: 0 };
const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      rows: { type: new GraphQLList(Row), args: rowsArgs, resolve: (_r, a: { count?: number }) => Array.from({ length: a.count ?? 3 }, (_, n) => ({ n })) },
      other: { type: GraphQLString, resolve: () => 'other' },
    },
  }),
  mutation: new GraphQLObjectType({ name: 'Mutation', fields: { rows: { type: GraphQLInt, resolve: () => 1 } } }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      ticks: {
        type: Tick,
        args: { from: { type: new GraphQLNonNull(GraphQLInt) }, to: { type: GraphQLInt } },
        subscribe: async function* (_root, a: { from: number; to?: number }) {
          try {
            for (let n = a.from; n <= (a.to ?? Number.POSITIVE_INFINITY); n++) yield { n };
          } finally {
            ticksEnded.count++;
          }
        },
        resolve: (event: { n: number }) => event,
      },
    },
  }),
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

/** A subscription over SSE (GraphQL over HTTP): the first `take` events' payloads, then the stream is dropped. */
async function subscribe(yoga: ReturnType<typeof server>, query: string, take: number, token: string | null = 'Bearer t') {
  const res = await yoga.fetch('http://test/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(token ? { authorization: token } : {}) },
    body: JSON.stringify({ query }),
  });
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: unknown[] = [];
  let text = '';
  while (events.length < take) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
      const data = text
        .slice(0, end)
        .split('\n')
        .find((l) => l.startsWith('data: '));
      text = text.slice(end + 2);
      if (data && data !== 'data: ') events.push(JSON.parse(data.slice(6)));
    }
  }
  await reader.cancel();
  return events.slice(0, take);
}

afterEach(() => {
  compileCalls.count = 0;
  ticksEnded.count = 0;
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

  it('runs subscription events compiled, with the root field’s own arguments, enums by name and graphql’s errors', async () => {
    const yoga = server();
    const query = 'subscription { ticks(from: 2, to: 9) { n level day checked } }';
    const events = await subscribe(yoga, query, 3);
    expect(events).toEqual([
      { data: { ticks: { n: 2, level: 'LOW', day: '2026-12-03', checked: 'ok' } } },
      {
        data: { ticks: { n: 3, level: 'HIGH', day: '2026-12-04', checked: null } },
        errors: [{ message: 'three is not allowed', locations: [{ line: 1, column: 52 }], path: ['ticks', 'checked'] }],
      },
      { data: { ticks: { n: 4, level: 'LOW', day: '2026-12-05', checked: 'ok' } } },
    ]);
    expect(compileCalls.count).toBe(1);
    // Dropping the stream ends the source's generator.
    await vi.waitFor(() => expect(ticksEnded.count).toBe(1));
    // Uncompiled, for a caller without a token: the same events.
    expect(await subscribe(yoga, query, 3, null)).toEqual(events);
    expect(compileCalls.count).toBe(1);
  });

  it('names only root query fields of the real schema', () => {
    const fields = buildSchema().getQueryType()!.getFields();
    for (const name of ANALYTICS_QUERY_FIELDS) expect(fields[name], name).toBeDefined();
  });
});
