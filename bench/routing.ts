// npm run bench:routing — what deciding costs (DESIGN §5), in two parts:
//   decision   decideRoute() in this process over a route with 100 rules (none holding, so
//              every one is evaluated, the classifier and the prompt-token estimate included)
//              against the same route without rules, on a short and a ~2k-token prompt.
//              Timed call by call in bursts of 50 with 1 ms pauses, so that other processes'
//              time slices are not counted as the router's.
//   proxy      the built Tollgate in its own process, one route with those 100 rules and one
//              without, the simulated provider in another: added latency (Tollgate − direct)
//              at c=1, the three arms interleaved request by request, medians of the same run.
// Prints a table and writes bench/results/routing.json.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import type { ChatRequest } from '../src/protocols/canonical.js';
import { Catalog, type RouteInput } from '../src/routing/catalog.js';
import { classifyPrompt, warmUpClassifier } from '../src/routing/classifier.js';
import { type DecideHooks, decideRoute } from '../src/routing/decide.js';
import type { DecisionRequest } from '../src/routing/facts.js';
import { startTollgateProcess } from '../test/support/processes.js';
import { BUILT, Cleanups, createKey, forkTs, stopTollgate } from './support/processes.js';
import { machine, percentile } from './support/stats.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DECISIONS = Number(process.env.ROUTING_BENCH_DECISIONS ?? 20_000);
const PROXY_REQUESTS = Number(process.env.ROUTING_BENCH_REQUESTS ?? 2_000);
const WARMUP = Number(process.env.ROUTING_BENCH_WARMUP ?? 300);
const RULES = 100;
const BURST = 50;

/**
 * 100 rules of the kinds people write, none of which holds for the benchmark's requests: header,
 * task type, feature, team, metadata, prompt length, message count, JSON mode, time of day, and
 * the classifier (read by every tenth, so it runs once per request).
 */
function hundredRules(): Array<{ name: string; when: string; targets: Array<{ provider: string; model: string }> }> {
  const kinds = [
    (i: number) => `"x-tier-${i}" in request.headers && request.headers["x-tier-${i}"] == "gold"`,
    (i: number) => `request.taskType == "type-${i}"`,
    (i: number) => `request.feature.startsWith("feature-${i}")`,
    (i: number) => `request.team == "team-${i}" && request.stream`,
    (i: number) => `"lane-${i}" in request.metadata && request.metadata["lane-${i}"] == "fast"`,
    (i: number) => `request.promptTokens > ${100_000 + i}`,
    (i: number) => `request.messages > ${50 + i} && request.hasTools`,
    (i: number) => `request.jsonMode == "json_schema" && request.maxTokens > ${100_000 + i}`,
    (i: number) => `now.hourUtc == 25 || request.apiKey == "key-${i}"`,
    (i: number) => `classifier.tier == "REASONING" && classifier.confidence > 1.${i}`,
  ];
  return Array.from({ length: RULES }, (_, i) => ({
    name: `rule-${i}`,
    when: kinds[i % kinds.length]!(i),
    targets: [{ provider: 'sim', model: `rule-model-${i}` }],
  }));
}

const route = (name: string, rules: RouteInput['rules']): RouteInput => ({
  name,
  strategy: 'PRIORITY',
  retries: 1,
  timeoutMs: null,
  cache: { mode: 'OFF', ttlSeconds: null, similarityThreshold: null, embeddingModel: null, cacheSampled: false, cacheToolCalls: false },
  targets: [{ provider: 'sim', model: 'sim-chat', weight: 1, priority: 0 }],
  rules,
  accept: [],
});

const SHORT = 'What is the capital of France?';
const LONG = `${Array.from({ length: 180 }, (_, i) => `Paragraph ${i}: the quarterly report lists revenue, churn and support tickets by region.`).join('\n')}\nSummarize the report in three bullet points.`;

function decisionRequest(text: string): DecisionRequest {
  const chat: ChatRequest = {
    model: 'ruled',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: text },
    ],
  } as ChatRequest;
  return {
    endpoint: 'chat',
    model: 'ruled',
    chat,
    stream: false,
    feature: 'search',
    taskId: null,
    taskType: 'summarize',
    endUser: 'user-1',
    teamId: 't1',
    team: 'team-bench',
    apiKeyId: 'k1',
    apiKeyName: 'bench',
    requestId: 'r1',
    headers: { 'content-type': 'application/json', 'user-agent': 'bench' },
    metadata: { source: 'bench' },
  };
}

