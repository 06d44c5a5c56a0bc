// The console (/console) and GraphiQL in Debian's Chromium, against a real Tollgate, with every
// non-loopback request blocked and recorded: nothing may be fetched from elsewhere.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page, WebSocketRoute } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { rate } from '../../src/console/format.js';
import { launchChromium, type OfflineContext, offlineContext } from '../support/browser.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gql, gqlOk } from '../support/graphql.js';
import { startIdentityProvider, type TestIdentityProvider } from '../support/identity-provider.js';
import { startTollgateProcess } from '../support/processes.js';
import { storedReceipts } from '../support/receipts.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let gw: TestGateway;
let browser: Browser;
/** A local OIDC identity provider (real JWKS over loopback) the gateway trusts for sign-in. */
let idp: TestIdentityProvider;

beforeAll(async () => {
  // The console as `npm install` builds it, from the sources under test.
  execFileSync(process.execPath, [path.join(root, 'scripts/build-console.mjs')], { cwd: root, stdio: 'inherit' });
  idp = await startIdentityProvider();
  [gw, browser] = await Promise.all([startTestGateway({ env: { TOLLGATE_OIDC_ISSUER: idp.issuer, TOLLGATE_OIDC_AUDIENCE: idp.audience } }), launchChromium()]);
});

afterAll(async () => {
  await browser?.close();
  await gw?.close();
  await idp?.close();
});

