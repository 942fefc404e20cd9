#!/usr/bin/env node
// End-to-end check of the console's video wall in Debian's Chromium (never a downloaded browser):
//
//   BASE_URL=http://127.0.0.1:8080 RAILCAST_TOKEN=ADMIN_TOKEN ARTIFACTS_DIR=artifacts node e2e/wall.mjs
//
// The server must serve the console at BASE_URL with a simulator attached (WALL_CELLS trains,
// default 4, 16:9 pictures: `train-sim --trains 4 --width 320 --height 180`). The driver opens
// `/?view=wall&cells=N&transport=T` (T: WALL_TRANSPORT, default websocket) as an admin and checks:
// - every cell paints its train's first camera: non-black pixels read back with getImageData;
// - a 16:9 camera keeps its shape: the canvas's displayed box is 16:9 within 2 % (ASPECT, default 16/9);
// - the trend plots update: each cell's samples (hook) and the plots' `data-points` grow over 3 s;
// - a click enlarges a cell, which offers "take control"; taking it makes this console the holder
//   (GET /api/trains/ID names our console id);
// - leaving the wall ends every cell's links and deletes its remote control (GET /api/remote-controls,
//   GET /api/sessions);
// - with WALL_SWITCH=1, back in the single view: a train over WebRTC (REST signaling must reach
//   "connected (stable)"), then WebSocket: the Connection panel must keep no WebRTC channel or ICE
//   state of the closed link, and the single view's trend plots show samples (JSON: `switch`).
// It prints ONE JSON line of results on stdout (`ok`, and on failure `error`), the reason again on
// stderr, and exits 1 on failure. Nothing of the page is mocked: the real server, simulator and browser.
import { chromium } from 'playwright-core'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const base = (process.env.BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
const artifacts = resolve(process.env.ARTIFACTS_DIR ?? 'artifacts')
const token = process.env.RAILCAST_TOKEN || null
const cells = Number(process.env.WALL_CELLS ?? 4)
const transport = process.env.WALL_TRANSPORT ?? 'websocket'
const aspect = Number(process.env.ASPECT ?? 16 / 9)
const verbose = !!process.env.E2E_VERBOSE

const log = (...a) => process.stderr.write(`[wall ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const result = { ok: false, scenario: 'wall', base_url: base, cells, transport }
const screenshots = []
let browser
let userDir

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg)
}

async function api(method, path) {
  const r = await fetch(base + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {} })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : null }
}

/** Poll `f` until it returns something truthy, or fail with `what` after `ms`. */
async function until(what, ms, f, every = 100) {
  const end = Date.now() + ms
  let last
  while (Date.now() < end) {
    last = await f()
    if (last) return last
    await sleep(every)
  }
  fail(`${what} (not within ${ms} ms)`)
}

async function shot(page, name) {
  const path = join(artifacts, `wall-${name}.png`)
  await page.screenshot({ path, fullPage: true })
  screenshots.push(path)
}

/** Luma statistics of one canvas (by index among the wall's canvases), read back with getImageData. */
function sampleCanvas(i) {
  const c = document.querySelectorAll('[data-testid="wall-canvas"]')[i]
  if (!c) return null
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data
  let nonBlack = 0
  let n = 0
  let sum = 0
  for (let y = 2; y < c.height; y += 4) {
    for (let x = 2; x < c.width; x += 4) {
      const k = (y * c.width + x) * 4
      const l = 0.299 * d[k] + 0.587 * d[k + 1] + 0.114 * d[k + 2]
      if (l > 16) nonBlack++
      sum += l
      n++
    }
  }
  const box = c.getBoundingClientRect()
  const cell = c.closest('[data-testid="wall-cell"]')
  return { train: cell?.getAttribute('data-train') ?? null, width: c.width, height: c.height, boxWidth: box.width, boxHeight: box.height, nonBlack: nonBlack / n, meanLuma: sum / n }
}

const plotPoints = () => [...document.querySelectorAll('[data-testid="wall-cell"]')].map((c) => Number(c.querySelector('[data-testid="trend-plot"]')?.getAttribute('data-points') ?? -1))

async function main() {
  mkdirSync(artifacts, { recursive: true })
  // The trains first: the wall shows what the list has.
  const trains = await until(`${cells} trains online`, 20_000, async () => {
    const r = await api('GET', '/api/trains')
    const on = Array.isArray(r.body) ? r.body.filter((t) => t.online) : []
    return on.length >= cells ? on.map((t) => t.id) : null
  }, 250)
  result.trains = trains.slice(0, cells)
  const rcsBefore = await api('GET', '/api/remote-controls')
  const wallRcs = (body) => (Array.isArray(body) ? body.filter((rc) => String(rc.name ?? '').startsWith('wall ')) : [])
  result.wall_remote_controls_before = wallRcs(rcsBefore.body).length

  userDir = mkdtempSync(join(tmpdir(), 'railcast-wall-'))
  browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(String(e)))
  if (verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`))

  const url = `${base}/?view=wall&cells=${cells}&transport=${transport}${token ? `#token=${encodeURIComponent(token)}` : ''}`
  const t0 = Date.now()
  await page.goto(url)
  log(`opened the wall (${cells} cells, ${transport})`)

  // Every cell paints.
  const painted = await until('every wall cell painted', 25_000, async () => {
    const h = await page.evaluate(() => window.__railcastWall ?? null)
    if (!h || h.cells.length < cells) return null
    return h.cells.every((c) => c.framesPainted > 0) ? h : null
  }, 200)
  result.all_painted_ms = Date.now() - t0
  result.first_paint_ms = Object.fromEntries(painted.cells.map((c) => [c.trainId, c.firstPaintMs]))
  result.cell_transports = Object.fromEntries(painted.cells.map((c) => [c.trainId, c.transport]))
  log(`all ${cells} cells painted after ${result.all_painted_ms} ms`)

  // Non-black pixels in every cell, and the 16:9 box. A frame or two more first, past a keyframe's grey.
  await sleep(1000)
  const samples = await until('every wall canvas shows non-black pixels', 5_000, async () => {
    const s = await Promise.all([...Array(cells).keys()].map((i) => page.evaluate(sampleCanvas, i)))
    return s.every((x) => x && x.nonBlack > 0.05) ? s : null
  }, 250)
  result.pixels = samples.map((s) => ({ train: s.train, non_black: Number(s.nonBlack.toFixed(3)), mean_luma: Number(s.meanLuma.toFixed(1)) }))
  result.boxes = samples.map((s) => ({ train: s.train, canvas: `${s.width}x${s.height}`, box: `${s.boxWidth.toFixed(1)}x${s.boxHeight.toFixed(1)}`, ratio: Number((s.boxWidth / s.boxHeight).toFixed(4)) }))
  for (const b of result.boxes) {
    const err = Math.abs(b.ratio / aspect - 1)
    if (err > 0.02) fail(`cell ${b.train}: displayed box ${b.box} is ${b.ratio}, not ${aspect.toFixed(4)} within 2 % (${(err * 100).toFixed(1)} %)`)
  }
  await shot(page, 'painted')

  // The trend plots grow.
  const before = await page.evaluate(() => window.__railcastWall.cells.map((c) => Object.values(c.trendPoints)[0] ?? 0))
  const plotsBefore = await page.evaluate(plotPoints)
  await sleep(3000)
  const after = await page.evaluate(() => window.__railcastWall.cells.map((c) => Object.values(c.trendPoints)[0] ?? 0))
  const plotsAfter = await page.evaluate(plotPoints)
  result.trend_points = { before, after, plots_before: plotsBefore, plots_after: plotsAfter }
  if (!after.every((n, i) => n > before[i])) fail(`trend samples did not grow in 3 s: ${before} → ${after}`)
  if (!plotsAfter.every((n, i) => n > plotsBefore[i])) fail(`trend plots did not redraw with more points in 3 s: ${plotsBefore} → ${plotsAfter}`)
  const latest = await page.evaluate(() => window.__railcastWall.cells)
  result.latency_p50_ms = Object.fromEntries(latest.map((c) => [c.trainId, c.latencyP50 === null ? null : Math.round(c.latencyP50)]))
  result.fps = Object.fromEntries(latest.map((c) => [c.trainId, Number(c.fps.toFixed(1))]))

  // A click enlarges a cell, which offers "take control".
  const first = latest[0].trainId
  await page.locator(`[data-testid="wall-cell"][data-train="${first}"] [data-testid="wall-enlarge"]`).click()
  const take = page.locator(`[data-testid="wall-cell"][data-train="${first}"] [data-testid="wall-take-control"]`)
  await take.waitFor({ timeout: 5000 })
  const takeAt = Date.now()
  await take.click()
  await until(`the enlarged cell holds control of ${first}`, 5000, () =>
    page.evaluate((t) => window.__railcastWall.cells.find((c) => c.trainId === t)?.control?.mine === true, first),
  )
  result.take_control_ms = Date.now() - takeAt
  const consoleId = await page.evaluate(() => window.__railcast.consoleId)
  const server = await api('GET', `/api/trains/${encodeURIComponent(first)}`)
  result.server_control = server.body?.control ? { name: server.body.control.name, console_id: server.body.control.console_id ?? null } : null
  if (server.body?.control?.console_id !== consoleId) fail(`GET /api/trains/${first} does not name this console as the holder: ${JSON.stringify(server.body?.control)}`)
  result.enlarged_trend_plots = await page.locator(`[data-testid="wall-cell"][data-train="${first}"] [data-testid="trend-plot"]`).count()
  await shot(page, 'enlarged')

  // Leaving the wall: every cell's links end and its remote control is deleted.
  const during = await api('GET', '/api/remote-controls')
  result.wall_remote_controls = wallRcs(during.body).length - result.wall_remote_controls_before
  if (result.wall_remote_controls !== cells) fail(`expected ${cells} remote controls of the wall, the server lists ${result.wall_remote_controls}`)
  const wallIds = new Set(wallRcs(during.body).map((rc) => rc.id))
  const wallSessions = async () => {
    const r = await api('GET', '/api/sessions')
    return Array.isArray(r.body) ? r.body.filter((x) => wallIds.has(x.remote_control_id)) : []
  }
  result.wall_sessions = (await wallSessions()).map((x) => x.transport)
  const leftAt = Date.now()
  await page.locator('[data-testid="view-single"]').click()
  await until('the wall\'s remote controls are deleted after leaving it', 5000, async () => {
    const r = await api('GET', '/api/remote-controls')
    return wallRcs(r.body).length === result.wall_remote_controls_before
  }, 100)
  result.goodbye_ms = Date.now() - leftAt
  await until("the wall's sessions are gone from GET /api/sessions after leaving it", 5000, async () => (await wallSessions()).length === 0, 100)
  result.sessions_closed_ms = Date.now() - leftAt
  result.control_after_leaving = await until(`control of ${first} released`, 5000, async () => {
    const r = await api('GET', `/api/trains/${encodeURIComponent(first)}`)
    return r.body && r.body.control === null ? 'released' : null
  }, 100)
  if (process.env.WALL_SWITCH === '1') await switchBack(page, trains[1] ?? trains[0])
  result.page_errors = pageErrors
  if (pageErrors.length) fail(`page errors: ${pageErrors.join(' | ')}`)
  result.ok = true
}

