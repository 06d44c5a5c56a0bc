// Receipts made moments ago are not in ClickHouse yet: GET /v1/receipts/:id serves them from
// here until their segment's insert is acknowledged (on a cluster, a grace period longer),
// then from ClickHouse.
import type { Receipt, ReceiptDraft, UnsignedReceipt } from './receipt.js';

export interface LandingJournal {
  /** Resolves once the receipt is in the WAL. */
  append(draft: ReceiptDraft): Promise<UnsignedReceipt>;
  /** Signs on demand (Ed25519 is deterministic: the segment worker signs identically). */
  sign(receipt: UnsignedReceipt): Receipt;
  /** seq of the newest receipt known to be in ClickHouse; every earlier one is there too. */
  readonly landedSeq: number;
}

export interface RecentReceiptsOptions {
  /** Receipts per generation (about one WAL segment). */
  generationSize?: number;
  /** …or this long after its first receipt. */
  generationMs?: number;
  /**
   * At most this many receipts are held, whether they landed or not. With ClickHouse down
   * they wait in the WAL, and a GET finds them once they are inserted.
   */
  limit?: number;
  /**
   * How long a landed generation is still served from memory. 0 on one server: the insert is
   * acknowledged and readable. On a cluster, a read may reach a replica that has not fetched
   * the part yet, so the receipt stays here that much longer.
   */
  landedGraceMs?: number;
}

interface Generation {
  receipts: Map<string, UnsignedReceipt | Receipt>;
  lastSeq: number;
  since: number;
  /** When landedSeq was first seen to cover it (at an append: time enough for the grace). */
  landedAt: number | null;
}

/**
 * Held in generations, oldest first, so that nothing is deleted from the front of one big
 * Map (asking keys().next() again walks the deleted slots, which showed up in the proxy's
 * profile). A generation is dropped as soon as its last receipt has landed (plus the grace on
 * a cluster): memory holds the ~1.5 s of receipts that are on their way to ClickHouse with
 * 1000 ms batches, not a fixed count, and the old-generation heap V8 keeps (a multiple of the
 * live one) shrinks with it.
 */
export class RecentReceipts {
  readonly #journal: LandingJournal;
  readonly #generationSize: number;
  readonly #generationMs: number;
  readonly #limit: number;
  readonly #landedGraceMs: number;
  readonly #generations: Generation[] = [];
  #held = 0;

  constructor(journal: LandingJournal, options: RecentReceiptsOptions = {}) {
    this.#journal = journal;
    this.#generationSize = options.generationSize ?? 1000;
    this.#generationMs = options.generationMs ?? 1000;
    this.#limit = Math.max(options.limit ?? 20_000, this.#generationSize);
    this.#landedGraceMs = options.landedGraceMs ?? 0;
  }

  /** Receipts held now (tests). */
  get size(): number {
    return this.#held;
  }

  async append(draft: ReceiptDraft): Promise<UnsignedReceipt> {
    const receipt = await this.#journal.append(draft);
    const now = performance.now();
    this.#dropLanded(now);
    let young = this.#generations.at(-1);
    if (!young || young.receipts.size >= this.#generationSize || now - young.since >= this.#generationMs) {
      young = { receipts: new Map(), lastSeq: 0, since: now, landedAt: null };
      this.#generations.push(young);
    }
    young.receipts.set(receipt.receipt_id, receipt);
    if (receipt.seq > young.lastSeq) young.lastSeq = receipt.seq;
    this.#held++;
    return receipt;
  }

  get(id: string): Receipt | undefined {
    for (let i = this.#generations.length - 1; i >= 0; i--) {
      const generation = this.#generations[i]!;
      const held = generation.receipts.get(id);
      if (!held) continue;
      if ('signature' in held) return held;
      // Signed once, on first request.
      const signed = this.#journal.sign(held);
      generation.receipts.set(id, signed);
      return signed;
    }
    return undefined;
  }

  /** Drops the oldest generations that are in ClickHouse (after the grace), then any over the limit. */
  #dropLanded(now: number): void {
    const landed = this.#journal.landedSeq;
    // Every landed generation starts its grace now, not when it becomes the oldest: else one
    // would go per grace period while a new one starts every second.
    for (const generation of this.#generations) {
      if (generation.lastSeq > landed) break;
      generation.landedAt ??= now;
    }
    while (this.#generations.length > 0) {
      const oldest = this.#generations[0]!;
      const inGrace = oldest.landedAt === null || now - oldest.landedAt < this.#landedGraceMs;
      if (inGrace && this.#held <= this.#limit) break;
      this.#generations.shift();
      this.#held -= oldest.receipts.size;
    }
  }
}