/** A fresh offline browser context; every test ends by checking that none of them reached out. */
async function offlinePage(): Promise<{ page: Page; offline: OfflineContext }> {
  const offline = await offlineContext(browser);
  return { page: await offline.newPage(), offline };
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${gw.url}/console`);
  await page.fill('#signin-token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#viewer');
}

const waitLive = (page: Page) => page.waitForSelector('#live-status[data-state="live"]', { timeout: 10_000 });

async function chat(secret: string, model = 'chat-default', headers: Record<string, string> = {}): Promise<string> {
  const { response } = await gw
    .client(secret)
    .chat.completions.create({ model, messages: [{ role: 'user', content: `hello ${Math.random()}` }] }, { headers })
    .withResponse();
  return response.headers.get('x-tollgate-receipt-id')!;
}

const decisionRow = (page: Page, receiptId: string) => page.locator(`tr.decision[data-receipt-id="${receiptId}"]`);

/** An assertion retried until it holds (vitest's expect.poll), 5 s unless told. */
const poll = <T>(read: () => Promise<T>, timeout = 5000) => expect.poll(read, { timeout, interval: 50 });

/** Text in GraphiQL's editors (Monaco draws spaces as no-break spaces). */
const editorText = (page: Page, selector: string) =>
  page
    .locator(selector)
    .innerText()
    .then((t) => t.replaceAll('\u00a0', ' '));

/**
 * Waits until the panel's subscription is in place (a websocket being up does not say the
 * subscribe message has reached the server yet): requests until one shows.
 */
async function untilSubscribed(page: Page, secret: string, model = 'chat-default'): Promise<void> {
  for (let i = 0; i < 20; i++) {
    const id = await chat(secret, model);
    if (
      await decisionRow(page, id)
        .waitFor({ timeout: 500 })
        .then(
          () => true,
          () => false,
        )
    )
      return;
  }
  throw new Error('the live panel never showed a request');
}

function expectOffline(offline: OfflineContext): void {
  expect(offline.attempted).toEqual([]);
}

describe('console in Chromium, offline', () => {
  it('loads and signs in with nothing but loopback, and says so in its CSP', async () => {
    const { page, offline } = await offlinePage();
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    const response = await page.goto(`${gw.url}/console`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toContain("default-src 'self'");
    await page.locator('#signin-form').waitFor({ state: 'visible' });
    await page.fill('#signin-token', gw.adminToken);
    await page.click('#signin-form button[type=submit]');
    await waitLive(page);
    expect(await page.textContent('#viewer')).toContain('admin token');
    await page.click('nav a[data-view="analytics"]');
    await page.waitForSelector('section.analytics[data-state="ready"]');
    await page.click('nav a[data-view="receipts"]');
    await page.waitForSelector('#receipt-body table');
    await page.locator('#open-graphiql').waitFor({ state: 'visible' });
    // Every request went to this Tollgate; the token is in no URL.
    expect(requested.length).toBeGreaterThan(3);
    for (const url of requested) {
      expect(url.startsWith(gw.url) || url.startsWith('data:')).toBe(true);
      expect(url).not.toContain(gw.adminToken);
    }
    expectOffline(offline);
  });

  it('shows a request on the live panel within a second, with its hops and candidates; pause and filter work', async () => {
    const { secret } = await gw.createKey('live-team');
    const { page, offline } = await offlinePage();
    await signIn(page, gw.adminToken);
    await waitLive(page);
    await untilSubscribed(page, secret);

    const started = performance.now();
    const receiptId = await chat(secret, 'chat-default', { 'x-tollgate-feature': 'search' });
    await decisionRow(page, receiptId).waitFor({ timeout: 1000 });
    const ms = performance.now() - started;
    expect(ms).toBeLessThan(1000);
    const row = decisionRow(page, receiptId);
    expect(await row.getAttribute('data-outcome')).toBe('SUCCESS');
    await poll(() => row.textContent()).toContain('search');
    await poll(() => row.textContent()).toContain('sim/sim-large');

    // A failover: the failed hop, then the one that answered; the candidates on click.
    gw.sim.behave('primary', { status: 503, times: 1 });
    const failedOver = await chat(secret, 'failover');
    const hops = decisionRow(page, failedOver).locator('.chip');
    await poll(() => hops.first().textContent(), 1000).toContain('sim/primary ✗');
    await poll(() => hops.nth(1).textContent()).toContain('sim-b/backup ✓');
    await decisionRow(page, failedOver).click();
    const detail = page.locator('tr.detail');
    await poll(() => detail.textContent()).toContain('sim/primary');
    await poll(() => detail.textContent()).toContain('sim-b/backup');
    await detail.locator(`a[href="#/receipts/${failedOver}"]`).waitFor({ state: 'visible' });
    await poll(() => page.locator('.tile[data-metric="failovers"] .value').textContent()).not.toBe('0.00');

    // Paused: the list holds still and counts what it holds back.
    await page.click('#live-pause');
    const whilePaused = await chat(secret);
    await poll(() => page.locator('#live-paused-note').textContent()).toMatch(/Paused: [1-9]\d* new decisions/);
    expect(await decisionRow(page, whilePaused).count()).toBe(0);
    // Paused is when a request is read: it opens and closes still (by keyboard too), the list held.
    await decisionRow(page, failedOver).click(); // it was open: now closed
    await poll(() => page.locator('tr.detail').count()).toBe(0);
    await decisionRow(page, failedOver).focus();
    await page.keyboard.press('Enter');
    await poll(() => page.locator('tr.detail').textContent()).toContain('sim-b/backup');
    expect(await decisionRow(page, failedOver).getAttribute('aria-expanded')).toBe('true');
    expect(await decisionRow(page, whilePaused).count()).toBe(0);
    await page.click('#live-pause');
    await decisionRow(page, whilePaused).waitFor({ timeout: 1000 });

    // Filtered to one route: another route's requests do not show.
    await page.selectOption('#live-route', 'failover');
    await untilSubscribed(page, secret, 'failover');
    const otherRoute = await chat(secret, 'chat-default');
    const sameRoute = await chat(secret, 'failover');
    await decisionRow(page, sameRoute).waitFor({ timeout: 1000 });
    expect(await decisionRow(page, otherRoute).count()).toBe(0);
    expectOffline(offline);
  });

  it('shows analytics equal to the GraphQL answers for known traffic', async () => {
    const x = await gw.createKey('analytics-x');
    const y = await gw.createKey('analytics-y');
    const sent = { x: 0, y: 0 };
    for (let i = 0; i < 4; i++) {
      await chat(x.secret, 'chat-default', { 'x-tollgate-feature': 'search', 'x-tollgate-task-id': `ax-${i % 2}` });
      sent.x++;
    }
    gw.sim.behave('primary', { status: 503, times: 1 });
    await chat(x.secret, 'failover', { 'x-tollgate-feature': 'agent', 'x-tollgate-task-id': 'ax-2' });
    await chat(x.secret, 'sim-b/no-price-for-this', { 'x-tollgate-feature': 'agent' }); // unpriced: not in any cost
    sent.x += 2;
    const stream = await gw
      .client(y.secret)
      .chat.completions.create(
        { model: 'chat-default', stream: true, messages: [{ role: 'user', content: 'stream please' }] },
        { headers: { 'x-tollgate-feature': 'summarize', 'x-tollgate-task-id': 'ay-0' } },
      );
    for await (const _ of stream) void _;
    await gw.client(y.secret).embeddings.create({ model: 'embed-default', input: 'vectors' }, { headers: { 'x-tollgate-feature': 'summarize' } });
    sent.y += 2;
    await fetch(`${gw.url}/v1/tasks/ax-0/outcome`, {
      method: 'POST',
      headers: { authorization: `Bearer ${x.secret}`, 'content-type': 'application/json' },
      body: '{"success": false}',
    });
    await gw.started.runtime.journal.flush();

    const { page, offline } = await offlinePage();
    await signIn(page, gw.adminToken);
    await page.click('nav a[data-view="analytics"]');
    for (const dim of ['MODEL', 'TEAM', 'FEATURE']) {
      await page.selectOption('#analytics-group', dim);
      await page.waitForSelector(`#analytics-range[data-group="${dim}"]`);
      await page.waitForSelector('section.analytics[data-state="ready"]');
      await expectPageEqualsGraphQL(page, dim);
    }
    // Known traffic: one team's numbers, on the page and from GraphQL alike.
    await page.selectOption('#analytics-team', x.teamId);
    await page.waitForSelector('section.analytics[data-state="ready"]');
    await poll(() => page.locator('[data-query="totalUsage"][data-field="requests"]').getAttribute('data-value')).toBe(String(sent.x));
    await poll(() => page.locator('[data-query="totalTasks"][data-field="tasks"]').getAttribute('data-value')).toBe('3');
    await poll(() => page.locator('[data-query="totalUsage"][data-field="unpricedRequests"]').getAttribute('data-value')).toBe('1');
    const feature = page.locator('#analytics-cost tr[data-key="search"] [data-field="requests"]');
    await page.selectOption('#analytics-group', 'FEATURE');
    await poll(() => feature.getAttribute('data-value')).toBe('4');
    await poll(() => page.locator('#analytics-cost tr[data-key="search"] [data-field="succeededTasks"]').getAttribute('data-value')).toBe('1');
    await expectPageEqualsGraphQL(page, 'FEATURE', [x.teamId]);
    // Days are UTC days (buckets start at UTC midnight): said so, and drawn so.
    await page.selectOption('#analytics-range-select', String(30 * 86_400_000));
    await page.waitForSelector('section.analytics[data-state="ready"]');
    await poll(() => page.locator('h2', { hasText: 'Requests, errors and cache hits per' }).textContent()).toBe(
      'Requests, errors and cache hits per day (UTC)',
    );
    expectOffline(offline);
  });

  it('gives a team-bound token its own team only', async () => {
    const a = await gw.createKey('scoped-a');
    const b = await gw.createKey('scoped-b');
    const { createAccessToken } = await gqlOk(
      gw.url,
      gw.adminToken,
      'mutation ($input: CreateAccessTokenInput!) { createAccessToken(input: $input) { secret } }',
      {
        input: { name: 'scoped analyst', role: 'ANALYST', teamId: a.teamId },
      },
    );
    const { page, offline } = await offlinePage();
    await signIn(page, createAccessToken.secret);
    await poll(() => page.locator('#viewer').textContent()).toBe('analyst token · team scoped-a');
    await waitLive(page);
    // The filter options arrive with their own query, after the live stream may have connected.
    await poll(() => page.locator('#live-team option').allTextContents()).toEqual(['All teams', 'scoped-a']);
    await untilSubscribed(page, a.secret);
    const theirs = await chat(b.secret);
    const ours = await chat(a.secret);
    await decisionRow(page, ours).waitFor({ timeout: 1000 });
    expect(await decisionRow(page, theirs).count()).toBe(0);

    await gw.started.runtime.journal.flush();
    await page.click('nav a[data-view="analytics"]');
    await page.selectOption('#analytics-group', 'TEAM');
    await page.waitForSelector('#analytics-range[data-group="TEAM"]');
    await page.waitForSelector('section.analytics[data-state="ready"]');
    const keys = await page.locator('#analytics-cost tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-key')));
    expect(keys).toEqual([a.teamId]);

    await page.goto(`${gw.url}/console#/receipts/${theirs}`);
    await page.locator('#receipt-missing').waitFor({ state: 'visible' });
    await page.goto(`${gw.url}/console#/receipts/${ours}`);
    await poll(() => page.locator('#receipt-verification').getAttribute('data-status')).toBe('valid');
    expectOffline(offline);
  });

  it('verifies a receipt in the browser, and notices a receipt that was changed', async () => {
    const { secret } = await gw.createKey('receipts-team');
    gw.sim.behave('primary', { status: 503, times: 1 });
    const id = await chat(secret, 'failover');
    await gw.started.runtime.journal.flush();

    // signedJson is exactly the REST receipt without its signature.
    const rest = await (await fetch(`${gw.url}/v1/receipts/${id}`, { headers: { authorization: `Bearer ${gw.adminToken}` } })).json();
    const { receipt } = await gqlOk(gw.url, gw.adminToken, 'query ($id: ID!) { receipt(id: $id) { signature signedJson } }', { id });
    const { signature, ...signed } = rest;
    expect(receipt.signedJson).toEqual(signed);
    expect(receipt.signature).toBe(signature);

    const { page, offline } = await offlinePage();
    await signIn(page, gw.adminToken);
    await page.goto(`${gw.url}/console#/receipts/${id}`);
    await poll(() => page.locator('#receipt-verification').getAttribute('data-status')).toBe('valid');
    await poll(() => page.locator('#receipt-verification').textContent()).toContain('verified in this browser');
    await poll(() => page.locator('#receipt-attempts tbody tr').count()).toBe(2);
    await poll(() => page.locator('#receipt-attempts').textContent()).toContain('503');

    // The same receipt with its cost edited in transit: the browser's check fails.
    await page.route(`${gw.url}/graphql`, async (route) => {
      if (!route.request().postData()?.includes('ConsoleReceipt')) return route.continue();
      const response = await route.fetch();
      const json = await response.json();
      json.data.receipt.signedJson.cost_usd = 0;
      return route.fulfill({ response, json });
    });
    await page.reload();
    await poll(() => page.locator('#receipt-verification').getAttribute('data-status')).toBe('invalid');
    await poll(() => page.locator('#receipt-verification').textContent()).toContain('does not match');

    // Edited beside the signed object (the GraphQL cost field): the page shows the signed figures.
    const other = await chat(secret);
    await gw.started.runtime.journal.flush();
    const { receipt: otherReceipt } = await gqlOk(gw.url, gw.adminToken, 'query ($id: ID!) { receipt(id: $id) { signature signedJson } }', { id: other });
    let edit: (receipt: Record<string, unknown>) => void = (receipt) => {
      receipt.costUsd = 123456;
      receipt.model = 'an-edited-model';
    };
    await page.unroute(`${gw.url}/graphql`);
    await page.route(`${gw.url}/graphql`, async (route) => {
      if (!route.request().postData()?.includes('ConsoleReceipt')) return route.continue();
      const response = await route.fetch();
      const json = await response.json();
      edit(json.data.receipt);
      return route.fulfill({ response, json });
    });
    await page.reload();
    await poll(() => page.locator('#receipt-verification').getAttribute('data-status')).toBe('valid');
    const shown = await page.locator('table.fields').textContent();
    expect(shown).toContain(id);
    expect(shown).not.toContain('123456');
    expect(shown).not.toContain('an-edited-model');

    // Another receipt's signed object and signature, genuine both, in place of this one's: refused.
    edit = (receipt) => Object.assign(receipt, otherReceipt);
    await page.reload();
    await poll(() => page.locator('#receipt-verification').getAttribute('data-status')).toBe('invalid');
    await poll(() => page.locator('#receipt-verification').textContent()).toContain('not the one asked for');
    expectOffline(offline);
  });

  it('runs GraphiQL offline, with the token filled in only when opened from the console', async () => {
    const { page, offline } = await offlinePage();
    await signIn(page, gw.adminToken);
    await page.locator('#open-graphiql').waitFor({ state: 'visible' });
    const [graphiql] = await Promise.all([offline.context.waitForEvent('page'), page.click('#open-graphiql')]);
    await graphiql.waitForSelector('.graphiql-container', { timeout: 20_000 });
    await poll(() => editorText(graphiql, 'body')).toContain(`"Authorization": "Bearer ${gw.adminToken}"`);
    await graphiql.click('.graphiql-execute-button');
    await poll(() => editorText(graphiql, '.graphiql-response'), 10_000).toContain('"kind": "admin"');
    // The token is in GraphiQL's memory only: not saved with its tabs (localStorage outlives the
    // tab and sign-out), nor left in the sessionStorage copy a window opened by the console gets.
    const stored = await graphiql.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
    expect(stored).toContain('graphiql'); // GraphiQL did save its tabs
    expect(stored).not.toContain(gw.adminToken);
    expectOffline(offline);

    // Opened by itself (no console, a fresh browser): no token anywhere.
    const direct = await offlinePage();
    const page_ = await direct.page.goto(`${gw.url}/graphql`);
    // The console's protections: its policy (GraphiQL still runs under it, below), never framed.
    expect(page_?.headers()['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(page_?.headers()['x-frame-options']).toBe('DENY');
    await direct.page.waitForSelector('.graphiql-container', { timeout: 20_000 });
    await direct.page.click('.graphiql-execute-button');
    await poll(() => editorText(direct.page, '.graphiql-response'), 10_000).toContain('UNAUTHENTICATED');
    expect(await direct.page.content()).not.toContain(gw.adminToken);
    expectOffline(direct.offline);
  });

  it('sends a wrong or no longer valid token back to sign-in with a clear message', async () => {
    const { page, offline } = await offlinePage();
    await page.goto(`${gw.url}/console`);
    await page.fill('#signin-token', 'tga-not-a-real-token');
    await page.click('#signin-form button[type=submit]');
    await poll(() => page.locator('#signin-message').textContent()).toContain('That token was not accepted');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);

    // Signed in, then the token is revoked: the next query ends the session.
    const { createAccessToken } = await gqlOk(
      gw.url,
      gw.adminToken,
      'mutation ($input: CreateAccessTokenInput!) { createAccessToken(input: $input) { secret token { id } } }',
      {
        input: { name: 'short-lived', role: 'ANALYST' },
      },
    );
    await signIn(page, createAccessToken.secret);
    await waitLive(page);
    // Revoked through the API: refused at once on this instance (elsewhere within the auth cache window).
    await gqlOk(gw.url, gw.adminToken, 'mutation ($id: ID!) { revokeAccessToken(id: $id) { id } }', { id: createAccessToken.token.id });
    // The next query ends it; so may the live socket's own re-check (every 5 s), first, on a
    // slow machine: then the navigation is already gone, and waiting 30 s to click it failed CI.
    await page.click('nav a[data-view="analytics"]', { timeout: 3000 }).catch(() => undefined);
    await poll(() => page.locator('#signin-message').textContent()).toContain('Your session ended');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(page.url()).not.toContain(createAccessToken.secret);
    expect((await gql(gw.url, createAccessToken.secret, '{ viewer { role } }')).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expectOffline(offline);
  });

  it('an expired access token is refused at sign-in, and a session whose token expires goes back to sign-in', async () => {
    const { page, offline } = await offlinePage();
    const create = (expiresAt: Date) =>
      gqlOk(gw.url, gw.adminToken, 'mutation ($input: CreateAccessTokenInput!) { createAccessToken(input: $input) { secret token { expiresAt } } }', {
        input: { name: `expiring-${expiresAt.getTime()}`, role: 'ANALYST', expiresAt: expiresAt.toISOString() },
      }).then((r) => r.createAccessToken as { secret: string; token: { expiresAt: string } });

    // A token valid for a few seconds: accepted now, refused once its expiresAt has passed.
    const expiresAt = new Date(Date.now() + 4000);
    const shortLived = await create(expiresAt);
    expect(new Date(shortLived.token.expiresAt).getTime()).toBe(expiresAt.getTime());
    await signIn(page, shortLived.secret);
    await waitLive(page);
    expect(await page.textContent('#viewer')).toContain('analyst token');
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt.getTime() - Date.now()) + 250));
    // The next query the console makes ends the session, unless the server's check of open
    // websockets (every 5 s) has closed the live socket with 4403 and ended it already.
    await page.click('nav a[data-view="analytics"]', { timeout: 2_000 }).catch(() => undefined);
    await poll(() => page.locator('#signin-message').textContent()).toContain('Your session ended');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(page.url()).not.toContain(shortLived.secret);

    // Signing in again with it is refused like an unknown token.
    await page.fill('#signin-token', shortLived.secret);
    await page.click('#signin-form button[type=submit]');
    await poll(() => page.locator('#signin-message').textContent()).toContain('That token was not accepted');
    expect(await page.locator('#viewer').count()).toBe(0);
    expect((await gql(gw.url, shortLived.secret, '{ viewer { role } }')).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expectOffline(offline);
  });

  it('signs in with an OIDC token from the identity provider, role and team from its claims; an expired one is refused', async () => {
    const team = await gw.createKey('oidc-console-team');
    const admin = await idp.sign({ sub: 'ada', tollgate_role: 'ADMIN' });
    const { page, offline } = await offlinePage();
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await signIn(page, admin);
    await waitLive(page);
    await poll(() => page.locator('#viewer').textContent()).toBe('admin token · all teams');
    await page.click('nav a[data-view="analytics"]');
    await page.waitForSelector('section.analytics[data-state="ready"]');
    for (const url of requested) expect(url).not.toContain(admin);

    // A team-scoped analyst from the identity provider sees its own team only.
    const scoped = await idp.sign({ sub: 'carol', tollgate_role: 'ANALYST', tollgate_team: 'oidc-console-team' }, { key: 'ec' });
    const second = await offlinePage();
    await signIn(second.page, scoped);
    await poll(() => second.page.locator('#viewer').textContent()).toBe('analyst token · team oidc-console-team');
    await waitLive(second.page);
    await poll(() => second.page.locator('#live-team option').allTextContents()).toEqual(['All teams', 'oidc-console-team']);
    await untilSubscribed(second.page, team.secret);

    // An expired token from the same provider goes nowhere.
    const expired = await idp.sign({ sub: 'ada', tollgate_role: 'ADMIN', exp: Math.floor(Date.now() / 1000) - 120 });
    const third = await offlinePage();
    await third.page.goto(`${gw.url}/console`);
    await third.page.fill('#signin-token', expired);
    await third.page.click('#signin-form button[type=submit]');
    await poll(() => third.page.locator('#signin-message').textContent()).toContain('That token was not accepted');
    expect(await third.page.evaluate(() => sessionStorage.length)).toBe(0);
    for (const o of [offline, second.offline, third.offline]) expectOffline(o);
  });

  it('the live tiles (requests, errors, cache hits, failovers, cost per second) agree with the requests sent', async () => {
    const store = gw.started.runtime.adminStore;
    await store.routing.upsertRoute({
      name: 'tiles-cached',
      strategy: 'PRIORITY',
      targets: [{ provider: 'sim', model: 'sim-large' }],
      cache: { mode: 'EXACT', cacheSampled: true } as any,
    });
    await gw.started.runtime.app.catalog.refresh();
    // The team exists before sign-in, so the console lists it in its team filter.
    const tiles = await gw.createKey('tiles-team');
    const { page, offline } = await offlinePage();
    await signIn(page, gw.adminToken);
    await waitLive(page);
    await page.selectOption('#live-team', tiles.teamId);
    await untilSubscribed(page, tiles.secret);
    const probes = await page.locator('tr.decision').count();

    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await chat(tiles.secret));
    // Two upstream 4xx answers: errors, not failovers.
    gw.sim.behave('tiles-broken', { status: 400, times: 2 });
    for (let i = 0; i < 2; i++) {
      const err = await gw
        .client(tiles.secret)
        .chat.completions.create({ model: 'sim/tiles-broken', messages: [{ role: 'user', content: 'x' }] })
        .catch((e) => e);
      expect(err.status).toBe(400);
      ids.push(err.headers.get('x-tollgate-receipt-id'));
    }
    // One miss, then two answers from the cache.
    const cached = { model: 'tiles-cached', messages: [{ role: 'user' as const, content: 'the same question' }] };
    for (let i = 0; i < 3; i++) {
      const { response } = await gw.client(tiles.secret).chat.completions.create(cached).withResponse();
      expect(response.headers.get('x-tollgate-cache')).toBe(i === 0 ? 'miss' : 'exact');
      ids.push(response.headers.get('x-tollgate-receipt-id')!);
    }
    for (const id of ids) await decisionRow(page, id).waitFor({ timeout: 2000 });
    const sent = probes + ids.length;
    expect(await page.locator('tr.decision').count()).toBe(sent);

    // Rates are counts over the last 10 s (at most; since the filter changed, if later) per
    // second of that time, which the tiles carry; everything above happened inside them. One
    // render's figures, read together.
    const shown = () =>
      page.evaluate(() => {
        const tiles = document.querySelector<HTMLElement>('.tile[data-metric="requests"]')!.parentElement!;
        const text = (m: string) => document.querySelector(`.tile[data-metric="${m}"] .value`)!.textContent;
        const brokenErrors = document.querySelectorAll('#live-targets tr[data-target="sim/tiles-broken"] td')[2]?.textContent ?? null;
        return {
          seconds: Number(tiles.dataset.seconds),
          requests: text('requests'),
          errors: text('errors'),
          hits: text('cache-hits'),
          failovers: text('failovers'),
          brokenErrors,
        };
      });
    await poll(async () => {
      const s = await shown();
      return s.requests === rate(sent / s.seconds);
    }, 3000).toBe(true);
    const s = await shown();
    expect(s.seconds).toBeGreaterThan(0);
    expect(s.seconds).toBeLessThanOrEqual(10);
    expect(s).toMatchObject({ errors: rate(2 / s.seconds), hits: rate(2 / s.seconds), failovers: rate(0), brokenErrors: rate(2 / s.seconds) });
    const tile = (metric: string) => page.locator(`.tile[data-metric="${metric}"] .value`).textContent();

    // Cost per second: the team's cost over the last minute (from the receipts), over 60 s.
    const cost = (await storedReceipts(gw, tiles.teamId)).reduce((sum, r) => sum + (r.cost_usd ?? 0), 0);
    expect(cost).toBeGreaterThan(0);
    // Shown to three significant digits (usd()), summed in another order than here: the shown
    // figure is the receipts' figure to within half a unit of its last digit (a filter change
    // shows $0.00 until the next cost poll, hence the wait).
    const shownMatches = async () => {
      const text = (await tile('cost')) ?? '';
      const decimals = text.split('.')[1]?.length ?? 0;
      const shown = Number(text.replace('$', ''));
      return shown > 0 && Math.abs(shown - cost / 60) <= 0.5 * 10 ** -decimals + 1e-15;
    };
    await poll(shownMatches, 8000).toBe(true);
    expectOffline(offline);
  });

  it('says when the live stream drops, and reconnects with backoff', async () => {
    const { secret } = await gw.createKey('reconnect-team');
    const { page, offline } = await offlinePage();
    const sockets: WebSocketRoute[] = [];
    const servers: WebSocketRoute[] = [];
    await page.routeWebSocket(/\/graphql$/, (ws) => {
      servers.push(ws.connectToServer());
      sockets.push(ws);
    });
    await signIn(page, gw.adminToken);
    await waitLive(page);
    expect(sockets).toHaveLength(1);

    await sockets[0]!.close({ code: 1001, reason: 'dropped by the test' });
    const status = page.locator('#live-status');
    await poll(() => status.getAttribute('data-state')).toBe('reconnecting');
    await poll(() => status.textContent()).toMatch(/Connection lost: reconnecting in \d+ s \(attempt 1\)/);
    await poll(() => status.getAttribute('data-state'), 10_000).toBe('live');
    expect(sockets).toHaveLength(2);
    // The subscription is back: new requests show again.
    await untilSubscribed(page, secret);

    // A close graphql-ws does not retry itself (1008, a slow consumer): the view starts its
    // stream again after a backoff.
    await sockets[1]!.close({ code: 1008, reason: 'slow consumer' });
    await poll(() => status.getAttribute('data-state')).toBe('lost');
    await poll(() => status.getAttribute('data-state'), 10_000).toBe('live');
    expect(sockets).toHaveLength(3);
    await untilSubscribed(page, secret);

    // A socket that went silent (pings unanswered: a laptop asleep, a proxy that dropped it)
    // is noticed within a ping and its timeout, and replaced.
    servers[2]!.onMessage((m) => {
      if (!String(m).includes('"pong"')) sockets[2]!.send(m);
    });
    await poll(() => status.getAttribute('data-state'), 35_000).toBe('reconnecting'); // a ping every 10 s, then 15 s for its pong
    await poll(() => status.getAttribute('data-state'), 10_000).toBe('live');
    expect(sockets).toHaveLength(4);
    await untilSubscribed(page, secret);

    // Dropped again, then the view is left before its restart: no socket opens behind it.
    await sockets[3]!.close({ code: 1008, reason: 'slow consumer' });
    await poll(() => status.getAttribute('data-state')).toBe('lost');
    await page.click('nav a[data-view="analytics"]');
    await new Promise((resolve) => setTimeout(resolve, 5000)); // past the restart's 2–4 s
    expect(sockets).toHaveLength(4);
    expectOffline(offline);
  }, 120_000);

  it('says why the server refused the live stream, and does not ask again until the filter changes', async () => {
    const { page, offline } = await offlinePage();
    let subscribes = 0;
    await page.routeWebSocket(/\/graphql$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        const message = JSON.parse(String(m));
        if (message.type !== 'subscribe') return server.send(m);
        subscribes++;
        ws.send(
          JSON.stringify({
            id: message.id,
            type: 'error',
            payload: [
              { message: 'filter.routes: at most 100 values of at most 256 characters', extensions: { code: 'BAD_USER_INPUT', field: 'filter.routes' } },
            ],
          }),
        );
      });
    });
    await signIn(page, gw.adminToken);
    const status = page.locator('#live-status');
    await poll(() => status.getAttribute('data-state')).toBe('refused');
    await poll(() => status.textContent()).toBe('Live stream refused: filter.routes: at most 100 values of at most 256 characters');
    await new Promise((resolve) => setTimeout(resolve, 5000)); // past any restart's backoff
    expect(subscribes).toBe(1);
    expect(await status.getAttribute('data-state')).toBe('refused');
    expectOffline(offline);
  });
});

