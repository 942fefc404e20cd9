// The payload limit a client enforces (docs/wire-format.md §2.1 step 5, §4): the server's
// `max_payload` from its welcome; larger packets are refused as `payload_too_large` and counted.
import { describe, expect, it } from 'vitest'
import { VideoPipeline } from '../src/video/pipeline'
import { encodeVideoPacket, MAX_PAYLOAD_LIMIT } from '../src/wire'

/** Chunk 0 of 2 of a delta frame: it reaches the assembler and completes nothing. */
const packet = (seq: number, len: number) =>
  encodeVideoPacket({ keyframe: false, codec: 'h264', camera: 0, seq, captureUs: 1, chunkIndex: 0, chunkCount: 2 }, new Uint8Array(len).fill(7))

const pipeline = () => new VideoPipeline({ now: () => 0, needKeyframe() {}, schedulePaint() {} })

describe('the payload limit', () => {
  it('refuses a packet over the welcome limit with a clear reason, counted; accepts one at it', () => {
    const p = pipeline()
    p.setMaxPayload(1150)
    p.push(packet(1, 1151), 0)
    expect(p.rejected).toEqual({ payload_too_large: 1 })
    expect(p.lastRejection).toBe("payload_too_large: payload of 1151 bytes exceeds the limit of 1150 (the server's max_payload)")
    expect(p.assembler.stats.packets).toBe(0)
    p.push(packet(2, 1150), 0)
    expect(p.rejected).toEqual({ payload_too_large: 1 })
    expect(p.assembler.stats.packets).toBe(1)
  })

  it('before a welcome, or from a server without the field, the 16-bit field is the only bound', () => {
    const p = pipeline()
    expect(p.payloadLimit()).toBe(MAX_PAYLOAD_LIMIT)
    p.push(packet(1, 4000), 0)
    expect(p.rejected).toEqual({})
    for (const bad of [undefined, 0, -1, 1.5, 70_000, Number.NaN]) {
      p.setMaxPayload(900)
      p.setMaxPayload(bad)
      expect(p.payloadLimit()).toBe(MAX_PAYLOAD_LIMIT)
    }
  })
})
