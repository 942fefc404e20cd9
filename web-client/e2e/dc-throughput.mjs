#!/usr/bin/env node
// Throughput of ONE WebRTC data channel from the railcast server to Debian's Chromium (never a
// downloaded browser). Used by `railcast-bench --scenario dc-chromium` (docs/benchmarks.md).
//
//   BASE_URL=http://127.0.0.1:8080 RAILCAST_TOKEN=<token> RAILCAST_RC=<remote control id> \
//     node e2e/dc-throughput.mjs
//
// The server must be running at BASE_URL with a train streaming to the remote control RAILCAST_RC.
// The page (BASE_URL/healthz: same origin for fetch, nothing else running in it) performs the REST
// signaling itself (README "WebRTC data channels"): POST /api/webrtc/offer, setRemoteDescription,
// createAnswer, POST /api/webrtc/answer, its candidates trickled to /api/webrtc/ice-candidate (an
// empty one at the end). Once `video` is open and a first message has arrived, this prints
//   READY {"setup_ms":…}
// on stdout. Then a measurement window, in µs since the epoch on the host clock:
//   - WINDOW=stdin (the bench): the window comes as one line `window <start_us> <end_us>` on stdin;
//     stdin closing before that aborts the run;
//   - otherwise it starts WARMUP_MS (default 1000) after READY and lasts MEASURE_MS (default 5000).
// A message on `video` carries one or more whole video packets back to back (docs/wire-format.md
// §2.6). The page counts every message (binaryType arraybuffer) and splits it as §2.6 says, reading
// of each packet only its 26-byte header's capture timestamp and payload length (§2):
//   bytes / messages      messages received while the window is open (receive time) → mbit_s,
//                         messages_per_s
//   packets               packets received while the window is open (receive time) → packets_per_s
//   window_bytes / window_messages   PACKETS (and their bytes) CAPTURED inside the window, received
//                         up to GRACE_MS (default 1000) after it closes: compare with what the train
//                         sent in it
//   latency_*_ms          capture → onmessage for those packets (host clock: performance.timeOrigin
//                         + performance.now() against capture_us), 0.1 ms buckets up to 10 s
//   pings / pongs, ping_rtt_p50_ms / _p99_ms / _max_ms
//                         a `ping` on `command` every PING_MS (default 100) while the window is
//                         open, and the round trips of the `pong`s (answered by the server at once)
//                         that arrive before the results are collected: how long a command's ack
//                         waits while video saturates the peer
//   malformed             messages whose split failed (fewer than 26 bytes left, not an `RC` v1 video
//                         packet, a packet running past the end): the packets before it still count
// and prints ONE JSON line of results on stdout last; on failure `"ok":false` with `error`, the
// reason on stderr too, exit status 1.
//
// Env: CHROMIUM (default /usr/bin/chromium), OPEN_TIMEOUT_MS (default 20000), RTC_FLAGS=1 (Chromium
// offers plain loopback candidates instead of mDNS names), E2E_VERBOSE=1 (page console on stderr).
import { chromium } from 'playwright-core'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

