// The wrapper around subscriptions served over HTTP (src/graphql/http-subscriptions.ts): it holds
// nothing of what a stream delivered, forgets streams that end by themselves, and ends at once
// what opens after shutdown began.
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { HttpSubscriptions } from '../../src/graphql/http-subscriptions.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heapUsed = () => {
  gc();
  return process.memoryUsage().heapUsed;
};

/** Wraps `source` as the plugin does with a subscription's result. */
function track(subs: HttpSubscriptions, source: AsyncIterable<unknown>): AsyncIterableIterator<unknown> {
  return (subs as unknown as { track(s: AsyncIterable<unknown>, a: string, r: undefined): AsyncIterableIterator<unknown> }).track(
    source,
    'Bearer t',
    undefined,
  );
}

const endless = (): AsyncIterable<unknown> => {
  let i = 0;
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => ({ done: false, value: { data: { i: i++, pad: `${'x'.repeat(500)}${i}` } } }),
      return: async () => ({ done: true, value: undefined }),
    }),
  };
};

describe('HTTP subscriptions', () => {
  it('keeps nothing of the events a long stream delivered', async () => {
    const subs = new HttpSubscriptions(async () => null, 60_000);
    const stream = track(subs, endless());
    for (let i = 0; i < 1000; i++) await stream.next();
    const before = heapUsed();
    for (let i = 0; i < 50_000; i++) await stream.next();
    // ~600 bytes an event: 30 MB if each read's result stayed reachable.
    expect(heapUsed() - before).toBeLessThan(5 * 1024 * 1024);
    expect(subs.size).toBe(1);
    await stream.return!();
    expect(subs.size).toBe(0);
  });

  it('forgets a stream whose source completed or failed', async () => {
    const subs = new HttpSubscriptions(async () => null, 60_000);
    let n = 0;
    const finite = track(subs, {
      [Symbol.asyncIterator]: () => ({ next: async () => (n++ < 2 ? { done: false, value: n } : { done: true, value: undefined }) }),
    });
    while (!(await finite.next()).done);
    expect(subs.size).toBe(0);
    const failing = track(subs, {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          throw new Error('source failed');
        },
      }),
    });
    await expect(failing.next()).rejects.toThrow('source failed');
    expect(subs.size).toBe(0);
  });

  it('ends a waiting read at shutdown, and a stream opened after it at once', async () => {
    const subs = new HttpSubscriptions(async () => null, 60_000);
    const never: AsyncIterable<unknown> = {
      [Symbol.asyncIterator]: () => ({ next: () => new Promise(() => undefined), return: async () => ({ done: true, value: undefined }) }),
    };
    const open = track(subs, never);
    const read = open.next();
    subs.endAll();
    await expect(read).resolves.toEqual({ done: true, value: undefined });
    const late = track(subs, never);
    await expect(late.next()).resolves.toEqual({ done: true, value: undefined });
    expect(subs.size).toBe(0);
  });
});
