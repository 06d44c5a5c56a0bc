// Teams, gateway API keys and GraphQL access tokens (DESIGN §8, issue 3 §3 "Admin").
//
// Team, ApiKey and AccessToken are plugin-prisma objects: list and single queries are
// `t.prismaField`s and relations `t.relation`s (or fields with a nested `select`), so a query
// like `teams { apiKeys { team { … } } }` is planned into ONE Prisma call (which Prisma runs
// as one SQL statement per relation level), never one per row.
// Mutations go through the AdminStore, which owns validation and secret handling; their
// results are re-read with the selection plugin-prisma planned for the requested fields.
//
// Team-bound tokens see and act on their own team only: another team's object reads as
// not found (null, or absent from lists — applied as `where` conditions) and a mutation on
// it fails with NOT_FOUND. Access tokens are listed for ADMIN tokens only (a team-bound
// admin: its own team's tokens, which are the ones it may create and revoke). Secrets (API
// key and access token) appear only in the Created* payloads; the stored hashes are never
// selected (ApiKey and AccessToken are in `select` mode: only the columns of the requested
// fields are read) nor exposed.
import type { EnumRef, ObjectRef } from '@pothos/core';
import { queryFromInfo } from '@pothos/plugin-prisma';
import type { TeamRecord } from '../../store/admin/teams.js';
import { type Builder, invalidInput } from '../builder.js';
import type { GraphQLContext } from '../context.js';
import { assertCallerStillValid, assertNoWiderThanCaller } from './caller.js';
import { forbidden, notFound, store } from './errors.js';

// ---------------------------------------------------------------------------------------
// Team scoping (also used by pricing.ts and audit.ts)

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

/** The team a token is bound to, or null for an unbound (global) token. */
export function boundTeam(ctx: GraphQLContext): string | null {
  return ctx.principal?.teamId ?? null;
}

/** May this token see/act on `teamId`? Unbound tokens: any team. */
export function canSeeTeam(ctx: GraphQLContext, teamId: string | null): boolean {
  const bound = boundTeam(ctx);
  return bound === null || bound === teamId;
}

type BuilderTypes = Builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;

/** The AccessRole enum is defined by viewer.ts; referenced here by name. */
const AccessRole = 'AccessRole' as unknown as EnumRef<BuilderTypes, 'ADMIN' | 'ANALYST', 'ADMIN' | 'ANALYST'>;

/**
 * The `Team` type (a prismaObject registered by registerTeams) for other schema files, by
 * name. Prefer a relation (or a `select` with `nestedSelection`, as Budget.team does) from a
 * Prisma-backed parent; a non-Prisma parent may resolve it to a plain TeamRecord (see
 * `loadTeam`), whose `apiKeys` plugin-prisma then loads with its batched fallback query.
 */
export const TeamRef = 'Team' as unknown as ObjectRef<BuilderTypes, TeamRecord>;

// ---------------------------------------------------------------------------------------
// Teams by id for types that are not Prisma-backed (analytics group keys)

const TEAM_COLUMNS = { id: true, name: true, createdAt: true } as const;

/** The teams with these ids, in ONE query (missing ids are simply absent). */
async function loadTeamsByIds(ctx: GraphQLContext, ids: readonly string[]): Promise<Map<string, TeamRecord>> {
  const wanted = [...new Set(ids)].filter(isUuid);
  if (wanted.length === 0) return new Map();
  const rows = await ctx.prisma.team.findMany({ where: { id: { in: wanted } }, select: TEAM_COLUMNS });
  return new Map(rows.map((r) => [r.id, r]));
}

interface TeamBatch {
  pending: Map<string, Array<{ resolve: (t: TeamRecord | null) => void; reject: (e: unknown) => void }>>;
  cache: Map<string, Promise<TeamRecord | null>>;
}
const teamBatches = new WeakMap<object, TeamBatch>();

/**
 * The team with this id, or null. Every call made for the same request in the same tick
 * (every row of a list) is answered by one `loadTeamsByIds` query; results are cached for
 * the request. For Prisma-backed parents use `t.relation('team')` instead.
 */
