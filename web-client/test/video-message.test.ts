// Data-channel video messages (docs/wire-format.md §2.6): one or more whole packets back to back,
// split into views of the message, and what the WebRTC link and the pipeline do with them.
import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { openWebRtc } from '../src/transport/webrtc'
import type { VideoData } from '../src/transport/link'
import { VideoPipeline } from '../src/video/pipeline'
import { DecodeError, encodeVideoPacket, HEADER_LEN, parseVideoPacket, splitVideoMessage } from '../src/wire'

const arbPacket = fc
  .record({
    keyframe: fc.boolean(),
    camera: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.integer({ min: 0, max: 0xffff_ffff }),
    captureUs: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    chunkCount: fc.integer({ min: 1, max: 0xffff }),
    payload: fc.uint8Array({ minLength: 1, maxLength: 1500 }),
  })
  .chain((r) => fc.integer({ min: 0, max: r.chunkCount - 1 }).map((chunkIndex) => ({ ...r, chunkIndex })))
  .map(({ payload, ...h }) => encodeVideoPacket({ ...h, codec: 'h264' }, payload))

/** `parts` back to back in one buffer, starting `at` bytes into it (a view, as a message might be). */
function concat(parts: Uint8Array[], at = 0): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0)
  const out = new Uint8Array(at + total + 3).subarray(at, at + total)
  let off = 0
  for (const p of parts) {
    out.set(p, off)
    off += p.length
  }
  return out
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')

describe('splitVideoMessage', () => {
  it('packets back to back split into exactly those packets', () => {
    fc.assert(
      fc.property(fc.array(arbPacket, { minLength: 1, maxLength: 12 }), fc.nat(16), (packets, at) => {
        const msg = concat(packets, at)
        const { packets: got, error } = splitVideoMessage(msg)
        expect(error).toBeNull()
        expect(got.map(hex)).toEqual(packets.map(hex))
        for (const p of got) expect(parseVideoPacket(p).byteLength).toBe(p.length)
      }),
    )
  })

  it('keeps the packets before a framing error and reports the error once', () => {
    fc.assert(
      fc.property(fc.array(arbPacket, { maxLength: 6 }), fc.uint8Array({ minLength: 1, maxLength: HEADER_LEN - 1 }), (packets, tail) => {
        const { packets: got, error } = splitVideoMessage(concat([...packets, tail]))
        expect(got.map(hex)).toEqual(packets.map(hex))
        expect(error?.label).toBe('truncated')
      }),
    )
  })

  it('never throws, and its packets tile a prefix of the input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(arbPacket, { maxLength: 3 }), (junk, packets) => {
        // Junk alone, and junk behind valid packets (so that the split gets past the first one).
        for (const msg of [junk, concat([...packets, junk])]) {
          const { packets: got, error } = splitVideoMessage(msg)
          let off = 0
          for (const p of got) {
            expect(p.byteOffset).toBe(msg.byteOffset + off)
            expect(p.length).toBe(HEADER_LEN + ((p[24] << 8) | p[25]))
            off += p.length
          }
          if (error === null) expect(off).toBe(msg.length)
          else expect(error).toBeInstanceOf(DecodeError)
        }
      }),
      { numRuns: 500 },
    )
  })

  it('the packets are views into the input, never copies', () => {
    fc.assert(
      fc.property(fc.array(arbPacket, { minLength: 1, maxLength: 5 }), fc.nat(8), (packets, at) => {
        const msg = concat(packets, at)
        for (const input of [msg, msg.slice().buffer]) {
          const buffer = input instanceof Uint8Array ? input.buffer : input
          const { packets: got } = splitVideoMessage(input)
          expect(got.length).toBe(packets.length)
          for (const p of got) expect(p.buffer).toBe(buffer)
          // Writing through the input shows in the packet.
          const first = got[0]
          const before = first[HEADER_LEN]
          new Uint8Array(buffer, first.byteOffset + HEADER_LEN, 1)[0] = before ^ 0xff
          expect(first[HEADER_LEN]).toBe(before ^ 0xff)
        }
      }),
    )
  })

  it('refuses in the documented order', () => {
    const good = encodeVideoPacket({ keyframe: false, codec: 'h264', camera: 1, seq: 2, captureUs: 3, chunkIndex: 0, chunkCount: 1 }, new Uint8Array(40))
    const after = (f: (b: Uint8Array) => void) => {
      const b = good.slice()
      f(b)
      const r = splitVideoMessage(concat([good, b]))
      expect(r.packets.map(hex)).toEqual(r.error ? [hex(good)] : [hex(good), hex(b)])
      return r.error?.label ?? null
    }
    expect(splitVideoMessage(new Uint8Array(0)).error?.label).toBe('truncated')
    expect(splitVideoMessage(new ArrayBuffer(0)).error?.label).toBe('truncated')
    expect(after(() => {})).toBeNull()
    expect(after((b) => (b[0] = 0x58))).toBe('bad_magic')
    expect(after((b) => (b[2] = 2))).toBe('unsupported_version')
    expect(after((b) => (b[3] = 0x12))).toBe('wrong_kind')
    expect(after((b) => (b[3] = 0x7f))).toBe('unknown_kind')
    expect(after((b) => b.set([0, 41], 24))).toBe('truncated')
    // Not the split's business: a bad codec, chunk or empty payload is for parseVideoPacket.
    expect(after((b) => (b[5] = 9))).toBeNull()
    expect(after((b) => b.set([0, 0], 22))).toBeNull()
    // Fewer than 26 bytes is `truncated` before the preamble is looked at.
    const short = splitVideoMessage(concat([good, Uint8Array.from([0x58, 0x58, 9, 9])]))
    expect(short.error?.label).toBe('truncated')
  })
})

