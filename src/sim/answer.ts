// The simulator's answers, whatever the wire: deterministic text, tool-call arguments and
// structured output derived from a hash of the prompt, in `completionTokens` pieces (one piece
// = one token = one stream chunk). Each wire (openai.ts, anthropic.ts) reads its own request
// shape into an AnswerRequest and writes the planned pieces in its own format.
//
// No tokenizer: prompt tokens are *estimated* as ceil(chars / 4), where chars counts the text
// of every message (string content and text parts), tool-call arguments and tool results in
// the history, the system prompt and, when present, the JSON of `tools`.
import type { SimBehaviour } from './behaviour.js';

const DEFAULT_COMPLETION_TOKENS = 8;

export interface PromptScan {
  tokens: number;
  hash: number;
  /** Text of the last message when it is a user message (tool selection looks at it). */
  lastUserText: string | undefined;
}

/** The parts of a request that shape the answer, read from either wire. */
export interface AnswerRequest {
  /** The output cap (max_tokens, max_completion_tokens), if any. */
  maxTokens: number | undefined;
  /** Function tools: a name and the JSON schema of the arguments. */
  tools: Array<{ name: string; parameters: unknown }>;
  toolChoice: 'auto' | 'none' | 'required' | { name: string };
  format: { type: 'json_object' } | { type: 'json_schema'; schema: unknown } | undefined;
  /** Stop sequences: the answer is cut before the first one it contains. */
  stop: string[];
}

export interface ChoicePlan {
  /** Text (or JSON text) answer, or one tool call whose arguments are streamed as pieces. */
  tool: { id: string; name: string } | undefined;
  pieces: string[];
  finish: 'stop' | 'length' | 'tool_calls' | 'content_filter';
  /** The pieces are a refusal, not an answer. */
  refusal: boolean;
  /** The stop sequence the text was cut at, if any. */
  stopSequence: string | undefined;
}

/**
 * One pass over the conversation: character count (→ estimated tokens) and FNV-1a hash. A
 * message's text is its string content or its parts' `text`; tool calls (OpenAI `tool_calls`,
 * Anthropic `tool_use` input) and Anthropic tool results count too, but only `text` makes the
 * last user message's text: a conversation that ends with tool results is answered in words.
 */
export function scanPrompt(messages: any[], tools: unknown, system?: unknown): PromptScan {
  let chars = 0;
  let hash = 0x811c9dc5;
  let lastUserText: string | undefined;
  const feed = (s: string) => {
    chars += s.length;
    for (let i = 0; i < s.length; i++) hash = Math.imul(hash ^ s.charCodeAt(i), 0x01000193);
  };
  if (system !== undefined) feed(typeof system === 'string' ? system : textOf(system));
  for (let m = 0; m < messages.length; m++) {
    const msg = messages[m];
    if (msg === null || typeof msg !== 'object') continue;
    const c = msg.content;
    let text = '';
    if (typeof c === 'string') text = c;
    else if (Array.isArray(c)) {
      for (const part of c) {
        if (!part) continue;
        if (typeof part.text === 'string') text += part.text;
        else if (part.type === 'tool_use') feed(JSON.stringify(part.input ?? {}));
        else if (part.type === 'tool_result') feed(typeof part.content === 'string' ? part.content : textOf(part.content));
      }
    }
    feed(text);
    if (Array.isArray(msg.tool_calls)) {
      for (const call of msg.tool_calls) if (typeof call?.function?.arguments === 'string') feed(call.function.arguments);
    }
    if (m === messages.length - 1 && msg.role === 'user') lastUserText = text;
  }
  if (Array.isArray(tools) && tools.length > 0) chars += JSON.stringify(tools).length;
  return { tokens: Math.max(1, Math.ceil(chars / 4)), hash: hash >>> 0, lastUserText };
}

function textOf(blocks: unknown): string {
  let text = '';
  if (Array.isArray(blocks)) for (const b of blocks) if (typeof b?.text === 'string') text += b.text;
  return text;
}