describe('console secrets stay out of the logs', () => {
  it("no token used in a console session (admin, access token, OIDC, a wrong one) appears in the gateway's log output", async () => {
    // A gateway of its own, as a process, so everything it writes (stdout and stderr, at debug
    // level) is captured; the admin token comes from the environment so the banner never prints it.
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-console-logs-'));
    const template = inject('pgTemplateDir');
    if (template) await cp(path.join(template, 'pg'), path.join(dataDir, 'pg'), { recursive: true });
    const adminToken = `tga-${randomBytes(24).toString('base64url')}`;
    const proc = await startTollgateProcess({
      TOLLGATE_DATA_DIR: dataDir,
      TOLLGATE_ADMIN_TOKEN: adminToken,
      TOLLGATE_LOG_LEVEL: 'debug',
      TOLLGATE_OIDC_ISSUER: idp.issuer,
      TOLLGATE_OIDC_AUDIENCE: idp.audience,
      ...(process.env.CLICKHOUSE_URL ? { CLICKHOUSE_URL: process.env.CLICKHOUSE_URL } : {}),
      ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : {}),
    });
    const secrets: Record<string, string> = { adminToken };
    try {
      const { createAccessToken } = await gqlOk(
        proc.url,
        adminToken,
        'mutation ($input: CreateAccessTokenInput!) { createAccessToken(input: $input) { secret token { id } } }',
        {
          input: { name: 'log-check', role: 'ANALYST' },
        },
      );
      const oidc = await idp.sign({ sub: 'ada', tollgate_role: 'ADMIN' });
      const wrong = `tga-${randomBytes(24).toString('base64url')}`;
      Object.assign(secrets, { accessToken: createAccessToken.secret, oidc, wrong });

      const { page, offline } = await offlinePage();
      for (const token of [adminToken, createAccessToken.secret, oidc]) {
        await page.goto(`${proc.url}/console`);
        await page.fill('#signin-token', token);
        await page.click('#signin-form button[type=submit]');
        await page.waitForSelector('#live-status[data-state="live"]', { timeout: 10_000 });
        await page.click('nav a[data-view="analytics"]');
        await page.waitForSelector('section.analytics[data-state="ready"]');
        await page.click('nav a[data-view="receipts"]');
        await page.click('#signout');
        await page.locator('#signin-form').waitFor({ state: 'visible' });
      }
      await page.fill('#signin-token', wrong);
      await page.click('#signin-form button[type=submit]');
      await poll(() => page.locator('#signin-message').textContent()).toContain('That token was not accepted');
      // The revoked access token is tried once more: a refusal must not quote it either.
      await gqlOk(proc.url, adminToken, 'mutation ($id: ID!) { revokeAccessToken(id: $id) { id } }', { id: createAccessToken.token.id });
      await page.fill('#signin-token', createAccessToken.secret);
      await page.click('#signin-form button[type=submit]');
      await poll(() => page.locator('#signin-message').textContent()).toContain('That token was not accepted');
      expectOffline(offline);
    } finally {
      proc.child.kill('SIGTERM');
      await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 15_000))]);
      await rm(dataDir, { recursive: true, force: true });
    }
    const output = proc.output();
    // The capture works: it holds the server's JSON log lines from start to drain (Tollgate
    // logs no line per request, so a leak would come from an error or warning path).
    expect(output).toContain('"msg":"clickhouse migrated"');
    expect(output).toContain('Tollgate is listening on');
    expect(output).toContain('"msg":"stopped"');
    expect(Object.keys(secrets)).toEqual(['adminToken', 'accessToken', 'oidc', 'wrong']);
    // Neither whole nor in part: each secret's tail (past any fixed prefix), and a JWT's signature.
    const leaked = Object.entries(secrets).filter(([, secret]) => output.includes(secret) || output.includes(secret.slice(-20)));
    expect(leaked.map(([name]) => name)).toEqual([]);
  }, 120_000);
});

