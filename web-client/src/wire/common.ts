/**
 * The one error type of the wire decoders, mirroring `railcast_protocol::DecodeError`.
 *
 * `label` is the stable reason of docs/wire-format.md (`truncated`, `bad_magic`, …): the golden
 * vectors name it, and counters are keyed by it. `incomplete` is not a fault: a stream decoder
 * returns it when it holds only the start of a frame.
 */
export type DecodeErrorLabel =
  | 'incomplete'
  | 'truncated'
  | 'bad_magic'
  | 'unsupported_version'
  | 'unknown_kind'
  | 'wrong_kind'
  | 'unknown_codec'
  | 'length_mismatch'
  | 'payload_too_large'
  | 'body_too_large'
  | 'empty_payload'
  | 'bad_chunk'
  | 'bad_body'

export class DecodeError extends Error {
  readonly label: DecodeErrorLabel

  constructor(label: DecodeErrorLabel, message: string) {
    super(`${label}: ${message}`)
    this.name = 'DecodeError'
    this.label = label
  }
}

/** ASCII `RC`, the first two bytes of every packet and control frame. */
export const MAGIC0 = 0x52
export const MAGIC1 = 0x43
/** The wire-format version this module speaks. */
export const VERSION = 1

const hex2 = (b: number) => b.toString(16).padStart(2, '0')

/** Check the 4-byte preamble shared by video packets and control frames; returns the kind byte. */
export function checkPreamble(buf: Uint8Array, what: string): number {
  if (buf.length < 4) {
    throw new DecodeError('truncated', `${what} needs 4 bytes, ${buf.length} available`)
  }
  if (buf[0] !== MAGIC0 || buf[1] !== MAGIC1) {
    throw new DecodeError('bad_magic', `bad magic ${hex2(buf[0])} ${hex2(buf[1])}, expected "RC"`)
  }
  if (buf[2] !== VERSION) {
    throw new DecodeError('unsupported_version', `unsupported wire version ${buf[2]}, this decoder speaks version 1`)
  }
  return buf[3]
}

export { hex2 }

/** Kind byte of a video packet. */
export const KIND_VIDEO = 0x01
/** Control frames use kinds 0x10 (hello) … 0x16 (error). */
export function isControlKind(kind: number): boolean {
  return kind >= 0x10 && kind <= 0x17
}
