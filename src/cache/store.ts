// Where cached answers live.
//
// In process: an LRU bounded by bytes (lru-cache) with a TTL per entry; what it evicts or
// expires leaves the semantic index too. Every stored entry is appended to a log in the data
// directory, replayed at start, so entries survive a restart; the log is rewritten from the
// live entries once it grows past twice the byte limit. Losing the last few lines in a crash
// only costs a few future misses: a cache, unlike the receipt WAL, never fsyncs.
// With Redis: exact entries are also written there (with the same TTL), so every instance
// finds what any instance stored; this instance's memory stays a first-level cache in front.
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { chmod, mkdir, open, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import { type HeldAnswer, pack, unpack } from './packing.js';
import { SemanticIndex, type SemanticMatch } from './semantic-index.js';
import { isSparse, type Vector } from './vector-index.js';

export interface CachedAnswer {
  key: string;
  teamId: string;
  createdAt: number;
  expiresAt: number;
  /** The answer as JSON text (a chat.completion, or an embeddings list): compact, parsed on a hit. */
  answer: string;
  /** What the original request cost (null when unpriced): a hit's saved cost. */
  costUsd: number | null;
  /** The original's token counts were estimated (the upstream reported none): so are a hit's. */
  usageEstimated?: boolean;
  provider: string;
  model: string;
  semantic: { namespace: string; context: string; text: string } | null;
}

export interface CacheStats {
  entries: number;
  bytes: number;
  semanticEntries: number;
  evictions: number;
  expirations: number;
  redisErrors: number;
  /** Rewrites of the log file with only the live entries. */
  compactions: number;
}

export interface AnswerStoreOptions {
  maxBytes: number;
  /** Answers larger than this are not cached (one huge answer must not flush the rest). */
  maxEntryBytes: number;
  /** Directory for the persistence log; none = memory only. */
  dir?: string;
  redis?: Redis | null;
  onError?: (err: unknown, what: string) => void;
  now?: () => number;
}

const REDIS_PREFIX = 'tollgate:cache:v1:';
const LOG_FILE = 'answers.jsonl';

interface LogLine extends CachedAnswer {
  vector?: { ids: number[]; weights: number[] } | { dense: string };
}

export class AnswerStore {
  private readonly lru: LRUCache<string, HeldAnswer>;
  private readonly semantic = new SemanticIndex();
  private log: WriteStream | null = null;
  private logBytes = 0;
  /** The log's size after its last compaction: the next one waits until it has doubled. */
  private compactedBytes = 0;
  private compacting: Promise<void> | null = null;
  /** While a compaction writes the new log: the lines put meanwhile, for it too. */
  private putWhileCompacting: string[] | null = null;
  private readonly counters = { evictions: 0, expirations: 0, redisErrors: 0, compactions: 0 };
  private readonly now: () => number;

  private constructor(private readonly opts: AnswerStoreOptions) {
    this.now = opts.now ?? Date.now;
    this.lru = new LRUCache<string, HeldAnswer>({
      maxSize: opts.maxBytes,
      maxEntrySize: opts.maxEntryBytes,
      sizeCalculation: (entry) => entrySize(entry),
      ttlAutopurge: false,
      // Read the clock on every check (the default caches it for 1 ms on a timer).
      ttlResolution: 0,
      // lru-cache's clock must be ours too, for tests with a controlled clock.
      perf: { now: () => this.now() },
      dispose: (_entry, key, reason) => {
        if (reason === 'set') return; // replaced by a newer entry for the same key
        this.semantic.remove(key);
        if (reason === 'evict') this.counters.evictions++;
        if (reason === 'expire') this.counters.expirations++;
      },
    });
  }

  static async open(opts: AnswerStoreOptions): Promise<AnswerStore> {
    const store = new AnswerStore(opts);
    if (opts.dir) await store.load(opts.dir);
    return store;
  }

  stats(): CacheStats {
    return { entries: this.lru.size, bytes: this.lru.calculatedSize, semanticEntries: this.semantic.size, ...this.counters };
  }

  async getExact(key: string): Promise<CachedAnswer | null> {
    const local = this.lru.get(key);
    if (local) return unpack(local);
    const redis = this.opts.redis;
    if (!redis) return null;
    let raw: string | null;
    try {
      raw = await redis.get(REDIS_PREFIX + key);
    } catch (err) {
      this.redisFailed(err, 'cache lookup');
      return null;
    }
    if (!raw) return null;
    // Redis is shared: a value that is not an entry of this version is a miss, not a failed request.
    let entry: CachedAnswer;
    try {
      entry = JSON.parse(raw) as CachedAnswer;
      // Its own key (the team is in it), and an answer that is an object: a request it would
      // answer must not fail on it (every identical one, on every instance, until it expired).
      if (typeof entry?.answer !== 'string' || typeof entry.expiresAt !== 'number' || entry.key !== key) throw new Error('not a cache entry');
      const answer = JSON.parse(entry.answer) as unknown;
      if (!answer || typeof answer !== 'object' || Array.isArray(answer)) throw new Error('not a cached answer');
    } catch (err) {
      this.redisFailed(err, 'cache lookup (unreadable entry)');
      return null;
    }
    if (entry.expiresAt <= this.now()) return null;
    this.lru.set(key, pack({ ...entry, semantic: null }), { ttl: entry.expiresAt - this.now() });
    return entry;
  }

  findSimilar(namespace: string, context: string, text: string, vector: Vector, threshold: number): { entry: CachedAnswer; similarity: number } | null {
    let match: SemanticMatch | null;
    // An expired entry still in the index is dropped on the get below; look again without it.
    while ((match = this.semantic.find(namespace, context, text, vector, threshold))) {
      const entry = this.lru.get(match.key);
      if (entry) return { entry: unpack(entry), similarity: match.similarity };
      this.semantic.remove(match.key);
    }
    return null;
  }

  async put(entry: CachedAnswer, vector: Vector | null): Promise<void> {
    const ttl = entry.expiresAt - this.now();
    if (ttl <= 0) return;
    const line = serialize(entry, vector);
    if (line.length > this.opts.maxEntryBytes) return;
    this.remember(entry, vector, ttl);
    if (this.log) {
      this.log.write(`${line}\n`);
      this.putWhileCompacting?.push(`${line}\n`);
      this.logBytes += line.length + 1;
      if (this.logBytes > this.compactAt()) void this.compact();
    }
    if (this.opts.redis) {
      const shared = JSON.stringify({ ...entry, semantic: null });
      await this.opts.redis.set(REDIS_PREFIX + entry.key, shared, 'PX', ttl).catch((err: unknown) => this.redisFailed(err, 'cache store'));
    }
  }

  async close(): Promise<void> {
    await this.compacting;
    await endStream(this.log);
    this.log = null;
  }

  private remember(entry: CachedAnswer, vector: Vector | null, ttl: number): void {
    const held = pack(entry);
    // Its vector's size is given here: the entry does not keep it (a field more on 100k entries).
    this.lru.set(entry.key, held, { ttl, size: entrySize(held, entry.semantic && vector ? vectorBytes(vector) : 0) });
    if (!this.lru.has(entry.key)) return; // too large for this cache
    if (entry.semantic && vector) {
      try {
        // Hold the index's shared copies of the namespace and context strings, not this request's.
        held.semantic = this.semantic.add(entry.semantic.namespace, entry.key, entry.semantic.context, entry.semantic.text, vector);
      } catch (err) {
        // A vector of another length than its namespace's (a log from before a model change):
        // kept for exact lookups; thrown at load, it stopped the start.
        held.semantic = null;
        this.opts.onError?.(err, 'semantic cache');
      }
    }
  }

  private async load(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, LOG_FILE);
    const size = await stat(file).then(
      (s) => s.size,
      () => 0,
    );
    if (size > 0) {
      const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
      for await (const line of lines) {
        if (!line.trim()) continue;
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          continue; // a line torn by a crash
        }
        const ttl = parsed.expiresAt - this.now();
        if (ttl <= 0) continue;
        const { vector, ...entry } = parsed;
        this.remember(entry, deserializeVector(vector), ttl);
      }
    }
    this.logBytes = size;
    // Every team's prompts and answers: readable by this user only, like the WAL (a log from
    // before this rule too).
    if (size > 0) await chmod(file, 0o600).catch((err: unknown) => this.opts.onError?.(err, 'cache log'));
    this.log = createWriteStream(file, { flags: 'a', mode: 0o600 });
    this.log.on('error', (err) => this.opts.onError?.(err, 'cache log'));
    if (this.logBytes > this.compactAt()) await this.compact();
  }

  /** Rewrites the log with only the live entries, oldest first (so a reload keeps LRU order). */
  private compact(): Promise<void> {
    if (this.compacting || !this.log || !this.opts.dir) return this.compacting ?? Promise.resolve();
    const dir = this.opts.dir;
    this.compacting = (async () => {
      const file = path.join(dir, LOG_FILE);
      const tmp = await open(`${file}.tmp`, 'w', 0o600);
      let bytes = 0;
      try {
        this.putWhileCompacting = [];
        // Oldest first (a reload keeps LRU order), a slice at a time with the event loop turning
        // between writes: serialized and joined at once, 31 MB of cache held every request for
        // 1.7 s (and past V8's longest string, ~512 MB, it could not be done at all).
        const keys = [...this.lru.keys()].reverse();
        let slice = '';
        for (const key of keys) {
          const entry = this.lru.peek(key);
          if (entry) slice += `${serialize(unpack(entry), this.semantic.vectorOf(key) ?? null)}\n`;
          if (slice.length < COMPACTION_SLICE_CHARS) continue;
          bytes += (await tmp.write(slice)).bytesWritten;
          slice = '';
        }
        bytes += (await tmp.write(slice)).bytesWritten;
      } finally {
        await tmp.close();
      }
      await rename(`${file}.tmp`, file);
      // From here to the swap, nothing awaits: a put lands in the new log or in what is copied to it.
      const old = this.log;
      this.log = createWriteStream(file, { flags: 'a', mode: 0o600 });
      this.log.on('error', (err) => this.opts.onError?.(err, 'cache log'));
      for (const line of this.putWhileCompacting) {
        this.log.write(line);
        bytes += Buffer.byteLength(line);
      }
      this.putWhileCompacting = null;
      this.logBytes = bytes;
      this.compactedBytes = this.logBytes;
      this.counters.compactions++;
      await endStream(old);
    })()
      .catch((err: unknown) => {
        // Not again at the next put (each would serialize the whole cache to fail the same
        // way): once the log has grown as much again.
        this.compactedBytes = this.logBytes;
        this.opts.onError?.(err, 'cache log compaction');
      })
      .finally(() => {
        this.compacting = null;
        this.putWhileCompacting = null;
      });
    return this.compacting;
  }

  /**
   * Twice the cache's size, or twice what the last compaction left when that was more (the log
   * writes dense vectors in base64, larger than the memory they take): else every put would
   * compact again.
   */
  private compactAt(): number {
    return 2 * Math.max(this.opts.maxBytes, this.compactedBytes);
  }

  private redisFailed(err: unknown, what: string): void {
    this.counters.redisErrors++;
    this.opts.onError?.(err, what);
  }
}

