// Golden vectors: protocol/tests/vectors/*.hex, written from the spec by an independent encoder, read
// in place (never copied) and checked exactly as protocol/tests/vectors.rs checks them.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  Assembler, DecodeError, decodeControl, DEFAULT_MAX_BODY, DEFAULT_MAX_PAYLOAD, encodeControl, encodeVideoPacket,
  FLAG_KEYFRAME, packetize, parseVideoPacket, splitVideoMessage,
} from '../src/wire'

const dir = fileURLToPath(new URL('../../protocol/tests/vectors/', import.meta.url))

interface Entry {
  file: string
  kind: 'video' | 'control' | 'video_message' | 'assembler'
  description: string
  expect: {
    ok?: Record<string, unknown>
    error?: string | null
    /** `video_message` (§2.6): the packets of the split, in order, and how each parses. */
    packets?: { hex: string; parse: string }[]
    /** `assembler` (§2.5): the frames emitted, each with the index of the packet that completed it. */
    frames?: { after: number; camera: number; seq: number; keyframe: boolean; capture_us: number; data_hex: string }[]
    /** `assembler`: the counters at the end, named as the Rust `AssemblerStats`. */
    stats?: Record<string, number>
  }
}

/** Annotated hex: `#` starts a comment; the rest are whitespace-separated byte pairs. */
function readHex(name: string): Uint8Array {
  const out: number[] = []
  for (const line of readFileSync(dir + name, 'utf8').split('\n')) {
    for (const tok of line.split('#')[0].split(/\s+/).filter(Boolean)) {
      if (!/^[0-9a-fA-F]{2}$/.test(tok)) throw new Error(`${name}: bad hex ${tok}`)
      out.push(parseInt(tok, 16))
    }
  }
  return Uint8Array.from(out)
}

const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')

/** "ok", or the label of the DecodeError `f` throws. */
function resultOf(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    if (e instanceof DecodeError) return e.label
    throw e
  }
  return 'ok'
}

/** The label of the DecodeError `f` throws; decoding without error fails the test. */
function labelOf(f: () => unknown): string {
  const r = resultOf(f)
  if (r === 'ok') throw new Error('decoded without error')
  return r
}

/** Push every packet of `bytes` (back to back, as in a data-channel message) into one assembler. */
function assemble(bytes: Uint8Array) {
  const { packets, error } = splitVideoMessage(bytes)
  if (error) throw error
  const a = new Assembler()
  const frames = packets.flatMap((p, after) => {
    const f = a.push(parseVideoPacket(p, DEFAULT_MAX_PAYLOAD))
    return f ? [{ after, camera: f.camera, seq: f.seq, keyframe: f.keyframe, capture_us: f.captureUs, data_hex: toHex(f.data) }] : []
  })
  const s = a.stats
  const stats = {
    packets: s.packets,
    frames: s.frames,
    late_packets: s.latePackets,
    duplicate_packets: s.duplicatePackets,
    inconsistent_packets: s.inconsistentPackets,
    incomplete_frames: s.incompleteFrames,
    skipped_frames: s.skippedFrames,
  }
  return { frames, stats }
}

const manifest = JSON.parse(readFileSync(dir + 'manifest.json', 'utf8')) as Entry[]

describe('golden vectors', () => {
  it('the manifest lists every vector file', () => {
    expect(manifest.length).toBeGreaterThanOrEqual(40)
    expect(manifest.filter((e) => e.kind === 'video_message').length).toBeGreaterThanOrEqual(10)
    expect(manifest.filter((e) => e.kind === 'assembler').length).toBeGreaterThanOrEqual(4)
    // Audio (§2.7): Opus packets, hellos with audio sources, audio among video and in reassembly.
    expect(manifest.filter((e) => e.file.includes('audio')).length).toBeGreaterThanOrEqual(6)
    expect(manifest.filter((e) => e.expect.ok && (e.expect.ok as { codec?: string }).codec === 'opus').length).toBeGreaterThanOrEqual(2)
  })

  for (const e of manifest) {
    it(`${e.file}: ${e.description}`, () => {
      const bytes = readHex(e.file)
      if (e.kind === 'video') {
        if (e.expect.error) {
          expect(labelOf(() => parseVideoPacket(bytes, DEFAULT_MAX_PAYLOAD))).toBe(e.expect.error)
          return
        }
        const ok = e.expect.ok as Record<string, unknown>
        const pkt = parseVideoPacket(bytes, DEFAULT_MAX_PAYLOAD)
        const h = pkt.header
        expect({
          keyframe: h.keyframe,
          codec: h.codec,
          camera: h.camera,
          seq: h.seq,
          capture_us: h.captureUs,
          chunk_index: h.chunkIndex,
          chunk_count: h.chunkCount,
          payload_hex: toHex(pkt.payload),
        }).toEqual(ok)
        // Re-encode: same bytes, except reserved flag bits, which a v1 sender writes as 0.
        const want = bytes.slice()
        want[4] &= FLAG_KEYFRAME
        expect(toHex(encodeVideoPacket(h, pkt.payload))).toBe(toHex(want))
        if (h.chunkCount === 1) {
          const packets = packetize(h, pkt.payload, DEFAULT_MAX_PAYLOAD)
          expect(packets.map(toHex)).toEqual([toHex(want)])
        }
      } else if (e.kind === 'video_message') {
        const want = e.expect.packets
        if (!want || e.expect.error === undefined) throw new Error('video_message vector without packets and error')
        const { packets, error } = splitVideoMessage(bytes)
        expect(packets.map(toHex)).toEqual(want.map((p) => p.hex))
        expect(packets.map((p) => resultOf(() => parseVideoPacket(p, DEFAULT_MAX_PAYLOAD)))).toEqual(want.map((p) => p.parse))
        expect(error?.label ?? null).toBe(e.expect.error)
        for (const p of packets) expect(p.buffer).toBe(bytes.buffer)
      } else if (e.kind === 'assembler') {
        // Reassembly (§2.5): the packets pushed one by one into one receiver.
        const { frames, stats } = assemble(bytes)
        expect(frames).toEqual(e.expect.frames)
        expect(stats).toEqual(e.expect.stats)
      } else if (e.kind === 'control') {
        if (e.expect.error) {
          expect(labelOf(() => decodeControl(bytes, DEFAULT_MAX_BODY))).toBe(e.expect.error)
          return
        }
        const { message, used } = decodeControl(bytes, DEFAULT_MAX_BODY)
        expect(used).toBe(bytes.length)
        expect(message).toEqual(e.expect.ok)
        expect(toHex(encodeControl(message))).toBe(toHex(bytes))
      } else {
        throw new Error(`unknown kind ${String(e.kind)}`)
      }
    })
  }

  it('every prefix of a control frame is incomplete, not invalid', () => {
    const bytes = readHex('control_hello.hex')
    for (let cut = 0; cut < bytes.length; cut++) {
      expect(labelOf(() => decodeControl(bytes.subarray(0, cut), DEFAULT_MAX_BODY))).toBe('incomplete')
    }
  })
})
