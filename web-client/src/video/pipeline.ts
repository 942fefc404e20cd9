/**
 * Video from any transport → pictures: parse each packet, reassemble frames with the one
 * {@link Assembler}, feed each camera's {@link CameraDecoder}, and keep the per-camera figures of
 * the stats overlay. Kept out of Vue's reactivity: it runs for every packet.
 *
 * Audio shares the path up to reassembly (an Opus packet is a one-chunk keyframe, §2.7); its
 * frames then go to the {@link AudioPlayer} instead of a camera.
 */
import { Assembler, emptyStats, type AssemblerStats } from '../wire/assembler'
import { DecodeError } from '../wire/common'
import { MAX_PAYLOAD_LIMIT, parseVideoPacket } from '../wire/packet'
import type { VideoData } from '../transport/link'
import { ClockOffsetEstimator, type OffsetEstimate } from '../stats/clock'
import { percentile, RateMeter } from '../stats/meters'
import { CameraDecoder, type CameraCounters } from './decoder'
import { AudioPlayer, type AudioEnv } from '../audio/player'

export interface CameraStats extends CameraCounters {
  camera: number
  codec: string | null
  width: number
  height: number
  /** Frames painted per second over the last second. */
  fps: number
  /** Received video bits per second (packet bytes, headers included) over the last second. */
  bitrateBps: number
  /** Frames lost before decoding: incomplete, skipped while waiting for a keyframe, late. */
  dropped: number
  assembler: AssemblerStats
  /** The latest glass-to-glass samples, ms (clock-corrected when the offset is applied). */
  latencySamples: number[]
  latencyP50: number | null
  latencyP95: number | null
  rawLatencyP50: number | null
  lastError: string | null
}

export interface PipelineHooks {
  now(): number
  /** What the audio player needs of the browser beyond the clock (tests pass their own). */
  audio?: Omit<AudioEnv, 'now'>
  needKeyframe(camera: number, why: string): void
  schedulePaint(cb: () => void): void
}

export class VideoPipeline {
  readonly assembler = new Assembler()
  readonly clock = new ClockOffsetEstimator()
  /** The cab audio: Opus frames out of the assembler. */
  readonly audio: AudioPlayer
  /**
   * Packets refused by the decoder, by reason (`truncated`, `bad_magic`, …); the rest of a
   * data-channel message whose split failed (§2.6) counts once, under the split's reason.
   */
  readonly rejected: Record<string, number> = {}
  /** Why the last refused packet was refused (the decoder's message), or null. */
  lastRejection: string | null = null
  private maxPayload = MAX_PAYLOAD_LIMIT
  private readonly cameras = new Map<number, CameraDecoder>()
  private readonly canvases = new Map<number, HTMLCanvasElement>()
  private readonly bitrate = new Map<number, RateMeter>()
  private estimate: OffsetEstimate
  private estimateAt = 0

  constructor(private readonly hooks: PipelineHooks) {
    this.estimate = this.clock.estimate(hooks.now())
    this.audio = new AudioPlayer({ ...hooks.audio, now: hooks.now })
  }

  /** The clock estimate, recomputed at most every 100 ms (it is read for every painted frame). */
  clockEstimate(): OffsetEstimate {
    const now = this.hooks.now()
    if (now - this.estimateAt > 100) {
      this.estimate = this.clock.estimate(now)
      this.estimateAt = now
    }
    return this.estimate
  }

  private camera(id: number): CameraDecoder {
    let c = this.cameras.get(id)
    if (!c) {
      c = new CameraDecoder(id, {
        now: this.hooks.now,
        clock: () => this.clockEstimate(),
        needKeyframe: this.hooks.needKeyframe,
        schedulePaint: this.hooks.schedulePaint,
      })
      c.attach(this.canvases.get(id) ?? null)
      this.cameras.set(id, c)
    }
    return c
  }

  attachCanvas(id: number, canvas: HTMLCanvasElement | null): void {
    if (canvas) this.canvases.set(id, canvas)
    else this.canvases.delete(id)
    this.cameras.get(id)?.attach(canvas)
  }

  /**
   * The payload limit from the server's `welcome` (`max_payload`, docs/wire-format.md §4): larger
   * packets are refused as `payload_too_large`. Until a welcome says otherwise, and when it has no
   * valid value (an older server), the limit is the largest the 16-bit length field can express.
   */
  setMaxPayload(limit: number | undefined): void {
    const ok = Number.isInteger(limit) && (limit as number) >= 1 && (limit as number) <= MAX_PAYLOAD_LIMIT
    this.maxPayload = ok ? (limit as number) : MAX_PAYLOAD_LIMIT
  }

  /** The payload limit in force, bytes. */
  payloadLimit(): number {
    return this.maxPayload
  }

  /**
   * One video packet from the active transport (a whole buffer or a view, parsed in place), or the
   * error that ended the split of a data-channel message, counted like a malformed packet.
   */
  push(data: VideoData, arrivalMs: number): void {
    let pkt
    try {
      if (data instanceof DecodeError) throw data
      pkt = parseVideoPacket(data, this.maxPayload)
    } catch (e) {
      const label = e instanceof DecodeError ? e.label : 'error'
      this.rejected[label] = (this.rejected[label] ?? 0) + 1
      this.lastRejection = e instanceof Error ? e.message : String(e)
      if (label === 'payload_too_large') this.lastRejection += " (the server's max_payload)"
      return
    }
    const cam = pkt.header.camera
    let meter = this.bitrate.get(cam)
    if (!meter) this.bitrate.set(cam, (meter = new RateMeter(1000)))
    meter.add(arrivalMs, pkt.byteLength * 8)
    const frame = this.assembler.push(pkt)
    if (!frame) return
    if (frame.codec === 'opus') {
      this.audio.push(frame, arrivalMs)
      return
    }
    this.clock.addFrame(arrivalMs, frame.captureUs / 1000)
    this.camera(cam).decode(frame)
  }

  /** A new stream: another train, a new train session, or another link. */
  reset(newTrainClock: boolean): void {
    this.assembler.reset()
    for (const c of this.cameras.values()) c.reset()
    this.audio.reset()
    if (newTrainClock) this.clock.resetTrain()
  }

  /** Forget every camera and figure (signed out, or no remote control any more). */
  clear(): void {
    this.assembler.reset()
    for (const c of this.cameras.values()) c.close()
    this.cameras.clear()
    this.audio.close()
    this.bitrate.clear()
    this.clock.resetTrain()
  }

  stats(): CameraStats[] {
    const now = this.hooks.now()
    return [...this.cameras.values()].map((c) => {
      const a = this.assembler.cameraStats(c.camera) ?? emptyStats()
      const samples = c.latency.values()
      return {
        camera: c.camera,
        ...c.counters,
        codec: c.codec,
        width: c.width,
        height: c.height,
        fps: c.paintRate.rate(now),
        bitrateBps: this.bitrate.get(c.camera)?.rate(now) ?? 0,
        dropped: a.incompleteFrames + a.skippedFrames + c.counters.skippedForKeyframe + c.counters.backlogDrops,
        assembler: { ...a },
        latencySamples: samples,
        latencyP50: percentile(samples, 50),
        latencyP95: percentile(samples, 95),
        rawLatencyP50: percentile(c.rawLatency.values(), 50),
        lastError: c.lastError,
      }
    })
  }

  /** Drop a camera the train no longer announces. */
  forget(id: number): void {
    this.cameras.get(id)?.close()
    this.cameras.delete(id)
  }
}
