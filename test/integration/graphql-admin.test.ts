// GraphQL admin API (DESIGN §8, issue 3 §3 "Admin"): teams, API keys, access tokens,
// providers, routes, prices and budgets, end to end against a real gateway.
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { type GraphQLResult, gql as rawGql } from '../support/graphql.js';

let gw: TestGateway;
let url: string;
let admin: string;
let analyst: string;
let teamAdmin: string; // ADMIN bound to team A
let gatewayKey: string; // a gateway API key (tg-…): not a GraphQL token
let teamA: { id: string; name: string };
let teamB: { id: string; name: string };
let keyB: { id: string; secret: string };

/** Every response body seen, to check that no secret or hash ever comes back. */
const responses: string[] = [];
const secretsThatMustNotAppear: string[] = [];

async function gql<T = any>(token: string | null, query: string, variables: Record<string, unknown> = {}): Promise<GraphQLResult<T>> {
  const r = await rawGql<T>(url, token, query, variables);
  responses.push(JSON.stringify(r));
  return r;
}

async function ok<T = any>(token: string, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const r = await gql<T>(token, query, variables);
  if (r.errors?.length || !r.data) throw new Error(`GraphQL error: ${JSON.stringify(r.errors)}`);
  return r.data;
}

function codeOf(r: GraphQLResult): unknown {
  return r.errors?.[0]?.extensions?.code;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

let seq = 0;
const unique = (p: string) => `${p}-${Date.now().toString(36)}-${++seq}`;

function chat(secret: string, model = 'chat-default') {
  return fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 }),
  });
}

beforeAll(async () => {
  gw = await startTestGateway();
  // SQL-counting tests capture every statement on the pool: the catalog's background poll
  // (which reads providers) must not land inside a capture window. Mutations still refresh
  // the catalog themselves (configChanged), so the proxy stays current.
  gw.started.runtime.app.catalog.stopPolling();
  url = gw.url;
  admin = gw.adminToken;
  const store = gw.started.runtime.adminStore;
  teamA = await store.teams.createTeam(unique('team-a'));
  teamB = await store.teams.createTeam(unique('team-b'));
  analyst = (await store.teams.createAccessToken({ name: 'analyst', role: 'ANALYST' })).secret;
  teamAdmin = (await store.teams.createAccessToken({ name: 'team-a-admin', role: 'ADMIN', teamId: teamA.id })).secret;
  const k = await gw.createKey(teamA.name);
  gatewayKey = k.secret;
  const kb = await store.teams.createApiKey({ teamId: teamB.id, name: 'b-key' });
  keyB = { id: kb.apiKey.id, secret: kb.secret };
  secretsThatMustNotAppear.push(sha256(gatewayKey), sha256(keyB.secret), sha256(teamAdmin), sha256(analyst));
  await gw.started.runtime.app.catalog.refresh();
});

afterAll(async () => {
  await gw?.close();
});

const API_KEY_FIELDS = 'id name teamId displayPrefix rpmLimit tpmLimit allowedRoutes expiresAt revokedAt createdAt lastUsedAt team { id name }';

describe('teams', () => {
  it('createTeam creates; team(id) and teams read it; duplicates and bad names are refused', async () => {
    const name = unique('gql-team');
    const { createTeam } = await ok(admin, 'mutation($n: String!) { createTeam(input: { name: $n }) { id name createdAt apiKeys { id } } }', { n: name });
    expect(createTeam).toMatchObject({ name, apiKeys: [] });
    expect(new Date(createTeam.createdAt).getTime()).toBeGreaterThan(0);

    const { team } = await ok(admin, 'query($id: ID!) { team(id: $id) { id name } }', { id: createTeam.id });
    expect(team).toEqual({ id: createTeam.id, name });
    const { teams } = await ok(admin, '{ teams { id name } }');
    expect(teams.map((t: { name: string }) => t.name)).toContain(name);

    const dup = await gql(admin, 'mutation($n: String!) { createTeam(input: { name: $n }) { id } }', { n: name });
    expect(codeOf(dup)).toBe('CONFLICT');
    const bad = await gql(admin, 'mutation { createTeam(input: { name: "  " }) { id } }');
    expect(codeOf(bad)).toBe('BAD_USER_INPUT');

    // Unknown and malformed ids read as not found.
    expect((await ok(admin, '{ team(id: "00000000-0000-4000-8000-000000000000") { id } }')).team).toBeNull();
    expect((await ok(admin, '{ team(id: "not-a-uuid") { id } }')).team).toBeNull();
  });
});

describe('API keys', () => {
  it('createApiKey returns the secret once; the key works at once and is refused within 1 s of revokeApiKey', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const { createApiKey } = await ok(admin, `mutation($in: CreateApiKeyInput!) { createApiKey(input: $in) { secret apiKey { ${API_KEY_FIELDS} } } }`, {
      in: { teamId: teamA.id, name: 'ci', rpmLimit: 600, tpmLimit: 100000, expiresAt, allowedRoutes: ['chat-default'] },
    });
    const { secret, apiKey } = createApiKey;
    secretsThatMustNotAppear.push(sha256(secret));
    expect(secret).toMatch(/^tg-/);
    expect(secret.startsWith(apiKey.displayPrefix)).toBe(true);
    expect(apiKey).toMatchObject({
      name: 'ci',
      teamId: teamA.id,
      team: { id: teamA.id, name: teamA.name },
      rpmLimit: 600,
      tpmLimit: 100000,
      allowedRoutes: ['chat-default'],
      expiresAt,
      revokedAt: null,
      lastUsedAt: null,
    });

    // Usable by the proxy immediately.
    const first = await chat(secret);
    expect(first.status).toBe(200);
    await first.text();

    // Shown once: a later read has the key but no secret field at all.
    const { apiKeys } = await ok(admin, `query($t: ID) { apiKeys(teamId: $t) { ${API_KEY_FIELDS} } }`, { t: teamA.id });
    const listed = apiKeys.find((k: { id: string }) => k.id === apiKey.id);
    expect(listed).toBeDefined();
    // Its use is on record (to the minute), for admins looking for keys nobody uses.
    await expect
      .poll(
        async () =>
          (await ok(admin, `query($t: ID) { apiKeys(teamId: $t) { id lastUsedAt } }`, { t: teamA.id })).apiKeys.find((k: { id: string }) => k.id === apiKey.id)
            .lastUsedAt,
      )
      .not.toBeNull();
    expect(JSON.stringify(apiKeys)).not.toContain(secret);
    const noSecretField = await gql(admin, '{ apiKeys { id secret } }');
    expect(noSecretField.errors?.[0]?.message).toMatch(/Cannot query field "secret"/);
    const noHashField = await gql(admin, '{ apiKeys { id secretHash } }');
    expect(noHashField.errors?.[0]?.message).toMatch(/Cannot query field "secretHash"/);

    // Revoke: refused by the proxy within 1 s.
    const { revokeApiKey } = await ok(admin, 'mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }', { id: apiKey.id });
    expect(revokeApiKey.id).toBe(apiKey.id);
    expect(revokeApiKey.revokedAt).not.toBeNull();
    const revokedAt = Date.now();
    let status = 0;
    while (Date.now() - revokedAt < 1000) {
      const res = await chat(secret);
      status = res.status;
      await res.text();
      if (status === 401) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe(401);

    // Revoking again keeps the first time; an unknown key is NOT_FOUND.
    const again = await ok(admin, 'mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }', { id: apiKey.id });
    expect(again.revokeApiKey.revokedAt).toBe(revokeApiKey.revokedAt);
    const missing = await gql(admin, 'mutation { revokeApiKey(id: "00000000-0000-4000-8000-000000000000") { id } }');
    expect(codeOf(missing)).toBe('NOT_FOUND');
  });

  it('validation errors carry BAD_USER_INPUT; an unknown team is NOT_FOUND', async () => {
    const q = 'mutation($in: CreateApiKeyInput!) { createApiKey(input: $in) { secret } }';
    expect(codeOf(await gql(admin, q, { in: { teamId: teamA.id, name: '' } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { teamId: teamA.id, name: 'x', rpmLimit: -1 } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { teamId: teamA.id, name: 'x', allowedRoutes: ['a/b'] } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { teamId: 'nope', name: 'x' } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { teamId: '00000000-0000-4000-8000-000000000000', name: 'x' } }))).toBe('NOT_FOUND');
    expect(codeOf(await gql(admin, '{ apiKeys(teamId: "nope") { id } }'))).toBe('BAD_USER_INPUT');
  });
});

