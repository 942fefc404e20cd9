// Property tests of the assembler's promises (docs/wire-format.md §2.5) and of the video header's
// round trip, the same as protocol/tests/properties.rs for the Rust crate.
//
// Random frames are packetized, then delivered frame after frame with packets lost, duplicated and
// reordered within their frame, for one to three cameras interleaved. A model of the documented
// rules says what must come out, per camera:
// - a frame is emitted when all its chunks arrived, byte for byte as it was sent, at most once;
// - the receiver starts waiting for a keyframe; after a loss (a frame missing a chunk, or missing
//   whole) delta frames are skipped until the next complete keyframe;
// - every other complete frame is emitted, in order, across the 32-bit sequence wrap.
// With packets shuffled across frames as well, nothing is promised about which frames come out, only
// that what does is sound: sent frames, once each, in increasing order, the first a keyframe and each
// delta frame right after its predecessor.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  Assembler,
  FLAG_KEYFRAME,
  HEADER_LEN,
  MAX_PAYLOAD_LIMIT,
  encodeVideoPacket,
  packetize,
  parseVideoPacket,
  seqDistance,
  seqIsAfter,
  type Frame,
  type VideoPacket,
} from '../src/wire'

/** A frame as the sender made it. */
interface Sent {
  frame: Frame
  packets: VideoPacket[]
}

function sent(camera: number, seq: number, keyframe: boolean, data: Uint8Array, maxPayload: number): Sent {
  const captureUs = 1_700_000_000_000_000 + seq
  const packets = packetize({ keyframe, camera, seq, captureUs }, data, maxPayload).map((b) => parseVideoPacket(b, maxPayload))
  return { frame: { camera, seq, keyframe, codec: 'h264', captureUs, data }, packets }
}

/** First sequence numbers: anywhere, just before the wrap, and around the half-space point. */
const startSeq = fc.oneof(
  fc.integer({ min: 0, max: 0xffff_ffff }),
  fc.integer({ min: 0, max: 15 }).map((k) => 0xffff_ffff - k),
  fc.integer({ min: 0, max: 15 }).map((k) => 0x8000_0000 - 8 + k),
)

/** `[keyframe, data]` per frame; data is short so that frames have 1 to ~25 chunks. */
const frames = fc.array(
  fc.tuple(
    fc.integer({ min: 0, max: 3 }).map((r) => r === 0),
    fc.uint8Array({ minLength: 1, maxLength: 199 }),
  ),
  { minLength: 1, maxLength: 19 },
)

/** How one frame's packets are delivered: copies of each chunk (0 = lost), and sort keys. */
interface Delivery {
  copies: number[]
  keys: number[]
}

function apply(d: Delivery, packets: VideoPacket[]): VideoPacket[] {
  const out: { key: number; p: VideoPacket }[] = []
  packets.forEach((p, i) => {
    for (let n = 0; n < d.copies[i]; n++) out.push({ key: d.keys[out.length], p })
  })
  // Array.prototype.sort is stable: equal keys keep their order.
  return out.sort((a, b) => a.key - b.key).map((x) => x.p)
}

const complete = (d: Delivery) => d.copies.every((n) => n > 0)

/** A delivery plan for a frame of `n` chunks; `loss` weights a lost copy, and a lost frame. */
function delivery(n: number, loss: number): fc.Arbitrary<Delivery> {
  // Out of 45 + loss: 40 one copy, 4 two, 1 three, `loss` none (shrinks toward one copy).
  const copy = fc.integer({ min: 0, max: 44 + loss }).map((r) => (r < 40 ? 1 : r < 44 ? 2 : r === 44 ? 3 : 0))
  const wholeLoss = fc.integer({ min: 0, max: 44 }).map((r) => r < loss)
  return fc
    .tuple(fc.array(copy, { minLength: n, maxLength: n }), fc.array(fc.nat(), { minLength: 3 * n, maxLength: 3 * n }), wholeLoss)
    .map(([copies, keys, lost]) => ({ copies: lost ? copies.map(() => 0) : copies, keys }))
}

/** One camera's stream: the frames sent and how each was delivered. */
interface CameraRun {
  sent: Sent[]
  delivery: Delivery[]
}

function cameraRun(camera: number, loss: number): fc.Arbitrary<CameraRun> {
  return fc
    .tuple(startSeq, frames, fc.integer({ min: 8, max: 64 }))
    .chain(([start, fs, maxPayload]) => {
      const s = fs.map(([key, data], i) => sent(camera, (start + i) >>> 0, key, data, maxPayload))
      return fc.tuple(fc.constant(s), fc.tuple(...s.map((x) => delivery(x.packets.length, loss))))
    })
    .map(([s, d]) => ({ sent: s, delivery: d }))
}

