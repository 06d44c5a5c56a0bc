// Budget enforcement on a controlled clock, with the in-process counters: UTC period
// boundaries, rollover, thresholds, reservations released by settlement, and which budgets
// cover which requests. The spend "source of truth" is a ledger kept by the test, as the
// receipts would be.
import { describe, expect, it } from 'vitest';
import { MemoryCounters } from '../../src/budgets/counters.js';
import { BudgetEnforcer, type BudgetSubject } from '../../src/budgets/enforcer.js';
import { periodWindow } from '../../src/budgets/periods.js';
import { GatewayError } from '../../src/gateway/errors.js';
import { type BudgetEvent, LiveBus } from '../../src/live/events.js';
import type { BudgetRecord } from '../../src/store/admin/pricing.js';

const subject: BudgetSubject = { teamId: 'team-1', apiKeyId: 'key-1', feature: 'chat' };
const TIMEOUT_MS = 60_000;

function budget(over: Partial<BudgetRecord> = {}): BudgetRecord {
  return {
    id: 'b1',
    scope: 'TEAM',
    teamId: 'team-1',
    apiKeyId: null,
    feature: null,
    period: 'DAY',
    limitUsd: 1,
    action: 'BLOCK',
    webhookUrl: null,
    failOpen: false,
    imposed: true,
    createdAt: new Date(0),
    updatedAt: new Date(0),
    ...over,
  };
}

/** In-process counters that can be made unreachable, as Redis can be. */
class SwitchedCounters extends MemoryCounters {
  down = false;
  /** The reservation is made, but its reply is lost (a stalled Redis that still runs the script). */
  replyLost = false;
  override async reserve(...args: Parameters<MemoryCounters['reserve']>) {
    if (this.down) throw new Error('counters unreachable');
    const outcome = await super.reserve(...args);
    if (this.replyLost) throw new Error('reply lost');
    return outcome;
  }
  override async settle(...args: Parameters<MemoryCounters['settle']>) {
    if (this.down) throw new Error('counters unreachable');
    return super.settle(...args);
  }
}

function setup(budgets: BudgetRecord[], start: string) {
  const clock = { t: Date.parse(start) };
  const ledger: Array<{ at: number; usd: number }> = [];
  const events: BudgetEvent[] = [];
  const notified: BudgetEvent[] = [];
  const errors: string[] = [];
  const bus = new LiveBus();
  bus.budgets.subscribe((e) => events.push(e));
  const counters = new SwitchedCounters(() => clock.t);
  const receipts = { down: false };
  const enforcer = new BudgetEnforcer({
    counters,
    budgets: () => budgets,
    spentSince: async (_b, w) => {
      if (receipts.down) throw new Error('receipts unreachable');
      return ledger.filter((r) => r.at >= w.startMs && (w.endMs === null || r.at < w.endMs)).reduce((s, r) => s + r.usd, 0);
    },
    bus,
    // Only an unreachable store is an expected error here.
    onError: (err, what) => {
      if (!counters.down && !counters.replyLost && !receipts.down) throw err;
      errors.push(what);
    },
    now: () => clock.t,
    settleRetryMs: 10,
    notify: (_b, e) => notified.push(e),
  });
  /** One request: admit with `estimate`, settle with `cost` (recorded in the ledger like a receipt). */
  const spend = async (estimate: number, cost: number) => {
    const ticket = await enforcer.admit(subject, async () => estimate, 'req', TIMEOUT_MS);
    ledger.push({ at: clock.t, usd: cost });
    if (ticket) await enforcer.settle(ticket, cost, 'req');
  };
  return { clock, ledger, events, notified, errors, counters, receipts, enforcer, spend };
}

async function refusal(p: Promise<unknown>): Promise<GatewayError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError);
    return err as GatewayError;
  }
  throw new Error('expected a refusal');
}

