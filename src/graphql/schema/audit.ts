// `auditLog` (DESIGN §8 "Added for hardening"): every admin mutation, newest first, with who
// made it, what and on what, and before/after snapshots without secrets. ADMIN tokens only:
// a global admin sees every entry, a team-bound admin only the entries about its team (a
// change to a provider, route or price is about no team, so only global admins see it).
// Written by the store in each mutation's transaction (src/store/admin/audit.ts); read-only here.
import type { ObjectRef } from '@pothos/core';
import type { AuditEntryRecord, AuditPage } from '../../store/admin/audit-log.js';
import type { Builder } from '../builder.js';
import { store } from './errors.js';
import { boundTeam } from './teams.js';

type BuilderTypes = Builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;

/** The PageInfo type registered by analytics.ts (receipts), by name. */
const PageInfoRef = 'PageInfo' as unknown as ObjectRef<BuilderTypes, { hasNextPage: boolean; endCursor: string | null }>;

export function registerAudit(builder: Builder) {
  const AuditEntry = builder.objectRef<AuditEntryRecord>('AuditEntry');
  AuditEntry.implement({
    description: 'One admin mutation. Secrets never appear in before/after.',
    fields: (t) => ({
      at: t.expose('at', { type: 'DateTime' }),
      actor: t.exposeString('actor', { description: '`admin`, `token:<access token id>`, `oidc:<subject>`, or `system` (start-up configuration, CLI).' }),
      actorName: t.exposeString('actorName', { nullable: true, description: "The access token's name, or the OIDC e-mail/name." }),
      action: t.exposeString('action', { description: 'The mutation, e.g. `createApiKey`, `upsertProvider`.' }),
      target: t.exposeString('target', { nullable: true, description: 'What it changed, e.g. `api_key:<id>`, `provider:<name>`.' }),
      teamId: t.exposeID('teamId', { nullable: true, description: 'The team the change is about, if any.' }),
      before: t.field({ type: 'JSON', nullable: true, resolve: (e) => e.before }),
      after: t.field({ type: 'JSON', nullable: true, resolve: (e) => e.after }),
    }),
  });

  const AuditEdge = builder.objectRef<AuditPage['entries'][number]>('AuditEdge');
  AuditEdge.implement({
    fields: (t) => ({ node: t.field({ type: AuditEntry, resolve: (e) => e.entry }), cursor: t.exposeString('cursor') }),
  });

  const AuditConnection = builder.objectRef<AuditPage>('AuditConnection');
  AuditConnection.implement({
    fields: (t) => ({
      edges: t.field({ type: [AuditEdge], resolve: (p) => p.entries }),
      pageInfo: t.field({ type: PageInfoRef, resolve: (p) => ({ hasNextPage: p.hasNextPage, endCursor: p.endCursor }) }),
      totalCount: t.int({ description: 'Entries matching the filter, on all pages.', resolve: (p) => store(() => p.totalCount()) }),
    }),
  });

  const AuditFilter = builder.inputType('AuditFilter', {
    fields: (t) => ({
      from: t.field({ type: 'DateTime', description: 'Inclusive.' }),
      to: t.field({ type: 'DateTime', description: 'Exclusive.' }),
      actors: t.stringList(),
      actions: t.stringList(),
    }),
  });

  builder.queryField('auditLog', (t) =>
    t.field({
      type: AuditConnection,
      authScopes: { admin: true },
      description: 'Admin mutations, newest first (a team-bound admin: those about its team). `first` ≤ 500, default 50.',
      args: { filter: t.arg({ type: AuditFilter }), first: t.arg.int(), after: t.arg.string() },
      resolve: (_root, { filter, first, after }, ctx) =>
        store(
          () =>
            ctx.admin.audit.list(
              { from: filter?.from, to: filter?.to, actors: filter?.actors, actions: filter?.actions, teamId: boundTeam(ctx) },
              first,
              after,
            ),
          '', // the store names `first`, `after` and `filter.…`: the field's own arguments
        ),
    }),
  );
}
