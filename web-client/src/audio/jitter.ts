/**
 * A small playout buffer for the cab audio: where on the `AudioContext` timeline each decoded
 * 20 ms frame starts. Pure (times in, a decision out), so Vitest checks it without a browser.
 *
 * Frames are laid end to end from a cursor. The first frame, and the first after an underrun (the
 * cursor fell behind the context's clock: packets came late or were lost), starts `targetMs`
 * ahead of now: that lead is the jitter buffer, what absorbs uneven arrival. When the lead grows
 * past `maxMs` (a burst after a stall, an `AudioContext` whose clock started late, or the train's
 * clock running faster than the sound card's), frames are dropped until it is back to `targetMs`:
 * skipping a little audio keeps the delay from staying high for good.
 */

export interface PlayoutConfig {
  /** Lead given to the first frame and after every underrun, ms. */
  targetMs: number
  /** A lead above this starts dropping frames, until it is back to `targetMs`, ms. */
  maxMs: number
}

export const DEFAULT_PLAYOUT: PlayoutConfig = { targetMs: 60, maxMs: 150 }

export type Decision = { play: true; at: number } | { play: false; why: 'overflow' }

export interface PlayoutStats {
  scheduled: number
  underruns: number
  overflows: number
}

export class Playout {
  readonly stats: PlayoutStats = { scheduled: 0, underruns: 0, overflows: 0 }
  /** Context time (s) at which the next frame starts, or null before the first. */
  private next: number | null = null
  /** Dropping frames until the lead is back to the target. */
  private trimming = false

  constructor(private readonly config: PlayoutConfig = DEFAULT_PLAYOUT) {}

  /** Place a frame of `durationS` seconds, given the context's current time `now` (s). */
  schedule(now: number, durationS: number): Decision {
    const target = this.config.targetMs / 1000
    if (this.next === null || this.next < now) {
      if (this.next !== null) this.stats.underruns++
      this.next = now + target
    } else {
      const lead = this.next - now
      if (this.trimming || lead > this.config.maxMs / 1000) {
        this.trimming = lead > target + 1e-6 // a microsecond of slack for float rounding
        if (this.trimming) {
          this.stats.overflows++
          return { play: false, why: 'overflow' }
        }
      }
    }
    const at = this.next
    this.next += durationS
    this.stats.scheduled++
    return { play: true, at }
  }

  /** Audio scheduled ahead of `now`, ms (0 when nothing is). */
  bufferedMs(now: number): number {
    return this.next === null ? 0 : Math.max(0, (this.next - now) * 1000)
  }

  /** Start again at the next frame (a new stream, or muted). */
  reset(): void {
    this.next = null
    this.trimming = false
  }
}
