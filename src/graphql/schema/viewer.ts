// `viewer`: who the token is and what it may see.
import type { Builder } from '../builder.js';

export function registerViewer(builder: Builder) {
  const Role = builder.enumType('AccessRole', { values: ['ADMIN', 'ANALYST'] as const });
  const Viewer = builder.objectRef<{ kind: string; role: 'ADMIN' | 'ANALYST'; teamId: string | null; tokenId: string | null }>('Viewer');
  Viewer.implement({
    fields: (t) => ({
      kind: t.exposeString('kind', { description: '`admin` (the admin token) or `access_token`' }),
      role: t.field({ type: Role, resolve: (v) => v.role }),
      teamId: t.exposeID('teamId', { nullable: true, description: 'Set when the token is bound to one team' }),
      tokenId: t.exposeID('tokenId', { nullable: true }),
    }),
  });
  builder.queryField('viewer', (t) =>
    t.field({
      type: Viewer,
      authScopes: { authenticated: true },
      resolve: (_root, _args, ctx) => ctx.principal!,
    }),
  );
}
