// Settlements of budget reservations (enforcer.ts admits, this books): each request's receipt
// releases its reservation and books its cost. A settlement the counters cannot take is retried
// in the background (the counters make repeats harmless) for up to SETTLE_RETRY_MS; past it, it
// is given up and its counters are marked for a rebuild from the receipts, which have its cost.
import type { BudgetRecord } from '../store/admin/pricing.js';
import type { BudgetCounters, Hold, SettledCounter, SettleItem } from './counters.js';

/** How long a failed settlement is retried; shorter than the hold's grace, so it finds its hold. */
const SETTLE_RETRY_MS = 10 * 60_000;
/** Failed settlements kept for retry at most (the oldest go first, reported). */
const MAX_UNSETTLED = 100_000;
const MAX_RETRY_DELAY_MS = 30_000;
/** When a reservation whose reply was lost is released (a stalled Redis recovers within these). */
const LOST_RELEASE_DELAYS_MS = [1_000, 10_000, 60_000];

/** What an admitted request holds until its receipt settles it. */
export interface BudgetTicket {
  hold: Hold;
  /** False: admitted open while the counters were unreachable; nothing is reserved. */
  held: boolean;
  /** `unheld`: left out of the reservation (its counter could not be rebuilt); settled as admitted open. */
  items: Array<{ budget: BudgetRecord; key: string; amount: number; ttlMs: number | null; unheld?: boolean }>;
}

/** Spend of each ticket item before and after its settlement (equal when nothing was booked). */
export type Settled = SettledCounter[];

export interface SettlementsDeps {
  counters: BudgetCounters;
  onError: (err: unknown, what: string) => void;
  now: () => number;
  /** First wait before a failed settlement is tried again (doubles up to 30 s). */
  settleRetryMs?: number;
  /** Sees each settlement once it is booked (threshold events). */
  report: (ticket: BudgetTicket, results: Settled, requestId: string) => void;
}

interface Unsettled {
  ticket: BudgetTicket;
  cost: number;
  requestId: string;
  since: number;
}

export class Settlements {
  private unsettled: Unsettled[] = [];
  /** Counters whose given-up settlements are to be rebuilt from the receipts. */
  private readonly unbooked = new Set<string>();
  /** After close(): a settlement that fails is reported at once, not queued for a retry nobody runs. */
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelayMs: number;

  constructor(private readonly deps: SettlementsDeps) {
    this.retryDelayMs = deps.settleRetryMs ?? 1_000;
  }

  /** Releases the reservation and books `cost` (nano-USD); retried in the background when it cannot be now. */
  async settle(ticket: BudgetTicket, cost: number, requestId: string): Promise<void> {
    if (!(await this.trySettle({ ticket, cost, requestId, since: this.deps.now() }))) this.scheduleRetry();
  }

  /** Tries pending settlements once more (at shutdown); stops the background retries. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const pending = this.unsettled;
    this.unsettled = [];
    for (const [i, entry] of pending.entries()) {
      if (await this.trySettle(entry)) continue;
      const rest = pending.length - i - 1; // the failed one is reported by trySettle
      if (rest > 0) this.deps.onError(new Error(`${rest} more settlements not booked`), 'budget settlement at shutdown');
      break;
    }
  }

  /**
   * Releases a reservation that may have landed without its reply: a few tries, a while apart.
   * Not a settlement: nothing to book, so not queued or given up (while the counters are simply
   * down, no reservation was made and every refused request would queue one). Its hold's
   * deadline releases it all the same if every try fails.
   */
  releaseLost(ticket: BudgetTicket, delays = LOST_RELEASE_DELAYS_MS): void {
    const [delay, ...later] = delays;
    if (delay === undefined || this.closed) return;
    const items = settleItems(ticket.items, 0);
    const timer = setTimeout(() => {
      this.deps.counters.settle(ticket.hold, true, items).catch(() => this.releaseLost(ticket, later));
    }, delay);
    timer.unref();
  }

  /** One settlement try; on failure the entry joins the retry queue. */
  private async trySettle(entry: Unsettled): Promise<boolean> {
    const { ticket, cost, requestId } = entry;
    const results: Settled = [];
    try {
      // Items reserved on, then those admitted open (each settlement is idempotent: a retry after
      // the first part went through books nothing twice).
      for (const held of [true, false]) {
        const part = ticket.items.flatMap((item, i) => ((ticket.held && !item.unheld) === held ? [i] : []));
        if (part.length === 0) continue;
        const settled = await this.deps.counters.settle(
          ticket.hold,
          held,
          settleItems(
            part.map((i) => ticket.items[i]),
            cost,
          ),
        );
        part.forEach((i, j) => {
          results[i] = settled[j];
        });
      }
    } catch (err) {
      if (this.closed) {
        this.deps.onError(err, 'budget settlement at shutdown');
        return false;
      }
      if (this.unsettled.length === 0) this.deps.onError(err, 'budget settlement (retrying)');
      if (this.unsettled.length >= MAX_UNSETTLED) {
        this.givenUp([this.unsettled.shift()!]);
        this.deps.onError(new Error(`more than ${MAX_UNSETTLED} settlements pending; dropped the oldest`), 'budget settlement');
      }
      this.unsettled.push(entry);
      return false;
    }
    this.deps.report(ticket, results, requestId);
    return true;
  }

  /**
   * Settlements given up: their counters miss those costs until rebuilt from the receipts,
   * which have them. Marked for a rebuild as soon as the counters can be reached.
   */
  private givenUp(entries: Unsettled[]): void {
    for (const { ticket } of entries) for (const { key } of ticket.items) this.unbooked.add(key);
  }

  /** Marks the counters of given-up settlements for a rebuild; false while they cannot be reached. */
  private async unloadUnbooked(): Promise<boolean> {
    if (this.unbooked.size === 0) return true;
    const keys = [...this.unbooked];
    try {
      await this.deps.counters.unload(keys);
    } catch {
      return false;
    }
    for (const key of keys) this.unbooked.delete(key);
    return true;
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer || (this.unsettled.length === 0 && this.unbooked.size === 0)) return;
    this.retryTimer = setTimeout(() => void this.retryUnsettled(), this.retryDelayMs);
    this.retryTimer.unref();
  }

  private async retryUnsettled(): Promise<void> {
    const pending = this.unsettled;
    this.unsettled = [];
    const oldest = this.deps.now() - SETTLE_RETRY_MS;
    const live = pending.filter((e) => e.since >= oldest);
    const expired = pending.length - live.length;
    if (expired) {
      this.givenUp(pending.filter((e) => e.since < oldest));
      this.deps.onError(
        new Error(`${expired} settlements not booked for ${SETTLE_RETRY_MS / 60_000} minutes; given up (their budgets are rebuilt from the receipts)`),
        'budget settlement',
      );
    }
    let failed = !(await this.unloadUnbooked());
    for (const entry of live) {
      if (failed) this.unsettled.push(entry);
      else failed = !(await this.trySettle(entry));
    }
    this.retryDelayMs = failed ? Math.min(this.retryDelayMs * 2, MAX_RETRY_DELAY_MS) : (this.deps.settleRetryMs ?? 1_000);
    this.retryTimer = null;
    this.scheduleRetry();
  }
}

/** Ticket items as the counters settle them: each releases its reservation and books `cost`. */
function settleItems(items: BudgetTicket['items'], cost: number): SettleItem[] {
  return items.map(({ key, amount, ttlMs }) => ({ key, reserved: amount, cost, ttlMs }));
}
