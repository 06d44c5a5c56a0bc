// How an OpenAI-compatible JSON answer is read: the shapes compatible servers send are taken
// (content as parts, custom tool calls, tool calls without content), malformed ones refused
// as such (a SyntaxError: the attempt fails over) instead of throwing later in the checks.
import { describe, expect, it } from 'vitest';
import { openAiCompatible } from '../../src/providers/openai-compatible.js';
import { PRESETS } from '../../src/providers/presets.js';
import { checkAnswer } from '../../src/routing/accept.js';

const answerOf = (message: Record<string, unknown>) =>
  openAiCompatible.answer({ id: 'x', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message, finish_reason: 'stop' }] });

describe('an OpenAI-compatible answer', () => {
  it('reads content given as parts as its text, and a refusal part as the refusal', () => {
    const parts = answerOf({
      role: 'assistant',
      content: [
        { type: 'text', text: 'Par' },
        { type: 'text', text: 'is.' },
      ],
    });
    expect(parts.choices[0].message).toMatchObject({ content: 'Paris.' });
    const refused = answerOf({ role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot help with that.' }] });
    expect(refused.choices[0].message).toMatchObject({ content: '', refusal: 'I cannot help with that.' });
    expect(checkAnswer(['NOT_REFUSED'], { model: 'm', messages: [] }, refused)).toMatchObject({ accepted: false });
  });

  it("takes tool calls without content, and custom tools' calls, which the checks leave alone", () => {
    const custom = answerOf({ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'custom', custom: { name: 'grammar', input: 'SELECT 1' } }] });
    const request = { model: 'm', messages: [], tools: [{ type: 'custom', custom: { name: 'grammar' } }] } as any;
    expect(checkAnswer(['TOOL_ARGS', 'NON_EMPTY'], request, custom)).toMatchObject({ accepted: true });
    const call = answerOf({ role: 'assistant', content: null, tool_calls: [{ id: 'c2', type: 'function', function: { name: 'f', arguments: '{}' } }] });
    expect(call.choices[0].message.tool_calls).toHaveLength(1);
  });

  it('refuses a choice without a message, or a function call without its function, as a malformed answer', () => {
    expect(() => openAiCompatible.answer({ choices: [{ index: 0, finish_reason: 'stop' }] })).toThrow(SyntaxError);
    expect(() => answerOf({ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function' }] })).toThrow(SyntaxError);
    expect(() => answerOf({ role: 'assistant', content: 42 })).toThrow(SyntaxError);
  });

  it("reads providers' own finish reasons as OpenAI's, so a cut or filtered answer is not accepted as whole", () => {
    const ended = (finish_reason: string) =>
      openAiCompatible.answer({
        id: 'x',
        object: 'chat.completion',
        created: 1,
        model: 'm',
        choices: [{ index: 0, message: { role: 'assistant', content: 'Half an ans' }, finish_reason }],
      });
    const checks = ['NOT_TRUNCATED', 'NOT_REFUSED'] as const;
    const request = { model: 'm', messages: [] };
    for (const [theirs, ours, reject] of [
      ['sensitive', 'content_filter', 'not_refused'], // Zhipu's content filter
      ['network_error', 'length', 'not_truncated'], // Zhipu: cut off
      ['model_context_window_exceeded', 'length', 'not_truncated'],
      ['insufficient_system_resource', 'length', 'not_truncated'], // DeepSeek: cut off
    ] as const) {
      const answer = ended(theirs);
      expect(answer.choices[0]!.finish_reason, theirs).toBe(ours);
      expect(checkAnswer([...checks], request, answer)).toMatchObject({ accepted: false, rejectReason: expect.stringMatching(new RegExp(`^${reject}:`)) });
    }
    expect(ended('stop').choices[0]!.finish_reason).toBe('stop');
    // Streamed, the same (a stream transcoded for another protocol's client).
    const [chunk] = openAiCompatible.decoder().push(`data: {"choices":[{"index":0,"delta":{},"finish_reason":"sensitive"}]}\n\n`);
    expect(chunk!.choices[0]!.finish_reason).toBe('content_filter');
  });

  it("moves a passed-through chat request's max_completion_tokens to max_tokens for providers that read only that", () => {
    const target = (kind: string) => ({ upstreamModel: 'm', provider: { name: 'p', preset: PRESETS[kind as keyof typeof PRESETS] } }) as never;
    const sent = (kind: string, body: Record<string, unknown>) =>
      JSON.parse(openAiCompatible.passthrough('chat', { model: 'x', messages: [], ...body }, target(kind), false).body as string);
    for (const kind of ['DEEPSEEK', 'QWEN', 'ZHIPU', 'ARK']) {
      expect(sent(kind, { max_completion_tokens: 200 }), kind).toMatchObject({ max_tokens: 200 });
      expect(sent(kind, { max_completion_tokens: 200 })).not.toHaveProperty('max_completion_tokens');
      expect(sent(kind, { max_completion_tokens: 200, max_tokens: 50 })).toMatchObject({ max_tokens: 50 });
    }
    // OpenAI (its reasoning models refuse max_tokens), OpenRouter and a generic URL: as sent.
    for (const kind of ['OPENAI', 'OPENROUTER', 'OPENAI_COMPATIBLE'])
      expect(sent(kind, { max_completion_tokens: 200 }), kind).toEqual({ model: 'm', messages: [], max_completion_tokens: 200 });
  });

  it('a json_schema response format is not DeepSeek’s to take (it refuses it), passed through or translated; json_object is', () => {
    const target = (kind: string) => ({ upstreamModel: 'm', provider: { name: 'ds', preset: PRESETS[kind as keyof typeof PRESETS] } }) as never;
    const schema = { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } };
    const chat = { model: 'x', messages: [{ role: 'user', content: 'json please' }] } as never;
    for (const send of [
      (kind: string, format: unknown) => openAiCompatible.passthrough('chat', { ...(chat as object), response_format: format }, target(kind), false),
      (kind: string, format: unknown) => openAiCompatible.request({ ...(chat as object), response_format: format } as never, target(kind), false),
    ]) {
      expect(() => send('DEEPSEEK', schema)).toThrow(expect.objectContaining({ status: 400, param: 'response_format' }));
      expect(() => send('DEEPSEEK', { type: 'json_object' })).not.toThrow();
      for (const kind of ['OPENAI', 'QWEN', 'OPENAI_COMPATIBLE']) expect(() => send(kind, schema), kind).not.toThrow();
    }
  });
});
