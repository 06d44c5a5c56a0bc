// Live traffic: the routingDecisions subscription (graphql-ws) turned into rates per
// provider/model, a chart of the last five minutes, and the last requests with their
// candidates, skips and hops. Cost per second comes from the receipts (the `usage` query
// over the last minute, every few seconds): decisions carry no cost.
import type { Client } from 'graphql-ws';
import { backoffMs, type GraphQLErrorLike, isRefusal, type LiveState, liveClient } from './api.js';
import { lineChart } from './charts.js';
import type { Ctx, View } from './context.js';
import { fill, h } from './dom.js';
import { clock, ms, rate, usd } from './format.js';
import { DECISION_FIELDS, type Decision, LiveModel, type RequestTrace, targetKey } from './live-model.js';

const SHOWN_REQUESTS = 60;
const COST_WINDOW_S = 60;
const COST_POLL_MS = 5000;
/** Decisions show within this of arriving (the panel's promise: under a second end to end). */
const RENDER_DELAY_MS = 150;

interface Filter {
  teamIds?: string[];
  routes?: string[];
  providers?: string[];
}

export function liveView(ctx: Ctx): View {
  let model = new LiveModel();
  let paused = false;
  let receivedAtPause = 0;
  let costs = new Map<string, number>();
  let reconnectAt = 0;
  let reconnectAttempt = 0;
  const countdown = h('span', { 'aria-hidden': 'true' });
  const expanded = new Set<string>();
  /** The requests on screen (frozen while paused). */
  let shown: RequestTrace[] = [];

  const status = h('span', { id: 'live-status', class: 'status', 'data-state': 'connecting', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
  const teamSel = h('select', { id: 'live-team', 'aria-label': 'Team', onchange: () => restart() }, h('option', { value: '' }, 'All teams'));
  const routeSel = h('select', { id: 'live-route', 'aria-label': 'Route', onchange: () => restart() }, h('option', { value: '' }, 'All routes'));
  const providerSel = h('select', { id: 'live-provider', 'aria-label': 'Provider', onchange: () => restart() }, h('option', { value: '' }, 'All providers'));
  const pauseBtn = h('button', { id: 'live-pause', type: 'button', onclick: () => togglePause() }, 'Pause');
  const pausedNote = h('span', { id: 'live-paused-note', class: 'note' });
  const droppedNote = h('span', { class: 'note warn' });
  const tiles = h('div', { class: 'tiles' });
  const chartBox = h('div', { class: 'chart' });
  const targetsBody = h('tbody');
  const decisionsBody = h('tbody', { id: 'decisions' });

  const el = h(
    'section',
    { class: 'view live' },
    h('div', { class: 'toolbar' }, teamSel, routeSel, providerSel, pauseBtn, pausedNote, h('span', { class: 'spacer' }), droppedNote, status),
    tiles,
    h('div', { class: 'panel' }, h('h2', {}, 'Requests, errors, failovers and cache hits per second (up to the last 5 minutes)'), chartBox),
    h(
      'div',
      { class: 'panel' },
      h('h2', {}, `By provider and model (rates over the last 10 s; cost over the last ${COST_WINDOW_S} s)`),
      h(
        'table',
        { class: 'grid numbers', id: 'live-targets' },
        h('thead', {}, row('th', ['provider/model', 'requests/s', 'errors/s', 'failovers/s', 'cache hits/s', 'cost/s'])),
        targetsBody,
      ),
    ),
    h(
      'div',
      { class: 'panel' },
      h('h2', {}, 'Last requests (click one for its candidates)'),
      h(
        'table',
        { class: 'grid decisions' },
        h('thead', {}, row('th', ['time', 'team', 'route', 'feature', 'outcome', 'answered by', 'latency', 'path'])),
        decisionsBody,
      ),
    ),
  );

  const chart = lineChart(chartBox, {
    series: [{ label: 'requests/s' }, { label: 'errors/s' }, { label: 'failovers/s' }, { label: 'cache hits/s' }],
    value: (v) => (v === null ? '—' : rate(v)),
  });

  /** The server refused the subscription (its message); cleared by a new one. Before the client: it reports at once. */
  let refusal: string | null = null;
  const client: Client = liveClient(ctx.token, setState, ctx.authRejected);
  let unsubscribe = subscribe();
  let renderTimer: ReturnType<typeof setTimeout> | null = null;
  // A stream the server ended (closes graphql-ws does not retry: 1008 slow consumer, 1011, 4429)
  // is started again after a backoff that grows while it keeps failing, with jitter: a wall of
  // screens dropped together must not come back in step.
  let restartTimer: ReturnType<typeof setTimeout> | null = null;
  let failedRestarts = 0;
  const tick = setInterval(renderRates, 1000);
  const costTimer = setInterval(() => void pollCosts(), COST_POLL_MS);
  void loadFilterOptions();
  void pollCosts();
  renderRates();

  function filter(): Filter {
    const f: Filter = {};
    if (teamSel.value) f.teamIds = [teamSel.value];
    if (routeSel.value) f.routes = [routeSel.value];
    if (providerSel.value) f.providers = [providerSel.value];
    return f;
  }

  function subscribe(): () => void {
    return client.subscribe<{ routingDecisions: Decision }>(
      {
        query: `subscription LiveDecisions($filter: DecisionFilter) { routingDecisions(filter: $filter) { ${DECISION_FIELDS} } }`,
        variables: { filter: filter() },
      },
      {
        next: (result) => {
          // A subscription refused or ended by its resolver (an invalid filter, the instance's
          // limit) comes as a result with errors, then complete.
          if (result.errors && !result.data) return ended(result.errors as GraphQLErrorLike[]);
          failedRestarts = 0;
          if (result.data) {
            model.add(result.data.routingDecisions);
            scheduleRender();
          }
        },
        error: (err) => {
          const errors = Array.isArray(err) ? (err as GraphQLErrorLike[]) : [];
          if (errors.some((e) => e.extensions?.code === 'UNAUTHENTICATED')) return ctx.authRejected();
          if (typeof err === 'object' && err !== null && 'code' in err && (err as CloseEvent).code === 4403) return; // liveClient signs out
          ended(errors);
        },
        complete: () => undefined,
      },
    );
  }

  /** A new filter (or a stream ended by the server): fresh numbers from a fresh subscription. */
  function restart(resetNumbers = true): void {
    if (restartTimer) clearTimeout(restartTimer);
    restartTimer = null;
    unsubscribe();
    if (resetNumbers) {
      model = new LiveModel();
      expanded.clear();
      receivedAtPause = 0;
      costs = new Map();
      void pollCosts();
    }
    // After a refusal the client closed its idle socket: the new subscription connects again.
    if (refusal) setState({ state: 'connecting' });
    unsubscribe = subscribe();
    renderRates();
    renderDecisions();
  }

  function setState(s: LiveState): void {
    if (s.state !== 'lost') refusal = null;
    status.dataset.state = refusal ? 'refused' : s.state;
    reconnectAt = s.state === 'reconnecting' ? Date.now() + s.inMs : 0;
    reconnectAttempt = s.state === 'reconnecting' ? s.attempt : 0;
    renderStatus(s.state);
  }

  /**
   * The stream ended on the server's side. Refused as asked (an invalid filter): the same request
   * would be refused again, so it is said, not retried; a new filter tries anew. Otherwise (too
   * slow a reader, a failure, the instance's limit): started again after a growing backoff.
   */
  function ended(errors: GraphQLErrorLike[]): void {
    if (isRefusal(errors)) {
      refusal = errors.map((e) => e.message ?? 'refused').join('; ');
      setState({ state: 'lost' });
      return;
    }
    setState({ state: 'lost' });
    if (restartTimer) clearTimeout(restartTimer);
    restartTimer = setTimeout(
      () => {
        restartTimer = null;
        restart(false);
      },
      backoffMs(2 + failedRestarts++),
    ); // 2–4 s, then 4–8 s, … up to 30 s
  }

  function renderStatus(state: string): void {
    if (refusal) fill(status, `Live stream refused: ${refusal}`);
    else if (state === 'reconnecting') {
      fill(status, 'Connection lost: reconnecting', countdown, ` (attempt ${reconnectAttempt})`);
      tickCountdown();
    } else fill(status, state === 'live' ? 'Live' : state === 'connecting' ? 'Connecting…' : 'Connection lost');
  }

  /** The seconds change every second: only they change, out of the live region (else read out each time). */
  function tickCountdown(): void {
    countdown.textContent = ` in ${Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000))} s`;
  }

  async function loadFilterOptions(): Promise<void> {
    const data = await ctx
      .query<{ routes: Array<{ name: string }>; providers: Array<{ name: string }> }>('query LiveFilterOptions { routes { name } providers { name } }')
      .catch(() => null);
    for (const [id, name] of ctx.teams) teamSel.append(h('option', { value: id }, name));
    for (const r of data?.routes ?? []) routeSel.append(h('option', { value: r.name }, r.name));
    for (const p of data?.providers ?? []) providerSel.append(h('option', { value: p.name }, p.name));
  }

  async function pollCosts(): Promise<void> {
    const asked = JSON.stringify(filter());
    const to = new Date();
    const from = new Date(to.getTime() - COST_WINDOW_S * 1000);
    const data = await ctx
      .query<{ usage: Array<{ key: { provider: string | null; model: string | null }; costUsd: number }> }>(
        'query LiveCost($filter: AnalyticsFilter!) { usage(filter: $filter, groupBy: [PROVIDER, MODEL]) { key { provider model } costUsd } }',
        { filter: { from: from.toISOString(), to: to.toISOString(), ...filter() } },
      )
      .catch(() => null);
    // An answer for the filter before a change would show the old filter's costs until the next poll.
    if (data && asked === JSON.stringify(filter())) costs = new Map(data.usage.map((r) => [targetKey(r.key.provider, r.key.model), r.costUsd / COST_WINDOW_S]));
  }

  function togglePause(): void {
    paused = !paused;
    receivedAtPause = model.received;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    pauseBtn.classList.toggle('active', paused);
    renderDecisions();
  }

  function scheduleRender(): void {
    renderTimer ??= setTimeout(() => {
      renderTimer = null;
      renderDecisions();
    }, RENDER_DELAY_MS);
  }

  function renderRates(): void {
    if (reconnectAt) tickCountdown();
    const { total, byTarget, seconds } = model.rates();
    tiles.dataset.seconds = String(seconds); // the time the rates are over
    const totalCost = [...costs.values()].reduce((a, b) => a + b, 0);
    fill(
      tiles,
      tile('requests', 'requests/s', rate(total.requests)),
      tile('errors', 'errors/s', rate(total.errors)),
      tile('failovers', 'failovers/s', rate(total.failovers)),
      tile('cache-hits', 'cache hits/s', rate(total.cacheHits)),
      tile('cost', 'cost/s', usd(totalCost)),
    );
    const keys = new Set([...byTarget.keys(), ...costs.keys()]);
    const rows = [...keys]
      .map((k) => ({ k, c: byTarget.get(k), cost: costs.get(k) ?? 0 }))
      .sort((a, b) => (b.c?.requests ?? 0) - (a.c?.requests ?? 0) || b.cost - a.cost || a.k.localeCompare(b.k));
    fill(
      targetsBody,
      ...rows.map(({ k, c, cost }) =>
        h(
          'tr',
          { 'data-target': k },
          ...[k, rate(c?.requests ?? 0), rate(c?.errors ?? 0), rate(c?.failovers ?? 0), rate(c?.cacheHits ?? 0), usd(cost)].map((v) => h('td', {}, v)),
        ),
      ),
    );
    if (rows.length === 0) targetsBody.append(h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'No traffic yet.')));
    chart.setData(model.series());
    droppedNote.textContent = model.dropped ? `${model.dropped} decisions dropped (this screen read too slowly)` : '';
    if (paused) pausedNote.textContent = `Paused: ${model.received - receivedAtPause} new decisions`;
  }

  /** `shownAgain`: the rows as they are, with a request opened or closed (also while paused). */
  function renderDecisions(shownAgain = false): void {
    if (paused) pausedNote.textContent = `Paused: ${model.received - receivedAtPause} new decisions`;
    if (paused && !shownAgain) return;
    if (!paused) pausedNote.textContent = '';
    const traces = paused ? shown : model.latest(SHOWN_REQUESTS);
    shown = traces;
    fill(decisionsBody, ...traces.flatMap((t) => (expanded.has(t.requestId) ? [requestRow(t), detailRow(t)] : [requestRow(t)])));
    if (traces.length === 0) decisionsBody.append(h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'Waiting for requests…')));
  }

  function requestRow(t: RequestTrace): HTMLTableRowElement {
    const f = t.final;
    const outcome = f?.outcome ?? 'IN FLIGHT';
    const route = t.route && t.route !== t.requestedModel ? `${t.route} (${t.requestedModel})` : (t.route ?? t.requestedModel);
    const hops = t.events.map(hop).filter((x): x is HTMLElement => x !== null);
    return h(
      'tr',
      {
        class: `decision ${expanded.has(t.requestId) ? 'open' : ''}`,
        'data-request-id': t.requestId,
        'data-receipt-id': t.receiptId,
        'data-outcome': outcome,
        // Opened by click, Enter or Space: the row is a control (keyboard users and screen readers too).
        tabindex: '0',
        role: 'button',
        'aria-expanded': String(expanded.has(t.requestId)),
        onclick: () => toggle(t.requestId),
        onkeydown: (e: Event) => {
          if ((e as KeyboardEvent).key !== 'Enter' && (e as KeyboardEvent).key !== ' ') return;
          e.preventDefault();
          toggle(t.requestId);
        },
      },
      h('td', {}, clock(t.firstAt)),
      h('td', {}, ctx.teamName(t.teamId)),
      h('td', {}, route),
      h('td', {}, t.feature ?? '—'),
      h('td', {}, h('span', { class: `badge ${outcome.toLowerCase()}` }, outcome.replace('_', ' ').toLowerCase())),
      h('td', {}, f?.provider ? `${f.provider}/${f.model}` : '—'),
      h('td', {}, ms(f?.latencyMs)),
      h('td', { class: 'hops' }, ...hops.flatMap((x, i) => (i === 0 ? [x] : [h('span', { class: 'arrow' }, '→'), x]))),
    );
  }

  function toggle(requestId: string): void {
    if (!expanded.delete(requestId)) expanded.add(requestId);
    renderDecisions(true);
    // The row was drawn again: the keyboard stays on it.
    decisionsBody.querySelector<HTMLElement>(`tr.decision[data-request-id="${CSS.escape(requestId)}"]`)?.focus();
  }

  function detailRow(t: RequestTrace): HTMLTableRowElement {
    const candidates = t.events.find((e) => e.candidates.length > 0)?.candidates ?? [];
    return h(
      'tr',
      { class: 'detail' },
      h(
        'td',
        { colspan: 8 },
        h(
          'div',
          { class: 'detail-grid' },
          h(
            'div',
            {},
            h('div', {}, 'request ', h('code', {}, t.requestId)),
            t.receiptId ? h('div', {}, 'receipt ', h('a', { href: `#/receipts/${t.receiptId}` }, t.receiptId)) : null,
            h('div', {}, `strategy ${t.strategy ?? '—'}`),
          ),
          candidates.length
            ? h(
                'table',
                { class: 'grid compact' },
                h('thead', {}, row('th', ['candidate (in try order)', 'breaker', 'EWMA latency'])),
                h('tbody', {}, ...candidates.map((c) => row('td', [`${c.provider}/${c.model}`, c.state.toLowerCase().replace('_', '-'), ms(c.ewmaLatencyMs)]))),
              )
            : h('div', { class: 'note' }, 'No candidates: the request did not reach routing.'),
        ),
      ),
    );
  }

  return {
    el,
    stop() {
      clearInterval(tick);
      clearInterval(costTimer);
      if (renderTimer) clearTimeout(renderTimer);
      // A pending restart would open a new socket after dispose (graphql-ws allows it).
      if (restartTimer) clearTimeout(restartTimer);
      unsubscribe();
      void client.dispose();
      chart.destroy();
    },
  };
}

