// The OpenAI-shaped error helpers (DESIGN §4 error table).
import { describe, expect, it } from 'vitest';
import {
  badRequest,
  bodyTooLarge,
  budgetExceeded,
  fromUpstreamClientError,
  GatewayError,
  invalidApiKey,
  methodNotAllowed,
  modelNotFound,
  notFound,
  rateLimited,
  routeForbidden,
  sanitizeUpstreamMessage,
  serviceUnavailable,
  upstreamFailed,
} from '../../src/gateway/errors.js';

const shape = (e: GatewayError) => ({ status: e.status, type: e.type, code: e.code, param: e.param });

describe('error helpers', () => {
  it('each helper has the status/type/code of its contract row', () => {
    expect(shape(invalidApiKey())).toEqual({ status: 401, type: 'invalid_request_error', code: 'invalid_api_key', param: null });
    expect(shape(badRequest('bad', 'messages'))).toEqual({ status: 400, type: 'invalid_request_error', code: null, param: 'messages' });
    expect(badRequest('bad', 'x', 'invalid_value').code).toBe('invalid_value');
    expect(shape(bodyTooLarge(1024))).toEqual({ status: 413, type: 'invalid_request_error', code: 'request_too_large', param: null });
    expect(bodyTooLarge(1024).message).toContain('1024');
    expect(shape(modelNotFound('x'))).toEqual({ status: 404, type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
    expect(shape(routeForbidden('r'))).toEqual({ status: 403, type: 'permission_error', code: 'route_not_allowed', param: 'model' });
    expect(shape(rateLimited('slow down', 5))).toEqual({ status: 429, type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null });
    expect(shape(budgetExceeded('no money'))).toEqual({ status: 429, type: 'insufficient_quota', code: 'budget_exceeded', param: null });
    expect(shape(notFound('Receipt'))).toEqual({ status: 404, type: 'invalid_request_error', code: 'not_found', param: null });
    expect(shape(methodNotAllowed()).status).toBe(405);
    expect(shape(upstreamFailed('x', false))).toEqual({ status: 502, type: 'api_error', code: 'upstream_error', param: null });
    expect(shape(upstreamFailed('x', true))).toEqual({ status: 504, type: 'api_error', code: 'upstream_error', param: null });
    expect(shape(serviceUnavailable('x')).status).toBe(503);
  });

  it('body() is the OpenAI error envelope with exactly four fields', () => {
    const body = badRequest('Missing model.', 'model', 'missing_required_parameter').body();
    expect(body).toEqual({ error: { message: 'Missing model.', type: 'invalid_request_error', param: 'model', code: 'missing_required_parameter' } });
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  });

  it('GatewayError is an Error', () => {
    expect(invalidApiKey()).toBeInstanceOf(Error);
    expect(invalidApiKey()).toBeInstanceOf(GatewayError);
  });

  it('invalidApiKey has one message for every failure', () => {
    expect(invalidApiKey().message).toBe(invalidApiKey().message);
    expect(invalidApiKey().message).not.toMatch(/revoked|expired|unknown/i);
  });

  it('modelNotFound truncates very long model names', () => {
    const e = modelNotFound('m'.repeat(5000));
    expect(e.message.length).toBeLessThan(400);
    expect(e.message).toContain('m'.repeat(200));
    expect(e.message).not.toContain('m'.repeat(201));
  });

  it('rateLimited sets retry-after as whole seconds ≥ 1 and keeps other headers', () => {
    expect(rateLimited('x', 0).headers['retry-after']).toBe('1');
    expect(rateLimited('x', 0.2).headers['retry-after']).toBe('1');
    expect(rateLimited('x', -5).headers['retry-after']).toBe('1');
    expect(rateLimited('x', 2.1).headers['retry-after']).toBe('3');
    expect(rateLimited('x', 30).headers['retry-after']).toBe('30');
    const e = rateLimited('x', 3, { 'x-ratelimit-limit-requests': '10' });
    expect(e.headers).toEqual({ 'x-ratelimit-limit-requests': '10', 'retry-after': '3' });
  });
});

describe('fromUpstreamClientError', () => {
  it('keeps the upstream status, type, code and param', () => {
    const e = fromUpstreamClientError(400, {
      error: { message: "Invalid value for 'temperature'.", type: 'invalid_request_error', code: 'invalid_value', param: 'temperature' },
    });
    expect(shape(e)).toEqual({ status: 400, type: 'invalid_request_error', code: 'invalid_value', param: 'temperature' });
    expect(e.message).toBe("Upstream error: Invalid value for 'temperature'.");
  });

  it('keeps other 4xx statuses and types', () => {
    const e = fromUpstreamClientError(422, { error: { message: 'nope', type: 'unprocessable', code: 'bad_thing' } });
    expect(shape(e)).toEqual({ status: 422, type: 'unprocessable', code: 'bad_thing', param: null });
  });

  it('falls back to defaults when the body has no usable error object', () => {
    for (const body of [null, undefined, 'text', { error: 'string error' }, {}]) {
      const e = fromUpstreamClientError(404, body);
      expect(shape(e)).toEqual({ status: 404, type: 'invalid_request_error', code: null, param: null });
      expect(e.message).toBe('Upstream rejected the request (404).');
    }
  });

  it('keeps only identifier-like type and code (they become a receipt field and a metric label)', () => {
    const e = fromUpstreamClientError(400, { error: { message: 'm', type: 'bad type with spaces', code: `c${'x'.repeat(80)}` } });
    expect(shape(e)).toEqual({ status: 400, type: 'invalid_request_error', code: null, param: null });
  });

  it('redacts a Zhipu-style key whole (`<id>.<secret>`), not only its id', () => {
    const message = sanitizeUpstreamMessage('bad key 0123456789abcdef0123456789abcdef.SeCrEtPaRt1234AB given');
    expect(message).toBe('Upstream error: bad key [redacted] given');
  });

  it('drops non-string code/param/type (some providers send numbers)', () => {
    const e = fromUpstreamClientError(400, { error: { message: 'm', type: 7, code: 400, param: ['x'] } });
    expect(shape(e)).toEqual({ status: 400, type: 'invalid_request_error', code: null, param: null });
  });

  it('sanitizes keys, bearer tokens, long opaque tokens and URLs from the message', () => {
    const secrets = {
      openai: 'sk-proj-AbCdEf0123456789xyz',
      ours: 'tg-AAAAbbbbCCCCdddd1234',
      masked: 'sk-abc123**********wxyz',
      bearer: 'abc.def-ghi',
      long: '0123456789abcdef0123456789abcdef0123',
      uuid: '3f2504e0-4f89-11d3-9a0c-0305e82c3301',
      url: 'https://internal.example:8443/v1/chat?key=zzz',
    };
    const msg =
      `Incorrect API key provided: ${secrets.openai}. Also ${secrets.ours} and ${secrets.masked}. ` +
      `Header was Bearer ${secrets.bearer}; token ${secrets.long}; ark ${secrets.uuid}; see ${secrets.url} for details`;
    const e = fromUpstreamClientError(401, { error: { message: msg, type: 'invalid_request_error', code: 'invalid_api_key' } });
    for (const s of Object.values(secrets)) expect(e.message).not.toContain(s);
    expect(e.message).not.toContain('internal.example');
    expect(e.message).not.toContain('AbCdEf');
    expect(e.message).toContain('[redacted]');
    expect(e.message).toMatch(/^Upstream error: Incorrect API key provided: /);
    expect(e.message).toContain('for details');
    expect(e.code).toBe('invalid_api_key');
  });

  it('leaves ordinary text alone', () => {
    expect(sanitizeUpstreamMessage('max_tokens must be at most 4096')).toBe('Upstream error: max_tokens must be at most 4096');
  });

  it('truncates very long messages', () => {
    const out = sanitizeUpstreamMessage('word '.repeat(1000));
    expect(out.length).toBeLessThanOrEqual('Upstream error: '.length + 501);
    expect(out.endsWith('…')).toBe(true);
  });
});
