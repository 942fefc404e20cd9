/**
 * Video packets: one chunk of one encoded frame (docs/wire-format.md §2), as
 * `railcast_protocol::packet`.
 *
 * ```text
 *  0      2     3     4      5      6        8          12                20        22        24       26
 *  | "RC" | ver | kind| flags| codec| camera | frame seq | capture time µs | chunk # | chunks  | length | payload…
 * ```
 * All integers big-endian. A packet is exactly `26 + length` bytes. A WebSocket message is one
 * packet; a message on the WebRTC `video` data channel holds one or more whole packets back to back
 * (§2.6), which {@link splitVideoMessage} separates before each is parsed on its own.
 *
 * Audio rides in the same packets (§2.7): codec `0x02` (Opus), one whole Opus packet per packet
 * (chunk count 1), flagged keyframe; the camera field is then the audio source's id (cameras and
 * audio sources share one id space per train).
 */
import { checkPreamble, DecodeError, hex2, isControlKind, KIND_VIDEO, MAGIC0, MAGIC1, VERSION } from './common'

export { KIND_VIDEO }
export const HEADER_LEN = 26
export const FLAG_KEYFRAME = 0x01
/** H.264 access units in Annex B byte-stream format. */
export const CODEC_H264 = 0x01
/** One whole Opus packet (audio, never split into chunks). */
export const CODEC_OPUS = 0x02
/** Default payload limit of the server and the simulator. */
export const DEFAULT_MAX_PAYLOAD = 1150
/** Largest payload the 16-bit length field can express: what a client accepts by default. */
export const MAX_PAYLOAD_LIMIT = 0xffff

export type Codec = 'h264' | 'opus'

/** Audio rather than video? */
export function isAudioCodec(c: Codec): boolean {
  return c === 'opus'
}

export interface VideoHeader {
  keyframe: boolean
  codec: Codec
  camera: number
  seq: number
  /** Capture time, µs since the UNIX epoch on the train's clock (exact below 2⁵³, i.e. until year 2255). */
  captureUs: number
  chunkIndex: number
  chunkCount: number
  payloadLen: number
}

export interface VideoPacket {
  header: VideoHeader
  /** The payload bytes, a view into the received buffer (no copy). */
  payload: Uint8Array
  /** Whole packet length, header included (for bitrate counters). */
  byteLength: number
}

function codecFromByte(b: number): Codec {
  if (b === CODEC_H264) return 'h264'
  if (b === CODEC_OPUS) return 'opus'
  throw new DecodeError('unknown_codec', `unknown codec 0x${hex2(b)}`)
}

/**
 * Validate and parse a whole packet, in the order of §2.1. Never throws anything but
 * {@link DecodeError}, whatever the input.
 */
export function parseVideoPacket(input: Uint8Array | ArrayBuffer, maxPayload = MAX_PAYLOAD_LIMIT): VideoPacket {
  const buf = input instanceof Uint8Array ? input : new Uint8Array(input)
  const kind = checkPreamble(buf, 'video packet')
  if (kind !== KIND_VIDEO) {
    if (isControlKind(kind)) throw new DecodeError('wrong_kind', `expected a video message, found kind 0x${hex2(kind)}`)
    throw new DecodeError('unknown_kind', `unknown message kind 0x${hex2(kind)}`)
  }
  if (buf.length < HEADER_LEN) {
    throw new DecodeError('truncated', `video header needs ${HEADER_LEN} bytes, ${buf.length} available`)
  }
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const flags = buf[4]
  const codec = codecFromByte(buf[5])
  const camera = v.getUint16(6)
  const seq = v.getUint32(8)
  // Two 32-bit halves: exact for any value below 2⁵³, without BigInt on the hot path.
  const captureUs = v.getUint32(12) * 0x1_0000_0000 + v.getUint32(16)
  const chunkIndex = v.getUint16(20)
  const chunkCount = v.getUint16(22)
  const payloadLen = v.getUint16(24)
  // An audio packet carries one whole Opus packet: never split (§2.7).
  if (chunkCount === 0 || chunkIndex >= chunkCount || (codec === 'opus' && chunkCount !== 1)) {
    throw new DecodeError('bad_chunk', `chunk index ${chunkIndex} out of range for chunk count ${chunkCount}`)
  }
  const actual = buf.length - HEADER_LEN
  if (payloadLen > maxPayload) {
    throw new DecodeError('payload_too_large', `payload of ${payloadLen} bytes exceeds the limit of ${maxPayload}`)
  }
  if (actual < payloadLen) {
    throw new DecodeError('truncated', `video payload needs ${HEADER_LEN + payloadLen} bytes, ${buf.length} available`)
  }
  if (actual !== payloadLen) {
    throw new DecodeError('length_mismatch', `declared payload length ${payloadLen} but ${actual} bytes follow the header`)
  }
  if (payloadLen === 0) throw new DecodeError('empty_payload', 'empty payload')
  return {
    header: { keyframe: (flags & FLAG_KEYFRAME) !== 0, codec, camera, seq, captureUs, chunkIndex, chunkCount, payloadLen },
    payload: buf.subarray(HEADER_LEN),
    byteLength: buf.length,
  }
}