/** What the documented rules say comes out of one camera's in-order delivery. */
function expected(run: CameraRun): Frame[] {
  let needKeyframe = true
  const out: Frame[] = []
  run.sent.forEach((s, i) => {
    if (!complete(run.delivery[i])) {
      needKeyframe = true
    } else if (s.frame.keyframe || !needKeyframe) {
      needKeyframe = false
      out.push(s.frame)
    }
  })
  return out
}

const inOrder = (run: CameraRun) => run.sent.flatMap((s, i) => apply(run.delivery[i], s.packets))

/** Feed packets, collecting what comes out per camera. */
function feed(packets: VideoPacket[]): { a: Assembler; out: Map<number, Frame[]> } {
  const a = new Assembler()
  const out = new Map<number, Frame[]>()
  for (const p of packets) {
    const f = a.push(p)
    if (f) out.set(f.camera, [...(out.get(f.camera) ?? []), f])
  }
  return { a, out }
}

/** Cameras' packet lists merged, each in its own order, the next camera chosen by `picks`. */
function interleave(lists: VideoPacket[][], picks: number[]): VideoPacket[] {
  const total = lists.reduce((n, l) => n + l.length, 0)
  const at = lists.map(() => 0)
  const out: VideoPacket[] = []
  for (let turn = 0; out.length < total; turn++) {
    let cam = picks[turn % picks.length] % lists.length
    while (at[cam] === lists[cam].length) cam = (cam + 1) % lists.length
    out.push(lists[cam][at[cam]++])
  }
  return out
}

describe('assembler properties', () => {
  it('emits exactly what the rules allow (loss, duplicates, reordering within frames, cameras interleaved)', () => {
    const runs = fc.integer({ min: 1, max: 3 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, c) => cameraRun(c, 3))))
    fc.assert(
      fc.property(runs, fc.array(fc.nat({ max: 2 }), { minLength: 1, maxLength: 15 }), (runs, picks) => {
        const lists = runs.map(inOrder)
        const { a, out } = feed(interleave(lists, picks))
        let emitted = 0
        runs.forEach((run, c) => {
          const want = expected(run)
          const got = out.get(c) ?? []
          expect(got.map((f) => f.seq), `camera ${c}`).toEqual(want.map((f) => f.seq))
          expect(got, `camera ${c}: frame contents`).toEqual(want)
          emitted += want.length
        })
        expect(a.stats.packets).toBe(lists.reduce((n, l) => n + l.length, 0))
        expect(a.stats.frames).toBe(emitted)
      }),
    )
  })

  it('without loss, the stream comes out whole from its first keyframe on', () => {
    fc.assert(
      fc.property(cameraRun(0, 0), (run) => {
        const first = run.sent.findIndex((s) => s.frame.keyframe)
        const want = first < 0 ? [] : run.sent.slice(first).map((s) => s.frame)
        expect(feed(inOrder(run)).out.get(0) ?? []).toEqual(want)
      }),
    )
  })

  it('sequence numbers wrap from 2³²−1 to 0 with nothing lost or skipped', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0xffff_ffff - 20, max: 0xffff_ffff }),
        fc.integer({ min: 22, max: 60 }), // enough frames to cross the wrap from any start
        fc.integer({ min: 1, max: 11 }),
        fc.integer({ min: 8, max: 64 }),
        fc.integer({ min: 1, max: 99 }),
        (start, n, keyframeEvery, maxPayload, len) => {
          const fs = Array.from({ length: n }, (_, i) =>
            sent(7, (start + i) >>> 0, i % keyframeEvery === 0, new Uint8Array(len + i).fill(i), maxPayload),
          )
          const got = feed(fs.flatMap((s) => s.packets)).out.get(7) ?? []
          expect(got).toEqual(fs.map((s) => s.frame))
          expect(got.some((f) => f.seq === 0)).toBe(true)
        },
      ),
    )
  })

  it('whatever is emitted is sound, with packets shuffled across frames', () => {
    fc.assert(
      fc.property(cameraRun(0, 3), fc.array(fc.nat(), { minLength: 19 * 25 * 3, maxLength: 19 * 25 * 3 }), (run, keys) => {
        const bySeq = new Map(run.sent.map((s) => [s.frame.seq, s.frame]))
        const packets = inOrder(run)
          .map((p, i) => ({ key: keys[i], p }))
          .sort((a, b) => a.key - b.key)
          .map((x) => x.p)
        let last: number | null = null
        for (const f of feed(packets).out.get(0) ?? []) {
          expect(f, 'emitted frame differs from the one sent').toEqual(bySeq.get(f.seq))
          if (last === null) {
            expect(f.keyframe, `first frame ${f.seq} is a delta frame`).toBe(true)
          } else {
            expect(seqIsAfter(f.seq, last), `${f.seq} emitted after ${last}`).toBe(true)
            if (!f.keyframe) expect(seqDistance(f.seq, last), `delta frame ${f.seq} after ${last}`).toBe(1)
          }
          last = f.seq
        }
      }),
    )
  })
})

