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
//
// Every reservation is a hold named by its request, with a deadline. A hold whose settlement
// never comes (the instance crashed, or the counters were unreachable for longer than the
// settlement retries) is released at its deadline, so a leak cannot block a budget for good
// (a TOTAL budget's counter never expires). The name also makes both operations safe to
// repeat: a reservation already held is not taken twice, and a settlement books its cost only
// when it removes the hold (or, for a request admitted without one while the counters were
// down, when it is the first to mark the request settled).
import type { Redis } from 'ioredis';

export const NANO = 1e9;

/** A request's claim on its counters: its id, and how long the reservation may live. */
export interface Hold {
  id: string;
  ms: number;
}

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
  /** The amount its hold reserved. */
  reserved: number;
  cost: number;
  ttlMs: number | null;
}

export interface SettledCounter {
  spentBefore: number;
  spentAfter: number;
  loaded: boolean;
}

/** How long a settlement of a request admitted without a hold is remembered (for repeats). */
export const SETTLED_MARK_MS = 30 * 60_000;

export interface CounterState {
  spent: number;
  reserved: number;
}

export interface BudgetCounters {
  /** All or nothing: reserves `amount` on every counter unless one would pass its limit. */
  reserve(hold: Hold, items: ReserveItem[]): Promise<ReserveOutcome>;
  /**
   * Releases each reservation and adds the actual cost, once per request whatever the
   * repeats; `held` false: the request was admitted without a reservation (counters down).
   * Returns spend before and after (equal when nothing was booked), and whether the counter
   * holds the period's whole spend (rebuilt from the receipts): one that does not counts from
   * what it was told since, and its figures cross no alert line.
   */
  settle(hold: Hold, held: boolean, items: SettleItem[]): Promise<SettledCounter[]>;
  read(keys: string[]): Promise<Array<(CounterState & { loaded: boolean }) | null>>;
  /** Sets the rebuilt spend of a counter not loaded yet (keeps a higher live value). */
  load(key: string, spent: number, ttlMs: number | null): Promise<void>;
  /**
   * Marks counters as not rebuilt: the next reservation rebuilds them from the receipts (after
   * settlements that could not be booked; their receipts have the cost).
   */
  unload(keys: string[]): Promise<void>;
}

interface MemoryCounter extends CounterState {
  loaded: boolean;
  expiresAt: number | null;
  /** Hold name (`id:amount`, or `id:settled`) → deadline. */
  holds: Map<string, number>;
  /** The earliest deadline in `holds` (or later): no hold can expire before it. */
  firstDeadline: number;
}

const holdName = (id: string, amount: number) => `${id}:${amount}`;
const settledName = (id: string) => `${id}:settled`;

export class MemoryCounters implements BudgetCounters {
  private readonly counters = new Map<string, MemoryCounter>();

  constructor(private readonly now: () => number = Date.now) {}

  async reserve(hold: Hold, items: ReserveItem[]): Promise<ReserveOutcome> {
    const unloaded = items.flatMap((item, i) => (this.get(item.key)?.loaded ? [] : [i]));
    if (unloaded.length) return { kind: 'unloaded', indexes: unloaded };
    if (this.get(items[0].key)!.holds.has(holdName(hold.id, items[0].amount))) return { kind: 'reserved' };
    for (let i = 0; i < items.length; i++) {
      const c = this.get(items[i].key)!;
      const limit = items[i].limit;
      if (limit !== null && c.spent + c.reserved + items[i].amount > limit) return { kind: 'blocked', index: i, spent: c.spent, reserved: c.reserved };
    }
    const deadline = this.now() + hold.ms;
    for (const item of items) {
      const c = this.get(item.key)!;
      c.reserved += item.amount;
      c.holds.set(holdName(hold.id, item.amount), deadline);
      c.firstDeadline = Math.min(c.firstDeadline, deadline);
    }
    return { kind: 'reserved' };
  }

