// Video packet validation order (§2.1) and sequence arithmetic (§2.3), the Rust unit tests ported.
import { describe, expect, it } from 'vitest'
import { DecodeError, HEADER_LEN, packetize, parseVideoPacket, seqDistance, seqIsAfter, seqNext } from '../src/wire'

const meta = { keyframe: true, camera: 2, seq: 77, captureUs: 1_700_000_000_123_456 }

function label(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    if (e instanceof DecodeError) return e.label
    throw e
  }
  return 'ok'
}

describe('video packets', () => {
  it('packetize round trip', () => {
    for (const len of [1, 2, 1149, 1150, 1151, 2300, 2301, 10_000]) {
      const frame = Uint8Array.from({ length: len }, (_, i) => (i * 7) % 251)
      const packets = packetize(meta, frame, 1150)
      expect(packets.length).toBe(Math.ceil(len / 1150))
      const rebuilt: number[] = []
      packets.forEach((b, i) => {
        const p = parseVideoPacket(b, 1150)
        expect(p.header.chunkIndex).toBe(i)
        expect(p.header.chunkCount).toBe(packets.length)
        expect(p.header.captureUs).toBe(meta.captureUs)
        expect(p.payload.length).toBeLessThanOrEqual(1150)
        rebuilt.push(...p.payload)
      })
      expect(rebuilt).toEqual(Array.from(frame))
    }
  })

  it('chunks are even', () => {
    expect(packetize(meta, new Uint8Array(1151), 1150).map((p) => p.length - HEADER_LEN)).toEqual([576, 575])
  })

  it('rejects in the documented order', () => {
    const good = packetize(meta, new Uint8Array(100).fill(9), 1150)[0]
    const parse = (b: Uint8Array, max = 1150) => label(() => parseVideoPacket(b, max))
    const mod = (f: (b: Uint8Array) => void) => {
      const b = good.slice()
      f(b)
      return b
    }
    expect(parse(good)).toBe('ok')
    expect(parse(good.subarray(0, 3))).toBe('truncated')
    expect(parse(good.subarray(0, 25))).toBe('truncated')
    expect(parse(good.subarray(0, 60))).toBe('truncated')
    expect(parse(Uint8Array.from([...good, 0]))).toBe('length_mismatch')
    expect(parse(mod((b) => (b[0] = 0x58)))).toBe('bad_magic')
    expect(parse(mod((b) => (b[2] = 2)))).toBe('unsupported_version')
    expect(parse(mod((b) => (b[3] = 0x7f)))).toBe('unknown_kind')
    expect(parse(mod((b) => (b[3] = 0x12)))).toBe('wrong_kind')
    expect(parse(mod((b) => (b[5] = 9)))).toBe('unknown_codec')
    expect(parse(mod((b) => b.set([0, 1, 0, 1], 20)))).toBe('bad_chunk')
    expect(parse(mod((b) => b.set([0, 0], 22)))).toBe('bad_chunk')
    expect(parse(good, 99)).toBe('payload_too_large')
    const empty = good.slice(0, HEADER_LEN)
    empty.set([0, 0], 24)
    expect(parse(empty)).toBe('empty_payload')
    // A bad codec is reported before a bad chunk, a bad chunk before a bad length.
    expect(parse(mod((b) => { b[5] = 9; b.set([0, 0], 22) }))).toBe('unknown_codec')
    expect(parse(Uint8Array.from([...mod((b) => b.set([0, 0], 22)), 1, 2]))).toBe('bad_chunk')
  })

  it('never throws anything but a DecodeError', () => {
    let seed = 1
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff
    const good = packetize(meta, new Uint8Array(40).fill(1), 1150)[0]
    for (let i = 0; i < 5000; i++) {
      const b = good.slice(0, rnd() % (good.length + 4))
      for (let k = 0; k < 3; k++) if (b.length) b[rnd() % b.length] = rnd()
      expect(() => {
        try {
          parseVideoPacket(b, 1150)
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e
        }
      }).not.toThrow()
    }
  })

  it('reads a capture time above 2^32 µs exactly', () => {
    const b = packetize({ ...meta, captureUs: 2 ** 52 + 3 }, new Uint8Array([1]), 1150)[0]
    expect(parseVideoPacket(b).header.captureUs).toBe(2 ** 52 + 3)
  })
})

describe('frame sequence numbers', () => {
  it('compare by serial-number arithmetic', () => {
    const table: [number, number, number | null][] = [
      [1, 0, 1],
      [0, 1, -1],
      [0, 0xffff_ffff, 1],
      [0xffff_ffff, 0, -1],
      [5, 0xffff_ffff - 4, 10],
      [2 ** 31, 0, null],
      [2 ** 31 - 1, 0, 2 ** 31 - 1],
      [2 ** 31 + 1, 0, -(2 ** 31) + 1],
      [7, 7, 0],
    ]
    for (const [a, b, want] of table) expect(seqDistance(a, b), `${a} - ${b}`).toBe(want)
    expect(seqIsAfter(0, 0xffff_ffff)).toBe(true)
    expect(seqIsAfter(0xffff_ffff, 0)).toBe(false)
    expect(seqIsAfter(2 ** 31, 0)).toBe(false)
    expect(seqIsAfter(0, 2 ** 31)).toBe(false)
    expect(seqNext(0xffff_ffff)).toBe(0)
  })
})
