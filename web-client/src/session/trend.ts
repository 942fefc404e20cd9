/**
 * A camera's recent figures for the trend plots: a fixed-size ring of samples (one a second, five
 * minutes by default), oldest first when read. Pure: no timers, no DOM; the session samples it,
 * `TrendPlot.vue` draws {@link TrendRing.columns} with uPlot.
 */

/** One sample: wall-clock time (s since the epoch, uPlot's x unit) and the figures, null when unknown. */
export interface TrendSample {
  t: number
  latencyMs: number | null
  bitrateKbps: number | null
  fps: number | null
}

export const TREND_FIELDS = ['latencyMs', 'bitrateKbps', 'fps'] as const
export type TrendField = (typeof TREND_FIELDS)[number]

/** Five minutes at one sample a second. */
export const TREND_CAPACITY = 300

export class TrendRing {
  private readonly buf: (TrendSample | undefined)[]
  private next = 0
  private count = 0
  /** Samples ever pushed (also counts those overwritten): the plots redraw when it changes. */
  pushed = 0

  constructor(readonly capacity = TREND_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`trend capacity must be a positive integer, not ${capacity}`)
    this.buf = new Array<TrendSample | undefined>(capacity)
  }

  get length(): number {
    return this.count
  }

  /** Add a sample; a sample not later than the newest replaces nothing and is dropped. */
  push(s: TrendSample): boolean {
    const last = this.latest()
    if (last && !(s.t > last.t)) return false
    this.buf[this.next] = s
    this.next = (this.next + 1) % this.capacity
    this.count = Math.min(this.count + 1, this.capacity)
    this.pushed++
    return true
  }

  latest(): TrendSample | null {
    if (this.count === 0) return null
    return this.buf[(this.next - 1 + this.capacity) % this.capacity] ?? null
  }

  /** The samples, oldest first. */
  samples(): TrendSample[] {
    const out: TrendSample[] = []
    const start = (this.next - this.count + this.capacity) % this.capacity
    for (let i = 0; i < this.count; i++) out.push(this.buf[(start + i) % this.capacity] as TrendSample)
    return out
  }

  /** uPlot's aligned data: `[times, field…]`, oldest first (null: a gap in the line). */
  columns(fields: readonly TrendField[] = TREND_FIELDS): [number[], ...(number | null)[][]] {
    const s = this.samples()
    return [s.map((x) => x.t), ...fields.map((f) => s.map((x) => x[f]))]
  }

  clear(): void {
    this.buf.fill(undefined)
    this.next = 0
    this.count = 0
  }
}

/** A figure worth plotting: finite, else null (a gap). */
export const plotValue = (v: number | null | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
