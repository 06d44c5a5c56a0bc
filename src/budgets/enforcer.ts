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
// If the counter store is unreachable, a budget fails closed (503) unless it is set failOpen.
import { budgetExceeded, budgetStoreUnavailable, GatewayError } from '../gateway/errors.js';
import type { BudgetEvent, LiveBus } from '../live/events.js';
import type { BudgetRecord } from '../store/admin/pricing.js';
import { type BudgetCounters, NANO, type ReserveItem } from './counters.js';
import { type PeriodWindow, periodWindow } from './periods.js';

const THRESHOLDS = [50, 80, 100];
const BLOCK_EVENT_INTERVAL_MS = 5_000;
/** Counters outlive their period a little, for late settlements and the budgets query. */
const COUNTER_GRACE_MS = 2 * 86_400_000;

export interface BudgetSubject {
  teamId: string;
  apiKeyId: string;
  feature: string | null;
}

/** What an admitted request holds until its receipt settles it. */
export interface BudgetTicket {
  items: Array<{ budget: BudgetRecord; key: string; amount: number; ttlMs: number | null }>;
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
}

export class BudgetEnforcer {
  private readonly now: () => number;
  private readonly lastBlockEvent = new Map<string, number>();

  constructor(private readonly deps: BudgetEnforcerDeps) {
    this.now = deps.now ?? Date.now;
  }

  covering(subject: BudgetSubject): BudgetRecord[] {
    return this.deps.budgets().filter((b) => covers(b, subject));
  }

  /**
   * Reserves `estimateUsd()` on every covering budget, or throws 429 budget_exceeded (or 503
   * when the counters cannot be reached). Null: no budget covers the request.
   */
  async admit(subject: BudgetSubject, estimateUsd: () => Promise<number>, requestId: string): Promise<BudgetTicket | null> {
    const budgets = this.covering(subject);
    if (budgets.length === 0) return null;
    const amount = Math.ceil((await estimateUsd()) * NANO);
    const now = this.now();
    const ticket: BudgetTicket = {
      items: budgets.map((budget) => {
        const { key, ttlMs } = counterSlot(budget, now);
        return { budget, key, amount, ttlMs };
      }),
    };
    const items: ReserveItem[] = ticket.items.map(({ budget, key, ttlMs }) => ({
      key,
      limit: budget.action === 'BLOCK' ? Math.round(budget.limitUsd * NANO) : null,
      amount,
      ttlMs,
    }));
    try {
      for (let attempt = 0; ; attempt++) {
        const outcome = await this.deps.counters.reserve(items);
        if (outcome.kind === 'reserved') return ticket;
        if (outcome.kind === 'blocked') {
          const { budget } = ticket.items[outcome.index];
          this.blocked(budget, subject, outcome.spent / NANO, requestId);
          throw budgetExceeded(
            `${describe(budget)} is exhausted: $${(outcome.spent / NANO).toFixed(6)} spent and $${(outcome.reserved / NANO).toFixed(6)} reserved of $${budget.limitUsd} for this ${budget.period.toLowerCase()} period.`,
          );
        }
        if (attempt > 0) throw new Error('budget counters did not load');
        await Promise.all(outcome.indexes.map((i) => this.load(ticket.items[i].budget, now)));
      }
    } catch (err) {
      if (err instanceof GatewayError) throw err;
      this.deps.onError(err, 'budget admission');
      if (budgets.every((b) => b.failOpen || b.action === 'ALERT')) return null;
      throw budgetStoreUnavailable();
    }
  }

  /** Releases the reservation and books the actual cost (null = unpriced: books nothing). */
  async settle(ticket: BudgetTicket, costUsd: number | null, requestId: string): Promise<void> {
    const cost = Math.max(0, Math.round((costUsd ?? 0) * NANO));
    const items = ticket.items.map(({ key, amount, ttlMs }) => ({ key, reserved: amount, cost, ttlMs }));
    let results: Array<{ spentBefore: number; spentAfter: number }> | null = null;
    for (let attempt = 0; attempt < 3 && !results; attempt++) {
      try {
        results = await this.deps.counters.settle(items);
      } catch (err) {
        if (attempt === 2) return this.deps.onError(err, 'budget settlement');
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
    ticket.items.forEach(({ budget }, i) => {
      const { spentBefore, spentAfter } = results![i];
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
    const spent = await this.deps.spentSince(budget, window);
    await this.deps.counters.load(key, Math.round(spent * NANO), ttlMs);
  }

  private blocked(budget: BudgetRecord, subject: BudgetSubject, spentUsd: number, requestId: string): void {
    const now = this.now();
    if (now - (this.lastBlockEvent.get(budget.id) ?? -Infinity) < BLOCK_EVENT_INTERVAL_MS) return;
    this.lastBlockEvent.set(budget.id, now);
    this.emit(budget, 'BLOCKED', spentUsd, null, requestId, subject.teamId);
  }

  private emit(
    budget: BudgetRecord,
    kind: BudgetEvent['kind'],
    spentUsd: number,
    thresholdPct: number | null,
    requestId: string,
    teamId = budget.teamId,
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
    if (budget.webhookUrl) this.deps.notify?.(budget, event);
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
