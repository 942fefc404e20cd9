/**
 * Just enough H.264 Annex B to configure WebCodecs: find NAL units and derive the codec string
 * `avc1.PPCCLL` from the SPS (profile_idc, constraint flags, level_idc). No description is passed
 * to `VideoDecoder.configure`, which tells it the chunks are Annex B.
 */

/** Start offsets of the NAL units (after their start codes) of an Annex B access unit. */
export function nalUnits(data: Uint8Array): Uint8Array[] {
  const starts: number[] = []
  for (let i = 0; i + 2 < data.length; i++) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1) {
      starts.push(i + 3)
      i += 2
    }
  }
  return starts.map((s, k) => {
    let end = k + 1 < starts.length ? starts[k + 1] - 3 : data.length
    // A 4-byte start code leaves one zero byte before the next 3-byte one.
    while (end > s && data[end - 1] === 0 && k + 1 < starts.length) end--
    return data.subarray(s, end)
  })
}

export const NAL_IDR = 5
export const NAL_SPS = 7
export const NAL_PPS = 8

const hex = (b: number) => b.toString(16).toUpperCase().padStart(2, '0')

/** `avc1.PPCCLL` from the first SPS of the access unit, or null when it has none. */
export function codecString(data: Uint8Array): string | null {
  for (const nal of nalUnits(data)) {
    if ((nal[0] & 0x1f) === NAL_SPS && nal.length >= 4) return `avc1.${hex(nal[1])}${hex(nal[2])}${hex(nal[3])}`
  }
  return null
}

/** Constrained Baseline, level 3.1: what the simulator sends, used when a keyframe lacks an SPS. */
export const FALLBACK_CODEC = 'avc1.42E01F'