describe('video header properties', () => {
  // Reserved flag bits are cleared on re-encoding (receivers ignore them), and the capture time is
  // a JS number: exact below 2⁵³ only (packet.ts), so those 8 bytes are compared when it is.
  it('any header that parses re-encodes to the same bytes', () => {
    const header = fc.tuple(
      fc.oneof({ arbitrary: fc.constant([0x52, 0x43, 1, 1]), weight: 4 }, { arbitrary: fc.array(fc.nat({ max: 255 }), { minLength: 4, maxLength: 4 }), weight: 1 }),
      fc.nat({ max: 255 }),
      fc.oneof({ arbitrary: fc.constant(1), weight: 4 }, { arbitrary: fc.nat({ max: 255 }), weight: 1 }),
      fc.uint8Array({ minLength: 14, maxLength: 14 }),
      fc.oneof(
        { arbitrary: fc.integer({ min: 1, max: 3 }).chain((c) => fc.tuple(fc.integer({ min: 0, max: c - 1 }), fc.constant(c))), weight: 3 },
        { arbitrary: fc.tuple(fc.nat({ max: 0xffff }), fc.nat({ max: 0xffff })), weight: 1 },
      ),
      fc.uint8Array({ minLength: 0, maxLength: 79 }),
      fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, { arbitrary: fc.nat({ max: 0xffff }), weight: 1 }),
      fc.oneof(fc.constant(1150), fc.constant(MAX_PAYLOAD_LIMIT), fc.integer({ min: 1, max: 99 })),
    )
    fc.assert(
      fc.property(header, ([preamble, flags, codec, fields, [index, count], payload, len, maxPayload]) => {
        const bytes = new Uint8Array(HEADER_LEN + payload.length)
        const v = new DataView(bytes.buffer)
        bytes.set(preamble, 0)
        bytes[4] = flags
        bytes[5] = codec
        bytes.set(fields, 6)
        v.setUint16(20, index)
        v.setUint16(22, count)
        v.setUint16(24, len ?? payload.length)
        bytes.set(payload, HEADER_LEN)
        let pkt: VideoPacket
        try {
          pkt = parseVideoPacket(bytes, maxPayload)
        } catch {
          return
        }
        const again = encodeVideoPacket(pkt.header, pkt.payload)
        const want = bytes.slice()
        want[4] &= FLAG_KEYFRAME
        if (!Number.isSafeInteger(pkt.header.captureUs)) {
          again.fill(0, 12, 20)
          want.fill(0, 12, 20)
        }
        expect(Array.from(again)).toEqual(Array.from(want))
        expect(parseVideoPacket(again, maxPayload).header.chunkCount).toBe(pkt.header.chunkCount)
        expect(Array.from(pkt.payload)).toEqual(Array.from(payload))
      }),
    )
  })

  it('every valid header writes bytes that parse back to it', () => {
    const header = fc.record({
      keyframe: fc.boolean(),
      codec: fc.constant('h264' as const),
      camera: fc.nat({ max: 0xffff }),
      seq: fc.nat({ max: 0xffff_ffff }),
      captureUs: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
      chunk: fc.integer({ min: 1, max: 0xffff }).chain((c) => fc.tuple(fc.integer({ min: 0, max: c - 1 }), fc.constant(c))),
    })
    fc.assert(
      fc.property(header, fc.uint8Array({ minLength: 1, maxLength: 63 }), ({ chunk: [chunkIndex, chunkCount], ...h }, payload) => {
        const pkt = parseVideoPacket(encodeVideoPacket({ ...h, chunkIndex, chunkCount }, payload), MAX_PAYLOAD_LIMIT)
        expect(pkt.header).toEqual({ ...h, chunkIndex, chunkCount, payloadLen: payload.length })
        expect(Array.from(pkt.payload)).toEqual(Array.from(payload))
      }),
    )
  })
})
