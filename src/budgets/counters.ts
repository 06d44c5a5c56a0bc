// Budget counters: per budget and period, what is spent (settled receipts) and what is
// reserved (requests in flight). Amounts are integer nano-dollars, so that sums are exact in
// Redis and in JavaScript alike (2^53 nano-USD is about 9 million USD per counter and period).
//
// Two stores with one contract:
// - MemoryCounters: this process only (the embedded default);
// - RedisCounters: shared by every instance; each operation is one Lua script, so a check and
//   the reservation it allows are atomic across instances.
// A counter is "loaded" once its spend has been rebuilt from the receipts (after a restart, a
// new instance, or an expired key): reserve() reports unloaded counters instead of guessing.
import type { Redis } from 'ioredis';

export const NANO = 1e9;

export interface ReserveItem {
  key: string;
  /** null: count only, never block (ALERT budgets). */
  limit: number | null;
  amount: number;
  ttlMs: number | null;
}

export type ReserveOutcome =
  | { kind: 'reserved' }
  | { kind: 'blocked'; index: number; spent: number; reserved: number }
  | { kind: 'unloaded'; indexes: number[] };

export interface SettleItem {
  key: string;
  reserved: number;
  cost: number;
  ttlMs: number | null;
}

export interface CounterState {
  spent: number;
  reserved: number;
}

export interface BudgetCounters {
  /** All or nothing: reserves `amount` on every counter unless one would pass its limit. */
  reserve(items: ReserveItem[]): Promise<ReserveOutcome>;
  /** Releases each reservation and adds the actual cost; returns spend before and after. */
  settle(items: SettleItem[]): Promise<Array<{ spentBefore: number; spentAfter: number }>>;
  read(keys: string[]): Promise<Array<(CounterState & { loaded: boolean }) | null>>;
  /** Sets the rebuilt spend of a counter not loaded yet (keeps a higher live value). */
  load(key: string, spent: number, ttlMs: number | null): Promise<void>;
}

interface MemoryCounter extends CounterState {
  loaded: boolean;
  expiresAt: number | null;
}

export class MemoryCounters implements BudgetCounters {
  private readonly counters = new Map<string, MemoryCounter>();

  constructor(private readonly now: () => number = Date.now) {}

  async reserve(items: ReserveItem[]): Promise<ReserveOutcome> {
    const unloaded = items.flatMap((item, i) => (this.get(item.key)?.loaded ? [] : [i]));
    if (unloaded.length) return { kind: 'unloaded', indexes: unloaded };
    for (let i = 0; i < items.length; i++) {
      const c = this.get(items[i].key)!;
      const limit = items[i].limit;
      if (limit !== null && c.spent + c.reserved + items[i].amount > limit) return { kind: 'blocked', index: i, spent: c.spent, reserved: c.reserved };
    }
    for (const item of items) this.get(item.key)!.reserved += item.amount;
    return { kind: 'reserved' };
  }

  async settle(items: SettleItem[]): Promise<Array<{ spentBefore: number; spentAfter: number }>> {
    return items.map((item) => {
      const c = this.get(item.key) ?? this.create(item.key, item.ttlMs, false);
      const spentBefore = c.spent;
      c.reserved = Math.max(0, c.reserved - item.reserved);
      c.spent += item.cost;
      return { spentBefore, spentAfter: c.spent };
    });
  }

  async read(keys: string[]): Promise<Array<(CounterState & { loaded: boolean }) | null>> {
    return keys.map((key) => {
      const c = this.get(key);
      return c ? { spent: c.spent, reserved: c.reserved, loaded: c.loaded } : null;
    });
  }

  async load(key: string, spent: number, ttlMs: number | null): Promise<void> {
    const c = this.get(key) ?? this.create(key, ttlMs, false);
    if (c.loaded) return;
    c.spent = Math.max(c.spent, spent);
    c.loaded = true;
  }

  private get(key: string): MemoryCounter | undefined {
    const c = this.counters.get(key);
    if (c?.expiresAt !== undefined && c.expiresAt !== null && c.expiresAt <= this.now()) {
      this.counters.delete(key);
      return undefined;
    }
    return c;
  }

  private create(key: string, ttlMs: number | null, loaded: boolean): MemoryCounter {
    const c: MemoryCounter = { spent: 0, reserved: 0, loaded, expiresAt: ttlMs === null ? null : this.now() + ttlMs };
    this.counters.set(key, c);
    return c;
  }
}