function entrySize(entry: HeldAnswer, vectorBytes = 0): number {
  // Approximate bytes of the answer's text, the prompt and its vector, fixed overhead. Counted
  // on the text as given, not as packed: the limit keeps meaning what it did before packing,
  // and the memory held stays below it.
  const answer = entry.answerChars || entry.body.length;
  return 300 + answer + (entry.semantic ? entry.semantic.text.length + vectorBytes : 0);
}

/**
 * A vector's share of memory: its numbers, and for a dense one hnswlib's links (M = 16: up to
 * 32 neighbours of 4 bytes on the base layer) and label bookkeeping. A provider's embedding of
 * 1,536 dimensions is ~6 KB, ten times a sparse local one.
 */
function vectorBytes(vector: Vector): number {
  return isSparse(vector) ? vector.ids.byteLength + vector.weights.byteLength + 100 : vector.byteLength + 200;
}

/** How much of the rewritten log is written at a time (a few ms of serialising). */
const COMPACTION_SLICE_CHARS = 64 * 1024;

function serialize(entry: CachedAnswer, vector: Vector | null): string {
  const line: LogLine = { ...entry };
  if (vector) {
    line.vector = isSparse(vector)
      ? { ids: Array.from(vector.ids), weights: Array.from(vector.weights) }
      : { dense: Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64') };
  }
  return JSON.stringify(line);
}

function deserializeVector(v: LogLine['vector']): Vector | null {
  if (!v) return null;
  if ('dense' in v) {
    const buf = Buffer.from(v.dense, 'base64');
    return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  }
  return { ids: Uint32Array.from(v.ids), weights: Float32Array.from(v.weights) };
}

function endStream(stream: WriteStream | null): Promise<void> {
  return new Promise((resolve) => (stream ? stream.end(() => resolve()) : resolve()));
}