/** Microseconds per decision, call by call, in bursts with pauses. */
async function timeDecisions(
  catalog: Catalog,
  routeName: string,
  request: DecisionRequest,
  hooks: DecideHooks,
): Promise<{ p50: number; p99: number; n: number }> {
  const r = catalog.resolve(routeName)!;
  for (let i = 0; i < 500; i++) decideRoute(catalog, r, request, hooks);
  const us: number[] = [];
  while (us.length < DECISIONS) {
    for (let i = 0; i < BURST; i++) {
      const t0 = performance.now();
      decideRoute(catalog, r, request, hooks);
      us.push((performance.now() - t0) * 1000);
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  us.sort((a, b) => a - b);
  return { p50: percentile(us, 50), p99: percentile(us, 99), n: us.length };
}

async function decisionPart() {
  warmUpClassifier();
  const rules = hundredRules();
  const catalog = new Catalog(
    [{ name: 'sim', kind: 'SIMULATED', baseUrl: 'http://127.0.0.1:9/v1', apiKey: null, timeoutMs: null, extraHeaders: {}, modelMap: {} }],
    [
      route(
        'ruled',
        rules.map((r) => ({ ...r, targets: r.targets.map((t) => ({ ...t, weight: 1, priority: 0 })), route: null })),
      ),
      route('plain', []),
    ],
    [],
    'bench',
  );
  if (catalog.resolve('ruled')!.rules.length !== RULES) throw new Error('not every benchmark rule compiled');
  let ruleErrors = 0;
  const hooks: DecideHooks = { classify: classifyPrompt, onRuleError: () => void ruleErrors++ };
  // None may hold: the point is to evaluate all of them.
  for (const text of [SHORT, LONG]) {
    const d = decideRoute(catalog, catalog.resolve('ruled')!, decisionRequest(text), hooks);
    if (d.rule !== null || d.classifier === null) throw new Error(`benchmark rules misbehave: rule ${d.rule} held`);
  }
  const result = {
    rules100Short: await timeDecisions(catalog, 'ruled', decisionRequest(SHORT), hooks),
    rules100Long: await timeDecisions(catalog, 'ruled', decisionRequest(LONG), hooks),
    noRulesShort: await timeDecisions(catalog, 'plain', decisionRequest(SHORT), hooks),
    classifierLong: await (async () => {
      const input = { messages: [{ role: 'user' as const, text: LONG }] };
      const us: number[] = [];
      while (us.length < DECISIONS) {
        for (let i = 0; i < BURST; i++) {
          const t0 = performance.now();
          classifyPrompt(input as any);
          us.push((performance.now() - t0) * 1000);
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      us.sort((a, b) => a - b);
      return { p50: percentile(us, 50), p99: percentile(us, 99), n: us.length };
    })(),
  };
  if (ruleErrors > 0) throw new Error(`${ruleErrors} rule evaluations failed`);
  return result;
}

async function proxyPart(cleanups: Cleanups) {
  const sim = await forkTs(path.join(here, 'support/sim-process.ts'), [JSON.stringify({ completionTokens: 16 })]);
  cleanups.defer('stop the simulated provider', () => sim.child.disconnect());
  const simUrl: string = sim.message.url;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-bench-routing-'));
  cleanups.defer('remove the data dir', () => rm(dataDir, { recursive: true, force: true }));
  const configFile = path.join(dataDir, 'tollgate.yaml');
  const ruleLines = hundredRules().map(
    (r) => `      - { name: ${r.name}, when: ${JSON.stringify(r.when)}, targets: [{ provider: sim, model: ${r.targets[0]!.model} }] }`,
  );
  await writeFile(
    configFile,
    [
      'providers:',
      `  - { name: sim, kind: SIMULATED, baseUrl: "${simUrl}" }`,
      'routes:',
      '  - { name: plain, strategy: PRIORITY, targets: [{ provider: sim, model: sim-chat }] }',
      '  - name: ruled',
      '    strategy: PRIORITY',
      '    targets: [{ provider: sim, model: sim-chat }]',
      '    rules:',
      ...ruleLines,
      'prices:',
      '  - { provider: sim, model: sim-chat, inputPerMTokUsd: 0.15, outputPerMTokUsd: 0.6 }',
      '',
    ].join('\n'),
  );
  const env = { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_CONFIG: configFile, TOLLGATE_LOG_LEVEL: 'warn' };
  const tollgate = await startTollgateProcess(env, BUILT);
  cleanups.defer('stop Tollgate', () => stopTollgate(tollgate));
  const secret = await createKey(env);

  const arms = {
    direct: { url: new URL(simUrl), model: 'sim-chat', auth: 'Bearer sim' },
    plain: { url: new URL(`${tollgate.url}/v1`), model: 'plain', auth: `Bearer ${secret}` },
    ruled: { url: new URL(`${tollgate.url}/v1`), model: 'ruled', auth: `Bearer ${secret}` },
  };
  type Arm = keyof typeof arms;
  const names = Object.keys(arms) as Arm[];
  const pools = Object.fromEntries(names.map((a) => [a, new Pool(arms[a].url.origin, { connections: 4 })])) as Record<Arm, Pool>;
  cleanups.defer('close the client pools', () => Promise.all(names.map((a) => pools[a].close())));

  async function once(arm: Arm, text: string): Promise<number> {
    const { url, model, auth } = arms[arm];
    const body = JSON.stringify({
      model,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: text },
      ],
      metadata: { source: 'bench' },
    });
    const t0 = performance.now();
    const res = await pools[arm].request({
      method: 'POST',
      path: `${url.pathname}/chat/completions`,
      headers: { 'content-type': 'application/json', authorization: auth, 'x-tollgate-feature': 'search', 'x-tollgate-task-type': 'summarize' },
      body,
    });
    await res.body.arrayBuffer();
    if (res.statusCode !== 200) throw new Error(`${arm}: HTTP ${res.statusCode}`);
    return performance.now() - t0;
  }

  const out: Record<string, Record<Arm, { p50: number; p99: number; n: number }>> = {};
  for (const [label, text] of [
    ['short', SHORT],
    ['long', LONG],
  ] as const) {
    for (let i = 0; i < WARMUP; i++) for (const arm of names) await once(arm, text);
    const ms = Object.fromEntries(names.map((a) => [a, [] as number[]])) as Record<Arm, number[]>;
    // Interleaved request by request: a noisy moment hits every arm alike.
    for (let i = 0; i < PROXY_REQUESTS; i++) for (const arm of names) ms[arm].push(await once(arm, text));
    out[label] = Object.fromEntries(
      names.map((a) => {
        const s = ms[a].sort((x, y) => x - y);
        return [a, { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length }];
      }),
    ) as Record<Arm, { p50: number; p99: number; n: number }>;
  }
  const added = (label: string, arm: 'plain' | 'ruled') => ({
    p50: out[label]![arm].p50 - out[label]!.direct.p50,
    p99: out[label]![arm].p99 - out[label]!.direct.p99,
  });
  return {
    latencyMs: out,
    addedLatencyMs: {
      short: { rulesOff: added('short', 'plain'), rulesOn: added('short', 'ruled') },
      long: { rulesOff: added('long', 'plain'), rulesOn: added('long', 'ruled') },
    },
  };
}

async function main() {
  const cleanups = new Cleanups('routing bench');
  try {
    const decision = await decisionPart();
    const proxy = await proxyPart(cleanups);
    const results = { date: new Date().toISOString(), machine: machine(), rules: RULES, decisionUs: decision, proxy };

    const f = (n: number) => n.toFixed(1);
    const ms = (n: number) => n.toFixed(3);
    const d = decision;
    const a = proxy.addedLatencyMs;
    const rows: Array<[string, string]> = [
      [`decision, ${RULES} rules + classifier, short prompt (p50 / p99)`, `${f(d.rules100Short.p50)} / ${f(d.rules100Short.p99)} µs`],
      [`decision, ${RULES} rules + classifier, ~2k-token prompt`, `${f(d.rules100Long.p50)} / ${f(d.rules100Long.p99)} µs`],
      ['decision, no rules, short prompt', `${f(d.noRulesShort.p50)} / ${f(d.noRulesShort.p99)} µs`],
      ['classifier alone, ~2k-token prompt', `${f(d.classifierLong.p50)} / ${f(d.classifierLong.p99)} µs`],
      ['proxy added latency, short prompt, rules off → on (p50)', `${ms(a.short.rulesOff.p50)} → ${ms(a.short.rulesOn.p50)} ms`],
      ['proxy added latency, short prompt, rules off → on (p99)', `${ms(a.short.rulesOff.p99)} → ${ms(a.short.rulesOn.p99)} ms`],
      ['proxy added latency, ~2k-token prompt, rules off → on (p50)', `${ms(a.long.rulesOff.p50)} → ${ms(a.long.rulesOn.p50)} ms`],
      ['proxy added latency, ~2k-token prompt, rules off → on (p99)', `${ms(a.long.rulesOff.p99)} → ${ms(a.long.rulesOn.p99)} ms`],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    process.stdout.write(`\nrouting benchmark (${results.machine.cores} cores, node ${process.version}, load ${results.machine.loadAverage.join(' ')})\n`);
    for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
    const file = path.join(here, 'results', 'routing.json');
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(results, null, 2));
    process.stdout.write(`\nwrote ${path.relative(process.cwd(), file)}\n`);
  } finally {
    await cleanups.run();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
