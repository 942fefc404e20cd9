// The cab audio's pure parts: the playout buffer, and the path of an Opus packet through the
// pipeline (parse, reassembly, the player's counters) up to the browser's AudioDecoder, which is
// replaced here by a recorder (Node has no WebCodecs; the real one runs in the Chromium test).
import { beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_PLAYOUT, Playout } from '../src/audio/jitter'
import { defaultSource, NO_AUDIO_DECODER } from '../src/audio/player'
import { VideoPipeline } from '../src/video/pipeline'
import { encodeVideoPacket, packetize } from '../src/wire/packet'
import type { AudioInfo } from '../src/wire/control'

describe('playout buffer', () => {
  it('lays frames end to end, the first one target ms ahead', () => {
    const p = new Playout({ targetMs: 60, maxMs: 250 })
    expect(p.schedule(10, 0.02)).toEqual({ play: true, at: 10.06 })
    const second = p.schedule(10.005, 0.02)
    expect(second.play && second.at).toBeCloseTo(10.08, 9)
    expect(p.bufferedMs(10.005)).toBeCloseTo(95, 6)
    expect(p.stats).toEqual({ scheduled: 2, underruns: 0, overflows: 0 })
  })

  it('after an underrun starts again target ms ahead, and counts it', () => {
    const p = new Playout({ targetMs: 60, maxMs: 250 })
    p.schedule(0, 0.02)
    // Nothing for half a second: the cursor (0.08) is behind the clock.
    const d = p.schedule(0.5, 0.02)
    expect(d.play && d.at).toBeCloseTo(0.56, 9)
    expect(p.stats.underruns).toBe(1)
  })

  it('drops frames while the lead is above max, until it is back to the target', () => {
    const p = new Playout({ targetMs: 60, maxMs: 150 })
    // A burst of 20 frames (400 ms) at one instant: leads 60 … 140 ms play, then the lead is 160.
    const played = Array.from({ length: 20 }, () => p.schedule(1, 0.02)).filter((d) => d.play).length
    expect(played).toBe(5)
    expect(p.stats.overflows).toBe(15)
    // 60 ms later the lead is 100 ms: still above the target, still dropping.
    expect(p.schedule(1.06, 0.02)).toEqual({ play: false, why: 'overflow' })
    // Back to the target: play again, end to end with what is scheduled.
    const d = p.schedule(1.1, 0.02)
    expect(d.play && d.at).toBeCloseTo(1.16, 9)
    expect(p.schedule(1.101, 0.02).play).toBe(true)
    expect(p.bufferedMs(1.101)).toBeLessThanOrEqual(DEFAULT_PLAYOUT.maxMs)
    p.reset()
    expect(p.schedule(2, 0.02)).toEqual({ play: true, at: 2.06 })
  })
})

/** Records what the pipeline hands to the browser's decoder; `fail()` reports a decode error. */
class RecordingDecoder {
  static all: RecordingDecoder[] = []
  state: 'unconfigured' | 'configured' | 'closed' = 'unconfigured'
  config: AudioDecoderConfig | null = null
  chunks: { type: string; timestamp: number; data: Uint8Array }[] = []
  constructor(private readonly init: AudioDecoderInit) {
    RecordingDecoder.all.push(this)
  }
  configure(c: AudioDecoderConfig) {
    this.config = c
    this.state = 'configured'
  }
  decode(chunk: { type: string; timestamp: number; data: Uint8Array }) {
    this.chunks.push(chunk)
    // What a real decoder does for every packet: one output (here a stand-in AudioData).
    this.init.output({ duration: 20_000, close() {} } as unknown as AudioData)
  }
  fail() {
    this.state = 'closed'
    this.init.error(new DOMException('bad Opus packet', 'EncodingError'))
  }
  close() {
    this.state = 'closed'
  }
}

beforeAll(() => {
  // Node has no WebCodecs: a chunk is its init dictionary.
  ;(globalThis as Record<string, unknown>).EncodedAudioChunk = class {
    constructor(init: object) {
      Object.assign(this, init)
    }
  }
})

const TS = 1_763_812_800_123_456
const MIC: AudioInfo = { id: 256, codec: 'opus', sample_rate: 48_000, channels: 1, frame_ms: 20 }

