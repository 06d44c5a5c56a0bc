// The exact cache shared across instances through Redis, and a Redis that is down.
// The two-instance part needs the machine's Redis and PostgreSQL (REDIS_URL and DATABASE_URL,
// set by .ci/run for `npm run test:stores`); the first block always runs.
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnswerStore } from '../../src/cache/store.js';
import { type SimulatedProvider, startSimulatedProvider } from '../../src/sim/simulated.js';
import { scratchDatabase, startTestGateway } from '../support/gateway.js';
import { type Instances, runTollgate, type ServerProcess, startInstances } from '../support/processes.js';

const REDIS_URL = process.env.REDIS_URL;
const msg = (content: string) => [{ role: 'user' as const, content }];

describe('cache with an unreachable Redis (always runs)', () => {
  it('keeps answering, caches in process, and counts the Redis errors', async () => {
    const gw = await startTestGateway({ env: { REDIS_URL: 'redis://127.0.0.1:1' } });
    try {
      await gw.started.runtime.adminStore.routing.upsertRoute({
        name: 'exact',
        strategy: 'PRIORITY',
        targets: [{ provider: 'sim', model: 'm' }],
        cache: { mode: 'EXACT' },
      });
      await gw.started.runtime.app.catalog.refresh();
      const client = gw.client((await gw.createKey('team-r')).secret);
      const statuses: Array<string | null> = [];
      for (let i = 0; i < 2; i++) {
        const { response } = await client.chat.completions.create({ model: 'exact', messages: msg('redis is down'), temperature: 0 }).withResponse();
        statuses.push(response.headers.get('x-tollgate-cache'));
      }
      expect(statuses).toEqual(['miss', 'exact']);
      expect(gw.started.runtime.answers!.stats().redisErrors).toBeGreaterThan(0);
    } finally {
      await gw.close();
    }
  });
});

describe.runIf(REDIS_URL)('an entry in Redis that is not one', () => {
  it('is a miss (and a counted Redis error), not a failed request', async () => {
    const redis = new Redis(REDIS_URL!);
    try {
      const store = await AnswerStore.open({ maxBytes: 100_000, maxEntryBytes: 10_000, redis });
      const key = `corrupt-${Date.now()}`;
      const future = Date.now() + 60_000;
      const values = [
        '{"key":"torn',
        '{"hello":"world"}',
        'null',
        // Shaped like an entry, but its answer is not an object: every request it answered failed (500).
        JSON.stringify({ key, answer: 'x', expiresAt: future }),
        // A whole entry, stored under another key than its own.
        JSON.stringify({ key: 'someone-else', answer: '{"choices":[]}', expiresAt: future }),
      ];
      for (const value of values) {
        await redis.set(`tollgate:cache:v1:${key}`, value, 'PX', 60_000);
        expect(await store.getExact(key)).toBeNull();
      }
      expect(store.stats().redisErrors).toBe(values.length);
      await redis.del(`tollgate:cache:v1:${key}`);
      await store.close();
    } finally {
      redis.disconnect();
    }
  });
});

describe.runIf(REDIS_URL && process.env.DATABASE_URL)('exact cache shared by two instances through Redis', () => {
  let sim: SimulatedProvider;
  let db: Awaited<ReturnType<typeof scratchDatabase>>;
  let instances: Instances;
  let procs: ServerProcess[];
  let secret: string;

  beforeAll(async () => {
    sim = await startSimulatedProvider();
    db = await scratchDatabase();
    const yaml = [
      'providers:',
      `  - { name: sim, kind: SIMULATED, baseUrl: "${sim.url}" }`,
      'routes:',
      '  - name: exact',
      '    strategy: PRIORITY',
      '    cache: { mode: EXACT, ttlSeconds: 600 }',
      '    targets: [{ provider: sim, model: m-shared }]',
      'teams: [shared]',
    ];
    instances = await startInstances(2, yaml, { DATABASE_URL: db!.url, REDIS_URL: REDIS_URL! });
    procs = instances.procs;
    const key = runTollgate(['keys', 'create', '--team', 'shared', '--json'], instances.envs[0]);
    expect(await key.exited).toBe(0);
    secret = JSON.parse(key.output().trim().split('\n').at(-1)!).secret;
  }, 120_000);

  afterAll(async () => {
    await instances?.close();
    await sim?.close();
    await db?.drop().catch(() => undefined);
  });

  it('an answer stored by instance A is served by instance B without calling upstream', async () => {
    const ask = async (url: string, content: string) => {
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: secret, maxRetries: 0 });
      const { data, response } = await client.chat.completions.create({ model: 'exact', messages: msg(content), temperature: 0 }).withResponse();
      return { text: data.choices[0].message.content, cache: response.headers.get('x-tollgate-cache') };
    };
    const content = `shared question ${Date.now()}`;
    const calls = () => sim.requests.filter((r) => r.body?.messages?.[0]?.content === content).length;
    // A shares its answer with Redis just after answering: wait for that write before asking B.
    const redis = new Redis(REDIS_URL!);
    const shared = async () => (await redis.keys('tollgate:cache:v1:*')).length;
    const before = await shared();
    const a = await ask(procs[0].url, content);
    for (const deadline = Date.now() + 5_000; (await shared()) <= before && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 20));
    redis.disconnect();
    const b = await ask(procs[1].url, content);
    expect([a.cache, b.cache]).toEqual(['miss', 'exact']);
    expect(b.text).toBe(a.text);
    expect(calls()).toBe(1);
  });
});
