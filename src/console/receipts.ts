// Receipts: the latest ones, and one looked up by id with its attempts and its signature
// verified here in the browser against the published keys (verify.ts).
import type { Ctx, View } from './context.js';
import { fill, h } from './dom.js';
import { clock, count, ms, usd } from './format.js';
import { canonicalize, type Jwk, verifyInBrowser } from './verify.js';

interface Attempt {
  provider: string;
  model: string;
  status: number;
  error: string | null;
  latencyMs: number;
}

interface Receipt {
  receiptId: string;
  requestId: string;
  startedAt: string;
  finishedAt: string | null;
  teamId: string | null;
  feature: string | null;
  taskId: string | null;
  endUser: string | null;
  endpoint: string;
  requestedModel: string | null;
  route: string | null;
  strategy: string | null;
  provider: string | null;
  model: string | null;
  status: string;
  httpStatus: number | null;
  errorCode: string | null;
  stream: boolean;
  ttftMs: number | null;
  latencyMs: number;
  overheadMs: number | null;
  promptTokens: number | null;
  completionTokens: number | null;
  cachedTokens: number | null;
  costUsd: number | null;
  cacheStatus: string | null;
  savedCostUsd: number | null;
  seq: number;
  keyId: string;
  signature: string;
  signedJson: Record<string, unknown>;
  attempts: Attempt[];
}

/**
 * What the page shows of a receipt: its signed object's fields, not the GraphQL ones beside it,
 * so that "signature valid" covers every figure on the page (an answer edited on its way, or
 * another receipt's signed object, cannot show one cost under a verdict about another).
 */
function shownFrom(signed: Record<string, unknown>, r: Receipt): Receipt {
  const str = (k: string) => (typeof signed[k] === 'string' ? (signed[k] as string) : null);
  const num = (k: string) => (typeof signed[k] === 'number' ? (signed[k] as number) : null);
  const attempts = Array.isArray(signed.attempts) ? (signed.attempts as Array<Record<string, unknown>>) : [];
  return {
    receiptId: str('receipt_id') ?? '',
    requestId: str('request_id') ?? '',
    startedAt: str('started_at') ?? '',
    finishedAt: str('finished_at'),
    teamId: str('team_id'),
    feature: str('feature'),
    taskId: str('task_id'),
    endUser: str('end_user'),
    endpoint: str('endpoint') ?? '',
    requestedModel: str('requested_model'),
    route: str('route'),
    strategy: str('strategy'),
    provider: str('provider'),
    model: str('model'),
    status: str('status') ?? '',
    httpStatus: num('http_status'),
    errorCode: str('error_code'),
    stream: signed.stream === true,
    ttftMs: num('ttft_ms'),
    latencyMs: num('latency_ms') ?? 0,
    overheadMs: num('overhead_ms'),
    promptTokens: num('prompt_tokens'),
    completionTokens: num('completion_tokens'),
    cachedTokens: num('cached_tokens'),
    costUsd: num('cost_usd'),
    cacheStatus: str('cache_status'),
    savedCostUsd: num('saved_cost_usd'),
    seq: num('seq') ?? 0,
    keyId: str('key_id') ?? '',
    signature: r.signature,
    signedJson: signed,
    attempts: attempts.map((a) => ({
      provider: String(a.provider ?? ''),
      model: String(a.model ?? ''),
      status: typeof a.status === 'number' ? a.status : 0,
      error: typeof a.error === 'string' ? a.error : null,
      latencyMs: typeof a.latency_ms === 'number' ? a.latency_ms : 0,
    })),
  };
}

const RECEIPT_QUERY = `query ConsoleReceipt($id: ID!) { receipt(id: $id) {
  receiptId requestId startedAt finishedAt teamId feature taskId endUser endpoint requestedModel route strategy
  provider model status httpStatus errorCode stream ttftMs latencyMs overheadMs promptTokens completionTokens
  cachedTokens costUsd cacheStatus savedCostUsd seq keyId signature signedJson
  attempts { provider model status error latencyMs } } }`;