// Hash fields: s = spent, r = reserved, l = loaded. ARGV per key: limit (-1 = none), amount, ttl (-1 = none).
const RESERVE = `
local unloaded = {}
for i = 1, #KEYS do
  if redis.call('HEXISTS', KEYS[i], 'l') == 0 then unloaded[#unloaded + 1] = i end
end
if #unloaded > 0 then return {2, unpack(unloaded)} end
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 * i - 2])
  local spent = tonumber(redis.call('HGET', KEYS[i], 's') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[i], 'r') or '0')
  if limit >= 0 and spent + reserved + tonumber(ARGV[3 * i - 1]) > limit then
    return {1, i, tostring(spent), tostring(reserved)}
  end
end
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'r', ARGV[3 * i - 1])
  if tonumber(ARGV[3 * i]) > 0 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i]) end
end
return {0}
`;

// ARGV per key: reserved to release, cost to add, ttl (-1 = none).
const SETTLE = `
local out = {}
for i = 1, #KEYS do
  local before = tonumber(redis.call('HGET', KEYS[i], 's') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[i], 'r') or '0')
  local release = math.min(reserved, tonumber(ARGV[3 * i - 2]))
  if release > 0 then redis.call('HINCRBY', KEYS[i], 'r', -release) end
  local after = redis.call('HINCRBY', KEYS[i], 's', ARGV[3 * i - 1])
  if tonumber(ARGV[3 * i]) > 0 and redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[3 * i]) end
  out[#out + 1] = tostring(before)
  out[#out + 1] = tostring(after)
end
return out
`;

// ARGV: rebuilt spend, ttl (-1 = none).
const LOAD = `
if redis.call('HEXISTS', KEYS[1], 'l') == 1 then return 0 end
local live = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
redis.call('HSET', KEYS[1], 's', math.max(live, tonumber(ARGV[1])), 'l', 1)
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

type Scripted = Redis & {
  budgetReserve(n: number, ...args: Array<string | number>): Promise<Array<number | string>>;
  budgetSettle(n: number, ...args: Array<string | number>): Promise<string[]>;
  budgetLoad(key: string, spent: number, ttl: number): Promise<number>;
};

export class RedisCounters implements BudgetCounters {
  private readonly redis: Scripted;

  constructor(
    redis: Redis,
    private readonly prefix = 'tollgate:budget:',
  ) {
    redis.defineCommand('budgetReserve', { lua: RESERVE });
    redis.defineCommand('budgetSettle', { lua: SETTLE });
    redis.defineCommand('budgetLoad', { numberOfKeys: 1, lua: LOAD });
    this.redis = redis as Scripted;
  }

  async reserve(items: ReserveItem[]): Promise<ReserveOutcome> {
    const keys = items.map((i) => this.prefix + i.key);
    const args = items.flatMap((i) => [i.limit ?? -1, i.amount, i.ttlMs ?? -1]);
    const reply = await this.redis.budgetReserve(keys.length, ...keys, ...args);
    const [code, ...rest] = reply.map(Number);
    if (code === 0) return { kind: 'reserved' };
    if (code === 2) return { kind: 'unloaded', indexes: rest.map((i) => i - 1) };
    return { kind: 'blocked', index: rest[0] - 1, spent: rest[1], reserved: rest[2] };
  }

  async settle(items: SettleItem[]): Promise<Array<{ spentBefore: number; spentAfter: number }>> {
    const keys = items.map((i) => this.prefix + i.key);
    const args = items.flatMap((i) => [i.reserved, i.cost, i.ttlMs ?? -1]);
    const reply = (await this.redis.budgetSettle(keys.length, ...keys, ...args)).map(Number);
    return items.map((_, i) => ({ spentBefore: reply[2 * i], spentAfter: reply[2 * i + 1] }));
  }

  async read(keys: string[]): Promise<Array<(CounterState & { loaded: boolean }) | null>> {
    const pipeline = this.redis.pipeline();
    for (const key of keys) pipeline.hmget(this.prefix + key, 's', 'r', 'l');
    const replies = (await pipeline.exec()) ?? [];
    return replies.map(([err, value]) => {
      if (err) throw err;
      const [s, r, l] = value as Array<string | null>;
      if (s === null && r === null && l === null) return null;
      return { spent: Number(s ?? 0), reserved: Number(r ?? 0), loaded: l !== null };
    });
  }

  async load(key: string, spent: number, ttlMs: number | null): Promise<void> {
    await this.redis.budgetLoad(this.prefix + key, Math.round(spent), ttlMs ?? -1);
  }
}
