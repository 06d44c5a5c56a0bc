// `tollgate demo`: realistic traffic, sent with the official OpenAI SDK to a local simulated
// provider through Tollgate, so the console, analytics and receipts have something to show on
// a machine without provider keys. Beside a running `tollgate start` (the data dir's owner) the
// traffic goes through that server; otherwise the demo starts one on the data dir. Either way
// it configures only names of its own (demo-…) through the admin API, so a user's providers
// and routes stay as they are. Runs until Ctrl-C (or SIGTERM), or for --duration.
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import { createKeyThrough, graphqlClient, graphqlUrlFor, owningServer, type ServerAccess } from './admin-client.js';
import type { Config } from './config.js';
import { MAX_TIMER_MS } from './config-values.js';
import { printBanner, type Started, startServer } from './main.js';
import { type SimulatedProvider, startSimulatedProvider } from './sim/simulated.js';

const NAMES = {
  primary: 'demo-sim-primary',
  backup: 'demo-sim-backup',
  chat: 'demo-chat', // priority: the primary's large model, then the backup's small one (failover)
  fast: 'demo-chat-fast', // least latency, streamed
  faq: 'demo-faq', // exact cache: repeated questions are answered from it
  embed: 'demo-embed',
  missing: 'demo-no-such-route', // a mistake now and then: rejected with 404
};

const TEAMS: ReadonlyArray<{ team: string; features: string[]; weight: number }> = [
  { team: 'demo-growth', features: ['search', 'recommendations'], weight: 0.45 },
  { team: 'demo-support', features: ['support-bot', 'summarize'], weight: 0.35 },
  { team: 'demo-research', features: ['agent', 'extract'], weight: 0.2 },
];

const PROMPTS = [
  'Summarize the quarterly report in three bullet points.',
  'What is the capital of Australia?',
  'Write a haiku about latency.',
  'Translate "good morning" into French and German.',
  'Explain the difference between TCP and UDP to a new engineer.',
  'Draft a polite reply declining a meeting on Friday.',
  'List five risks of migrating a payments service to a new region.',
  'Classify this ticket: "I was charged twice for my order".',
];
const FAQ = ['How do I reset my password?', 'What are your opening hours?', 'How do I cancel my subscription?', 'Where is my invoice?'];

/** Prices per million tokens (USD) of the simulated models: a large and a small model. */
const PRICES = [
  { provider: NAMES.primary, model: 'sim-chat', inputPerMTokUsd: 2.5, outputPerMTokUsd: 10, cachedInputPerMTokUsd: 1.25 },
  { provider: NAMES.primary, model: 'sim-chat-mini', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 },
  { provider: NAMES.backup, model: 'sim-chat-mini', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 },
  { provider: NAMES.primary, model: 'sim-embed', inputPerMTokUsd: 0.02, outputPerMTokUsd: 0 },
];

const MAX_IN_FLIGHT = 64;

function parseDuration(text: string | undefined): number | null {
  if (text === undefined) return null;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`--duration: expected a number of seconds or e.g. 90s, 5m, 1h; got '${text}'`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  // A timer past this fires at once (Node warns and takes 1 ms): the demo would stop as it began.
  if (ms > MAX_TIMER_MS) throw new Error(`--duration: at most ${MAX_TIMER_MS / 3_600_000} h; got '${text}'`);
  return ms;
}