const LATEST_QUERY = `query ConsoleLatestReceipts($filter: AnalyticsFilter!) { receipts(filter: $filter, first: 25) {
  totalCount edges { node { receiptId startedAt teamId route model status costUsd latencyMs } } } }`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function receiptsView(ctx: Ctx, id: string | null): View {
  const input = h('input', {
    id: 'receipt-id',
    'aria-label': 'Receipt id',
    type: 'search',
    placeholder: 'receipt id (from the x-tollgate-receipt-id header)',
    value: id ?? '',
    spellcheck: 'false',
    autocomplete: 'off',
  });
  const form = h(
    'form',
    {
      class: 'toolbar',
      onsubmit: (e: Event) => {
        e.preventDefault();
        location.hash = `#/receipts/${input.value.trim()}`;
      },
    },
    input,
    h('button', { type: 'submit' }, 'Look up'),
  );
  const body = h('div', { id: 'receipt-body' });
  const el = h('section', { class: 'view receipts' }, form, body);
  let stopped = false;

  void (id ? showReceipt(id) : showLatest());

  async function showLatest(): Promise<void> {
    const to = new Date();
    const from = new Date(to.getTime() - 7 * 86_400_000);
    fill(body, h('div', { class: 'note' }, 'Loading the latest receipts…'));
    try {
      const data = await ctx.query<{ receipts: { totalCount: number; edges: Array<{ node: Receipt }> } }>(LATEST_QUERY, {
        filter: { from: from.toISOString(), to: to.toISOString() },
      });
      if (stopped) return;
      const rows = data.receipts.edges.map(({ node: r }) =>
        h(
          'tr',
          { 'data-receipt-id': r.receiptId },
          h('td', {}, h('a', { href: `#/receipts/${r.receiptId}` }, r.receiptId)),
          h('td', {}, `${new Date(r.startedAt).toLocaleDateString()} ${clock(r.startedAt)}`),
          h('td', {}, ctx.teamName(r.teamId)),
          h('td', {}, r.route ?? '—'),
          h('td', {}, r.model ?? '—'),
          h('td', {}, h('span', { class: `badge ${r.status.toLowerCase()}` }, r.status.toLowerCase())),
          h('td', {}, usd(r.costUsd)),
          h('td', {}, ms(r.latencyMs)),
        ),
      );
      fill(
        body,
        h(
          'div',
          { class: 'panel' },
          h('h2', {}, `Latest receipts (${count(data.receipts.totalCount)} in the last 7 days)`),
          h(
            'table',
            { class: 'grid' },
            h('thead', {}, h('tr', {}, ...['receipt', 'started', 'team', 'route', 'model', 'status', 'cost', 'latency'].map((c) => h('th', {}, c)))),
            h('tbody', {}, ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No receipts yet.'))])),
          ),
        ),
      );
    } catch (err) {
      if (!stopped) fill(body, h('div', { class: 'error', role: 'alert' }, `Could not load receipts: ${(err as Error).message}`));
    }
  }

  async function showReceipt(receiptId: string): Promise<void> {
    if (!UUID.test(receiptId)) {
      fill(body, h('div', { class: 'error', role: 'alert', id: 'receipt-missing' }, 'A receipt id is a UUID, like 0193c2a0-7b1e-7c3a-9f00-123456789abc.'));
      return;
    }
    fill(body, h('div', { class: 'note' }, 'Loading…'));
    let r: Receipt | null;
    try {
      r = (await ctx.query<{ receipt: Receipt | null }>(RECEIPT_QUERY, { id: receiptId })).receipt;
    } catch (err) {
      if (!stopped) fill(body, h('div', { class: 'error', role: 'alert' }, `Could not load the receipt: ${(err as Error).message}`));
      return;
    }
    if (stopped) return;
    if (!r) {
      fill(body, h('div', { class: 'error', role: 'alert', id: 'receipt-missing' }, `No receipt ${receiptId} that this token may see.`));
      return;
    }
    r = shownFrom(r.signedJson ?? {}, r);
    const verdict = h(
      'div',
      { id: 'receipt-verification', class: 'verdict', 'data-status': 'checking', role: 'status', 'aria-live': 'polite' },
      'Checking the signature in this browser…',
    );
    const fields: Array<[string, string]> = [
      ['receipt', r.receiptId],
      ['request', r.requestId],
      ['started', new Date(r.startedAt).toLocaleString()],
      ['team', ctx.teamName(r.teamId)],
      ['feature', r.feature ?? '—'],
      ['task', r.taskId ?? '—'],
      ['end user', r.endUser ?? '—'],
      ['endpoint', r.endpoint],
      ['requested model', r.requestedModel ?? '—'],
      ['route', `${r.route ?? '—'}${r.strategy ? ` (${r.strategy})` : ''}`],
      ['answered by', r.provider ? `${r.provider}/${r.model}` : '—'],
      ['status', `${r.status.toLowerCase()}${r.httpStatus ? ` (HTTP ${r.httpStatus})` : ''}${r.errorCode ? `, ${r.errorCode}` : ''}`],
      ['stream', r.stream ? 'yes' : 'no'],
      ['latency', `${ms(r.latencyMs)} (TTFT ${ms(r.ttftMs)}, Tollgate overhead ${ms(r.overheadMs)})`],
      ['tokens', `${count(r.promptTokens)} in (${count(r.cachedTokens)} cached), ${count(r.completionTokens)} out`],
      ['cost', usd(r.costUsd)],
      ['cache', `${r.cacheStatus ?? '—'}${r.savedCostUsd ? `, saved ${usd(r.savedCostUsd)}` : ''}`],
      ['sequence', String(r.seq)],
      ['signing key', r.keyId],
    ];
    fill(
      body,
      verdict,
      h(
        'div',
        { class: 'columns' },
        h(
          'div',
          { class: 'panel' },
          h('h2', {}, 'Receipt'),
          h('table', { class: 'fields' }, h('tbody', {}, ...fields.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v))))),
        ),
        h(
          'div',
          { class: 'panel' },
          h('h2', {}, `Attempts (${r.attempts.length})`),
          h(
            'table',
            { class: 'grid', id: 'receipt-attempts' },
            h('thead', {}, h('tr', {}, ...['#', 'provider/model', 'status', 'error', 'latency'].map((c) => h('th', {}, c)))),
            h(
              'tbody',
              {},
              ...(r.attempts.length
                ? r.attempts.map((a, i) =>
                    h(
                      'tr',
                      {},
                      h('td', {}, String(i + 1)),
                      h('td', {}, `${a.provider}/${a.model}`),
                      h('td', {}, a.status ? String(a.status) : 'no answer'),
                      h('td', {}, a.error ?? '—'),
                      h('td', {}, ms(a.latencyMs)),
                    ),
                  )
                : [h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'No upstream attempt (a cache hit or a rejected request).'))]),
            ),
          ),
          h('details', {}, h('summary', {}, 'The signed text (RFC 8785 canonical JSON)'), h('pre', { class: 'signed' }, canonicalize(r.signedJson) ?? '')),
        ),
      ),
    );
    await verify(r, verdict, receiptId);
  }

  async function verify(r: Receipt, verdict: HTMLElement, asked: string): Promise<void> {
    if (r.receiptId.toLowerCase() !== asked.toLowerCase()) {
      verdict.dataset.status = 'invalid';
      verdict.textContent = `✗ The signed receipt is ${r.receiptId || 'unnamed'}, not the one asked for.`;
      return;
    }
    let jwks: { keys?: Jwk[] } | null = null;
    try {
      const res = await fetch('/.well-known/tollgate/receipt-keys', { signal: AbortSignal.timeout(10_000) });
      if (res.ok) jwks = (await res.json()) as { keys?: Jwk[] };
    } catch {
      // Unread: verifyInBrowser says "unavailable" and the server's own check is shown.
    }
    const v = await verifyInBrowser(r.signedJson, r.signature, jwks);
    if (stopped) return;
    verdict.dataset.status = v.status;
    if (v.status === 'valid')
      verdict.textContent = `✓ Signature valid: verified in this browser (Ed25519, key ${v.keyId} from /.well-known/tollgate/receipt-keys).`;
    else if (v.status === 'invalid') verdict.textContent = `✗ Signature INVALID: ${v.reason}.`;
    else {
      // This browser cannot check; say so, and show what the server says.
      const server = await ctx
        .query<{ verifyReceipt: { valid: boolean; reason: string | null } }>('query ($id: ID!) { verifyReceipt(id: $id) { valid reason } }', {
          id: r.receiptId,
        })
        .catch(() => null);
      verdict.textContent = `Not verified in this browser (${v.reason}). Tollgate's own check: ${server ? (server.verifyReceipt.valid ? 'valid' : `invalid (${server.verifyReceipt.reason})`) : 'unavailable'}.`;
    }
  }

  return {
    el,
    stop() {
      stopped = true;
    },
  };
}
