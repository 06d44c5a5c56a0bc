// Fault 4: the WAL's disk is full. A real full filesystem: a 1 MiB tmpfs mounted on
// `$TOLLGATE_DATA_DIR/wal` (needs root, as on the CI machines), filled with a filler file.
//
// Policy: a receipt that cannot reach the WAL means the response is refused with an error —
// never an answer without a receipt, never a silent drop. While the disk is full, JSON
// requests get an OpenAI-shaped 5xx; a stream (whose bytes already went out) is cut before
// its closing `: tollgate-receipt` line, so the client can tell it has no receipt. When space
// comes back, requests succeed again and the chain continues without a gap.
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { chat, expectNothingLost } from './support.js';

let dataDir: string;
let walDir: string;
let gw: TestGateway;
let secret: string;
let mounted = false;
const completed: string[] = [];
let sent = 0;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-faults-wal-'));
  walDir = path.join(dataDir, 'wal');
  await mkdir(walDir, { mode: 0o700 });
  // Fails loudly (and the suite with it) where tmpfs cannot be mounted: no silent skip.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', walDir]);
  mounted = true;
  gw = await startTestGateway({ dataDir });
  secret = (await gw.createKey('team-wal')).secret;
});
afterAll(async () => {
  await gw?.close().catch(() => undefined);
  if (mounted) execFileSync('umount', ['-l', walDir]);
  await rm(dataDir, { recursive: true, force: true });
});

async function fill(): Promise<string> {
  const file = path.join(walDir, 'filler');
  const fh = await open(file, 'w');
  const block = Buffer.alloc(4096, 0x78);
  try {
    for (;;) await fh.write(block);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  } finally {
    await fh.close();
  }
  return file;
}

/** A Responses request; returns the response id the client learnt (header or response.created) and whether it completed. */
async function respond(stream: boolean, tag: string): Promise<{ id: string; status: number; completed: boolean }> {
  sent++;
  const r = await fetch(`${gw.baseURL}/responses`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat-default', stream, input: tag }),
  });
  const text = await r.text();
  const receiptId = r.headers.get('x-tollgate-receipt-id');
  // A JSON answer refused for want of a receipt names none: its id is never learnt.
  const id = stream ? (/"id":"(resp_[0-9a-f]+)"/.exec(text)?.[1] ?? '') : receiptId ? `resp_${receiptId.replaceAll('-', '')}` : '';
  const done = stream ? /event: response\.completed\n[\s\S]*: tollgate-receipt /.test(text) : r.status === 200;
  if (done && receiptId) completed.push(receiptId);
  return { id, status: r.status, completed: done };
}

const stored = async (id: string) => (await fetch(`${gw.baseURL}/responses/${id}`, { headers: { authorization: `Bearer ${secret}` } })).status;

async function send(stream: boolean, tag: string) {
  sent++;
  const r = await chat(gw.baseURL, secret, { model: 'chat-default', stream, messages: [{ role: 'user', content: tag }] });
  if (r.completed && r.receiptId) completed.push(r.receiptId);
  return r;
}

describe('WAL disk full', () => {
  it('refuses to answer without a receipt while full, and recovers when space returns', async ({ annotate }) => {
    for (let i = 0; i < 5; i++) expect((await send(i % 2 === 0, `before ${i}`)).completed).toBe(true);
    await gw.started.runtime.journal.flush();

    const filler = await fill();
    const json = await send(false, 'full json');
    const stream = await send(true, 'full stream');
    const streamEnd = /event: error\ndata: (.*)\n/.exec(stream.text)?.[1];
    await annotate(
      `WAL full: JSON → ${json.status} ${JSON.parse(json.text).error?.code} (Retry-After ${json.headers.get('retry-after')}); ` +
        `stream → content, then ${streamEnd ? `SSE error ${JSON.parse(streamEnd).error?.code}` : 'no error event'}, [DONE] ${stream.text.includes('[DONE]') ? 'sent' : 'not sent'}, receipt line ${/: tollgate-receipt /.test(stream.text) ? 'sent' : 'not sent'}`,
      'observed',
    );
    // JSON: refused with an OpenAI-shaped 503 that says why, and no receipt was stored.
    expect(json.status).toBe(503);
    expect(JSON.parse(json.text).error).toMatchObject({ type: 'api_error', code: 'receipts_unavailable' });
    expect(json.completed).toBe(false);
    expect(json.headers.get('x-tollgate-receipt-id')).toBeNull(); // no receipt to look up
    // Stream: its content went out before the receipt could be written; it ends with an error
    // event instead of [DONE], so no client takes it for a complete, recorded answer.
    expect(stream.completed).toBe(false);
    expect(stream.text).not.toContain('data: [DONE]');
    expect(stream.text).toMatch(/event: error\ndata: .*"code":"receipts_unavailable"/);
    expect(stream.text).not.toMatch(/: tollgate-receipt /);
    // Responses: refused the same way, and the answers are not kept either: no client can
    // fetch by id (GET, previous_response_id) an answer that has no receipt.
    const refused = [await respond(false, 'full responses json'), await respond(true, 'full responses stream')];
    expect(refused.map((r) => [r.status, r.completed])).toEqual([
      [503, false],
      [200, false],
    ]);
    // The streamed one learnt its response id from response.created; the JSON one learnt none.
    expect(refused.map((r) => r.id)).toEqual(['', expect.stringMatching(/^resp_[0-9a-f]{32}$/)]);

    await unlink(filler);
    expect(await stored(refused[1]!.id), `GET ${refused[1]!.id} after space returned`).toBe(404);
    for (const streamed of [false, true]) {
      const kept = await respond(streamed, `after, responses ${streamed}`);
      expect(kept.completed).toBe(true);
      expect(await stored(kept.id)).toBe(200);
    }
    for (let i = 0; i < 5; i++) expect((await send(i % 2 === 0, `after ${i}`)).completed).toBe(true);
    await gw.started.runtime.journal.flush();
    // Every response that completed has its receipt; the refused ones have none, and the
    // chain has no gap where they failed.
    const report = await expectNothingLost(gw.started.runtime.clickhouse.client, { completed, total: completed.length });
    expect(report.rows).toBe(12);
    expect(sent).toBe(16);
  }, 60_000);
});
