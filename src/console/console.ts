// The console's shell: sign-in, navigation between the views (#/live, #/analytics,
// #/receipts[/id]), and the end of a session when Tollgate refuses the token.
import 'uplot/dist/uPlot.min.css';
import './console.css';
import { analyticsView } from './analytics.js';
import { AuthError, fetchViewer, graphql, type Viewer } from './api.js';
import type { Ctx, View } from './context.js';
import { byId, fill, h } from './dom.js';
import { liveView } from './live.js';
import { receiptsView } from './receipts.js';
import { forgetToken, storedToken, storeToken } from './session.js';

const MESSAGES = {
  rejected:
    'That token was not accepted. Use the admin token (printed at first start, kept in <data dir>/admin-token) or an access token made with createAccessToken.',
  ended: 'Your session ended: Tollgate no longer accepts this token (it was revoked, expired or replaced). Sign in again.',
};

const TEAMS_QUERY = 'query ConsoleTeams { teams { id name } }';
const TEAMS_RELOAD_MS = 5000;

let current: { ctx: Ctx; view: View | null } | null = null;

function showSignIn(message = '', tone: 'error' | 'info' = 'error'): void {
  const tokenInput = h('input', { id: 'signin-token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'tga-…' });
  const messageBox = h('div', { id: 'signin-message', class: message ? tone : '', role: 'alert' }, message);
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      id: 'signin-form',
      onsubmit: (e: Event) => {
        e.preventDefault();
        const token = tokenInput.value.trim();
        if (!token) return;
        button.disabled = true;
        messageBox.className = 'info';
        messageBox.textContent = 'Checking the token…';
        enter(token).catch((err: unknown) => {
          button.disabled = false;
          messageBox.className = 'error';
          messageBox.textContent = err instanceof AuthError ? MESSAGES.rejected : (err as Error).message;
          tokenInput.select();
        });
      },
    },
    h('h1', {}, 'Tollgate'),
    h('p', {}, 'Sign in with the admin token or an access token (role ADMIN or ANALYST; a team-bound token sees its own team).'),
    messageBox,
    h('label', { for: 'signin-token' }, 'Token'),
    tokenInput,
    button,
    h('p', { class: 'note' }, 'The token stays in this browser tab (sessionStorage) and is sent only in the Authorization header.'),
  );
  fill(byId('app'), h('main', { class: 'signin' }, form));
  tokenInput.focus();
}

/** Checks the token (viewer), then opens the console. Throws AuthError for a refused token. */
async function enter(token: string): Promise<void> {
  const viewer = await fetchViewer(token);
  const { teams } = await graphql<{ teams: Array<{ id: string; name: string }> }>(token, TEAMS_QUERY);
  storeToken(token);
  let teamsLoadedAt = 0;
  const ctx: Ctx = {
    token,
    viewer,
    teams: new Map(teams.map((t) => [t.id, t.name])),
    teamName(id) {
      if (!id) return '—';
      const name = ctx.teams.get(id);
      if (name) return name;
      if (Date.now() - teamsLoadedAt > TEAMS_RELOAD_MS) {
        teamsLoadedAt = Date.now();
        void ctx.query<{ teams: Array<{ id: string; name: string }> }>(TEAMS_QUERY).then(
          (d) => {
            for (const t of d.teams) ctx.teams.set(t.id, t.name);
          },
          () => undefined,
        );
      }
      return id.slice(0, 8);
    },
    query: async (query, variables) => {
      try {
        return await graphql(token, query, variables);
      } catch (err) {
        if (err instanceof AuthError) endSession(ctx);
        throw err;
      }
    },
    authRejected: () => endSession(ctx),
  };
  current = { ctx, view: null };
  renderShell(ctx);
  route();
}

/** Back to sign-in, once, whichever part of the console noticed first. */
function endSession(ctx: Ctx, message = MESSAGES.ended): void {
  if (current?.ctx !== ctx) return;
  current.view?.stop();
  current = null;
  forgetToken();
  showSignIn(message, message === MESSAGES.ended ? 'error' : 'info');
}

function describe(viewer: Viewer, ctx: Ctx): string {
  const who = viewer.kind === 'admin' ? 'admin token' : `${viewer.role.toLowerCase()} token`;
  return viewer.teamId ? `${who} · team ${ctx.teams.get(viewer.teamId) ?? viewer.teamId}` : `${who} · all teams`;
}

function renderShell(ctx: Ctx): void {
  const graphiql = h(
    'a',
    {
      id: 'open-graphiql',
      href: '/graphql',
      hidden: true,
      onclick: (e: Event) => {
        e.preventDefault();
        // A window with an opener: GraphiQL reads the token from this tab (graphiql-boot.ts).
        window.open('/graphql', 'tollgate-graphiql');
      },
    },
    'GraphiQL ↗',
  );
  fill(
    byId('app'),
    h(
      'header',
      { class: 'top' },
      h('span', { class: 'brand' }, 'Tollgate'),
      h(
        'nav',
        {},
        h('a', { href: '#/live', 'data-view': 'live' }, 'Live'),
        h('a', { href: '#/analytics', 'data-view': 'analytics' }, 'Analytics'),
        h('a', { href: '#/receipts', 'data-view': 'receipts' }, 'Receipts'),
        graphiql,
      ),
      h('span', { class: 'spacer' }),
      h('span', { id: 'viewer', class: 'note' }, describe(ctx.viewer, ctx)),
      h('button', { id: 'signout', type: 'button', onclick: () => endSession(ctx, 'Signed out.') }, 'Sign out'),
    ),
    h('main', { id: 'view' }),
  );
  // GraphiQL is there unless Tollgate runs in production.
  void fetch('/graphql', { headers: { accept: 'text/html' } })
    .then((res) => (graphiql.hidden = !(res.ok && (res.headers.get('content-type') ?? '').startsWith('text/html'))))
    .catch(() => undefined);
}

function route(): void {
  if (!current) return;
  const [page, id] = location.hash.replace(/^#\/?/, '').split('/');
  const name = page === 'analytics' || page === 'receipts' ? page : 'live';
  current.view?.stop();
  const ctx = current.ctx;
  const view = name === 'analytics' ? analyticsView(ctx) : name === 'receipts' ? receiptsView(ctx, id || null) : liveView(ctx);
  current.view = view;
  fill(byId('view'), view.el);
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav a[data-view]')) a.classList.toggle('active', a.dataset.view === name);
}

window.addEventListener('hashchange', route);

const saved = storedToken();
if (saved) {
  enter(saved).catch((err: unknown) => {
    if (err instanceof AuthError) forgetToken();
    showSignIn(err instanceof AuthError ? MESSAGES.ended : (err as Error).message);
  });
} else {
  showSignIn();
}