export function loadTeam(ctx: GraphQLContext, id: string): Promise<TeamRecord | null> {
  let batch = teamBatches.get(ctx);
  if (!batch) teamBatches.set(ctx, (batch = { pending: new Map(), cache: new Map() }));
  const b = batch;
  const cached = b.cache.get(id);
  if (cached) return cached;
  const promise = new Promise<TeamRecord | null>((resolve, reject) => {
    if (b.pending.size === 0) {
      // Like DataLoader: after the current promise jobs, so siblings land in one batch.
      void Promise.resolve().then(() =>
        process.nextTick(() => {
          const waiting = b.pending;
          b.pending = new Map();
          loadTeamsByIds(ctx, [...waiting.keys()]).then(
            (teams) => {
              for (const [key, ws] of waiting) for (const w of ws) w.resolve(teams.get(key) ?? null);
            },
            (err: unknown) => {
              for (const ws of waiting.values()) for (const w of ws) w.reject(err);
            },
          );
        }),
      );
    }
    const list = b.pending.get(id);
    if (list) list.push({ resolve, reject });
    else b.pending.set(id, [{ resolve, reject }]);
  });
  b.cache.set(id, promise);
  return promise;
}

/** `where` on Team for the teams this token may see. */
function teamWhere(ctx: GraphQLContext): { id?: string } {
  const bound = boundTeam(ctx);
  return bound === null ? {} : { id: bound };
}

/** `where` on rows with a `teamId` for the rows this token may see. */
export function teamScopedWhere(ctx: GraphQLContext): { teamId?: string } {
  const bound = boundTeam(ctx);
  return bound === null ? {} : { teamId: bound };
}

const API_KEY_ORDER = [{ createdAt: 'asc' as const }, { id: 'asc' as const }];

// ---------------------------------------------------------------------------------------