/** What {@link splitVideoMessage} found in one data-channel message. */
export interface SplitMessage {
  /** The packets, in order: views into the message (no copy), each still to be validated by {@link parseVideoPacket}. */
  packets: Uint8Array[]
  /** The error that ended the split (`truncated`, `bad_magic`, `unsupported_version`, `wrong_kind`, `unknown_kind`), or null. */
  error: DecodeError | null
}

/**
 * Split one message of the WebRTC `video` data channel into its packets (§2.6): from the start,
 * while bytes remain, each packet is the next `26 + payload length` bytes, once its preamble and
 * kind are checked. The packets are only framed here, not validated: a bad codec or chunk number
 * is for {@link parseVideoPacket} to refuse, packet by packet.
 *
 * An error in the framing (fewer than 26 bytes left, a bad preamble, a non-video kind, a packet
 * running past the end) ends the split: the packets before it are kept and the error is reported
 * once for the rest of the message. An empty message is `truncated`. Never throws.
 */
export function splitVideoMessage(input: Uint8Array | ArrayBuffer): SplitMessage {
  const buf = input instanceof Uint8Array ? input : new Uint8Array(input)
  const packets: Uint8Array[] = []
  if (buf.length === 0) return { packets, error: new DecodeError('truncated', 'empty video message') }
  let off = 0
  while (off < buf.length) {
    const left = buf.length - off
    if (left < HEADER_LEN) {
      return { packets, error: new DecodeError('truncated', `video header needs ${HEADER_LEN} bytes, ${left} left at offset ${off}`) }
    }
    const rest = buf.subarray(off)
    let kind: number
    try {
      kind = checkPreamble(rest, 'video packet')
    } catch (e) {
      return { packets, error: e as DecodeError }
    }
    if (kind !== KIND_VIDEO) {
      const error = isControlKind(kind)
        ? new DecodeError('wrong_kind', `expected a video packet at offset ${off}, found kind 0x${hex2(kind)}`)
        : new DecodeError('unknown_kind', `unknown message kind 0x${hex2(kind)} at offset ${off}`)
      return { packets, error }
    }
    const len = HEADER_LEN + ((rest[24] << 8) | rest[25])
    if (len > left) {
      return { packets, error: new DecodeError('truncated', `video packet at offset ${off} needs ${len} bytes, ${left} left`) }
    }
    packets.push(rest.subarray(0, len))
    off += len
  }
  return { packets, error: null }
}

/** Write the 26 header bytes (reserved flag bits as 0) followed by `payload`. */
export function encodeVideoPacket(h: Omit<VideoHeader, 'payloadLen'>, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_LEN + payload.length)
  const v = new DataView(out.buffer)
  out[0] = MAGIC0
  out[1] = MAGIC1
  out[2] = VERSION
  out[3] = KIND_VIDEO
  out[4] = h.keyframe ? FLAG_KEYFRAME : 0
  out[5] = h.codec === 'opus' ? CODEC_OPUS : CODEC_H264
  v.setUint16(6, h.camera)
  v.setUint32(8, h.seq >>> 0)
  v.setUint32(12, Math.floor(h.captureUs / 0x1_0000_0000))
  v.setUint32(16, h.captureUs % 0x1_0000_0000)
  v.setUint16(20, h.chunkIndex)
  v.setUint16(22, h.chunkCount)
  v.setUint16(24, payload.length)
  out.set(payload, HEADER_LEN)
  return out
}

export interface FrameMeta {
  keyframe: boolean
  /** `h264` unless given. */
  codec?: Codec
  camera: number
  seq: number
  captureUs: number
}

/**
 * Split an encoded frame into packets of at most `maxPayload` payload bytes, evenly sized (the
 * first `len mod count` chunks one byte larger), as the Rust `packetize`. Used by tests.
 */
export function packetize(meta: FrameMeta, frame: Uint8Array, maxPayload = DEFAULT_MAX_PAYLOAD): Uint8Array[] {
  if (frame.length === 0) throw new RangeError('empty frame')
  if (maxPayload < 1 || maxPayload > MAX_PAYLOAD_LIMIT) throw new RangeError(`max payload must be 1..=65535, got ${maxPayload}`)
  const count = Math.ceil(frame.length / maxPayload)
  const codec = meta.codec ?? 'h264'
  if (isAudioCodec(codec) && count > 1) throw new RangeError(`audio frame of ${frame.length} bytes does not fit one packet`)
  if (count > 0xffff) throw new RangeError(`frame of ${frame.length} bytes needs more than 65535 chunks`)
  const base = Math.floor(frame.length / count)
  const extra = frame.length % count
  const out: Uint8Array[] = []
  let offset = 0
  for (let index = 0; index < count; index++) {
    const len = base + (index < extra ? 1 : 0)
    out.push(encodeVideoPacket({ ...meta, codec, chunkIndex: index, chunkCount: count }, frame.subarray(offset, offset + len)))
    offset += len
  }
  return out
}
