// RetryBudget: retries per route bounded by a share of requests plus a per-second reserve,
// over a sliding 10 s window, on an injected clock.
import { describe, expect, it } from 'vitest';
import { RetryBudget, RetryBudgets } from '../../src/routing/retry-budget.js';

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

const retriesAllowed = (budget: RetryBudget, tries: number) => Array.from({ length: tries }, () => budget.tryRetry()).filter(Boolean).length;

describe('RetryBudget', () => {
  it('allows the reserve with no traffic, then refuses', () => {
    const c = clock();
    const budget = new RetryBudget({ percent: 20, minPerSecond: 2, windowSeconds: 10 }, c.now);
    expect(retriesAllowed(budget, 50)).toBe(20); // 2/s × 10 s
  });

  it('adds percent of the requests in the window to the reserve', () => {
    const c = clock();
    const budget = new RetryBudget({ percent: 20, minPerSecond: 0, windowSeconds: 10 }, c.now);
    for (let i = 0; i < 1000; i++) budget.request();
    expect(retriesAllowed(budget, 1000)).toBe(200);
    // More requests make room again, at the same rate.
    for (let i = 0; i < 100; i++) budget.request();
    expect(retriesAllowed(budget, 1000)).toBe(20);
  });

  it('forgets requests and retries older than the window', () => {
    const c = clock();
    const budget = new RetryBudget({ percent: 50, minPerSecond: 0, windowSeconds: 10 }, c.now);
    for (let i = 0; i < 100; i++) budget.request();
    expect(retriesAllowed(budget, 100)).toBe(50);
    c.t += 5_000; // still inside the window: nothing left
    expect(budget.tryRetry()).toBe(false);
    c.t += 5_000; // the second that held them has left the window
    expect(budget.tryRetry()).toBe(false); // and its requests with it
    for (let i = 0; i < 10; i++) budget.request();
    expect(retriesAllowed(budget, 100)).toBe(5);
  });

  it('with percent 0 and no reserve never retries', () => {
    const budget = new RetryBudget({ percent: 0, minPerSecond: 0, windowSeconds: 10 }, clock().now);
    for (let i = 0; i < 100; i++) budget.request();
    expect(budget.tryRetry()).toBe(false);
  });

  it('keeps one budget per route', () => {
    const budgets = new RetryBudgets({ percent: 0, minPerSecond: 1, windowSeconds: 1 }, clock().now);
    expect(budgets.for('a').tryRetry()).toBe(true);
    expect(budgets.for('a').tryRetry()).toBe(false);
    expect(budgets.for('b').tryRetry()).toBe(true); // a's spending is not b's
    expect(budgets.for('a')).toBe(budgets.for('a'));
  });
});

describe('RetryBudgets', () => {
  it('keeps a bounded number of budgets, however many pinned model names clients send', () => {
    const budgets = new RetryBudgets();
    const first = budgets.for('openrouter/x-0');
    expect(budgets.for('openrouter/x-0')).toBe(first);
    const busy = budgets.for('chat-default');
    for (let i = 1; i < 25_000; i++) {
      budgets.for(`openrouter/x-${i}`);
      if (i % 1000 === 0) budgets.for('chat-default'); // a configured route in use
    }
    expect(budgets.size).toBe(10_000);
    expect(budgets.for('chat-default')).toBe(busy); // used recently: kept
    expect(budgets.for('openrouter/x-0')).not.toBe(first); // unused since: dropped
    expect(budgets.for('openrouter/x-24999')).toBe(budgets.for('openrouter/x-24999'));
  });
});
