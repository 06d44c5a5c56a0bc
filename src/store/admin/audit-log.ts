// Reading the audit log (written by audit.ts in each mutation's transaction): newest first,
// filtered by time, actors, actions and team, with cursor pagination. Read-only by design.
import type { Prisma, PrismaClient } from '../prisma.js';
import { AdminStoreError } from './validators.js';

export interface AuditEntryRecord {
  id: string;
  at: Date;
  actor: string;
  actorName: string | null;
  action: string;
  target: string | null;
  teamId: string | null;
  before: unknown;
  after: unknown;
}

export interface AuditQuery {
  /** Inclusive. */
  from?: Date | null;
  /** Exclusive. */
  to?: Date | null;
  actors?: readonly string[] | null;
  actions?: readonly string[] | null;
  /** Only entries about this team (a team-bound reader); null/undefined: all. */
  teamId?: string | null;
}

export interface AuditPage {
  entries: Array<{ entry: AuditEntryRecord; cursor: string }>;
  hasNextPage: boolean;
  endCursor: string | null;
  /** Entries matching the filter on all pages (counted only when asked for). */
  totalCount: () => Promise<number>;
}

export const AUDIT_DEFAULT_PAGE = 50;
const AUDIT_MAX_PAGE = 500;
/** Values one filter list may hold (each is a query parameter). */
const AUDIT_MAX_FILTER_VALUES = 100;

/** Newest first; the cursor is the entry's id (insertion order), opaque to clients. */
export class AuditLog {
  constructor(private readonly prisma: PrismaClient) {}

  async list(query: AuditQuery, first?: number | null, after?: string | null): Promise<AuditPage> {
    const limit = first ?? AUDIT_DEFAULT_PAGE;
    if (!Number.isInteger(limit) || limit < 0 || limit > AUDIT_MAX_PAGE) {
      throw new AdminStoreError('INVALID_INPUT', `first: must be between 0 and ${AUDIT_MAX_PAGE}`);
    }
    for (const [name, list] of [
      ['actors', query.actors],
      ['actions', query.actions],
    ] as const) {
      if (list && list.length > AUDIT_MAX_FILTER_VALUES)
        throw new AdminStoreError('INVALID_INPUT', `filter.${name}: at most ${AUDIT_MAX_FILTER_VALUES} values`);
      // PostgreSQL's text holds no NUL: such a value would fail the query, not just match nothing.
      if (list?.some((v) => v.includes('\u0000'))) throw new AdminStoreError('INVALID_INPUT', `filter.${name}: must not contain NUL characters`);
    }
    const before = after ? decodeCursor(after) : null;
    const matching: Prisma.AuditEntryWhereInput = {
      ...(query.from || query.to ? { at: { ...(query.from ? { gte: query.from } : {}), ...(query.to ? { lt: query.to } : {}) } } : {}),
      ...(query.actors ? { actor: { in: [...query.actors] } } : {}),
      ...(query.actions ? { action: { in: [...query.actions] } } : {}),
      ...(query.teamId ? { teamId: query.teamId } : {}),
    };
    // One row more than asked tells whether there is a next page.
    const rows = await this.prisma.auditEntry.findMany({
      where: before === null ? matching : { ...matching, id: { lt: before } },
      orderBy: { id: 'desc' },
      take: limit + 1,
    });
    const page = rows.slice(0, limit).map((r) => ({ entry: toRecord(r), cursor: encodeCursor(r.id) }));
    return {
      entries: page,
      hasNextPage: rows.length > limit,
      // An empty page (first: 0) keeps the cursor it was given: null would start over from the top.
      endCursor: page.at(-1)?.cursor ?? after ?? null,
      totalCount: () => this.prisma.auditEntry.count({ where: matching }),
    };
  }
}

const MAX_BIGINT = 2n ** 63n - 1n;

function encodeCursor(id: bigint): string {
  return Buffer.from(`audit:${id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): bigint {
  const m = /^audit:(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m || BigInt(m[1]!) > MAX_BIGINT) throw new AdminStoreError('INVALID_INPUT', 'after: invalid cursor');
  return BigInt(m[1]!);
}

function toRecord(r: Prisma.AuditEntryGetPayload<object>): AuditEntryRecord {
  return {
    id: r.id.toString(),
    at: r.at,
    actor: r.actor,
    actorName: r.actorName,
    action: r.action,
    target: r.target,
    teamId: r.teamId,
    before: r.before,
    after: r.after,
  };
}