function opus(seq: number, id = 256): Uint8Array {
  return encodeVideoPacket(
    { keyframe: true, codec: 'opus', camera: id, seq, captureUs: TS + seq * 20_000, chunkIndex: 0, chunkCount: 1 },
    Uint8Array.of(0xf8, seq & 0xff, 0xfe),
  )
}

function pipeline(decoder: typeof AudioDecoder | undefined) {
  let t = 0
  const p = new VideoPipeline({
    now: () => t,
    needKeyframe: () => undefined,
    schedulePaint: () => undefined,
    audio: { decoder },
  })
  return { p, at: (ms: number) => (t = ms) }
}

describe('audio through the pipeline', () => {
  it('each Opus packet reaches the AudioDecoder whole, with its capture time, and is counted', () => {
    RecordingDecoder.all = []
    const { p, at } = pipeline(RecordingDecoder as unknown as typeof AudioDecoder)
    p.audio.configure([MIC])
    for (let seq = 0; seq < 50; seq++) p.push(opus(seq), at(seq * 20))
    // A late duplicate is refused by reassembly; another source's packets are not played.
    p.push(opus(10), at(990))
    p.push(opus(0, 300), at(990))
    const [d] = RecordingDecoder.all
    expect(d.config).toEqual({ codec: 'opus', sampleRate: 48_000, numberOfChannels: 1 })
    expect(d.chunks.map((c) => c.timestamp)).toEqual(Array.from({ length: 50 }, (_, i) => TS + i * 20_000))
    expect(d.chunks.every((c) => c.type === 'key')).toBe(true)
    expect([...d.chunks[7].data]).toEqual([0xf8, 7, 0xfe])
    const s = p.audio.stats()
    expect(s).toMatchObject({ packets: 50, decoded: 50, decodeErrors: 0, ignored: 1, muted: true, contextState: 'none', scheduled: 0 })
    expect(s.packetRate).toBe(50)
    expect(s.bitrateBps).toBe(50 * 29 * 8)
    // Audio is no camera: no camera decoder, no camera figures.
    expect(p.stats()).toEqual([])
  })

  it('counts decode errors and carries on with a new decoder', () => {
    RecordingDecoder.all = []
    const { p, at } = pipeline(RecordingDecoder as unknown as typeof AudioDecoder)
    p.push(opus(0), at(0))
    RecordingDecoder.all[0].fail()
    p.push(opus(1), at(20))
    const s = p.audio.stats()
    expect(s.decodeErrors).toBe(1)
    expect(s.lastError).toContain('bad Opus packet')
    expect(RecordingDecoder.all).toHaveLength(2)
    expect(RecordingDecoder.all[1].chunks).toHaveLength(1)
    // Packets before any announcement play as the default source.
    expect(s.source).toEqual(defaultSource(256))
  })

  it('refuses a chunked Opus packet as bad_chunk, never reaching the decoder', () => {
    RecordingDecoder.all = []
    const { p, at } = pipeline(RecordingDecoder as unknown as typeof AudioDecoder)
    const bad = opus(0)
    bad[23] = 2 // chunk count 2
    p.push(bad, at(0))
    expect(p.rejected).toEqual({ bad_chunk: 1 })
    expect(RecordingDecoder.all).toHaveLength(0)
    expect(() => packetize({ keyframe: true, codec: 'opus', camera: 256, seq: 0, captureUs: 0 }, new Uint8Array(1151))).toThrow(RangeError)
  })

  it('without WebCodecs says why instead of throwing', () => {
    const { p, at } = pipeline(undefined)
    p.push(opus(0), at(0))
    expect(p.audio.stats()).toMatchObject({ packets: 1, decoded: 0, lastError: NO_AUDIO_DECODER })
  })

  it('a new stream closes the decoder and the next packet configures another', () => {
    RecordingDecoder.all = []
    const { p, at } = pipeline(RecordingDecoder as unknown as typeof AudioDecoder)
    p.push(opus(0), at(0))
    p.reset(true)
    expect(RecordingDecoder.all[0].state).toBe('closed')
    p.push(opus(0), at(40))
    expect(RecordingDecoder.all).toHaveLength(2)
    expect(p.audio.stats().packets).toBe(2)
  })
})
