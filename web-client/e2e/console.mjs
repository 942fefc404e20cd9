#!/usr/bin/env node
// End-to-end driver of the operator console in Debian's Chromium (never a downloaded browser).
//
//   BASE_URL=http://127.0.0.1:8080 ARTIFACTS_DIR=artifacts node e2e/console.mjs SCENARIO [TRAIN_ID]
//
// The server must be running at BASE_URL with a simulator attached; the console must be served at
// BASE_URL/ (by the server, or by `vite preview` proxying to it). Scenarios:
//   webrtc, webtransport, websocket, mqtt   that transport only (mqtt: the server needs a broker with
//                       a browser URL; the JSON line adds `mqtt`, the link's counters)
//   webrtc-mqtt         WebRTC with `?signaling=mqtt`: the console offers over the broker's signaling topics
//                       (the server needs a broker with a browser URL); expects the link to report mqtt
//   webrtc-rpc          WebRTC with `?signaling=rpc`: the console offers to the peer `relay` over JSON-RPC 2.0
//                       on /rpc (no broker); expects the link to report rpc, the /rpc socket still open,
//                       and the Connection panel's peer list (the relay and this console) on the page
//   whep                Media tracks (WHEP): every camera plays its H.264 track in a <video>; expects at
//                       least 30 frames presented per camera (requestVideoFrameCallback), non-blank
//                       changing pictures, getStats() frames decoded, and a command acked over the
//                       WHEP session's `command` data channel; with EXPECT_AUDIO=1, the cab audio's
//                       Opus track too: muted by default, 48,000 samples received, unmuted by a click
//   auto                Auto mode; expects WebRTC (the first of its ranking: WebRTC, WebTransport, WebSocket,
//                       then MQTT when GET /api/mqtt names a broker URL)
//   auto-fallback       Auto with /api/webrtc/* and /api/webtransport blocked: expects WebSocket within
//                       ~6 s, then unblocks and expects Auto to come back to WebRTC (its probe runs 10 s
//                       after the fallback); then switches to WebSocket by hand: from the unblocking on, the page
//                       must log no 404 and no console error (`switch_logged`, `switch_to_websocket_ms`)
//   auto-webtransport   Auto with only /api/webrtc/* blocked: expects WebTransport, the second of the
//                       ranking, then unblocks and expects Auto to come back to WebRTC
//   restart[-webrtc|-webtransport|-websocket|-mqtt|-auto]   (alias restart-wait) once frames flow, prints READY_FOR_RESTART
//                       on stdout and waits up to 60 s for the harness to restart the server on the
//                       same port and for frames to flow again; reads nothing from stdin
// Each checks that every camera's canvas shows non-blank, changing pictures, that the overlay shows a
// latency, and that a command gets its ack; it saves screenshots into ARTIFACTS_DIR (default
// ./artifacts) and prints ONE JSON line of results on stdout. On failure: a JSON line with
// "ok":false and the reason, the reason again on stderr, exit status 1.
//   revoke[-websocket|-webtransport|-mqtt]  (revoke: Auto, expects WebRTC) once frames flow, prints READY_FOR_REVOKE and
//                       waits up to 30 s for the harness to revoke RAILCAST_TOKEN (credentials file
//                       rewritten, SIGHUP): the session must end, video stop, and the token prompt show
//                       the server's own 401 message for that token
// Two more scenarios check access control instead (no TRAIN_ID argument, no horn ack):
//   viewer              RAILCAST_TOKEN is a viewer's token and RAILCAST_RC the remote control an admin
//                       assigned to it and mapped to a train: the console must show video and the
//                       viewer role, keep the command buttons disabled (or, if it lets one through,
//                       get it refused), and a command sent past the UI (window.__railcastSend) must
//                       come back as command_error "forbidden"
//   insecure            BASE_URL is a plain-HTTP origin that is not localhost (e.g. http://railcast.test:PORT
//                       with CHROMIUM_ARGS='--host-resolver-rules=MAP railcast.test 127.0.0.1'): not a secure
//                       context, so no WebCodecs; the console must explain why and what to do (the https and
//                       localhost addresses, the settings, the docs) and show no camera canvas
//   control             RAILCAST_TOKEN an admin's, over WebSocket: the console takes control of the train
//                       (the panel shows "you", pings every 250 ms), a horn is acked, then the page's
//                       renderer is crashed (CDP Page.crash; CONTROL_END=close: the page is closed;
//                       CONTROL_END=sigkill: every Chromium process gets SIGKILL, no goodbye at all);
//                       the driver polls GET /api/trains/TRAIN until `control` is null (JSON:
//                       `control_null_ms`, from the crash) and GET /api/audit?train=TRAIN for the
//                       server's `operator_lost` entry (`operator_lost`, `operator_lost_ms`)
//   cluster-audit       RAILCAST_TOKEN an admin's, over WebSocket, BASE_URL one node of a cluster: the console
//                       shows its command history, sends a horn, and the history must show horns audited
//                       on every node of AUDIT_NODES (comma-separated; the harness sent the others'), each
//                       row naming its node, none twice, and no "did not answer" note
//   bad-token           a wrong token (RAILCAST_BAD_TOKEN, default a random one; RAILCAST_TOKEN is not
//                       used): the console must show the token prompt with the server's own 401
//                       message (as GET /api/me answers it) and no video, and stop asking the server
//
// Env: JITTER_BUFFER_TARGET (whep: ms for every track's RTCRtpReceiver.jitterBufferTarget; unset:
// the browser's default), RAILCAST_TOKEN (the access token: the page is opened with `#token=<it>` appended, and the
// driver's own requests send it as a bearer token; unset: no token, as before authentication),
// STOP_TRAIN=1 (streaming scenarios, after the restart if any: READY_FOR_TRAIN_STOP, the harness stops the
// simulator, the pictures and figures must be marked stale), RAILCAST_RC (viewer), RAILCAST_BAD_TOKEN (bad-token), CHROMIUM (default /usr/bin/chromium),
// MEASURE_MS (default 5000), E2E_VERBOSE=1 (page console on stderr), RESTART_WAIT_MS (default
// 60000), BLOCK_WEBRTC=hang (auto-fallback, auto-webtransport: leave the blocked requests unanswered
// instead of refusing them), CHROMIUM_ARGS (extra launch flags, space-separated; a flag's value may not
// contain a space except --host-resolver-rules, which takes the rest of the string), NODE_EXTRA_CA_CERTS
// (a test CA, for the driver's own requests to an https BASE_URL; Chromium trusts it through
// --ignore-certificate-errors-spki-list in CHROMIUM_ARGS).
//
// On WebRTC the JSON line also has `signaling` (`rest`, `mqtt` or `rpc`: what the link used, from its details),
// `webrtc_setup_ms` (the link's start → both channels open, signaling included), `server_setup_ms` (the
// server's `setup_ms` of that peer, GET /api/webrtc/sessions) and, with MQTT signaling, `mqtt_signaling` (its last state, the MQTT session, candidates both ways);
// with JSON-RPC signaling, `rpc_signaling` (its state, this console's peer id, the relay session,
// candidates both ways, the last error) and `peers` (the peer list: peer_id, name, role, self).
//
// On WebTransport the JSON line also has `webtransport`: the link's own counters (datagrams,
// streams, packets, bytes, max_datagram_size, certificate) from the Connection panel's details.
import { chromium } from 'playwright-core'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'

const scenario = process.argv[2]
const trainArg = process.argv[3] ?? process.env.TRAIN
const base = (process.env.BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
const artifacts = resolve(process.env.ARTIFACTS_DIR ?? 'artifacts')
const measureMs = Number(process.env.MEASURE_MS ?? 5000)
const restartWaitMs = Number(process.env.RESTART_WAIT_MS ?? 60000)
const verbose = !!process.env.E2E_VERBOSE
const token = process.env.RAILCAST_TOKEN || null

const SCENARIOS = {
  webrtc: { transport: 'webrtc', expect: 'webrtc' },
  'webrtc-mqtt': { transport: 'webrtc', expect: 'webrtc', signaling: 'mqtt' },
  'webrtc-rpc': { transport: 'webrtc', expect: 'webrtc', signaling: 'rpc' },
  webtransport: { transport: 'webtransport', expect: 'webtransport' },
  websocket: { transport: 'websocket', expect: 'websocket' },
  mqtt: { transport: 'mqtt', expect: 'mqtt' },
  whep: { transport: 'whep', expect: 'whep', access: 'whep' },
  auto: { transport: 'auto', expect: 'webrtc' },
  'auto-fallback': { transport: 'auto', expect: 'websocket', blockWebRtc: true, blockWebTransport: true },
  'auto-webtransport': { transport: 'auto', expect: 'webtransport', blockWebRtc: true },
  restart: { transport: 'auto', expect: 'webrtc', restart: true },
  'restart-wait': { transport: 'auto', expect: 'webrtc', restart: true },
  'restart-auto': { transport: 'auto', expect: 'webrtc', restart: true },
  'restart-webrtc': { transport: 'webrtc', expect: 'webrtc', restart: true },
  'restart-webtransport': { transport: 'webtransport', expect: 'webtransport', restart: true },
  'restart-websocket': { transport: 'websocket', expect: 'websocket', restart: true },
  'restart-mqtt': { transport: 'mqtt', expect: 'mqtt', restart: true },
  revoke: { transport: 'auto', expect: 'webrtc', revoke: true },
  'revoke-websocket': { transport: 'websocket', expect: 'websocket', revoke: true },
  'revoke-webtransport': { transport: 'webtransport', expect: 'webtransport', revoke: true },
  'revoke-mqtt': { transport: 'mqtt', expect: 'mqtt', revoke: true },
  viewer: { transport: 'auto', expect: null, access: 'viewer' },
  'bad-token': { transport: 'auto', expect: null, access: 'bad-token' },
  insecure: { transport: 'auto', expect: null, access: 'insecure' },
  control: { transport: 'websocket', expect: 'websocket', access: 'control' },
  'cluster-audit': { transport: 'websocket', expect: 'websocket', access: 'cluster-audit' },
}

/** CHROMIUM_ARGS as a list: split on spaces, but --host-resolver-rules keeps the rest (its rules have spaces). */
function extraArgs(s) {
  const at = s.indexOf('--host-resolver-rules=')
  const head = (at < 0 ? s : s.slice(0, at)).split(/\s+/).filter(Boolean)
  return at < 0 ? head : [...head, s.slice(at).trim()]
}

const log = (...a) => process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const result = { ok: false, scenario, base_url: base }
const screenshots = []
let browser
let userDir

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg)
}

