// Request body parsing and validation: 400s that name the offending param, never clamping.
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/gateway/errors.js';
import { MAX_JSON_DEPTH, parseJsonBody, validateChat, validateEmbeddings } from '../../src/gateway/validate.js';

function rejection(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a rejection');
}

const parse = (s: string) => parseJsonBody(Buffer.from(s, 'utf8'));

/** `{"a":{"a":…{}…}}` with `levels` objects in total (the root counts as level 1). */
const nestedObjects = (levels: number) => `${'{"a":'.repeat(levels - 1)}{}${'}'.repeat(levels - 1)}`;

describe('parseJsonBody', () => {
  it('rejects an empty body', () => {
    const e = rejection(() => parseJsonBody(Buffer.alloc(0)));
    expect(e.status).toBe(400);
    expect(e.type).toBe('invalid_request_error');
    expect(e.message).toMatch(/empty/i);
  });

  it('rejects invalid JSON with a 400, not a SyntaxError', () => {
    for (const s of ['{', '{"a":}', 'nope', '{"a":1}x', "{'a':1}"]) {
      const e = rejection(() => parse(s));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(/not valid JSON/);
      expect(e.param).toBeNull();
    }
  });

  it('rejects every non-object top level', () => {
    for (const s of ['[]', '[{"model":"m"}]', '"str"', '42', 'null', 'true']) {
      const e = rejection(() => parse(s));
      expect(e.status).toBe(400);
      expect(e.message).toMatch(/must be a JSON object/);
    }
  });

  it('accepts an object and returns it as parsed', () => {
    expect(parse('{"model":"m","x":[1,{"y":null}]}')).toEqual({ model: 'm', x: [1, { y: null }] });
  });

  it(`accepts nesting of exactly ${MAX_JSON_DEPTH} levels`, () => {
    expect(MAX_JSON_DEPTH).toBe(64);
    expect(() => parse(nestedObjects(64))).not.toThrow();
  });

  it('rejects 65 levels and names the path of the first too-deep node', () => {
    const e = rejection(() => parse(nestedObjects(65)));
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/nesting exceeds 64/);
    // The 65th object sits under 64 `a` keys.
    expect(e.param).toBe(Array(64).fill('a').join('.'));
  });

  it('names array indices in the too-deep path', () => {
    // root(1) → messages(2) → 63 more arrays → depth 65 at messages[0]…[0] (63 indices)
    const body = `{"messages":${'['.repeat(64)}${']'.repeat(64)}}`;
    const e = rejection(() => parse(body));
    expect(e.param).toBe(`messages${'[0]'.repeat(63)}`);
    const ok = `{"messages":${'['.repeat(63)}${']'.repeat(63)}}`;
    expect(() => parse(ok)).not.toThrow();
  });

  it('counts depth across mixed objects and arrays', () => {
    // 1 root + tools(2) + [0](3) + function(4) + parameters(5) ... make 65 exactly.
    let inner = '{}';
    for (let i = 0; i < 61; i++) inner = `{"p":${inner}}`; // 62 objects
    const body = `{"tools":[{"function":${inner}}]}`; // root + array + object + 62 = 65
    const e = rejection(() => parse(body));
    expect(e.param).toBe(`tools[0].function${'.p'.repeat(61)}`);
  });

  it('survives a million-deep `[[[[…` (balanced and unbalanced) without crashing', () => {
    const n = 1_000_000;
    const unbalanced = rejection(() => parse('['.repeat(n)));
    expect(unbalanced.status).toBe(400);
    const balancedTop = rejection(() => parse('['.repeat(n) + ']'.repeat(n)));
    expect(balancedTop.status).toBe(400);
    const inObject = rejection(() => parse(`{"a":${'['.repeat(n)}${']'.repeat(n)}}`));
    expect(inObject.status).toBe(400);
    expect(inObject.message).toMatch(/nesting exceeds/);
    expect(inObject.param).toBe(`a${'[0]'.repeat(63)}`);
  });

  it('does not let `__proto__` keys pollute Object.prototype (parse or validate)', () => {
    const raw =
      '{"model":"m","__proto__":{"polluted":"yes","model":"evil"},' +
      '"messages":[{"role":"user","content":"hi","__proto__":{"polluted":"yes"}}],' +
      '"constructor":{"prototype":{"polluted":"yes"}}}';
    const body = parse(raw);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(body)).toBe(Object.prototype);
    expect(body.model).toBe('m');
    const chat = validateChat(body);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(chat)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(chat.messages[0])).toBe(Object.prototype);
    expect((chat as Record<string, unknown>).polluted).toBeUndefined();
    expect(chat.model).toBe('m');
  });
});

