// Experiments (DESIGN §5) through the official openai client: a route's traffic split between
// variants by weight, each end user sticking to one variant across requests and across a
// restart of the gateway; the header, the upstream reached and the receipt agree; a missing
// sticky value falls back to the API key; REQUEST stickiness spreads one user's requests.
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql, gqlOk } from '../support/graphql.js';
import { storedReceipts } from '../support/receipts.js';

let gw: TestGateway;
let key: { secret: string; id: string; teamId: string };
const USERS = 300;
const CANDIDATE_WEIGHT = 0.2;

async function configure(g: TestGateway) {
  const store = g.started.runtime.adminStore;
  await store.routing.applyRouting({
    routes: [
      { name: 'exp-chat', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'control-model' }] },
      { name: 'per-request', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'control-model' }] },
    ],
    experiments: [
      {
        name: 'ab',
        route: 'exp-chat',
        stickyBy: 'END_USER',
        variants: [
          { name: 'control', weight: 80 },
          { name: 'candidate', weight: 20, targets: [{ provider: 'sim', model: 'candidate-model' }] },
        ],
      },
      {
        name: 'coin',
        route: 'per-request',
        stickyBy: 'REQUEST',
        variants: [
          { name: 'heads', weight: 1 },
          { name: 'tails', weight: 1, targets: [{ provider: 'sim', model: 'tails-model' }] },
        ],
      },
    ],
  });
  await g.started.runtime.app.catalog.refresh();
}

beforeAll(async () => {
  gw = await startTestGateway({ keepDataDir: true });
  key = await gw.createKey('team-exp');
  await configure(gw);
}, 120_000);

afterAll(async () => {
  await gw?.close();
  if (gw) await rm(gw.dataDir, { recursive: true, force: true });
});

/** One request as `user` (none: no end user); the variant header, the model reached, the receipt. */
async function ask(g: TestGateway, user: string | null, model = 'exp-chat', secret = key.secret) {
  const { response } = await g
    .client(secret, { defaultHeaders: user ? { 'x-tollgate-user': user } : {} })
    .chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }] })
    .withResponse();
  const receiptId = response.headers.get('x-tollgate-receipt-id')!;
  return {
    variant: response.headers.get('x-tollgate-variant'),
    upstream: response.headers.get('x-tollgate-model')!,
    receiptId,
  };
}

const assigned = new Map<string, string>();

