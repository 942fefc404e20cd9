/**
 * Train → browser clock offset, estimated from what the console observes; pure (times passed in).
 *
 * `capture_us` in every video packet is the train's wall clock. The browser cannot read that clock,
 * so glass-to-glass latency (`painted − captured`) needs the offset `θ = browser clock − train clock`:
 *
 * - **delay floor**: `arrival − capture` over a sliding window; its minimum is `θ + d_min`, where
 *   `d_min` is the fastest a frame went from capture to this browser (encode + network);
 * - **path delay**: an NTP-style guess of `d_min` from round trips the console can see: half the
 *   browser⇄server RTT (`ping`/`pong`) plus half the server⇄train RTT (`train_rtt_us` of command
 *   acks), assuming symmetric paths;
 * - so `θ ≈ floor − pathDelay`.
 *
 * Like NTP's, the estimate is only good to ± the path delay (the true one-way delay lies anywhere
 * between 0 and the round trip), and it cannot tell "clocks a few ms apart" from "encoding took a few
 * ms". So the offset corrects latency only when it exceeds its own uncertainty plus `applyAboveMs`:
 * trains and consoles that both run NTP are trusted as they are (on loopback θ is 0 and the raw
 * figure is exact), while a train whose clock is seconds off is corrected. Both figures are shown.
 */

export interface ClockOptions {
  /** Sliding window of the delay floor, ms. */
  windowMs: number
  /** |θ| below this plus the path delay (the estimate's own uncertainty) counts as synchronised clocks. */
  applyAboveMs: number
  /** Pong samples kept; the one with the smallest RTT wins. */
  pongSamples: number
}

export const DEFAULT_CLOCK_OPTIONS: ClockOptions = { windowMs: 10_000, applyAboveMs: 25, pongSamples: 16 }

export interface OffsetEstimate {
  /** min(arrival − capture) over the window, ms; null before the first frame. */
  floorMs: number | null
  /** Assumed fastest capture → browser delay, ms (half the round trips known so far). */
  pathDelayMs: number
  /** θ = browser clock − train clock, ms; null before the first frame. */
  offsetMs: number | null
  /** Does {@link glassToGlassMs} subtract the offset? Only when |θ| is beyond its uncertainty. */
  applied: boolean
  /** Server clock − browser clock from the best pong, ms. */
  serverOffsetMs: number | null
  /** Smallest browser ⇄ server RTT seen, ms. */
  serverRttMs: number | null
  /** Smallest server ⇄ train RTT seen (command acks), ms. */
  trainRttMs: number | null
  /** Frames in the floor window. */
  samples: number
}

/** Sliding-window minimum in amortised O(1): a deque of increasing values. */
export class WindowMin {
  private times: number[] = []
  private values: number[] = []
  private head = 0
  private count = 0

  constructor(private readonly windowMs: number) {}

  add(atMs: number, value: number): void {
    while (this.values.length > this.head && this.values[this.values.length - 1] >= value) {
      this.values.pop()
      this.times.pop()
    }
    this.times.push(atMs)
    this.values.push(value)
    this.count++
    this.expire(atMs)
  }

  /** The minimum over `(now − window, now]`, or null when empty. */
  min(nowMs: number): number | null {
    this.expire(nowMs)
    return this.values.length > this.head ? this.values[this.head] : null
  }

  private expire(nowMs: number): void {
    while (this.values.length > this.head && this.times[this.head] <= nowMs - this.windowMs) this.head++
    if (this.head > 1024 && this.head * 2 > this.values.length) {
      this.times = this.times.slice(this.head)
      this.values = this.values.slice(this.head)
      this.head = 0
    }
  }

  /** Samples added since the last clear (for display). */
  get added(): number {
    return this.count
  }

  clear(): void {
    this.times = []
    this.values = []
    this.head = 0
    this.count = 0
  }
}

interface Pong {
  rttMs: number
  offsetMs: number
}

export class ClockOffsetEstimator {
  private readonly opts: ClockOptions
  private floor: WindowMin
  private pongs: Pong[] = []
  private trainRtt: number | null = null
  private recent = 0

  constructor(opts: Partial<ClockOptions> = {}) {
    this.opts = { ...DEFAULT_CLOCK_OPTIONS, ...opts }
    this.floor = new WindowMin(this.opts.windowMs)
  }

  /** A frame's last packet arrived at `arrivalMs` (browser epoch ms); it was captured at `captureMs` (train epoch ms). */
  addFrame(arrivalMs: number, captureMs: number): void {
    this.floor.add(arrivalMs, arrivalMs - captureMs)
    this.recent++
  }

  /** A `pong` for a `ping` sent at `sentMs`, received at `receivedMs` (browser epoch ms), server clock `serverMs`. */
  addPong(sentMs: number, receivedMs: number, serverMs: number): void {
    const rttMs = Math.max(0, receivedMs - sentMs)
    this.pongs.push({ rttMs, offsetMs: serverMs - (sentMs + receivedMs) / 2 })
    if (this.pongs.length > this.opts.pongSamples) this.pongs.shift()
  }

  /** Server ⇄ train round trip of a command (`train_rtt_us` / 1000). */
  addTrainRtt(ms: number): void {
    if (ms >= 0 && (this.trainRtt === null || ms < this.trainRtt)) this.trainRtt = ms
  }

  /** A new train session (or another train): its clock is another clock. */
  resetTrain(): void {
    this.floor.clear()
    this.trainRtt = null
    this.recent = 0
  }

  estimate(nowMs: number): OffsetEstimate {
    const floorMs = this.floor.min(nowMs)
    const best = this.pongs.reduce<Pong | null>((b, p) => (b === null || p.rttMs < b.rttMs ? p : b), null)
    const serverRttMs = best?.rttMs ?? null
    const pathDelayMs = ((serverRttMs ?? 0) + (this.trainRtt ?? 0)) / 2
    const offsetMs = floorMs === null ? null : floorMs - pathDelayMs
    return {
      floorMs,
      pathDelayMs,
      offsetMs,
      applied: offsetMs !== null && Math.abs(offsetMs) > this.opts.applyAboveMs + pathDelayMs,
      serverOffsetMs: best?.offsetMs ?? null,
      serverRttMs,
      trainRttMs: this.trainRtt,
      samples: this.recent,
    }
  }
}

/** Glass-to-glass latency of a frame painted at `paintMs` (browser clock), captured at `captureMs` (train clock). */
export function glassToGlassMs(paintMs: number, captureMs: number, est: Pick<OffsetEstimate, 'offsetMs' | 'applied'>): number {
  return paintMs - captureMs - (est.applied && est.offsetMs !== null ? est.offsetMs : 0)
}
