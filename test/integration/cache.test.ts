// Response cache through the real proxy (official openai client, loopback simulated provider):
// hit/miss/bypass per mode and per request, tenant isolation, stream replay, what is never
// cached, TTL, eviction, restart, receipts and cacheStats.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchReceipt } from '../../src/receipts/rows.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { gqlOk } from '../support/graphql.js';

let gw: TestGateway;
let secretA: string;
let secretB: string;
const receiptIds: string[] = [];

async function route(name: string, model: string, cache: Record<string, unknown>, provider = 'sim') {
  await gw.started.runtime.adminStore.routing.upsertRoute({ name, strategy: 'PRIORITY', targets: [{ provider, model }], cache: cache as any });
  await gw.started.runtime.app.catalog.refresh();
}

/** One chat call through the official client: the answer text, the cache header, the receipt id. */
async function ask(secret: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const client = gw.client(secret, { defaultHeaders: headers });
  const { data, response } = await client.chat.completions.create({ temperature: 0, ...body } as any).withResponse();
  let text = '';
  let usage: any = null;
  if (body.stream) {
    for await (const chunk of data as any) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
  } else {
    text = (data as any).choices[0].message.content;
    usage = (data as any).usage;
  }
  const receiptId = response.headers.get('x-tollgate-receipt-id')!;
  receiptIds.push(receiptId);
  return {
    text,
    usage,
    data: data as any,
    cache: response.headers.get('x-tollgate-cache'),
    similarity: response.headers.get('x-tollgate-cache-similarity'),
    receiptId,
  };
}

const upstreamCalls = (model: string) => gw.sim.requests.filter((r) => r.path.endsWith('/chat/completions') && r.body?.model === model).length;
const msg = (content: string) => [{ role: 'user', content }];

