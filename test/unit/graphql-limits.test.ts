// GraphQL hardening, on the real schema without stores: depth, aliases, cost, batch size,
// introspection in production, persisted-operations mode, GET queries.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { TokenVerifier } from '../../src/gateway/tokens.js';
import type { GraphQLServices } from '../../src/graphql/context.js';
import { createGraphQL, type GraphQLOptions } from '../../src/graphql/yoga.js';
import { LiveBus } from '../../src/live/events.js';
import { CidrList } from '../../src/net/ip.js';
import { AdminStore } from '../../src/store/admin-store.js';

const ADMIN = 'admin-token-for-tests';

function server(options: Partial<GraphQLOptions> = {}) {
  const services = {
    bus: new LiveBus(),
    tokens: new TokenVerifier(
      ADMIN,
      { findAccessTokenBySecretHash: async () => null, teamIdByName: async () => null },
      { cacheMs: 0, trustedProxies: CidrList.parse([]), onError: () => undefined },
    ),
    // Never reached by these operations; each request's context names its actor on it.
    admin: new AdminStore(undefined as never, undefined as never),
    jwks: () => ({ keys: [] }),
    findReceipt: async () => null,
    configChanged: async () => undefined,
    receiptsTable: 'receipts',
    analyticsTimeoutMs: 1000,
  } as unknown as GraphQLServices;
  return createGraphQL(services, { production: false, ...options });
}

async function post(g: ReturnType<typeof server>, body: unknown, token: string | null = ADMIN) {
  const res = await g.yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const nested = (depth: number) => {
  let q = 'name';
  for (let i = 0; i < depth; i++) q = i % 2 === 0 ? `apiKeys { ${q} }` : `team { ${q} }`;
  return `{ teams { ${q} } }`;
};

describe('GraphQL limits', () => {
  it('answers viewer for the admin token and UNAUTHENTICATED without one', async () => {
    const g = server();
    const ok = await post(g, { query: '{ viewer { kind role teamId } }' });
    expect(ok.body.data.viewer).toEqual({ kind: 'admin', role: 'ADMIN', teamId: null });
    const anon = await post(g, { query: '{ viewer { kind } }' }, null);
    expect(anon.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const wrong = await post(g, { query: '{ viewer { kind } }' }, 'tg-not-a-graphql-token');
    expect(wrong.body.errors[0].extensions.code).toBe('UNAUTHENTICATED');
  });

  it('refuses queries deeper than the limit before executing them', async () => {
    const g = server();
    const deep = await post(g, { query: nested(14) });
    expect(deep.body.errors?.[0]?.message).toMatch(/depth/i);
    expect(deep.body.data ?? null).toBeNull();
  });

  it('refuses too many aliases', async () => {
    const g = server();
    const fields = Array.from({ length: 20 }, (_, i) => `a${i}: viewer { kind }`).join(' ');
    const res = await post(g, { query: `{ ${fields} }` });
    expect(res.body.errors?.[0]?.message).toMatch(/alias/i);
  });

  it('bounds batch size', async () => {
    const g = server();
    const batch = Array.from({ length: 11 }, () => ({ query: '{ viewer { kind } }' }));
    const res = await post(g, batch);
    expect(res.status).toBeGreaterThanOrEqual(400);
    const small = await post(g, batch.slice(0, 3));
    expect(Array.isArray(small.body)).toBe(true);
    expect(small.body).toHaveLength(3);
  });

  it('serves GET queries and disables introspection in production', async () => {
    const dev = server();
    const get = await dev.yoga.fetch(`http://localhost/graphql?query=${encodeURIComponent('{ viewer { kind } }')}`, {
      headers: { authorization: `Bearer ${ADMIN}`, accept: 'application/json' },
    });
    expect(((await get.json()) as any).data.viewer.kind).toBe('admin');
    const intro = '{ __schema { queryType { name } } }';
    expect((await post(dev, { query: intro })).body.data.__schema.queryType.name).toBe('Query');
    const prod = server({ production: true });
    const res = await post(prod, { query: intro });
    expect(res.body.errors?.length).toBeGreaterThan(0);
    expect(res.body.data ?? null).toBeNull();
  });

  it('runs only registered operations in persisted-operations mode', async () => {
    const query = '{ viewer { kind } }';
    const hash = createHash('sha256').update(query).digest('hex');
    const g = server({ persistedOperations: { [hash]: query } });
    const known = await post(g, { extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });
    expect(known.body.data.viewer.kind).toBe('admin');
    const arbitrary = await post(g, { query });
    expect(arbitrary.body.errors?.length).toBeGreaterThan(0);
    const unknown = await post(g, { extensions: { persistedQuery: { version: 1, sha256Hash: 'f'.repeat(64) } } });
    expect(unknown.body.errors?.length).toBeGreaterThan(0);
  });
});
