// Providers (DESIGN §8; routes are in routing.ts). Any token may read them; only a global
// admin may change them. Provider API keys are write-only: `hasApiKey` says whether one is stored, and no
// field ever returns it (nor extra headers, which may carry credentials).
//
// Provider is a plugin-prisma object in `select` mode: only the columns of the requested
// fields are read, and the ciphertext only to compute `hasApiKey`.
// Mutations go through the AdminStore and re-read the row with the planned selection.

import { redactUrl } from '../../redact.js';
import { ProviderKind } from '../../store/prisma.js';
import type { Builder } from '../builder.js';
import { store } from './errors.js';

export function registerProviders(builder: Builder) {
  const ProviderKindEnum = builder.enumType(ProviderKind, { name: 'ProviderKind' });

  const Provider = builder.prismaObject('Provider', {
    select: { id: true },
    fields: (t) => ({
      id: t.exposeID('id'),
      name: t.exposeString('name'),
      kind: t.expose('kind', { type: ProviderKindEnum }),
      baseUrl: t.string({
        nullable: true,
        description: 'Credentials inside the URL (user:password@, ?key=…) are masked.',
        select: { baseUrl: true },
        resolve: (p) => redactUrl(p.baseUrl),
      }),
      timeoutMs: t.exposeInt('timeoutMs', { nullable: true }),
      hasApiKey: t.boolean({
        description: 'Whether an upstream API key is stored (it is never returned).',
        // Read server-side only when this field is asked for; only the boolean leaves.
        select: { apiKeyCiphertext: true },
        resolve: (p) => p.apiKeyCiphertext !== null,
      }),
      createdAt: t.expose('createdAt', { type: 'DateTime' }),
      updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    }),
  });

  const ProviderInput = builder.inputType('ProviderInput', {
    fields: (t) => ({
      name: t.string({ required: true }),
      kind: t.field({ type: ProviderKindEnum, required: true }),
      baseUrl: t.string({ description: 'Omitted: keep the stored value; null: clear it.' }),
      apiKey: t.string({ description: 'Write-only. Omitted: keep the stored key; null: remove it.' }),
      timeoutMs: t.int({ description: 'Omitted: keep the stored value; null: clear it.' }),
    }),
  });

  builder.queryFields((t) => ({
    providers: t.prismaField({
      type: [Provider],
      authScopes: { authenticated: true },
      resolve: (query, _root, _args, ctx) => ctx.prisma.provider.findMany({ ...query, orderBy: { name: 'asc' } }),
    }),
  }));

  builder.mutationFields((t) => ({
    upsertProvider: t.prismaField({
      type: Provider,
      authScopes: { globalAdmin: true },
      args: { input: t.arg({ type: ProviderInput, required: true }) },
      resolve: async (query, _root, { input }, ctx) => {
        // Keys left out of the input stay out (keep the stored value); explicit nulls clear.
        const provider = await store(() =>
          ctx.admin.providers.upsertProvider({
            name: input.name,
            kind: input.kind,
            ...('baseUrl' in input ? { baseUrl: input.baseUrl } : {}),
            ...('apiKey' in input ? { apiKey: input.apiKey } : {}),
            ...('timeoutMs' in input ? { timeoutMs: input.timeoutMs } : {}),
          }),
        );
        await ctx.configChanged();
        return ctx.prisma.provider.findUniqueOrThrow({ ...query, where: { id: provider.id } });
      },
    }),
  }));
}
