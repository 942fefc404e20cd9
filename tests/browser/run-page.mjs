// Open a railcast page in headless Chromium and print what it leaves in window.railcastResult.
// Usage: node run-page.mjs URL SCREENSHOT.png [timeout_ms]
// RTC_FLAGS=1 makes Chromium trickle plain loopback candidates instead of mDNS names (diagnosis only).
import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, screenshot, timeout = '120000'] = process.argv.slice(2);
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'railcast-chromium-')), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', ...(process.env.RTC_FLAGS ? ['--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'] : [])],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
  await page.goto(url);
  await page.waitForFunction(() => window.railcastResult !== undefined, null, { timeout: Number(timeout) });
  if (screenshot) await page.screenshot({ path: screenshot });
  process.stdout.write(JSON.stringify(await page.evaluate(() => window.railcastResult)) + '\n');
} finally {
  await browser.close();
}
