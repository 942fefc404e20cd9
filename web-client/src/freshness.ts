/**
 * How old the picture and the figures on screen are. A canvas keeps its last frame and the
 * overlay its last figures when video stops (the train went offline, the link stalls), which
 * looks live; the console marks them stale instead, with their age. Pure functions over times in
 * ms (`performance.now()`): the components keep the clock and the last-change times.
 */

/** No new frame for longer than this: the picture is stale (a 30 fps camera sends one every 33 ms). */
export const VIDEO_STALE_AFTER_MS = 2000
/** Telemetry comes every second (train-sim): older than this, it is stale. */
export const TELEMETRY_STALE_AFTER_MS = 2500

/**
 * When a running count (frames painted, frames decoded) last moved. A count seen first above 0
 * is a frame now (the view mounted while video flows); a count that goes back (a new pipeline,
 * a new link) is not a frame.
 */
export class LastChange {
  private last: number | null = null
  /** When the count last went up, or null: never seen above 0. */
  at: number | null = null

  observe(count: number | null | undefined, now: number): number | null {
    if (count === null || count === undefined) return this.at
    if (count > 0 && (this.last === null || count > this.last)) this.at = now
    this.last = count
    return this.at
  }
}

export interface Staleness {
  stale: boolean
  /** Since the last frame (or telemetry message), ms; null: none seen yet. */
  ageMs: number | null
  /** The train is known to be offline. */
  offline: boolean
}

/**
 * The picture is stale when the train is offline, or when its last frame is older than `afterMs`.
 * Before the first frame nothing is on screen to mistake for live: stale only if offline.
 */
export function staleness(online: boolean | null, lastAt: number | null, now: number, afterMs = VIDEO_STALE_AFTER_MS): Staleness {
  const ageMs = lastAt === null ? null : Math.max(0, now - lastAt)
  const offline = online === false
  return { stale: offline || (ageMs !== null && ageMs > afterMs), ageMs, offline }
}

/** "12 s", "3 min 5 s", "2 h 4 min": an age, to the second. */
export function ageText(ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${s % 60} s`
  return `${Math.floor(m / 60)} h ${m % 60} min`
}

/** Known, and a second or more ("for 0 s" says nothing). */
const counted = (ageMs: number | null): ageMs is number => ageMs !== null && ageMs >= 1000

/** What the stale picture says: "no video for 12 s — train offline". */
export function staleVideoText(s: Staleness): string {
  const since = counted(s.ageMs) ? `no video for ${ageText(s.ageMs)}` : 'no video'
  return s.offline ? `${since} — train offline` : since
}

/** A figure that is no longer measured: "— (stale 12 s)". */
export function staleFigureText(s: Staleness): string {
  return counted(s.ageMs) ? `— (stale ${ageText(s.ageMs)})` : '— (stale)'
}
