// The console's DOM-free parts, in Node: the browser's receipt check (the same WebCrypto
// Ed25519 and `canonicalize` as in Chromium) against the server's signer and verifier, the
// live panel's rates and request traces, and the number formats.
import { v7 as uuidv7 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { usd } from '../../src/console/format.js';
import { type Decision, LiveModel, RATE_SECONDS } from '../../src/console/live-model.js';
import { verifyInBrowser } from '../../src/console/verify.js';
import { unsignedReceipt } from '../../src/receipts/normalize.js';
import { ReceiptSigner } from '../../src/receipts/signer.js';
import { GENESIS_PREV_HASH, verifyReceipt } from '../../src/receipts/verify.js';

describe('verifyInBrowser', () => {
  const signer = ReceiptSigner.ephemeral();
  const unsigned = unsignedReceipt(
    {
      receipt_id: uuidv7(),
      request_id: 'req_1',
      started_at: '2026-11-21T22:00:00.123Z',
      finished_at: '2026-11-21T22:00:01.5Z',
      team_id: 'team',
      api_key_id: null,
      feature: 'résumé ✨ "quoted" </script>',
      task_id: null,
      end_user: null,
      endpoint: '/v1/chat/completions',
      requested_model: 'chat-default',
      route: 'chat-default',
      strategy: 'PRIORITY',
      provider: 'sim',
      model: 'm',
      attempts: [{ provider: 'sim', model: 'm', status: 200, error: null, latency_ms: 12.125 }],
      status: 'ok',
      http_status: 200,
      error_code: null,
      stream: false,
      ttft_ms: null,
      latency_ms: 13.5,
      upstream_ms: 12.125,
      overhead_ms: 1.375,
      prompt_tokens: 10,
      completion_tokens: 5,
      cached_tokens: 0,
      usage_estimated: false,
      cost_usd: 1.5e-7,
      price_version: 3,
      cache_status: 'miss',
      cache_similarity: null,
      saved_cost_usd: 0,
      request_sha256: 'a'.repeat(64),
      response_sha256: 'b'.repeat(64),
    },
    { instance_id: 'i-1', seq: 1, prev_hash: GENESIS_PREV_HASH, key_id: signer.keyId },
  );
  const signature = signer.sign(unsigned);
  // What GraphQL's signedJson carries: the JSON round trip of the signed object.
  const signedJson = JSON.parse(JSON.stringify(unsigned)) as Record<string, unknown>;

  it('agrees with the server on a genuine receipt', async () => {
    expect(verifyReceipt({ ...signedJson, signature }, signer.jwks()).valid).toBe(true);
    expect(await verifyInBrowser(signedJson, signature, signer.jwks())).toEqual({ status: 'valid', keyId: signer.keyId });
  });

  it('rejects an edited receipt, another key, an unknown key id and a damaged signature', async () => {
    expect(await verifyInBrowser({ ...signedJson, cost_usd: 1.6e-7 }, signature, signer.jwks())).toEqual({
      status: 'invalid',
      reason: 'the signature does not match the receipt',
    });
    const other = ReceiptSigner.ephemeral();
    expect((await verifyInBrowser(signedJson, signature, { keys: [{ ...other.jwks().keys[0]!, kid: signer.keyId }] })).status).toBe('invalid');
    expect(await verifyInBrowser(signedJson, signature, other.jwks())).toEqual({
      status: 'invalid',
      reason: `key ${signer.keyId} is not in the published key set`,
    });
    expect((await verifyInBrowser(signedJson, signature.slice(2), signer.jwks())).status).toBe('invalid');
    expect((await verifyInBrowser(signedJson, `${signature.slice(0, -1)}+`, signer.jwks())).status).toBe('invalid');
  });

  it('is unavailable, not invalid, when the key set could not be read; a malformed published key is invalid', async () => {
    // An error page's JSON (`{"error":…}`), a failed fetch (null), keys that are not a list.
    for (const jwks of [{ error: { message: 'not found' } }, null, { keys: 'x' }]) {
      expect((await verifyInBrowser(signedJson, signature, jwks)).status).toBe('unavailable');
    }
    const key = signer.jwks().keys[0]!;
    expect(await verifyInBrowser(signedJson, signature, { keys: [{ ...key, x: key.x.slice(0, 20) }] })).toEqual({
      status: 'invalid',
      reason: `key ${signer.keyId} is not an Ed25519 key`,
    });
  });
});

function decision(over: Partial<Decision>): Decision {
  return {
    requestId: 'r1',
    receiptId: 'rc1',
    at: new Date(0).toISOString(),
    teamId: 't',
    feature: null,
    requestedModel: 'chat',
    route: 'chat',
    strategy: 'PRIORITY',
    attempt: 1,
    provider: 'a',
    model: 'm',
    outcome: 'ATTEMPT',
    reason: null,
    latencyMs: null,
    droppedBefore: 0,
    candidates: [],
    ...over,
  };
}

describe('LiveModel', () => {
  it('shows a steady rate as it is, whenever it is read and from the first seconds on', () => {
    let now = 5_000_250;
    const model = new LiveModel(() => now);
    const readings: Array<[number, number]> = [];
    // 10 requests a second for 30 s, read every 370 ms.
    for (let t = 0; t < 30_000; t += 10) {
      now = 5_000_250 + t;
      if (t % 100 === 0) model.add(decision({ requestId: `s${t}`, outcome: 'SUCCESS' }));
      if (t % 370 === 0 && t >= 1_000) readings.push([t, model.rates().total.requests]);
    }
    // Off by at most the one request that has just arrived, over the time covered. Before, a
    // full window read 9.0–10.0 (a sawtooth) and the first seconds ramped up from 0.
    for (const [t, r] of readings) {
      const covered = Math.min(t, RATE_SECONDS * 1000 - 1000) / 1000;
      expect(Math.abs(r - 10), `at ${t} ms`).toBeLessThanOrEqual(1 / covered + 1e-9);
    }
  });

  it('counts final outcomes as requests, per provider/model, over the last seconds', () => {
    let now = 1_000_000;
    const model = new LiveModel(() => now);
    // A failover from a to b, a cache hit, a rejection.
    model.add(decision({ requestId: 'r1', outcome: 'ATTEMPT' }));
    model.add(decision({ requestId: 'r1', outcome: 'FAILOVER', reason: 'http_503' }));
    model.add(decision({ requestId: 'r1', outcome: 'SUCCESS', provider: 'b', attempt: 2 }));
    model.add(decision({ requestId: 'r2', outcome: 'CACHE_HIT', provider: 'b' }));
    model.add(decision({ requestId: 'r3', outcome: 'REJECTED', provider: null, model: null, droppedBefore: 2 }));
    // Over the full window (listening for RATE_SECONDS by now): per second of it.
    now += RATE_SECONDS * 1000 - 1;
    const { total, byTarget } = model.rates();
    const perSecond = (n: number) => n / ((RATE_SECONDS * 1000 - 1) / 1000);
    expect(total).toEqual({ requests: perSecond(3), errors: perSecond(1), failovers: perSecond(1), cacheHits: perSecond(1) });
    expect(byTarget.get('a/m')).toEqual({ requests: 0, errors: 0, failovers: perSecond(1), cacheHits: 0 });
    expect(byTarget.get('b/m')!.requests).toBe(perSecond(2));
    expect(byTarget.get('(no provider)')!.errors).toBe(perSecond(1));
    expect(model.dropped).toBe(2);

    const [first] = model.latest(1);
    expect(first!.requestId).toBe('r3');
    const r1 = model.requests.get('r1')!;
    expect(r1.events.map((e) => e.outcome)).toEqual(['ATTEMPT', 'FAILOVER', 'SUCCESS']);
    expect(r1.final!.provider).toBe('b');

    // Ten seconds on, the rates are back to zero; the chart (the last minute so far) still has them.
    now += 1;
    expect(model.rates().total.requests).toBe(0);
    const [seconds, requests] = model.series();
    expect(seconds).toHaveLength(60);
    expect(seconds.at(-1)).toBe(now / 1000);
    expect(requests.reduce((a, b) => a + b, 0)).toBe(3);
    // Ten minutes on: five minutes of history, the old seconds gone.
    now += 600_000;
    model.add(decision({ requestId: 'r4', outcome: 'SUCCESS' }));
    const [later, laterRequests] = model.series();
    expect(later).toHaveLength(300);
    expect(laterRequests.reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('keeps the last 200 requests', () => {
    const model = new LiveModel(() => 0);
    for (let i = 0; i < 250; i++) model.add(decision({ requestId: `r${i}`, outcome: 'SUCCESS' }));
    expect(model.requests.size).toBe(200);
    expect(model.latest(1)[0]!.requestId).toBe('r249');
    expect(model.requests.has('r49')).toBe(false);
  });
});

describe('usd', () => {
  it('shows cents from a dollar up and three significant digits below', () => {
    expect(usd(12.345)).toBe('$12.35');
    expect(usd(0)).toBe('$0.00');
    expect(usd(0.0123)).toBe('$0.0123');
    expect(usd(1.5e-7)).toBe('$0.000000150');
    expect(usd(null)).toBe('—');
  });
});
