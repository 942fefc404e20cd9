// Two browser peers signaling through the server's GET /rpc (JSON-RPC 2.0): two pages of one
// headless Chromium, each given rpc-peers.html as its document at the server's origin
// (intercepted, never fetched). Page A (TOKEN_A: an operator or admin) offers; page B (TOKEN_B,
// a viewer, say) answers and, with PROBE=1, also tries to offer (a viewer may not). Prints one JSON
// line: {a, b, wall_ms}, each the page's window.railcastResult.
// Usage: node rpc-peers.mjs BASE_URL TOKEN_A TOKEN_B SCREENSHOT_DIR [timeout_ms]
// Chromium trickles plain host addresses here instead of mDNS names (both peers are the same
// browser on one machine, where .local names may not resolve): the test is about signaling. Local
// Network Access checks are off: an intercepted document has no address space of its own, and
// Chromium would block its WebSocket to the loopback server (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS;
// fetch from such a page, as webrtc-test.html does, is same-origin and passes).
import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [base, tokenA, tokenB, shots, timeout = '60000'] = process.argv.slice(2);
const body = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'rpc-peers.html'), 'utf8');
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'railcast-chromium-')), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection',
         '--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks'],
});
const t0 = Date.now();
try {
  const open = async (tag, query) => {
    const page = await browser.newPage();
    page.on('console', (m) => process.stderr.write(`[page ${tag}] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[page ${tag}] error: ${e.message}\n`));
    const url = `${base}/rpc-peers.html?${new URLSearchParams(query)}`;
    await page.route(`${base}/rpc-peers.html*`, (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body }));
    await page.goto(url);
    return page;
  };
  // B first or A first: either must find the other (announce's peer list, or peer_joined).
  const b = await open('b', { name: 'peer-b', other: 'peer-a', token: tokenB, probe: process.env.PROBE === '1' ? '1' : '0' });
  const a = await open('a', { name: 'peer-a', other: 'peer-b', token: tokenA, offer: '1' });
  const result = async (page, tag) => {
    await page.waitForFunction(() => window.railcastResult !== undefined, null, { timeout: Number(timeout) });
    if (shots) await page.screenshot({ path: join(shots, `rpc-peer-${tag}.png`) });
    return page.evaluate(() => window.railcastResult);
  };
  const [ra, rb] = await Promise.all([result(a, 'a'), result(b, 'b')]);
  process.stdout.write(JSON.stringify({ a: ra, b: rb, wall_ms: Date.now() - t0 }) + '\n');
} finally {
  await browser.close();
}
