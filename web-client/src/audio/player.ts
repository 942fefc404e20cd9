/**
 * The train's cab audio: Opus packets (docs/wire-format.md §2.7) from any packet transport →
 * WebCodecs `AudioDecoder` → an `AudioContext`, through the small playout buffer of `./jitter`.
 *
 * **Muted by default.** Browsers let a page start sound only after a user gesture (autoplay
 * policy), so the console starts muted and the operator unmutes with the audio panel's button;
 * that click creates (or resumes) the `AudioContext`. While muted, packets are still decoded, so
 * the figures (packets/s, decoded, decode errors) say whether audio flows before anyone listens.
 *
 * One source is played: the first audio source the train announces (`mapped_train_changed`,
 * `train_online`); packets of other ids are counted as `ignored`. Kept out of Vue's reactivity.
 */
import type { Frame } from '../wire/assembler'
import type { AudioInfo } from '../wire/control'
import { HEADER_LEN } from '../wire/packet'
import { percentile, RateMeter, Ring } from '../stats/meters'
import { DEFAULT_PLAYOUT, Playout, type PlayoutConfig } from './jitter'

/** What the browser provides; tests pass their own. */
export interface AudioEnv {
  /** Browser wall clock, ms. */
  now(): number
  /** `AudioDecoder` (undefined outside a secure context, where WebCodecs is hidden). */
  decoder?: typeof AudioDecoder
  /** A new `AudioContext`; called only from the unmute click (a user gesture). */
  context?: () => AudioContext
}

export interface AudioStats {
  /** The audio source played, or null when none is announced and none has sent anything. */
  source: AudioInfo | null
  muted: boolean
  /** `AudioContext` state, or `none` before the first unmute. */
  contextState: string
  /** Opus packets of the played source received. */
  packets: number
  /** Of them, per second over the last second. */
  packetRate: number
  /** Packet bits per second (headers included) over the last second. */
  bitrateBps: number
  /** `AudioDecoder` outputs (20 ms each). */
  decoded: number
  decodeErrors: number
  lastError: string | null
  /** Packets of audio sources that are not played. */
  ignored: number
  /** Frames handed to the `AudioContext`; starts after an underrun; frames dropped as too far ahead. */
  scheduled: number
  underruns: number
  overflows: number
  /** Audio scheduled ahead of the context's clock, ms. */
  bufferedMs: number
  /**
   * Capture → the moment the frame starts playing, ms, median of the latest frames (the train's
   * clock as is, uncorrected: exact when train and browser share a clock, as in the tests).
   */
  playDelayP50: number | null
}

export const NO_AUDIO_DECODER = 'AudioDecoder is not available: WebCodecs needs a secure context (https or localhost)'

/** What a source defaults to when packets arrive before any announcement (or from an older server). */
export function defaultSource(id: number): AudioInfo {
  return { id, codec: 'opus', sample_rate: 48_000, channels: 1, frame_ms: 20 }
}

