#!/usr/bin/env node
// End-to-end check of the console's playback view (issue 26) in Debian's Chromium (never a
// downloaded browser):
//
//   BASE_URL=http://127.0.0.1:8080 RAILCAST_TOKEN=ADMIN_TOKEN ARTIFACTS_DIR=artifacts node e2e/playback.mjs
//
// The server must record (`--record-dir`, short segments: `--record-segment-duration 2s`) the
// simulator's PLAYBACK_TRAIN (default train-1) at PLAYBACK_FPS (default 10) with a keyframe every
// second. As an admin, the driver:
// 1. opens the single view of the train, sends a horn command (once 3.5 s are recorded) and waits
//    for its ack;
// 2. waits until PLAYBACK_RECORDED_S (default 6) seconds of camera-0 are recorded, then clicks the
//    command's "▶ replay": the playback view opens with the playhead (wall-clock time) at most 5 s
//    before the command's time and not after it;
// 3. checks the timeline shows the span(s) of camera-0 as bars;
// 4. sets the window to PLAYBACK_SECONDS (default 4) and clicks camera-0's row PLAYBACK_OFFSET_S
//    (default 1) seconds into the recording: a window that crosses a segment boundary. In the page,
//    `video.requestVideoFrameCallback` counts the frames presented (distinct media times) while it
//    plays to its end: `video.duration` must equal the window within one frame, and the frames
//    presented fps × duration within PLAYBACK_FRAME_SLACK (default 3);
// 5. seeks with the view's slider to PLAYBACK_SEEK_S (default 1.5) s: currentTime lands there
//    (within a frame), the playhead says window start + that, and frames are presented after it
//    until the end;
// 6. "next window ▶" asks for the window that starts where this one ended;
// 7. with the cab audio recorded (`--audio tone`), "play audio-N alongside" plays it in step with
//    the video (within 0.4 s);
// 8. "Stop recording" and "Start recording" reach the server (`GET …/recordings` says so);
// 9. back in the single view, "Recordings" next to the train opens the view again.
// It prints ONE JSON line of results on stdout (`ok`, and on failure `error`), the reason again on
// stderr, and exits 1 on failure. Nothing of the page is mocked: the real server, simulator and browser.
import { chromium } from 'playwright-core'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const base = (process.env.BASE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
const artifacts = resolve(process.env.ARTIFACTS_DIR ?? 'artifacts')
const token = process.env.RAILCAST_TOKEN || null
const train = process.env.PLAYBACK_TRAIN ?? 'train-1'
const fps = Number(process.env.PLAYBACK_FPS ?? 10)
const seconds = Number(process.env.PLAYBACK_SECONDS ?? 4)
const offsetS = Number(process.env.PLAYBACK_OFFSET_S ?? 1)
const recordedS = Number(process.env.PLAYBACK_RECORDED_S ?? 6)
const seekS = Number(process.env.PLAYBACK_SEEK_S ?? 1.5)
const frameSlack = Number(process.env.PLAYBACK_FRAME_SLACK ?? 3)
const verbose = !!process.env.E2E_VERBOSE

const log = (...a) => process.stderr.write(`[playback ${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const round = (v, d = 3) => (typeof v === 'number' ? Number(v.toFixed(d)) : v)
const result = { ok: false, scenario: 'playback', base_url: base, train, fps, requested_s: seconds }
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
  let body = null
  try {
    body = text ? JSON.parse(text) : null
  } catch {
    body = text
  }
  return { status: r.status, body }
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
  const path = join(artifacts, `playback-${name}.png`)
  await page.screenshot({ path, fullPage: true })
  screenshots.push(path)
}

const hook = (page) => page.evaluate(() => window.__railcastPlayback ?? null)

/** Camera-0's recorded spans from the API: [{ start, end }] in epoch ms. */
async function recordedSpans() {
  const r = await api('GET', `/api/trains/${encodeURIComponent(train)}/recordings`)
  if (r.status !== 200) return { status: r.status, body: r.body, spans: [] }
  const cam = (r.body.sources ?? []).find((s) => s.source === 'camera-0')
  return { status: 200, body: r.body, spans: (cam?.spans ?? []).map((s) => ({ start: Date.parse(s.start), end: Date.parse(s.end) })) }
}

/** In the page: count the frames `video` presents (distinct media times) from now on. */
function countFrames() {
  const v = document.querySelector('[data-testid="playback-video"]')
  const c = { frames: 0, first: null, last: null, seen: new Set(), callbacks: 0 }
  window.__pbCount = c
  const cb = (_now, meta) => {
    if (window.__pbCount !== c) return
    c.callbacks++
    const key = meta.mediaTime.toFixed(4)
    if (!c.seen.has(key)) {
      c.seen.add(key)
      c.frames++
      c.first ??= meta.mediaTime
      c.last = meta.mediaTime
    }
    v.requestVideoFrameCallback(cb)
  }
  v.requestVideoFrameCallback(cb)
  return !!v
}

const frameFigures = () => {
  const v = document.querySelector('[data-testid="playback-video"]')
  const c = window.__pbCount
  return { frames: c.frames, callbacks: c.callbacks, first: c.first, last: c.last, currentTime: v.currentTime, duration: v.duration, ended: v.ended, paused: v.paused, readyState: v.readyState, error: v.error ? `${v.error.code} ${v.error.message}` : null }
}

/** Wait for the video of the window being played to have its metadata; returns its duration. */
async function videoReady(page, src, what) {
  return until(`${what}: the video loads its metadata`, 10_000, () =>
    page.evaluate((want) => {
      const v = document.querySelector('[data-testid="playback-video"]')
      if (!v || !v.currentSrc.endsWith(want.replace(/^.*\/api\//, 'api/'))) return null
      if (v.error) return { error: `${v.error.code} ${v.error.message}` }
      return v.readyState >= 1 && Number.isFinite(v.duration) ? { duration: v.duration } : null
    }, src),
  )
}

async function main() {
  mkdirSync(artifacts, { recursive: true })
  userDir = mkdtempSync(join(tmpdir(), 'railcast-playback-'))
  browser = await chromium.launchPersistentContext(userDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  })
  const page = browser.pages()[0] ?? (await browser.newPage())
  const pageErrors = []
  page.on('pageerror', (e) => pageErrors.push(String(e)))
  if (verbose) page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`))

  // 1. A command from the single view.
  await page.goto(`${base}/?transport=websocket&train=${encodeURIComponent(train)}${token ? `#token=${encodeURIComponent(token)}` : ''}`)
  await page.waitForFunction(() => window.__railcast !== undefined, null, { timeout: 15000 })
  const horn = page.getByTestId('cmd-horn')
  await until('the horn button is enabled', 15_000, async () => !(await horn.isDisabled()))
  // Sent once a few seconds are recorded, so that its replay really opens before it.
  await until('3.5 s of camera-0 recorded before the command', 20_000, async () => {
    const r = await recordedSpans()
    return r.spans.reduce((n, s) => n + (s.end - s.start), 0) >= 3500
  }, 250)
  await horn.click()
  const row = page.locator('[data-testid="ack-row"]').first()
  const status = await until('the horn is acked', 15_000, async () => {
    const s = await row.getAttribute('data-status')
    return s && s !== 'pending' ? s : null
  })
  if (status !== 'ok') fail(`horn: ack status ${status}`)
  const commandAt = Number(await row.getAttribute('data-sent-at'))
  result.command_at = new Date(commandAt).toISOString()
  log(`horn sent at ${result.command_at}`)

  // 2. Enough recorded, then "▶ replay".
  const rec = await until(`${recordedS} s of camera-0 recorded`, 20_000, async () => {
    const r = await recordedSpans()
    const total = r.spans.reduce((n, s) => n + (s.end - s.start), 0)
    return total >= recordedS * 1000 ? r : null
  }, 250)
  result.recording = rec.body.recording
  result.api_sources = rec.body.sources.map((s) => ({ source: s.source, kind: s.kind, spans: s.spans.length, segments: s.spans.reduce((n, x) => n + (x.segments ?? 0), 0) }))
  const replayAt = Date.now()
  await row.getByTestId('ack-replay').click()
  const replay = await until('the replay opens the playback view at the command', 10_000, async () => {
    const h = await hook(page)
    return h?.window && h.playhead !== null ? h : null
  })
  const replayMeta = await videoReady(page, replay.src, 'replay')
  if (replayMeta.error) fail(`replay: the video failed: ${replayMeta.error}`)
  const rh = await hook(page)
  result.replay = {
    ms: Date.now() - replayAt,
    url: await page.evaluate(() => location.search),
    window: { source: rh.window.source, start: new Date(rh.window.start).toISOString(), end: new Date(rh.window.end).toISOString() },
    media_start: rh.mediaStart === null ? null : new Date(rh.mediaStart).toISOString(),
    playhead: new Date(rh.playhead).toISOString(),
    playhead_ms: rh.playhead,
    lead_ms: Math.round(commandAt - rh.playhead),
    duration_s: round(replayMeta.duration),
  }
  log(`replay: playhead ${result.replay.playhead}, ${result.replay.lead_ms} ms before the command`)
  if (!(result.replay.lead_ms >= 0 && result.replay.lead_ms <= 5000)) fail(`replay: the playhead ${result.replay.playhead} is not within 5 s before the command (${result.command_at})`)
  if (rh.mediaError) fail(`replay: ${rh.mediaError}`)
  await shot(page, 'replay')

  // 3. The timeline shows camera-0's spans.
  const h3 = await until('the timeline lists camera-0 with its spans', 10_000, async () => {
    const h = await hook(page)
    const cam = h?.sources.find((s) => s.source === 'camera-0')
    return cam && cam.spans.length ? h : null
  })
  const bars = await page.locator('[data-testid="timeline-track"][data-source="camera-0"] [data-testid="timeline-span"]').count()
  result.timeline = {
    rows: h3.sources.map((s) => s.source),
    bars,
    spans: h3.sources.find((s) => s.source === 'camera-0').spans.map((s) => ({ start: new Date(s.start).toISOString(), end: new Date(s.end).toISOString(), s: round((s.end - s.start) / 1000, 2) })),
    recording: h3.recording,
  }
  if (bars < 1) fail('no bar on camera-0\'s row of the timeline')
  if (!h3.recording?.enabled) fail(`the view shows recording ${JSON.stringify(h3.recording)}, expected enabled`)
  // `active` reads false between a segment's close and the next one's first part (up to a part
  // duration, at every rollover): wait for the view to show it true once.
  result.timeline.active_seen_ms = await until('the view shows the train being recorded', 10_000, async () => {
    const h = await hook(page)
    return h?.recording?.active ? Date.now() - replayAt : null
  }, 100)
  if (!(await page.getByTestId('recording-toggle').isVisible())) fail('an admin sees no recording toggle')

  // 4. A window of `seconds` from `offsetS` into the recording: across a segment boundary.
  await page.getByTestId('playback-window-s').fill(String(seconds))
  const track = page.locator('[data-testid="timeline-track"][data-source="camera-0"]')
  const box = await track.boundingBox()
  const h4 = await hook(page)
  const first = h4.sources.find((s) => s.source === 'camera-0').spans[0]
  const want = first.start + offsetS * 1000
  const x = box.x + ((want - h4.range.start) / (h4.range.end - h4.range.start)) * box.width
  await page.mouse.click(x, box.y + box.height / 2)
  const h5 = await until('the click plays a window of camera-0', 5000, async () => {
    const h = await hook(page)
    return h?.window && h.window.start !== rh.window.start ? h : null
  })
  const w = h5.window
  const requested = (w.end - w.start) / 1000
  result.window = { source: w.source, start: new Date(w.start).toISOString(), end: new Date(w.end).toISOString(), requested_s: requested, offset_s: round((w.start - first.start) / 1000), clicked_for: new Date(want).toISOString() }
  const meta = await videoReady(page, h5.src, 'window')
  if (meta.error) fail(`the video failed: ${meta.error}`)
  // From the start, counted from the first frame: pause, count from here on (the seek back to 0
  // presents media time 0), then play.
  await page.evaluate(() => document.querySelector('[data-testid="playback-video"]').pause())
  await page.evaluate(countFrames)
  await page.evaluate(() => {
    document.querySelector('[data-testid="playback-video"]').currentTime = 0
  })
  await until('back at 0', 3000, () => page.evaluate(() => {
    const v = document.querySelector('[data-testid="playback-video"]')
    return v.currentTime === 0 && !v.seeking && v.readyState >= 2
  }))
  const playAt = Date.now()
  await page.evaluate(() => document.querySelector('[data-testid="playback-video"]').play())
  const end = await until('the video plays to its end', (requested + 8) * 1000, async () => {
    const f = await page.evaluate(frameFigures)
    if (f.error) fail(`the video failed while playing: ${f.error}`)
    return f.ended ? f : null
  }, 100)
  await sleep(200) // a last callback
  const played = await page.evaluate(frameFigures)
  const expected = Math.round(fps * requested)
  result.play = {
    wall_ms: Date.now() - playAt,
    duration_s: round(played.duration),
    duration_error_ms: round((played.duration - requested) * 1000, 1),
    frames_presented: played.frames,
    frames_expected: expected,
    callbacks: played.callbacks,
    first_media_time: round(played.first),
    last_media_time: round(played.last),
    ended: end.ended,
  }
  log(`played ${requested} s: duration ${played.duration}, ${played.frames} frames presented (expected ${expected})`)
  if (Math.abs(played.duration - requested) > 1 / fps + 0.002) fail(`video.duration ${played.duration} s is not the requested ${requested} s within one frame (${(1 / fps).toFixed(3)} s)`)
  if (Math.abs(played.frames - expected) > frameSlack) fail(`${played.frames} frames presented, expected ${expected} ± ${frameSlack}`)
  await shot(page, 'played')

  // 5. Seek with the view's slider; frames are presented after it (counted from the seek's own).
  const seekAt = Date.now()
  await page.evaluate(countFrames)
  await page.evaluate((t) => {
    const s = document.querySelector('[data-testid="playback-seek"]')
    s.value = String(t)
    s.dispatchEvent(new Event('input', { bubbles: true }))
  }, seekS)
  await until('the seek lands', 5000, () =>
    page.evaluate((t) => {
      const v = document.querySelector('[data-testid="playback-video"]')
      return !v.seeking && Math.abs(v.currentTime - t) < 0.5
    }, seekS),
  )
  const afterSeek = await page.evaluate(() => document.querySelector('[data-testid="playback-video"]').currentTime)
  const hs = await hook(page)
  await page.evaluate(() => document.querySelector('[data-testid="playback-video"]').play())
  const seekEnd = await until('the video plays from the seek to its end', (requested + 8) * 1000, async () => {
    const f = await page.evaluate(frameFigures)
    return f.ended ? f : null
  }, 100)
  await sleep(200)
  const sf = await page.evaluate(frameFigures)
  result.seek = {
    to_s: seekS,
    current_time_s: round(afterSeek),
    playhead: new Date(hs.playhead).toISOString(),
    playhead_error_ms: round(hs.playhead - (w.start + seekS * 1000), 1),
    frames_after: sf.frames,
    frames_expected: Math.round(fps * (requested - seekS)),
    first_media_time: round(sf.first),
    ms: Date.now() - seekAt,
    ended: seekEnd.ended,
  }
  log(`seek to ${seekS}: currentTime ${afterSeek}, ${sf.frames} frames after it`)
  if (Math.abs(afterSeek - seekS) > 1 / fps + 0.002) fail(`after seeking to ${seekS} s currentTime is ${afterSeek}`)
  if (Math.abs(result.seek.playhead_error_ms) > 1000 / fps + 2) fail(`after the seek the playhead says ${result.seek.playhead}, not window start + ${seekS} s`)
  if (sf.frames < 1) fail('no frame presented after the seek')

  // 6. The next window starts where this one ended.
  const next = page.getByTestId('window-next')
  if (!(await next.isDisabled())) {
    await next.click()
    const hn = await until('the next window plays', 5000, async () => {
      const h = await hook(page)
      return h?.window && h.window.start !== w.start ? h : null
    })
    result.next_window = { start: new Date(hn.window.start).toISOString(), end: new Date(hn.window.end).toISOString(), contiguous: hn.window.start === w.end }
    if (hn.window.start !== w.end) fail(`the next window starts at ${result.next_window.start}, not where the last ended (${result.window.end})`)
  }
  await shot(page, 'next')

  // 7. The cab audio alongside, when recorded over the window: it plays, in step with the video.
  const ha = await hook(page)
  if (ha.audioAlong) {
    await page.getByTestId('playback-with-audio').check()
    const audio = await until('the audio alongside plays', 8000, async () => {
      const a = await page.evaluate(() => {
        const v = document.querySelector('[data-testid="playback-video"]')
        const a = document.querySelector('[data-testid="playback-audio"]')
        const h = window.__railcastPlayback
        if (!a || !v || v.paused || v.ended || a.paused || a.currentTime < 0.5) return null
        return { audio_s: a.currentTime, video_s: v.currentTime, drift_s: a.currentTime - (h.mediaStart + v.currentTime * 1000 - h.audioAlong.start) / 1000 }
      })
      return a
    }, 100)
    result.audio = { source: ha.audioAlong.source, audio_s: round(audio.audio_s), video_s: round(audio.video_s), drift_ms: round(audio.drift_s * 1000, 1) }
    log(`audio ${ha.audioAlong.source} alongside: drift ${result.audio.drift_ms} ms`)
    if (Math.abs(audio.drift_s) > 0.4) fail(`the audio alongside is ${result.audio.drift_ms} ms off the video`)
  }

  // 8. Admins switch the train's recording off and on again.
  const toggle = page.getByTestId('recording-toggle')
  const enabled = () => page.getByTestId('recording-enabled').getAttribute('data-enabled')
  await toggle.click()
  await until('the view shows recording disabled', 5000, async () => (await enabled()) === 'false')
  const off = (await api('GET', `/api/trains/${encodeURIComponent(train)}/recordings`)).body?.recording
  await toggle.click()
  await until('the view shows recording enabled again', 5000, async () => (await enabled()) === 'true')
  const on = (await api('GET', `/api/trains/${encodeURIComponent(train)}/recordings`)).body?.recording
  result.toggle = { off, on }
  if (off?.enabled !== false || on?.enabled !== true) fail(`the toggle did not reach the server: ${JSON.stringify(result.toggle)}`)

  // 9. Back in the single view, "Recordings" next to the train opens the view again (no moment).
  await page.getByTestId('view-single').click()
  const openRec = page.getByTestId('open-recordings')
  await openRec.waitFor({ timeout: 10_000 })
  await openRec.click()
  const back = await until('"Recordings" opens the playback view of the train', 5000, async () => {
    const h = await hook(page)
    return h && h.train === train && h.sources.length ? h : null
  })
  result.recordings_button = { train: back.train, url: await page.evaluate(() => location.search), window: back.window }
  result.page_errors = pageErrors
  if (pageErrors.length) fail(`page errors: ${pageErrors.join(' | ')}`)
  result.ok = true
}

const started = Date.now()
try {
  await main()
} catch (e) {
  result.ok = false
  result.error = e instanceof Failure ? e.message : String(e?.stack ?? e)
  try {
    const page = browser?.pages()[0]
    if (page) {
      result.hook = await page.evaluate(() => window.__railcastPlayback ?? null).catch(() => null)
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
