// The assembler's rules (docs/wire-format.md §2.5), with the Rust crate's own cases ported one for
// one, plus loss, reordering, duplicates, late frames and sequence wrap-around.
import { describe, expect, it } from 'vitest'
import { Assembler, MAX_PARTIAL, packetize, parseVideoPacket, type VideoPacket } from '../src/wire'

const MAX = 100

function frame(seq: number, keyframe: boolean, len: number, camera = 0): VideoPacket[] {
  const data = Uint8Array.from({ length: len }, (_, i) => (i ^ seq) & 0xff)
  return packetize({ keyframe, camera, seq: seq >>> 0, captureUs: seq }, data, MAX).map((b) => parseVideoPacket(b, MAX))
}

function feed(a: Assembler, pkts: VideoPacket[]): number[] {
  return pkts.map((p) => a.push(p)).filter((f) => f !== null).map((f) => f!.seq)
}

describe('assembler (ported from protocol/src/assembler.rs)', () => {
  it('in-order stream', () => {
    const a = new Assembler()
    expect(feed(a, [...frame(0, true, 250), ...frame(1, false, 120), ...frame(2, false, 50)])).toEqual([0, 1, 2])
    expect(a.stats.frames).toBe(3)
  })

  it('waits for the first keyframe', () => {
    const a = new Assembler()
    expect(feed(a, [...frame(5, false, 150), ...frame(6, true, 150), ...frame(7, false, 150)])).toEqual([6, 7])
    expect(a.stats.skippedFrames).toBe(1)
  })

  it('a lost chunk waits for the next keyframe', () => {
    const a = new Assembler()
    const f1 = frame(1, false, 250)
    f1.splice(1, 1)
    const pkts = [...frame(0, true, 150), ...f1, ...frame(2, false, 150), ...frame(3, true, 150), ...frame(4, false, 150)]
    expect(feed(a, pkts)).toEqual([0, 3, 4])
    expect(a.stats.incompleteFrames).toBe(1)
  })

  it('a whole-frame gap waits for the next keyframe', () => {
    const a = new Assembler()
    expect(feed(a, [...frame(0, true, 150), ...frame(2, false, 150), ...frame(3, true, 150)])).toEqual([0, 3])
    expect(a.stats.skippedFrames).toBe(1)
  })

  it('reordered chunks and duplicates', () => {
    const a = new Assembler()
    const pkts = frame(0, true, 350).reverse()
    pkts.splice(2, 0, pkts[1])
    expect(feed(a, pkts)).toEqual([0])
    expect(a.stats.duplicatePackets).toBe(1)
  })

  it('interleaved frames complete in order', () => {
    const a = new Assembler()
    const f0 = frame(0, true, 250)
    const f1 = frame(1, false, 250)
    const pkts = [0, 1, 2].flatMap((i) => [f0[i], f1[i]])
    expect(feed(a, pkts)).toEqual([0, 1])
  })

  it('a late frame after a newer one is dropped', () => {
    const a = new Assembler()
    const [f0, f1, f2] = [frame(0, true, 150), frame(1, false, 150), frame(2, true, 150)]
    expect(feed(a, [f0[0], f0[1], f1[0], f2[0], f2[1], f1[1]])).toEqual([0, 2])
    expect(a.stats.incompleteFrames).toBe(1)
    expect(a.stats.latePackets).toBe(1)
  })

  it('sequence numbers wrap', () => {
    const a = new Assembler()
    expect(feed(a, [...frame(0xffff_ffff, true, 150), ...frame(0, false, 150), ...frame(1, false, 150)])).toEqual([0xffff_ffff, 0, 1])
    expect(a.stats.skippedFrames).toBe(0)
  })

  it('reassembles the data exactly', () => {
    const a = new Assembler()
    const data = Uint8Array.from({ length: 1234 }, (_, i) => (i * 13) & 0xff)
    let out = null
    for (const b of packetize({ keyframe: true, camera: 3, seq: 9, captureUs: 77 }, data, MAX)) {
      out = a.push(parseVideoPacket(b, MAX)) ?? out
    }
    expect(out).not.toBeNull()
    expect(Array.from(out!.data)).toEqual(Array.from(data))
    expect([out!.camera, out!.seq, out!.captureUs, out!.keyframe]).toEqual([3, 9, 77, true])
  })
})

