// Stored Responses API answers (DESIGN §4: `previous_response_id`, GET and DELETE
// /v1/responses/{id}), team-scoped and expiring, in the config store (Postgres or PGlite).
//
// The write happens after the answer, off the request path; until it lands, the answer is
// served from memory, so a client that asks for it (or continues from it) at once finds it.
// Across instances the write takes a few milliseconds to become visible.
import type { Prisma, PrismaClient } from './prisma.js';

export type Item = Record<string, unknown>;

export interface StoredResponse {
  id: string;
  teamId: string;
  previousId: string | null;
  /** This request's own input items. */
  input: Item[];
  /** The response object as the client got it. */
  response: Record<string, unknown> & { output?: unknown };
}

/** How deep a previous_response_id chain may go (each hop is one earlier turn). */
const MAX_CHAIN = 1000;
const PENDING_LIMIT = 10_000;

export class ResponseStore {
  /** Saved but not yet written (or written moments ago): id → entry. */
  private readonly pending = new Map<string, StoredResponse>();
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly prisma: PrismaClient,
    private readonly retentionMs: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  save(entry: StoredResponse): void {
    if (this.pending.size >= PENDING_LIMIT) this.pending.delete(this.pending.keys().next().value!);
    this.pending.set(entry.id, entry);
    const now = Date.now();
    const write = this.prisma.storedResponse
      .create({
        data: {
          id: entry.id,
          teamId: entry.teamId,
          previousId: entry.previousId,
          input: entry.input as Prisma.InputJsonValue,
          response: entry.response as Prisma.InputJsonValue,
          createdAt: new Date(now),
          expiresAt: new Date(now + this.retentionMs),
        },
      })
      .then(
        () => void this.pending.delete(entry.id),
        (err: unknown) => this.onError(err),
      )
      .finally(() => this.writes.delete(write));
    this.writes.add(write);
  }

  async get(teamId: string, id: string): Promise<StoredResponse | null> {
    const held = this.pending.get(id);
    if (held) return held.teamId === teamId ? held : null;
    const row = await this.prisma.storedResponse.findFirst({ where: { id, teamId, expiresAt: { gt: new Date() } } });
    return row
      ? { id: row.id, teamId: row.teamId, previousId: row.previousId, input: row.input as Item[], response: row.response as StoredResponse['response'] }
      : null;
  }

  /**
   * The conversation up to and including response `id`, oldest first: each turn's input
   * items, then its output items. Null when `id` is unknown, expired or another team's.
   */
  async conversation(teamId: string, id: string): Promise<Item[] | null> {
    const turns: StoredResponse[] = [];
    let next: string | null = id;
    // Walk through what is still in memory; the rest of the chain in one recursive query.
    while (next && this.pending.has(next) && turns.length < MAX_CHAIN) {
      const held: StoredResponse = this.pending.get(next)!;
      if (held.teamId !== teamId) return null;
      turns.push(held);
      next = held.previousId;
    }
    if (next && turns.length < MAX_CHAIN) {
      const rows = await this.prisma.$queryRaw<Array<{ input: Item[]; response: StoredResponse['response']; previousId: string | null }>>`
        WITH RECURSIVE chain AS (
          SELECT "id", "previousId", "input", "response", 0 AS depth
          FROM "StoredResponse" WHERE "id" = ${next} AND "teamId" = ${teamId} AND "expiresAt" > now()
          UNION ALL
          SELECT r."id", r."previousId", r."input", r."response", c.depth + 1
          FROM "StoredResponse" r JOIN chain c ON r."id" = c."previousId"
          WHERE r."teamId" = ${teamId} AND r."expiresAt" > now() AND c.depth < ${MAX_CHAIN - turns.length}
        )
        SELECT "input", "response", "previousId" FROM chain ORDER BY depth`;
      if (rows.length === 0 && turns.length === 0) return null;
      for (const r of rows) turns.push({ id: '', teamId, previousId: r.previousId, input: r.input, response: r.response });
    }
    return flatten(turns);
  }

  async delete(teamId: string, id: string): Promise<boolean> {
    const held = this.pending.get(id);
    if (held && held.teamId !== teamId) return false;
    if (held) {
      this.pending.delete(id);
      await Promise.all(this.writes); // let its write land, then delete the row
    }
    // An expired response is already gone for GET and previous_response_id, so DELETE says 404
    // too; the purge removes its row.
    const { count } = await this.prisma.storedResponse.deleteMany({ where: { id, teamId, expiresAt: { gt: new Date() } } });
    return count > 0 || held !== undefined;
  }

  /** Removes expired responses; returns how many. */
  async purgeExpired(): Promise<number> {
    const { count } = await this.prisma.storedResponse.deleteMany({ where: { expiresAt: { lte: new Date() } } });
    return count;
  }

  /** Waits for the writes in flight (shutdown). */
  async flush(): Promise<void> {
    await Promise.all(this.writes);
  }
}

/** Newest-first turns → the items of the whole conversation, oldest first. */
function flatten(newestFirst: StoredResponse[]): Item[] {
  const items: Item[] = [];
  for (let i = newestFirst.length - 1; i >= 0; i--) {
    const turn = newestFirst[i]!;
    items.push(...turn.input);
    if (Array.isArray(turn.response.output)) items.push(...(turn.response.output as Item[]));
  }
  return items;
}
