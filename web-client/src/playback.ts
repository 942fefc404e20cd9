/**
 * The pure parts of the console's playback view (issue 26; `components/PlaybackView.vue`): the
 * recorded spans of a train (`GET /api/trains/{id}/recordings`) as bars on a timeline, the window
 * of media a click asks for (`GET /api/trains/{id}/recordings/{source}?start=…&end=…`, at most
 * 10 minutes, clipped to the span clicked), and wall-clock time ↔ media time (media time 0 is the
 * `Railcast-Media-Start` of the response: the `start` asked for when the span covers it).
 * Times are milliseconds since the Unix epoch; the server speaks RFC 3339 UTC with milliseconds.
 */
import type { components } from './api/schema'

type Schemas = components['schemas']

/** `recording` of `GET /api/trains/{id}/recordings` and of `PUT /api/trains/{id}/recording`. */
export type RecordingState = Schemas['RecordingState']
/** A run of segments of one source with no hole longer than 1 s. */
export type RecordedSpan = Schemas['RecordedSpan']
/** One source (`camera-N`, `audio-N`) and its spans, sorted by start. */
export type RecordedSource = Schemas['RecordedSource']
/** `GET /api/trains/{id}/recordings`. */
export type Recordings = Schemas['Recordings']

/** The server's longest window (`400 bad_request` beyond). */
export const MAX_WINDOW_MS = 10 * 60 * 1000
/** A window shorter than this near a span's end is moved back: something must play. */
export const MIN_WINDOW_MS = 1000
/** "▶ replay" opens the playback view this long before the command's moment. */
export const REPLAY_LEAD_MS = 3000

/** A span in epoch milliseconds. */
export interface Span {
  start: number
  end: number
}

/** What a click asks the server for: `source` over [start, end). */
export interface PlayWindow extends Span {
  source: string
}

/** RFC 3339 → epoch ms (NaN when unparseable). */
export const parseTime = (s: string): number => Date.parse(s)

/** Epoch ms → RFC 3339 UTC with milliseconds, as the server wants it. */
export const isoTime = (ms: number): string => new Date(ms).toISOString()

/** `HH:MM:SS.mmm` (UTC) of an epoch ms. */
export const clockText = (ms: number): string => new Date(ms).toISOString().slice(11, 23)

/** A source's spans in epoch ms, unparseable or empty ones dropped, sorted by start. */
export function spansOf(source: Pick<RecordedSource, 'spans'>): Span[] {
  return source.spans
    .map((s) => ({ start: parseTime(s.start), end: parseTime(s.end) }))
    .filter((s) => Number.isFinite(s.start) && Number.isFinite(s.end) && s.end > s.start)
    .sort((a, b) => a.start - b.start)
}

/** The kind of a source from its name, when the server did not say. */
export const sourceKind = (s: Pick<RecordedSource, 'source'> & { kind?: string }): 'video' | 'audio' =>
  s.kind === 'audio' || s.kind === 'video' ? s.kind : s.source.startsWith('audio-') ? 'audio' : 'video'

/** Sources in display order: cameras by id, then audio sources by id. */
export function orderSources<T extends Pick<RecordedSource, 'source'> & { kind?: string }>(list: T[]): T[] {
  const id = (s: T) => Number(s.source.replace(/^\D+-/, '')) || 0
  return [...list].sort((a, b) => Number(sourceKind(a) === 'audio') - Number(sourceKind(b) === 'audio') || id(a) - id(b) || a.source.localeCompare(b.source))
}

/** The recorded period of every source together, or null when nothing is recorded. */
export function recordedPeriod(sources: Pick<RecordedSource, 'spans'>[]): Span | null {
  let start = Infinity
  let end = -Infinity
  for (const s of sources) {
    for (const sp of spansOf(s)) {
      start = Math.min(start, sp.start)
      end = Math.max(end, sp.end)
    }
  }
  return end > start ? { start, end } : null
}

/** A bar on the timeline, in percent of the timeline's width; null when outside the range shown. */
export interface Bar {
  left: number
  width: number
}

/** Where `span` lies on a timeline showing `range` (clipped to it). */
export function barOf(span: Span, range: Span): Bar | null {
  const len = range.end - range.start
  if (len <= 0) return null
  const a = Math.max(span.start, range.start)
  const b = Math.min(span.end, range.end)
  if (b <= a) return null
  return { left: ((a - range.start) / len) * 100, width: ((b - a) / len) * 100 }
}

/** The time at `fraction` (0…1, clamped) of the timeline's width. */
export function timeAt(fraction: number, range: Span): number {
  const f = Math.min(1, Math.max(0, fraction))
  return range.start + f * (range.end - range.start)
}

/** Where `t` lies on the timeline, in percent (null outside the range shown). */
export function positionOf(t: number, range: Span): number | null {
  const len = range.end - range.start
  if (len <= 0 || t < range.start || t > range.end) return null
  return ((t - range.start) / len) * 100
}

/**
 * The range shown after zooming by `factor` (< 1: in) around `center`, kept inside `bounds`, no
 * shorter than `minMs`. Zooming out past `bounds` shows `bounds`.
 */
