// Screenshots of the console for the README (docs/console-*.png), with `tollgate demo`
// traffic: `node --import tsx scripts/screenshot-console.ts [minutes of traffic, default 4]`.
// Needs Debian's Chromium (/usr/bin/chromium) and a build (`npm run build`).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, offlineContext } from '../test/support/browser.js';
import { runTollgate } from '../test/support/processes.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const minutes = Number(process.argv[2] ?? 4);
const token = 'tga-screenshot-token-0123456789abcdef0123456789';
const dataDir = await mkdtemp(path.join(os.tmpdir(), 'tollgate-screenshots-'));
const demo = runTollgate(['demo', '--rate', '6'], { TOLLGATE_DATA_DIR: dataDir, TOLLGATE_PORT: '0', TOLLGATE_ADMIN_TOKEN: token });
const browser = await launchChromium();
try {
  let url: string | undefined;
  for (let i = 0; i < 600 && !url; i++) {
    url = /Watch it in the console: (\S+)/.exec(demo.output())?.[1];
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!url) throw new Error(`the demo did not start:\n${demo.output()}`);
  process.stdout.write(`demo traffic for ${minutes} minutes at ${url}\n`);
  await new Promise((r) => setTimeout(r, minutes * 60_000));

  const { newPage, attempted } = await offlineContext(browser);
  const page = await newPage();
  await page.goto(url);
  await page.fill('#signin-token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#live-status[data-state="live"]');
  await page.waitForTimeout(12_000); // ten seconds of rates
  // A request that failed over, near the top, opened to show its candidates; its receipt is
  // shown below.
  const failover = page.locator('tr.decision:nth-child(-n+8)').filter({ hasText: '✗' }).first();
  await failover.waitFor({ timeout: 120_000 });
  const receiptId = await failover.getAttribute('data-receipt-id');
  await page.setViewportSize({ width: 1440, height: 1300 }); // a few requests below the numbers
  await failover.click();
  await page.mouse.move(1430, 1290); // no hover highlight in the pictures
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(root, 'docs/console-live.png') });
  await page.setViewportSize({ width: 1440, height: 900 });

  await page.click('nav a[data-view="analytics"]');
  await page.selectOption('#analytics-range-select', String(15 * 60_000));
  await page.waitForSelector('section.analytics[data-state="ready"]');
  await page.mouse.move(1430, 890);
  await page.waitForTimeout(500);
  await page.screenshot({ path: path.join(root, 'docs/console-analytics.png'), fullPage: true });

  await page.goto(`${url}#/receipts/${receiptId}`);
  await page.waitForSelector('#receipt-verification[data-status="valid"]');
  await page.mouse.move(1430, 890);
  await page.screenshot({ path: path.join(root, 'docs/console-receipt.png') });
  if (attempted.length) throw new Error(`the console tried to reach: ${attempted.join(', ')}`);
  process.stdout.write('docs/console-live.png, docs/console-analytics.png, docs/console-receipt.png\n');
} finally {
  await browser.close();
  demo.child.kill('SIGINT');
  await demo.exited;
  await rm(dataDir, { recursive: true, force: true });
}