describe('access tokens', () => {
  it('a token may not mint one that outlives it or works from elsewhere', async () => {
    const q = 'mutation($in: CreateAccessTokenInput!) { createAccessToken(input: $in) { secret token { id expiresAt allowedCidrs } } }';
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const parent = (await ok(admin, q, { in: { name: 'limited-admin', role: 'ADMIN', expiresAt, allowedCidrs: ['127.0.0.0/8'] } })).createAccessToken;
    secretsThatMustNotAppear.push(sha256(parent.secret));
    const sooner = new Date(Date.now() + 3_600_000).toISOString();
    const refused = async (input: Record<string, unknown>, field: string) => {
      const r = await gql(parent.secret, q, { in: { name: 'child', role: 'ADMIN', ...input } });
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.errors?.[0]?.extensions?.field).toBe(field);
    };
    await refused({ allowedCidrs: ['127.0.0.1'] }, 'input.expiresAt'); // never expires
    await refused({ expiresAt: new Date(Date.now() + 2 * 86_400_000).toISOString(), allowedCidrs: ['127.0.0.1'] }, 'input.expiresAt');
    await refused({ expiresAt: sooner }, 'input.allowedCidrs'); // usable anywhere
    await refused({ expiresAt: sooner, allowedCidrs: ['10.0.0.0/8'] }, 'input.allowedCidrs');
    await refused({ expiresAt: sooner, allowedCidrs: ['0.0.0.0/0'] }, 'input.allowedCidrs');
    const child = (await ok(parent.secret, q, { in: { name: 'child', role: 'ANALYST', expiresAt: sooner, allowedCidrs: ['127.0.0.1', '127.1.0.0/16'] } }))
      .createAccessToken;
    secretsThatMustNotAppear.push(sha256(child.secret));
    expect(child.token.allowedCidrs).toEqual(['127.0.0.1/32', '127.1.0.0/16']);
  });

  it("a token revoked or expired on another instance (still in this one's auth cache) mints nothing", async () => {
    const mint = 'mutation($in: CreateAccessTokenInput!) { createAccessToken(input: $in) { secret } }';
    const key = 'mutation($in: CreateApiKeyInput!) { createApiKey(input: $in) { secret } }';
    const prisma = gw.started.runtime.configDb.prisma;
    for (const end of [{ revokedAt: new Date() }, { expiresAt: new Date(Date.now() - 1000) }]) {
      const { createAccessToken: parent } = await ok(admin, 'mutation { createAccessToken(input: { name: "leaky", role: ADMIN }) { secret token { id } } }');
      secretsThatMustNotAppear.push(sha256(parent.secret));
      expect((await ok(parent.secret, '{ viewer { tokenId } }')).viewer.tokenId).toBe(parent.token.id); // cached as valid
      // Another instance revokes it (or its expiry is moved into the past): this one's cache has not heard.
      await prisma.accessToken.update({ where: { id: parent.token.id }, data: end });
      const child = await gql(parent.secret, mint, { in: { name: 'forever', role: 'ADMIN' } });
      expect(codeOf(child)).toBe('FORBIDDEN');
      const apiKey = await gql(parent.secret, key, { in: { teamId: teamA.id, name: 'forever' } });
      expect(codeOf(apiKey)).toBe('FORBIDDEN');
      // The CLI's REST way to a key, too.
      const rest = await fetch(`${gw.url}/admin/v1/keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${parent.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ team: 'team-forever', name: 'forever' }),
      });
      expect(rest.status).toBe(401);
    }
    expect(await prisma.accessToken.count({ where: { name: 'forever' } })).toBe(0);
    expect(await prisma.apiKey.count({ where: { name: 'forever' } })).toBe(0);
  });

  it('createAccessToken returns a working token once; a team-bound admin only for its own team', async () => {
    const q =
      'mutation($in: CreateAccessTokenInput!) { createAccessToken(input: $in) { secret token { id name role teamId revokedAt createdAt team { id } } } }';
    const { createAccessToken } = await ok(admin, q, { in: { name: 'dash', role: 'ANALYST' } });
    secretsThatMustNotAppear.push(sha256(createAccessToken.secret));
    expect(createAccessToken.token).toMatchObject({ name: 'dash', role: 'ANALYST', teamId: null, revokedAt: null, team: null });
    const { viewer } = await ok(createAccessToken.secret, '{ viewer { role teamId tokenId } }');
    expect(viewer).toEqual({ role: 'ANALYST', teamId: null, tokenId: createAccessToken.token.id });

    const own = await ok(teamAdmin, q, { in: { name: 'a-analyst', role: 'ANALYST', teamId: teamA.id } });
    secretsThatMustNotAppear.push(sha256(own.createAccessToken.secret));
    expect(own.createAccessToken.token).toMatchObject({ role: 'ANALYST', teamId: teamA.id, team: { id: teamA.id } });
    const bound = await ok(own.createAccessToken.secret, '{ viewer { teamId } teams { id } }');
    expect(bound.viewer.teamId).toBe(teamA.id);
    expect(bound.teams).toEqual([{ id: teamA.id }]);

    expect(codeOf(await gql(teamAdmin, q, { in: { name: 'x', role: 'ADMIN', teamId: teamB.id } }))).toBe('NOT_FOUND');
    expect(codeOf(await gql(teamAdmin, q, { in: { name: 'x', role: 'ADMIN' } }))).toBe('FORBIDDEN');
    expect(codeOf(await gql(admin, q, { in: { name: '', role: 'ADMIN' } }))).toBe('BAD_USER_INPUT');
  });
});

describe('access token lifecycle', () => {
  const create =
    'mutation($in: CreateAccessTokenInput!) { createAccessToken(input: $in) { secret token { id name teamId allowedCidrs expiresAt revokedAt } } }';
  const revoke = 'mutation($id: ID!) { revokeAccessToken(id: $id) { id revokedAt } }';
  const viewer = '{ viewer { tokenId actor actorName } }';

  it("accessTokens lists tokens without secrets: all for a global admin, its own team's for a team-bound one", async () => {
    const global = (await ok(admin, create, { in: { name: 'list-global', role: 'ANALYST' } })).createAccessToken;
    const inA = (await ok(admin, create, { in: { name: 'list-a', role: 'ANALYST', teamId: teamA.id } })).createAccessToken;
    const inB = (await ok(admin, create, { in: { name: 'list-b', role: 'ANALYST', teamId: teamB.id } })).createAccessToken;
    secretsThatMustNotAppear.push(sha256(global.secret), sha256(inA.secret), sha256(inB.secret));
    const q = '{ accessTokens { id name role teamId allowedCidrs expiresAt revokedAt createdAt team { id } } }';
    const all = (await ok(admin, q)).accessTokens.map((t: { id: string }) => t.id);
    expect(all).toEqual(expect.arrayContaining([global.token.id, inA.token.id, inB.token.id]));
    const mine = (await ok(teamAdmin, q)).accessTokens;
    expect(mine.map((t: { id: string }) => t.id)).toContain(inA.token.id);
    expect(mine.every((t: { teamId: string }) => t.teamId === teamA.id)).toBe(true);
    // The type has no field that could carry a secret.
    expect(codeOf(await gql(admin, '{ accessTokens { secret } }'))).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(codeOf(await gql(admin, '{ accessTokens { secretHash } }'))).toBe('GRAPHQL_VALIDATION_FAILED');
  });

  it('revokeAccessToken: the token is refused at once here, and within the auth cache window when revoked elsewhere', async () => {
    const t = (await ok(admin, create, { in: { name: 'to-revoke', role: 'ANALYST' } })).createAccessToken;
    expect((await ok(t.secret, viewer)).viewer).toEqual({ tokenId: t.token.id, actor: `token:${t.token.id}`, actorName: 'to-revoke' });
    const r = await ok(admin, revoke, { id: t.token.id });
    expect(r.revokeAccessToken.revokedAt).toEqual(expect.any(String));
    expect(codeOf(await gql(t.secret, viewer))).toBe('UNAUTHENTICATED');
    // Idempotent: a second revoke keeps the first time.
    expect((await ok(admin, revoke, { id: t.token.id })).revokeAccessToken.revokedAt).toBe(r.revokeAccessToken.revokedAt);

    // Revoked by another instance (straight in the store: nothing here is told): refused once the cached answer ages out.
    const u = (await ok(admin, create, { in: { name: 'revoked-elsewhere', role: 'ANALYST' } })).createAccessToken;
    await ok(u.secret, viewer);
    const revokedAt = Date.now();
    await gw.started.runtime.adminStore.teams.revokeAccessToken(u.token.id);
    let refusedAfter = -1;
    while (Date.now() - revokedAt < 5_000) {
      if (codeOf(await gql(u.secret, viewer)) === 'UNAUTHENTICATED') {
        refusedAfter = Date.now() - revokedAt;
        break;
      }
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(refusedAfter).toBeGreaterThanOrEqual(0);
    expect(refusedAfter).toBeLessThanOrEqual(gw.config.authCacheMs + 500);
  });

  it("a team-bound admin revokes its own team's tokens only; others read as not found", async () => {
    const inB = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'b-token', role: 'ANALYST', teamId: teamB.id });
    const global = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'g-token', role: 'ANALYST' });
    expect(codeOf(await gql(teamAdmin, revoke, { id: inB.token.id }))).toBe('NOT_FOUND');
    expect(codeOf(await gql(teamAdmin, revoke, { id: global.token.id }))).toBe('NOT_FOUND');
    expect(codeOf(await gql(admin, revoke, { id: '00000000-0000-4000-8000-000000000000' }))).toBe('NOT_FOUND');
    expect(codeOf(await gql(admin, revoke, { id: 'not-a-uuid' }))).toBe('NOT_FOUND');
    expect((await ok(inB.secret, viewer)).viewer.tokenId).toBe(inB.token.id);
    const inA = (await ok(teamAdmin, create, { in: { name: 'a-token', role: 'ANALYST', teamId: teamA.id } })).createAccessToken;
    await ok(teamAdmin, revoke, { id: inA.token.id });
    expect(codeOf(await gql(inA.secret, viewer))).toBe('UNAUTHENTICATED');
  });

  it('expiresAt: an expired token is refused exactly like an unknown one', async () => {
    const expiresAt = new Date(Date.now() + 1_500).toISOString();
    const t = (await ok(admin, create, { in: { name: 'short-lived', role: 'ANALYST', expiresAt } })).createAccessToken;
    expect(t.token.expiresAt).toBe(expiresAt);
    expect((await ok(t.secret, viewer)).viewer.tokenId).toBe(t.token.id);
    await new Promise((res) => setTimeout(res, 1_600));
    const expired = await gql(t.secret, viewer);
    const unknown = await gql(`tga-${'Q'.repeat(40)}`, viewer);
    expect(codeOf(expired)).toBe('UNAUTHENTICATED');
    expect({ status: expired.status, errors: expired.errors }).toEqual({ status: unknown.status, errors: unknown.errors });
    // Through the REST receipt endpoint too.
    const rest = (secret: string) => fetch(`${gw.url}/v1/receipts/00000000-0000-4000-8000-000000000000`, { headers: { authorization: `Bearer ${secret}` } });
    const [a, b] = await Promise.all([rest(t.secret), rest(`tga-${'Q'.repeat(40)}`)]);
    expect([a.status, await a.text()]).toEqual([b.status, await b.text()]);
  });

  it('allowedCidrs are validated and returned normalized, on keys and on tokens', async () => {
    const t = (await ok(admin, create, { in: { name: 'cidr', role: 'ANALYST', allowedCidrs: ['10.9.8.7/8', '2001:DB8::/32', '127.0.0.1'] } }))
      .createAccessToken;
    expect(t.token.allowedCidrs).toEqual(['10.0.0.0/8', '2001:db8::/32', '127.0.0.1/32']);
    const bad = await gql(admin, create, { in: { name: 'cidr', role: 'ANALYST', allowedCidrs: ['10.0.0.0/40'] } });
    expect(codeOf(bad)).toBe('BAD_USER_INPUT');
    expect(bad.errors?.[0]?.message).toMatch(/allowedCidrs/);
    const key = 'mutation($in: CreateApiKeyInput!) { createApiKey(input: $in) { apiKey { allowedCidrs } } }';
    expect((await ok(admin, key, { in: { teamId: teamA.id, name: 'cidr', allowedCidrs: ['::1'] } })).createApiKey.apiKey.allowedCidrs).toEqual(['::1/128']);
    expect(codeOf(await gql(admin, key, { in: { teamId: teamA.id, name: 'cidr', allowedCidrs: ['localhost'] } }))).toBe('BAD_USER_INPUT');
  });
});

describe('audit log', () => {
  const log = `query($f: AuditFilter, $first: Int, $after: String) { auditLog(filter: $f, first: $first, after: $after) {
    edges { cursor node { at actor actorName action target teamId before after } } pageInfo { hasNextPage endCursor } } }`;

  it('records who changed what, before and after, newest first, without secrets', async () => {
    const providerSecret = `sk-audit-${Math.random().toString(36).slice(2)}`;
    secretsThatMustNotAppear.push(providerSecret);
    const since = new Date().toISOString();
    await ok(admin, 'mutation($in: ProviderInput!) { upsertProvider(input: $in) { id } }', {
      in: { name: 'audited', kind: 'OPENAI_COMPATIBLE', baseUrl: 'https://u:audit-url-pass@llm.example.com/v1', apiKey: providerSecret },
    });
    const created = (
      await ok(teamAdmin, 'mutation($t: ID!) { createApiKey(input: { teamId: $t, name: "audited" }) { secret apiKey { id } } }', { t: teamA.id })
    ).createApiKey;
    secretsThatMustNotAppear.push(sha256(created.secret));
    const { viewer } = await ok(teamAdmin, '{ viewer { actor actorName } }');

    const entries = (await ok(admin, log, { f: { from: since } })).auditLog.edges.map((e: { node: unknown }) => e.node);
    expect(entries.map((e: { action: string }) => e.action)).toEqual(['createApiKey', 'upsertProvider']);
    const [key, provider] = entries;
    expect(key).toMatchObject({ actor: viewer.actor, actorName: 'team-a-admin', target: `api_key:${created.apiKey.id}`, teamId: teamA.id, before: null });
    expect(key.after).toMatchObject({ id: created.apiKey.id, name: 'audited', teamId: teamA.id });
    expect(provider).toMatchObject({ actor: 'admin', actorName: null, target: 'provider:audited', teamId: null, before: null });
    expect(provider.after).toMatchObject({ name: 'audited', hasApiKey: true, apiKeyChanged: true, baseUrl: 'https://u:***@llm.example.com/v1' });
    const text = JSON.stringify(entries);
    for (const secret of [providerSecret, created.secret, sha256(created.secret), 'audit-url-pass']) expect(text).not.toContain(secret);

    // Filters: actors and actions.
    const byActor = (await ok(admin, log, { f: { from: since, actors: [viewer.actor] } })).auditLog.edges;
    expect(byActor.map((e: { node: { action: string } }) => e.node.action)).toEqual(['createApiKey']);
    const byAction = (await ok(admin, log, { f: { from: since, actions: ['upsertProvider'] } })).auditLog.edges;
    expect(byAction.map((e: { node: { target: string } }) => e.node.target)).toEqual(['provider:audited']);
    expect(
      (await ok(admin, log, { f: { to: since, actions: ['upsertProvider'] } })).auditLog.edges.some(
        (e: { node: { target: string } }) => e.node.target === 'provider:audited',
      ),
    ).toBe(false);
  });

  it('a team-bound admin sees the entries about its team only', async () => {
    await ok(admin, 'mutation($t: ID!) { createApiKey(input: { teamId: $t, name: "b-audited" }) { apiKey { id } } }', { t: teamB.id });
    const all = (await ok(admin, log, { first: 500 })).auditLog.edges.map((e: { node: { teamId: string | null } }) => e.node.teamId);
    expect(all).toContain(teamB.id);
    expect(all).toContain(null);
    const mine = (await ok(teamAdmin, log, { first: 500 })).auditLog.edges.map((e: { node: { teamId: string | null } }) => e.node.teamId);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((t: string | null) => t === teamA.id)).toBe(true);
  });

  it('pages with first/after and refuses a bad cursor or page size', async () => {
    const first = (await ok(admin, log, { first: 3 })).auditLog;
    expect(first.edges).toHaveLength(3);
    const { auditLog: counted } = await ok(admin, '{ auditLog(first: 0) { totalCount edges { cursor } } }');
    expect(counted.edges).toEqual([]);
    // An empty page keeps its place: following its endCursor does not start over from the top.
    const empty = (await ok(admin, log, { first: 0, after: first.pageInfo.endCursor })).auditLog;
    expect(empty.pageInfo).toEqual({ hasNextPage: true, endCursor: first.pageInfo.endCursor });
    expect(codeOf(await gql(admin, log, { f: { actors: Array.from({ length: 101 }, (_, i) => `actor-${i}`) } }))).toBe('BAD_USER_INPUT');
    expect(counted.totalCount).toBe(await gw.started.runtime.configDb.prisma.auditEntry.count());
    expect(first.pageInfo).toEqual({ hasNextPage: true, endCursor: first.edges[2].cursor });
    const second = (await ok(admin, log, { first: 3, after: first.pageInfo.endCursor })).auditLog;
    const both = (await ok(admin, log, { first: 6 })).auditLog.edges.map((e: { cursor: string }) => e.cursor);
    expect([...first.edges, ...second.edges].map((e: { cursor: string }) => e.cursor)).toEqual(both);
    expect(both).toHaveLength(6);
    // Each refusal names the argument it is about (there is no `input` here).
    const refused = async (variables: Record<string, unknown>, field: string) => {
      const r = await gql(admin, log, variables);
      expect(r.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    };
    await refused({ first: 501 }, 'first');
    await refused({ after: 'garbage' }, 'after');
    await refused({ f: { actors: Array.from({ length: 101 }, (_, i) => `actor-${i}`) } }, 'filter.actors');
    await refused({ f: { actions: ['setBudget\u0000'] } }, 'filter.actions'); // was an internal error from PostgreSQL
  });
});

describe('providers and routes', () => {
  const upsertProvider = 'mutation($in: ProviderInput!) { upsertProvider(input: $in) { id name kind baseUrl timeoutMs hasApiKey } }';

  it('provider secrets are write-only; upsert replaces by name', async () => {
    const rawSecret = `sk-graphql-upstream-${Math.random().toString(36).slice(2)}`;
    secretsThatMustNotAppear.push(rawSecret);
    const created = await ok(admin, upsertProvider, {
      in: { name: 'gql-prov', kind: 'OPENAI_COMPATIBLE', baseUrl: 'https://example.invalid/v1', apiKey: rawSecret, timeoutMs: 5000 },
    });
    expect(created.upsertProvider).toMatchObject({
      name: 'gql-prov',
      kind: 'OPENAI_COMPATIBLE',
      baseUrl: 'https://example.invalid/v1',
      timeoutMs: 5000,
      hasApiKey: true,
    });

    const { providers } = await ok(admin, '{ providers { id name kind baseUrl timeoutMs hasApiKey } }');
    expect(providers.find((p: { name: string }) => p.name === 'gql-prov')).toMatchObject({ hasApiKey: true });
    expect(providers.find((p: { name: string }) => p.name === 'sim')).toMatchObject({ kind: 'SIMULATED', hasApiKey: true });
    expect(codeOf(await gql(admin, '{ providers { apiKey } }'))).toBe('GRAPHQL_VALIDATION_FAILED');

    // Same name replaces; an omitted apiKey keeps the stored one, but only where it already went:
    // pointing the provider at another URL or kind takes the key again (else an admin could send
    // the stored key to a server of their own and read it there).
    const moved = await gql(admin, upsertProvider, { in: { name: 'gql-prov', kind: 'DEEPSEEK', baseUrl: 'https://attacker.invalid' } });
    expect(codeOf(moved)).toBe('BAD_USER_INPUT');
    expect(JSON.stringify(moved)).toContain('apiKey: required when baseUrl or kind changes');
    expect(codeOf(await gql(admin, upsertProvider, { in: { name: 'gql-prov', kind: 'OPENAI_COMPATIBLE', baseUrl: null } }))).toBe('BAD_USER_INPUT');
    const retimed = await ok(admin, upsertProvider, { in: { name: 'gql-prov', kind: 'OPENAI_COMPATIBLE', timeoutMs: 6000 } });
    expect(retimed.upsertProvider).toMatchObject({ baseUrl: 'https://example.invalid/v1', timeoutMs: 6000, hasApiKey: true });
    const replaced = await ok(admin, upsertProvider, { in: { name: 'gql-prov', kind: 'DEEPSEEK', baseUrl: 'https://other.invalid', apiKey: rawSecret } });
    expect(replaced.upsertProvider).toMatchObject({
      id: created.upsertProvider.id,
      kind: 'DEEPSEEK',
      baseUrl: 'https://other.invalid',
      timeoutMs: 6000,
      hasApiKey: true,
    });
    const after = (await ok(admin, '{ providers { name } }')).providers.filter((p: { name: string }) => p.name === 'gql-prov');
    expect(after).toHaveLength(1);
    // An explicit null removes it.
    const cleared = await ok(admin, upsertProvider, { in: { name: 'gql-prov', kind: 'DEEPSEEK', apiKey: null } });
    expect(cleared.upsertProvider.hasApiKey).toBe(false);

    expect(codeOf(await gql(admin, upsertProvider, { in: { name: 'bad', kind: 'OPENAI', baseUrl: 'ftp://x' } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, upsertProvider, { in: { name: 'a/b', kind: 'OPENAI' } }))).toBe('BAD_USER_INPUT');
  });

  it('credentials inside a provider base URL are never returned', async () => {
    secretsThatMustNotAppear.push('url-password-1', 'url-query-key-2');
    const r = await ok(admin, upsertProvider, {
      in: { name: 'url-creds', kind: 'OPENAI_COMPATIBLE', baseUrl: 'https://svc:url-password-1@llm.example.com/v1?key=url-query-key-2&api-version=1' },
    });
    expect(r.upsertProvider.baseUrl).toBe('https://svc:***@llm.example.com/v1?key=***&api-version=1');
    const { providers } = await ok(analyst, '{ providers { name baseUrl } }');
    expect(providers.find((p: { name: string }) => p.name === 'url-creds').baseUrl).toBe('https://svc:***@llm.example.com/v1?key=***&api-version=1');
  });

  it('upsertRoute creates and replaces a route; the proxy uses it at once', async () => {
    const q = `mutation($in: RouteInput!) { upsertRoute(input: $in) {
      id name strategy retries timeoutMs cache { mode ttlSeconds similarityThreshold } targets { provider model weight priority } } }`;
    const created = await ok(admin, q, { in: { name: 'gql-route', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'sim-large' }] } });
    expect(created.upsertRoute).toMatchObject({
      name: 'gql-route',
      strategy: 'PRIORITY',
      retries: 1,
      timeoutMs: null,
      cache: { mode: 'OFF', ttlSeconds: null, similarityThreshold: null },
      targets: [{ provider: 'sim', model: 'sim-large', weight: 1, priority: 0 }],
    });
    const key = await gw.createKey(teamA.name);
    const res = await chat(key.secret, 'gql-route');
    expect(res.status).toBe(200);
    await res.text();

    const replaced = await ok(admin, q, {
      in: {
        name: 'gql-route',
        strategy: 'WEIGHTED',
        retries: 2,
        timeoutMs: 9000,
        cache: { mode: 'EXACT', ttlSeconds: 60 },
        targets: [
          { provider: 'sim', model: 'sim-large', weight: 3 },
          { provider: 'sim-b', model: 'backup', weight: 1, priority: 2 },
        ],
      },
    });
    expect(replaced.upsertRoute).toMatchObject({
      id: created.upsertRoute.id,
      strategy: 'WEIGHTED',
      retries: 2,
      timeoutMs: 9000,
      cache: { mode: 'EXACT', ttlSeconds: 60, similarityThreshold: null },
      targets: [
        { provider: 'sim', model: 'sim-large', weight: 3, priority: 0 },
        { provider: 'sim-b', model: 'backup', weight: 1, priority: 2 },
      ],
    });
    const { routes } = await ok(admin, '{ routes { name strategy targets { provider } } }');
    const mine = routes.filter((r: { name: string }) => r.name === 'gql-route');
    expect(mine).toEqual([{ name: 'gql-route', strategy: 'WEIGHTED', targets: [{ provider: 'sim' }, { provider: 'sim-b' }] }]);
    expect(routes.map((r: { name: string }) => r.name)).toContain('chat-default');

    expect(codeOf(await gql(admin, q, { in: { name: 'empty', strategy: 'PRIORITY', targets: [] } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { name: 'r', strategy: 'PRIORITY', retries: 99, targets: [{ provider: 'sim', model: 'm' }] } }))).toBe(
      'BAD_USER_INPUT',
    );
    expect(
      codeOf(
        await gql(admin, q, {
          in: { name: 'r', strategy: 'PRIORITY', cache: { mode: 'SEMANTIC', similarityThreshold: 2 }, targets: [{ provider: 'sim', model: 'm' }] },
        }),
      ),
    ).toBe('BAD_USER_INPUT');
  });
});

describe('prices and budgets', () => {
  it('setPrice records a new version that replaces the current one', async () => {
    const q = `mutation($in: PriceInput!) { setPrice(input: $in) {
      version provider model inputPerMTokUsd outputPerMTokUsd cachedInputPerMTokUsd currency source effectiveFrom createdAt } }`;
    const before = (await ok(admin, '{ prices { version provider model inputPerMTokUsd } }')).prices.find(
      (p: { provider: string; model: string }) => p.provider === 'sim' && p.model === 'sim-large',
    );
    expect(before.inputPerMTokUsd).toBe(0.15);
    const { setPrice } = await ok(admin, q, {
      in: { provider: 'sim', model: 'sim-large', inputPerMTokUsd: 0.2, outputPerMTokUsd: 0.8, cachedInputPerMTokUsd: 0.05 },
    });
    expect(setPrice).toMatchObject({
      provider: 'sim',
      model: 'sim-large',
      inputPerMTokUsd: 0.2,
      outputPerMTokUsd: 0.8,
      cachedInputPerMTokUsd: 0.05,
      currency: 'USD',
    });
    expect(setPrice.version).toBeGreaterThan(before.version);
    const current = (await ok(admin, '{ prices { version provider model } }')).prices.filter(
      (p: { provider: string; model: string }) => p.provider === 'sim' && p.model === 'sim-large',
    );
    expect(current).toEqual([{ version: setPrice.version, provider: 'sim', model: 'sim-large' }]);

    // A version scheduled for later is not in effect until its time: not in `prices`, not billed.
    const catalog = gw.started.runtime.app.catalog;
    const inputNow = async () => {
      await catalog.refresh();
      const listed = (await ok(admin, '{ prices { provider model inputPerMTokUsd } }')).prices.find(
        (p: { provider: string; model: string }) => p.provider === 'sim' && p.model === 'sim-large',
      );
      expect(catalog.catalog.price('sim', 'sim-large')?.inputPerMTokUsd).toBe(listed.inputPerMTokUsd);
      return listed.inputPerMTokUsd as number;
    };
    const soon = new Date(Date.now() + 1500);
    await ok(admin, q, { in: { provider: 'sim', model: 'sim-large', inputPerMTokUsd: 50, outputPerMTokUsd: 50, effectiveFrom: soon.toISOString() } });
    expect(await inputNow()).toBe(0.2);
    // Dated back, a version is in effect from its date to the next one's: history, not the price now.
    await ok(admin, q, { in: { provider: 'sim', model: 'sim-large', inputPerMTokUsd: 7, outputPerMTokUsd: 7, effectiveFrom: '2001-01-01T00:00:00Z' } });
    expect(await inputNow()).toBe(0.2);
    // Its time come, the catalog loads it although nothing else changed (same catalog version).
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, soon.getTime() - Date.now()) + 50));
    expect(await inputNow()).toBe(50);
    await ok(admin, q, { in: { provider: 'sim', model: 'sim-large', inputPerMTokUsd: 0.2, outputPerMTokUsd: 0.8, cachedInputPerMTokUsd: 0.05 } });
    expect(await inputNow()).toBe(0.2);

    expect(codeOf(await gql(admin, q, { in: { provider: 'sim', model: 'x', inputPerMTokUsd: -1, outputPerMTokUsd: 1 } }))).toBe('BAD_USER_INPUT');
    // Past what the stored Decimal(18, 9) holds: the field is named, not an internal error.
    const huge = await gql(admin, q, { in: { provider: 'sim', model: 'x', inputPerMTokUsd: 1e9, outputPerMTokUsd: 1 } });
    expect(codeOf(huge)).toBe('BAD_USER_INPUT');
    expect(huge.errors?.[0]?.extensions?.field).toBe('input.inputPerMTokUsd');
    expect(codeOf(await gql(admin, q, { in: { provider: 'sim', model: 'x', inputPerMTokUsd: 1, outputPerMTokUsd: 1, currency: 'CNY' } }))).toBe(
      'BAD_USER_INPUT',
    );
  });

  it('a budget webhook URL stays write-only: the audit log keeps only its origin', async () => {
    const hook = 'https://hooks.slack.com/services/T0001/B0002/XXXXsecretYYYY';
    secretsThatMustNotAppear.push('XXXXsecretYYYY');
    const q = 'mutation($in: BudgetInput!) { setBudget(input: $in) { id } }';
    await ok(admin, q, { in: { scope: 'FEATURE', feature: 'webhooked', period: 'DAY', limitUsd: 1, action: 'ALERT', webhookUrl: hook } });
    const log = await ok(admin, '{ auditLog(filter: { actions: ["setBudget"] }) { edges { node { before after } } } }');
    const text = JSON.stringify(log);
    expect(text).toContain('https://hooks.slack.com');
    expect(text).not.toContain('XXXXsecret');
  });

  it('a NUL in a URL, a price source or a rule is a clear input error, not an internal one', async () => {
    const budget = await gql(admin, 'mutation($in: BudgetInput!) { setBudget(input: $in) { id } }', {
      in: { scope: 'FEATURE', feature: 'nul', period: 'DAY', limitUsd: 1, action: 'ALERT', webhookUrl: 'https://hooks.example.com/a\u0000b' },
    });
    expect(budget.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.webhookUrl' });
    const price = await gql(admin, 'mutation($in: PriceInput!) { setPrice(input: $in) { version } }', {
      in: { provider: 'sim', model: 'nul', inputPerMTokUsd: 1, outputPerMTokUsd: 1, source: 'list\u0000price' },
    });
    expect(price.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.source' });
    const route = await gql(admin, 'mutation($in: RouteInput!) { upsertRoute(input: $in) { name } }', {
      in: {
        name: 'nul-rule',
        strategy: 'PRIORITY',
        targets: [{ provider: 'sim', model: 'sim-large' }],
        rules: [{ name: 'r', when: "feature == 'a\u0000'", route: 'chat-default' }],
      },
    });
    expect(route.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'input.rules.0.when' });
  });

  it('setBudget upserts by scope+target+period; team-bound tokens see their own budgets only', async () => {
    const q = 'mutation($in: BudgetInput!) { setBudget(input: $in) { id scope teamId apiKeyId feature period limitUsd action createdAt team { id } } }';
    const first = await ok(admin, q, { in: { scope: 'TEAM', teamId: teamA.id, period: 'MONTH', limitUsd: 100, action: 'ALERT' } });
    expect(first.setBudget).toMatchObject({
      scope: 'TEAM',
      teamId: teamA.id,
      apiKeyId: null,
      feature: null,
      period: 'MONTH',
      limitUsd: 100,
      action: 'ALERT',
      team: { id: teamA.id },
    });
    const second = await ok(admin, q, { in: { scope: 'TEAM', teamId: teamA.id, period: 'MONTH', limitUsd: 250.5, action: 'BLOCK' } });
    expect(second.setBudget).toMatchObject({ id: first.setBudget.id, limitUsd: 250.5, action: 'BLOCK' });

    const keyBudget = await ok(admin, q, { in: { scope: 'API_KEY', apiKeyId: keyB.id, period: 'DAY', limitUsd: 5, action: 'BLOCK' } });
    expect(keyBudget.setBudget).toMatchObject({ scope: 'API_KEY', apiKeyId: keyB.id, teamId: teamB.id });
    for (const limitUsd of [1e9, 5e11]) {
      const tooLarge = await gql(admin, q, { in: { scope: 'TEAM', teamId: teamA.id, period: 'DAY', limitUsd, action: 'ALERT' } });
      expect(codeOf(tooLarge)).toBe('BAD_USER_INPUT');
      expect(tooLarge.errors?.[0]?.extensions?.field).toBe('input.limitUsd');
    }
    const feature = await ok(admin, q, { in: { scope: 'FEATURE', feature: 'summarize', period: 'TOTAL', limitUsd: 1000, action: 'ALERT' } });
    expect(feature.setBudget).toMatchObject({ scope: 'FEATURE', feature: 'summarize', teamId: null, team: null });

    const all = (await ok(admin, '{ budgets { id } }')).budgets.map((b: { id: string }) => b.id);
    expect(all).toEqual(expect.arrayContaining([first.setBudget.id, keyBudget.setBudget.id, feature.setBudget.id]));
    expect(all.filter((id: string) => id === first.setBudget.id)).toHaveLength(1);
    const mine = (await ok(teamAdmin, '{ budgets { id teamId } }')).budgets;
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((b: { teamId: string }) => b.teamId === teamA.id)).toBe(true);

    expect(codeOf(await gql(admin, q, { in: { scope: 'TEAM', period: 'DAY', limitUsd: 1, action: 'BLOCK' } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { scope: 'TEAM', teamId: teamA.id, period: 'DAY', limitUsd: 0, action: 'BLOCK' } }))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(admin, q, { in: { scope: 'FEATURE', period: 'DAY', limitUsd: 1, action: 'BLOCK' } }))).toBe('BAD_USER_INPUT');
  });

  it("a budget a global admin set on a team: the team's own admin may tighten it, not loosen it", async () => {
    const q = 'mutation($in: BudgetInput!) { setBudget(input: $in) { id limitUsd action failOpen imposed } }';
    // A feature within team A (other tests here hold team A's own TEAM budgets).
    const imposed = { scope: 'FEATURE', teamId: teamA.id, feature: 'imposed-check', period: 'DAY', limitUsd: 100, action: 'BLOCK', failOpen: false };
    const set = (await ok(admin, q, { in: imposed })).setBudget;
    expect(set).toMatchObject({ limitUsd: 100, action: 'BLOCK', failOpen: false, imposed: true });
    for (const looser of [{ limitUsd: 999_999 }, { action: 'ALERT' }, { failOpen: true }]) {
      const refused = await gql(teamAdmin, q, { in: { ...imposed, ...looser } });
      expect(codeOf(refused), JSON.stringify(looser)).toBe('FORBIDDEN');
      expect(refused.errors?.[0]?.message).toMatch(/set by a global admin/);
    }
    const budgetRow = () => gw.started.runtime.configDb.prisma.budget.findUniqueOrThrow({ where: { id: set.id } });
    expect(Number((await budgetRow()).limitUsd)).toBe(100);
    // Tighter is allowed, and the budget stays imposed (it cannot then be loosened back).
    expect((await ok(teamAdmin, q, { in: { ...imposed, limitUsd: 40 } })).setBudget).toMatchObject({ id: set.id, limitUsd: 40, imposed: true });
    expect(codeOf(await gql(teamAdmin, q, { in: { ...imposed, limitUsd: 100 } }))).toBe('FORBIDDEN');
    // The platform's alert channel: kept when a tighter call leaves it out, never replaced.
    await ok(admin, q, { in: { ...imposed, limitUsd: 40, webhookUrl: 'https://platform.example/alerts' } });
    await ok(teamAdmin, q, { in: { ...imposed, limitUsd: 30 } });
    expect((await budgetRow()).webhookUrl).toBe('https://platform.example/alerts');
    expect(codeOf(await gql(teamAdmin, q, { in: { ...imposed, limitUsd: 30, webhookUrl: 'https://team.example/mute' } }))).toBe('FORBIDDEN');
    expect((await budgetRow()).webhookUrl).toBe('https://platform.example/alerts');
    // A budget the team's admin created itself is its own to change either way.
    const own = { ...imposed, period: 'TOTAL', limitUsd: 10, action: 'ALERT' };
    expect((await ok(teamAdmin, q, { in: own })).setBudget).toMatchObject({ imposed: false });
    expect((await ok(teamAdmin, q, { in: { ...own, limitUsd: 20, failOpen: true } })).setBudget).toMatchObject({
      limitUsd: 20,
      failOpen: true,
      imposed: false,
    });
    // The global admin's word makes it imposed.
    expect((await ok(admin, q, { in: { ...own, limitUsd: 20 } })).setBudget).toMatchObject({ imposed: true });
    expect(Number((await budgetRow()).limitUsd)).toBe(30);
  });

  it('deleteBudget removes a budget (a period changed is a new budget and the old one deleted); a team admin, only its own', async () => {
    const set = 'mutation($in: BudgetInput!) { setBudget(input: $in) { id } }';
    const del = 'mutation($id: ID!) { deleteBudget(id: $id) }';
    const daily = { scope: 'FEATURE', teamId: teamA.id, feature: 'delete-check', period: 'DAY', limitUsd: 5, action: 'BLOCK' };
    const imposed = (await ok(admin, set, { in: daily })).setBudget.id;
    const own = (await ok(teamAdmin, set, { in: { ...daily, period: 'MONTH' } })).setBudget.id;
    const other = (await ok(admin, set, { in: { ...daily, teamId: teamB.id } })).setBudget.id;
    // Imposed on the team: FORBIDDEN to its admin; another team's: none.
    expect(codeOf(await gql(teamAdmin, del, { id: imposed }))).toBe('FORBIDDEN');
    expect((await ok(teamAdmin, del, { id: other })).deleteBudget).toBe(false);
    expect((await ok(teamAdmin, del, { id: own })).deleteBudget).toBe(true);
    expect((await ok(teamAdmin, del, { id: own })).deleteBudget).toBe(false);
    expect((await ok(admin, del, { id: imposed })).deleteBudget).toBe(true);
    expect((await ok(admin, del, { id: 'not-a-uuid' })).deleteBudget).toBe(false);
    const left = (await ok(admin, '{ budgets { id } }')).budgets.map((b: { id: string }) => b.id);
    expect(left).toContain(other);
    expect(left).not.toContain(imposed);
    expect(left).not.toContain(own);
    const log = await ok(admin, '{ auditLog(filter: { actions: ["deleteBudget"] }) { edges { node { target before after } } } }');
    // The two deletions, and nothing for the three calls that deleted nothing.
    expect(log.auditLog.edges.map((e: any) => [e.node.target, e.node.after])).toEqual([
      [`budget:${imposed}`, null],
      [`budget:${own}`, null],
    ]);
    const version = await gw.started.runtime.adminStore.catalogVersion();
    expect((await ok(admin, del, { id: own })).deleteBudget).toBe(false);
    expect(await gw.started.runtime.adminStore.catalogVersion()).toBe(version); // no reload anywhere for nothing
  });
});

describe('auth matrix', () => {
  type Who = 'none' | 'garbage' | 'apiKey' | 'analyst' | 'teamAdmin' | 'admin';
  const WHO: Who[] = ['none', 'garbage', 'apiKey', 'analyst', 'teamAdmin', 'admin'];
  const tokenOf = (w: Who): string | null => ({ none: null, garbage: 'garbage-token', apiKey: gatewayKey, analyst, teamAdmin, admin })[w];

  // Each case builds fresh variables (mutations must not collide between callers).
  interface Case {
    field: string;
    query: string;
    vars: () => Promise<Record<string, unknown>> | Record<string, unknown>;
    /** Allowed callers; everyone else gets UNAUTHENTICATED (no valid token) or FORBIDDEN. */
    allowed: Who[];
  }
  const readers: Who[] = ['analyst', 'teamAdmin', 'admin'];
  const admins: Who[] = ['teamAdmin', 'admin'];
  const globalOnly: Who[] = ['admin'];
  const cases: Case[] = [
    { field: 'teams', query: '{ teams { id } }', vars: () => ({}), allowed: readers },
    { field: 'team', query: 'query($id: ID!) { team(id: $id) { id } }', vars: () => ({ id: teamA.id }), allowed: readers },
    { field: 'apiKeys', query: '{ apiKeys { id } }', vars: () => ({}), allowed: readers },
    { field: 'providers', query: '{ providers { name } }', vars: () => ({}), allowed: readers },
    { field: 'routes', query: '{ routes { name } }', vars: () => ({}), allowed: readers },
    { field: 'prices', query: '{ prices { version } }', vars: () => ({}), allowed: readers },
    { field: 'budgets', query: '{ budgets { id } }', vars: () => ({}), allowed: readers },
    { field: 'accessTokens', query: '{ accessTokens { id } }', vars: () => ({}), allowed: admins },
    { field: 'auditLog', query: '{ auditLog(first: 1) { edges { cursor } } }', vars: () => ({}), allowed: admins },
    {
      field: 'revokeAccessToken',
      query: 'mutation($id: ID!) { revokeAccessToken(id: $id) { id } }',
      vars: async () => ({
        id: (await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'to-revoke', role: 'ANALYST', teamId: teamA.id })).token.id,
      }),
      allowed: admins,
    },
    {
      field: 'createTeam',
      query: 'mutation($n: String!) { createTeam(input: { name: $n }) { id } }',
      vars: () => ({ n: unique('m-team') }),
      allowed: globalOnly,
    },
    {
      field: 'createApiKey',
      query: 'mutation($t: ID!) { createApiKey(input: { teamId: $t, name: "m" }) { secret } }',
      vars: () => ({ t: teamA.id }),
      allowed: admins,
    },
    {
      field: 'revokeApiKey',
      query: 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }',
      vars: async () => ({ id: (await gw.started.runtime.adminStore.teams.createApiKey({ teamId: teamA.id, name: 'to-revoke' })).apiKey.id }),
      allowed: admins,
    },
    {
      field: 'createAccessToken',
      query: 'mutation($t: ID) { createAccessToken(input: { name: "m", role: ANALYST, teamId: $t }) { secret } }',
      vars: () => ({ t: teamA.id }),
      allowed: admins,
    },
    {
      field: 'upsertProvider',
      query: 'mutation($n: String!) { upsertProvider(input: { name: $n, kind: SIMULATED, baseUrl: "http://127.0.0.1:9/v1" }) { id } }',
      vars: () => ({ n: unique('m-prov') }),
      allowed: globalOnly,
    },
    {
      field: 'upsertRoute',
      query: 'mutation($n: String!) { upsertRoute(input: { name: $n, strategy: PRIORITY, targets: [{ provider: "sim", model: "sim-large" }] }) { id } }',
      vars: () => ({ n: unique('m-route') }),
      allowed: globalOnly,
    },
    {
      field: 'setPrice',
      query: 'mutation($m: String!) { setPrice(input: { provider: "sim", model: $m, inputPerMTokUsd: 1, outputPerMTokUsd: 2 }) { version } }',
      vars: () => ({ m: unique('m-model') }),
      allowed: globalOnly,
    },
    {
      field: 'setBudget',
      query: 'mutation($t: ID) { setBudget(input: { scope: TEAM, teamId: $t, period: DAY, limitUsd: 3, action: ALERT }) { id } }',
      vars: () => ({ t: teamA.id }),
      allowed: admins,
    },
    {
      field: 'deleteBudget',
      query: 'mutation($id: ID!) { deleteBudget(id: $id) }',
      vars: () => ({ id: randomUUID() }),
      allowed: admins,
    },
  ];

  for (const c of cases) {
    it(`${c.field}`, async () => {
      const outcome: Record<string, string> = {};
      for (const who of WHO) {
        const r = await gql(tokenOf(who), c.query, await c.vars());
        outcome[who] = r.errors?.length ? String(codeOf(r)) : r.data?.[c.field] === undefined ? 'missing' : 'ok';
      }
      const expected: Record<string, string> = {};
      for (const who of WHO) {
        expected[who] = c.allowed.includes(who) ? 'ok' : ['none', 'garbage', 'apiKey'].includes(who) ? 'UNAUTHENTICATED' : 'FORBIDDEN';
      }
      expect(outcome).toEqual(expected);
    });
  }
});

describe('team-bound tokens', () => {
  it('see their own team only: another team reads as not found', async () => {
    expect((await ok(teamAdmin, 'query($id: ID!) { team(id: $id) { id } }', { id: teamB.id })).team).toBeNull();
    expect((await ok(teamAdmin, 'query($id: ID!) { team(id: $id) { id } }', { id: teamA.id })).team).toEqual({ id: teamA.id });
    expect((await ok(teamAdmin, '{ teams { id } }')).teams).toEqual([{ id: teamA.id }]);

    const keys = (await ok(teamAdmin, '{ apiKeys { id teamId team { id } } }')).apiKeys;
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.every((k: { teamId: string; team: { id: string } }) => k.teamId === teamA.id && k.team.id === teamA.id)).toBe(true);
    expect((await ok(teamAdmin, 'query($t: ID) { apiKeys(teamId: $t) { id } }', { t: teamB.id })).apiKeys).toEqual([]);
    expect((await ok(analyst, 'query($t: ID) { apiKeys(teamId: $t) { id } }', { t: teamB.id })).apiKeys.map((k: { id: string }) => k.id)).toContain(keyB.id);
  });

  it("fail with NOT_FOUND on another team's objects, and change nothing", async () => {
    const revoke = await gql(teamAdmin, 'mutation($id: ID!) { revokeApiKey(id: $id) { id } }', { id: keyB.id });
    expect(codeOf(revoke)).toBe('NOT_FOUND');
    expect((await gw.started.runtime.adminStore.teams.getApiKey(keyB.id))?.revokedAt).toBeNull();
    const res = await chat(keyB.secret);
    expect(res.status).toBe(200);
    await res.text();

    const create = await gql(teamAdmin, 'mutation($t: ID!) { createApiKey(input: { teamId: $t, name: "x" }) { secret } }', { t: teamB.id });
    expect(codeOf(create)).toBe('NOT_FOUND');
    const budget = await gql(teamAdmin, 'mutation($t: ID) { setBudget(input: { scope: TEAM, teamId: $t, period: DAY, limitUsd: 1, action: BLOCK }) { id } }', {
      t: teamB.id,
    });
    expect(codeOf(budget)).toBe('NOT_FOUND');
    const keyBudget = await gql(
      teamAdmin,
      'mutation($k: ID) { setBudget(input: { scope: API_KEY, apiKeyId: $k, period: DAY, limitUsd: 1, action: BLOCK }) { id } }',
      {
        k: keyB.id,
      },
    );
    expect(codeOf(keyBudget)).toBe('NOT_FOUND');
    const globalFeature = await gql(
      teamAdmin,
      'mutation { setBudget(input: { scope: FEATURE, feature: "f", period: DAY, limitUsd: 1, action: BLOCK }) { id } }',
    );
    expect(codeOf(globalFeature)).toBe('FORBIDDEN');
    const ownFeature = await ok(
      teamAdmin,
      'mutation($t: ID) { setBudget(input: { scope: FEATURE, teamId: $t, feature: "f", period: DAY, limitUsd: 1, action: BLOCK }) { teamId } }',
      {
        t: teamA.id,
      },
    );
    expect(ownFeature.setBudget.teamId).toBe(teamA.id);
  });
});

/**
 * Runs `fn` while recording the SQL text of every statement the config database receives
 * whose text matches `tables` (the catalog poller's reads of "Setting" are left out that way).
 */
async function captureSql<T>(tables: RegExp, fn: () => Promise<T>): Promise<{ result: T; sql: string[] }> {
  const pool = gw.started.runtime.configDb.pool;
  const original = pool.query;
  const bound = original.bind(pool) as (...args: unknown[]) => unknown;
  const sql: string[] = [];
  (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const q = args[0];
    const text = typeof q === 'string' ? q : ((q as { text?: string })?.text ?? '');
    if (tables.test(text)) sql.push(text);
    return bound(...args);
  };
  try {
    return { result: await fn(), sql };
  } finally {
    (pool as unknown as { query: unknown }).query = original;
  }
}

describe('N+1', () => {
  it('teams { apiKeys { team { name } } } costs a bounded number of SQL queries, whatever the row count', async () => {
    const store = gw.started.runtime.adminStore;
    const measure = async () => {
      // Count the statements that touch teams or keys.
      const { result, sql } = await captureSql(/"(Team|ApiKey)"/, () => ok(admin, '{ teams { name apiKeys { name team { name } } } }'));
      const { teams } = result;
      return { queries: sql.length, teams: teams.length, keys: teams.reduce((n: number, t: { apiKeys: unknown[] }) => n + t.apiKeys.length, 0) };
    };
    for (let i = 0; i < 5; i++) {
      const t = await store.teams.createTeam(unique('n1-small'));
      for (let j = 0; j < 2; j++) await store.teams.createApiKey({ teamId: t.id, name: `k${j}` });
    }
    const small = await measure();
    for (let i = 0; i < 20; i++) {
      const t = await store.teams.createTeam(unique('n1-big'));
      for (let j = 0; j < 3; j++) await store.teams.createApiKey({ teamId: t.id, name: `k${j}` });
    }
    const big = await measure();
    expect(big.teams).toBeGreaterThanOrEqual(small.teams + 20);
    expect(big.keys).toBeGreaterThanOrEqual(small.keys + 60);
    expect(small.queries).toBeGreaterThan(0); // the counter sees Prisma's statements
    // teams, keys of those teams, teams of those keys: one query per level.
    expect(big.queries).toBeLessThanOrEqual(3);
    expect(big.queries).toBe(small.queries);
  });

  it('routes { targets } and budgets { team } are one statement per level', async () => {
    const store = gw.started.runtime.adminStore;
    for (let i = 0; i < 3; i++) {
      await store.routing.upsertRoute({
        name: unique('n1-route'),
        strategy: 'PRIORITY',
        targets: [
          { provider: 'sim', model: 'a' },
          { provider: 'sim', model: 'b' },
        ],
      });
      const t = await store.teams.createTeam(unique('n1-budget'));
      await store.pricing.setBudget({ scope: 'TEAM', teamId: t.id, period: 'DAY', limitUsd: 1, action: 'ALERT' });
    }
    const routes = await captureSql(/"Route(Target)?"/, () => ok(admin, '{ routes { name targets { provider model } } }'));
    expect(routes.result.routes.length).toBeGreaterThan(1);
    expect(routes.sql.length).toBeLessThanOrEqual(2);
    const budgets = await captureSql(/"(Budget|Team)"/, () => ok(admin, '{ budgets { id team { name } } }'));
    expect(budgets.result.budgets.length).toBeGreaterThan(1);
    expect(budgets.sql.length).toBeLessThanOrEqual(2);
  });

  it('never reads a stored secret hash, nor a provider ciphertext unless hasApiKey is asked for', async () => {
    const keys = await captureSql(/"(Team|ApiKey)"/, () => ok(admin, `{ apiKeys { ${API_KEY_FIELDS} } teams { apiKeys { id name } } }`));
    expect(keys.sql.length).toBeGreaterThan(0);
    for (const text of keys.sql) expect(text).not.toContain('secretHash');

    const providers = await captureSql(/"Provider"/, () => ok(admin, '{ providers { id name kind baseUrl timeoutMs createdAt updatedAt } }'));
    expect(providers.sql.length).toBe(1);
    expect(providers.sql[0]).not.toContain('apiKeyCiphertext');
    // hasApiKey needs it server-side (only the boolean is returned).
    const withFlag = await captureSql(/"Provider"/, () => ok(admin, '{ providers { name hasApiKey } }'));
    expect(withFlag.sql.join('\n')).toContain('apiKeyCiphertext');
    expect(withFlag.sql.join('\n')).not.toContain('extraHeaders');
  });
});

describe('secrets', () => {
  it('no response ever carried a stored hash or a provider secret', () => {
    expect(responses.length).toBeGreaterThan(50);
    expect(secretsThatMustNotAppear.length).toBeGreaterThanOrEqual(4);
    const all = responses.join('\n');
    for (const s of secretsThatMustNotAppear) expect(all).not.toContain(s);
    // The upstream secrets of the test gateway's own providers either.
    expect(all).not.toContain('sim-upstream-secret');
  });
});
