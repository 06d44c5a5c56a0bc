// Providers (GraphQL: src/graphql/schema/providers.ts). Provider API keys are sealed with the
// SecretBox and only loadProvidersWithSecrets() (the gateway) sees them in clear. Upserts: the
// same provider name replaces the old one.

import { z } from 'zod';
import { providerBaseUrlProblem } from '../../net/egress.js';
import { PRESETS } from '../../providers/presets.js';
import { Prisma, type PrismaClient, ProviderKind } from '../prisma.js';
import type { SecretBox } from '../secret-box.js';
import { AdminStoreError, asStringMap, HEADER_NAME, httpUrl, type Mutations, parse, positiveInt, slug, stringMap } from './validators.js';

/** Headers about the connection and the body's framing: set by the HTTP client, and an extra one fails every call. */
const TRANSPORT_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'content-length',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

/** A provider as any admin may see it: the API key is write-only. */
export interface ProviderInfo {
  id: string;
  name: string;
  kind: ProviderKind;
  baseUrl: string | null;
  hasApiKey: boolean;
  timeoutMs: number | null;
  extraHeaders: Record<string, string>;
  modelMap: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

/** A provider with its decrypted API key: for the gateway only. */
export interface ProviderRecord {
  id: string;
  name: string;
  kind: ProviderKind;
  baseUrl: string | null;
  apiKey: string | null;
  timeoutMs: number | null;
  extraHeaders: Record<string, string>;
  modelMap: Record<string, string>;
}

const upsertProviderInput = z.object({
  name: slug,
  kind: z.enum(ProviderKind),
  // Cloud metadata endpoints are never a provider (src/net/egress.ts checks again when connecting).
  baseUrl: httpUrl
    .superRefine((url, ctx) => {
      const problem = providerBaseUrlProblem(url);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .nullish(),
  apiKey: z.string().trim().min(1).max(8192).nullish(),
  timeoutMs: positiveInt.nullish(),
  extraHeaders: stringMap(HEADER_NAME)
    .refine((headers) => !Object.keys(headers).some((name) => TRANSPORT_HEADERS.has(name.toLowerCase())), {
      message: 'may not set a header of the connection itself (host, connection, content-length, transfer-encoding, …): Tollgate sets those',
    })
    .nullish(),
  modelMap: stringMap().nullish(),
});
/**
 * Optional fields: `undefined` keeps the stored value (nothing on create), `null` clears it.
 * This matters most for `apiKey`, which can never be read back.
 */
export type UpsertProviderInput = z.input<typeof upsertProviderInput>;

type ProviderRow = Prisma.ProviderGetPayload<object>;

export class ProviderStore {
  private readonly prisma: PrismaClient;

  constructor(
    private readonly mutations: Mutations,
    private readonly secretBox: SecretBox,
  ) {
    this.prisma = mutations.prisma;
  }

  // --- providers ----------------------------------------------------------------------

  /**
   * `fromConfigFile`: the operator's own file at start, trusted to move a provider that keeps
   * its stored key (its keys come from the same place); everyone else sends the key again.
   */
  async upsertProvider(input: UpsertProviderInput, opts: { fromConfigFile?: boolean } = {}): Promise<ProviderInfo> {
    const p = parse(upsertProviderInput, input);
    // Sealed outside the transaction (pure CPU), bound to the provider's name.
    const sealed = p.apiKey === undefined ? undefined : p.apiKey === null ? null : this.secretBox.seal(p.apiKey, providerAad(p.name));
    const json = (v: Record<string, string> | null | undefined) => (v === undefined ? undefined : v === null ? Prisma.DbNull : v);
    const data = {
      kind: p.kind,
      baseUrl: p.baseUrl,
      apiKeyCiphertext: sealed,
      timeoutMs: p.timeoutMs,
      extraHeaders: json(p.extraHeaders),
      modelMap: json(p.modelMap),
    };
    const row = await this.mutations.run('upsertProvider', async (tx, audit) => {
      const before = await tx.provider.findUnique({ where: { name: p.name } });
      // The stored key goes wherever the provider points: moving it elsewhere (another URL or
      // kind) takes the key again, or its removal, so that nobody can send it to a server of
      // their own and read it there (provider keys are write-only).
      const moved = before && ((p.baseUrl !== undefined && p.baseUrl !== before.baseUrl) || p.kind !== before.kind);
      if (moved && before.apiKeyCiphertext !== null && p.apiKey === undefined && !opts.fromConfigFile) {
        throw new AdminStoreError('INVALID_INPUT', `apiKey: required when baseUrl or kind changes (send the key again, or null to remove it)`);
      }
      // A kind with no URL of its own cannot be called without one: the catalog would leave the
      // provider out, and the rules and variants naming it with no target at all.
      if (!PRESETS[p.kind].baseUrl && !(p.baseUrl !== undefined ? p.baseUrl : before?.baseUrl)) {
        throw new AdminStoreError('INVALID_INPUT', `baseUrl: required for a provider of kind ${p.kind}`);
      }
      const after = await tx.provider.upsert({
        where: { name: p.name },
        create: {
          name: p.name,
          kind: p.kind,
          baseUrl: p.baseUrl ?? null,
          apiKeyCiphertext: sealed ?? null,
          timeoutMs: p.timeoutMs ?? null,
          extraHeaders: json(p.extraHeaders) ?? Prisma.DbNull,
          modelMap: json(p.modelMap) ?? Prisma.DbNull,
        },
        // `undefined` fields are left out of the UPDATE: the stored value stays.
        update: data,
      });
      audit.change(`provider:${p.name}`, null, before && providerAudit(before), { ...providerAudit(after), apiKeyChanged: p.apiKey !== undefined });
      return after;
    });
    return toProviderInfo(row);
  }

  /** Providers without their secrets (`hasApiKey` tells whether one is stored). */
  async listProviders(): Promise<ProviderInfo[]> {
    return (await this.prisma.provider.findMany({ orderBy: { name: 'asc' } })).map(toProviderInfo);
  }

  /** For the gateway only: providers with their API keys decrypted. */
  async loadProvidersWithSecrets(): Promise<ProviderRecord[]> {
    const rows = await this.prisma.provider.findMany({ orderBy: { name: 'asc' } });
    return rows.map((r) => {
      let apiKey: string | null = null;
      if (r.apiKeyCiphertext !== null) {
        try {
          apiKey = this.secretBox.open(r.apiKeyCiphertext, providerAad(r.name));
        } catch (err) {
          throw new AdminStoreError(
            'SECRET_UNREADABLE',
            `cannot decrypt the API key of provider "${r.name}": the secret key (TOLLGATE_SECRET_KEY or ` +
              'secret.key in the data dir) is not the one it was stored with, or the value was altered',
            { cause: err },
          );
        }
      }
      const info = toProviderInfo(r);
      return {
        id: info.id,
        name: info.name,
        kind: info.kind,
        baseUrl: info.baseUrl,
        apiKey,
        timeoutMs: info.timeoutMs,
        extraHeaders: info.extraHeaders,
        modelMap: info.modelMap,
      };
    });
  }
}

function providerAad(name: string): string {
  return `tollgate/provider/${name}/apiKey`;
}

function toProviderInfo(r: ProviderRow): ProviderInfo {
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    baseUrl: r.baseUrl,
    hasApiKey: r.apiKeyCiphertext !== null,
    timeoutMs: r.timeoutMs,
    extraHeaders: asStringMap(r.extraHeaders),
    modelMap: asStringMap(r.modelMap),
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
  };
}

/**
 * A provider as the audit log records it: never its API key (only whether it has one), extra
 * header names without their values (they may be credentials); credentials inside the base
 * URL are masked when the entry is written.
 */
function providerAudit(r: ProviderRow) {
  const { id, createdAt, updatedAt, extraHeaders, ...info } = toProviderInfo(r);
  return { ...info, extraHeaders: Object.keys(extraHeaders) };
}