describe('an A/B experiment sticky by end user', () => {
  it(`splits ${USERS} end users by weight, and the header, the upstream and the receipt agree`, async () => {
    gw.sim.reset();
    const answers = [];
    for (let i = 0; i < USERS; i += 20) {
      answers.push(...(await Promise.all(Array.from({ length: 20 }, (_, j) => ask(gw, `user-${i + j}`)))));
    }
    let candidates = 0;
    answers.forEach((a, i) => {
      expect(['ab/control', 'ab/candidate']).toContain(a.variant);
      expect(a.upstream).toBe(a.variant === 'ab/candidate' ? 'candidate-model' : 'control-model');
      if (a.variant === 'ab/candidate') candidates++;
      assigned.set(`user-${i}`, a.variant!);
    });
    // Binomial(300, 0.2): mean 60, sd 6.9. The bounds are 3 sd either side.
    const sd = Math.sqrt(USERS * CANDIDATE_WEIGHT * (1 - CANDIDATE_WEIGHT));
    expect(candidates).toBeGreaterThanOrEqual(USERS * CANDIDATE_WEIGHT - 3 * sd);
    expect(candidates).toBeLessThanOrEqual(USERS * CANDIDATE_WEIGHT + 3 * sd);

    // What the simulator was asked for matches what the answers say.
    const asked = gw.sim.requests.filter((r) => r.body.model === 'candidate-model').length;
    expect(asked).toBe(candidates);
    expect(gw.sim.requests.length).toBe(USERS);

    const receipts = new Map((await storedReceipts(gw, key.teamId)).map((r) => [r.receipt_id, r]));
    for (const a of answers) {
      const r = receipts.get(a.receiptId)!;
      expect(r).toMatchObject({ experiment: 'ab', variant: a.variant!.slice('ab/'.length), route: 'exp-chat', model: a.upstream });
    }
  });

  it('keeps each user on their variant, request after request', async () => {
    for (let i = 0; i < 30; i++) {
      const user = `user-${i}`;
      for (let n = 0; n < 2; n++) expect((await ask(gw, user)).variant).toBe(assigned.get(user));
    }
  });

  it('without an end user, the API key decides: all its requests share a variant', async () => {
    const variants = new Set<string>();
    for (let n = 0; n < 10; n++) variants.add((await ask(gw, null)).variant!);
    expect(variants.size).toBe(1);
  });

  it('REQUEST stickiness spreads one user over both variants', async () => {
    const variants = new Set<string>();
    for (let n = 0; n < 40; n++) variants.add((await ask(gw, 'same-user', 'per-request')).variant!);
    expect(variants).toEqual(new Set(['coin/heads', 'coin/tails']));
  });

  it('explainRoute names the variant a user would get', async () => {
    const user = 'user-7';
    const d = await gqlOk(gw.url, gw.adminToken, `query($r: ExplainRouteInput!) { explainRoute(input: $r) { experiment variant } }`, {
      r: {
        request: { model: 'exp-chat', messages: [{ role: 'user', content: 'hello' }] },
        headers: [{ name: 'x-tollgate-user', value: user }],
        teamId: key.teamId,
      },
    });
    expect(`${d.explainRoute.experiment}/${d.explainRoute.variant}`).toBe(assigned.get(user));
  });

  it('explainRoute names the variant of the API key that sends it (no end user: the assignment sticks to the key)', async () => {
    const team = await gw.started.runtime.adminStore.teams.ensureTeam('team-exp');
    const keys = await Promise.all(Array.from({ length: 30 }, (_, i) => gw.started.runtime.adminStore.teams.createApiKey({ teamId: team.id, name: `k${i}` })));
    const explain = (apiKeyId: string, token = gw.adminToken) =>
      gql(gw.url, token, `query($r: ExplainRouteInput!) { explainRoute(input: $r) { variant } }`, {
        r: { request: { model: 'exp-chat', messages: [{ role: 'user', content: 'hello' }] }, apiKeyId },
      });
    const real = await Promise.all(keys.map(async (k) => (await ask(gw, null, 'exp-chat', k.secret)).variant));
    const explained = await Promise.all(keys.map(async (k) => `ab/${(await explain(k.apiKey.id)).data.explainRoute.variant}`));
    expect(new Set(real).size, 'the keys fall into both variants').toBe(2);
    expect(explained).toEqual(real);
    // A team-bound token cannot explain for another team's key.
    const other = await gw.createKey('team-exp-other');
    const { secret: bound } = await gw.started.runtime.adminStore.teams.createAccessToken({ name: 'exp-analyst', role: 'ADMIN', teamId: team.id });
    expect((await explain(other.id, bound)).errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
  });

  it('assignments survive a restart of the gateway', async () => {
    const dataDir = gw.dataDir;
    const databaseUrl = gw.config.databaseUrl;
    await gw.close();
    gw = await startTestGateway({ dataDir, keepDataDir: true, env: databaseUrl ? { DATABASE_URL: databaseUrl } : {} });
    for (let i = 0; i < 40; i++) {
      const user = `user-${i}`;
      expect((await ask(gw, user)).variant).toBe(assigned.get(user));
    }
  });

  it("raising a variant's weight moves only users from the others to it", async () => {
    await gw.started.runtime.adminStore.routing.upsertExperiment({
      name: 'ab',
      route: 'exp-chat',
      stickyBy: 'END_USER',
      variants: [
        { name: 'control', weight: 70 },
        { name: 'candidate', weight: 30, targets: [{ provider: 'sim', model: 'candidate-model' }] },
      ],
    });
    await gw.started.runtime.app.catalog.refresh();
    let moved = 0;
    for (let i = 0; i < USERS; i += 20) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, j) => ask(gw, `user-${i + j}`)));
      answers.forEach((a, j) => {
        const before = assigned.get(`user-${i + j}`);
        if (before === 'ab/candidate')
          expect(a.variant).toBe('ab/candidate'); // nobody leaves the growing variant
        else if (a.variant === 'ab/candidate') moved++;
      });
    }
    // About a tenth of all users move (0.3 − 0.2), every one of them from the control.
    expect(moved).toBeGreaterThan(USERS * 0.1 - 3 * Math.sqrt(USERS * 0.1));
    expect(moved).toBeLessThan(USERS * 0.1 + 3 * Math.sqrt(USERS * 0.1));
  });
});
