// The Anthropic Messages API (POST /v1/messages) as a client protocol, and POST
// /v1/messages/count_tokens. Requests are translated into the canonical chat form, or pass
// through untouched to an Anthropic upstream; answers render as `message` objects or
// Anthropic's events; errors take Anthropic's shape. Clients authenticate with a Tollgate key
// in `x-api-key` or `Authorization: Bearer` (SDKs send either); `anthropic-version` is accepted
// whatever it says.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiKeyRecord } from '../../gateway/auth.js';
import { readRequestBody } from '../../gateway/body.js';
import { GatewayError, methodNotAllowed, modelNotFound, routeForbidden, serviceUnavailable } from '../../gateway/errors.js';
import { estimatePromptTokens } from '../../gateway/usage.js';
import { parseJsonBody } from '../../gateway/validate.js';
import { type Catalog, isRouteAllowed } from '../../routing/catalog.js';
import { type ClientProtocol, type ParsedRequest, untranslatedMembers } from '../protocol.js';
import { MessagesRelay } from './relay.js';
import { renderMessage } from './render.js';
import { parseMessagesRequest, TRANSLATED } from './request.js';
import { MessagesEncoder } from './stream.js';
import { messagesErrorBody } from './wire.js';

/** The credential as an Authorization header value. */
function authorization(req: IncomingMessage): string | undefined {
  const key = req.headers['x-api-key'];
  return typeof key === 'string' && key ? `Bearer ${key}` : req.headers.authorization;
}

export const messagesProtocol: ClientProtocol = {
  endpoint: 'messages',
  path: '/v1/messages',
  wire: 'messages',
  passthroughHeaders: ['anthropic-beta'],
  authorization,
  parse(body): ParsedRequest {
    const t = parseMessagesRequest(body);
    const metadata = t.body.metadata ?? {};
    return {
      body,
      chat: t.chat,
      model: t.body.model,
      stream: t.body.stream === true,
      includeUsage: false,
      endUser: t.body.metadata?.user_id ?? null,
      metadata,
      nativeOnly: t.nativeOnly,
      untranslated: untranslatedMembers(body, TRANSLATED.read, TRANSLATED.inside),
    };
  },
  answerId: (receiptId) => `msg_${receiptId.replaceAll('-', '')}`,
  errorBody: messagesErrorBody,
  render: (answer, ctx) => renderMessage(answer, ctx.id, ctx.request.model),
  encoder: (ctx) => new MessagesEncoder(ctx.id, ctx.request.model),
  relay: (_ctx, assemble) => new MessagesRelay(assemble),
};

export const COUNT_TOKENS_PATH = '/v1/messages/count_tokens';

export interface CountTokensDeps {
  /** The key behind this credential (an Authorization value), checked as every REST request's is. */
  authenticate(req: IncomingMessage, authorization: string | undefined): Promise<ApiKeyRecord>;
  /** Counts the call against the key's rate limit, or throws its 429. */
  admit(key: ApiKeyRecord): Promise<void>;
  catalog: () => Catalog;
  maxBodyBytes: number;
}

/**
 * POST /v1/messages/count_tokens → `{"input_tokens": n}`, counted with the tokenizer that
 * estimates usage (src/gateway/usage.ts), so it is an estimate for any upstream. Not a model
 * call: no upstream, no receipt (DESIGN §6). The model must be one this key may use.
 */
export async function serveCountTokens(deps: CountTokensDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let status = 200;
  let body: unknown;
  try {
    if (req.method !== 'POST') throw methodNotAllowed();
    const key = await deps.authenticate(req, authorization(req)).catch((err) => {
      throw err instanceof GatewayError ? err : serviceUnavailable('Tollgate cannot verify API keys right now; try again shortly.');
    });
    await deps.admit(key);
    const { chat } = parseMessagesRequest(parseJsonBody(await readRequestBody(req, deps.maxBodyBytes)), true);
    const route = deps.catalog().resolve(chat.model);
    if (!route) throw modelNotFound(chat.model);
    if (!isRouteAllowed(key.allowedRoutes, route)) throw routeForbidden(route.name);
    body = { input_tokens: await estimatePromptTokens(chat) };
  } catch (err) {
    const error = err instanceof GatewayError ? err : new GatewayError(500, 'api_error', 'internal_error', 'Tollgate failed to count the tokens.');
    status = error.status;
    body = messagesErrorBody(error);
    // Retry-After of a 429 (the failed-authentication limit) or a 503.
    for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
    if (status === 413) res.setHeader('connection', 'close');
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