const base = (process.env.BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
const token = process.env.RAILCAST_TOKEN || ''
const rc = process.env.RAILCAST_RC || ''
const warmupMs = Number(process.env.WARMUP_MS ?? 1000)
const measureMs = Number(process.env.MEASURE_MS ?? 5000)
const graceMs = Number(process.env.GRACE_MS ?? 1000)
const pingMs = Number(process.env.PING_MS ?? 100)
const openTimeoutMs = Number(process.env.OPEN_TIMEOUT_MS ?? 20000)
const windowFromStdin = process.env.WINDOW === 'stdin'
const verbose = !!process.env.E2E_VERBOSE

const log = (...a) => process.stderr.write(`[dc-throughput ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const result = { ok: false }
let browser
let userDir

/** Next stdin line `window START END` → [start_us, end_us]; rejects when stdin ends first. */
function windowFromInput() {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin })
    rl.on('line', (line) => {
      if (verbose) log('stdin:', line)
      const [word, a, b] = line.trim().split(/\s+/)
      if (word === 'window' && Number(a) > 0 && Number(b) > Number(a)) {
        resolve([Number(a), Number(b)])
        rl.close()
      }
    })
    rl.on('close', () => reject(new Error('stdin closed before the window was given')))
  })
}

/** In the page: signaling, then counting on `video`. Resolves once a first video message has arrived. */
async function open({ rc, token, openTimeoutMs }) {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` }
  const post = async (path, body) => {
    const r = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) })
    if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${await r.text()}`)
    return r.status === 204 ? null : r.json()
  }
  const t0 = performance.now()
  const nowUs = () => (performance.timeOrigin + performance.now()) * 1000
  // Counters: plain numbers and one typed array, so a packet costs a few additions.
  const s = {
    all_bytes: 0, all_messages: 0, bytes: 0, messages: 0, packets: 0, window_bytes: 0, window_messages: 0,
    malformed: 0, last_in_window_at_us: 0, start: Infinity, end: Infinity, hist: new Uint32Array(100001),
    latency_max_us: 0,
    // `ping` on `command` every PING_MS while the window is open; `pong` round trips in ms.
    pings: 0, rtts: [],
  }
  const offer = await post('/api/webrtc/offer', { remote_control_id: rc })
  const pc = new RTCPeerConnection({ iceServers: offer.ice_servers })
  const d = { command: null, pc, session_id: offer.session_id, s, setup_ms: null, first_message_ms: null, closed: null }
  window.__dc = d
  const opened = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`video not open with a message within ${openTimeoutMs} ms (connection ${pc.connectionState}, ICE ${pc.iceConnectionState})`)), openTimeoutMs)
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') reject(new Error('connection failed'))
    }
    pc.ondatachannel = (e) => {
      const dc = e.channel
      dc.binaryType = 'arraybuffer'
      dc.onclose = () => {
        d.closed = d.closed ?? `${dc.label} channel closed`
      }
      if (dc.label !== 'video') {
        d.command = dc
        dc.onmessage = (m) => {
          if (typeof m.data !== 'string') return
          const ev = JSON.parse(m.data)
          if (ev.type === 'pong' && typeof ev.t === 'number' && ev.t > 0) s.rtts.push(performance.now() - ev.t)
        }
        return
      }
      dc.onopen = () => {
        d.setup_ms = performance.now() - t0
      }
      dc.onmessage = (m) => {
        const b = m.data
        const n = b.byteLength
        s.all_bytes += n
        s.all_messages++
        if (s.all_messages === 1) {
          d.first_message_ms = performance.now() - t0
          clearTimeout(timer)
          resolve()
        }
        if (s.start === Infinity) return
        const now = nowUs()
        const inWindow = now >= s.start && now < s.end
        if (inWindow) {
          s.bytes += n
          s.messages++
        }
        // Split per §2.6: whole packets back to back; a framing error ends the message (an empty
        // message is one too).
        const v = new DataView(b)
        let off = 0
        do {
          const left = n - off
          if (left < 26 || v.getUint16(off) !== 0x5243 || v.getUint8(off + 2) !== 1 || v.getUint8(off + 3) !== 1) {
            s.malformed++
            break
          }
          const len = 26 + v.getUint16(off + 24)
          if (len > left) {
            s.malformed++
            break
          }
          if (inWindow) s.packets++
          const capture = v.getUint32(off + 12) * 4294967296 + v.getUint32(off + 16)
          if (capture >= s.start && capture < s.end) {
            s.window_bytes += len
            s.window_messages++
            s.last_in_window_at_us = now
            const lat = now - capture
            s.hist[lat <= 0 ? 0 : Math.min(100000, Math.floor(lat / 100))]++
            if (lat > s.latency_max_us) s.latency_max_us = lat
          }
          off += len
        } while (off < n)
      }
    }
  })
  pc.onicecandidate = (e) => {
    const c = e.candidate ? e.candidate.toJSON() : { candidate: '' }
    post('/api/webrtc/ice-candidate', { session_id: offer.session_id, ...c }).catch(() => {})
  }
  await pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp })
  await pc.setLocalDescription(await pc.createAnswer())
  await post('/api/webrtc/answer', { session_id: offer.session_id, type: 'answer', sdp: pc.localDescription.sdp })
  await opened
  return { session_id: d.session_id, setup_ms: d.setup_ms, first_message_ms: d.first_message_ms }
}

/** In the page: what was counted, the latency quantiles and a few getStats() figures; closes the session. */
async function collect({ token }) {
  const d = window.__dc
  const s = d.s
  clearInterval(d.pinger)
  const rtts = [...s.rtts].sort((a, b) => a - b)
  const rq = (p) => (rtts.length ? rtts[Math.max(0, Math.ceil(p * rtts.length) - 1)] : null)
  const q = (p) => {
    const n = s.window_messages
    if (!n) return null
    const rank = Math.max(1, Math.ceil(p * n))
    let seen = 0
    for (let i = 0; i < s.hist.length; i++) {
      seen += s.hist[i]
      if (seen >= rank) return Math.min((i + 1) * 100, s.latency_max_us) / 1000
    }
    return s.latency_max_us / 1000
  }
  const stats = {}
  const report = await d.pc.getStats()
  report.forEach((r) => {
    if (r.type === 'data-channel' && r.label === 'video') stats.video = { messagesReceived: r.messagesReceived, bytesReceived: r.bytesReceived, state: r.state }
    if (r.type === 'transport') stats.transport = { bytesReceived: r.bytesReceived, packetsReceived: r.packetsReceived, bytesSent: r.bytesSent, packetsSent: r.packetsSent, dtlsCipher: r.dtlsCipher }
    if (r.type === 'candidate-pair' && r.nominated) stats.pair = { currentRoundTripTime: r.currentRoundTripTime, bytesReceived: r.bytesReceived, packetsReceived: r.packetsReceived, packetsDiscardedOnSend: r.packetsDiscardedOnSend }
  })
  await fetch(`/api/webrtc/sessions/${encodeURIComponent(d.session_id)}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } }).catch(() => {})
  d.pc.close()
  return {
    bytes: s.bytes, messages: s.messages, packets: s.packets, window_bytes: s.window_bytes, window_messages: s.window_messages,
    all_bytes: s.all_bytes, all_messages: s.all_messages, malformed: s.malformed, closed: d.closed,
    latency_samples: s.window_messages, latency_p50_ms: q(0.5), latency_p99_ms: q(0.99), latency_max_ms: s.window_messages ? s.latency_max_us / 1000 : null,
    pings: s.pings, pongs: rtts.length, ping_rtt_p50_ms: rq(0.5), ping_rtt_p99_ms: rq(0.99), ping_rtt_max_ms: rtts.length ? rtts[rtts.length - 1] : null,
    last_in_window_after_end_ms: s.last_in_window_at_us ? (s.last_in_window_at_us - s.end) / 1000 : null,
    stats,
  }
}