function hop(d: Decision): HTMLElement | null {
  const target = d.provider ? `${d.provider}/${d.model}` : '';
  switch (d.outcome) {
    case 'ATTEMPT':
      return null; // the next decision says how the attempt went
    case 'SUCCESS':
      return chip('ok', `${target} ✓ ${ms(d.latencyMs)}`);
    case 'FAILOVER':
      return chip('fail', `${target} ✗ ${d.reason ?? 'failed'}${d.latencyMs === null ? '' : ` ${ms(d.latencyMs)}`}`);
    case 'SKIPPED':
      return chip('skip', `${target} skipped: ${d.reason ?? ''}`);
    case 'FAILED':
      return chip('fail', target ? `${target} ✗ ${d.reason ?? ''}` : `failed: ${d.reason ?? ''}`);
    case 'CACHE_HIT':
      return chip('cache', `cache hit (${(d.reason ?? '').replace('cache_', '')})`);
    case 'REJECTED':
      return chip('fail', `rejected: ${d.reason ?? ''}`);
    case 'CANCELLED':
      return chip('skip', 'cancelled by the client');
  }
}

const chip = (kind: string, text: string) => h('span', { class: `chip ${kind}` }, text);

function tile(metric: string, label: string, value: string): HTMLElement {
  return h('div', { class: 'tile', 'data-metric': metric }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

function row(cell: 'td' | 'th', values: string[]): HTMLTableRowElement {
  return h('tr', {}, ...values.map((v) => h(cell, {}, v)));
}
