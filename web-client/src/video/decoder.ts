/**
 * One camera: WebCodecs `VideoDecoder` (H.264 Annex B) → a canvas, with the figures of its stats
 * overlay. Decoded frames are painted on the next animation frame; when several are decoded
 * within one display refresh only the newest is painted (the others are "superseded").
 */
import type { Frame } from '../wire/assembler'
import { glassToGlassMs, type OffsetEstimate } from '../stats/clock'
import { RateMeter, Ring } from '../stats/meters'
import { codecString, FALLBACK_CODEC } from './h264'

/**
 * The decoder is behind when what it last output was captured this long before what it is given
 * now; then skip to the next keyframe. A late joiner's first burst (the server's cached GOP, at most
 * one keyframe interval old) stays under it.
 */
const MAX_DECODE_LAG_MS = 1500
/** Latency samples kept per camera. */
const LATENCY_SAMPLES = 600

export interface CameraCounters {
  framesIn: number
  framesDecoded: number
  framesPainted: number
  /** Decoded but replaced by a newer frame before the next paint. */
  superseded: number
  /** Skipped because the decoder needed a keyframe (start, error, backlog). */
  skippedForKeyframe: number
  decodeErrors: number
  /** Frames decoded after they were queued: the decoder fell behind. */
  backlogDrops: number
}

export interface DecoderEnv {
  /** Browser wall clock, ms since the epoch. */
  now(): number
  /** The current train → browser clock estimate. */
  clock(): OffsetEstimate
  /** Ask the train for a keyframe of this camera (after an error or a backlog). */
  needKeyframe(camera: number, why: string): void
  /** Schedules a paint (requestAnimationFrame in the browser). */
  schedulePaint(cb: () => void): void
}

export class CameraDecoder {
  readonly counters: CameraCounters = {
    framesIn: 0, framesDecoded: 0, framesPainted: 0, superseded: 0, skippedForKeyframe: 0, decodeErrors: 0, backlogDrops: 0,
  }
  readonly paintRate = new RateMeter(1000)
  readonly latency = new Ring(LATENCY_SAMPLES)
  /** Capture → paint without any clock correction, ms. */
  readonly rawLatency = new Ring(LATENCY_SAMPLES)
  codec: string | null = null
  width = 0
  height = 0
  lastError: string | null = null

  private decoder: VideoDecoder | null = null
  /** Capture time of the last decoded frame, ms (train clock). */
  private lastOutputMs = 0
  private needKey = true
  private pending: VideoFrame | null = null
  private paintScheduled = false
  private canvas: HTMLCanvasElement | null = null
  private ctx: CanvasRenderingContext2D | null = null

  constructor(readonly camera: number, private readonly env: DecoderEnv) {}

  attach(canvas: HTMLCanvasElement | null): void {
    this.canvas = canvas
    this.ctx = canvas ? canvas.getContext('2d', { alpha: false, desynchronized: true }) : null
  }

  /** A new stream (another train, another session): wait for a keyframe, drop what is queued. */
  reset(): void {
    this.needKey = true
    // Drops queued chunks and undelivered outputs, and unconfigures: the next keyframe configures.
    if (this.decoder && this.decoder.state === 'configured') this.decoder.reset()
    this.codec = null
    this.lastOutputMs = 0
    this.pending?.close()
    this.pending = null
  }

  close(): void {
    this.reset()
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close()
    this.decoder = null
  }

  decode(frame: Frame): void {
    this.counters.framesIn++
    if (this.needKey && !frame.keyframe) {
      this.counters.skippedForKeyframe++
      return
    }
    if (frame.keyframe) {
      const codec = codecString(frame.data) ?? this.codec ?? FALLBACK_CODEC
      if (!this.decoder || this.decoder.state === 'closed' || this.codec !== codec || this.decoder.state !== 'configured') {
        if (!this.configure(codec)) return
      }
    } else if (this.decoder && this.decoder.decodeQueueSize > 2 && frame.captureUs / 1000 - this.lastOutputMs > MAX_DECODE_LAG_MS) {
      this.counters.backlogDrops++
      this.needKey = true
      this.env.needKeyframe(this.camera, 'decoder backlog')
      return
    }
    if (!this.decoder || this.decoder.state !== 'configured') return
    this.needKey = false
    if (this.lastOutputMs === 0) this.lastOutputMs = frame.captureUs / 1000 // lag is measured from here
    try {
      this.decoder.decode(
        new EncodedVideoChunk({ type: frame.keyframe ? 'key' : 'delta', timestamp: frame.captureUs, data: frame.data }),
      )
    } catch (e) {
      this.onError(e)
    }
  }

  private configure(codec: string): boolean {
    // Outside a secure context the browser has no VideoDecoder (the console says so at start-up):
    // count nothing and ask for no keyframes, there is nothing to decode with.
    if (typeof VideoDecoder === 'undefined') {
      this.lastError = 'VideoDecoder is not available: WebCodecs needs a secure context (https or localhost)'
      return false
    }
    if (!this.decoder || this.decoder.state === 'closed') {
      this.decoder = new VideoDecoder({ output: (f) => this.output(f), error: (e) => this.onError(e) })
    }
    try {
      this.decoder.configure({ codec, optimizeForLatency: true, hardwareAcceleration: 'no-preference' })
      this.codec = codec
      return true
    } catch (e) {
      this.onError(e)
      return false
    }
  }

  private onError(e: unknown): void {
    this.counters.decodeErrors++
    this.lastError = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
    this.needKey = true
    this.codec = null
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close()
    this.decoder = null
    this.env.needKeyframe(this.camera, 'decode error')
  }

  private output(f: VideoFrame): void {
    this.counters.framesDecoded++
    this.lastOutputMs = f.timestamp / 1000
    if (this.pending) {
      this.pending.close()
      this.counters.superseded++
    }
    this.pending = f
    if (!this.paintScheduled) {
      this.paintScheduled = true
      this.env.schedulePaint(() => this.paint())
    }
  }

  private paint(): void {
    this.paintScheduled = false
    const f = this.pending
    this.pending = null
    if (!f) return
    try {
      if (!this.canvas || !this.ctx) return
      const w = f.displayWidth
      const h = f.displayHeight
      if (this.canvas.width !== w || this.canvas.height !== h) {
        this.canvas.width = w
        this.canvas.height = h
      }
      this.width = w
      this.height = h
      this.ctx.drawImage(f, 0, 0, w, h)
      const paintedAt = this.env.now()
      const captureMs = f.timestamp / 1000
      this.counters.framesPainted++
      this.paintRate.add(paintedAt)
      this.rawLatency.push(paintedAt - captureMs)
      this.latency.push(glassToGlassMs(paintedAt, captureMs, this.env.clock()))
    } finally {
      f.close()
    }
  }
}
