// Open a railcast page in headless Chromium and print what it leaves in window.railcastResult.
// Usage: node run-page.mjs URL SCREENSHOT.png [timeout_ms] [PAGE.html]
// With PAGE.html, the browser gets that file as the document at URL (intercepted, never fetched):
// a test page runs at the server's origin without the server having a route for it.
// With SCRIPT.js instead, URL must be a real page of the server: the browser loads it and the script
// is added to it as a module (WebTransport refuses to open from an intercepted document).
// RTC_FLAGS=1 makes Chromium trickle plain loopback candidates instead of mDNS names (diagnosis only).
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, screenshot, timeout = '120000', pageFile] = process.argv.slice(2);
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'railcast-chromium-')), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', ...(process.env.RTC_FLAGS ? ['--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'] : [])],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  const script = pageFile?.endsWith('.js') ? readFileSync(pageFile, 'utf8') : null;
  if (pageFile && !script) {
    const body = readFileSync(pageFile, 'utf8');
    await page.route(url, (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body }));
  }
  await page.goto(url);
  if (script) await page.addScriptTag({ type: 'module', content: script });
  await page.waitForFunction(() => window.railcastResult !== undefined, null, { timeout: Number(timeout) });
  if (screenshot) await page.screenshot({ path: screenshot });
  process.stdout.write(JSON.stringify(await page.evaluate(() => window.railcastResult)) + '\n');
} finally {
  await browser.close();
}