export async function runDemo(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { duration: { type: 'string' }, rate: { type: 'string', default: '5' } } });
  const durationMs = parseDuration(values.duration);
  const rate = Number(values.rate);
  if (!(rate > 0 && rate <= 1000)) throw new Error(`--rate: requests per second between 0 and 1000; got '${values.rate}'`);

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  // Every signal until the end is ours (`on`: under `npm run demo`, Ctrl-C arrives twice), so
  // the server this demo started always drains and releases the data dir.
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const sim = await startSimulatedProvider({ record: false, defaults: { latencyMs: 60, ttftMs: 40, tokensPerSecond: 400, completionTokens: 40 } });
  let own: Started | null = null;
  try {
    let server = await owningServer(config);
    if (!server) {
      own = await startServer(config, { quiet: true });
      server = { url: own.url, graphqlUrl: graphqlUrlFor(own.url, config), adminToken: own.runtime.adminToken.token };
    }
    await configure(server, sim);
    const clients = await Promise.all(TEAMS.map(async (t) => ({ ...t, secret: (await createKeyThrough(server, t.team, 'demo')).secret })));
    if (own) printBanner(config, own.runtime, own.url);
    const consoleUrl = new URL('/console', server.graphqlUrl);
    process.stdout.write(
      `demo: sending about ${rate} requests/s through ${own ? 'this Tollgate' : `the running Tollgate at ${server.url}`} ` +
        `(routes ${NAMES.chat}, ${NAMES.fast}, ${NAMES.faq}, ${NAMES.embed}; teams ${TEAMS.map((t) => t.team).join(', ')}).\n` +
        `Watch it in the console: ${consoleUrl}\n` +
        `${durationMs === null ? 'Ctrl-C to stop.' : `Stops after ${durationMs / 1000} s.`}\n`,
    );
    // The duration counts from the first request, not from the start of the stores.
    if (durationMs !== null) setTimeout(onSignal, durationMs).unref();
    const stats = await sendTraffic(server, clients, sim, rate, stop.signal);
    process.stdout.write(`\ndemo: sent ${stats.sent} requests (${stats.ok} answered, ${stats.failed} errors).\n`);
    return 0;
  } finally {
    await own?.stop();
    await sim.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Providers, routes and prices of the demo's own names (upserts: running the demo again is fine). */
async function configure(server: ServerAccess, sim: SimulatedProvider): Promise<void> {
  const graphql = graphqlClient(server);
  const provider = (name: string) => ({ name, kind: 'SIMULATED', baseUrl: sim.url });
  await graphql(
    `mutation DemoSetup($primary: ProviderInput!, $backup: ProviderInput!, $chat: RouteInput!, $fast: RouteInput!, $faq: RouteInput!, $embed: RouteInput!) {
      primary: upsertProvider(input: $primary) { name }
      backup: upsertProvider(input: $backup) { name }
      chat: upsertRoute(input: $chat) { name }
      fast: upsertRoute(input: $fast) { name }
      faq: upsertRoute(input: $faq) { name }
      embed: upsertRoute(input: $embed) { name }
    }`,
    {
      primary: provider(NAMES.primary),
      backup: provider(NAMES.backup),
      chat: {
        name: NAMES.chat,
        strategy: 'PRIORITY',
        retries: 1,
        targets: [
          { provider: NAMES.primary, model: 'sim-chat', priority: 0 },
          // A smaller model elsewhere: the primary's bad moments do not reach it.
          { provider: NAMES.backup, model: 'sim-chat-mini', priority: 1 },
        ],
      },
      fast: {
        name: NAMES.fast,
        strategy: 'LEAST_LATENCY',
        targets: [
          { provider: NAMES.primary, model: 'sim-chat-mini' },
          { provider: NAMES.backup, model: 'sim-chat-mini' },
        ],
      },
      faq: { name: NAMES.faq, strategy: 'PRIORITY', targets: [{ provider: NAMES.backup, model: 'sim-chat-mini' }], cache: { mode: 'EXACT', ttlSeconds: 3600 } },
      embed: { name: NAMES.embed, strategy: 'PRIORITY', targets: [{ provider: NAMES.primary, model: 'sim-embed' }] },
    },
  );
  // Prices only where the demo's models have none: a second run adds no price versions.
  const { prices } = (await graphql('query DemoPrices { prices { provider model } }')) as { prices: Array<{ provider: string; model: string }> };
  for (const p of PRICES) {
    if (prices.some((q) => q.provider === p.provider && q.model === p.model)) continue;
    await graphql('mutation DemoPrice($input: PriceInput!) { setPrice(input: $input) { version } }', { input: { ...p, source: 'tollgate demo' } });
  }
}

interface Stats {
  sent: number;
  ok: number;
  failed: number;
}

/** Requests at about `rate` per second (Poisson arrivals) until `signal`, then waits for those in flight. */
async function sendTraffic(
  server: ServerAccess,
  teams: Array<{ team: string; features: string[]; weight: number; secret: string }>,
  sim: SimulatedProvider,
  rate: number,
  signal: AbortSignal,
): Promise<Stats> {
  const stats: Stats = { sent: 0, ok: 0, failed: 0 };
  const clients = teams.map((t) => ({ ...t, sent: 0, openai: new OpenAI({ baseURL: `${server.url}/v1`, apiKey: t.secret, maxRetries: 0, timeout: 30_000 }) }));
  const inFlight = new Set<Promise<void>>();
  const changeWeather = weatherFor(sim);
  changeWeather();
  const weather = setInterval(changeWeather, 1000);
  const progress = setInterval(() => process.stdout.write(`demo: ${stats.sent} requests sent (${stats.ok} answered, ${stats.failed} errors)\n`), 15_000);
  try {
    while (!signal.aborted) {
      await sleep(-Math.log(1 - Math.random()) * (1000 / rate), undefined, { signal }).catch(() => undefined);
      if (signal.aborted || inFlight.size >= MAX_IN_FLIGHT) continue;
      const client = pick(
        clients,
        clients.map((c) => c.weight),
      );
      stats.sent++;
      const p = oneRequest(client, client.sent++, server.url).then(
        () => void stats.ok++,
        () => void stats.failed++,
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    await Promise.allSettled([...inFlight]);
  } finally {
    clearInterval(weather);
    clearInterval(progress);
  }
  return stats;
}

/**
 * Latencies drift, and now and then the primary's large model has an outage of a few seconds:
 * requests fail over, and a long one opens its breaker, which closes again once the outage
 * is over (a standing behaviour, so failures never pile up while no request reaches it).
 */
function weatherFor(sim: SimulatedProvider): () => void {
  let outageUntil = 0;
  return () => {
    const now = Date.now();
    if (now >= outageUntil && Math.random() < 0.03) outageUntil = now + 1000 + Math.random() * 6000;
    const jitter = (base: number) => Math.round(base * (0.6 + Math.random() * 0.9));
    sim.behave('sim-chat', {
      latencyMs: jitter(220),
      ttftMs: jitter(150),
      tokensPerSecond: 120,
      completionTokens: 60,
      ...(now < outageUntil ? { status: 503 } : {}),
    });
    sim.behave('sim-chat-mini', { latencyMs: jitter(70), ttftMs: jitter(45), tokensPerSecond: 350, completionTokens: 35 });
    sim.behave('sim-embed', { latencyMs: jitter(25) });
  };
}

/** The n-th request of a team: tasks of three requests each, one feature per task. */
async function oneRequest(client: { team: string; features: string[]; secret: string; openai: OpenAI }, n: number, baseUrl: string): Promise<void> {
  const taskNo = Math.floor(n / 3);
  const feature = client.features[taskNo % client.features.length]!;
  const task = `${client.team}-${process.pid}-${taskNo}`;
  const headers = { 'x-tollgate-feature': feature, 'x-tollgate-task-id': task, 'x-tollgate-user': `user-${n % 40}` };
  const roll = Math.random();
  const messages = [{ role: 'user' as const, content: pick(PROMPTS) }];
  if (roll < 0.42) {
    await client.openai.chat.completions.create({ model: NAMES.chat, messages }, { headers });
  } else if (roll < 0.7) {
    const stream = await client.openai.chat.completions.create({ model: NAMES.fast, messages, stream: true }, { headers });
    for await (const _ of stream) void _;
  } else if (roll < 0.85) {
    // Temperature 0: a deterministic question, which the route's exact cache may answer.
    await client.openai.chat.completions.create({ model: NAMES.faq, temperature: 0, messages: [{ role: 'user', content: pick(FAQ) }] }, { headers });
  } else if (roll < 0.97) {
    await client.openai.embeddings.create({ model: NAMES.embed, input: pick(PROMPTS) }, { headers });
  } else {
    await client.openai.chat.completions.create({ model: NAMES.missing, messages }, { headers });
  }
  // The third request ends the task: most succeed, some do not (cost per successful task).
  if (n % 3 === 2) {
    await fetch(`${baseUrl}/v1/tasks/${encodeURIComponent(task)}/outcome`, {
      method: 'POST',
      headers: { authorization: `Bearer ${client.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ success: Math.random() < 0.85 }),
    }).catch(() => undefined);
  }
}

function pick<T>(items: readonly T[], weights?: readonly number[]): T {
  if (!weights) return items[Math.floor(Math.random() * items.length)]!;
  let r = Math.random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < items.length; i++) if ((r -= weights[i]!) < 0) return items[i]!;
  return items[items.length - 1]!;
}