async function cancelledCount(): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const line = text.split('\n').find((l) => /^tollgate_request_errors_total\{.*code="client_cancelled"/.test(l));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

beforeAll(async () => {
  gw = await startTestGateway();
  secretA = (await gw.createKey('team-a')).secret;
  secretB = (await gw.createKey('team-b')).secret;
  await route('exact', 'm-exact', { mode: 'EXACT', ttlSeconds: 600 });
  await route('semantic', 'm-sem', { mode: 'SEMANTIC', ttlSeconds: 600 });
  await route('off', 'm-off', { mode: 'OFF' });
  await route('sampled-ok', 'm-sampled', { mode: 'EXACT', cacheSampled: true });
  await route('tools-ok', 'm-tools-ok', { mode: 'EXACT', cacheToolCalls: true });
  await route('short-ttl', 'm-ttl', { mode: 'EXACT', ttlSeconds: 1 });
  await gw.started.runtime.adminStore.pricing.setPrice({ provider: 'sim', model: 'm-exact', inputPerMTokUsd: 2, outputPerMTokUsd: 8 });
  await gw.started.runtime.app.catalog.refresh();
});
afterAll(async () => {
  await gw?.close();
});

describe('exact cache', () => {
  it('answers a repeated deterministic request from the cache, without calling upstream', async () => {
    const first = await ask(secretA, { model: 'exact', messages: msg('What is a monad?') });
    const calls = upstreamCalls('m-exact');
    const decisions: any[] = [];
    const unsubscribe = gw.started.runtime.app.bus.decisions.subscribe((d) => decisions.push(d));
    const second = await ask(secretA, { model: 'exact', messages: msg('What is a monad?') });
    unsubscribe();
    expect(decisions).toEqual([
      expect.objectContaining({ outcome: 'CACHE_HIT', reason: 'cache_exact', receiptId: second.receiptId, provider: 'sim', model: 'm-exact' }),
    ]);
    expect([first.cache, second.cache]).toEqual(['miss', 'exact']);
    expect(second.text).toBe(first.text);
    expect(second.usage).toEqual(first.usage);
    expect(second.data.id).not.toBe(first.data.id);
    expect(upstreamCalls('m-exact')).toBe(calls);
  });

  it('ignores key order, whitespace and fields that do not change the answer (user, metadata, stream_options)', async () => {
    await ask(secretA, { model: 'exact', messages: msg('Key order test') });
    const raw = `{ "messages" : [ { "content" : "Key order test", "role" : "user" } ],
      "temperature": 0, "user": "someone-else", "metadata": {"feature": "x"}, "model": "exact" }`;
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secretA}`, 'content-type': 'application/json' },
      body: raw,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-tollgate-cache')).toBe('exact');
  });

  it('a different prompt, parameter or route is a miss', async () => {
    await ask(secretA, { model: 'exact', messages: msg('Parameter test') });
    expect((await ask(secretA, { model: 'exact', messages: msg('Parameter test'), max_tokens: 5 })).cache).toBe('miss');
    expect((await ask(secretA, { model: 'exact', messages: msg('Parameter test!') })).cache).toBe('miss');
    expect((await ask(secretA, { model: 'exact', messages: [{ role: 'system', content: 'Be terse.' }, ...msg('Parameter test')] })).cache).toBe('miss');
  });

  it('never serves one team an answer stored for another', async () => {
    const a = await ask(secretA, { model: 'exact', messages: msg('Tenant isolation?') });
    const b1 = await ask(secretB, { model: 'exact', messages: msg('Tenant isolation?') });
    const b2 = await ask(secretB, { model: 'exact', messages: msg('Tenant isolation?') });
    expect([a.cache, b1.cache, b2.cache]).toEqual(['miss', 'miss', 'exact']);
  });

  it('OFF routes and sampled requests bypass the cache; a route may allow sampled answers', async () => {
    for (let i = 0; i < 2; i++) expect((await ask(secretA, { model: 'off', messages: msg('off route') })).cache).toBe('bypass');
    const sampled = { model: 'exact', messages: msg('sampled'), temperature: 0.7 };
    expect([(await ask(secretA, sampled)).cache, (await ask(secretA, sampled)).cache]).toEqual(['bypass', 'bypass']);
    const seeded = { model: 'exact', messages: msg('seeded'), temperature: 0.7, seed: 42 };
    expect([(await ask(secretA, seeded)).cache, (await ask(secretA, seeded)).cache]).toEqual(['miss', 'exact']);
    const many = { model: 'exact', messages: msg('n=2'), n: 2 };
    expect((await ask(secretA, many)).cache).toBe('bypass');
    const allowed = { model: 'sampled-ok', messages: msg('sampled but allowed'), temperature: 1 };
    expect([(await ask(secretA, allowed)).cache, (await ask(secretA, allowed)).cache]).toEqual(['miss', 'exact']);
  });

  it('x-tollgate-cache: no-cache skips the lookup but stores; no-store does neither', async () => {
    const body = { model: 'exact', messages: msg('directive test') };
    expect((await ask(secretA, body, { 'x-tollgate-cache': 'no-store' })).cache).toBe('bypass');
    expect((await ask(secretA, body, { 'x-tollgate-cache': 'no-cache' })).cache).toBe('bypass');
    expect((await ask(secretA, body)).cache).toBe('exact');
    const other = { model: 'exact', messages: msg('directive test 2') };
    await ask(secretA, other, { 'x-tollgate-cache': 'no-store' });
    expect((await ask(secretA, other)).cache).toBe('miss');
  });
});

describe('streaming', () => {
  it('replays a stored stream as SSE with the same text, the usage chunk when asked, and [DONE]', async () => {
    const body = { model: 'exact', messages: msg('Stream me a story'), stream: true, stream_options: { include_usage: true } };
    const first = await ask(secretA, body);
    const second = await ask(secretA, body);
    expect([first.cache, second.cache]).toEqual(['miss', 'exact']);
    expect(second.text).toBe(first.text);
    expect(first.text.length).toBeGreaterThan(10);
    expect(second.usage).toEqual(first.usage);
    // Raw bytes: several content chunks, a finish chunk, then [DONE] and the receipt event.
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secretA}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, temperature: 0 }),
    });
    const raw = await res.text();
    const data = raw
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => e.slice(6));
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(chunks.filter((c) => c.choices[0]?.delta?.content).length).toBeGreaterThan(3);
    expect(chunks.filter((c) => c.choices[0]?.finish_reason === 'stop')).toHaveLength(1);
    expect(chunks.at(-1).usage).toEqual(first.usage);
    expect(raw).toContain(': tollgate-receipt ');
  });

  it('a streamed answer serves a JSON request, and a JSON answer a streamed one', async () => {
    const streamed = await ask(secretA, { model: 'exact', messages: msg('cross form A'), stream: true });
    const json = await ask(secretA, { model: 'exact', messages: msg('cross form A') });
    expect(json.cache).toBe('exact');
    expect(json.text).toBe(streamed.text);
    const json2 = await ask(secretA, { model: 'exact', messages: msg('cross form B') });
    const streamed2 = await ask(secretA, { model: 'exact', messages: msg('cross form B'), stream: true });
    expect(streamed2.cache).toBe('exact');
    expect(streamed2.text).toBe(json2.text);
    expect(streamed2.usage).toBeNull(); // not asked for
  });

  it("an answer the upstream sent without usage is replayed with its receipt's token counts, not 0/0", async () => {
    gw.sim.behave('m-exact', { omitUsage: true, times: 1 });
    const first = await ask(secretA, { model: 'exact', messages: msg('no usage from upstream'), stream: true });
    const hit = await ask(secretA, { model: 'exact', messages: msg('no usage from upstream') });
    expect(hit.cache).toBe('exact');
    await gw.started.runtime.journal.flush();
    const receipt = async (id: string) => (await fetchReceipt(gw.started.runtime.clickhouse.client, id))!;
    const original = await receipt(first.receiptId);
    expect(original.usage_estimated).toBe(true);
    expect(original.completion_tokens).toBeGreaterThan(0);
    expect(hit.usage).toMatchObject({ prompt_tokens: original.prompt_tokens, completion_tokens: original.completion_tokens });
    const replayed = await receipt(hit.receiptId);
    expect([replayed.prompt_tokens, replayed.completion_tokens]).toEqual([original.prompt_tokens, original.completion_tokens]);
    expect(replayed.usage_estimated).toBe(true); // estimated then, so estimated now
  });
});

describe('never cached', () => {
  it('errors are not cached', async () => {
    gw.sim.behave('m-exact', { status: 400, times: 1 });
    const client = gw.client(secretA);
    await expect(client.chat.completions.create({ model: 'exact', messages: msg('error once'), temperature: 0 } as any)).rejects.toMatchObject({ status: 400 });
    expect((await ask(secretA, { model: 'exact', messages: msg('error once') })).cache).toBe('miss');
  });

  it('answers cut short or filtered by the provider are not cached; one cut at its own max_tokens is', async () => {
    for (const finishReason of ['length', 'content_filter'] as const) {
      gw.sim.behave('m-exact', { finishReason, times: 1 });
      const question = msg(`cut or filtered: ${finishReason}`);
      expect((await ask(secretA, { model: 'exact', messages: question })).data.choices[0].finish_reason).toBe(finishReason);
      expect((await ask(secretA, { model: 'exact', messages: question })).cache).toBe('miss');
    }
    // Its own limit cut it (8 tokens asked, 8 given): the next identical request is cut the same.
    const limited = { model: 'exact', messages: msg('a long story, please, in many many words'), max_tokens: 4 };
    expect((await ask(secretA, limited)).data.choices[0].finish_reason).toBe('length');
    expect((await ask(secretA, limited)).cache).toBe('exact');
  });

  it('an answer with nothing in it (empty text, no tool call or refusal) is not cached', async () => {
    gw.sim.behave('m-exact', { content: '', times: 1 });
    const question = msg('answered with nothing');
    expect((await ask(secretA, { model: 'exact', messages: question })).data.choices[0].message.content).toBe('');
    expect((await ask(secretA, { model: 'exact', messages: question })).cache).toBe('miss');
    expect((await ask(secretA, { model: 'exact', messages: question })).cache).toBe('exact'); // the second had text
  });

  it('partial and cancelled streams are not cached', async () => {
    const client = gw.client(secretA);
    const drain = async (stream: any, each: () => void = () => undefined) => {
      let chunks = 0;
      try {
        for await (const _ of stream) {
          chunks++;
          each();
        }
      } catch {
        // a broken or aborted stream may end either way; what matters is what was stored
      }
      return chunks;
    };
    gw.sim.behave('m-exact', { breakAfterChunks: 2, times: 1 });
    const broken = await client.chat.completions.create({ model: 'exact', messages: msg('break me'), temperature: 0, stream: true } as any);
    expect(await drain(broken)).toBeGreaterThan(0);
    expect((await ask(secretA, { model: 'exact', messages: msg('break me'), stream: true })).cache).toBe('miss');

    gw.sim.behave('m-exact', { dripMs: 50, times: 1 });
    const controller = new AbortController();
    const cancelled = await client.chat.completions.create({ model: 'exact', messages: msg('cancel me'), temperature: 0, stream: true } as any, {
      signal: controller.signal,
    });
    await drain(cancelled, () => controller.abort());
    await new Promise((r) => setTimeout(r, 200));
    expect((await ask(secretA, { model: 'exact', messages: msg('cancel me') })).cache).toBe('miss');
  });

  it('tool-call answers are cached only where the route allows it', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const body = (model: string) => ({ model, messages: msg('Weather in Oslo?'), tools, tool_choice: 'required' });
    const a = await ask(secretA, body('exact'));
    expect(a.data.choices[0].message.tool_calls).toHaveLength(1);
    expect((await ask(secretA, body('exact'))).cache).toBe('miss');
    await ask(secretA, body('tools-ok'));
    const hit = await ask(secretA, body('tools-ok'));
    expect(hit.cache).toBe('exact');
    expect(hit.data.choices[0].message.tool_calls[0].function.name).toBe('get_weather');
  });
});

describe('semantic cache (local embedder)', () => {
  it('hits on a reworded question, misses on a different detail or another conversation', async () => {
    const first = await ask(secretA, { model: 'semantic', messages: msg('What is the capital of France?') });
    const reworded = await ask(secretA, { model: 'semantic', messages: msg('hey, could you tell me what the capital of france is') });
    expect([first.cache, reworded.cache]).toEqual(['miss', 'semantic']);
    expect(reworded.text).toBe(first.text);
    expect(Number(reworded.similarity)).toBeGreaterThan(0.9);
    expect((await ask(secretA, { model: 'semantic', messages: msg('What is the capital of Spain?') })).cache).toBe('miss');
    const inConversation = [{ role: 'system', content: 'Answer in French.' }, ...msg('What is the capital of France?')];
    expect((await ask(secretA, { model: 'semantic', messages: inConversation })).cache).toBe('miss');
    expect((await ask(secretB, { model: 'semantic', messages: msg('what is the capital of france') })).cache).toBe('miss');
  });

  it('a last turn that differs in more than its text (its name) is a miss', async () => {
    const named = (name: string) => [{ role: 'user', content: 'What is the capital of Italy?', name }];
    expect((await ask(secretA, { model: 'semantic', messages: named('alice') })).cache).toBe('miss');
    expect((await ask(secretA, { model: 'semantic', messages: named('alice') })).cache).toBe('exact');
    expect((await ask(secretA, { model: 'semantic', messages: named('bob') })).cache).toBe('miss');
  });

  it('a number that differs is a miss even when almost every word matches', async () => {
    await ask(secretA, { model: 'semantic', messages: msg('Convert 100 USD to EUR at today’s rate and explain the fees involved.') });
    expect((await ask(secretA, { model: 'semantic', messages: msg('Convert 150 USD to EUR at today’s rate and explain the fees involved.') })).cache).toBe(
      'miss',
    );
  });

  it('uses a provider embeddings model when the route names one', async () => {
    await route('semantic-remote', 'm-sem-remote', { mode: 'SEMANTIC', embeddingModel: 'embed-default', similarityThreshold: 0.8 });
    const embedCalls = () => gw.sim.requests.filter((r) => r.path.endsWith('/embeddings')).length;
    const before = embedCalls();
    const first = await ask(secretA, { model: 'semantic-remote', messages: msg('How do I list files in a directory') });
    const second = await ask(secretA, { model: 'semantic-remote', messages: msg('how do I list the files in a directory?') });
    expect([first.cache, second.cache]).toEqual(['miss', 'semantic']);
    expect(embedCalls() - before).toBe(2);
  });

  it('an embeddings model that keeps failing is skipped by its breaker: requests go on as misses without waiting on it', async () => {
    // A model of its own: the breaker it opens must not affect the other tests' embeddings.
    await route('embed-broken', 'sim-embed-broken', { mode: 'OFF' });
    await route('semantic-broken', 'm-sem-broken', { mode: 'SEMANTIC', embeddingModel: 'embed-broken', similarityThreshold: 0.8 });
    const embedCalls = () => gw.sim.requests.filter((r) => r.path.endsWith('/embeddings') && r.body?.model === 'sim-embed-broken').length;
    const failures = gw.config.breaker.failures;
    // Refusals of the input (400) say nothing about the model: they never open it.
    gw.sim.behave('sim-embed-broken', { status: 400 });
    for (let i = 0; i <= failures; i++) expect((await ask(secretA, { model: 'semantic-broken', messages: msg(`refused ${i}`) })).cache).toBe('miss');
    expect(embedCalls()).toBe(failures + 1);
    gw.sim.behave('sim-embed-broken', { status: 500 });
    for (let i = 0; i < failures + 3; i++) {
      const answered = await ask(secretA, { model: 'semantic-broken', messages: msg(`question number ${i}`) });
      expect(answered.cache).toBe('miss');
    }
    // Called until the breaker opened, then not at all (each call was the request's time before).
    expect(embedCalls()).toBe(2 * failures + 1);
  });
});

describe('embeddings', () => {
  it('are answered from the exact cache when the route caches (README: embeddings always)', async () => {
    await route('embed-cached', 'sim-embed', { mode: 'EXACT', ttlSeconds: 600 });
    const embedCalls = () => gw.sim.requests.filter((r) => r.path.endsWith('/embeddings') && r.body?.model === 'sim-embed').length;
    const before = embedCalls();
    const client = gw.client(secretA);
    const first = await client.embeddings.create({ model: 'embed-cached', input: ['cache me', 'and me'] }).withResponse();
    const second = await client.embeddings.create({ model: 'embed-cached', input: ['cache me', 'and me'] }).withResponse();
    expect([first.response.headers.get('x-tollgate-cache'), second.response.headers.get('x-tollgate-cache')]).toEqual(['miss', 'exact']);
    expect(second.data.data.map((d) => d.embedding)).toEqual(first.data.data.map((d) => d.embedding));
    expect(second.data.usage).toEqual(first.data.usage);
    expect(embedCalls() - before).toBe(1);
    // Another team's identical request is its own.
    const other = await gw
      .client(secretB)
      .embeddings.create({ model: 'embed-cached', input: ['cache me', 'and me'] })
      .withResponse();
    expect(other.response.headers.get('x-tollgate-cache')).toBe('miss');
  });
});

describe('the route a request is served by', () => {
  it('answers a request a rule sends elsewhere from that route, and misses once a route changes its model', async () => {
    const routing = gw.started.runtime.adminStore.routing;
    await routing.upsertRoute({ name: 'ruled', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'm-ruled' }], cache: { mode: 'EXACT' } as any });
    await routing.upsertRoute({
      name: 'ruling',
      strategy: 'PRIORITY',
      targets: [{ provider: 'sim', model: 'm-ruling' }],
      cache: { mode: 'EXACT' } as any,
      rules: [
        { name: 'legal', when: 'request.feature == "legal"', route: 'ruled' },
        { name: 'vip', when: 'request.feature == "vip"', targets: [{ provider: 'sim', model: 'm-vip' }] },
      ],
    } as any);
    await gw.started.runtime.app.catalog.refresh();
    const body = { model: 'ruling', messages: msg('Which court hears this?') };
    expect((await ask(secretA, body)).cache).toBe('miss');
    expect((await ask(secretA, body)).cache).toBe('exact');
    // The same question, routed to another route or to a rule's own targets: not the cheap model's answer.
    expect((await ask(secretA, body, { 'x-tollgate-feature': 'legal' })).cache).toBe('miss');
    expect((await ask(secretA, body, { 'x-tollgate-feature': 'vip' })).cache).toBe('miss');
    expect([upstreamCalls('m-ruling'), upstreamCalls('m-ruled'), upstreamCalls('m-vip')]).toEqual([1, 1, 1]);
    expect((await ask(secretA, body, { 'x-tollgate-feature': 'legal' })).cache).toBe('exact');
    // An admin moves the route to another model: its old answers are not served for it.
    await routing.upsertRoute({ name: 'ruled', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'm-ruled-v2' }], cache: { mode: 'EXACT' } as any });
    await gw.started.runtime.app.catalog.refresh();
    expect((await ask(secretA, body, { 'x-tollgate-feature': 'legal' })).cache).toBe('miss');
    expect(upstreamCalls('m-ruled-v2')).toBe(1);
  });

  it("misses once the provider's modelMap sends the same model name to another model", async () => {
    const providers = gw.started.runtime.adminStore.providers;
    await providers.upsertProvider({
      name: 'sim-mapped',
      kind: 'SIMULATED',
      baseUrl: gw.sim.url,
      apiKey: 'sim-upstream-secret',
      modelMap: { alias: 'real-1' },
    });
    await route('mapped', 'alias', { mode: 'EXACT' }, 'sim-mapped');
    const body = { model: 'mapped', messages: msg('Which model are you?') };
    expect((await ask(secretA, body)).cache).toBe('miss');
    expect((await ask(secretA, body)).cache).toBe('exact');
    await providers.upsertProvider({
      name: 'sim-mapped',
      kind: 'SIMULATED',
      baseUrl: gw.sim.url,
      apiKey: 'sim-upstream-secret',
      modelMap: { alias: 'real-2' },
    });
    await gw.started.runtime.app.catalog.refresh();
    expect((await ask(secretA, body)).cache).toBe('miss');
    expect(upstreamCalls('real-2')).toBe(1);
  });
});

describe('a client that leaves before the upstream call', () => {
  it('is recorded as cancelled and never forwarded, even when it left during a slow embedding', async () => {
    await route('semantic-slow', 'm-sem-slow', { mode: 'SEMANTIC', embeddingModel: 'embed-default', similarityThreshold: 0.8 });
    gw.sim.behave('sim-embed', { latencyMs: 600, times: 1 });
    const appended = () => gw.started.runtime.journal.stats().appendedRecords;
    const before = appended();
    const cancelledBefore = await cancelledCount();
    const leave = new AbortController();
    const sent = fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secretA}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'semantic-slow', stream: true, temperature: 0, messages: msg('gone before the answer') }),
      signal: leave.signal,
    }).catch((err: unknown) => err);
    await new Promise((r) => setTimeout(r, 200));
    leave.abort();
    await sent;
    // One receipt, soon after the embedding returns (not at the route's total timeout), and
    // the chat upstream never called: nothing to bill, no failure counted against the target.
    await expect.poll(appended, { timeout: 5_000 }).toBe(before + 1);
    expect(upstreamCalls('m-sem-slow')).toBe(0);
    expect((await cancelledCount()) - cancelledBefore).toBe(1);
  });
});

describe('lifetime', () => {
  it('entries expire after their TTL', async () => {
    const body = { model: 'short-ttl', messages: msg('ttl') };
    expect((await ask(secretA, body)).cache).toBe('miss');
    expect((await ask(secretA, body)).cache).toBe('exact');
    await new Promise((r) => setTimeout(r, 1_200));
    expect((await ask(secretA, body)).cache).toBe('miss');
  });
});

describe('receipts and cacheStats', () => {
  it('a hit costs 0 and records what it saved; cacheStats counts every status', async () => {
    const miss = await ask(secretA, { model: 'exact', messages: msg('receipt check') });
    const hit = await ask(secretA, { model: 'exact', messages: msg('receipt check') });
    await gw.started.runtime.journal.flush();
    const ch = gw.started.runtime.clickhouse.client;
    const missReceipt = (await fetchReceipt(ch, miss.receiptId))!;
    const hitReceipt = (await fetchReceipt(ch, hit.receiptId))!;
    expect(missReceipt.cost_usd).toBeGreaterThan(0);
    expect(missReceipt.cache_status).toBe('miss');
    expect(hitReceipt).toMatchObject({ cache_status: 'exact', cost_usd: 0, cache_similarity: 1, provider: 'sim', model: 'm-exact', status: 'ok' });
    expect(hitReceipt.saved_cost_usd).toBeCloseTo(missReceipt.cost_usd!, 12);

    // Every receipt of this file, recounted here and compared with cacheStats.
    const receipts = await Promise.all(receiptIds.map((id) => fetchReceipt(ch, id)));
    const mine = receipts.filter((r) => r !== null);
    expect(mine.length).toBe(receiptIds.length);
    const d = await gqlOk(
      gw.url,
      gw.adminToken,
      `query($f: AnalyticsFilter!) { cacheStats(filter: $f, groupBy: [CACHE_STATUS]) { key { cacheStatus } requests hits exactHits semanticHits savedCostUsd } }`,
      {
        f: { from: new Date(Date.now() - 3_600_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString() },
      },
    );
    const byStatus = new Map<string, any>(d.cacheStats.map((r: any) => [r.key.cacheStatus, r]));
    for (const status of ['miss', 'exact', 'semantic', 'bypass']) {
      const expected = mine.filter((r) => r!.cache_status === status);
      expect(byStatus.get(status)?.requests ?? 0, status).toBeGreaterThanOrEqual(expected.length);
      expect(expected.length, status).toBeGreaterThan(0);
    }
    expect(byStatus.get('exact').exactHits).toBe(byStatus.get('exact').requests);
    expect(byStatus.get('semantic').semanticHits).toBe(byStatus.get('semantic').requests);
    const saved = mine.filter((r) => r!.cache_status === 'exact').reduce((s, r) => s + (r!.saved_cost_usd ?? 0), 0);
    expect(byStatus.get('exact').savedCostUsd).toBeGreaterThanOrEqual(saved - 1e-9);
  });

  it('reports cache size and requests in /metrics', async () => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    expect(Number(/^tollgate_cache_entries (\d+)/m.exec(text)?.[1])).toBeGreaterThan(5);
    expect(Number(/^tollgate_cache_bytes (\d+)/m.exec(text)?.[1])).toBeGreaterThan(0);
    expect(text).toMatch(/tollgate_cache_requests_total\{status="exact"\} [1-9]/);
  });
});
