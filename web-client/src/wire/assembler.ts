/**
 * Frame reassembly on the receiving side: the same rules as `railcast_protocol::assembler`, for
 * every transport (docs/wire-format.md §2.5).
 *
 * - frames are emitted in increasing sequence order; a packet of a frame at or before the last
 *   completed one is *late* and dropped. A complete delta frame skipped while waiting for a keyframe
 *   counts as completed (emitted): its copies and older frames are late;
 * - at most {@link MAX_PARTIAL} frames per camera are collected at once, the frame a packet starts
 *   included: starting one more first drops the oldest (*incomplete*), unless the packet's frame is
 *   older than all of them (then the packet is *late*); when a newer frame completes, older
 *   incomplete ones are dropped (*incomplete*);
 * - after any loss (an incomplete frame, or a gap in sequence numbers) delta frames are skipped
 *   until the next keyframe, since they cannot be decoded; a receiver starts in that state;
 * - duplicate chunks are ignored; a packet whose chunk count disagrees with its frame's is dropped.
 *
 * Sans-IO: packets in, frames out; no clock, no socket.
 */
import type { Codec, VideoPacket } from './packet'
import { seqDistance, seqIsAfter } from './seq'

/** Frames collected at once per camera, the frame a packet starts included. */
export const MAX_PARTIAL = 4

/** A complete encoded frame. */
export interface Frame {
  camera: number
  seq: number
  keyframe: boolean
  codec: Codec
  captureUs: number
  data: Uint8Array
}

/** What the assembler did, for stats overlays and tests (the Rust `AssemblerStats`). */
export interface AssemblerStats {
  packets: number
  frames: number
  latePackets: number
  duplicatePackets: number
  inconsistentPackets: number
  incompleteFrames: number
  /** Complete delta frames skipped while waiting for a keyframe. */
  skippedFrames: number
}

export function emptyStats(): AssemblerStats {
  return { packets: 0, frames: 0, latePackets: 0, duplicatePackets: 0, inconsistentPackets: 0, incompleteFrames: 0, skippedFrames: 0 }
}

interface Partial {
  seq: number
  keyframe: boolean
  codec: Codec
  captureUs: number
  chunks: (Uint8Array | undefined)[]
  received: number
}

interface Camera {
  id: number
  partial: Partial[]
  last: number | null
  needKeyframe: boolean
  stats: AssemblerStats
}

/** `Vec::swap_remove`: the order of the rest matters for ties, so keep Rust's. */
function swapRemove<T>(list: T[], i: number): T {
  const item = list[i]
  const last = list.pop() as T
  if (i < list.length) list[i] = last
  return item
}

export class Assembler {
  private cameras: Camera[] = []
  /** Totals over every camera since the assembler was made (not cleared by {@link reset}). */
  readonly stats: AssemblerStats = emptyStats()
  private readonly perCamera = new Map<number, AssemblerStats>()

  /** Forget all state (e.g. the stream switched to another train): wait for a keyframe again. */
  reset(): void {
    this.cameras = []
  }

  /** Per-camera counters since the assembler was made. */
  cameraStats(camera: number): AssemblerStats | undefined {
    return this.perCamera.get(camera)
  }

  /** Is this camera waiting for a keyframe (after a loss, or from the start)? */
  waitingForKeyframe(camera: number): boolean {
    return this.cameras.find((c) => c.id === camera)?.needKeyframe ?? true
  }

  /** Feed one packet; returns a frame when this packet completes one that may be shown. */
  push(packet: VideoPacket): Frame | null {
    const h = packet.header
    let cam = this.cameras.find((c) => c.id === h.camera)
    if (!cam) {
      let stats = this.perCamera.get(h.camera)
      if (!stats) this.perCamera.set(h.camera, (stats = emptyStats()))
      cam = { id: h.camera, partial: [], last: null, needKeyframe: true, stats }
      this.cameras.push(cam)
    }
    const count = (key: keyof AssemblerStats, n = 1) => {
      this.stats[key] += n
      cam.stats[key] += n
    }
    count('packets')
    if (cam.last !== null && !seqIsAfter(h.seq, cam.last)) {
      count('latePackets')
      return null
    }
    let pos = cam.partial.findIndex((p) => p.seq === h.seq)
    if (pos < 0) {
      if (cam.partial.length === MAX_PARTIAL) {
        // Evict the oldest frame still collecting (first minimum, as Rust's min_by_key).
        let oldest = 0
        let oldestKey = Infinity
        cam.partial.forEach((p, i) => {
          const key = seqDistance(p.seq, h.seq) ?? -0x8000_0000
          if (key < oldestKey) {
            oldestKey = key
            oldest = i
          }
        })
        if (seqIsAfter(cam.partial[oldest].seq, h.seq)) {
          count('latePackets')
          return null
        }
        swapRemove(cam.partial, oldest)
        count('incompleteFrames')
        cam.needKeyframe = true
      }
      cam.partial.push({
        seq: h.seq,
        keyframe: h.keyframe,
        codec: h.codec,
        captureUs: h.captureUs,
        chunks: new Array<Uint8Array | undefined>(h.chunkCount).fill(undefined),
        received: 0,
      })
      pos = cam.partial.length - 1
    }
    const p = cam.partial[pos]
    if (p.chunks.length !== h.chunkCount) {
      count('inconsistentPackets')
      return null
    }
    if (p.chunks[h.chunkIndex] !== undefined) {
      count('duplicatePackets')
      return null
    }
    p.chunks[h.chunkIndex] = packet.payload
    p.received += 1
    if (p.received < p.chunks.length) return null

    const done = swapRemove(cam.partial, pos)
    // Older frames still collecting can no longer be emitted in order.
    const before = cam.partial.length
    cam.partial = cam.partial.filter((q) => seqIsAfter(q.seq, done.seq))
    const dropped = before - cam.partial.length
    count('incompleteFrames', dropped)
    const gap = cam.last !== null && seqDistance(done.seq, cam.last) !== 1
    if (dropped > 0 || gap) cam.needKeyframe = true
    cam.last = done.seq
    if (cam.needKeyframe && !done.keyframe) {
      count('skippedFrames')
      return null
    }
    cam.needKeyframe = false
    count('frames')
    let size = 0
    for (const c of done.chunks) size += (c as Uint8Array).length
    const data = new Uint8Array(size)
    let at = 0
    for (const c of done.chunks) {
      data.set(c as Uint8Array, at)
      at += (c as Uint8Array).length
    }
    return { camera: h.camera, seq: done.seq, keyframe: done.keyframe, codec: done.codec, captureUs: done.captureUs, data }
  }
}
