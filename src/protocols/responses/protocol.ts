// The OpenAI Responses API (POST /v1/responses) as a client protocol: requests translated
// into the canonical chat form, answers rendered as `response` objects or typed events, and
// answers kept (unless `store: false`) for previous_response_id and GET /v1/responses/{id}.
import { GatewayError } from '../../gateway/errors.js';
import type { ResponseStore } from '../../store/responses.js';
import { type ClientProtocol, type ParsedRequest, type RenderContext, untranslatedMembers } from '../protocol.js';
import { ResponsesRelay } from './relay.js';
import { type ResponseObject, type ResponseShell, renderResponse } from './render.js';
import { type Item, itemsToMessages, nativeOnlyCollector, parseResponsesRequest, TRANSLATED, type TranslatedRequest } from './request.js';
import { ResponsesEncoder } from './stream.js';

export function responsesProtocol(store: ResponseStore | null): ClientProtocol {
  const translated = (parsed: ParsedRequest) => parsed.state as TranslatedRequest;
  const shell = (ctx: RenderContext): ResponseShell => ({ id: ctx.id, created: ctx.created, model: ctx.request.model, body: translated(ctx.request).body });
  // What a relayed response echoes of the client's request, not of the upstream's: the upstream
  // never saw the previous_response_id (Tollgate sent the history), nor Tollgate's attribution
  // keys in metadata.
  const echoed = (ctx: RenderContext) => {
    const { body } = translated(ctx.request);
    return { previousResponseId: body.previous_response_id ?? null, metadata: body.metadata ?? {} };
  };
  const keep = (ctx: RenderContext, response: ResponseObject | Record<string, unknown>) => {
    const t = translated(ctx.request);
    if (!store || t.body.store === false) return;
    // Kept only once its receipt is written: no answer is retrievable that has no receipt.
    ctx.whenRecorded(() => store.save({ id: ctx.id, teamId: ctx.teamId, previousId: t.body.previous_response_id ?? null, input: t.items, response }));
  };

  return {
    endpoint: 'responses',
    path: '/v1/responses',
    wire: 'responses',
    authorization: (req) => req.headers.authorization,
    parse(body): ParsedRequest {
      const t = parseResponsesRequest(body);
      return {
        body,
        chat: t.chat,
        model: t.body.model,
        stream: t.body.stream === true,
        includeUsage: false,
        endUser: t.body.user ?? null,
        metadata: t.body.metadata ?? {},
        nativeOnly: t.nativeOnly,
        state: t,
        untranslated: untranslatedMembers(body, TRANSLATED.read, TRANSLATED.inside),
      };
    },
    async prepare(parsed, teamId) {
      const t = translated(parsed);
      const previous = t.body.previous_response_id;
      if (!previous) return;
      const items = store ? await store.conversation(teamId, previous) : null;
      if (!items) {
        throw new GatewayError(
          404,
          'invalid_request_error',
          'previous_response_not_found',
          `Previous response with id '${previous.slice(0, 128)}' not found.`,
          'previous_response_id',
        );
      }
      // The earlier turns come after this request's instructions, before its new input. What
      // in them only a native upstream takes (an earlier native turn's items) keeps this
      // request on native upstreams too.
      const { native, found } = nativeOnlyCollector();
      const history = itemsToMessages(items, 'previous_response_id', native);
      parsed.nativeOnly ??= found();
      const messages = parsed.chat!.messages;
      const system = t.body.instructions ? 1 : 0;
      messages.splice(system, 0, ...history);
      // A native upstream gets the conversation too, as input items: the gateway keeps
      // conversations (so they may move between upstreams), and the upstream never saw the
      // gateway's response ids.
      const body: Record<string, unknown> = { ...parsed.body, input: [...items.map(forUpstream), ...t.items] };
      delete body.previous_response_id;
      parsed.body = body;
    },
    answerId: (receiptId) => `resp_${receiptId.replaceAll('-', '')}`,
    errorBody: (error) => error.body(),
    render(answer, ctx) {
      const response = renderResponse(answer, shell(ctx));
      keep(ctx, response);
      return response;
    },
    encoder: (ctx) => new ResponsesEncoder(shell(ctx), (response) => keep(ctx, response)),
    relayAnswer(json, ctx) {
      const { previousResponseId, metadata } = echoed(ctx);
      const response = { ...(json as Record<string, unknown>), id: ctx.id, previous_response_id: previousResponseId, metadata };
      keep(ctx, response);
      return response;
    },
    relay: (ctx, assemble) => new ResponsesRelay({ id: ctx.id, ...echoed(ctx) }, assemble, (response) => keep(ctx, response)),
  };
}

/**
 * A stored item as input for a native upstream: message and function-call ids were minted by
 * the gateway or another upstream and mean nothing to this one (a reasoning item keeps its
 * id: that is how an upstream finds its own reasoning again).
 */
function forUpstream(item: Item): Item {
  if (item.type !== 'message' && item.type !== 'function_call' && item.type !== undefined) return item;
  const { id: _id, ...rest } = item;
  return rest;
}

/** GET /v1/responses/{id}: the stored response object, this team's only. */
export async function storedResponse(store: ResponseStore | null, teamId: string, id: string): Promise<unknown> {
  const found = store ? await store.get(teamId, id) : null;
  if (!found) throw responseNotFound(id);
  return found.response;
}

/** DELETE /v1/responses/{id}. */
export async function deleteStoredResponse(store: ResponseStore | null, teamId: string, id: string): Promise<unknown> {
  if (!store || !(await store.delete(teamId, id))) throw responseNotFound(id);
  return { id, object: 'response', deleted: true };
}

function responseNotFound(id: string): GatewayError {
  return new GatewayError(404, 'invalid_request_error', 'not_found', `No response found with id '${id.slice(0, 128)}'.`, 'response_id');
}