/** Nearest-rank percentile. */
function pct(xs, p) {
  if (!xs.length) return null
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}
/** The console URL: `?query`, then `#token=…` (and more) when there is a token. */
function consoleUrl(query, fragment = {}) {
  const frag = Object.entries(fragment)
    .filter(([, v]) => v)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&')
  return `${base}/?${query}${frag ? `#${frag}` : ''}`
}

const bearer = (t = token) => (t ? { authorization: `Bearer ${t}` } : {})

const round = (v, d = 1) => (v === null || v === undefined || Number.isNaN(v) ? null : Math.round(v * 10 ** d) / 10 ** d)

async function pickTrain() {
  if (trainArg) return trainArg
  const deadline = Date.now() + 30000
  let last = ''
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`${base}/api/trains`, { headers: bearer() })
      if (r.status === 401 || r.status === 403) fail(`GET /api/trains: ${r.status} ${await r.text()} (RAILCAST_TOKEN ${token ? 'set' : 'not set'})`)
      const trains = await r.json()
      const online = trains.filter((t) => t.online).map((t) => t.id).sort()
      if (online.length) return online[0]
      last = `no online train among ${trains.length}`
    } catch (e) {
      last = String(e)
    }
    await sleep(500)
  }
  fail(`no online train at ${base}/api/trains within 30 s (${last})`)
}

/** Poll `fn` in the page until it returns a truthy value; fail with `what` (and the hook state) after `timeoutMs`. */
async function waitFor(page, what, timeoutMs, fn, arg) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await page.evaluate(fn, arg)
    if (v) return v
    if (Date.now() > deadline) {
      const h = await hook(page).catch(() => null)
      const auth = h?.authError ? `, token refused: ${h.authError}` : h?.noAssignment ? `, ${h.noAssignment}` : ''
      const frames = Object.fromEntries(Object.entries(h?.stats ?? {}).map(([cam, st]) => [cam, { in: st?.framesIn, decoded: st?.framesDecoded, painted: st?.framesPainted }]))
      const link = `opens ${h?.opens}, signaling ${h?.signaling}/${h?.details?.webrtc?.signaling}, frames ${JSON.stringify(frames)}`
      fail(`${what}: not within ${timeoutMs / 1000} s (state ${h?.state}, transport ${h?.transport}, pending ${h?.pending}, last error ${h?.lastError}, ${link}${auth})`)
    }
    await sleep(200)
  }
}

const hook = (page) => page.evaluate(() => window.__railcast)

/** The WebTransport link's own counters (strings in the details), as numbers. */
async function webTransportCounters(page) {
  const d = (await hook(page)).details.webtransport ?? {}
  const num = (k) => (d[k] === undefined ? null : Number(d[k]))
  return {
    datagrams: num('datagrams'),
    streams: num('streams'),
    packets: num('packets'),
    bytes: num('bytes'),
    max_datagram_size: num('maxDatagramSize'),
    certificate: d.certificate ?? null,
    url: d.url ?? null,
  }
}

/** How the WebRTC link signaled (its details), and the MQTT or JSON-RPC signaling's state and counts. */
async function webRtcSignaling(page) {
  const d = (await hook(page)).details.webrtc ?? {}
  const out = { signaling: d.signaling ?? null, webrtc_setup_ms: d.setupMs === undefined ? null : Number(d.setupMs) }
  // The server's own figure: offer received (REST: requested) → `video` channel open.
  const h = await hook(page)
  try {
    const r = await fetch(`${base}/api/webrtc/sessions`, { headers: bearer() })
    const mine = r.ok ? (await r.json()).filter((x) => x.transport === 'webrtc' && x.remote_control_id === h.remoteControlId) : []
    out.server_setup_ms = round(mine.at(-1)?.setup_ms ?? null, 1)
  } catch {
    out.server_setup_ms = null
  }
  if (d.signaling === 'mqtt') {
    out.mqtt_signaling = {
      state: d.mqttSignaling ?? null,
      session: d.mqttSession ?? null,
      broker: d.broker ?? null,
      candidates_sent: d.candidatesSent === undefined ? null : Number(d.candidatesSent),
      server_candidates: d.serverCandidates === undefined ? null : Number(d.serverCandidates),
      error: d.signalingError ?? null,
    }
  }
  if (d.signaling === 'rpc') {
    out.rpc_signaling = {
      state: d.rpcSignaling ?? null,
      peer_id: d.peerId ?? null,
      session: d.session ?? null,
      candidates_sent: d.candidatesSent === undefined ? null : Number(d.candidatesSent),
      relay_candidates: d.relayCandidates === undefined ? null : Number(d.relayCandidates),
      relay_candidates_end: d.relayCandidatesEnd === 'yes',
      error: d.signalingError ?? null,
    }
    const rp = h.rpcPeers
    out.peers = rp ? rp.peers.map((p) => ({ peer_id: p.peer_id, name: p.name, role: p.role, self: p.peer_id === rp.self })) : null
    // What the Connection panel shows: one row per peer.
    out.peers_shown = await page.evaluate(() => [...document.querySelectorAll('[data-testid="rpc-peers"] [data-testid="rpc-peer"]')].map((r) => r.dataset.peerId))
  }
  return out
}

/** The MQTT link's own counters and session (strings in the details; never the password). */
async function mqttCounters(page) {
  const d = (await hook(page)).details.mqtt ?? {}
  const num = (k) => (d[k] === undefined ? null : Number(d[k]))
  return {
    video_messages: num('videoMessages'),
    packets: num('packets'),
    bytes: num('bytes'),
    events: num('events'),
    reconnects: num('reconnects'),
    max_message: num('maxMessage'),
    session: d.session ?? null,
    url: d.url ?? null,
  }
}

/** Luma statistics and a coarse grid of one canvas, read back with getImageData. */
function sampleCanvas(testId) {
  const c = document.querySelector(`[data-testid="${testId}"]`)
  if (!c) return null
  const ctx = c.getContext('2d')
  const { width, height } = c
  const d = ctx.getImageData(0, 0, width, height).data
  const grid = []
  let sum = 0
  let sum2 = 0
  let n = 0
  for (let y = 4; y < height; y += 8) {
    for (let x = 4; x < width; x += 8) {
      const i = (y * width + x) * 4
      const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]
      grid.push(l)
      sum += l
      sum2 += l * l
      n++
    }
  }
  const mean = sum / n
  return { width, height, mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)), grid }
}

/** Every camera's canvas must be non-blank and change within a second. */
async function checkPictures(page, cameras, label) {
  const first = {}
  for (const cam of cameras) first[cam] = await page.evaluate(sampleCanvas, `camera-canvas-${cam}`)
  await sleep(1000)
  const out = {}
  for (const cam of cameras) {
    const a = first[cam]
    const b = await page.evaluate(sampleCanvas, `camera-canvas-${cam}`)
    if (!a || !b) fail(`${label}: canvas of camera ${cam} not found`)
    if (b.std < 4) fail(`${label}: camera ${cam} canvas looks blank (luma mean ${b.mean.toFixed(1)}, std ${b.std.toFixed(2)})`)
    let diff = 0
    const len = Math.min(a.grid.length, b.grid.length)
    for (let i = 0; i < len; i++) diff += Math.abs(a.grid[i] - b.grid[i])
    diff /= Math.max(1, len)
    if (a.width !== b.width || diff < 0.2) fail(`${label}: camera ${cam} picture did not change in 1 s (mean abs luma diff ${diff.toFixed(3)})`)
    out[cam] = { width: b.width, height: b.height, luma_std: round(b.std), change: round(diff, 2) }
  }
  return out
}

