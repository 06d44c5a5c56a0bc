// Starts GraphiQL on the page Tollgate renders for /graphql (src/gateway/console.ts), with
// GraphiQL's bundle served by Tollgate itself. Runs before that bundle: Monaco's workers
// come from Tollgate too. The Authorization header is pre-filled only when the console
// opened this window (its opener is a console page of this origin with a signed-in token).
import { TOKEN_KEY } from './session.js';

declare global {
  interface Window {
    MonacoEnvironment?: { globalAPI: boolean; getWorkerUrl(moduleId: string, label: string): string };
    YogaGraphiQL?: { renderYogaGraphiQL(root: Element, options: Record<string, unknown>): void };
  }
}

window.MonacoEnvironment = {
  globalAPI: false,
  getWorkerUrl: (_moduleId, label) => `/console/graphiql/worker-${encodeURIComponent(label)}.js`,
};

function tokenFromConsole(): string | null {
  try {
    const opener = window.opener as Window | null;
    if (!opener || opener.location.origin !== location.origin || !opener.location.pathname.startsWith('/console')) return null;
    return opener.sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // another origin's window: not ours to read
  }
}

window.addEventListener('DOMContentLoaded', () => {
  const options = JSON.parse(document.getElementById('graphiql-options')?.textContent ?? '{}') as Record<string, unknown>;
  const token = tokenFromConsole();
  // The token is kept in this page's memory only: not in GraphiQL's saved tabs (localStorage,
  // which outlives the tab and sign-out), nor in the copy of the console's sessionStorage a
  // window opened by it is given. Tabs an earlier version saved with a token are dropped.
  options.shouldPersistHeaders = false;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const key of ['graphiql:tabState', 'graphiql:headers']) if (localStorage.getItem(key)?.includes('Bearer ')) localStorage.removeItem(key);
  if (token) {
    options.headers = JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2);
    options.defaultEditorToolsVisibility = 'headers';
  }
  window.YogaGraphiQL?.renderYogaGraphiQL(document.getElementById('root')!, options);
});
