// Shared helpers of the fault-injection suite (`npm run test:faults`).
//
// expectNothingLost() is the check every fault ends with:
//   - every completed response has exactly one receipt (count = uniqExact over the table, and
//     each completed id is found exactly once);
//   - spend equals the sum of receipt costs: sum(cost_usd) of the receipts = the hourly rollup
//     the analytics read = what the client was told (when the caller knows the costs);
//   - the receipt chain of every instance verifies from seq 1 with no gap, and every
//     signature verifies with the published keys.
import type { ClickHouseClient } from '@clickhouse/client';
import { expect } from 'vitest';
import type { Receipt } from '../../src/receipts/receipt.js';
import { RECEIPT_COLUMNS, rowToReceipt } from '../../src/receipts/rows.js';
import { type JwkLike, verifyChain, verifyReceipt } from '../../src/receipts/verify.js';

export interface NothingLostOptions {
  /** Receipt ids of responses that completed (the client got the whole answer). */
  completed: string[];
  /** Costs the client was told (receipt id → cost_usd), e.g. from the `: tollgate-receipt` line. */
  clientCosts?: Map<string, number | null>;
  /** The gateway's JWK set: every stored signature is verified with it. */
  jwks?: { keys: ReadonlyArray<JwkLike> };
  /** At most this many receipts beyond the completed ones (requests in flight at a crash, errors). */
  maxExtra?: number;
  /** Exactly this many receipts in all (every request sent, failed ones included, has one). */
  total?: number;
}

export interface NothingLostReport {
  rows: number;
  spendUsd: number;
  instances: number;
}

async function rows<T = Record<string, unknown>>(client: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const rs = await client.query({
    query,
    query_params: params,
    format: 'JSONEachRow',
    clickhouse_settings: { date_time_output_format: 'simple', output_format_json_quote_decimals: 0, output_format_json_named_tuples_as_objects: 1 },
  });
  return (await rs.json()) as T[];
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b)) + 1e-9;

export async function expectNothingLost(client: ClickHouseClient, o: NothingLostOptions): Promise<NothingLostReport> {
  const [totals] = await rows<{ n: number; u: number; spend: number }>(
    client,
    'SELECT count() AS n, uniqExact(receipt_id) AS u, toFloat64(sum(ifNull(cost_usd, 0))) AS spend FROM receipts',
  );
  const n = Number(totals!.n);
  expect(n, 'receipts: count() = uniqExact(receipt_id) (no duplicate)').toBe(Number(totals!.u));

  const ids = [...new Set(o.completed)];
  expect(ids.length, 'completed responses have distinct receipt ids').toBe(o.completed.length);
  if (ids.length > 0) {
    const [found] = await rows<{ n: number; u: number }>(
      client,
      'SELECT count() AS n, uniqExact(receipt_id) AS u FROM receipts WHERE receipt_id IN {ids:Array(UUID)}',
      { ids },
    );
    expect(Number(found!.n), 'every completed response has exactly one receipt').toBe(ids.length);
    expect(Number(found!.u)).toBe(ids.length);
  }
  if (o.total !== undefined) expect(n, 'one receipt per request sent').toBe(o.total);
  if (o.maxExtra !== undefined) expect(n - ids.length, 'receipts beyond the completed responses').toBeLessThanOrEqual(o.maxExtra);

  // Spend: the rollup the analytics read sums to the receipts, request for request.
  const [hourly] = await rows<{ requests: number; spend: number }>(
    client,
    'SELECT sum(requests) AS requests, toFloat64(sum(cost_usd)) AS spend FROM receipts_hourly',
  );
  expect(Number(hourly!.requests), 'receipts_hourly counts every receipt once').toBe(n);
  expect(close(Number(hourly!.spend), Number(totals!.spend)), `rollup spend ${hourly!.spend} = sum of receipt costs ${totals!.spend}`).toBe(true);
  if (o.clientCosts && o.clientCosts.size > 0) {
    const told = [...o.clientCosts.values()].reduce<number>((s, c) => s + (c ?? 0), 0);
    const [stored] = await rows<{ spend: number }>(
      client,
      'SELECT toFloat64(sum(ifNull(cost_usd, 0))) AS spend FROM receipts WHERE receipt_id IN {ids:Array(UUID)}',
      {
        ids: [...o.clientCosts.keys()],
      },
    );
    expect(close(Number(stored!.spend), told), `stored spend ${stored!.spend} = costs told to clients ${told}`).toBe(true);
  }

  // Chain and signatures, per instance, from seq 1.
  const all = (await rows(client, `SELECT ${RECEIPT_COLUMNS.join(', ')} FROM receipts ORDER BY instance_id, seq`)).map(rowToReceipt) as Receipt[];
  const byInstance = new Map<string, Receipt[]>();
  for (const r of all) {
    const list = byInstance.get(r.instance_id) ?? [];
    list.push(r);
    byInstance.set(r.instance_id, list);
  }
  for (const [instance, chain] of byInstance) {
    expect(chain[0]!.seq, `chain of ${instance} starts at seq 1`).toBe(1);
    expect(verifyChain(chain), `chain of ${instance}`).toEqual({ valid: true, breaks: [] });
    if (o.jwks) for (const r of chain) expect(verifyReceipt(r, o.jwks), `signature of ${r.receipt_id}`).toEqual({ valid: true });
  }
  return { rows: n, spendUsd: Number(totals!.spend), instances: byInstance.size };
}

/** Reads one Prometheus gauge/counter value (sum over its label sets) from /metrics. */
export async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) {
      sum += Number(m[3]);
      seen = true;
    }
  }
  if (!seen) throw new Error(`metric ${name} not found`);
  return sum;
}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function eventually<T>(fn: () => Promise<T> | T, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last instanceof Error ? last.message : String(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * One chat completion through raw fetch. Streams are read to the end; the cost comes from the
 * closing `: tollgate-receipt` comment line. `completed` is true when the client got the whole answer
 * (JSON 200, or a stream that reached [DONE] and its receipt event).
 */
export async function chat(
  baseURL: string,
  secret: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ status: number; receiptId: string | null; completed: boolean; cost: number | null | undefined; text: string; headers: Headers }> {
  const res = await fetch(`${baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  let text = '';
  try {
    text = await res.text();
  } catch {
    // connection cut mid-body: not completed
    return { status: res.status, receiptId: res.headers.get('x-tollgate-receipt-id'), completed: false, cost: undefined, text, headers: res.headers };
  }
  const receiptId = res.headers.get('x-tollgate-receipt-id');
  if (body.stream) {
    const m = /^: tollgate-receipt (.*)$/m.exec(text);
    const ev = m ? (JSON.parse(m[1]!) as { receipt_id: string; cost_usd: number | null; status: string }) : null;
    const completed = res.status === 200 && text.includes('data: [DONE]') && ev?.status === 'ok';
    return { status: res.status, receiptId, completed, cost: ev?.cost_usd, text, headers: res.headers };
  }
  return { status: res.status, receiptId, completed: res.status === 200, cost: undefined, text, headers: res.headers };
}