describe('console assets', () => {
  it('serves only its own files, read-only', async () => {
    expect((await fetch(`${gw.url}/console/../package.json`)).status).toBe(404);
    expect((await fetch(`${gw.url}/console/nope.js`)).status).toBe(404);
    expect((await fetch(`${gw.url}/console/`, { method: 'POST' })).status).toBe(405);
    const js = await fetch(`${gw.url}/console/console.js`);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    const etag = js.headers.get('etag')!;
    expect((await fetch(`${gw.url}/console/console.js`, { headers: { 'if-none-match': etag } })).status).toBe(304);
  });
});

/**
 * Every number the analytics page shows (with its data-query, data-field and row data-key)
 * equals the answer to the same question asked here, with the page's own range.
 */
async function expectPageEqualsGraphQL(page: Page, dim: string, teamIds?: string[]): Promise<void> {
  const shown = await page.evaluate(() => {
    const note = document.getElementById('analytics-range')!;
    const cells = [...document.querySelectorAll<HTMLElement>('section.analytics [data-query][data-field]')].map((el) => ({
      query: el.dataset.query!,
      field: el.dataset.field!,
      key: el.closest('tr')?.dataset.key ?? null,
      value: JSON.parse(el.dataset.value!) as number | null,
      text: el.textContent,
    }));
    return { from: note.dataset.from!, to: note.dataset.to!, cells };
  });
  const filter = { from: shown.from, to: shown.to, ...(teamIds ? { teamIds } : {}) };
  const key = 'key { model teamId feature }';
  const answers = await gqlOk(
    gw.url,
    gw.adminToken,
    `query ($filter: AnalyticsFilter!, $groupBy: [Dimension!]) {
      totalUsage: usage(filter: $filter) { requests errors costUsd unpricedRequests }
      totalTasks: costPerTask(filter: $filter) { tasks costPerTaskUsd costPerSucceededTaskUsd }
      totalLatency: latency(filter: $filter) { p50Ms p95Ms p99Ms ttftP50Ms ttftP95Ms }
      totalCache: cacheStats(filter: $filter) { hitRate savedCostUsd }
      usage(filter: $filter, groupBy: $groupBy) { ${key} requests errors costUsd unpricedRequests }
      costPerTask(filter: $filter, groupBy: $groupBy) { ${key} tasks succeededTasks costPerTaskUsd costPerSucceededTaskUsd }
      latency(filter: $filter, groupBy: $groupBy) { ${key} requests p50Ms p95Ms p99Ms ttftP50Ms ttftP95Ms ttftP99Ms }
      cacheStats(filter: $filter, groupBy: $groupBy) { ${key} requests hits hitRate savedCostUsd }
    }`,
    { filter, groupBy: [dim] },
  );
  const keyOf = (k: { model: string | null; teamId: string | null; feature: string | null }) =>
    ({ MODEL: k.model, TEAM: k.teamId, FEATURE: k.feature })[dim] ?? '';
  expect(shown.cells.length).toBeGreaterThan(13);
  for (const c of shown.cells) {
    const rows = answers[c.query] as Array<Record<string, any>>;
    const row = c.key === null ? rows[0] : rows.find((r) => keyOf(r.key) === c.key);
    expect({ ...c, value: c.value }, `${c.query}.${c.field} for ${c.key ?? 'all'}`).toEqual({ ...c, value: row ? (row[c.field] ?? null) : null });
    expect(c.text).not.toBe('');
  }
  // And nothing GraphQL answered is missing from the page.
  for (const q of ['usage', 'costPerTask', 'latency', 'cacheStats']) {
    for (const r of answers[q]) expect(shown.cells.some((c) => c.query === q && c.key === keyOf(r.key))).toBe(true);
  }
  expect(answers.totalUsage[0].requests).toBeGreaterThan(0);
}
