// A short in-memory cache in front of a credential lookup (API keys, access tokens, OIDC team
// names): answers, including "no such credential", are kept for the auth cache window
// (TOLLGATE_AUTH_CACHE_MS), so revocation reaches the proxy within it, or at once through
// `invalidate`.
const MAX_ENTRIES = 50_000;

interface Entry<T> {
  value: T | null;
  fetchedAt: number;
}

/** A lookup under way. `stale`: invalidated while it ran (maybe read before the change). */
interface Lookup<T> {
  promise: Promise<T | null>;
  stale: boolean;
}

export class LookupCache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly inflight = new Map<string, Lookup<T>>();

  constructor(
    private readonly lookup: (key: string) => Promise<T | null>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): Promise<T | null> {
    const cached = this.entries.get(key);
    if (cached && this.now() - cached.fetchedAt < this.ttlMs) return Promise.resolve(cached.value);
    // One lookup per key at a time: a burst with a fresh key makes one query, not hundreds.
    let pending = this.inflight.get(key);
    if (!pending) {
      const running: Lookup<T> = { promise: Promise.resolve(null), stale: false };
      running.promise = this.lookup(key)
        .then((value) => {
          // Read before an invalidation: answers this caller, is not kept.
          if (running.stale) return value;
          if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
          this.entries.set(key, { value, fetchedAt: this.now() });
          return value;
        })
        .catch((err: unknown) => {
          // The store is down: what we already knew keeps its answer (stale but known;
          // re-checked after another TTL, so only one request per TTL waits on the broken
          // store); what we never saw cannot be checked, and the error goes to the caller.
          // Invalidated meanwhile (revoked): what we knew is what was revoked; no answer then.
          if (cached && !running.stale) {
            cached.fetchedAt = this.now();
            return cached.value;
          }
          throw err;
        })
        .finally(() => {
          if (this.inflight.get(key) === running) this.inflight.delete(key);
        });
      this.inflight.set(key, (pending = running));
    }
    return pending.promise;
  }

  /**
   * Forgets `key` (or everything). A lookup still running was maybe read before the change
   * that invalidates: it is not kept, and nobody joins it any more.
   */
  invalidate(key?: string): void {
    if (key) {
      this.entries.delete(key);
      const running = this.inflight.get(key);
      if (running) running.stale = true;
      this.inflight.delete(key);
    } else {
      this.entries.clear();
      for (const running of this.inflight.values()) running.stale = true;
      this.inflight.clear();
    }
  }
}
