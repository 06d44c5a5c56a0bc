// Clear errors everywhere (issue 12, item 5): bad DateTimes and names are the caller's error
// (BAD_USER_INPUT naming the field, 400 with `param`), never a 500 or a store's failure; a
// repeated credential header is refused on every endpoint; cross-origin access is an
// allowlist, never a credentialed wildcard. (Production: graphql-production.test.ts.)
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { type GraphQLResult, gql, gqlOk } from '../support/graphql.js';
import { corsHeaders, openAIError, preflight, rawRequest } from '../support/http.js';

const APP_ORIGIN = 'https://app.example.com';
const EVIL_ORIGIN = 'https://evil.example';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
let admin: string;

beforeAll(async () => {
  gw = await startTestGateway({ env: { TOLLGATE_CORS_ORIGINS: `${APP_ORIGIN}, http://localhost:5173` } });
  key = await gw.createKey('team-clear-errors');
  admin = gw.adminToken;
});

afterAll(async () => {
  await gw?.close();
});

const chat = { model: 'chat-default', messages: [{ role: 'user' as const, content: 'hi' }] };

function badUserInput(r: GraphQLResult, field?: string) {
  expect(r.errors?.length, JSON.stringify(r)).toBeGreaterThan(0);
  const error = r.errors![0]!;
  expect(error.extensions?.code, JSON.stringify(error)).toBe('BAD_USER_INPUT');
  if (field !== undefined) {
    expect(error.extensions?.field).toBe(field);
    expect(error.message).toContain(field);
  }
  return error;
}

describe('DateTime input', () => {
  const usage = 'query($f: DateTime!, $t: DateTime!) { usage(filter: {from: $f, to: $t}) { requests } }';
  const invalid: unknown[] = [
    '+275760-09-13T00:00:00.000Z', // the last instant a JS Date holds: ClickHouse cannot parse it
    '+010000-01-01T00:00:00Z',
    '-000001-01-01T00:00:00Z',
    '9999-12-31T23:59:59-14:00', // year 10000 in UTC
    '2026-13-45',
    '2026-02-30T00:00:00Z', // new Date() rolls it into March
    '2026-01-01T25:00:00Z',
    'not a date',
    '1', // new Date('1') is 2001
    '2026-01-01T00:00:00', // no time zone: the server's local time
    '',
    1e20,
    8.64e15 + 1,
    -1e17,
    1.5,
    true,
    { year: 2026 },
  ];

  it.each(invalid)('refuses %j with BAD_USER_INPUT, never an internal or store error', async (value) => {
    const asFrom = await gql(gw.url, admin, usage, { f: value, t: '2026-01-01T00:00:00Z' });
    badUserInput(asFrom);
    expect(asFrom.data).toBeNull();
    badUserInput(await gql(gw.url, admin, usage, { f: '2026-01-01T00:00:00Z', t: value }));
  });

  it('refuses extreme values in every analytics query, as literals too, and in admin inputs', async () => {
    const extreme = '"+275760-09-13T00:00:00.000Z"';
    const filter = `{from: "2026-01-01T00:00:00Z", to: ${extreme}}`;
    for (const query of [
      `{ usage(filter: ${filter}) { requests } }`,
      `{ costPerTask(filter: ${filter}) { tasks } }`,
      `{ latency(filter: ${filter}) { requests } }`,
      `{ cacheStats(filter: ${filter}) { requests } }`,
      `{ timeSeries(filter: ${filter}, interval: DAY) { requests } }`,
      `{ receipts(filter: ${filter}) { totalCount } }`,
      `{ usage(filter: {from: 99999999999999999, to: "2026-01-01T00:00:00Z"}) { requests } }`,
    ]) {
      badUserInput(await gql(gw.url, admin, query));
    }
    badUserInput(
      await gql(gw.url, admin, `mutation($t: ID!) { createApiKey(input: {teamId: $t, name: "far", expiresAt: ${extreme}}) { secret } }`, { t: key.teamId }),
    );
    badUserInput(
      await gql(
        gw.url,
        admin,
        `mutation { setPrice(input: {provider: "sim", model: "m", inputPerMTokUsd: 1, outputPerMTokUsd: 1, effectiveFrom: ${extreme}}) { version } }`,
      ),
    );
  });

  it('answers the widest valid range (and epoch milliseconds) with every receipt in it', async () => {
    const client = gw.client(key.secret);
    await client.chat.completions.create({ ...chat, messages: [{ role: 'user', content: 'range 1' }] });
    await client.chat.completions.create({ ...chat, messages: [{ role: 'user', content: 'range 2' }] });
    await gw.started.runtime.journal.flush();
    const count = async (from: unknown, to: unknown) =>
      (await gqlOk(gw.url, admin, 'query($f: AnalyticsFilter!) { receipts(filter: $f) { totalCount } usage(filter: $f) { requests } }', {
        f: { from, to, teamIds: [key.teamId] },
      })) as { receipts: { totalCount: number }; usage: Array<{ requests: number }> };
    const now = Date.now();
    const recent = await count(new Date(now - 3_600_000).toISOString(), new Date(now + 60_000).toISOString());
    expect(recent.receipts.totalCount).toBeGreaterThanOrEqual(2);
    expect(await count('0000-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z')).toEqual(recent);
    expect(await count('0001-01-01', '9999-12-31')).toEqual(recent);
    expect(await count(now - 3_600_000, now + 60_000)).toEqual(recent);
  });
});

