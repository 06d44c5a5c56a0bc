// Budget enforcement: admission reserves a request's estimated maximum cost on every budget
// that covers it (atomically, all or nothing), and the request's receipt settles the
// reservation with the actual cost. So a burst cannot overshoot a BLOCK budget: each admitted
// request holds its worst case until it is done, and the only overshoot left is a provider
// answering with more tokens than the estimate assumed (max_tokens, or the configured default
// when a request sets none).
//
// Budgets that cover a request: TEAM (the key's team), API_KEY (the key), FEATURE (the
// request's feature, in every team or in the budget's team). ALERT budgets count but never
// block. Thresholds 50 %, 80 % and 100 % are reported once per period each (the settlement
// that crosses one reports it), and so are blocks (at most one event per budget per 5 s).
// If the counter store is unreachable, a budget fails closed (503) unless it is set failOpen;
// a request admitted open still has its cost booked when it ends (settlements.ts: retries,
// given-up settlements); a reservation whose settlement never comes is released by the
// counters at the request's timeout plus HOLD_GRACE_MS.
import { randomUUID } from 'node:crypto';
import { budgetExceeded, budgetStoreUnavailable, GatewayError } from '../gateway/errors.js';
import type { BudgetEvent, LiveBus } from '../live/events.js';
import type { BudgetRecord } from '../store/admin/pricing.js';
import { type BudgetCounters, NANO, type ReserveItem } from './counters.js';
import { type PeriodWindow, periodWindow } from './periods.js';
import { type BudgetTicket, type Settled, Settlements } from './settlements.js';

export type { BudgetTicket } from './settlements.js';

const THRESHOLDS = [50, 80, 100];
const BLOCK_EVENT_INTERVAL_MS = 5_000;
/** Counters outlive their period a little, for late settlements and the budgets query. */
const COUNTER_GRACE_MS = 2 * 86_400_000;
/** A reservation outlives its request's timeout by this much before the counters release it. */
const HOLD_GRACE_MS = 15 * 60_000;

export interface BudgetSubject {
  teamId: string;
  apiKeyId: string;
  feature: string | null;
}

export interface BudgetStatus {
  periodStart: Date;
  periodEnd: Date | null;
  spentUsd: number;
  reservedUsd: number;
  remainingUsd: number;
}

export interface BudgetEnforcerDeps {
  counters: BudgetCounters;
  budgets: () => readonly BudgetRecord[];
  /** Spend of a budget's subject in a window, from the receipts (the source of truth). */
  spentSince: (budget: BudgetRecord, window: PeriodWindow) => Promise<number>;
  bus: LiveBus;
  notify?: (budget: BudgetRecord, event: BudgetEvent) => void;
  onError: (err: unknown, what: string) => void;
  now?: () => number;
  /** First wait before a failed settlement is tried again (doubles up to 30 s). */
  settleRetryMs?: number;
}

/** A budget whose counters being out of reach never refuses a request. */
const lenient = (b: BudgetRecord) => b.failOpen || b.action === 'ALERT';

export class BudgetEnforcer {
  private readonly now: () => number;
  private readonly lastBlockEvent = new Map<string, number>();
  /** The period whose BLOCKED went to the budget's webhook, per budget and team. */
  private readonly blockWebhookPeriod = new Map<string, string>();
  private readonly settlements: Settlements;

  constructor(private readonly deps: BudgetEnforcerDeps) {
    this.now = deps.now ?? Date.now;
    this.settlements = new Settlements({
      counters: deps.counters,
      onError: deps.onError,
      now: this.now,
      settleRetryMs: deps.settleRetryMs,
      report: (ticket, results, requestId) => this.report(ticket, results, requestId),
    });
  }

  covering(subject: BudgetSubject): BudgetRecord[] {
    return this.deps.budgets().filter((b) => covers(b, subject));
  }

