// The budget counters' contract, run against both stores: in process, and the machine's real
// Redis when REDIS_URL is set (npm run test:stores). All or nothing, once per request whatever
// the repeats (a reply lost, a settlement retried), and holds released at their deadline.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BudgetCounters, MemoryCounters, RedisCounters } from '../../src/budgets/counters.js';

const REDIS_URL = process.env.REDIS_URL;
const MINUTE = 60_000;

function contract(make: () => BudgetCounters) {
  let counters: BudgetCounters;
  beforeAll(() => {
    counters = make();
  });
  const ready = async (key: string) => {
    await counters.load(key, 0, MINUTE);
    return key;
  };
  const reserved = async (key: string) => (await counters.read([key]))[0]?.reserved;

  it('reserves all or nothing, and a repeated reservation holds once', async () => {
    const [a, b] = [await ready(randomUUID()), await ready(randomUUID())];
    const hold = { id: 'r1', ms: MINUTE };
    const items = [
      { key: a, limit: 100, amount: 60, ttlMs: MINUTE },
      { key: b, limit: null, amount: 60, ttlMs: MINUTE },
    ];
    expect(await counters.reserve(hold, items)).toEqual({ kind: 'reserved' });
    expect(await counters.reserve(hold, items)).toEqual({ kind: 'reserved' });
    expect([await reserved(a), await reserved(b)]).toEqual([60, 60]);
    const refused = await counters.reserve({ id: 'r2', ms: MINUTE }, [
      { key: b, limit: null, amount: 50, ttlMs: MINUTE },
      { key: a, limit: 100, amount: 50, ttlMs: MINUTE },
    ]);
    expect(refused).toEqual({ kind: 'blocked', index: 1, spent: 0, reserved: 60 });
    expect(await reserved(b)).toBe(60);
  });

  it('books a settlement once: a repeat releases and adds nothing', async () => {
    const key = await ready(randomUUID());
    const hold = { id: 'r1', ms: MINUTE };
    await counters.reserve(hold, [{ key, limit: 100, amount: 40, ttlMs: MINUTE }]);
    const settle = () => counters.settle(hold, true, [{ key, reserved: 40, cost: 7, ttlMs: MINUTE }]);
    expect(await settle()).toEqual([{ spentBefore: 0, spentAfter: 7, loaded: true }]);
    expect(await settle()).toEqual([{ spentBefore: 7, spentAfter: 7, loaded: true }]);
    expect(await counters.read([key])).toEqual([{ spent: 7, reserved: 0, loaded: true }]);
  });

  it('books a request admitted without a hold once, and releases a reservation whose reply was lost', async () => {
    const key = await ready(randomUUID());
    await counters.reserve({ id: 'lost-reply', ms: MINUTE }, [{ key, limit: 100, amount: 25, ttlMs: MINUTE }]);
    const settle = (id: string) => counters.settle({ id, ms: MINUTE }, false, [{ key, reserved: 25, cost: 5, ttlMs: MINUTE }]);
    expect(await settle('lost-reply')).toEqual([{ spentBefore: 0, spentAfter: 5, loaded: true }]);
    expect(await settle('lost-reply')).toEqual([{ spentBefore: 5, spentAfter: 5, loaded: true }]);
    expect(await settle('never-reserved')).toEqual([{ spentBefore: 5, spentAfter: 10, loaded: true }]);
    expect(await counters.read([key])).toEqual([{ spent: 10, reserved: 0, loaded: true }]);
  });

  it('unload marks a counter for a rebuild, which keeps the higher of live and rebuilt spend', async () => {
    const key = await ready(randomUUID());
    await counters.settle({ id: 'seen', ms: MINUTE }, false, [{ key, reserved: 0, cost: 4, ttlMs: MINUTE }]);
    await counters.unload([key, randomUUID()]); // a counter that is not there is no error
    expect(await counters.read([key])).toEqual([{ spent: 4, reserved: 0, loaded: false }]);
    // Settled meanwhile: counted, and said to count from less than the period's whole spend.
    expect(await counters.settle({ id: 'while-unloaded', ms: MINUTE }, false, [{ key, reserved: 0, cost: 1, ttlMs: MINUTE }])).toEqual([
      { spentBefore: 4, spentAfter: 5, loaded: false },
    ]);
    expect(await counters.reserve({ id: 'r', ms: MINUTE }, [{ key, limit: 100, amount: 1, ttlMs: MINUTE }])).toEqual({ kind: 'unloaded', indexes: [0] });
    await counters.load(key, 9, MINUTE); // the receipts have settlements the counter never got
    expect(await counters.read([key])).toEqual([{ spent: 9, reserved: 0, loaded: true }]);
  });

  it('releases a hold at its deadline (a crashed instance, a settlement given up)', async () => {
    const key = await ready(randomUUID());
    await counters.reserve({ id: 'abandoned', ms: 150 }, [{ key, limit: 100, amount: 90, ttlMs: null }]);
    expect(await reserved(key)).toBe(90);
    expect((await counters.reserve({ id: 'waits', ms: MINUTE }, [{ key, limit: 100, amount: 20, ttlMs: null }])).kind).toBe('blocked');
    await new Promise((r) => setTimeout(r, 300));
    expect(await reserved(key)).toBe(0);
    expect(await counters.reserve({ id: 'waits', ms: MINUTE }, [{ key, limit: 100, amount: 20, ttlMs: null }])).toEqual({ kind: 'reserved' });
    // The late settlement of the released hold books nothing: it was given up for.
    expect(await counters.settle({ id: 'abandoned', ms: 150 }, true, [{ key, reserved: 90, cost: 3, ttlMs: null }])).toEqual([
      { spentBefore: 0, spentAfter: 0, loaded: true },
    ]);
  });
}

describe('in-process budget counters', () => {
  contract(() => new MemoryCounters());
});

describe.runIf(REDIS_URL)('Redis budget counters', () => {
  let redis: Redis;
  const prefix = `tollgate-test:${randomUUID()}:`;
  beforeAll(() => {
    redis = new Redis(REDIS_URL!);
  });
  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    await redis.quit();
  });
  contract(() => new RedisCounters(redis, prefix));
});