describe('control characters in names', () => {
  const cases: Array<{ mutation: string; query: string; vars: () => Record<string, unknown>; field: string }> = [
    {
      mutation: 'createTeam',
      query: 'mutation($in: CreateTeamInput!) { createTeam(input: $in) { id } }',
      vars: () => ({ in: { name: 'bad\u0007team' } }),
      field: 'input.name',
    },
    {
      mutation: 'createApiKey',
      query: 'mutation($in: CreateApiKeyInput!) { createApiKey(input: $in) { secret } }',
      vars: () => ({ in: { teamId: key.teamId, name: 'key\u0000name' } }),
      field: 'input.name',
    },
    {
      mutation: 'createAccessToken',
      query: 'mutation($in: CreateAccessTokenInput!) { createAccessToken(input: $in) { secret } }',
      vars: () => ({ in: { name: 'token\u001b[31m', role: 'ANALYST' } }),
      field: 'input.name',
    },
    {
      mutation: 'upsertProvider',
      query: 'mutation($in: ProviderInput!) { upsertProvider(input: $in) { id } }',
      vars: () => ({ in: { name: 'prov\u0008', kind: 'OPENAI' } }),
      field: 'input.name',
    },
    {
      mutation: 'upsertRoute',
      query: 'mutation($in: RouteInput!) { upsertRoute(input: $in) { id } }',
      vars: () => ({
        in: {
          name: 'r-ctl',
          strategy: 'PRIORITY',
          targets: [
            { provider: 'sim', model: 'sim-large' },
            { provider: 'sim', model: 'a\u007fb' },
          ],
        },
      }),
      field: 'input.targets.1.model',
    },
    {
      mutation: 'setPrice',
      query: 'mutation($in: PriceInput!) { setPrice(input: $in) { version } }',
      vars: () => ({ in: { provider: 'sim', model: 'm\u0001', inputPerMTokUsd: 1, outputPerMTokUsd: 1 } }),
      field: 'input.model',
    },
    {
      mutation: 'setBudget',
      query: 'mutation($in: BudgetInput!) { setBudget(input: $in) { id } }',
      vars: () => ({ in: { scope: 'FEATURE', feature: 'feat\u000bure', period: 'DAY', limitUsd: 1, action: 'ALERT' } }),
      field: 'input.feature',
    },
    {
      mutation: 'recordTaskOutcome',
      query: 'mutation($in: TaskOutcomeInput!) { recordTaskOutcome(input: $in) { taskId } }',
      vars: () => ({ in: { teamId: key.teamId, taskId: 'task\u0000', success: true } }),
      field: 'input.taskId',
    },
    {
      mutation: 'recordTaskOutcome',
      query: 'mutation($in: TaskOutcomeInput!) { recordTaskOutcome(input: $in) { taskId } }',
      vars: () => ({ in: { teamId: key.teamId, taskId: 'task-ok', success: true, note: 'red \u001b[31malert' } }),
      field: 'input.note',
    },
  ];

  it.each(cases)('$mutation: BAD_USER_INPUT naming $field', async ({ query, vars, field }) => {
    badUserInput(await gql(gw.url, admin, query, vars()), field);
  });

  it('a note may hold line breaks and tabs', async () => {
    const r = await gqlOk(gw.url, admin, 'mutation($in: TaskOutcomeInput!) { recordTaskOutcome(input: $in) { note } }', {
      in: { teamId: key.teamId, taskId: 'task-lines', success: false, note: 'first line\n\tsecond line' },
    });
    expect(r.recordTaskOutcome.note).toBe('first line\n\tsecond line');
  });

  async function postJson(path: string, token: string, body: unknown) {
    const res = await fetch(`${gw.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  }

  it('REST: 400 invalid_request_error with param, for key creation and task outcomes', async () => {
    for (const [body, param] of [
      [{ team: 'team\u0000x' }, 'team'],
      [{ team: 'team-rest', name: 'key\u0007' }, 'name'],
    ] as const) {
      const r = await postJson('/admin/v1/keys', admin, body);
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error).toMatchObject({ type: 'invalid_request_error', param });
      expect(r.body.error.message).toMatch(/control characters/);
    }

    const bad = await postJson('/v1/tasks/task%07bell/outcome', key.secret, { success: true });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'taskId' });
    const badNote = await postJson('/v1/tasks/task-rest/outcome', key.secret, { success: true, note: 'x\u001b]0;title\u0007' });
    expect(badNote.status).toBe(400);
    expect(badNote.body.error).toMatchObject({ type: 'invalid_request_error', param: 'note' });
    const fine = await postJson('/v1/tasks/task-rest/outcome', key.secret, { success: true, note: 'two\nlines' });
    expect(fine.status).toBe(200);
    expect(fine.body).toMatchObject({ task_id: 'task-rest', note: 'two\nlines' });
  });
});

describe('control characters in attribution', () => {
  it('are refused on the proxy (400, param: header or body field), with the receipt of the refusal', async () => {
    const client = gw.client(key.secret);
    const cases: Array<{ headers?: Record<string, string>; metadata?: Record<string, string>; user?: string; param: string }> = [
      { headers: { 'x-tollgate-task-id': 'task\tone' }, param: 'x-tollgate-task-id' },
      { headers: { 'x-tollgate-feature': 'sum\tmarize' }, param: 'x-tollgate-feature' },
      { metadata: { task_id: 'task\u0000two' }, param: 'metadata.task_id' },
      { metadata: { feature: 'clear\u001b[2Jscreen' }, param: 'metadata.feature' },
      { user: 'user\nname', param: 'user' },
    ];
    for (const c of cases) {
      const err = await client.chat.completions
        .create({ ...chat, ...(c.metadata ? { metadata: c.metadata } : {}), ...(c.user ? { user: c.user } : {}) }, { headers: c.headers })
        .catch((e: unknown) => e);
      expect(err, c.param).toBeInstanceOf(OpenAI.APIError);
      if (!(err instanceof OpenAI.APIError)) continue;
      expect(err.status).toBe(400);
      expect(err.error).toMatchObject({ type: 'invalid_request_error', param: c.param });
      const receiptId = err.headers.get('x-tollgate-receipt-id');
      const receipt = await fetch(`${gw.url}/v1/receipts/${receiptId}`, { headers: { authorization: `Bearer ${admin}` } });
      expect(await receipt.json()).toMatchObject({ receipt_id: receiptId, status: 'rejected', http_status: 400 });
    }
    // Trimmed whitespace around a value is not part of it.
    const fine = await client.chat.completions.create(chat, { headers: { 'x-tollgate-task-id': '  task-three\t' } }).withResponse();
    expect(fine.response.status).toBe(200);
  });
});

describe('credential headers sent twice', () => {
  const other = `tg-${'B'.repeat(43)}`;
  const body = JSON.stringify(chat);

  it('are refused with 400 (param: the header) on every endpoint, whichever copy is valid', async () => {
    const requests: Array<{ line: string; auth: [string, string]; body?: string }> = [
      { line: 'POST /v1/chat/completions HTTP/1.1', auth: [key.secret, other], body },
      { line: 'POST /v1/embeddings HTTP/1.1', auth: [key.secret, other], body: JSON.stringify({ model: 'embed-default', input: 'x' }) },
      { line: 'GET /v1/models HTTP/1.1', auth: [key.secret, other] },
      { line: 'GET /v1/responses/resp_abc HTTP/1.1', auth: [key.secret, other] },
      { line: 'DELETE /v1/responses/resp_abc HTTP/1.1', auth: [other, key.secret] },
      { line: 'GET /v1/receipts/00000000-0000-7000-8000-000000000000 HTTP/1.1', auth: [admin, key.secret] },
      { line: 'POST /v1/tasks/t1/outcome HTTP/1.1', auth: [other, key.secret], body: '{"success":true}' },
      { line: 'POST /admin/v1/keys HTTP/1.1', auth: [admin, other], body: '{"team":"dup"}' },
      { line: 'POST /graphql HTTP/1.1', auth: [admin, other], body: '{"query":"{ viewer { role } }"}' },
    ];
    for (const r of requests) {
      const answer = await rawRequest(
        gw.url,
        [r.line, 'content-type: application/json', `Authorization: Bearer ${r.auth[0]}`, `authorization: Bearer ${r.auth[1]}`],
        r.body,
      );
      expect(answer.status, `${r.line}: ${answer.body}`).toBe(400);
      expect(openAIError(answer.body)).toMatchObject({ type: 'invalid_request_error', param: 'authorization' });
    }

    const apiKeyTwice = await rawRequest(
      gw.url,
      ['POST /v1/chat/completions HTTP/1.1', 'content-type: application/json', `x-api-key: ${key.secret}`, `X-Api-Key: ${other}`],
      body,
    );
    expect(apiKeyTwice.status).toBe(400);
    expect(openAIError(apiKeyTwice.body)).toMatchObject({ type: 'invalid_request_error', param: 'x-api-key' });

    // Once is fine.
    const once = await rawRequest(
      gw.url,
      ['POST /v1/chat/completions HTTP/1.1', 'content-type: application/json', `Authorization: Bearer ${key.secret}`],
      body,
    );
    expect(once.status).toBe(200);
  });

  it('a proxied request refused for it still leaves its one receipt', async () => {
    const answer = await rawRequest(
      gw.url,
      ['POST /v1/chat/completions HTTP/1.1', 'content-type: application/json', `authorization: Bearer ${key.secret}`, `authorization: Bearer ${key.secret}`],
      body,
    );
    expect(answer.status).toBe(400);
    const receiptId = /x-tollgate-receipt-id: ([0-9a-f-]{36})/.exec(answer.head)?.[1];
    expect(receiptId).toBeDefined();
    const res = await fetch(`${gw.url}/v1/receipts/${receiptId}`, { headers: { authorization: `Bearer ${admin}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ receipt_id: receiptId, status: 'rejected', http_status: 400 });
  });
});

