import { describe, expect, it } from 'vitest'
import {
  barOf, describePlaybackError, isoTime, MAX_WINDOW_MS, mediaStartFrom, mediaTimeOf, mediaUrl, MIN_WINDOW_MS, nextWindow,
  orderSources, parseTime, playbackQuery, positionOf, previousWindow, recordedPeriod, REPLAY_LEAD_MS, replayMoment, spansOf,
  timeAt, wallTimeOf, windowAt, zoom,
} from '../src/playback'
import { parseRoute } from '../src/route'

const T0 = Date.parse('2026-12-02T09:00:00.000Z')
const s = (a: number, b: number) => ({ start: T0 + a * 1000, end: T0 + b * 1000 })
const wire = (a: number, b: number) => ({ start: isoTime(T0 + a * 1000), end: isoTime(T0 + b * 1000), duration_ms: (b - a) * 1000, segments: 1 })

describe('times', () => {
  it('reads and writes RFC 3339 with milliseconds', () => {
    expect(isoTime(T0 + 123)).toBe('2026-12-02T09:00:00.123Z')
    expect(parseTime('2026-12-02T09:00:00.123Z')).toBe(T0 + 123)
  })
  it('media time 0 is the media start; wall and media time convert both ways', () => {
    expect(wallTimeOf(T0, 0)).toBe(T0)
    expect(wallTimeOf(T0, 2.5)).toBe(T0 + 2500)
    expect(mediaTimeOf(T0, T0 + 2500)).toBe(2.5)
    expect(mediaTimeOf(T0, T0 - 1000)).toBe(0)
    for (const t of [0, 0.04, 1, 59.999, 600]) expect(mediaTimeOf(T0 + 7, wallTimeOf(T0 + 7, t))).toBeCloseTo(t, 9)
  })
  it('takes Railcast-Media-Start when it parses, else the start asked for', () => {
    expect(mediaStartFrom('2026-12-02T09:00:00.250Z', T0)).toBe(T0 + 250)
    expect(mediaStartFrom(null, T0)).toBe(T0)
    expect(mediaStartFrom('yesterday', T0)).toBe(T0)
  })
})

describe('spans → timeline', () => {
  const sources = [
    { source: 'audio-256', kind: 'audio', spans: [wire(2, 8)] },
    { source: 'camera-1', kind: 'video', spans: [wire(0, 5)] },
    { source: 'camera-0', kind: 'video', spans: [wire(10, 20), wire(0, 6), { ...wire(3, 3) }, { start: 'x', end: 'y', duration_ms: 0, segments: 0 }] },
  ]
  it('parses, sorts and drops empty or unparseable spans', () => {
    expect(spansOf(sources[2])).toEqual([s(0, 6), s(10, 20)])
  })
  it('orders cameras by id, then audio', () => {
    expect(orderSources(sources).map((x) => x.source)).toEqual(['camera-0', 'camera-1', 'audio-256'])
  })
  it('the recorded period covers every source', () => {
    expect(recordedPeriod(sources)).toEqual(s(0, 20))
    expect(recordedPeriod([])).toBeNull()
  })
  it('places bars in percent of the range, clipped to it', () => {
    expect(barOf(s(0, 5), s(0, 20))).toEqual({ left: 0, width: 25 })
    expect(barOf(s(10, 20), s(0, 20))).toEqual({ left: 50, width: 50 })
    expect(barOf(s(0, 10), s(5, 15))).toEqual({ left: 0, width: 50 })
    expect(barOf(s(0, 4), s(5, 15))).toBeNull()
    expect(barOf(s(0, 4), s(5, 5))).toBeNull()
  })
  it('maps a click to a time and a time to the cursor', () => {
    const r = s(0, 20)
    expect(timeAt(0.25, r)).toBe(T0 + 5000)
    expect(timeAt(-1, r)).toBe(T0)
    expect(timeAt(2, r)).toBe(T0 + 20000)
    expect(positionOf(T0 + 5000, r)).toBe(25)
    expect(positionOf(T0 - 1, r)).toBeNull()
    for (const f of [0, 0.1, 0.5, 0.9, 1]) expect(positionOf(timeAt(f, r), r)).toBeCloseTo(f * 100, 9)
  })
  it('zooms around a point, within the bounds', () => {
    const b = s(0, 100)
    const z = zoom(b, 0.5, T0 + 50_000, b)
    expect(z).toEqual(s(25, 75))
    // The point under the cursor stays where it is on screen.
    const z2 = zoom(b, 0.5, T0 + 10_000, b)
    expect(positionOf(T0 + 10_000, z2)).toBeCloseTo(10, 9)
    expect(zoom(s(0, 10), 0.5, T0, b)).toEqual(s(0, 5))
    expect(zoom(z, 4, T0, b)).toEqual(b)
    expect(zoom(b, 1e-6, T0 + 100_000, b, 2000)).toEqual(s(98, 100))
  })
})