async function main() {
  if (!token || !rc) throw new Error('RAILCAST_TOKEN and RAILCAST_RC must be set')
  userDir = mkdtempSync(join(tmpdir(), 'railcast-dc-throughput-'))
  browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      ...(process.env.RTC_FLAGS ? ['--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns'] : [])],
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(String(e)))
  if (verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`))
  // Same origin as /api, and nothing else running in the page.
  await page.goto(`${base}/healthz`)
  result.user_agent = await page.evaluate(() => navigator.userAgent)
  Object.assign(result, await page.evaluate(open, { rc, token, openTimeoutMs }))
  process.stdout.write(`READY ${JSON.stringify({ setup_ms: result.setup_ms, first_message_ms: result.first_message_ms })}\n`)
  let start, end
  if (windowFromStdin) {
    ;[start, end] = await windowFromInput()
  } else {
    await sleep(warmupMs)
    start = Date.now() * 1000
    end = start + measureMs * 1000
  }
  await page.evaluate(([a, b, pingMs]) => {
    const d = window.__dc
    d.s.end = b
    d.s.start = a
    // The command channel's round trip while video floods the peer (ping → pong, answered by the
    // server at once): what an operator's command ack would wait.
    const delay = Math.max(0, a / 1000 - (performance.timeOrigin + performance.now()))
    setTimeout(() => {
      d.pinger = setInterval(() => {
        if (d.command?.readyState !== 'open' || performance.timeOrigin + performance.now() >= b / 1000) return
        d.s.pings++
        d.command.send(JSON.stringify({ type: 'ping', t: performance.now() }))
      }, pingMs)
    }, delay)
  }, [start, end, pingMs])
  const wait = end / 1000 + graceMs - Date.now()
  if (wait > 0) await sleep(wait)
  const c = await page.evaluate(collect, { token })
  const seconds = (end - start) / 1e6
  Object.assign(result, c, {
    window_start_us: start,
    window_end_us: end,
    seconds,
    mbit_s: (c.bytes * 8) / seconds / 1e6,
    messages_per_s: c.messages / seconds,
    packets_per_s: c.packets / seconds,
    window_mbit_s: (c.window_bytes * 8) / seconds / 1e6,
    page_errors: pageErrors,
  })
  if (c.closed) throw new Error(`${c.closed} during the run`)
  if (!c.bytes) throw new Error('no byte received on video during the window')
  result.ok = true
}

let status = 0
try {
  await main()
} catch (e) {
  result.error = e instanceof Error ? e.message : String(e)
  log('FAILED:', result.error)
  status = 1
} finally {
  await browser?.close().catch(() => {})
  if (userDir) rmSync(userDir, { recursive: true, force: true })
}
process.stdout.write(`${JSON.stringify(result)}\n`)
process.exit(status)
