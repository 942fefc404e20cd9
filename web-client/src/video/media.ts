/**
 * Glass-to-glass latency of media tracks (WHEP), measured as on the packet transports: the
 * capture time of each presented frame against the moment it is shown, through the same clock
 * offset estimate ({@link ../stats/clock}).
 *
 * A `<video>` playing a WebRTC track reports, per presented frame (`requestVideoFrameCallback`),
 * its RTP timestamp, when its last packet arrived (`receiveTime`) and when it is expected on the
 * screen (`expectedDisplayTime`). The server writes RTP timestamps from the frames' capture times,
 * `capture_us × 90 / 1000 mod 2³²` (90 kHz, README "WHEP"), so the capture time is the RTP
 * timestamp's value in ms, unwrapped to the 13.25-hour period nearest the present.
 */
import { glassToGlassMs, type ClockOffsetEstimator, type OffsetEstimate } from '../stats/clock'
import { percentile, Ring } from '../stats/meters'

/** Milliseconds one RTP timestamp period spans at 90 kHz (2³² / 90 ≈ 13.25 h). */
export const RTP_PERIOD_MS = 2 ** 32 / 90

/** The capture time (train clock, epoch ms) of a 90 kHz RTP timestamp, nearest to `nearMs`. */
export function captureMsFromRtp(rtpTimestamp: number, nearMs: number): number {
  const inPeriod = (rtpTimestamp >>> 0) / 90
  return inPeriod + Math.round((nearMs - inPeriod) / RTP_PERIOD_MS) * RTP_PERIOD_MS
}

/** What `requestVideoFrameCallback` tells about a presented frame, the fields used here. */
export interface PresentedFrame {
  expectedDisplayTime: number
  receiveTime?: number
  rtpTimestamp?: number
}

export interface MediaLatency {
  latencySamples: number[]
  latencyP50: number | null
  latencyP95: number | null
}

/** Per-camera latency of presented frames; feeds the shared clock estimator with arrivals. */
export class MediaLatencyMeter {
  private readonly rings = new Map<number, Ring>()

  constructor(
    private readonly clock: ClockOffsetEstimator,
    private readonly estimate: () => OffsetEstimate,
    /** `performance.timeOrigin`: turns the callback's times into epoch ms. */
    private readonly timeOrigin: number,
  ) {}

  /** A frame of camera `index` presented; frames without an RTP timestamp are not measured. */
  presented(index: number, f: PresentedFrame): void {
    if (f.rtpTimestamp === undefined) return
    const shownMs = this.timeOrigin + f.expectedDisplayTime
    const captureMs = captureMsFromRtp(f.rtpTimestamp, shownMs)
    if (f.receiveTime !== undefined) this.clock.addFrame(this.timeOrigin + f.receiveTime, captureMs)
    let ring = this.rings.get(index)
    if (!ring) this.rings.set(index, (ring = new Ring(300)))
    ring.push(glassToGlassMs(shownMs, captureMs, this.estimate()))
  }

  stats(index: number): MediaLatency {
    const samples = this.rings.get(index)?.values() ?? []
    return { latencySamples: samples, latencyP50: percentile(samples, 50), latencyP95: percentile(samples, 95) }
  }

  reset(): void {
    this.rings.clear()
  }
}