/** Watch the stream for `ms`; fps and latency percentiles over the frames painted meanwhile. */
async function measure(page, cameras, ms) {
  const before = await hook(page)
  await sleep(ms)
  const after = await hook(page)
  const perCamera = {}
  const all = []
  for (const cam of cameras) {
    const a = before.stats[cam]
    const b = after.stats[cam]
    if (!a || !b) fail(`no stats for camera ${cam}`)
    const painted = b.framesPainted - a.framesPainted
    if (painted <= 0) fail(`camera ${cam}: no frame painted in ${ms} ms`)
    const samples = b.latencySamples.slice(-Math.min(painted, b.latencySamples.length))
    all.push(...samples)
    perCamera[cam] = {
      fps: round((painted * 1000) / ms),
      latency_p50_ms: round(pct(samples, 50)),
      latency_p95_ms: round(pct(samples, 95)),
      dropped: b.dropped - a.dropped,
      superseded: b.superseded - a.superseded,
      codec: b.codec,
    }
  }
  const fpsList = Object.values(perCamera).map((c) => c.fps)
  return {
    fps: round(fpsList.reduce((x, y) => x + y, 0) / fpsList.length),
    fps_min: Math.min(...fpsList),
    latency_p50_ms: round(pct(all, 50)),
    latency_p95_ms: round(pct(all, 95)),
    latency_samples: all.length,
    clock_offset_ms: round(after.clockOffsetMs),
    clock_offset_applied: after.clock.applied,
    server_rtt_ms: round(after.clock.serverRttMs),
    per_camera: perCamera,
  }
}

/** The overlay must show a glass-to-glass figure. */
async function checkOverlay(page, cameras) {
  for (const cam of cameras) {
    const text = await page.locator(`[data-testid="camera-overlay-${cam}"] [data-testid="overlay-latency"]`).innerText()
    if (!/p50 \d+ ms/.test(text)) fail(`overlay of camera ${cam} shows no latency: "${text}"`)
  }
}

/** Click a command button and wait for its ack in the log. */
async function command(page, testId) {
  const button = page.getByTestId(testId)
  await waitFor(page, `${testId} enabled`, 15000, (id) => {
    const b = document.querySelector(`[data-testid="${id}"]`)
    return b && !b.disabled
  }, testId)
  const before = await page.locator('[data-testid="ack-row"]').count()
  await button.click()
  const row = page.locator('[data-testid="ack-row"]').first()
  await waitFor(page, `ack of ${testId}`, 15000, (n) => {
    const rows = document.querySelectorAll('[data-testid="ack-row"]')
    return rows.length > n && rows[0].getAttribute('data-status') !== 'pending'
  }, before)
  const status = await row.getAttribute('data-status')
  if (status !== 'ok') fail(`${testId}: ack status "${status}" (${await row.getAttribute('title')})`)
  const h = await hook(page)
  return { rtt_ms: round(h.lastAck.rtt_ms, 2), train_rtt_ms: round(h.lastAck.train_rtt_ms, 2), transport: h.lastAck.transport }
}

async function shot(page, name) {
  const path = join(artifacts, `console-${scenario}-${name}.png`)
  await page.screenshot({ path, fullPage: true })
  screenshots.push(path)
}

async function waitForFrames(page, expect, cameras, timeoutMs, minPainted = 10) {
  await waitFor(page, `${expect ?? 'any'} transport with frames painted on every camera`, timeoutMs, ([want, min]) => {
    const h = window.__railcast
    if (want && h.transport !== want) return false
    if (!h.cameras.length) return false
    return h.cameras.every((c) => h.stats[c] && h.stats[c].framesPainted >= min) ? h.cameras : false
  }, [expect, minPainted])
  const h = await hook(page)
  return cameras ?? h.cameras
}