const base = () => ({ model: 'chat-default', messages: [{ role: 'user', content: 'hi' }] }) as Record<string, unknown>;

describe('validateChat', () => {
  it('accepts a minimal request and a rich one', () => {
    expect(validateChat(base()).model).toBe('chat-default');
    const rich = {
      ...base(),
      messages: [
        { role: 'system', content: 'be brief' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'hi' },
            { type: 'image_url', image_url: { url: 'data:,' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'c1', content: '{"ok":true}' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0,
      top_p: 1,
      n: 2,
      max_tokens: 5,
      stop: ['\n'],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }],
      tool_choice: 'auto',
      response_format: { type: 'json_object' },
      metadata: { feature: 'search' },
      user: 'u1',
    };
    expect(() => validateChat(rich)).not.toThrow();
  });

  it('missing model → param model, code missing_required_parameter', () => {
    const body = base();
    delete body.model;
    const e = rejection(() => validateChat(body));
    expect(e.status).toBe(400);
    expect(e.param).toBe('model');
    expect(e.code).toBe('missing_required_parameter');
    expect(e.body().error).toMatchObject({ type: 'invalid_request_error', param: 'model', code: 'missing_required_parameter' });
  });

  it('missing messages → param messages, code missing_required_parameter', () => {
    const e = rejection(() => validateChat({ model: 'm' }));
    expect(e.param).toBe('messages');
    expect(e.code).toBe('missing_required_parameter');
  });

  it('wrong-typed model is invalid_value, not missing', () => {
    for (const model of [null, 5, '']) {
      const e = rejection(() => validateChat({ ...base(), model }));
      expect(e.param).toBe('model');
      expect(e.code).toBe('invalid_value');
    }
  });

  it('messages not an array / empty → param messages', () => {
    for (const messages of ['hi', { role: 'user' }, []]) {
      const e = rejection(() => validateChat({ ...base(), messages }));
      expect(e.param).toBe('messages');
      expect(e.code).not.toBe('missing_required_parameter');
    }
  });

  it('a wrong role names messages[i].role', () => {
    expect(rejection(() => validateChat({ ...base(), messages: [{ role: 'robot', content: 'x' }] })).param).toBe('messages[0].role');
    const e = rejection(() =>
      validateChat({
        ...base(),
        messages: [
          { role: 'user', content: 'a' },
          { role: 'wizard', content: 'b' },
        ],
      }),
    );
    expect(e.param).toBe('messages[1].role');
    const missing = rejection(() => validateChat({ ...base(), messages: [{ content: 'x' }] }));
    expect(missing.param).toBe('messages[0].role');
  });

  it('rejects (does not clamp) out-of-range sampling values', () => {
    const e = rejection(() => validateChat({ ...base(), temperature: 3 }));
    expect(e.param).toBe('temperature');
    expect(e.code).toBe('invalid_value');
    expect(rejection(() => validateChat({ ...base(), temperature: -0.1 })).param).toBe('temperature');
    expect(rejection(() => validateChat({ ...base(), top_p: 1.5 })).param).toBe('top_p');
    // Valid values go through untouched.
    expect(validateChat({ ...base(), temperature: 2 }).temperature).toBe(2);
  });

  it('n must be an integer ≥ 1', () => {
    expect(rejection(() => validateChat({ ...base(), n: 0 })).param).toBe('n');
    expect(rejection(() => validateChat({ ...base(), n: 1.5 })).param).toBe('n');
    expect(validateChat({ ...base(), n: 1 }).n).toBe(1);
  });

  it('stream must be a boolean (null allowed)', () => {
    expect(rejection(() => validateChat({ ...base(), stream: 'true' })).param).toBe('stream');
    expect(rejection(() => validateChat({ ...base(), stream: 1 })).param).toBe('stream');
    expect(validateChat({ ...base(), stream: null }).stream).toBeNull();
  });

  it('checks the tools shape', () => {
    expect(rejection(() => validateChat({ ...base(), tools: {} })).param).toBe('tools');
    expect(rejection(() => validateChat({ ...base(), tools: [{ function: { name: 'f' } }] })).param).toBe('tools[0].type');
    expect(rejection(() => validateChat({ ...base(), tools: [{ type: 'function', function: { name: '' } }] })).param).toBe('tools[0].function.name');
    expect(rejection(() => validateChat({ ...base(), tools: [{ type: 'function', function: { name: 'f', parameters: 'x' } }] })).param).toBe(
      'tools[0].function.parameters',
    );
  });

  it('metadata values must be strings', () => {
    expect(rejection(() => validateChat({ ...base(), metadata: { feature: 1 } })).param).toBe('metadata.feature');
  });

  it('passes unknown fields through untouched (body forwarded as sent)', () => {
    const body = { ...base(), reasoning: { effort: 'high' }, provider: { order: ['x'] }, temperature: 0.7 };
    const out = validateChat(body) as Record<string, unknown>;
    expect(out.reasoning).toEqual({ effort: 'high' });
    expect(out.provider).toEqual({ order: ['x'] });
    expect(out.temperature).toBe(0.7);
    const msg = validateChat({ ...base(), messages: [{ role: 'user', content: 'x', cache_control: { type: 'ephemeral' } }] }).messages[0] as Record<
      string,
      unknown
    >;
    expect(msg.cache_control).toEqual({ type: 'ephemeral' });
  });
});

describe('validateEmbeddings', () => {
  const emb = (input: unknown, extra: Record<string, unknown> = {}) => ({ model: 'e', input, ...extra });

  it('accepts each input shape', () => {
    for (const input of ['text', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]) {
      expect(validateEmbeddings(emb(input)).input).toEqual(input);
    }
  });

  it('rejects bad inputs with param input', () => {
    for (const input of [5, null, [], ['a', 1], [1.5], [[]], { text: 'a' }]) {
      const e = rejection(() => validateEmbeddings(emb(input)));
      expect(e.status).toBe(400);
      expect(e.param?.startsWith('input')).toBe(true);
    }
  });

  it('missing input names param input', () => {
    // NB: the code is 'invalid_value' today (union schema); see the report.
    const e = rejection(() => validateEmbeddings({ model: 'e' }));
    expect(e.status).toBe(400);
    expect(e.param).toBe('input');
  });

  it('missing model names param model with missing_required_parameter', () => {
    const e = rejection(() => validateEmbeddings({ input: 'x' }));
    expect(e.param).toBe('model');
    expect(e.code).toBe('missing_required_parameter');
  });

  it('encoding_format is float or base64', () => {
    expect(validateEmbeddings(emb('x', { encoding_format: 'float' })).encoding_format).toBe('float');
    expect(validateEmbeddings(emb('x', { encoding_format: 'base64' })).encoding_format).toBe('base64');
    const e = rejection(() => validateEmbeddings(emb('x', { encoding_format: 'int8' })));
    expect(e.param).toBe('encoding_format');
    expect(e.code).toBe('invalid_value');
  });

  it('dimensions must be a positive integer', () => {
    expect(rejection(() => validateEmbeddings(emb('x', { dimensions: 0 }))).param).toBe('dimensions');
    expect(validateEmbeddings(emb('x', { dimensions: 256 })).dimensions).toBe(256);
  });
});