describe('budget periods', () => {
  it('use UTC boundaries', () => {
    const t = Date.parse('2026-03-31T23:59:59.999Z');
    expect(periodWindow('DAY', t)).toEqual({ id: '2026-03-31', startMs: Date.parse('2026-03-31T00:00:00Z'), endMs: Date.parse('2026-04-01T00:00:00Z') });
    expect(periodWindow('MONTH', t)).toEqual({ id: '2026-03', startMs: Date.parse('2026-03-01T00:00:00Z'), endMs: Date.parse('2026-04-01T00:00:00Z') });
    expect(periodWindow('MONTH', Date.parse('2026-12-15T12:00:00Z')).endMs).toBe(Date.parse('2027-01-01T00:00:00Z'));
    expect(periodWindow('TOTAL', t)).toEqual({ id: 'total', startMs: 0, endMs: null });
  });
});

describe('budget enforcement', () => {
  it('blocks at the limit and starts again at the next UTC midnight', async () => {
    const { clock, spend, enforcer } = setup([budget()], '2026-11-21T23:00:00Z');
    for (let i = 0; i < 4; i++) await spend(0.25, 0.25);
    const e = await refusal(enforcer.admit(subject, async () => 0.01, 'r', TIMEOUT_MS));
    expect([e.status, e.type, e.code]).toEqual([429, 'insufficient_quota', 'budget_exceeded']);
    clock.t = Date.parse('2026-11-21T23:59:59.999Z');
    await refusal(enforcer.admit(subject, async () => 0.01, 'r', TIMEOUT_MS));
    clock.t = Date.parse('2026-11-22T00:00:00.000Z');
    expect(await enforcer.admit(subject, async () => 0.5, 'r', TIMEOUT_MS)).not.toBeNull();
  });

  it('a budget teams share reports a block to each team it blocks, not only to the first', async () => {
    const shared = budget({ scope: 'FEATURE', teamId: null, feature: 'chat' });
    const { spend, enforcer, events } = setup([shared], '2026-11-21T12:00:00Z');
    for (let i = 0; i < 4; i++) await spend(0.25, 0.25);
    for (const teamId of ['team-1', 'team-2', 'team-2']) {
      const e = await refusal(enforcer.admit({ ...subject, teamId }, async () => 0.01, `r-${teamId}`, TIMEOUT_MS));
      // Every team's spend is not one caller's to read.
      expect(e.message).toBe("The budget of feature 'chat', shared by every team, is exhausted for this day period.");
    }
    const blocked = events.filter((e) => e.kind === 'BLOCKED');
    // One each (the second of team-2 within the interval is not repeated).
    expect(blocked.map((e) => [e.teamId, e.budgetId])).toEqual([
      ['team-1', shared.id],
      ['team-2', shared.id],
    ]);
  });

  it("a block goes to the budget's webhook once a period, to live panels every few seconds", async () => {
    const hooked = budget({ webhookUrl: 'https://hooks.example/budget' });
    const { clock, spend, enforcer, events, notified } = setup([hooked], '2026-11-21T12:00:00Z');
    for (let i = 0; i < 4; i++) await spend(0.25, 0.25);
    for (let i = 0; i < 5; i++) {
      await refusal(enforcer.admit(subject, async () => 0.01, `r-${i}`, TIMEOUT_MS));
      clock.t += 6_000;
    }
    expect(events.filter((e) => e.kind === 'BLOCKED')).toHaveLength(5);
    expect(notified.filter((e) => e.kind === 'BLOCKED')).toHaveLength(1);
    // The next day, blocked again: one more.
    clock.t = Date.parse('2026-11-22T12:00:00Z');
    for (let i = 0; i < 4; i++) await spend(0.25, 0.25);
    await refusal(enforcer.admit(subject, async () => 0.01, 'next-day', TIMEOUT_MS));
    expect(notified.filter((e) => e.kind === 'BLOCKED')).toHaveLength(2);
  });

  it('a request that began before midnight counts in its own day, however late its admission', async () => {
    const { clock, enforcer } = setup([budget()], '2026-11-21T23:00:00Z');
    const began = Date.parse('2026-11-21T23:59:59.800Z');
    clock.t = Date.parse('2026-11-22T00:00:00.300Z'); // admitted after auth, the body, limits…
    const ticket = (await enforcer.admit(subject, async () => 0.4, 'late', TIMEOUT_MS, began))!;
    await enforcer.settle(ticket, 0.4, 'late');
    // Its receipt says 23:59:59.8: a rebuild puts it in the 21st, and so does the live counter.
    clock.t = Date.parse('2026-11-21T23:59:59.900Z');
    expect((await enforcer.status(budget())).spentUsd).toBeCloseTo(0.4, 9);
    clock.t = Date.parse('2026-11-22T00:00:01Z');
    expect((await enforcer.status(budget())).spentUsd).toBe(0);
  });

  it('a MONTH budget keeps counting across days; TOTAL never resets', async () => {
    const month = setup([budget({ period: 'MONTH' })], '2026-11-01T10:00:00Z');
    await month.spend(0.6, 0.6);
    month.clock.t = Date.parse('2026-11-20T10:00:00Z');
    await refusal(month.enforcer.admit(subject, async () => 0.5, 'r', TIMEOUT_MS));
    month.clock.t = Date.parse('2026-12-01T00:00:00Z');
    expect(await month.enforcer.admit(subject, async () => 0.5, 'r', TIMEOUT_MS)).not.toBeNull();

    const total = setup([budget({ period: 'TOTAL' })], '2026-01-01T00:00:00Z');
    await total.spend(0.9, 0.9);
    total.clock.t = Date.parse('2030-01-01T00:00:00Z');
    await refusal(total.enforcer.admit(subject, async () => 0.2, 'r', TIMEOUT_MS));
  });

  it('reservations hold the estimate until settled, and settlement books the actual cost', async () => {
    const { enforcer } = setup([budget()], '2026-11-21T12:00:00Z');
    const held = [await enforcer.admit(subject, async () => 0.4, 'a', TIMEOUT_MS), await enforcer.admit(subject, async () => 0.4, 'b', TIMEOUT_MS)];
    await refusal(enforcer.admit(subject, async () => 0.4, 'c', TIMEOUT_MS));
    expect(await enforcer.status(budget())).toMatchObject({ spentUsd: 0, reservedUsd: 0.8 });
    await enforcer.settle(held[0]!, 0.1, 'a');
    expect(await enforcer.status(budget())).toMatchObject({ spentUsd: 0.1, reservedUsd: 0.4 });
    expect(await enforcer.admit(subject, async () => 0.4, 'c', TIMEOUT_MS)).not.toBeNull();
    await enforcer.settle(held[1]!, null, 'b'); // unpriced: books nothing
    const s = await enforcer.status(budget());
    expect(s.spentUsd).toBeCloseTo(0.1, 12);
    expect(s.reservedUsd).toBeCloseTo(0.4, 12);
    expect(s.remainingUsd).toBeCloseTo(0.5, 12);
  });

  it('rebuilds spend from the source of truth for a counter it has not seen', async () => {
    const { ledger, clock, enforcer } = setup([budget()], '2026-11-21T12:00:00Z');
    ledger.push({ at: clock.t - 3_600_000, usd: 0.95 }, { at: clock.t - 86_400_000, usd: 5 }); // yesterday does not count
    await refusal(enforcer.admit(subject, async () => 0.1, 'r', TIMEOUT_MS));
    expect(await enforcer.admit(subject, async () => 0.05, 'r', TIMEOUT_MS)).not.toBeNull();
  });

  it('ALERT budgets count and report thresholds once each, but never block', async () => {
    const { spend, events } = setup([budget({ action: 'ALERT' })], '2026-11-21T12:00:00Z');
    for (let i = 0; i < 12; i++) await spend(0.1, 0.1);
    expect(events.map((e) => `${e.kind}:${e.thresholdPct}`)).toEqual(['THRESHOLD:50', 'THRESHOLD:80', 'EXCEEDED:100']);
    expect(events[2].spentUsd).toBeCloseTo(1, 9);
  });

  it('covers requests by team, key and feature (any team, or the budget team only)', () => {
    const budgets = [
      budget({ id: 'team' }),
      budget({ id: 'other-team', teamId: 'team-2' }),
      budget({ id: 'key', scope: 'API_KEY', apiKeyId: 'key-1' }),
      budget({ id: 'feature-all', scope: 'FEATURE', teamId: null, feature: 'chat' }),
      budget({ id: 'feature-team-2', scope: 'FEATURE', teamId: 'team-2', feature: 'chat' }),
      budget({ id: 'other-feature', scope: 'FEATURE', teamId: null, feature: 'search' }),
    ];
    const { enforcer } = setup(budgets, '2026-11-21T12:00:00Z');
    expect(enforcer.covering(subject).map((b) => b.id)).toEqual(['team', 'key', 'feature-all']);
    expect(enforcer.covering({ ...subject, feature: null }).map((b) => b.id)).toEqual(['team', 'key']);
  });

  it('a request covered by several budgets is refused by the first that cannot fit it, and reserves on none', async () => {
    const budgets = [budget({ id: 'team', limitUsd: 10 }), budget({ id: 'key', scope: 'API_KEY', apiKeyId: 'key-1', limitUsd: 0.3 })];
    const { enforcer } = setup(budgets, '2026-11-21T12:00:00Z');
    await refusal(enforcer.admit(subject, async () => 0.5, 'r', TIMEOUT_MS));
    expect((await enforcer.status(budgets[0])).reservedUsd).toBe(0);
  });
});