/**
 * Back in the single view (WALL_SWITCH=1): watch `train` over WebRTC, then switch to WebSocket.
 * The Connection panel must then show the current link's state only: the closed WebRTC link keeps
 * no open channels or connected ICE, and REST signaling went past "offer received" while it lived.
 */
async function switchBack(page, train) {
  const hook = () => page.evaluate(() => window.__railcast)
  await page.locator('[data-testid="transport-select"]').selectOption('webrtc')
  await page.locator(`[data-testid="train-select-${train}"]`).click()
  const t = Date.now()
  const rtc = await until(`the single view streams ${train} over WebRTC`, 15_000, async () => {
    const h = await hook()
    const painted = Object.values(h.stats ?? {}).some((s) => s.framesPainted > 0)
    return h.transport === 'webrtc' && h.state === 'connected' && h.trainId === train && painted ? h : null
  }, 200)
  result.switch = { train, webrtc_ms: Date.now() - t, webrtc_open: pick(rtc.details.webrtc) }
  if (rtc.details.webrtc.restSignaling !== 'connected (stable)') fail(`REST signaling stuck at "${rtc.details.webrtc.restSignaling}" on an open WebRTC link`)
  await page.locator('[data-testid="transport-select"]').selectOption('websocket')
  const ws = await until('the single view switched to WebSocket', 10_000, async () => {
    const h = await hook()
    return h.transport === 'websocket' && h.state === 'connected' && h.details.webrtc.state === 'closed' ? h : null
  }, 200)
  const panel = await page.locator('[data-testid="transport-detail-webrtc"]').innerText()
  result.switch.webrtc_after = ws.details.webrtc
  result.switch.websocket = pick(ws.details.websocket)
  result.switch.webrtc_panel = panel.replace(/\s+/g, ' ').trim()
  const stale = ['videoChannel', 'commandChannel', 'iceConnectionState', 'connectionState', 'signalingState'].filter((k) => k in ws.details.webrtc)
  if (stale.length) fail(`after the switch to WebSocket the WebRTC details still show ${stale.join(', ')}: ${JSON.stringify(ws.details.webrtc)}`)
  if (/connected|open/.test(result.switch.webrtc_panel.replace(/closed/g, ''))) fail(`the panel still shows WebRTC open or connected: ${result.switch.webrtc_panel}`)
  // The single view's trends (folded under the video): three plots per camera, with samples.
  await page.locator('[data-testid="trends-toggle"]').click()
  result.switch.single_view_plots = await until('the single view\'s trend plots show samples', 5000, async () => {
    const pts = await page.evaluate(() => [...document.querySelectorAll('[data-testid="trends"] [data-testid="trend-plot"]')].map((e) => Number(e.getAttribute('data-points'))))
    return pts.length >= 3 && pts.every((n) => n > 0) ? pts : null
  }, 200)
  await shot(page, 'switched')
}

const pick = (d) => Object.fromEntries(Object.entries(d ?? {}).filter(([k]) => ['state', 'signaling', 'restSignaling', 'signalingState', 'iceConnectionState', 'videoChannel', 'commandChannel', 'readyState', 'reason'].includes(k)))

const started = Date.now()
try {
  await main()
} catch (e) {
  result.ok = false
  result.error = e instanceof Failure ? e.message : String(e?.stack ?? e)
  try {
    const page = browser?.pages()[0]
    if (page) {
      result.hook = await page.evaluate(() => window.__railcastWall ?? null).catch(() => null)
      await shot(page, 'failure').catch(() => {})
    }
  } catch {
    // the page may be gone
  }
  log(`FAILED: ${result.error}`)
} finally {
  result.duration_ms = Date.now() - started
  result.screenshots = screenshots
  await browser?.close().catch(() => {})
  if (userDir) rmSync(userDir, { recursive: true, force: true })
}
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(result.ok ? 0 : 1)