/** `n` answers to one prompt; tool-call ids are `${idPrefix}<counter>`. */
export function planChoices(req: AnswerRequest, b: SimBehaviour, prompt: PromptScan, n: number, ids: { n: number }, idPrefix: string): ChoicePlan[] {
  const count = b.completionTokens ?? DEFAULT_COMPLETION_TOKENS;
  const tool = pickTool(req.tools, req.toolChoice, prompt.lastUserText);
  const format = req.format;
  const plans: ChoicePlan[] = [];
  for (let i = 0; i < n; i++) {
    // Each choice gets its own stream of words, all derived from the prompt.
    const rng = mulberry32(prompt.hash ^ Math.imul(i + 1, 0x9e3779b9));
    let pieces: string[];
    let toolCall: ChoicePlan['tool'];
    if (b.refusal !== undefined) {
      pieces = splitWords(b.refusal);
    } else if (tool) {
      const args = b.toolArguments ?? JSON.stringify(sampleSchema(tool.parameters ?? { type: 'object', properties: {} }, rng));
      pieces = splitEven(args, count);
      toolCall = { id: `${idPrefix}${(++ids.n).toString(36)}`, name: tool.name };
    } else if (b.content !== undefined) {
      pieces = b.completionTokens !== undefined ? splitEven(b.content, count) : splitWords(b.content);
    } else if (format?.type === 'json_schema') {
      const schema = format.schema ?? { type: 'object', properties: {} };
      pieces = splitEven(JSON.stringify(sampleSchema(schema, rng, schema)), count);
    } else if (format?.type === 'json_object') {
      // {"answer":"w0 w1 … wN-1"} in exactly `count` pieces, so usage still matches the chunks.
      pieces = count === 0 ? ['{}'] : wordPieces(count, rng);
      if (count > 0) {
        pieces[0] = `{"answer":"${pieces[0]}`;
        pieces[count - 1] += '"}';
      }
    } else {
      pieces = wordPieces(count, rng);
    }
    let finish: ChoicePlan['finish'] = toolCall ? 'tool_calls' : 'stop';
    const stopSequence = toolCall ? undefined : cutAtStop(pieces, req.stop);
    if (req.maxTokens !== undefined && pieces.length > req.maxTokens) {
      pieces = pieces.slice(0, req.maxTokens); // like OpenAI: cut, even mid-JSON
      finish = 'length';
    }
    finish = b.finishReason ?? finish;
    plans.push({ tool: toolCall, pieces, finish, refusal: b.refusal !== undefined, stopSequence: finish === 'stop' ? stopSequence : undefined });
  }
  return plans;
}

/** Cuts `pieces` (in place) before the first stop sequence their text contains; returns it. */
function cutAtStop(pieces: string[], stops: string[]): string | undefined {
  if (stops.length === 0) return undefined;
  const text = pieces.join('');
  let at = -1;
  let found: string | undefined;
  for (const s of stops) {
    const i = s ? text.indexOf(s) : -1;
    if (i !== -1 && (at === -1 || i < at)) [at, found] = [i, s];
  }
  if (found === undefined) return undefined;
  let kept = 0;
  let n = 0;
  while (n < pieces.length && kept + pieces[n].length <= at) kept += pieces[n++].length;
  if (n < pieces.length && kept < at) {
    pieces[n] = pieces[n].slice(0, at - kept);
    n++;
  }
  pieces.length = n;
  return found;
}

export function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/**
 * When to call a tool (kept simple on purpose):
 * - tool choice 'none' → never;
 * - a named function → that function;
 * - 'required' → the function named in the last user message, else the first tool;
 * - 'auto' → only when the last message is a user message that mentions a function's name
 *   (case-insensitive), e.g. "please call get_weather for Paris". A conversation that ends
 *   with a tool result is therefore answered with text, so agent loops terminate.
 */
function pickTool(tools: AnswerRequest['tools'], choice: AnswerRequest['toolChoice'], lastUserText: string | undefined) {
  if (tools.length === 0 || choice === 'none') return undefined;
  if (typeof choice === 'object') return tools.find((t) => t.name === choice.name);
  const lower = lastUserText?.toLowerCase();
  const mentioned = lower ? tools.find((t) => lower.includes(t.name.toLowerCase())) : undefined;
  if (choice === 'required') return mentioned ?? tools[0];
  return mentioned;
}

const WORDS = [
  'the',
  'gateway',
  'routes',
  'every',
  'request',
  'to',
  'a',
  'healthy',
  'provider',
  'and',
  'signs',
  'its',
  'receipt',
  'while',
  'cache',
  'answers',
  'repeat',
  'questions',
  'quickly',
  'with',
  'low',
  'latency',
  'cost',
  'model',
  'token',
  'stream',
  'budget',
  'team',
  'feature',
  'task',
  'result',
  'simulated',
  'answer',
  'is',
  'ready',
  'here',
  'now',
  'clear',
  'short',
  'useful',
  'data',
  'shows',
  'that',
  'this',
  'works',
  'well',
  'for',
  'you',
  'today',
  'because',
  'we',
  'measure',
  'each',
  'step',
  'carefully',
  'then',
  'report',
  'back',
  'fast',
  'small',
  'steady',
  'plan',
  'good',
  'done',
];

/** `count` word pieces: "w0", " w1", " w2", … (one piece = one token = one SSE chunk). */
function wordPieces(count: number, rng: () => number): string[] {
  const out = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const w = WORDS[(rng() * WORDS.length) | 0];
    out[i] = i === 0 ? w : ` ${w}`;
  }
  return out;
}