function sameSource(a: AudioInfo | null, b: AudioInfo | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

export class AudioPlayer {
  muted = true
  private source: AudioInfo | null = null
  private decoder: AudioDecoder | null = null
  private ctx: AudioContext | null = null
  private readonly playout: Playout
  private readonly rate = new RateMeter(1000)
  private readonly bits = new RateMeter(1000)
  private packets = 0
  private decoded = 0
  private decodeErrors = 0
  private ignored = 0
  private lastError: string | null = null
  private readonly playDelay = new Ring(250)

  constructor(private readonly env: AudioEnv, config: PlayoutConfig = DEFAULT_PLAYOUT) {
    this.playout = new Playout(config)
  }

  /** The train's audio sources (from its hello, via the server's events): play the first. */
  configure(sources: readonly AudioInfo[]): void {
    const next = sources[0] ?? null
    if (sameSource(next, this.source)) return
    this.source = next
    this.closeDecoder() // configured for another source
    this.playout.reset()
  }

  /** One Opus packet (a one-chunk keyframe out of the assembler). */
  push(frame: Frame, arrivalMs: number): void {
    if (!this.source) this.source = defaultSource(frame.camera)
    if (frame.camera !== this.source.id) {
      this.ignored++
      return
    }
    this.packets++
    this.rate.add(arrivalMs)
    this.bits.add(arrivalMs, (HEADER_LEN + frame.data.length) * 8)
    const decoder = this.ensureDecoder(this.source)
    if (!decoder) return
    try {
      decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: frame.captureUs, data: frame.data }))
    } catch (e) {
      this.onError(e)
    }
  }

  /**
   * Mute or unmute. Call it from the click handler: unmuting creates the `AudioContext` before
   * anything is awaited, which is what the autoplay policy requires.
   */
  async setMuted(muted: boolean): Promise<void> {
    this.muted = muted
    this.playout.reset()
    if (!muted) {
      if (!this.ctx || this.ctx.state === 'closed') {
        const make = this.env.context ?? (() => new AudioContext({ latencyHint: 'interactive' }))
        try {
          this.ctx = make()
        } catch (e) {
          this.lastError = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
          this.muted = true
          return
        }
      }
      if (this.ctx.state === 'suspended') await this.ctx.resume()
    } else if (this.ctx?.state === 'running') {
      await this.ctx.suspend()
    }
  }

  /** A new stream (another train, session or link): drop what is queued, start the buffer anew. */
  reset(): void {
    this.closeDecoder()
    this.playout.reset()
    this.playDelay.clear()
  }

  /** Forget the stream and release the sound card (signed out, no remote control). */
  close(): void {
    this.reset()
    this.source = null
    this.muted = true
    if (this.ctx && this.ctx.state !== 'closed') void this.ctx.close().catch(() => undefined)
    this.ctx = null
  }

  stats(): AudioStats {
    const now = this.env.now()
    const t = this.ctx?.currentTime ?? 0
    return {
      source: this.source,
      muted: this.muted,
      contextState: this.ctx?.state ?? 'none',
      packets: this.packets,
      packetRate: this.rate.rate(now),
      bitrateBps: this.bits.rate(now),
      decoded: this.decoded,
      decodeErrors: this.decodeErrors,
      lastError: this.lastError,
      ignored: this.ignored,
      ...this.playout.stats,
      bufferedMs: this.ctx && !this.muted ? this.playout.bufferedMs(t) : 0,
      playDelayP50: percentile(this.playDelay.values(), 50),
    }
  }

  private ensureDecoder(source: AudioInfo): AudioDecoder | null {
    if (this.decoder && this.decoder.state === 'configured') return this.decoder
    const Decoder = this.env.decoder ?? (globalThis as { AudioDecoder?: typeof AudioDecoder }).AudioDecoder
    if (typeof Decoder !== 'function') {
      this.lastError = NO_AUDIO_DECODER
      return null
    }
    try {
      const d = new Decoder({ output: (a) => this.output(a), error: (e) => this.onError(e) })
      this.decoder = d
      d.configure({ codec: 'opus', sampleRate: source.sample_rate, numberOfChannels: source.channels })
      return d
    } catch (e) {
      this.onError(e)
      return null
    }
  }

  private closeDecoder(): void {
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close()
    this.decoder = null
  }

  private onError(e: unknown): void {
    this.decodeErrors++
    this.lastError = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
    // A decoder that failed is closed; the next packet configures a new one.
    this.closeDecoder()
  }

  private output(data: AudioData): void {
    this.decoded++
    try {
      const ctx = this.ctx
      if (this.muted || !ctx || ctx.state !== 'running') return
      const d = this.playout.schedule(ctx.currentTime, data.duration / 1e6)
      if (!d.play) return
      const buf = ctx.createBuffer(data.numberOfChannels, data.numberOfFrames, data.sampleRate)
      for (let c = 0; c < data.numberOfChannels; c++) {
        data.copyTo(buf.getChannelData(c), { planeIndex: c, format: 'f32-planar' })
      }
      const node = ctx.createBufferSource()
      node.buffer = buf
      node.connect(ctx.destination)
      node.start(d.at)
      this.playDelay.push(this.env.now() + (d.at - ctx.currentTime) * 1000 - data.timestamp / 1000)
    } catch (e) {
      this.lastError = e instanceof Error ? `${e.name}: ${e.message}` : String(e)
    } finally {
      data.close()
    }
  }
}
