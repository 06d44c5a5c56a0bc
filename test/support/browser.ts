// Debian's Chromium driven by playwright-core, for the console's browser tests. Every context
// blocks and records any request that would leave the machine: the console must work with
// nothing but the Tollgate it was served from.
import { existsSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  // Loudly, never a skip: the browser tests are part of the suite (.ci/run installs it).
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: install it with \`apt-get install -y chromium\`.`);
  // headless: Playwright adds --headless and a fresh, temporary user-data-dir.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

const LOCAL_SCHEMES = new Set(['data:', 'blob:', 'about:']);
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export function isLocal(url: string): boolean {
  try {
    const u = new URL(url);
    return LOCAL_SCHEMES.has(u.protocol) || LOOPBACK.has(u.hostname);
  } catch {
    return false;
  }
}

export interface OfflineContext {
  context: BrowserContext;
  /** Every non-loopback URL the pages tried to reach (all of them blocked). */
  attempted: string[];
  newPage(): Promise<Page>;
}

/** A browser context where only loopback is reachable, and every other attempt is recorded. */
export async function offlineContext(browser: Browser): Promise<OfflineContext> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const attempted: string[] = [];
  await context.route(
    (url) => !isLocal(url.href),
    (route) => {
      attempted.push(route.request().url());
      return route.abort('blockedbyclient');
    },
  );
  await context.routeWebSocket(
    (url) => !isLocal(url.href),
    (ws) => {
      attempted.push(ws.url());
      return ws.close();
    },
  );
  context.on('request', (req) => {
    if (!isLocal(req.url()) && !attempted.includes(req.url())) attempted.push(req.url());
  });
  return {
    context,
    attempted,
    async newPage() {
      const page = await context.newPage();
      page.on('websocket', (ws) => {
        if (!isLocal(ws.url())) attempted.push(ws.url());
      });
      return page;
    },
  };
}