/** The processes whose parent is `pid` (from /proc: `pid (comm) state ppid …`). */
function childPids(pid) {
  const out = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

async function launch() {
  userDir = mkdtempSync(join(tmpdir(), 'railcast-console-'))
  browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extraArgs(process.env.CHROMIUM_ARGS ?? '')],
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(String(e)))
  if (verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`))
  // Every 404 the page got and every error line in its console ("Failed to load resource: … 404"
  // included), timed, for the checks that a transport switch logs nothing.
  const pageLog = { notFound: [], consoleErrors: [] }
  page.on('response', (r) => {
    if (r.status() !== 404) return
    pageLog.notFound.push({ at: Date.now(), method: r.request().method(), url: r.url() })
    if (verbose) process.stderr.write(`[page] 404: ${r.request().method()} ${r.url()}\n`)
  })
  page.on('console', (m) => {
    if (m.type() === 'error') pageLog.consoleErrors.push({ at: Date.now(), text: m.text(), url: m.location()?.url ?? '' })
  })
  return { page, pageErrors, pageLog }
}

/** What the page logged (404s, console errors) since `t` (Date.now()), without the origin. */
function loggedSince(pageLog, t) {
  const strip = (u) => u.replace(base, '')
  return {
    not_found: pageLog.notFound.filter((x) => x.at >= t).map((x) => `${x.method} ${strip(x.url)}`),
    console_errors: pageLog.consoleErrors.filter((x) => x.at >= t).map((x) => `${x.text}${x.url ? ` (${strip(x.url)})` : ''}`),
  }
}

async function main() {
  const spec = SCENARIOS[scenario]
  if (!spec) fail(`unknown scenario "${scenario}"; one of: ${Object.keys(SCENARIOS).join(', ')}`)
  mkdirSync(artifacts, { recursive: true })
  if (spec.access === 'viewer') return viewer(spec)
  if (spec.access === 'bad-token') return badToken(spec)
  if (spec.access === 'insecure') return insecure()
  if (spec.access === 'whep') return whep(spec)
  if (spec.access === 'control') return controlLease(spec)
  if (spec.access === 'cluster-audit') return clusterAudit(spec)
  const train = await pickTrain()
  Object.assign(result, { train, requested_transport: spec.transport, with_token: !!token })
  const { page, pageErrors, pageLog } = await launch()

  let blocked = 0
  let blockedWt = 0
  // BLOCK_WEBRTC=hang leaves the requests unanswered instead (Auto's 3 s open timeout must fire).
  const hang = process.env.BLOCK_WEBRTC === 'hang'
  if (spec.blockWebRtc) {
    await page.route('**/api/webrtc/**', (route) => {
      blocked++
      return hang ? undefined : route.abort('connectionrefused')
    })
  }
  if (spec.blockWebTransport) {
    // Without its endpoint the WebTransport link fails like an unreachable one (not as "unsupported").
    await page.route('**/api/webtransport', (route) => {
      blockedWt++
      return hang ? undefined : route.abort('connectionrefused')
    })
  }

  const t0 = Date.now()
  const signalingQuery = spec.signaling ? `&signaling=${spec.signaling}` : ''
  if (spec.signaling) result.requested_signaling = spec.signaling
  await page.goto(consoleUrl(`transport=${spec.transport}&train=${encodeURIComponent(train)}${signalingQuery}`, { token }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  await checkFavicon(page)
  const cameras = await waitForFrames(page, spec.expect, null, 30000)
  result.first_frames_ms = Date.now() - t0
  const h0 = await hook(page)
  Object.assign(result, { transport: h0.transport, cameras, remote_control_id: h0.remoteControlId, user: h0.user, role: h0.role })
  log(`${h0.transport}: frames on cameras ${cameras.join(', ')} after ${result.first_frames_ms} ms`)
  if (spec.blockWebRtc) {
    if (blocked === 0) fail('the WebRTC routes were never requested: did Auto try WebRTC first?')
    result.webrtc_requests_blocked = blocked
  }
  if (spec.blockWebTransport) result.webtransport_requests_blocked = blockedWt
  result.ranking = h0.ranking
  result.skipped = h0.skipped

  result.pictures = await checkPictures(page, cameras, 'first pictures')
  Object.assign(result, await measure(page, cameras, measureMs))
  await checkOverlay(page, cameras)
  const ack = await command(page, 'cmd-horn')
  Object.assign(result, { ack_rtt_ms: ack.rtt_ms, train_rtt_ms: ack.train_rtt_ms, ack_transport: ack.transport })
  await shot(page, 'streaming')
  if (result.transport === 'webtransport') result.webtransport = await webTransportCounters(page)
  if (result.transport === 'mqtt') result.mqtt = await mqttCounters(page)
  if (result.transport === 'webrtc') {
    Object.assign(result, await webRtcSignaling(page))
    if (spec.signaling && result.signaling !== spec.signaling) fail(`the WebRTC link signaled over ${result.signaling}, not ${spec.signaling}`)
    if (result.signaling) log(`webrtc signaling: ${result.signaling}${result.mqtt_signaling ? ` ${JSON.stringify(result.mqtt_signaling)}` : ''}`)
    if (result.signaling === 'rpc') {
      log(`rpc signaling ${JSON.stringify(result.rpc_signaling)}; peers ${JSON.stringify(result.peers)}; shown ${JSON.stringify(result.peers_shown)}`)
      if (!result.peers?.some((p) => p.peer_id === 'relay')) fail(`the peer list has no relay: ${JSON.stringify(result.peers)}`)
      if (!result.peers_shown?.includes('relay')) fail(`the Connection panel shows no peer list with the relay: ${JSON.stringify(result.peers_shown)}`)
      if (!String(result.rpc_signaling?.state).startsWith('open')) fail(`JSON-RPC signaling is not open: ${JSON.stringify(result.rpc_signaling)}`)
    }
    if (result.signaling === 'rpc') {
      // The link's end: switching to REST closes the JSON-RPC link (`disconnect`, then the socket
      // closes); the relay session must go, and frames come back over a REST-signaled link.
      const rpcSession = result.rpc_signaling.session
      const listed = async () => {
        const r = await fetch(`${base}/api/webrtc/sessions`, { headers: bearer() })
        const all = r.ok ? await r.json() : []
        const s = all.find((x) => x.session_id === rpcSession || x.id === rpcSession)
        return s && !['closed', 'failed'].includes(s.state) ? s : null
      }
      if (!(await listed())) fail(`the relay session ${rpcSession} is not in GET /api/webrtc/sessions while the link lives`)
      // Links opened before the switch: read now, since the REST link may open before the old
      // session is seen gone below.
      const before = (await hook(page)).opens
      const t1 = Date.now()
      await page.selectOption('[data-testid="signaling-select"]', 'rest')
      let endedMs = null
      while (Date.now() - t1 < 10000) {
        if (!(await listed())) {
          endedMs = Date.now() - t1
          break
        }
        await sleep(50)
      }
      if (endedMs === null) fail(`the relay session ${rpcSession} outlived its link by 10 s`)
      result.rpc_session_ended_ms = endedMs
      // Whether the server took the link's `disconnect` (its counter), not only the socket's close.
      const metrics = await fetch(`${base}/metrics`, { headers: bearer() }).then((r) => (r.ok ? r.text() : '')).catch(() => '')
      const m = /^railcast_rpc_requests_total\{method="disconnect"\} (\d+)/m.exec(metrics)
      result.rpc_disconnects = m ? Number(m[1]) : null
      await waitFor(page, 'frames over a REST-signaled WebRTC link after leaving JSON-RPC', 20000,
        ([n, cam]) => { const h = window.__railcast; return h.opens > n && h.transport === 'webrtc' && h.signaling === 'rest' && h.details.webrtc?.signaling === 'rest' && h.stats[cam]?.framesPainted > 0 }, [before, cameras[0]])
      result.rpc_peers_after_leaving = (await hook(page)).rpcPeers
      // Leaving JSON-RPC for REST logged nothing (no DELETE of the relay session: `disconnect` ends it).
      result.switch_logged = loggedSince(pageLog, t1)
      if (result.switch_logged.not_found.length || result.switch_logged.console_errors.length) fail(`leaving JSON-RPC signaling logged errors: ${JSON.stringify(result.switch_logged)}`)
      log(`left JSON-RPC: relay session ${rpcSession} gone ${endedMs} ms after the switch; REST link up`)
    }
  }
  log(`fps ${result.fps}, glass-to-glass p50 ${result.latency_p50_ms} ms p95 ${result.latency_p95_ms} ms, ack ${ack.rtt_ms} ms`)

  if (spec.blockWebRtc) {
    // Make WebRTC possible again: Auto must come back to it on its own.
    await page.unroute('**/api/webrtc/**')
    if (spec.blockWebTransport) await page.unroute('**/api/webtransport')
    const t1 = Date.now()
    await waitForFrames(page, 'webrtc', cameras, 40000, 0)
    const painted = (await hook(page)).stats[cameras[0]].framesPainted
    await waitFor(page, 'frames over WebRTC after coming back', 10000, ([cam, n]) => window.__railcast.stats[cam].framesPainted > n + 10, [cameras[0], painted])
    result.back_to_webrtc_ms = Date.now() - t1
    result.after_recovery = await measure(page, cameras, 2000)
    await checkPictures(page, cameras, 'pictures after coming back to WebRTC')
    result.transport_after_recovery = (await hook(page)).transport
    await shot(page, 'back-to-webrtc')
    log(`back on WebRTC after ${result.back_to_webrtc_ms} ms`)
    await quietSwitch(page, pageLog, cameras, t1)
  }

  if (spec.restart) {
    const before = await hook(page)
    const painted = Object.fromEntries(cameras.map((c) => [c, before.stats[c].framesPainted]))
    process.stdout.write('READY_FOR_RESTART\n')
    log('READY_FOR_RESTART printed; waiting for the server to go away and come back')
    const t1 = Date.now()
    let downAt = null
    let upAt = null
    const deadline = t1 + restartWaitMs
    let paintedAtOpen = null
    for (;;) {
      const h = await hook(page)
      if (downAt === null && (h.opens > before.opens || h.state !== 'connected')) downAt = Date.now()
      if (h.opens > before.opens && h.state === 'connected') {
        paintedAtOpen ??= Object.fromEntries(cameras.map((c) => [c, h.stats[c]?.framesPainted ?? 0]))
        if (cameras.every((c) => (h.stats[c]?.framesPainted ?? 0) >= paintedAtOpen[c] + 10)) {
          upAt = Date.now()
          break
        }
      }
      if (Date.now() > deadline) {
        fail(downAt === null
          ? `the connection never went down within ${restartWaitMs / 1000} s of READY_FOR_RESTART (was the server restarted?)`
          : `frames did not flow again within ${restartWaitMs / 1000} s (state ${h.state}, transport ${h.transport}, last error ${h.lastError})`)
      }
      await sleep(200)
    }
    const after = await hook(page)
    Object.assign(result, {
      restart_detected_ms: downAt - t1,
      restart_recovered_ms: upAt - downAt,
      transport_after_restart: after.transport,
      remote_control_id_after_restart: after.remoteControlId,
      remote_control_recreated: after.remoteControlId !== before.remoteControlId,
      frames_painted_before_restart: painted,
    })
    log(`frames again ${result.restart_recovered_ms} ms after the connection went down (now ${after.transport})`)
    await checkPictures(page, cameras, 'pictures after the restart')
    result.after_restart = await measure(page, cameras, Math.min(measureMs, 3000))
    const ack2 = await command(page, 'cmd-horn')
    result.ack_rtt_after_restart_ms = ack2.rtt_ms
    await shot(page, 'after-restart')
  }

  if (process.env.STOP_TRAIN === '1') await trainStops(page, cameras)

  if (spec.revoke) {
    process.stdout.write('READY_FOR_REVOKE\n')
    log('READY_FOR_REVOKE printed; waiting for the token prompt')
    const t1 = Date.now()
    await waitFor(page, 'the token prompt after the revocation', 30000, () => {
      const m = document.querySelector('[data-testid="token-prompt"] [data-testid="token-error-message"]')
      return m && m.textContent.trim() ? true : false
    })
    result.revoked_prompt_ms = Date.now() - t1
    const r = await fetch(`${base}/api/me`, { headers: bearer() })
    const text = await r.text()
    let serverMessage = text
    try {
      serverMessage = JSON.parse(text).message ?? text
    } catch {
      // not JSON
    }
    result.auth_error = (await page.getByTestId('token-error-message').innerText()).trim()
    Object.assign(result, { server_status_after: r.status, server_message_after: serverMessage })
    if (r.status !== 401) fail(`GET /api/me answered ${r.status} after the revocation, not 401: was the token revoked?`)
    if (result.auth_error !== serverMessage.trim()) fail(`the prompt says "${result.auth_error}", the server said "${serverMessage}"`)
    // The server ended the session itself (its `closing` event names the revocation), rather than
    // the console giving up on a 401 from some other request.
    const events = await page.getByTestId('event-log').innerText()
    result.closing_logged = events.split('\n').find((l) => l.includes('server closing')) ?? null
    if (!result.closing_logged?.includes('revoked')) fail(`no closing event for the revocation in the event log:\n${events}`)
    // Video has stopped: nothing painted for 2 s.
    const sum = (h) => Object.values(h.stats).reduce((n, st) => n + st.framesPainted, 0)
    const p0 = sum(await hook(page))
    await sleep(2000)
    const h = await hook(page)
    Object.assign(result, { frames_painted_after_prompt: sum(h) - p0, state_after_revoke: h.state })
    if (sum(h) !== p0) fail(`${sum(h) - p0} frames painted after the prompt: video did not stop`)
    await shot(page, 'revoked')
    log(`token prompt ${result.revoked_prompt_ms} ms after READY_FOR_REVOKE: "${result.auth_error}"`)
  }

  if (pageErrors.length) result.page_errors = pageErrors
  result.not_found = loggedSince(pageLog, 0).not_found
  result.ok = true
  result.screenshots = screenshots
}

/**
 * The page names its icon and the server serves it: without the link Chromium asks for
 * /favicon.ico, a 404 in the page console on every load (the browser's own request, which
 * Playwright does not report). Adds `favicon` ({href, status, type}).
 */
async function checkFavicon(page) {
  result.favicon = await page.evaluate(async () => {
    const link = document.querySelector('link[rel="icon"]')
    if (!link) return null
    const r = await fetch(link.href)
    return { href: link.getAttribute('href'), status: r.status, type: r.headers.get('content-type') }
  })
  if (result.favicon?.status !== 200 || !result.favicon.type?.startsWith('image/svg+xml')) fail(`no icon served for the page: ${JSON.stringify(result.favicon)}`)
}

/**
 * STOP_TRAIN=1: prints READY_FOR_TRAIN_STOP for the harness to stop the simulator, then every
 * camera's last picture must be marked stale within 3 s (greyed, "no video for N s", the fps and
 * glass-to-glass figures "— (stale N s)"), say "train offline" once the server knows, count the
 * age on, and show the telemetry's. Adds `stale_ms`, `stale_text`, `stale_figures`,
 * `offline_shown_ms`, `stale_text_later`, `telemetry_age` and `train_list_fit` (the offline reason
 * must not widen the train list past its panel).
 */
async function trainStops(page, cameras) {
  // Nothing is marked while frames still come: the marking must follow the stop. Checked before
  // the harness is told to stop the train (it stops it at once: 20 ms later the page may be right
  // to mark it).
  const staleNow = () => page.evaluate((cams) => cams.map((c) => document.querySelector(`[data-testid="camera-${c}"]`)?.dataset.stale), cameras)
  const first = await staleNow()
  if (first.some((x) => x === 'true')) fail(`a camera was marked stale while the train still sent video: ${JSON.stringify(first)}`)
  process.stdout.write('READY_FOR_TRAIN_STOP\n')
  const t = Date.now()
  log('READY_FOR_TRAIN_STOP printed; waiting for the stale marking')
  await waitFor(page, 'every camera marked stale after the train stopped', 3000 + 1000, (cams) =>
    cams.every((c) => document.querySelector(`[data-testid="camera-${c}"]`)?.dataset.stale === 'true' &&
      document.querySelector(`[data-testid="camera-stale-${c}"]`)), cameras)
  result.stale_ms = Date.now() - t
  if (result.stale_ms > 3000) fail(`the stale marking took ${result.stale_ms} ms after the stop (more than 3 s)`)
  const texts = async () => page.evaluate((cams) => Object.fromEntries(cams.map((c) => {
    const fig = document.querySelector(`[data-testid="camera-${c}"]`)
    const img = fig.querySelector('canvas, video')
    return [c, {
      banner: fig.querySelector(`[data-testid="camera-stale-${c}"]`)?.textContent.trim(),
      fps: fig.querySelector('[data-testid="overlay-fps"]')?.textContent.trim(),
      latency: fig.querySelector('[data-testid="overlay-latency"]')?.textContent.replace(/\s+/g, ' ').trim(),
      filter: img ? getComputedStyle(img).filter : null,
    }]
  })), cameras)
  const now = await texts()
  for (const c of cameras) {
    const x = now[c]
    if (!/^no video( for \d+ (s|min))?/.test(x.banner ?? '')) fail(`camera ${c}: the stale picture says "${x.banner}"`)
    if (!/^— \(stale( \d+ s)?\)$/.test(x.fps ?? '') || !/— \(stale( \d+ s)?\)/.test(x.latency ?? '')) fail(`camera ${c}: figures not marked stale: ${JSON.stringify(x)}`)
    if (!x.filter?.includes('grayscale')) fail(`camera ${c}: the stale picture is not greyed (filter ${x.filter})`)
  }
  result.stale_text = now[cameras[0]].banner
  result.stale_figures = { fps: now[cameras[0]].fps, latency: now[cameras[0]].latency }
  // The server learns that the train left (its QUIC connection closed): the picture says so.
  await waitFor(page, 'the stale picture saying "train offline"', 8000, (cams) =>
    cams.every((c) => document.querySelector(`[data-testid="camera-stale-${c}"]`)?.textContent.includes('train offline')), cameras)
  result.offline_shown_ms = Date.now() - t
  // The age counts on.
  await waitFor(page, 'the stale picture counting its age ("no video for N s")', 3000, (cams) =>
    cams.every((c) => /no video for [1-9]/.test(document.querySelector(`[data-testid="camera-stale-${c}"]`)?.textContent ?? '')), cameras)
  result.stale_text_later = (await texts())[cameras[0]]
  const tel = await page.evaluate(() => {
    const e = document.querySelector('[data-testid="telemetry-age"]')
    return e ? { text: e.textContent.trim(), stale: e.dataset.stale } : null
  })
  result.telemetry_age = tel
  if (tel?.stale !== 'true') fail(`telemetry not shown stale with its age after the stop: ${JSON.stringify(tel)}`)
  // The train list shows the offline reason inside its panel: clipped, whole in the tooltip.
  await waitFor(page, 'the offline reason in the train list', 3000, () => !!document.querySelector('[data-testid^="train-offline-reason-"]'))
  result.train_list_fit = await page.evaluate(() => {
    const reason = document.querySelector('[data-testid^="train-offline-reason-"]')
    const panel = document.querySelector('[data-testid="train-list"]').closest('.panel')
    return { reason: reason.getAttribute('title'), table_px: document.querySelector('[data-testid="train-list"]').scrollWidth, panel_px: panel.clientWidth, panel_scroll_px: panel.scrollWidth }
  })
  if (result.train_list_fit.panel_scroll_px > result.train_list_fit.panel_px) fail(`the offline reason pushes the train list out of its panel: ${JSON.stringify(result.train_list_fit)}`)
  await shot(page, 'train-stopped')
  log(`stale after ${result.stale_ms} ms: "${result.stale_text}", ${JSON.stringify(result.stale_figures)}; "train offline" after ${result.offline_shown_ms} ms; telemetry ${JSON.stringify(tel)}`)
}

/**
 * Auto's switches back to WebRTC (since `since`) and a switch by hand from WebRTC to WebSocket
 * log nothing in the page: no 404 (a DELETE of a WebRTC session the server already ended) and
 * no console error. Adds `switch_to_websocket_ms` and `switch_logged` ({not_found, console_errors}).
 */
async function quietSwitch(page, pageLog, cameras, since) {
  const h0 = await hook(page)
  if (h0.transport !== 'webrtc') fail(`the switch by hand starts from ${h0.transport}, not WebRTC`)
  const t = Date.now()
  await page.selectOption('[data-testid="transport-select"]', 'websocket')
  const painted = h0.stats[cameras[0]].framesPainted
  await waitFor(page, 'frames over WebSocket after switching to it by hand', 10000,
    ([cam, n]) => window.__railcast.transport === 'websocket' && window.__railcast.stats[cam].framesPainted > n + 10, [cameras[0], painted])
  result.switch_to_websocket_ms = Date.now() - t
  // The old link's DELETE goes out as it closes (keepalive): give its answer time to come.
  await sleep(1000)
  result.switch_logged = loggedSince(pageLog, since)
  log(`switched to WebSocket by hand in ${result.switch_to_websocket_ms} ms; logged since unblocking: ${JSON.stringify(result.switch_logged)}`)
  const { not_found: nf, console_errors: ce } = result.switch_logged
  if (nf.length || ce.length) fail(`the transport switches logged ${nf.length} 404s and ${ce.length} console errors: ${[...nf, ...ce].join('; ')}`)
}

/** Luma statistics of one <video>'s current picture, drawn onto a scratch canvas. */
function sampleVideo(testId) {
  const v = document.querySelector(`[data-testid="${testId}"]`)
  if (!v || !v.videoWidth) return null
  const c = document.createElement('canvas')
  c.width = v.videoWidth
  c.height = v.videoHeight
  const ctx = c.getContext('2d')
  ctx.drawImage(v, 0, 0)
  const d = ctx.getImageData(0, 0, c.width, c.height).data
  const grid = []
  let sum = 0
  let sum2 = 0
  for (let y = 4; y < c.height; y += 8) {
    for (let x = 4; x < c.width; x += 8) {
      const i = (y * c.width + x) * 4
      const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]
      grid.push(l)
      sum += l
      sum2 += l * l
    }
  }
  const mean = sum / grid.length
  return { width: c.width, height: c.height, mean, std: Math.sqrt(Math.max(0, sum2 / grid.length - mean * mean)), grid }
}

/** WHEP: each camera's media track plays in a <video>; the browser decodes it (no WebCodecs). */
async function whep(spec) {
  const train = await pickTrain()
  Object.assign(result, { train, requested_transport: spec.transport, with_token: !!token })
  const { page, pageErrors } = await launch()
  const t0 = Date.now()
  // JITTER_BUFFER_TARGET=MS: the console's ?jitterBufferTarget= (RTCRtpReceiver.jitterBufferTarget).
  const jbt = process.env.JITTER_BUFFER_TARGET ?? ''
  result.jitter_buffer_target_ms = jbt === '' ? null : Number(jbt)
  const extra = jbt === '' ? '' : `&jitterBufferTarget=${encodeURIComponent(jbt)}`
  await page.goto(consoleUrl(`transport=whep&train=${encodeURIComponent(train)}${extra}`, { token }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  const cameras = await waitFor(page, 'WHEP with 30 frames presented on every camera', 30000, () => {
    const h = window.__railcast
    if (h.transport !== 'whep' || !h.media || !h.cameras.length || h.media.tracks < h.cameras.length) return false
    return h.cameras.every((_, i) => (h.media.framesPresented[i] ?? 0) >= 30) ? h.cameras : false
  })
  result.first_frames_ms = Date.now() - t0
  const h0 = await hook(page)
  Object.assign(result, { transport: h0.transport, cameras, remote_control_id: h0.remoteControlId, tracks: h0.media.tracks })
  log(`whep: 30 frames presented on cameras ${cameras.join(', ')} after ${result.first_frames_ms} ms`)
  // Pictures: non-blank, changing.
  const first = {}
  for (const cam of cameras) first[cam] = await page.evaluate(sampleVideo, `camera-video-${cam}`)
  await sleep(1000)
  result.pictures = {}
  for (const cam of cameras) {
    const a = first[cam]
    const b = await page.evaluate(sampleVideo, `camera-video-${cam}`)
    if (!a || !b) fail(`camera ${cam}: no picture in its <video>`)
    if (b.std < 4) fail(`camera ${cam} <video> looks blank (luma mean ${b.mean.toFixed(1)}, std ${b.std.toFixed(2)})`)
    let diff = 0
    const len = Math.min(a.grid.length, b.grid.length)
    for (let i = 0; i < len; i++) diff += Math.abs(a.grid[i] - b.grid[i])
    diff /= Math.max(1, len)
    if (diff < 0.2) fail(`camera ${cam} <video> did not change in 1 s (mean abs luma diff ${diff.toFixed(3)})`)
    result.pictures[cam] = { width: b.width, height: b.height, luma_std: round(b.std), change: round(diff, 2) }
  }
  // Frame rate from presented frames, and the browser's own figures.
  const before = await hook(page)
  await sleep(measureMs)
  const after = await hook(page)
  result.per_camera = {}
  cameras.forEach((cam, i) => {
    const presented = (after.media.framesPresented[i] ?? 0) - (before.media.framesPresented[i] ?? 0)
    const st = after.media.stats.find((s) => s.index === i)
    if (!st || st.framesDecoded <= 0) fail(`camera ${cam}: getStats() shows no frame decoded (${JSON.stringify(st)})`)
    result.per_camera[cam] = {
      fps_presented: round((presented * 1000) / measureMs),
      frames_decoded: st.framesDecoded,
      packets_received: st.packetsReceived,
      packets_lost: st.packetsLost,
      jitter_ms: round(st.jitterMs, 2),
      jitter_buffer_ms: st.jitterBufferMs === null ? null : round(st.jitterBufferMs, 1),
      key_frames_decoded: st.keyFramesDecoded,
      pli_sent: st.pliSent,
      codec: st.codec,
      size: `${st.width}x${st.height}`,
    }
  })
  const latency = cameras.flatMap((_, i) => after.media.latency[i]?.latencySamples ?? [])
  if (!latency.length) fail('no glass-to-glass sample from the <video> elements (requestVideoFrameCallback rtpTimestamp)')
  Object.assign(result, {
    latency_p50_ms: round(pct(latency, 50)),
    latency_p95_ms: round(pct(latency, 95)),
    latency_samples: latency.length,
    clock_offset_ms: round(after.clockOffsetMs),
    clock_offset_applied: after.clock.applied,
  })
  await checkOverlay(page, cameras)
  const fps = Object.values(result.per_camera).map((c) => c.fps_presented)
  result.fps_min = Math.min(...fps)
  if (result.fps_min <= 0) fail(`a camera presented no frame in ${measureMs} ms: ${JSON.stringify(result.per_camera)}`)
  // The cab audio, when the train has it: the track plays (muted) in the audio panel's <audio>;
  // a click unmutes it and the samples keep coming.
  if (process.env.EXPECT_AUDIO === '1') {
    await waitFor(page, 'WHEP audio: 48,000 samples received (getStats)', 15000, () => (window.__railcast.media?.audio?.stats?.totalSamplesReceived ?? 0) >= 48000)
    const before = (await hook(page)).media.audio
    if (!before.muted) fail('the cab audio was not muted by default')
    await page.getByTestId('audio-mute').click()
    await waitFor(page, 'WHEP audio unmuted and still receiving', 10000, (n) => {
      const a = window.__railcast.media?.audio
      return a && !a.muted && a.stats.totalSamplesReceived > n + 24000
    }, before.stats.totalSamplesReceived)
    const a = (await hook(page)).media.audio.stats
    result.audio = {
      codec: a.codec,
      packets_received: a.packetsReceived,
      packets_lost: a.packetsLost,
      samples_received: a.totalSamplesReceived,
      audio_level: round(a.audioLevel, 3),
      jitter_buffer_ms: a.jitterBufferMs === null ? null : round(a.jitterBufferMs, 1),
    }
    log(`whep audio: ${JSON.stringify(result.audio)}`)
  }
  const ack = await command(page, 'cmd-horn')
  Object.assign(result, { ack_rtt_ms: ack.rtt_ms, ack_transport: ack.transport })
  if (ack.transport !== 'whep') fail(`the command went over ${ack.transport}, not the WHEP session`)
  await shot(page, 'streaming')
  log(`whep: glass-to-glass p50 ${result.latency_p50_ms} ms p95 ${result.latency_p95_ms} ms, ${JSON.stringify(result.per_camera)}, ack ${ack.rtt_ms} ms`)
  if (pageErrors.length) fail(`page errors: ${pageErrors.join('; ')}`)
  result.ok = true
  result.screenshots = screenshots
}

/** Plain HTTP from a host that is not localhost: no secure context; the console explains instead of painting black. */
async function insecure() {
  // The driver cannot resolve BASE_URL's name (only Chromium maps it): the train comes as TRAIN_ID.
  if (!trainArg) fail('insecure: give the train to watch (TRAIN_ID argument or TRAIN)')
  const { page, pageErrors } = await launch()
  await page.goto(consoleUrl(`transport=auto&train=${encodeURIComponent(trainArg)}`, { token }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  const facts = await page.evaluate(() => ({ secure: window.isSecureContext, decoder: typeof window.VideoDecoder, origin: location.origin }))
  Object.assign(result, { secure_context: facts.secure, video_decoder: facts.decoder, origin: facts.origin })
  if (facts.secure) fail(`${facts.origin} is a secure context: this scenario needs a plain-HTTP origin that is not localhost`)
  const box = page.getByTestId('playback-problem')
  await box.waitFor({ timeout: 10000 }).catch(() => fail('the console shows no explanation (data-testid="playback-problem")'))
  result.kind = await box.getAttribute('data-kind')
  result.explanation = (await box.innerText()).replace(/\s+/g, ' ').trim()
  if (result.kind !== 'insecure-context') fail(`the explanation is of kind "${result.kind}", not insecure-context`)
  const host = new URL(base).host
  for (const want of ['secure', `https://${host}/`, 'http://localhost:', 'http_tls_cert', 'docs/security.md']) {
    if (!result.explanation.includes(want)) fail(`the explanation does not mention "${want}": ${result.explanation}`)
  }
  // The rest of the console still works (it is signed in) and no camera is drawn.
  await waitFor(page, 'the role from GET /api/me', 15000, () => window.__railcast.role)
  result.role = (await hook(page)).role
  result.canvases = await page.locator('canvas').count()
  if (result.canvases) fail(`${result.canvases} camera canvases shown beside the explanation`)
  // Video does arrive (the transports work here), but there is nothing to decode it with: nothing
  // painted, and no error thrown in the page.
  await waitFor(page, 'video frames arriving', 20000, () => Object.values(window.__railcast.stats).some((s) => s.framesIn > 30))
  const h = await hook(page)
  result.train = h.trainId
  result.frames_in = Object.values(h.stats).reduce((n, st) => n + st.framesIn, 0)
  result.frames_painted = Object.values(h.stats).reduce((n, st) => n + st.framesPainted, 0)
  if (result.frames_painted) fail(`${result.frames_painted} frames painted without a secure context?`)
  if (pageErrors.length) fail(`errors in the page: ${pageErrors.join('; ')}`)
  await shot(page, 'insecure')
  log(`insecure origin ${facts.origin}: "${result.explanation.slice(0, 100)}…"`)
  if (pageErrors.length) result.page_errors = pageErrors
  result.ok = true
  result.screenshots = screenshots
}