  /**
   * Reserves `estimateUsd()` on every covering budget until the request settles or
   * `timeoutMs` (plus a grace) passes, or throws 429 budget_exceeded (or 503 when the counters
   * cannot be reached). Null: no budget covers the request. `startedAt`: when the request
   * began, which its receipt's `started_at` says: its period is that one's, also when admission
   * comes a moment later (a request arriving at 23:59:59.8 is the old day's, live and rebuilt).
   */
  async admit(
    subject: BudgetSubject,
    estimateUsd: () => Promise<number>,
    requestId: string,
    timeoutMs: number,
    startedAt = this.now(),
  ): Promise<BudgetTicket | null> {
    const budgets = this.covering(subject);
    if (budgets.length === 0) return null;
    const amount = Math.ceil((await estimateUsd()) * NANO);
    const ticket: BudgetTicket = {
      // Named by Tollgate, never by the client's x-request-id: two requests sharing one would
      // share a hold (the second reserving nothing, its cost never booked).
      hold: { id: randomUUID(), ms: timeoutMs + HOLD_GRACE_MS },
      held: true,
      items: budgets.map((budget) => {
        const { key, ttlMs } = counterSlot(budget, startedAt);
        return { budget, key, amount, ttlMs };
      }),
    };
    const items: ReserveItem[] = ticket.items.map(({ budget, key, ttlMs }) => ({
      key,
      limit: budget.action === 'BLOCK' ? Math.round(budget.limitUsd * NANO) : null,
      amount,
      ttlMs,
    }));
    // The items reserved on: all, less those whose counters cannot be rebuilt and may be skipped.
    let reserving = items.map((_, i) => i);
    try {
      for (let attempt = 0; ; attempt++) {
        const outcome = await this.deps.counters.reserve(
          ticket.hold,
          reserving.map((i) => items[i]),
        );
        if (outcome.kind === 'reserved') return ticket;
        if (outcome.kind === 'blocked') {
          const { budget } = ticket.items[reserving[outcome.index]];
          this.blocked(budget, subject, outcome.spent / NANO, requestId);
          const period = `this ${budget.period.toLowerCase()} period`;
          // A budget every team shares: its figures are every team's spend, not this caller's to read.
          throw budgetExceeded(
            budget.teamId === null && budget.scope === 'FEATURE'
              ? `${describe(budget)}, shared by every team, is exhausted for ${period}.`
              : `${describe(budget)} is exhausted: $${(outcome.spent / NANO).toFixed(6)} spent and $${(outcome.reserved / NANO).toFixed(6)} reserved of $${budget.limitUsd} for ${period}.`,
          );
        }
        if (attempt > 0) throw new Error('budget counters did not load');
        const unloaded = outcome.indexes.map((j) => reserving[j]);
        const loads = await Promise.allSettled(unloaded.map((i) => this.load(ticket.items[i].budget, startedAt)));
        const failed = unloaded.filter((_, j) => loads[j].status === 'rejected');
        if (failed.length === 0) continue;
        // A counter that cannot be rebuilt (ClickHouse down) holds back its own budget only: an
        // ALERT or failOpen one is left out of the reservation (rebuilt, its cost included, once
        // it can be), and the others still decide.
        const { reason } = loads.find((l) => l.status === 'rejected') as PromiseRejectedResult;
        if (!failed.every((i) => lenient(ticket.items[i].budget))) throw reason;
        this.deps.onError(reason, 'budget admission');
        reserving = reserving.filter((i) => !failed.includes(i));
        for (const i of failed) ticket.items[i].unheld = true;
        if (reserving.length === 0) return { ...ticket, held: false };
      }
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      this.deps.onError(err, 'budget admission');
      // Admitted open: nothing reserved, but the cost is still booked when it settles.
      if (budgets.every(lenient)) return { ...ticket, held: false };
      // A reservation whose reply was lost (a stalled Redis still runs the script) may have
      // landed: released in the background, or it would block the budget until its deadline.
      this.settlements.releaseLost(ticket);
      throw budgetStoreUnavailable();
    }
  }

  /**
   * Releases the reservation and books the actual cost (null = unpriced: books nothing). When
   * the counters cannot take it, it is retried in the background; resolves after the first try.
   */
  settle(ticket: BudgetTicket, costUsd: number | null, requestId: string): Promise<void> {
    return this.settlements.settle(ticket, Math.max(0, Math.round((costUsd ?? 0) * NANO)), requestId);
  }

  /** Tries pending settlements once more (at shutdown); stops the background retries. */
  close(): Promise<void> {
    return this.settlements.close();
  }

  /**
   * Threshold events for the settlement that crossed them, on counters that hold the period's
   * whole spend: one not rebuilt (ClickHouse was out of reach) counts from 0 and crossed 50 %
   * again with a figure far below the real spend.
   */
  private report(ticket: BudgetTicket, results: Settled, requestId: string): void {
    ticket.items.forEach(({ budget }, i) => {
      const { spentBefore, spentAfter, loaded } = results[i];
      if (!loaded) return;
      const limit = budget.limitUsd * NANO;
      for (const pct of THRESHOLDS) {
        const line = (limit * pct) / 100;
        if (spentBefore < line && spentAfter >= line) {
          this.emit(budget, pct === 100 ? 'EXCEEDED' : 'THRESHOLD', spentAfter / NANO, pct, requestId);
        }
      }
    });
  }

  /**
   * Whether every BLOCK budget covering `subject` has room for `estimateUsd` now, as `admit`
   * would find it (explainRoute: a request without room is refused before any target).
   */
  async hasRoom(subject: BudgetSubject, estimateUsd: number): Promise<boolean> {
    for (const budget of this.covering(subject)) {
      if (budget.action !== 'BLOCK') continue;
      if ((await this.status(budget)).remainingUsd < estimateUsd) return false;
    }
    return true;
  }

