// What every admin domain shares: the error type callers see, input validation (zod) and
// its building blocks, Prisma error translation, and the one transaction shape every
// mutation uses (it writes the change's audit entry and bumps the catalog version, so
// gateways know to reload).
import { z } from 'zod';
import { normalizeCidr } from '../../gateway/allowed-cidrs.js';
import { Prisma, type PrismaClient } from '../prisma.js';
import { type Actor, AuditNote, appendAuditEntry, SYSTEM_ACTOR } from './audit.js';

export type Tx = Prisma.TransactionClient;

/** Keys of the advisory locks (any constants, one per kind of write that must not interleave). */
export const LOCKS = { routing: 7_351_001, budgets: 7_351_002 } as const;

/** Writes of one kind one at a time: the lock is held to the transaction's commit. */
export async function advisoryLock(tx: Tx, key: (typeof LOCKS)[keyof typeof LOCKS]): Promise<void> {
  await tx.$queryRaw`SELECT 1 AS locked FROM pg_advisory_xact_lock(${key}::bigint)`;
}

// ---------------------------------------------------------------------------------------
// Errors

export type AdminStoreErrorCode = 'NOT_FOUND' | 'CONFLICT' | 'INVALID_INPUT' | 'FORBIDDEN' | 'SECRET_UNREADABLE';

export class AdminStoreError extends Error {
  constructor(
    readonly code: AdminStoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AdminStoreError';
  }
}

/** Validates `input`; the first problem becomes an INVALID_INPUT error naming its field. */
export function parse<T extends z.ZodType>(schema: T, input: unknown): z.output<T> {
  const r = schema.safeParse(input);
  if (!r.success) {
    const first = r.error.issues[0];
    const where = first?.path.length ? first.path.join('.') : 'input';
    throw new AdminStoreError('INVALID_INPUT', `${where}: ${first?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** Maps Prisma's known errors to store errors; anything else passes through. */
export function translatePrismaError(err: unknown): unknown {
  if (err instanceof AdminStoreError) return err;
  if (err instanceof Prisma.PrismaClientKnownRequestError) {
    switch (err.code) {
      case 'P2002':
        return new AdminStoreError('CONFLICT', 'already exists', { cause: err });
      case 'P2025':
        return new AdminStoreError('NOT_FOUND', 'not found', { cause: err });
      case 'P2003':
        return new AdminStoreError('INVALID_INPUT', 'refers to something that does not exist', { cause: err });
    }
  }
  return err;
}

// ---------------------------------------------------------------------------------------
// Input building blocks

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const SHA256_HEX = /^[0-9a-f]{64}$/;
// Names show up in logs, receipts and URLs; no control characters anywhere.
// eslint-disable-next-line no-control-regex
export const NO_CONTROL = /^\P{Cc}*$/u;
// RFC 9110 token characters.
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const label = z.string().trim().min(1).max(128).regex(NO_CONTROL, 'must not contain control characters');
/**
 * Provider names are the first segment of `provider/model` in requests, and route names
 * are model aliases: neither may contain '/', or `a/b` would be ambiguous.
 */
export const slug = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "letters, digits, '.', '_', ':' and '-' only, starting with a letter or digit");
export const modelName = z.string().trim().min(1).max(256).regex(NO_CONTROL, 'must not contain control characters');
export const uuid = z.string().regex(UUID, 'must be a UUID');
export const positiveInt = z.number().int().positive().max(2_147_483_647);
export const httpUrl = z
  .string()
  .trim()
  .max(2048)
  // WHATWG URL parsing keeps a NUL (and drops tabs and newlines) where PostgreSQL text holds none.
  .regex(NO_CONTROL, 'must not contain control characters')
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL');
export const date = z.union([z.date(), z.iso.datetime({ offset: true })]).transform((d) => (d instanceof Date ? d : new Date(d)));
/** The stored columns are Decimal(18, 9): at most 999,999,999.999999999. */
export const MAX_STORED_USD = 999_999_999;
export const usd = z.number().nonnegative().max(MAX_STORED_USD);
/** IP allowlist entries (IPv4 or IPv6 CIDRs, or single addresses), stored normalized and deduplicated. */
export const cidrs = z
  .array(
    z.string().transform((s, ctx) => {
      const cidr = normalizeCidr(s);
      if (cidr === null) {
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(s.slice(0, 100))} is not an IP address or CIDR range` });
        return z.NEVER;
      }
      return cidr;
    }),
  )
  .max(100)
  .transform((list) => [...new Set(list)]);
