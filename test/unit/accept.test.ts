// A cascade's JSON checks run the client's own schemas: what they may cost and share.
import { describe, expect, it } from 'vitest';
import type { ChatCompletion, ChatRequest } from '../../src/protocols/canonical.js';
import { checkAnswer } from '../../src/routing/accept.js';

const asking = (schema: Record<string, unknown>): ChatRequest => ({
  model: 'm',
  messages: [{ role: 'user', content: 'answer in JSON' }],
  response_format: { type: 'json_schema', json_schema: { name: 'out', schema } },
});
const answering = (value: unknown): ChatCompletion =>
  ({
    id: 'c',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content: JSON.stringify(value), refusal: null }, finish_reason: 'stop', logprobs: null }],
  }) as ChatCompletion;

describe('JSON acceptance against the request schema', () => {
  it('a backtracking pattern runs in linear time (RE2), still checked: the answer cannot hold the event loop', () => {
    const schema = { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } };
    // 27 characters took ~9 s with JavaScript's RegExp here (twice as long for each one more).
    expect(checkAnswer(['JSON'], asking(schema), answering({ s: `${'a'.repeat(27)}!` }))).toMatchObject({ accepted: false });
    expect(checkAnswer(['JSON'], asking(schema), answering({ s: 'a'.repeat(5_000) }))).toMatchObject({ accepted: true });
  });

  it('a pattern RE2 cannot run is not checked; Unicode patterns are, as JavaScript reads them', () => {
    const lookahead = { type: 'object', properties: { s: { type: 'string', pattern: '^(?=x)y$' } } };
    expect(checkAnswer(['JSON'], asking(lookahead), answering({ s: 'anything' }))).toMatchObject({ accepted: true });
    const letters = { type: 'string', pattern: '^\\p{L}{3}$' };
    expect(checkAnswer(['JSON'], asking(letters), answering('héé'))).toMatchObject({ accepted: true });
    expect(checkAnswer(['JSON'], asking(letters), answering('h3é'))).toMatchObject({ accepted: false });
    // RE2's \s is ASCII only, and it spells code points \x{…}: as JavaScript reads them here.
    const words = { type: 'string', pattern: '^[\\p{L}\\s]+$' };
    expect(checkAnswer(['JSON'], asking(words), answering('héllo\u00a0wörld\u3000x'))).toMatchObject({ accepted: true });
    expect(checkAnswer(['JSON'], asking({ type: 'string', pattern: '^\\S+$' }), answering('a\u3000b'))).toMatchObject({ accepted: false });
    expect(checkAnswer(['JSON'], asking({ type: 'string', pattern: '^\\u00e9\\u{1F600}$' }), answering('é😀'))).toMatchObject({ accepted: true });
    expect(checkAnswer(['JSON'], asking({ type: 'string', pattern: '^\\u00e9$' }), answering('e'))).toMatchObject({ accepted: false });
  });

  it('schemas with the same $id are each checked as they are, again after the validator cache has turned over', () => {
    const a = { $id: 'https://example.com/out.json', type: 'object', required: ['a'] };
    const b = { $id: 'https://example.com/out.json', type: 'object', required: ['b'] };
    expect(checkAnswer(['JSON'], asking(a), answering({ a: 1 }))).toMatchObject({ accepted: true });
    // It failed to compile ("already exists") and every step was rejected.
    expect(checkAnswer(['JSON'], asking(b), answering({ b: 1 }))).toMatchObject({ accepted: true });
    expect(checkAnswer(['JSON'], asking(b), answering({ a: 1 }))).toMatchObject({ accepted: false, rejectReason: expect.stringContaining('b') });
    for (let i = 0; i < 1_001; i++) checkAnswer(['JSON'], asking({ type: 'object', minProperties: i % 3, title: `t${i}` }), answering({ x: 1 }));
    expect(checkAnswer(['JSON'], asking(a), answering({ a: 1 }))).toMatchObject({ accepted: true });
  });
});