/** Fixed content split at word starts ("Hello", " world", "!\n"), concatenating back exactly. */
let lastSplit: { text: string; pieces: string[] } | undefined;
function splitWords(text: string): string[] {
  if (lastSplit?.text === text) return lastSplit.pieces.slice();
  const pieces: string[] = text.match(/\s*\S+/g) ?? [];
  const covered = pieces.reduce((len, p) => len + p.length, 0);
  if (covered < text.length) {
    const rest = text.slice(covered); // trailing whitespace
    if (pieces.length > 0) pieces[pieces.length - 1] += rest;
    else pieces.push(rest);
  }
  lastSplit = { text, pieces };
  return pieces.slice();
}

/** `count` slices of nearly equal length (fewer when the text is shorter), split on code points. */
function splitEven(text: string, count: number): string[] {
  const cps = Array.from(text);
  const k = Math.min(count, cps.length);
  if (k <= 0) return text.length > 0 ? [text] : [];
  const out: string[] = [];
  for (let i = 0; i < k; i++) {
    out.push(cps.slice(Math.floor((i * cps.length) / k), Math.floor(((i + 1) * cps.length) / k)).join(''));
  }
  return out;
}

/**
 * A deterministic value that validates against common JSON Schema (the subset used by tool
 * parameters and structured outputs): type (incl. arrays of types), enum, const, default,
 * properties (all of them, so `strict` schemas with every property required are satisfied),
 * items/minItems, anyOf/oneOf (first non-null option), allOf (merged objects), local $ref,
 * string formats, numeric bounds. Recursion is cut at depth 6 (optional properties from depth 3).
 */
function sampleSchema(schema: any, rng: () => number, root: any = schema, depth = 0): unknown {
  if (!schema || typeof schema !== 'object') return null;
  if (typeof schema.$ref === 'string') {
    const target = resolveRef(root, schema.$ref);
    return depth > 6 ? null : sampleSchema(target, rng, root, depth + 1);
  }
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  if ('default' in schema) return schema.default;
  const options = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(options) && options.length > 0) {
    const pick = options.find((o: any) => o?.type !== 'null') ?? options[0];
    return sampleSchema(pick, rng, root, depth + 1);
  }
  if (Array.isArray(schema.allOf)) {
    const merged: any = { type: 'object', properties: {}, required: [] };
    for (const part of schema.allOf) {
      const p = typeof part?.$ref === 'string' ? resolveRef(root, part.$ref) : part;
      Object.assign(merged.properties, p?.properties);
      if (Array.isArray(p?.required)) merged.required.push(...p.required);
    }
    return sampleSchema(merged, rng, root, depth + 1);
  }
  let type = schema.type;
  if (Array.isArray(type)) type = type.find((t: string) => t !== 'null') ?? 'null';
  if (type === undefined) type = schema.properties ? 'object' : schema.items ? 'array' : 'string';
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = schema.properties ?? {};
      const required: string[] = Array.isArray(schema.required) ? schema.required : Object.keys(props);
      for (const key of Object.keys(props)) {
        if (depth > 6 || (depth >= 3 && !required.includes(key))) continue;
        out[key] = sampleSchema(props[key], rng, root, depth + 1);
      }
      return out;
    }
    case 'array': {
      const len = Math.min(3, Math.max(1, schema.minItems ?? 1));
      if (depth > 6 || (schema.maxItems !== undefined && schema.maxItems < len)) return [];
      return Array.from({ length: len }, () => sampleSchema(schema.items ?? { type: 'string' }, rng, root, depth + 1));
    }
    case 'integer':
    case 'number': {
      let v = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + 1 : 1);
      if (schema.maximum !== undefined && v > schema.maximum) v = schema.maximum;
      return type === 'integer' ? Math.ceil(v) : v;
    }
    case 'boolean':
      return true;
    case 'null':
      return null;
    default: {
      switch (schema.format) {
        case 'date-time':
          return '2025-01-01T00:00:00Z';
        case 'date':
          return '2025-01-01';
        case 'email':
          return 'user@example.com';
        case 'uri':
        case 'url':
          return 'https://example.com/';
        case 'uuid':
          return '00000000-0000-4000-8000-000000000000';
      }
      let s = WORDS[(rng() * WORDS.length) | 0];
      if (typeof schema.minLength === 'number') while (s.length < schema.minLength) s += 'x';
      if (typeof schema.maxLength === 'number') s = s.slice(0, schema.maxLength);
      return s;
    }
  }
}

function resolveRef(root: any, ref: string): any {
  if (!ref.startsWith('#')) return undefined;
  let node = root;
  for (const raw of ref.slice(1).split('/')) {
    if (raw === '') continue;
    node = node?.[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node;
}

/** Small, fast, seedable PRNG (mulberry32); determinism is all we need from it. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