const COMMAND_BUTTONS = ['cmd-keyframe', 'cmd-horn', 'cmd-set-speed']

/** Wait for the ack row of `requestId` to settle; its status, code and message. */
async function settled(page, requestId, timeoutMs = 20000) {
  await waitFor(page, `answer to command ${requestId}`, timeoutMs, (id) => {
    const row = document.querySelector(`[data-testid="ack-row"][data-request-id="${id}"]`)
    return row && row.getAttribute('data-status') !== 'pending'
  }, requestId)
  const h = await hook(page)
  const a = h.acks.find((x) => x.request_id === requestId)
  return { request_id: requestId, status: a?.status ?? null, code: a?.code ?? null, message: a?.message ?? null }
}

/** A viewer on the remote control an admin mapped: video, yes; commands, no. */
async function viewer(spec) {
  const rc = process.env.RAILCAST_RC
  if (!token) fail('viewer: set RAILCAST_TOKEN to a viewer token')
  if (!rc) fail('viewer: set RAILCAST_RC to the remote control an admin assigned to the viewer and mapped to a train')
  Object.assign(result, { requested_transport: spec.transport, with_token: true, requested_remote_control: rc })
  const { page, pageErrors } = await launch()
  const t0 = Date.now()
  await page.goto(consoleUrl(`transport=${spec.transport}`, { token, rc }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  result.token_removed_from_url = !page.url().includes(encodeURIComponent(token)) && !page.url().includes(token)
  if (!result.token_removed_from_url) fail(`the token is still in the visible URL: ${page.url()}`)

  await waitFor(page, 'the viewer role from GET /api/me', 15000, () => window.__railcast.role)
  const cameras = await waitForFrames(page, spec.expect, null, 30000)
  result.first_frames_ms = Date.now() - t0
  const h0 = await hook(page)
  Object.assign(result, {
    user: h0.user,
    role: h0.role,
    train: h0.trainId,
    transport: h0.transport,
    cameras,
    remote_control_id: h0.remoteControlId,
    identity: (await page.getByTestId('identity').innerText()).replace(/\s+/g, ' ').trim(),
  })
  if (h0.role !== 'viewer') fail(`GET /api/me says role "${h0.role}", not viewer`)
  if (h0.remoteControlId !== rc) fail(`the console connected as ${h0.remoteControlId}, not the assigned ${rc}`)
  if (!result.identity.includes('viewer')) fail(`the header does not show the viewer role: "${result.identity}"`)
  log(`viewer ${h0.user} on ${rc} (${h0.trainId}) over ${h0.transport}: frames on cameras ${cameras.join(', ')}`)

  result.video = true
  result.pictures = await checkPictures(page, cameras, 'viewer pictures')
  Object.assign(result, await measure(page, cameras, Math.min(measureMs, 3000)))
  await checkOverlay(page, cameras)

  // The train list is read-only for a viewer.
  result.train_list_read_only =
    (await page.getByTestId('train-list').getAttribute('data-readonly')) === 'true' &&
    (await page.locator('[data-testid^="train-select-"]').count()) === 0
  if (!result.train_list_read_only) fail('the train list offers "watch" buttons to a viewer')

  // The command buttons: disabled, with the reason; any the UI lets through must be refused.
  const disabled = {}
  for (const id of COMMAND_BUTTONS) disabled[id] = await page.getByTestId(id).isDisabled()
  result.command_buttons_disabled = disabled
  result.command_blocked = (await page.getByTestId('command-blocked').count())
    ? (await page.getByTestId('command-blocked').innerText()).trim()
    : null
  result.command_ui = Object.values(disabled).every(Boolean) ? 'disabled' : 'enabled'
  if (result.command_ui === 'enabled') {
    const id = COMMAND_BUTTONS.find((b) => !disabled[b])
    const before = (await hook(page)).acks.map((a) => a.request_id)
    await page.getByTestId(id).click()
    await waitFor(page, `a row for the ${id} click`, 5000, (old) => window.__railcast.acks.some((a) => !old.includes(a.request_id)), before)
    const row = (await hook(page)).acks.find((a) => !before.includes(a.request_id))
    result.ui_command = await settled(page, row.request_id)
    if (result.ui_command.status !== 'error' || result.ui_command.code !== 'forbidden') {
      fail(`the UI let a viewer send ${id} and the answer was ${result.ui_command.status} ${result.ui_command.code ?? ''} (${result.ui_command.message})`)
    }
  } else if (!result.command_blocked || !/viewer/.test(result.command_blocked)) {
    fail(`the commands are disabled but the reason does not name the viewer role: "${result.command_blocked}"`)
  }

  // The server must refuse what the UI disables: send one past the UI.
  const forcedId = await page.evaluate(() => window.__railcastSend({ type: 'horn', duration_ms: 100 }))
  result.forced_command = await settled(page, forcedId)
  if (result.forced_command.status !== 'error' || result.forced_command.code !== 'forbidden') {
    fail(`a viewer's horn sent past the UI got ${result.forced_command.status} ${result.forced_command.code ?? ''} (${result.forced_command.message}), not command_error forbidden`)
  }
  result.command_error_shown = await page.getByTestId('command-error').getAttribute('data-code')
  if (result.command_error_shown !== 'forbidden') fail(`the commands panel does not show the forbidden refusal (${result.command_error_shown})`)
  result.command_refused = true

  // Video keeps flowing after the refusal.
  const painted = (await hook(page)).stats[cameras[0]].framesPainted
  await waitFor(page, 'frames after the refused command', 10000, ([cam, n]) => window.__railcast.stats[cam].framesPainted > n + 5, [cameras[0], painted])
  await shot(page, 'viewer')
  log(`viewer: commands ${result.command_ui} ("${result.command_blocked}"), forced horn → ${result.forced_command.code}`)
  if (pageErrors.length) result.page_errors = pageErrors
  result.ok = true
  result.screenshots = screenshots
}

/** GET on the server as RAILCAST_TOKEN: [status, body]. */
async function getJson(path) {
  const r = await fetch(`${base}${path}`, { headers: bearer() })
  const text = await r.text()
  try {
    return [r.status, JSON.parse(text)]
  } catch {
    return [r.status, text]
  }
}

/** The console takes control, commands, and dies: the server must end the lease and tell the train. */
async function controlLease(spec) {
  if (!token) fail('control: set RAILCAST_TOKEN to an admin token')
  const train = await pickTrain()
  Object.assign(result, { train, requested_transport: spec.transport, with_token: true })
  const { page, pageErrors } = await launch()
  await page.goto(consoleUrl(`transport=${spec.transport}&train=${encodeURIComponent(train)}`, { token }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  await waitFor(page, `mapped to ${train}, online, over ${spec.expect}`, 30000, ([want, t]) => {
    const h = window.__railcast
    return h.transport === want && h.trainId === t && h.online && h.controlOffer
  }, [spec.expect, train])
  const h0 = await hook(page)
  Object.assign(result, { transport: h0.transport, role: h0.role, console_id: h0.consoleId, offer_before: h0.controlOffer, ping_every_ms_before: h0.pingEveryMs })
  if (h0.controlOffer !== 'take') fail(`the panel offers "${h0.controlOffer}", not "take" (holder ${JSON.stringify(h0.control.holder)})`)

  const t0 = Date.now()
  await page.getByTestId('control-take').click()
  await waitFor(page, 'the panel showing that this console holds control', 5000, () => {
    const el = document.querySelector('[data-testid="control"]')
    return el?.getAttribute('data-mine') === 'true' && document.querySelector('[data-testid="control-mine"]')
  })
  result.take_ms = Date.now() - t0
  const h1 = await hook(page)
  result.holder_shown = (await page.getByTestId('control-holder').innerText()).trim()
  result.ping_every_ms = h1.pingEveryMs
  if (!result.holder_shown.startsWith('you')) fail(`the holder shows "${result.holder_shown}", not "you …"`)
  if (h1.pingEveryMs !== 250) fail(`holding control, the console pings every ${h1.pingEveryMs} ms, not 250`)
  const [st, t1] = await getJson(`/api/trains/${encodeURIComponent(train)}`)
  result.server_control = st === 200 ? t1.control : { status: st }
  if (t1?.control?.console_id !== h0.consoleId) fail(`GET /api/trains/${train} names ${JSON.stringify(t1?.control)} as holder, not console ${h0.consoleId}`)

  const ack = await command(page, 'cmd-horn')
  Object.assign(result, { ack_rtt_ms: ack.rtt_ms, train_rtt_ms: ack.train_rtt_ms, ack_transport: ack.transport })
  // Hold a while on the 250 ms heartbeat: the lease must not lapse while the page lives.
  await sleep(1500)
  const h2 = await hook(page)
  if (!h2.control.mine || h2.control.lost) fail(`control lapsed while the page lived: ${JSON.stringify(h2.control)}`)
  await shot(page, 'holding')

  // The console dies.
  const how = ['close', 'sigkill'].includes(process.env.CONTROL_END) ? process.env.CONTROL_END : 'crash'
  result.end = how
  let tEnd = Date.now()
  if (how === 'sigkill') {
    // Chromium is this script's child: SIGKILL it and every process under it (zygotes,
    // network service, renderers), found first so that none can outlive the others.
    const pids = []
    for (let next = childPids(process.pid); next.length; next = next.flatMap(childPids)) pids.push(...next)
    if (pids.length === 0) fail('no Chromium process under this script to kill')
    tEnd = Date.now()
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone with its parent
      }
    }
    result.killed_pids = pids.length
    browser = null
  } else if (how === 'crash') {
    const cdp = await browser.newCDPSession(page)
    // Not awaited: the answer never comes, the renderer is gone.
    cdp.send('Page.crash').catch(() => {})
  } else {
    await page.close()
  }
  let nullAt = null
  let lastControl = null
  while (Date.now() - tEnd < 5000) {
    const [s2, t2] = await getJson(`/api/trains/${encodeURIComponent(train)}`)
    if (s2 === 200) {
      lastControl = t2.control
      if (t2.control === null) {
        nullAt = Date.now() - tEnd
        break
      }
    }
    await sleep(25)
  }
  if (nullAt === null) fail(`GET /api/trains/${train} still names a holder 5 s after the page's ${how}: ${JSON.stringify(lastControl)}`)
  result.control_null_ms = nullAt
  let lost = null
  while (Date.now() - tEnd < 8000) {
    const [s3, page3] = await getJson(`/api/audit?train=${encodeURIComponent(train)}&limit=1000`)
    if (s3 !== 200) fail(`GET /api/audit: ${s3} ${JSON.stringify(page3)}`)
    lost = (page3.entries ?? []).find((e) => e.command?.type === 'operator_lost') ?? null
    if (lost) {
      result.audit_entries = page3.entries.map((e) => `${e.seq} ${e.principal} ${e.command?.type} ${e.result}`)
      break
    }
    await sleep(100)
  }
  if (!lost) fail(`no operator_lost entry in GET /api/audit?train=${train} 8 s after the page's ${how}`)
  result.operator_lost = { principal: lost.principal, role: lost.role, result: lost.result, ok: lost.ok, reason: lost.command.reason, operator: lost.command.operator, rtt_us: lost.rtt_us, session: lost.session, transport: lost.transport }
  result.operator_lost_ms = Math.round(lost.at_us / 1000 - tEnd)
  log(`control: taken in ${result.take_ms} ms, horn acked in ${ack.rtt_ms} ms; page ${how} → control null after ${nullAt} ms, operator_lost (${lost.result}) at +${result.operator_lost_ms} ms: ${lost.command.reason}`)
  if (pageErrors.length) result.page_errors = pageErrors
  result.ok = true
  result.screenshots = screenshots
}

/**
 * A cluster's command history: the console, on one node, shows the horn it sends (audited on its
 * node) and the commands other nodes' clients sent (AUDIT_NODES: every node that has some), each
 * row naming its node, and no "did not answer" note.
 */
async function clusterAudit(spec) {
  if (!token) fail('cluster-audit: set RAILCAST_TOKEN to an admin token')
  const nodes = (process.env.AUDIT_NODES ?? '').split(',').filter(Boolean)
  if (nodes.length < 2) fail('cluster-audit: set AUDIT_NODES to the node ids whose entries must show')
  const train = await pickTrain()
  Object.assign(result, { train, requested_transport: spec.transport, with_token: true, nodes })
  const { page, pageErrors } = await launch()
  await page.goto(consoleUrl(`transport=${spec.transport}&train=${encodeURIComponent(train)}`, { token }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  await waitFor(page, `mapped to ${train}, online, over ${spec.expect}`, 30000, ([want, t]) => {
    const h = window.__railcast
    return h.transport === want && h.trainId === t && h.online
  }, [spec.expect, train])
  // The ack log first (the history replaces it when shown).
  const ack = await command(page, 'cmd-horn')
  const t0 = Date.now()
  await page.getByTestId('audit-toggle').check()
  await waitFor(page, `the history showing horns audited on ${nodes.join(' and ')}`, 10000, (want) => {
    const rows = [...document.querySelectorAll('[data-testid="audit-row"]')]
    return want.every((n) => rows.some((r) => r.getAttribute('data-node') === n && r.getAttribute('data-command') === 'horn'))
  }, nodes)
  result.history_ms = Date.now() - t0
  result.history = await page.$$eval('[data-testid="audit-row"]', (rows) =>
    rows.map((r) => ({ node: r.getAttribute('data-node'), seq: Number(r.getAttribute('data-seq')), command: r.getAttribute('data-command'), who: r.querySelector('td:nth-child(2)')?.textContent?.trim() ?? '' })))
  for (const n of nodes) {
    if (!result.history.some((r) => r.node === n && r.who.includes(`on ${n}`))) fail(`no history row says "on ${n}": ${JSON.stringify(result.history)}`)
  }
  const keys = result.history.map((r) => `${r.node}:${r.seq}`)
  if (new Set(keys).size !== keys.length) fail(`the history shows an entry twice: ${keys.join(' ')}`)
  if (await page.getByTestId('audit-missing').count()) fail(`the history says: ${await page.getByTestId('audit-missing').innerText()}`)
  await shot(page, 'cluster-history')
  log(`cluster audit: horn acked in ${ack.rtt_ms} ms, the history showed ${nodes.join(' and ')} after ${result.history_ms} ms: ${keys.join(' ')}`)
  if (pageErrors.length) result.page_errors = pageErrors
  result.ok = true
  result.screenshots = screenshots
}

/** A wrong token: the prompt with the server's 401 message, no video, and the console stops asking. */
async function badToken(spec) {
  const bad = process.env.RAILCAST_BAD_TOKEN || `wrong-${randomBytes(12).toString('hex')}`
  // What the server itself says to this token.
  const r = await fetch(`${base}/api/me`, { headers: bearer(bad) })
  const text = await r.text()
  let serverMessage = text
  try {
    serverMessage = JSON.parse(text).message ?? text
  } catch {
    // not JSON
  }
  Object.assign(result, { requested_transport: spec.transport, server_status: r.status, server_message: serverMessage })
  if (r.status !== 401) fail(`GET /api/me with a wrong token answered ${r.status} (${text}), not 401`)

  const { page, pageErrors } = await launch()
  const requests = []
  let sockets = 0
  page.on('request', (q) => {
    if (new URL(q.url()).pathname.startsWith('/api/')) requests.push({ at: Date.now(), path: new URL(q.url()).pathname })
  })
  page.on('websocket', () => sockets++)
  await page.goto(consoleUrl(`transport=${spec.transport}`, { token: bad }))
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  result.token_removed_from_url = !page.url().includes(bad)
  await waitFor(page, 'the token prompt with the server message', 15000, () => {
    const m = document.querySelector('[data-testid="token-prompt"] [data-testid="token-error-message"]')
    return m && m.textContent.trim() ? true : false
  })
  const promptAt = Date.now()
  result.token_prompt = await page.getByTestId('token-prompt').isVisible()
  result.token_input = await page.getByTestId('token-input').isVisible()
  result.auth_error = (await page.getByTestId('token-error-message').innerText()).trim()
  if (result.auth_error !== serverMessage.trim()) fail(`the prompt says "${result.auth_error}", the server said "${serverMessage}"`)
  if (!result.token_prompt || !result.token_input) fail('the token prompt or its input is not visible')

  // No video, and no more requests, for a while.
  await sleep(3000)
  const h = await hook(page)
  const canvases = await page.locator('[data-testid^="camera-canvas-"]').count()
  const painted = Object.values(h.stats).reduce((n, s) => n + s.framesPainted, 0)
  Object.assign(result, {
    video: canvases > 0 || painted > 0 || !!h.transport,
    canvases,
    frames_painted: painted,
    transport: h.transport,
    state: h.state,
    role: h.role,
    hook_auth_error: h.authError,
    api_requests: requests.length,
    api_requests_after_prompt: requests.filter((q) => q.at > promptAt).map((q) => q.path),
    websocket_attempts: sockets,
  })
  if (result.video) fail(`video with a wrong token: ${canvases} canvases, ${painted} frames painted, transport ${h.transport}`)
  if (h.role) fail(`the console believes it is signed in as ${h.role}`)
  if (result.api_requests_after_prompt.length > 1) fail(`the console kept asking the server after the 401: ${result.api_requests_after_prompt.join(', ')}`)
  await shot(page, 'bad-token')
  log(`bad token: prompt "${result.auth_error}", no video, ${result.api_requests} API requests (${result.api_requests_after_prompt.length} after the prompt)`)
  if (pageErrors.length) result.page_errors = pageErrors
  result.ok = true
  result.screenshots = screenshots
}

try {
  await main()
  process.stdout.write(JSON.stringify(result) + '\n')
} catch (e) {
  const msg = e instanceof Failure ? e.message : e?.stack ?? String(e)
  result.ok = false
  result.error = msg
  try {
    const page = browser?.pages()[0]
    if (page) {
      await shot(page, 'failure')
      result.hook = await hook(page).catch(() => null)
      if (result.hook) for (const s of Object.values(result.hook.stats ?? {})) delete s.latencySamples
    }
  } catch {
    // the browser may be what failed
  }
  result.screenshots = screenshots
  process.stdout.write(JSON.stringify(result) + '\n')
  process.stderr.write(`console e2e (${scenario}) FAILED: ${msg}\n`)
  process.exitCode = 1
} finally {
  await browser?.close().catch(() => {})
  if (userDir) rmSync(userDir, { recursive: true, force: true })
}