describe('reservations that are never settled, and settlements that cannot be made at once', () => {
  it("releases a reservation whose settlement never comes at the request's timeout plus the grace, even on a TOTAL budget", async () => {
    const { clock, enforcer } = setup([budget({ period: 'TOTAL' })], '2026-11-21T12:00:00Z');
    expect(await enforcer.admit(subject, async () => 0.8, 'crashed', TIMEOUT_MS)).not.toBeNull(); // never settled
    await refusal(enforcer.admit(subject, async () => 0.4, 'r1', TIMEOUT_MS));
    clock.t += TIMEOUT_MS + 15 * 60_000 - 1;
    await refusal(enforcer.admit(subject, async () => 0.4, 'r2', TIMEOUT_MS));
    clock.t += 2;
    expect(await enforcer.admit(subject, async () => 0.4, 'r3', TIMEOUT_MS)).not.toBeNull();
    expect(await enforcer.status(budget({ period: 'TOTAL' }))).toMatchObject({ spentUsd: 0, reservedUsd: 0.4 });
  });

  it("two requests sharing a client's x-request-id hold one reservation each", async () => {
    const { enforcer } = setup([budget()], '2026-11-21T12:00:00Z');
    expect(await enforcer.admit(subject, async () => 0.6, 'same-id', TIMEOUT_MS)).not.toBeNull();
    await refusal(enforcer.admit(subject, async () => 0.6, 'same-id', TIMEOUT_MS));
  });

  it('a repeated reservation holds once and a repeated settlement books once', async () => {
    const { counters, enforcer } = setup([budget()], '2026-11-21T12:00:00Z');
    const ticket = (await enforcer.admit(subject, async () => 0.3, 'a', TIMEOUT_MS))!;
    const items = ticket.items.map(({ key, amount, ttlMs }) => ({ key, limit: 1e9, amount, ttlMs }));
    expect(await counters.reserve(ticket.hold, items)).toEqual({ kind: 'reserved' });
    expect(await enforcer.status(budget())).toMatchObject({ spentUsd: 0, reservedUsd: 0.3 });
    await enforcer.settle(ticket, 0.1, 'a');
    await enforcer.settle(ticket, 0.1, 'a');
    expect(await enforcer.status(budget())).toMatchObject({ spentUsd: 0.1, reservedUsd: 0 });
  });

  it('books the cost of a request admitted open while the counters were down, once they are back', async () => {
    const failOpen = budget({ failOpen: true });
    const { counters, enforcer, errors } = setup([failOpen], '2026-11-21T12:00:00Z');
    await enforcer.settle((await enforcer.admit(subject, async () => 0.1, 'before', TIMEOUT_MS))!, 0.1, 'before');
    counters.down = true;
    const open = await enforcer.admit(subject, async () => 0.3, 'open', TIMEOUT_MS);
    expect(open?.held).toBe(false);
    await enforcer.settle(open!, 0.25, 'open');
    await enforcer.settle(open!, 0.25, 'open'); // a repeat (the first reply lost) books nothing more
    expect(errors).toContain('budget admission');
    counters.down = false;
    await expect.poll(async () => (await enforcer.status(failOpen)).spentUsd).toBeCloseTo(0.35, 9);
    await new Promise((r) => setTimeout(r, 50)); // the retry queue has nothing left to book twice
    expect((await enforcer.status(failOpen)).spentUsd).toBeCloseTo(0.35, 9);
  });

  it('a reservation whose reply was lost (503 for the request) is released, not left to block the budget', async () => {
    const { counters, enforcer, spend } = setup([budget()], '2026-11-21T12:00:00Z');
    await spend(0.1, 0); // the counter is loaded: the next reservation is made
    counters.replyLost = true;
    const e = await refusal(enforcer.admit(subject, async () => 0.7, 'stalled', TIMEOUT_MS));
    expect([e.status, e.code]).toEqual([503, 'budget_store_unavailable']);
    counters.replyLost = false;
    await expect.poll(async () => (await enforcer.status(budget())).reservedUsd, { timeout: 5_000 }).toBe(0);
    expect(await enforcer.admit(subject, async () => 0.7, 'next', TIMEOUT_MS)).not.toBeNull();
    expect((await enforcer.status(budget())).spentUsd).toBe(0);
  });

  it('a settlement given up after 10 minutes is not lost: its counter is rebuilt from the receipts once reachable', async () => {
    const { clock, counters, ledger, enforcer } = setup([budget()], '2026-11-21T12:00:00Z');
    const ticket = (await enforcer.admit(subject, async () => 0.3, 'lost', TIMEOUT_MS))!;
    counters.down = true;
    ledger.push({ at: clock.t, usd: 0.25 }); // its receipt
    await enforcer.settle(ticket, 0.25, 'lost');
    clock.t += 11 * 60_000; // the retries give it up
    await new Promise((r) => setTimeout(r, 60));
    counters.down = false;
    await expect
      .poll(async () => {
        await enforcer.admit(subject, async () => 0.01, 'probe', TIMEOUT_MS);
        return (await enforcer.status(budget())).spentUsd;
      })
      .toBeCloseTo(0.25, 9);
  });

  it('retries a settlement the counters could not take, releasing its reservation when they are back', async () => {
    const { counters, enforcer } = setup([budget()], '2026-11-21T12:00:00Z');
    const ticket = (await enforcer.admit(subject, async () => 0.6, 'slow', TIMEOUT_MS))!;
    counters.down = true;
    await enforcer.settle(ticket, 0.2, 'slow');
    await new Promise((r) => setTimeout(r, 50)); // a few retries fail
    counters.down = false;
    await expect.poll(async () => (await enforcer.status(budget())).reservedUsd).toBe(0);
    expect((await enforcer.status(budget())).spentUsd).toBeCloseTo(0.2, 9);
    expect(await enforcer.admit(subject, async () => 0.8, 'next', TIMEOUT_MS)).not.toBeNull();
  });
});

