// Teams, their API keys, and access tokens (GraphQL: src/graphql/schema/teams.ts).
// Secrets are returned once, by the create calls, and stored only as SHA-256.
import { z } from 'zod';
import { displayPrefixOf, generateAccessTokenSecret, generateApiKeySecret, hashSecret } from '../credentials.js';
import { AccessRole, type Prisma, type PrismaClient } from '../prisma.js';
import { AdminStoreError, cidrs, date, label, type Mutations, parse, positiveInt, requireTeam, SHA256_HEX, slug, UUID, uuid } from './validators.js';

export interface TeamRecord {
  id: string;
  name: string;
  createdAt: Date;
}

export interface ApiKeyRecord {
  id: string;
  teamId: string;
  name: string;
  displayPrefix: string;
  rpmLimit: number | null;
  tpmLimit: number | null;
  /** Route names this key may use; empty = all. */
  allowedRoutes: string[];
  /** Client address ranges (normalized CIDRs) this key may be used from; empty = anywhere. */
  allowedCidrs: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export interface AccessTokenRecord {
  id: string;
  name: string;
  role: AccessRole;
  teamId: string | null;
  /** Client address ranges (normalized CIDRs) this token may be used from; empty = anywhere. */
  allowedCidrs: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
  createdAt: Date;
}

const createApiKeyInput = z.object({
  teamId: uuid,
  name: label,
  rpmLimit: positiveInt.nullish(),
  tpmLimit: positiveInt.nullish(),
  expiresAt: date.nullish(),
  allowedRoutes: z.array(slug).max(1000).nullish(),
  allowedCidrs: cidrs.nullish(),
});
export type CreateApiKeyInput = z.input<typeof createApiKeyInput>;

const createAccessTokenInput = z.object({
  name: label,
  role: z.enum(AccessRole),
  teamId: uuid.nullish(),
  expiresAt: date.nullish(),
  allowedCidrs: cidrs.nullish(),
});
export type CreateAccessTokenInput = z.input<typeof createAccessTokenInput>;

type ApiKeyRow = Prisma.ApiKeyGetPayload<object>;

export class TeamStore {
  private readonly prisma: PrismaClient;

  constructor(private readonly mutations: Mutations) {
    this.prisma = mutations.prisma;
  }

  // --- teams --------------------------------------------------------------------------

  async createTeam(name: string): Promise<TeamRecord> {
    const n = parse(label, name);
    return this.mutations.run('createTeam', async (tx, audit) => {
      const existing = await tx.team.findUnique({ where: { name: n } });
      if (existing) throw new AdminStoreError('CONFLICT', `team "${n}" already exists`);
      const team = toTeam(await tx.team.create({ data: { name: n } }));
      audit.change(`team:${team.id}`, team.id, null, team);
      return team;
    });
  }

  /** The team with this name, created if missing (safe against concurrent callers). */
  async ensureTeam(name: string): Promise<TeamRecord> {
    const n = parse(label, name);
    const found = await this.prisma.team.findUnique({ where: { name: n } });
    if (found) return toTeam(found);
    try {
      return await this.createTeam(n);
    } catch (err) {
      // Lost a race with another creator: theirs is as good as ours.
      if (err instanceof AdminStoreError && err.code === 'CONFLICT') {
        const again = await this.prisma.team.findUnique({ where: { name: n } });
        if (again) return toTeam(again);
      }
      throw err;
    }
  }

  async listTeams(): Promise<TeamRecord[]> {
    return (await this.prisma.team.findMany({ orderBy: { name: 'asc' } })).map(toTeam);
  }

  /** The id of the team with this name, or null (OIDC team claims name teams). */
  async teamIdByName(name: string): Promise<string | null> {
    const row = await this.prisma.team.findUnique({ where: { name }, select: { id: true } });
    return row?.id ?? null;
  }

  async getTeam(id: string): Promise<TeamRecord | null> {
    if (!UUID.test(id)) return null;
    const row = await this.prisma.team.findUnique({ where: { id } });
    return row ? toTeam(row) : null;
  }

  // --- API keys -----------------------------------------------------------------------

  /** Creates a key; `secret` is returned here only, the store keeps its hash. */
  async createApiKey(input: CreateApiKeyInput): Promise<{ apiKey: ApiKeyRecord; secret: string }> {
    const p = parse(createApiKeyInput, input);
    const secret = generateApiKeySecret();
    const apiKey = await this.mutations.run('createApiKey', async (tx, audit) => {
      await requireTeam(tx, p.teamId);
      const row = await tx.apiKey.create({
        data: {
          teamId: p.teamId,
          name: p.name,
          displayPrefix: displayPrefixOf(secret),
          secretHash: hashSecret(secret),
          rpmLimit: p.rpmLimit ?? null,
          tpmLimit: p.tpmLimit ?? null,
          expiresAt: p.expiresAt ?? null,
          allowedRoutes: [...new Set(p.allowedRoutes ?? [])],
          allowedCidrs: p.allowedCidrs ?? [],
        },
      });
      audit.change(`api_key:${row.id}`, row.teamId, null, toApiKey(row));
      return row;
    });
    return { apiKey: toApiKey(apiKey), secret };
  }

