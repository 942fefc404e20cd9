import { describe, expect, it } from 'vitest'
import { codecString, nalUnits } from '../src/video/h264'

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)))

describe('h264', () => {
  it('derives the codec string from the golden keyframe', () => {
    // protocol/tests/vectors/video_keyframe_single.hex payload
    const au = hex('00000001674d401fe8802800b50000000168ee3c800000000165888400')
    expect(nalUnits(au).map((n) => n[0] & 0x1f)).toEqual([7, 8, 5])
    expect(codecString(au)).toBe('avc1.4D401F')
  })

  it('handles 3-byte start codes and access units without SPS', () => {
    const au = hex('000001674240 1f00'.replace(/ /g, '') + '000001419a')
    expect(nalUnits(au).map((n) => n.length)).toEqual([4, 2])
    expect(codecString(au)).toBe('avc1.42401F')
    expect(codecString(hex('00000001419a'))).toBeNull()
  })
})