describe('a budget whose counter cannot be rebuilt', () => {
  it('holds back only itself when it is ALERT or failOpen: the other budgets still decide', async () => {
    const budgets = [budget({ id: 'team', limitUsd: 1 })];
    const { counters, receipts, enforcer, spend } = setup(budgets, '2026-11-21T12:00:00Z');
    await spend(0.5, 0.5); // the team's counter is rebuilt and live
    budgets.push(budget({ id: 'alert', scope: 'FEATURE', teamId: null, feature: 'chat', action: 'ALERT' }));
    receipts.down = true; // the new ALERT budget's counter cannot be rebuilt
    const ticket = await enforcer.admit(subject, async () => 0.2, 'fits', TIMEOUT_MS);
    expect(ticket?.held).toBe(true); // was a 503: an alert blocked traffic
    expect((await enforcer.status(budgets[0])).reservedUsd).toBeCloseTo(0.2, 9);
    // …and the team's BLOCK budget still refuses what does not fit (was admitted open, unchecked).
    const e = await refusal(enforcer.admit(subject, async () => 0.4, 'too much', TIMEOUT_MS));
    expect(e.code).toBe('budget_exceeded');
    // The budget left out is still charged when the request settles (as admitted open).
    await enforcer.settle(ticket!, 0.2, 'fits');
    const [alert] = await counters.read([ticket!.items.find((i) => i.budget.id === 'alert')!.key]);
    expect(alert?.spent).toBe(0.2 * 1e9);
    expect((await enforcer.status(budgets[0])).spentUsd).toBeCloseTo(0.7, 9);
  });

  it('a counter that could not be rebuilt reports no alert lines: it counts from 0, not from the period’s spend', async () => {
    const alert = budget({ id: 'alert', action: 'ALERT', limitUsd: 1 });
    const { ledger, receipts, enforcer, events } = setup([alert], '2026-11-21T12:00:00Z');
    ledger.push({ at: Date.parse('2026-11-21T01:00:00Z'), usd: 0.9 }); // spent before this instance started
    receipts.down = true; // ClickHouse out of reach: the ALERT budget is admitted open
    const ticket = (await enforcer.admit(subject, async () => 0.6, 'r', TIMEOUT_MS))!;
    await enforcer.settle(ticket, 0.6, 'r');
    // The counter went 0 → 0.6: "50 % at $0.60" would be wrong (the spend is $1.50), so nothing.
    expect(events.filter((e) => e.kind === 'THRESHOLD' || e.kind === 'EXCEEDED')).toEqual([]);
  });

  it('requests refused while the counters are down queue nothing (no release to retry, no rebuild later)', async () => {
    const { counters, enforcer, errors, spend } = setup([budget()], '2026-11-21T12:00:00Z');
    await spend(0.1, 0.1);
    counters.down = true;
    for (let i = 0; i < 20; i++) await refusal(enforcer.admit(subject, async () => 0.1, `down-${i}`, TIMEOUT_MS));
    expect(errors.filter((w) => w === 'budget admission')).toHaveLength(20);
    expect(errors).not.toContain('budget settlement (retrying)');
  });
});

describe('a new period while the receipts cannot be read', () => {
  it('starts counting from the live counter when the previous period was kept, and fails closed when it was not', async () => {
    const { clock, receipts, enforcer, spend } = setup([budget()], '2026-11-21T23:00:00Z');
    await spend(0.5, 0.5);
    clock.t = Date.parse('2026-11-22T00:00:01Z');
    receipts.down = true; // ClickHouse is down across midnight
    for (let i = 0; i < 3; i++) await spend(0.3, 0.3);
    expect(await enforcer.status(budget())).toMatchObject({ reservedUsd: 0 });
    expect((await enforcer.status(budget())).spentUsd).toBeCloseTo(0.9, 9);
    await refusal(enforcer.admit(subject, async () => 0.2, 'over', TIMEOUT_MS)); // still enforced

    // A fresh instance (counters lost) cannot know what today has spent: 503, as before.
    const fresh = setup([budget()], '2026-11-22T00:00:05Z');
    fresh.receipts.down = true;
    const e = await refusal(fresh.enforcer.admit(subject, async () => 0.1, 'r', TIMEOUT_MS));
    expect([e.status, e.code]).toEqual([503, 'budget_store_unavailable']);
  });
});