describe('CORS', () => {
  it('lets a listed origin call /graphql and the REST endpoints, preflight included, never with credentials', async () => {
    for (const path of ['/graphql', '/v1/chat/completions', '/v1/models', '/admin/v1/keys']) {
      const res = await preflight(gw.url, path, APP_ORIGIN);
      expect(res.status, path).toBe(204);
      expect(corsHeaders(res)).toEqual({
        'access-control-allow-origin': APP_ORIGIN,
        'access-control-allow-methods': 'GET, POST, DELETE',
        'access-control-allow-headers': 'authorization, content-type',
        'access-control-max-age': '600',
      });
    }
    const completion = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { origin: APP_ORIGIN, authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify(chat),
    });
    expect(completion.status).toBe(200);
    expect(corsHeaders(completion)).toEqual({ 'access-control-allow-origin': APP_ORIGIN, 'access-control-expose-headers': '*' });
    expect(completion.headers.get('vary')).toMatch(/origin/i);
    const graphql = await fetch(`${gw.url}/graphql`, {
      method: 'POST',
      headers: { origin: 'http://localhost:5173', authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ viewer { role } }' }),
    });
    expect(graphql.status).toBe(200);
    expect(corsHeaders(graphql)).toEqual({ 'access-control-allow-origin': 'http://localhost:5173', 'access-control-expose-headers': '*' });
  });

  it('gives an unlisted origin no CORS headers at all', async () => {
    for (const path of ['/graphql', '/v1/chat/completions', '/v1/models']) {
      expect(corsHeaders(await preflight(gw.url, path, EVIL_ORIGIN)), path).toEqual({});
      const get = await fetch(`${gw.url}${path}`, { headers: { origin: EVIL_ORIGIN, authorization: `Bearer ${admin}` } });
      expect(corsHeaders(get), path).toEqual({});
    }
  });
});