export function zoom(range: Span, factor: number, center: number, bounds: Span, minMs = 2000): Span {
  const full = bounds.end - bounds.start
  const len = Math.min(full, Math.max(minMs, (range.end - range.start) * factor))
  if (len >= full) return { ...bounds }
  const c = Math.min(range.end, Math.max(range.start, center))
  // Keep the point under the cursor where it is on screen.
  const f = range.end > range.start ? (c - range.start) / (range.end - range.start) : 0.5
  let start = c - f * len
  start = Math.min(bounds.end - len, Math.max(bounds.start, start))
  return { start, end: start + len }
}

/**
 * The window to play from `at` on `spans` (one source): from `at` for up to `lengthMs` (at most
 * {@link MAX_WINDOW_MS}), clipped to the span holding `at`. In a hole, from the start of the next
 * span; past the last, its last `lengthMs` (or {@link MIN_WINDOW_MS}); a window shorter than
 * {@link MIN_WINDOW_MS} near a span's end starts earlier. Null without spans.
 */
export function windowAt(spans: Span[], at: number, lengthMs = MAX_WINDOW_MS): Span | null {
  if (!spans.length) return null
  // Whole milliseconds: the URL carries them, and media time 0 must be the very start asked for.
  at = Math.round(at)
  const len = Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, Math.round(lengthMs)))
  const sorted = [...spans].sort((a, b) => a.start - b.start)
  let span = sorted.find((s) => at < s.end)
  let start: number
  if (!span) {
    span = sorted[sorted.length - 1]
    start = span.end - Math.min(len, REPLAY_LEAD_MS)
  } else {
    start = Math.max(at, span.start)
  }
  start = Math.max(span.start, Math.min(start, span.end - MIN_WINDOW_MS))
  return { start, end: Math.min(start + len, span.end) }
}

/** The window after `w` on `spans`: from its end (or the next span's start); null when none is left. */
export function nextWindow(spans: Span[], w: Span, lengthMs = w.end - w.start): Span | null {
  const after = spans.filter((s) => s.end > w.end + 1).sort((a, b) => a.start - b.start)
  if (!after.length) return null
  return windowAt(after, Math.max(w.end, after[0].start), lengthMs)
}

/** The window before `w`: ending where `w` starts (or at the previous span's end); null at the start. */
export function previousWindow(spans: Span[], w: Span, lengthMs = w.end - w.start): Span | null {
  const len = Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, lengthMs))
  const before = spans.filter((s) => s.start < w.start - 1).sort((a, b) => a.start - b.start)
  const span = before[before.length - 1]
  if (!span) return null
  const end = Math.min(span.end, w.start)
  const start = Math.max(span.start, end - len)
  return { start, end: Math.max(end, Math.min(span.end, start + MIN_WINDOW_MS)) }
}

/** The wall-clock time of media time `currentTime` (seconds) of a response starting at `mediaStart`. */
export const wallTimeOf = (mediaStart: number, currentTime: number): number => mediaStart + currentTime * 1000

/** The media time (seconds, ≥ 0) of wall-clock time `wall` in a response starting at `mediaStart`. */
export const mediaTimeOf = (mediaStart: number, wall: number): number => Math.max(0, (wall - mediaStart) / 1000)

/** `Railcast-Media-Start`, or `fallback` (the start asked for) when it is missing or unparseable. */
export function mediaStartFrom(header: string | null, fallback: number): number {
  const t = header ? parseTime(header) : NaN
  return Number.isFinite(t) ? t : fallback
}

/** The media URL of a window; the token goes in the query (a `<video src>` cannot set headers). */
export function mediaUrl(train: string, w: PlayWindow, token: string | null, format: 'mp4' | 'fmp4' = 'mp4'): string {
  const q = new URLSearchParams({ start: isoTime(w.start), end: isoTime(w.end), format })
  if (token) q.set('access_token', token)
  return `/api/trains/${encodeURIComponent(train)}/recordings/${encodeURIComponent(w.source)}?${q}`
}

/** The console URL (query) of the playback view of `train` at `at`. */
export function playbackQuery(train: string, at: number | null): string {
  const q = new URLSearchParams({ view: 'playback', train })
  if (at !== null && Number.isFinite(at)) q.set('at', isoTime(at))
  return `?${q}`
}

/** Where "▶ replay" of a command sent at `sentAt` opens the view: a few seconds before. */
export const replayMoment = (sentAt: number): number => sentAt - REPLAY_LEAD_MS

/** An error of the recordings API for people, by status (and `code`), with what to do. */
export function describePlaybackError(status: number, code: string, detail: string, train: string): string {
  const why = detail ? ` (${detail})` : ''
  if (status === 401) return `the server refused the access token${why}`
  if (status === 403) return `you may not watch ${train}: no remote control you may use is mapped to it; an admin maps one${why}`
  if (status === 409 || code === 'recording_off') return `recording is off on this server: it has no record_dir${why}`
  if (status === 404) return `nothing recorded: ${train} is unknown or has no recording here${why}`
  if (status === 400) return `the server refused the request${why}`
  if (status === 416) return `the range asked for lies outside the recording${why}`
  return `HTTP ${status}${code ? ` ${code}` : ''}${why}`
}
