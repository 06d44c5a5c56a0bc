// `tollgate demo`: Tollgate plus a local simulated provider, and realistic traffic sent with
// the official OpenAI SDK, so receipts, analytics and the live stream have something to show
// on a machine without provider keys. Keeps serving after the traffic (Ctrl-C to stop)
// unless --exit is given.
import { parseArgs } from 'node:util';
import OpenAI from 'openai';
import type { Config } from './config.js';
import { startServer } from './main.js';
import { startSimulatedProvider } from './sim/simulated.js';

const FEATURES = ['search', 'support-bot', 'summarize', 'agent'];
const PROMPTS = [
  'Summarize the quarterly report in three bullet points.',
  'What is the capital of Australia?',
  'Write a haiku about latency.',
  'Translate "good morning" into French and German.',
  'Explain the difference between TCP and UDP.',
  'Draft a polite reply declining a meeting.',
];

export async function runDemo(config: Config, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { requests: { type: 'string', default: '200' }, exit: { type: 'boolean', default: false } } });
  const total = Math.max(1, Number(values.requests) || 200);

  const sim = await startSimulatedProvider({ defaults: { latencyMs: 60, ttftMs: 40, tokensPerSecond: 400, completionTokens: 40 }, record: false });
  const server = await startServer(config, { installSignalHandlers: !values.exit });
  const store = server.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'sim-primary', kind: 'SIMULATED', baseUrl: sim.url });
  await store.providers.upsertProvider({ name: 'sim-backup', kind: 'SIMULATED', baseUrl: sim.url });
  await store.routing.upsertRoute({
    name: 'chat-default',
    strategy: 'PRIORITY',
    retries: 1,
    targets: [
      { provider: 'sim-primary', model: 'sim-chat', priority: 0 },
      { provider: 'sim-backup', model: 'sim-chat-mini', priority: 1 },
    ],
  });
  await store.routing.upsertRoute({
    name: 'chat-fast',
    strategy: 'LEAST_LATENCY',
    targets: [
      { provider: 'sim-primary', model: 'sim-chat-mini' },
      { provider: 'sim-backup', model: 'sim-chat-mini' },
    ],
  });
  await store.routing.upsertRoute({ name: 'embed-default', strategy: 'PRIORITY', targets: [{ provider: 'sim-primary', model: 'sim-embed' }] });
  await store.pricing.setPrice({ provider: 'sim-primary', model: 'sim-chat', inputPerMTokUsd: 2.5, outputPerMTokUsd: 10, source: 'demo' });
  await store.pricing.setPrice({ provider: 'sim-backup', model: 'sim-chat-mini', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6, source: 'demo' });
  await store.pricing.setPrice({ provider: 'sim-primary', model: 'sim-chat-mini', inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6, source: 'demo' });
  await store.pricing.setPrice({ provider: 'sim-primary', model: 'sim-embed', inputPerMTokUsd: 0.02, outputPerMTokUsd: 0, source: 'demo' });
  await server.runtime.app.catalog.load();
  // Some weather: the primary fails now and then, so failover shows up in receipts.
  sim.behave('sim-chat', { status: 503, times: Math.ceil(total / 20) });

  const clients = await Promise.all(
    ['growth', 'platform'].map(async (team) => {
      const t = await store.teams.ensureTeam(team);
      const { secret } = await store.teams.createApiKey({ teamId: t.id, name: 'demo' });
      return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: secret, maxRetries: 0 });
    }),
  );

  let ok = 0;
  let failed = 0;
  let cost = 0;
  const queue = Array.from({ length: total }, (_, i) => i);
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const client = clients[i % clients.length]!;
        const headers = { 'x-tollgate-feature': FEATURES[i % FEATURES.length]!, 'x-tollgate-task-id': `task-${Math.floor(i / 4)}` };
        try {
          if (i % 10 === 9) {
            await client.embeddings.create({ model: 'embed-default', input: PROMPTS[i % PROMPTS.length]! }, { headers });
          } else if (i % 3 === 0) {
            const stream = await client.chat.completions.create(
              { model: 'chat-fast', stream: true, messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length]! }] },
              { headers },
            );
            for await (const _ of stream) void _;
          } else {
            const res = await client.chat.completions.create({ model: 'chat-default', messages: [{ role: 'user', content: PROMPTS[i % PROMPTS.length]! }] }, { headers });
            cost += ((res.usage?.prompt_tokens ?? 0) * 2.5 + (res.usage?.completion_tokens ?? 0) * 10) / 1e6;
          }
          ok++;
        } catch {
          failed++;
        }
      }
    }),
  );
  await server.runtime.journal.flush();
  process.stdout.write(
    `\ndemo: sent ${total} requests through ${server.url}/v1 (${ok} ok, ${failed} failed), about $${cost.toFixed(6)} of simulated spend.\n` +
      `Receipts are in ClickHouse; the signing keys are at ${server.url}/.well-known/tollgate/receipt-keys\n`,
  );
  if (values.exit) {
    await server.stop();
    await sim.close();
    return 0;
  }
  process.stdout.write('Tollgate keeps running with the simulated provider; Ctrl-C to stop.\n');
  return -1;
}