  async settle(hold: Hold, held: boolean, items: SettleItem[]): Promise<SettledCounter[]> {
    return items.map((item) => {
      const c = this.get(item.key) ?? this.create(item.key, item.ttlMs, false);
      const spentBefore = c.spent;
      const released = c.holds.delete(holdName(hold.id, item.reserved));
      if (released) c.reserved = Math.max(0, c.reserved - item.reserved);
      let book = released;
      if (!held) {
        book = !c.holds.has(settledName(hold.id));
        if (book) {
          c.holds.set(settledName(hold.id), this.now() + SETTLED_MARK_MS);
          c.firstDeadline = Math.min(c.firstDeadline, this.now() + SETTLED_MARK_MS);
        }
      }
      if (book) c.spent += item.cost;
      return { spentBefore, spentAfter: c.spent, loaded: c.loaded };
    });
  }

  async unload(keys: string[]): Promise<void> {
    for (const key of keys) {
      const c = this.get(key);
      if (c) c.loaded = false;
    }
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

  /** The live counter under `key`, its holds past their deadline released. */
  private get(key: string): MemoryCounter | undefined {
    const c = this.counters.get(key);
    if (!c) return undefined;
    const now = this.now();
    if (c.expiresAt !== null && c.expiresAt <= now) {
      this.counters.delete(key);
      return undefined;
    }
    if (c.firstDeadline > now) return c;
    c.firstDeadline = Number.POSITIVE_INFINITY;
    for (const [name, deadline] of c.holds) {
      if (deadline > now) {
        c.firstDeadline = Math.min(c.firstDeadline, deadline);
        continue;
      }
      c.holds.delete(name);
      c.reserved = Math.max(0, c.reserved - (Number(name.slice(name.lastIndexOf(':') + 1)) || 0));
    }
    return c;
  }

  private create(key: string, ttlMs: number | null, loaded: boolean): MemoryCounter {
    const c: MemoryCounter = {
      spent: 0,
      reserved: 0,
      loaded,
      expiresAt: ttlMs === null ? null : this.now() + ttlMs,
      holds: new Map(),
      firstDeadline: Number.POSITIVE_INFINITY,
    };
    this.counters.set(key, c);
    return c;
  }
}

// Per counter two keys: a hash (s = spent, r = reserved, l = loaded) and a sorted set of its
// holds (member `requestId:amount`, or `requestId:settled`; score = deadline, Redis's clock).
// KEYS: hash1, holds1, hash2, holds2, … Every script first releases expired holds.
const RELEASE_EXPIRED = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function releaseExpired(counter, holds)
  local gone = redis.call('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, 512)
  if #gone == 0 then return end
  local amount = 0
  for _, name in ipairs(gone) do amount = amount + (tonumber(string.match(name, ':(%d+)$')) or 0) end
  redis.call('ZREM', holds, unpack(gone))
  local reserved = tonumber(redis.call('HGET', counter, 'r') or '0')
  amount = math.min(reserved, amount)
  if amount > 0 then redis.call('HINCRBY', counter, 'r', -amount) end
end
local function keepFor(i, ttl)
  if tonumber(ttl) > 0 then
    redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
    redis.call('PEXPIRE', KEYS[2 * i], ttl)
  end
end
local n = #KEYS / 2
for i = 1, n do releaseExpired(KEYS[2 * i - 1], KEYS[2 * i]) end
`;

// ARGV: request id, hold ms, then per counter: limit (-1 = none), amount, ttl (-1 = none).
const RESERVE = `${RELEASE_EXPIRED}
local unloaded = {}
for i = 1, n do
  if redis.call('HEXISTS', KEYS[2 * i - 1], 'l') == 0 then unloaded[#unloaded + 1] = i end
end
if #unloaded > 0 then return {2, unpack(unloaded)} end
if redis.call('ZSCORE', KEYS[2], ARGV[1] .. ':' .. ARGV[4]) then return {0} end
for i = 1, n do
  local limit = tonumber(ARGV[3 * i])
  local spent = tonumber(redis.call('HGET', KEYS[2 * i - 1], 's') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[2 * i - 1], 'r') or '0')
  if limit >= 0 and spent + reserved + tonumber(ARGV[3 * i + 1]) > limit then
    return {1, i, tostring(spent), tostring(reserved)}
  end
end
local deadline = now + tonumber(ARGV[2])
for i = 1, n do
  redis.call('HINCRBY', KEYS[2 * i - 1], 'r', ARGV[3 * i + 1])
  redis.call('ZADD', KEYS[2 * i], deadline, ARGV[1] .. ':' .. ARGV[3 * i + 1])
  keepFor(i, ARGV[3 * i + 2])
end
return {0}
`;

// ARGV: request id, held (1/0), settled-mark ms, then per counter: reserved, cost, ttl (-1 = none).
const SETTLE = `${RELEASE_EXPIRED}
local out = {}
for i = 1, n do
  local counter, holds = KEYS[2 * i - 1], KEYS[2 * i]
  local before = tonumber(redis.call('HGET', counter, 's') or '0')
  -- Unheld: admitted open, yet a reservation whose reply was lost may be there; release it too.
  local released = redis.call('ZREM', holds, ARGV[1] .. ':' .. ARGV[3 * i + 1]) == 1
  if released then
    local release = math.min(tonumber(redis.call('HGET', counter, 'r') or '0'), tonumber(ARGV[3 * i + 1]))
    if release > 0 then redis.call('HINCRBY', counter, 'r', -release) end
  end
  local book = released
  if ARGV[2] ~= '1' then book = redis.call('ZADD', holds, 'NX', now + tonumber(ARGV[3]), ARGV[1] .. ':settled') == 1 end
  local after = before
  if book then after = redis.call('HINCRBY', counter, 's', ARGV[3 * i + 2]) end
  keepFor(i, ARGV[3 * i + 3])
  out[#out + 1] = tostring(before)
  out[#out + 1] = tostring(after)
  out[#out + 1] = redis.call('HEXISTS', counter, 'l')
end
return out
`;

const READ = `${RELEASE_EXPIRED}
local out = {}
for i = 1, n do out[i] = redis.call('HMGET', KEYS[2 * i - 1], 's', 'r', 'l') end
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
  budgetRead(n: number, ...keys: string[]): Promise<Array<Array<string | null>>>;
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
    redis.defineCommand('budgetRead', { lua: READ });
    redis.defineCommand('budgetLoad', { numberOfKeys: 1, lua: LOAD });
    this.redis = redis as Scripted;
  }

  async reserve(hold: Hold, items: ReserveItem[]): Promise<ReserveOutcome> {
    const keys = this.keys(items.map((i) => i.key));
    const args = items.flatMap((i) => [i.limit ?? -1, i.amount, i.ttlMs ?? -1]);
    const reply = await this.redis.budgetReserve(keys.length, ...keys, hold.id, hold.ms, ...args);
    const [code, ...rest] = reply.map(Number);
    if (code === 0) return { kind: 'reserved' };
    if (code === 2) return { kind: 'unloaded', indexes: rest.map((i) => i - 1) };
    return { kind: 'blocked', index: rest[0] - 1, spent: rest[1], reserved: rest[2] };
  }

  async settle(hold: Hold, held: boolean, items: SettleItem[]): Promise<SettledCounter[]> {
    const keys = this.keys(items.map((i) => i.key));
    const args = items.flatMap((i) => [i.reserved, i.cost, i.ttlMs ?? -1]);
    const reply = (await this.redis.budgetSettle(keys.length, ...keys, hold.id, held ? 1 : 0, SETTLED_MARK_MS, ...args)).map(Number);
    return items.map((_, i) => ({ spentBefore: reply[3 * i], spentAfter: reply[3 * i + 1], loaded: reply[3 * i + 2] === 1 }));
  }

  async read(keys: string[]): Promise<Array<(CounterState & { loaded: boolean }) | null>> {
    const names = this.keys(keys);
    const replies = await this.redis.budgetRead(names.length, ...names);
    return replies.map(([s, r, l]) => {
      if (s === null && r === null && l === null) return null;
      return { spent: Number(s ?? 0), reserved: Number(r ?? 0), loaded: l !== null };
    });
  }

  async load(key: string, spent: number, ttlMs: number | null): Promise<void> {
    await this.redis.budgetLoad(this.prefix + key, Math.round(spent), ttlMs ?? -1);
  }

  async unload(keys: string[]): Promise<void> {
    await Promise.all(keys.map((key) => this.redis.hdel(this.prefix + key, 'l')));
  }

  /** Each counter's two keys: its hash and its holds. */
  private keys(counters: string[]): string[] {
    return counters.flatMap((key) => [this.prefix + key, `${this.prefix + key}:holds`]);
  }
}