describe('the pipeline', () => {
  it('parses views in place and counts a split error once under its reason', () => {
    const p = new VideoPipeline({ now: () => 0, needKeyframe() {}, schedulePaint() {} })
    const pkt = (seq: number) => encodeVideoPacket({ keyframe: false, codec: 'h264', camera: 0, seq, captureUs: 1, chunkIndex: 0, chunkCount: 1 }, Uint8Array.of(1, 2, 3))
    const bad = pkt(3)
    bad[5] = 9
    const { packets, error } = splitVideoMessage(concat([pkt(1), bad, pkt(2), Uint8Array.of(0x52, 0x43, 1, 0x11)], 5))
    expect(packets.length).toBe(3)
    for (const d of packets) p.push(d, 0)
    p.push(error!, 0)
    expect(p.rejected).toEqual({ unknown_codec: 1, truncated: 1 })
    // The two good delta frames reached the assembler (skipped there: no keyframe yet).
    expect(p.assembler.cameraStats(0)?.skippedFrames).toBe(2)
  })
})

describe('the WebRTC video channel', () => {
  afterEach(() => vi.unstubAllGlobals())

  it('hands over every packet of a message as a view, then the split error once', async () => {
    let peer: { ondatachannel: ((e: { channel: unknown }) => void) | null } | null = null
    class FakePeer {
      connectionState = 'new'
      iceConnectionState = 'new'
      iceGatheringState = 'new'
      signalingState = 'stable'
      localDescription = null
      ondatachannel: ((e: { channel: unknown }) => void) | null = null
      onicecandidate = null
      constructor() {
        peer = this
      }
      async setRemoteDescription() {}
      async createAnswer() {
        return { type: 'answer', sdp: 'v=0' }
      }
      async setLocalDescription() {}
      async addIceCandidate() {}
      close() {}
    }
    vi.stubGlobal('RTCPeerConnection', FakePeer)
    vi.stubGlobal('fetch', async (url: string) =>
      url === '/api/webrtc/offer'
        ? new Response(JSON.stringify({ session_id: 's', type: 'offer', sdp: 'v=0', ice_servers: [] }), { status: 200 })
        : new Response(JSON.stringify({ candidates: [], next: 0, complete: true }), { status: 200 }),
    )
    const got: VideoData[] = []
    const link = openWebRtc('rc', { onOpen() {}, onClose() {}, onText() {}, onBinary: (d) => got.push(d), onDetail() {} })
    await vi.waitFor(() => expect(peer).not.toBeNull())
    const dc = { label: 'video', binaryType: 'blob', readyState: 'open', onopen: null, onclose: null, onmessage: null as ((m: { data: unknown }) => void) | null }
    peer!.ondatachannel!({ channel: dc })
    expect(dc.binaryType).toBe('arraybuffer')
    const a = encodeVideoPacket({ keyframe: true, codec: 'h264', camera: 0, seq: 1, captureUs: 1, chunkIndex: 0, chunkCount: 2 }, new Uint8Array(10))
    const b = encodeVideoPacket({ keyframe: true, codec: 'h264', camera: 0, seq: 1, captureUs: 1, chunkIndex: 1, chunkCount: 2 }, new Uint8Array(9))
    const whole = concat([a, b]).slice().buffer
    dc.onmessage!({ data: whole })
    dc.onmessage!({ data: concat([a, Uint8Array.of(0x58, 0x58, 1, 1, ...new Uint8Array(30))]).slice().buffer })
    expect(got.length).toBe(4)
    expect((got[0] as Uint8Array).buffer).toBe(whole)
    expect((got[1] as Uint8Array).buffer).toBe(whole)
    expect(got.slice(0, 3).map((d) => hex(d as Uint8Array))).toEqual([hex(a), hex(b), hex(a)])
    expect(got[3]).toBeInstanceOf(DecodeError)
    expect((got[3] as DecodeError).label).toBe('bad_magic')
    link.close()
  })
})