export const stringMap = (keyPattern?: RegExp) =>
  z.record(keyPattern ? z.string().regex(keyPattern) : z.string().min(1), z.string().max(8192).regex(NO_CONTROL));

/** Numbers to Decimal through their shortest decimal string, so 0.15 stays 0.15. */
export function decimal(n: number): Prisma.Decimal {
  return new Prisma.Decimal(String(n));
}

export function asStringMap(v: Prisma.JsonValue | null): Record<string, string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return {};
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

export async function requireTeam(tx: Tx, teamId: string): Promise<void> {
  const team = await tx.team.findUnique({ where: { id: teamId }, select: { id: true } });
  if (!team) throw new AdminStoreError('NOT_FOUND', 'team not found');
}

// ---------------------------------------------------------------------------------------
// The catalog version and mutations

const CATALOG_VERSION_KEY = 'catalog_version';

/**
 * Every mutation runs through here, in a transaction that also writes its audit entry (who,
 * what, before/after without secrets) and bumps the catalog version, so gateways poll one
 * cheap row to know when to reload providers, routes, prices, keys and budgets.
 */
export class Mutations {
  constructor(
    readonly prisma: PrismaClient,
    /** Who the audit log names for every change made through this instance. */
    readonly actor: Actor = SYSTEM_ACTOR,
  ) {}

  /**
   * A counter bumped by every mutation, as an opaque string ("0" on a fresh database):
   * callers compare it for equality only. Decimal digits, so it also sorts numerically.
   */
  async catalogVersion(): Promise<string> {
    const row = await this.prisma.setting.findUnique({ where: { key: CATALOG_VERSION_KEY } });
    return row ? row.value : '0';
  }

  /** Increments the catalog version atomically (also across processes) and returns it. */
  async bumpCatalogVersion(tx: Tx | PrismaClient = this.prisma): Promise<string> {
    // One statement: concurrent bumps serialize on the row lock, none is lost.
    const rows = await tx.$queryRaw<{ value: string }[]>`
      INSERT INTO "Setting" ("key", "value") VALUES (${CATALOG_VERSION_KEY}, '1')
      ON CONFLICT ("key") DO UPDATE SET "value" = (("Setting"."value")::bigint + 1)::text
      RETURNING "value"`;
    return rows[0]!.value;
  }

  /**
   * The audit entry of an admin action that changes data, not configuration (repricing
   * receipts, a task's outcome): no transaction around it and no catalog version bump.
   */
  async record(action: string, target: string, teamId: string | null, after: unknown): Promise<void> {
    const audit = new AuditNote();
    audit.change(target, teamId, null, after);
    await appendAuditEntry(this.prisma, this.actor, action, audit).catch((err: unknown) => {
      throw translatePrismaError(err);
    });
  }

  /**
   * Runs `fn` in a transaction that also appends the audit entry of `action` (the mutation's
   * GraphQL name; `fn` describes its change on the note) and bumps the catalog version. A call
   * that changed nothing (deleting what is not there: no change on the note) leaves neither an
   * entry nor a new version, which every instance would reload the catalog for.
   */
  run<T>(action: string, fn: (tx: Tx, audit: AuditNote) => Promise<T>): Promise<T> {
    return this.prisma
      .$transaction(async (tx) => {
        const audit = new AuditNote();
        const result = await fn(tx, audit);
        if (audit.target === null) return result;
        await appendAuditEntry(tx, this.actor, action, audit);
        await this.bumpCatalogVersion(tx);
        return result;
      })
      .catch((err: unknown) => {
        throw translatePrismaError(err);
      });
  }
}
