// Writing the audit log of admin mutations (DESIGN §8 "Added for hardening"; read by
// audit-log.ts, GraphQL `auditLog` in src/graphql/schema/audit.ts). Mutations.run writes one
// entry per mutation in the transaction of the change itself, so an entry exists exactly
// when its change does.
//
// Append-only: this module only inserts (audit-log.ts only reads); nothing in Tollgate updates
// or deletes an entry, and the 'audit_and_network_policy' migration adds triggers that make
// the database refuse UPDATE, DELETE and TRUNCATE on the table as well.
//
// Secrets never: each domain describes its change with a snapshot that leaves secrets out (no
// key or token secret or hash, no provider API key, extra header names without values), and
// `auditJson` below drops such fields and masks credentials inside URLs once more.
import { redactDeep } from '../../redact.js';
import { Prisma } from '../prisma.js';

/** Who makes a change, as the audit log names them. */
export interface Actor {
  /** `admin` (the admin token), `token:<access token id>`, `oidc:<subject>`, or `system`. */
  id: string;
  /** The access token's name, or the OIDC e-mail/name, when there is one. */
  name: string | null;
}

/** Start-up configuration (presets, TOLLGATE_CONFIG), the CLI on the data dir, tests. */
export const SYSTEM_ACTOR: Actor = { id: 'system', name: null };

/** What a mutation tells the audit log about its change (filled inside its transaction). */
export class AuditNote {
  target: string | null = null;
  teamId: string | null = null;
  before: unknown = null;
  after: unknown = null;

  /** `target` like `api_key:<id>`; `teamId`: the team the change is about, if any. */
  change(target: string, teamId: string | null, before: unknown, after: unknown): void {
    this.target = target;
    this.teamId = teamId;
    this.before = before;
    this.after = after;
  }
}

/** Field names whose values are credentials: never written, at any depth. */
const SECRET_FIELDS = new Set(['secret', 'secretHash', 'apiKey', 'apiKeyCiphertext', 'password', 'token']);

/** A snapshot as stored JSON: Dates as ISO strings, secret fields dropped, URL credentials masked. */
function auditJson(value: unknown): Prisma.InputJsonValue | typeof Prisma.DbNull {
  if (value === null || value === undefined) return Prisma.DbNull;
  const plain = JSON.parse(JSON.stringify(value, (key, v: unknown) => (SECRET_FIELDS.has(key) ? undefined : v))) as unknown;
  return redactDeep(plain) as Prisma.InputJsonValue;
}

export async function appendAuditEntry(tx: Prisma.TransactionClient, actor: Actor, action: string, note: AuditNote): Promise<void> {
  await tx.auditEntry.create({
    data: {
      actor: actor.id,
      actorName: actor.name,
      action,
      target: note.target,
      teamId: note.teamId,
      before: auditJson(note.before),
      after: auditJson(note.after),
    },
  });
}