export function registerTeams(builder: Builder) {
  const Team = builder.prismaObject('Team', {
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      apiKeys: t.relation('apiKeys', {
        description: 'The API keys of this team, revoked ones included.',
        // Teams are filtered already; the condition keeps a bound token inside its team
        // should a Team ever be reached some other way.
        query: (_args, ctx) => ({ where: teamScopedWhere(ctx), orderBy: API_KEY_ORDER }),
      }),
    }),
  });

  // `select` mode: only the columns of the requested fields are read, so the secret hash
  // never leaves the database. Never expose the secret, never its hash.
  const ApiKey = builder.prismaObject('ApiKey', {
    select: { id: true },
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      teamId: t.exposeID('teamId'),
      // A key is visible only when its team is, so its team is visible too.
      team: t.relation('team'),
      displayPrefix: t.exposeString('displayPrefix'),
      rpmLimit: t.exposeInt('rpmLimit', { nullable: true }),
      tpmLimit: t.exposeInt('tpmLimit', { nullable: true }),
      allowedRoutes: t.exposeStringList('allowedRoutes', { description: 'Route names this key may use; empty = all.' }),
      allowedCidrs: t.exposeStringList('allowedCidrs', {
        description: 'Client address ranges this key may be used from (normalized CIDRs); empty = anywhere.',
      }),
      expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
      revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true, description: 'Last use, to the minute (null: never).' }),
    }),
  });

  const AccessToken = builder.prismaObject('AccessToken', {
    select: { id: true },
    // Never the secret, never its hash.
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      role: t.expose('role', { type: AccessRole }),
      teamId: t.exposeID('teamId', { nullable: true }),
      team: t.field({
        type: Team,
        nullable: true,
        // Planned by plugin-prisma like a relation; a team the token may not see reads as null.
        select: (_args, _ctx, nestedSelection) => ({ team: nestedSelection(true) }),
        resolve: (tok, _args, ctx) => (tok.team && canSeeTeam(ctx, tok.team.id) ? tok.team : null),
      }),
      allowedCidrs: t.exposeStringList('allowedCidrs', {
        description: 'Client address ranges this token may be used from (normalized CIDRs); empty = anywhere.',
      }),
      expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true, description: 'After this the token is refused like an unknown one.' }),
      revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
    }),
  });

  // The payloads wrap a Prisma object: the row is re-read with the selection planned for
  // the `apiKey` / `token` sub-selection, and the one-time secret is carried alongside.
  const CreatedApiKey = builder.objectRef<{ apiKey: typeof ApiKey.$inferType; secret: string }>('CreatedApiKey');
  CreatedApiKey.implement({
    description: 'A new API key. `secret` is shown here only, never again.',
    fields: (t) => ({
      apiKey: t.field({ type: ApiKey, resolve: (c) => c.apiKey }),
      secret: t.exposeString('secret'),
    }),
  });

  const CreatedAccessToken = builder.objectRef<{ token: typeof AccessToken.$inferType; secret: string }>('CreatedAccessToken');
  CreatedAccessToken.implement({
    description: 'A new access token. `secret` is shown here only, never again.',
    fields: (t) => ({
      token: t.field({ type: AccessToken, resolve: (c) => c.token }),
      secret: t.exposeString('secret'),
    }),
  });

  const CreateTeamInput = builder.inputType('CreateTeamInput', {
    fields: (t) => ({ name: t.string({ required: true }) }),
  });

  const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
    fields: (t) => ({
      teamId: t.id({ required: true }),
      name: t.string({ required: true }),
      rpmLimit: t.int(),
      tpmLimit: t.int(),
      expiresAt: t.field({ type: 'DateTime' }),
      allowedRoutes: t.stringList(),
      allowedCidrs: t.stringList({ description: 'IPv4/IPv6 CIDRs (or single addresses) the key may be used from; absent or empty = anywhere.' }),
    }),
  });

  const CreateAccessTokenInput = builder.inputType('CreateAccessTokenInput', {
    fields: (t) => ({
      name: t.string({ required: true }),
      role: t.field({ type: AccessRole, required: true }),
      teamId: t.id({ description: 'Bind the token to this team (required for a team-bound caller: its own team).' }),
      expiresAt: t.field({ type: 'DateTime', description: 'After this the token is refused like an unknown one; absent = never.' }),
      allowedCidrs: t.stringList({ description: 'IPv4/IPv6 CIDRs (or single addresses) the token may be used from; absent or empty = anywhere.' }),
    }),
  });

  // --- queries ------------------------------------------------------------------------

  builder.queryFields((t) => ({
    teams: t.prismaField({
      type: [Team],
      authScopes: { authenticated: true },
      description: 'Every team the token may see (a team-bound token: its own).',
      resolve: (query, _root, _args, ctx) => ctx.prisma.team.findMany({ ...query, where: teamWhere(ctx), orderBy: { name: 'asc' } }),
    }),
    team: t.prismaField({
      type: Team,
      nullable: true,
      authScopes: { authenticated: true },
      description: "Null when missing or another team's (for a team-bound token).",
      args: { id: t.arg.id({ required: true }) },
      resolve: (query, _root, args, ctx) => {
        const id = String(args.id);
        if (!isUuid(id) || !canSeeTeam(ctx, id)) return null;
        return ctx.prisma.team.findUnique({ ...query, where: { id } });
      },
    }),
    apiKeys: t.prismaField({
      type: [ApiKey],
      authScopes: { authenticated: true },
      description: 'API keys (revoked ones included) of one team, or of every team the token may see.',
      args: { teamId: t.arg.id() },
      resolve: (query, _root, args, ctx) => {
        const teamId = args.teamId == null ? null : String(args.teamId);
        if (teamId !== null && !isUuid(teamId)) throw invalidInput('teamId: must be a UUID', 'teamId');
        if (teamId !== null && !canSeeTeam(ctx, teamId)) return [];
        return ctx.prisma.apiKey.findMany({
          ...query,
          where: teamId !== null ? { teamId } : teamScopedWhere(ctx),
          orderBy: API_KEY_ORDER,
        });
      },
    }),
    accessTokens: t.prismaField({
      type: [AccessToken],
      authScopes: { admin: true },
      description: "Access tokens, revoked and expired ones included, never their secrets (a team-bound admin: its own team's).",
      resolve: (query, _root, _args, ctx) => ctx.prisma.accessToken.findMany({ ...query, where: teamScopedWhere(ctx), orderBy: API_KEY_ORDER }),
    }),
  }));

  // --- mutations ----------------------------------------------------------------------

  builder.mutationFields((t) => ({
    createTeam: t.prismaField({
      type: Team,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: CreateTeamInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        const team = await store(() => ctx.admin.teams.createTeam(input.name), 'input.name');
        return ctx.prisma.team.findUniqueOrThrow({ ...query, where: { id: team.id } });
      },
    }),

    createApiKey: t.field({
      type: CreatedApiKey,
      authScopes: { admin: true },
      args: { input: t.arg({ type: CreateApiKeyInput, required: true }) },
      resolve: async (_root, { input }, ctx, info) => {
        const teamId = String(input.teamId);
        if (!canSeeTeam(ctx, teamId)) throw notFound('team');
        await assertCallerStillValid(ctx);
        const created = await store(() =>
          ctx.admin.teams.createApiKey({
            teamId,
            name: input.name,
            rpmLimit: input.rpmLimit,
            tpmLimit: input.tpmLimit,
            expiresAt: input.expiresAt,
            allowedRoutes: input.allowedRoutes,
            allowedCidrs: input.allowedCidrs,
          }),
        );
        await ctx.configChanged();
        const apiKey = await ctx.prisma.apiKey.findUniqueOrThrow({
          ...queryFromInfo({ context: ctx, info, path: ['apiKey'], select: { id: true } }),
          where: { id: created.apiKey.id },
        });
        return { apiKey, secret: created.secret };
      },
    }),

    revokeApiKey: t.prismaField({
      type: ApiKey,
      authScopes: { admin: true },
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const id = String(args.id);
        const existing = await store(() => ctx.admin.teams.getApiKey(id));
        if (!existing || !canSeeTeam(ctx, existing.teamId)) throw notFound('API key');
        await store(() => ctx.admin.teams.revokeApiKey(id));
        await ctx.configChanged();
        return ctx.prisma.apiKey.findUniqueOrThrow({ ...query, where: { id } });
      },
    }),

    createAccessToken: t.field({
      type: CreatedAccessToken,
      // Any ADMIN; a team-bound one only for its own team (checked below).
      authScopes: { admin: true },
      args: { input: t.arg({ type: CreateAccessTokenInput, required: true }) },
      resolve: async (_root, { input }, ctx, info) => {
        const teamId = input.teamId == null ? null : String(input.teamId);
        const bound = boundTeam(ctx);
        if (bound !== null) {
          if (teamId === null) throw forbidden('A team-bound token may only create tokens bound to its own team (set teamId).');
          if (teamId !== bound) throw notFound('team');
        }
        await assertNoWiderThanCaller(ctx, input.expiresAt ?? null, input.allowedCidrs ?? null);
        const created = await store(() =>
          ctx.admin.teams.createAccessToken({ name: input.name, role: input.role, teamId, expiresAt: input.expiresAt, allowedCidrs: input.allowedCidrs }),
        );
        const token = await ctx.prisma.accessToken.findUniqueOrThrow({
          ...queryFromInfo({ context: ctx, info, path: ['token'], select: { id: true } }),
          where: { id: created.token.id },
        });
        return { token, secret: created.secret };
      },
    }),

    revokeAccessToken: t.prismaField({
      type: AccessToken,
      authScopes: { admin: true },
      description: 'Refused from then on (within the auth cache window on other instances; at once with Redis). Idempotent.',
      args: { id: t.arg.id({ required: true }) },
      resolve: async (query, _root, args, ctx) => {
        const id = String(args.id);
        const existing = isUuid(id) ? await ctx.prisma.accessToken.findUnique({ where: { id }, select: { teamId: true } }) : null;
        // A global token's teamId is null: only a global admin sees it.
        if (!existing || !canSeeTeam(ctx, existing.teamId)) throw notFound('access token');
        await store(() => ctx.admin.teams.revokeAccessToken(id));
        await ctx.configChanged();
        return ctx.prisma.accessToken.findUniqueOrThrow({ ...query, where: { id } });
      },
    }),
  }));
}