describe('the window a click plays', () => {
  const spans = [s(0, 6), s(10, 1000)]
  it('starts at the click and is clipped to the span', () => {
    expect(windowAt(spans, T0 + 1000, 4000)).toEqual(s(1, 5))
    expect(windowAt(spans, T0 + 1000)).toEqual(s(1, 6))
    expect(windowAt(spans, T0 + 20_000)).toEqual({ start: T0 + 20_000, end: T0 + 20_000 + MAX_WINDOW_MS })
  })
  it('is never longer than 10 minutes nor shorter than a second', () => {
    expect(windowAt(spans, T0 + 20_000, 3_600_000)!.end - (T0 + 20_000)).toBe(MAX_WINDOW_MS)
    expect(windowAt(spans, T0 + 1000, 10)).toEqual(s(1, 2))
    // A click just before a span's end plays its last second.
    expect(windowAt(spans, T0 + 5900)).toEqual({ start: T0 + 6000 - MIN_WINDOW_MS, end: T0 + 6000 })
  })
  it('in a hole starts at the next span; before the first, at the first', () => {
    expect(windowAt(spans, T0 + 7000, 4000)).toEqual(s(10, 14))
    expect(windowAt(spans, T0 - 60_000, 4000)).toEqual(s(0, 4))
  })
  it('past the last span plays its end', () => {
    expect(windowAt([s(0, 6)], T0 + 60_000)).toEqual({ start: T0 + 6000 - REPLAY_LEAD_MS, end: T0 + 6000 })
    expect(windowAt([], T0)).toBeNull()
  })
  it('steps to the next and previous windows, across holes', () => {
    const w = windowAt(spans, T0 + 1000, 4000)!
    const n = nextWindow(spans, w)!
    expect(n).toEqual(s(5, 6))
    const n2 = nextWindow(spans, n, 4000)!
    expect(n2).toEqual(s(10, 14))
    expect(previousWindow(spans, n2, 4000)).toEqual(s(2, 6))
    expect(previousWindow(spans, s(0, 4))).toBeNull()
    expect(nextWindow([s(0, 6)], s(2, 6))).toBeNull()
  })
})

describe('urls and replay', () => {
  it('asks for a window with the token in the query', () => {
    const u = new URL(mediaUrl('train 1', { source: 'camera-0', ...s(1, 5) }, 'a+b/c'), 'http://x')
    expect(u.pathname).toBe('/api/trains/train%201/recordings/camera-0')
    expect(u.searchParams.get('start')).toBe('2026-12-02T09:00:01.000Z')
    expect(u.searchParams.get('end')).toBe('2026-12-02T09:00:05.000Z')
    expect(u.searchParams.get('format')).toBe('mp4')
    expect(u.searchParams.get('access_token')).toBe('a+b/c')
    expect(mediaUrl('t', { source: 'audio-2', ...s(0, 1) }, null)).not.toContain('access_token')
  })
  it('replay opens a few seconds before the command, and the URL says where', () => {
    expect(replayMoment(T0)).toBe(T0 - REPLAY_LEAD_MS)
    expect(REPLAY_LEAD_MS).toBeGreaterThan(0)
    expect(REPLAY_LEAD_MS).toBeLessThan(5000)
    const q = playbackQuery('train-1', T0)
    expect(parseRoute(q)).toEqual({ view: 'playback', train: 'train-1', at: T0 })
    expect(parseRoute('?view=wall')).toEqual({ view: 'wall', train: null, at: null })
    expect(parseRoute('?view=nonsense&at=never')).toEqual({ view: 'single', train: null, at: null })
  })
  it('says what an error means', () => {
    expect(describePlaybackError(403, 'forbidden', '', 'train-1')).toMatch(/may not watch train-1.*remote control/)
    expect(describePlaybackError(409, 'recording_off', '', 'train-1')).toMatch(/recording is off/)
    expect(describePlaybackError(404, 'not_found', 'nothing recorded in the range', 'train-1')).toMatch(/nothing recorded.*\(nothing recorded in the range\)/)
  })
})

describe('whole milliseconds', () => {
  it('a click between milliseconds asks for a whole one', () => {
    const w = windowAt([s(0, 60)], T0 + 1234.567, 4000.4)!
    expect(w).toEqual({ start: T0 + 1235, end: T0 + 5235 })
  })
})
