// Request validation. It rejects, with a 400 that names the offending `param`, and never
// clamps or rewrites: the body that passes is forwarded as the client sent it (only `model`
// and, for streams, `stream_options` are set for the upstream).
import { z } from 'zod';
import { badRequest, type GatewayError } from './errors.js';

/** Deeper than any legitimate tool schema; stops stack-exhaustion tricks in later stages. */
export const MAX_JSON_DEPTH = 64;

const role = z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const contentPart = z.looseObject({ type: z.string().min(1) });
const content = z.union([z.string(), z.array(contentPart), z.null()]);
const message = z.looseObject({
  role,
  content: content.optional(),
  name: z.string().optional(),
  tool_calls: z
    .array(z.looseObject({ id: z.string().optional(), type: z.string().optional(), function: z.looseObject({ name: z.string() }).optional() }))
    .optional(),
  tool_call_id: z.string().optional(),
});
const tool = z.looseObject({
  type: z.string(),
  function: z
    .looseObject({ name: z.string().min(1).max(256), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()).optional() })
    .optional(),
});
const metadata = z.record(z.string(), z.string().max(512));
const stop = z.union([z.string(), z.array(z.string()).max(16), z.null()]);

const ChatCompletionRequest = z.looseObject({
  model: z.string().min(1).max(256),
  messages: z.array(message).min(1).max(4096),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  max_completion_tokens: z.number().int().min(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.number().int().nullish(),
  stop: stop.optional(),
  tools: z.array(tool).max(512).nullish(),
  tool_choice: z.union([z.string(), z.looseObject({ type: z.string() })]).nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: z.looseObject({ type: z.string() }).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  user: z.string().max(512).nullish(),
  metadata: metadata.nullish(),
});

const EmbeddingsRequest = z.looseObject({
  model: z.string().min(1).max(256),
  input: z.union([
    z.string(),
    z.array(z.string()).min(1).max(2048),
    z.array(z.number().int()).min(1),
    z.array(z.array(z.number().int()).min(1)).min(1).max(2048),
  ]),
  encoding_format: z.enum(['float', 'base64']).optional(),
  dimensions: z.number().int().min(1).optional(),
  user: z.string().max(512).optional(),
  metadata: metadata.optional(),
});

export type ChatRequest = z.infer<typeof ChatCompletionRequest>;
export type EmbeddingRequest = z.infer<typeof EmbeddingsRequest>;

export function parseJsonBody(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) throw badRequest('Request body is empty; expected a JSON object.', null);
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('Request body is not valid JSON.', null);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw badRequest('Request body must be a JSON object.', null);
  }
  const tooDeep = findTooDeep(value, MAX_JSON_DEPTH);
  if (tooDeep !== null) throw badRequest(`JSON nesting exceeds ${MAX_JSON_DEPTH} levels.`, tooDeep);
  return value as Record<string, unknown>;
}

export function validateChat(body: Record<string, unknown>): ChatRequest {
  return check(ChatCompletionRequest, body);
}

export function validateEmbeddings(body: Record<string, unknown>): EmbeddingRequest {
  return check(EmbeddingsRequest, body);
}

export function check<T>(schema: z.ZodType<T>, body: Record<string, unknown>): T {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  throw toBadRequest(result.error, body);
}

function toBadRequest(error: z.ZodError, body: Record<string, unknown>): GatewayError {
  // The first issue that points at a field: the client fixes one thing at a time anyway.
  const issue = error.issues[0]!;
  const param = formatPath(issue.path);
  const missing = valueAt(body, issue.path) === undefined;
  const message = missing ? `Missing required parameter: '${param}'.` : `Invalid value for '${param}': ${issue.message}.`;
  return badRequest(message, param || null, missing ? 'missing_required_parameter' : 'invalid_value');
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, p)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

/** Iterative (no recursion to exhaust), returns the path of the first too-deep node or null. */
function findTooDeep(root: object, maxDepth: number): string | null {
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value: root, depth: 1, path: '' }];
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop()!;
    if (depth > maxDepth) return path || null;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const v = value[i];
        if (v !== null && typeof v === 'object') stack.push({ value: v, depth: depth + 1, path: `${path}[${i}]` });
      }
    } else {
      for (const key of Object.keys(value as object)) {
        const v = (value as Record<string, unknown>)[key];
        if (v !== null && typeof v === 'object') stack.push({ value: v, depth: depth + 1, path: path ? `${path}.${key}` : key });
      }
    }
  }
  return null;
}
