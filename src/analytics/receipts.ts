// receipts: the filtered receipts, newest first, with cursor pagination; receipt(id) and
// verifyReceipt(id) for one receipt, restricted to the principal's team.
//
// Order: (started_at DESC, receipt_id DESC), a total order. The cursor is opaque to clients:
// base64url of JSON [started_at ms, receipt_id] of the last receipt of a page.

import type { Receipt } from '../receipts/receipt.js';
import { RECEIPT_COLUMNS, rowToReceipt } from '../receipts/rows.js';
import { type JwkLike, verifyReceipt as verifySignature } from '../receipts/verify.js';
import {
  type AnalyticsContext,
  type AnalyticsFilter,
  badInput,
  EARLIEST_RECEIPT_MS,
  filterConditions,
  fromTable,
  LATEST_RECEIPT_MS,
  matchesNothing,
  type Principal,
  scopeFilter,
} from './common.js';
import { num, runQuery } from './run.js';
import { sql, trusted } from './sql.js';

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 500;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface ReceiptConnection {
  edges: Array<{ node: Receipt; cursor: string }>;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  totalCount: number;
}

export function encodeCursor(r: Pick<Receipt, 'started_at' | 'receipt_id'>): string {
  return Buffer.from(JSON.stringify([Date.parse(r.started_at), r.receipt_id]), 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): { at: Date; id: string } {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    // Only times a receipt can have: anything else is not a cursor this API gave out.
    const inRange = (t: unknown) => Number.isSafeInteger(t) && (t as number) >= EARLIEST_RECEIPT_MS && (t as number) <= LATEST_RECEIPT_MS;
    if (Array.isArray(v) && v.length === 2 && inRange(v[0]) && typeof v[1] === 'string' && UUID.test(v[1])) {
      return { at: new Date(v[0] as number), id: v[1] };
    }
  } catch {
    /* fall through */
  }
  throw badInput('invalid cursor');
}

const COLUMNS: Readonly<Record<'all', string>> = { all: RECEIPT_COLUMNS.join(', ') };

export async function receipts(ctx: AnalyticsContext, rawFilter: AnalyticsFilter, first?: number | null, after?: string | null): Promise<ReceiptConnection> {
  const filter = scopeFilter(rawFilter, ctx.principal);
  const limit = first ?? DEFAULT_PAGE;
  if (!Number.isInteger(limit) || limit < 0 || limit > MAX_PAGE) throw badInput(`first must be between 0 and ${MAX_PAGE}`);
  const cursor = after ? decodeCursor(after) : null;
  if (matchesNothing(filter)) return { edges: [], pageInfo: { hasNextPage: false, endCursor: null }, totalCount: 0 };
  const where = filterConditions(filter, 'raw');
  const page = cursor ? sql` AND (started_at < ${cursor.at} OR (started_at = ${cursor.at} AND receipt_id < ${sql.typed(cursor.id, 'UUID')}))` : sql.empty();
  // One row past the page says whether there is a next one (first: 0 too).
  const [rows, count] = await Promise.all([
    runQuery(
      ctx,
      sql`SELECT ${trusted(COLUMNS, 'all')} FROM ${fromTable(ctx, 'raw')}
          WHERE ${where}${page}
          ORDER BY started_at DESC, receipt_id DESC
          LIMIT ${limit + 1}`,
    ),
    runQuery(ctx, sql`SELECT count() AS n FROM ${fromTable(ctx, 'raw')} WHERE ${where}`),
  ]);
  const nodes = rows.slice(0, limit).map(rowToReceipt);
  const edges = nodes.map((node) => ({ node, cursor: encodeCursor(node) }));
  return {
    edges,
    pageInfo: { hasNextPage: rows.length > limit, endCursor: edges.length > 0 ? edges[edges.length - 1]!.cursor : (after ?? null) },
    totalCount: num(count[0]?.n),
  };
}

export interface ReceiptLookup {
  principal: Principal | null;
  findReceipt: (id: string) => Promise<Receipt | null>;
}

/** The receipt, or null when it does not exist or belongs to another team than the token's. */
export async function receipt(ctx: ReceiptLookup, id: string): Promise<Receipt | null> {
  const normalized = String(id).toLowerCase();
  if (!UUID.test(normalized)) return null;
  const r = await ctx.findReceipt(normalized);
  if (!r) return null;
  const teamId = ctx.principal?.teamId ?? null;
  if (teamId !== null && r.team_id !== teamId) return null;
  return r;
}

export interface ReceiptVerification {
  valid: boolean;
  reason: string | null;
  receipt: Receipt | null;
  keyId: string | null;
}

export async function verifyReceipt(ctx: ReceiptLookup & { jwks: () => { keys: ReadonlyArray<JwkLike> } }, id: string): Promise<ReceiptVerification> {
  const r = await receipt(ctx, id);
  if (!r) return { valid: false, reason: 'receipt not found', receipt: null, keyId: null };
  const v = verifySignature(r, ctx.jwks());
  return { valid: v.valid, reason: v.valid ? null : (v.reason ?? 'invalid'), receipt: r, keyId: r.key_id };
}
