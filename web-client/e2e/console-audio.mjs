#!/usr/bin/env node
// The console's cab audio in Debian's Chromium (never a downloaded browser), on every packet
// transport: WebCodecs AudioDecoder decodes the train's Opus packets, then a click on the audio
// panel's button (a real user gesture) unmutes and the AudioContext plays them.
//
//   BASE_URL=http://localhost:8080 RAILCAST_TOKEN=… TRAIN=train-1 node e2e/console-audio.mjs
//
// The server must be running at BASE_URL with a simulator started with `--audio tone`. Env:
// TRANSPORTS (default websocket,webrtc,webtransport), MEASURE_MS (default 3000), ARTIFACTS_DIR,
// CHROMIUM (default /usr/bin/chromium), E2E_VERBOSE=1. Prints ONE JSON line: {"ok": true,
// "transports": {name: figures…}} or {"ok": false, "error": …} (exit status 1).
import { chromium } from 'playwright-core'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const base = (process.env.BASE_URL ?? 'http://localhost:8080').replace(/\/$/, '')
const token = process.env.RAILCAST_TOKEN || null
const train = process.env.TRAIN ?? 'train-1'
const transports = (process.env.TRANSPORTS ?? 'websocket,webrtc,webtransport').split(',').filter(Boolean)
const measureMs = Number(process.env.MEASURE_MS ?? 3000)
const artifacts = resolve(process.env.ARTIFACTS_DIR ?? 'artifacts')
const log = (...a) => process.stderr.write(`[audio e2e ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const result = { ok: false, base_url: base, train, transports: {} }
let browser
let userDir

async function waitFor(page, what, timeoutMs, fn, arg) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await page.evaluate(fn, arg).catch(() => null)
    if (v) return v
    if (Date.now() > deadline) {
      const h = await page.evaluate(() => window.__railcast).catch(() => null)
      throw new Error(`${what}: not within ${timeoutMs / 1000} s (transport ${h?.transport}, audio ${JSON.stringify(h?.audio)})`)
    }
    await sleep(100)
  }
}

async function one(page, transport) {
  const frag = token ? `#token=${encodeURIComponent(token)}` : ''
  await page.goto(`${base}/?transport=${transport}&train=${encodeURIComponent(train)}${frag}`)
  await waitFor(page, 'the console', 15000, () => window.__railcast !== undefined)
  await waitFor(page, `${transport} active`, 30000, (t) => window.__railcast.transport === t && window.__railcast.audioSources.length > 0, transport)
  // Muted (the default): decoding runs all the same.
  await waitFor(page, 'AudioDecoder output while muted', 20000, () => window.__railcast.audio.decoded > 25)
  const muted = (await page.evaluate(() => window.__railcast.audio))
  if (!muted.muted) throw new Error('the console did not start muted')
  // A real click: the user gesture that lets the page start sound.
  await page.getByTestId('audio-mute').click()
  await waitFor(page, 'AudioContext running after the click', 10000, () => window.__railcast.audio.contextState === 'running')
  const before = await page.evaluate(() => window.__railcast.audio)
  const t0 = Date.now()
  await sleep(measureMs)
  const after = await page.evaluate(() => ({ ...window.__railcast.audio, sources: window.__railcast.audioSources, transport: window.__railcast.transport }))
  const secs = (Date.now() - t0) / 1000
  const figures = {
    transport: after.transport,
    sources: after.sources,
    packets_per_s: Math.round(((after.packets - before.packets) / secs) * 10) / 10,
    decoded_per_s: Math.round(((after.decoded - before.decoded) / secs) * 10) / 10,
    decoded: after.decoded,
    decode_errors: after.decodeErrors,
    scheduled: after.scheduled,
    underruns: after.underruns,
    overflows: after.overflows,
    buffered_ms: Math.round(after.bufferedMs),
    play_delay_p50_ms: after.playDelayP50 === null ? null : Math.round(after.playDelayP50),
    context_state: after.contextState,
    muted_before_click: muted.muted,
    last_error: after.lastError,
  }
  mkdirSync(artifacts, { recursive: true })
  await page.screenshot({ path: join(artifacts, `audio-${transport}.png`) })
  // Mute again, so the next transport starts as a fresh console would.
  await page.getByTestId('audio-mute').click()
  log(`${transport}: ${JSON.stringify(figures)}`)
  return figures
}

try {
  userDir = mkdtempSync(join(tmpdir(), 'railcast-audio-'))
  browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(String(e)))
  if (process.env.E2E_VERBOSE) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`))
  for (const t of transports) result.transports[t] = await one(page, t)
  if (pageErrors.length) result.page_errors = pageErrors
  result.ok = true
  process.stdout.write(JSON.stringify(result) + '\n')
} catch (e) {
  result.error = e?.stack ?? String(e)
  process.stdout.write(JSON.stringify(result) + '\n')
  process.stderr.write(`console audio e2e FAILED: ${result.error}\n`)
  process.exitCode = 1
} finally {
  await browser?.close().catch(() => {})
  if (userDir) rmSync(userDir, { recursive: true, force: true })
}