  /** Spent, reserved and remaining in the current period (the budgets query). */
  async status(budget: BudgetRecord): Promise<BudgetStatus> {
    const { window, key } = counterSlot(budget, this.now());
    const [state] = await this.deps.counters.read([key]);
    const spentUsd = state?.loaded ? state.spent / NANO : await this.deps.spentSince(budget, window);
    const reservedUsd = (state?.reserved ?? 0) / NANO;
    return {
      periodStart: new Date(window.startMs),
      periodEnd: window.endMs === null ? null : new Date(window.endMs),
      spentUsd,
      reservedUsd,
      remainingUsd: Math.max(0, budget.limitUsd - spentUsd - reservedUsd),
    };
  }

  private async load(budget: BudgetRecord, now: number): Promise<void> {
    const { window, key, ttlMs } = counterSlot(budget, now);
    let spent: number;
    try {
      spent = await this.deps.spentSince(budget, window);
    } catch (err) {
      // The receipts cannot be read (ClickHouse down). At a period's rollover the counter is
      // still complete if the previous period's counter is loaded: the counters have then
      // been kept since before this period began (a flush or a restart would have dropped
      // it, and nothing loads a past period), so every settlement of this period is in the
      // live value, which load() keeps. Otherwise the budget cannot be known: fail as before.
      // (Assumes the store keeps its keys: a Redis evicting them under maxmemory, or restored
      // from an older snapshot, could have lost this period's counter and kept the previous one.)
      if (!(await this.keptSincePeriodStart(budget, window))) throw err;
      spent = 0;
    }
    await this.deps.counters.load(key, Math.round(spent * NANO), ttlMs);
  }

  private async keptSincePeriodStart(budget: BudgetRecord, window: PeriodWindow): Promise<boolean> {
    if (window.endMs === null) return false; // TOTAL: no previous period
    const previous = counterSlot(budget, window.startMs - 1);
    const [state] = await this.deps.counters.read([previous.key]);
    return state?.loaded === true;
  }

  private blocked(budget: BudgetRecord, subject: BudgetSubject, spentUsd: number, requestId: string): void {
    const now = this.now();
    // Per team: a budget several teams share (a FEATURE budget for all) blocks each of them,
    // and each team's subscribers hear of their own block.
    const key = `${budget.id}:${subject.teamId ?? ''}`;
    if (now - (this.lastBlockEvent.get(key) ?? -Infinity) < BLOCK_EVENT_INTERVAL_MS) return;
    this.lastBlockEvent.set(key, now);
    // Live panels hear of it every few seconds while clients retry; a webhook (a pager, a chat
    // channel) once a period: one POST every 5 s all day would be a flood.
    const period = periodWindow(budget.period, now).id;
    const notify = this.blockWebhookPeriod.get(key) !== period;
    this.blockWebhookPeriod.set(key, period);
    this.emit(budget, 'BLOCKED', spentUsd, null, requestId, subject.teamId, notify);
  }

  private emit(
    budget: BudgetRecord,
    kind: BudgetEvent['kind'],
    spentUsd: number,
    thresholdPct: number | null,
    requestId: string,
    teamId = budget.teamId,
    notify = true,
  ): void {
    const event: BudgetEvent = {
      teamId,
      budgetId: budget.id,
      kind,
      scope: budget.scope,
      apiKeyId: budget.apiKeyId,
      feature: budget.feature,
      period: budget.period,
      action: budget.action,
      spentUsd,
      limitUsd: budget.limitUsd,
      thresholdPct,
      requestId,
      at: new Date(this.now()).toISOString(),
    };
    this.deps.bus.budgets.publish(event);
    if (budget.webhookUrl && notify) this.deps.notify?.(budget, event);
  }
}

/** A budget's counter in the period `now` falls in: its key, and how long it lives. */
function counterSlot(budget: BudgetRecord, now: number): { window: PeriodWindow; key: string; ttlMs: number | null } {
  const window = periodWindow(budget.period, now);
  return { window, key: `${budget.id}:${window.id}`, ttlMs: window.endMs === null ? null : window.endMs - now + COUNTER_GRACE_MS };
}

function covers(b: BudgetRecord, s: BudgetSubject): boolean {
  switch (b.scope) {
    case 'TEAM':
      return b.teamId === s.teamId;
    case 'API_KEY':
      return b.apiKeyId === s.apiKeyId;
    case 'FEATURE':
      return s.feature !== null && b.feature === s.feature && (b.teamId === null || b.teamId === s.teamId);
  }
}

function describe(b: BudgetRecord): string {
  if (b.scope === 'TEAM') return 'The team budget';
  if (b.scope === 'API_KEY') return "This API key's budget";
  return `The budget of feature '${b.feature}'`;
}