  /** Revokes a key (idempotent: a second revoke keeps the first time). */
  async revokeApiKey(id: string): Promise<ApiKeyRecord> {
    if (!UUID.test(id)) throw new AdminStoreError('NOT_FOUND', 'API key not found');
    return this.mutations.run('revokeApiKey', async (tx, audit) => {
      const row = await tx.apiKey.findUnique({ where: { id } });
      if (!row) throw new AdminStoreError('NOT_FOUND', 'API key not found');
      // Of two revokes at once, one sets the time: the condition is checked again under the
      // row's lock, so the other finds it set and keeps it (and records no change).
      const { count } = await tx.apiKey.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: new Date() } });
      const after = await tx.apiKey.findUniqueOrThrow({ where: { id } });
      audit.change(`api_key:${id}`, row.teamId, toApiKey(count > 0 ? row : after), toApiKey(after));
      return toApiKey(after);
    });
  }

  async listApiKeys(teamId?: string): Promise<ApiKeyRecord[]> {
    if (teamId !== undefined && !UUID.test(teamId)) return [];
    const rows = await this.prisma.apiKey.findMany({
      where: teamId === undefined ? {} : { teamId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    });
    return rows.map(toApiKey);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    if (!UUID.test(id)) return null;
    const row = await this.prisma.apiKey.findUnique({ where: { id } });
    return row ? toApiKey(row) : null;
  }

  /**
   * The key whose secret hashes to `hash`, revoked and expired ones included (the caller
   * decides, and answers all of them alike). Null for an unknown or malformed hash.
   */
  async findApiKeyBySecretHash(hash: string): Promise<ApiKeyRecord | null> {
    if (!SHA256_HEX.test(hash)) return null;
    const row = await this.prisma.apiKey.findUnique({ where: { secretHash: hash } });
    return row ? toApiKey(row) : null;
  }

  /** Records use (not a catalog change: no version bump). Best effort for the caller. */
  async touchApiKey(id: string, at: Date = new Date()): Promise<void> {
    if (!UUID.test(id)) return;
    await this.prisma.apiKey.updateMany({ where: { id }, data: { lastUsedAt: at } });
  }

  // --- access tokens ------------------------------------------------------------------

  async createAccessToken(input: CreateAccessTokenInput): Promise<{ token: AccessTokenRecord; secret: string }> {
    const p = parse(createAccessTokenInput, input);
    const secret = generateAccessTokenSecret();
    const token = await this.mutations.run('createAccessToken', async (tx, audit) => {
      if (p.teamId) await requireTeam(tx, p.teamId);
      const row = await tx.accessToken.create({
        data: {
          name: p.name,
          role: p.role,
          teamId: p.teamId ?? null,
          secretHash: hashSecret(secret),
          expiresAt: p.expiresAt ?? null,
          allowedCidrs: p.allowedCidrs ?? [],
        },
      });
      audit.change(`access_token:${row.id}`, row.teamId, null, toAccessToken(row));
      return row;
    });
    return { token: toAccessToken(token), secret };
  }

  async revokeAccessToken(id: string): Promise<AccessTokenRecord> {
    if (!UUID.test(id)) throw new AdminStoreError('NOT_FOUND', 'access token not found');
    return this.mutations.run('revokeAccessToken', async (tx, audit) => {
      const row = await tx.accessToken.findUnique({ where: { id } });
      if (!row) throw new AdminStoreError('NOT_FOUND', 'access token not found');
      const { count } = await tx.accessToken.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: new Date() } });
      const after = await tx.accessToken.findUniqueOrThrow({ where: { id } });
      audit.change(`access_token:${id}`, row.teamId, toAccessToken(count > 0 ? row : after), toAccessToken(after));
      return toAccessToken(after);
    });
  }

  async listAccessTokens(): Promise<AccessTokenRecord[]> {
    const rows = await this.prisma.accessToken.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return rows.map(toAccessToken);
  }

  /** Revoked and expired tokens included (the caller rejects them). Null for unknown or malformed. */
  async findAccessTokenBySecretHash(hash: string): Promise<AccessTokenRecord | null> {
    if (!SHA256_HEX.test(hash)) return null;
    const row = await this.prisma.accessToken.findUnique({ where: { secretHash: hash } });
    return row ? toAccessToken(row) : null;
  }
}

function toTeam(r: { id: string; name: string; createdAt: Date }): TeamRecord {
  return { id: r.id, name: r.name, createdAt: r.createdAt };
}

function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  return {
    id: r.id,
    teamId: r.teamId,
    name: r.name,
    displayPrefix: r.displayPrefix,
    rpmLimit: r.rpmLimit,
    tpmLimit: r.tpmLimit,
    allowedRoutes: r.allowedRoutes,
    allowedCidrs: r.allowedCidrs,
    expiresAt: r.expiresAt,
    revokedAt: r.revokedAt,
    createdAt: r.createdAt,
    lastUsedAt: r.lastUsedAt,
  };
}

function toAccessToken(r: Prisma.AccessTokenGetPayload<object>): AccessTokenRecord {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    teamId: r.teamId,
    allowedCidrs: r.allowedCidrs,
    expiresAt: r.expiresAt,
    revokedAt: r.revokedAt,
    createdAt: r.createdAt,
  };
}