describe('assembler (more cases)', () => {
  it('drops a late duplicate of an emitted frame', () => {
    const a = new Assembler()
    const f0 = frame(0, true, 150)
    expect(feed(a, [...f0, ...frame(1, false, 150), f0[0], f0[1]])).toEqual([0, 1])
    expect(a.stats.latePackets).toBe(2)
  })

  it('a packet whose chunk count disagrees is dropped', () => {
    const a = new Assembler()
    const f0 = frame(0, true, 250) // 3 chunks
    const odd = frame(0, true, 150) // same seq, 2 chunks
    expect(feed(a, [f0[0], odd[1], f0[1], f0[2]])).toEqual([0])
    expect(a.stats.inconsistentPackets).toBe(1)
  })

  it(`collects at most ${MAX_PARTIAL} frames; the oldest is abandoned`, () => {
    const a = new Assembler()
    const frames = [0, 1, 2, 3, 4].map((s) => frame(s, s === 4, 150))
    // First chunk of frames 0..4: the fifth evicts frame 0.
    expect(feed(a, frames.map((f) => f[0]))).toEqual([])
    expect(a.stats.incompleteFrames).toBe(1)
    // Frame 4 (a keyframe) completes and is shown; frames 1–3, still collecting, are abandoned.
    expect(feed(a, [frames[4][1]])).toEqual([4])
    expect(a.stats.incompleteFrames).toBe(4)
    // Everything before 4 is now late.
    expect(feed(a, [frames[1][1], frames[2][1], frames[3][1]])).toEqual([])
    expect(a.stats.latePackets).toBe(3)
  })

  it('a packet older than every frame collected, when full, is late', () => {
    const a = new Assembler()
    const frames = [10, 11, 12, 13].map((s) => frame(s, true, 150))
    feed(a, frames.map((f) => f[0]))
    expect(feed(a, [frame(5, true, 150)[0]])).toEqual([])
    expect(a.stats.latePackets).toBe(1)
    expect(a.stats.incompleteFrames).toBe(0)
    expect(feed(a, frames.map((f) => f[1]))).toEqual([10, 11, 12, 13])
  })

  it('keeps cameras apart', () => {
    const a = new Assembler()
    const c0 = frame(0, true, 150, 0)
    const c1 = frame(0, true, 150, 1)
    const out = [c0[0], c1[0], c1[1], c0[1]].map((p) => a.push(p)).filter((f) => f).map((f) => `${f!.camera}:${f!.seq}`)
    expect(out).toEqual(['1:0', '0:0'])
    expect(a.cameraStats(0)?.frames).toBe(1)
    expect(a.cameraStats(1)?.frames).toBe(1)
  })

  it('loss on one camera does not stall the other', () => {
    const a = new Assembler()
    const lossy = frame(1, false, 150, 0).slice(0, 1)
    const pkts = [...frame(0, true, 150, 0), ...frame(0, true, 150, 1), ...lossy, ...frame(2, false, 150, 0), ...frame(1, false, 150, 1)]
    const out = pkts.map((p) => a.push(p)).filter((f) => f).map((f) => `${f!.camera}:${f!.seq}`)
    expect(out).toEqual(['0:0', '1:0', '1:1'])
    expect(a.waitingForKeyframe(0)).toBe(true)
    expect(a.waitingForKeyframe(1)).toBe(false)
  })

  it('reordered whole frames: the earlier one arriving last is dropped and the stream waits', () => {
    const a = new Assembler()
    const pkts = [...frame(0, true, 150), ...frame(2, false, 150), ...frame(1, false, 150), ...frame(3, false, 150), ...frame(4, true, 150)]
    expect(feed(a, pkts)).toEqual([0, 4])
    expect(a.stats.latePackets).toBe(2)
  })

  it('wrap-around inside the partial window', () => {
    const a = new Assembler()
    const f = [0xffff_fffe, 0xffff_ffff, 0, 1].map((s, i) => frame(s, i === 0, 150))
    // chunk 0 of all four, then chunk 1 in order
    expect(feed(a, [...f.map((x) => x[0]), ...f.map((x) => x[1])])).toEqual([0xffff_fffe, 0xffff_ffff, 0, 1])
  })

  it('reset waits for a keyframe again and accepts a restarted numbering', () => {
    const a = new Assembler()
    expect(feed(a, [...frame(1000, true, 150), ...frame(1001, false, 150)])).toEqual([1000, 1001])
    a.reset()
    expect(feed(a, [...frame(0, false, 150), ...frame(1, true, 150), ...frame(2, false, 150)])).toEqual([1, 2])
  })

  it('without a reset, a restarted numbering is late', () => {
    const a = new Assembler()
    feed(a, frame(1000, true, 150))
    expect(feed(a, frame(0, true, 150))).toEqual([])
  })
})
