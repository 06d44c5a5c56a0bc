// The Vercel AI SDK's Anthropic provider (`@ai-sdk/anthropic` 3 with `ai` 6) against a running
// Tollgate: generateText, streamText (an onError that fails the test: the stream must parse
// cleanly to its end) and a tool loop, on an Anthropic upstream (passthrough) and an
// OpenAI-compatible one (translated).
import { createAnthropic } from '@ai-sdk/anthropic';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

let gw: TestGateway;
let anthropic: ReturnType<typeof createAnthropic>;

const TEXT = 'Hello from the simulator.';
const ROUTES = { anthropic: 'm-claude', openai: 'm-openai' } as const;

beforeAll(async () => {
  gw = await startTestGateway();
  const store = gw.started.runtime.adminStore;
  await store.providers.upsertProvider({ name: 'claude', kind: 'ANTHROPIC', baseUrl: gw.sim.origin, apiKey: 'sk-ant-upstream' });
  await store.routing.upsertRoute({ name: 'm-claude', strategy: 'PRIORITY', targets: [{ provider: 'claude', model: 'claude-sim' }] });
  await store.routing.upsertRoute({ name: 'm-openai', strategy: 'PRIORITY', targets: [{ provider: 'sim', model: 'gpt-sim' }] });
  await gw.started.runtime.app.catalog.refresh();
  for (const model of ['claude-sim', 'gpt-sim']) gw.sim.behave(model, { content: TEXT, cacheReadTokens: 10 });
  const { secret } = await gw.createKey('team-ai-sdk');
  anthropic = createAnthropic({ baseURL: `${gw.url}/v1`, apiKey: secret });
});
afterAll(async () => {
  await gw?.close();
});

const weather = tool({
  description: 'Weather for a city',
  inputSchema: z.object({ city: z.string(), days: z.number().int().min(1) }),
  execute: async ({ city }) => `Sunny in ${city}`,
});

describe.each(Object.entries(ROUTES))('@ai-sdk/anthropic → %s upstream', (upstream, route) => {
  it('generateText: text, finish reason and usage with cache reads', async () => {
    const r = await generateText({ model: anthropic(route), prompt: 'Say hello', maxOutputTokens: 100 });
    expect(r.text).toBe(TEXT);
    expect(r.finishReason).toBe('stop');
    expect(r.usage.outputTokens).toBe(4);
    expect(r.usage.inputTokenDetails.cacheReadTokens).toBe(10);
    expect(r.usage.inputTokens).toBeGreaterThan(10);
    // The upstream spoke its own protocol.
    expect(gw.sim.requests.at(-1)!.path).toBe(upstream === 'anthropic' ? '/v1/messages' : '/v1/chat/completions');
  });

  it('streamText parses the stream to its end', async () => {
    const errors: unknown[] = [];
    const r = streamText({ model: anthropic(route), prompt: 'Say hello', maxOutputTokens: 100, onError: ({ error }) => void errors.push(error) });
    let text = '';
    for await (const delta of r.textStream) text += delta;
    expect(errors).toEqual([]);
    expect(text).toBe(TEXT);
    expect(await r.finishReason).toBe('stop');
    expect((await r.usage).outputTokens).toBe(4);
  });

  it('runs a tool loop: call, result, answer', async () => {
    const r = await generateText({
      model: anthropic(route),
      tools: { get_weather: weather },
      stopWhen: stepCountIs(3),
      prompt: 'Please call get_weather for Paris',
      maxOutputTokens: 100,
    });
    expect(r.steps).toHaveLength(2);
    const [call] = r.steps[0]!.toolCalls;
    expect(call).toMatchObject({ toolName: 'get_weather', input: { city: expect.any(String), days: 1 } });
    expect(r.steps[0]!.toolResults[0]).toMatchObject({ toolName: 'get_weather', output: `Sunny in ${(call!.input as { city: string }).city}` });
    expect(r.steps[0]!.finishReason).toBe('tool-calls');
    expect(r.text).toBe(TEXT);
    expect(r.finishReason).toBe('stop');
  });

  it('streams a tool loop without a stream error', async () => {
    const errors: unknown[] = [];
    const r = streamText({
      model: anthropic(route),
      tools: { get_weather: weather },
      stopWhen: stepCountIs(3),
      prompt: 'Please call get_weather for Paris',
      maxOutputTokens: 100,
      onError: ({ error }) => void errors.push(error),
    });
    expect(await r.text).toBe(TEXT);
    expect(errors).toEqual([]);
    const steps = await r.steps;
    expect(steps[0]!.toolCalls[0]).toMatchObject({ toolName: 'get_weather', input: { city: expect.any(String), days: 1 } });
    expect(await r.finishReason).toBe('stop');
  });
});
