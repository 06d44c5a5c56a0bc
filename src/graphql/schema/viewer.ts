// `viewer`: who the token is and what it may see.
import type { Principal } from '../../gateway/tokens.js';
import type { Builder } from '../builder.js';

export function registerViewer(builder: Builder) {
  const Role = builder.enumType('AccessRole', { values: ['ADMIN', 'ANALYST'] as const });
  const Viewer = builder.objectRef<Principal>('Viewer');
  Viewer.implement({
    fields: (t) => ({
      kind: t.exposeString('kind', { description: '`admin` (the admin token), `access_token`, or `oidc` (a token from the identity provider)' }),
      role: t.field({ type: Role, resolve: (v) => v.role }),
      teamId: t.exposeID('teamId', { nullable: true, description: 'Set when the token is bound to one team' }),
      tokenId: t.exposeID('tokenId', { nullable: true }),
      actor: t.string({ description: 'Who the audit log names: `admin`, `token:<id>` or `oidc:<subject>`', resolve: (v) => v.actor.id }),
      actorName: t.string({ nullable: true, description: "The access token's name, or the OIDC e-mail/name", resolve: (v) => v.actor.name }),
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
