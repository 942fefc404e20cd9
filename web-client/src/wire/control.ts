/**
 * Control frames of the train's QUIC control stream (docs/wire-format.md §3), as
 * `railcast_protocol::control`.
 *
 * The browser never sees these frames; they are here so that this module passes every golden
 * vector the Rust crate passes, and because {@link Action} is shared with the client messages.
 *
 * ```text
 *  0      2     3      4             8
 *  | "RC" | ver | kind | body length | body (UTF-8 JSON object)…
 * ```
 */
import { checkPreamble, DecodeError, hex2, isControlKind, KIND_VIDEO, MAGIC0, MAGIC1, VERSION } from './common'
import {
  arr, bool, f32Text, f64Text, float, obj, optBool, optStr, optUint, ShapeError, str, uint, writeObject,
  type Json, type JsonObject,
} from './json'

export const KIND_HELLO = 0x10
export const KIND_WELCOME = 0x11
export const KIND_COMMAND = 0x12
export const KIND_COMMAND_ACK = 0x13
export const KIND_TELEMETRY = 0x14
export const KIND_KEYFRAME_REQUEST = 0x15
export const KIND_ERROR = 0x16
export const KIND_STATUS = 0x17
/** Limits of a `status` frame, as the Rust decoder's. */
export const MAX_STATUS_SOURCES = 64
export const MAX_STATUS_STATE = 32
export const MAX_STATUS_DETAIL = 500

/** A train's source as its `status` frame reports it (wire format §3). */
export interface SourceStatus {
  id: number
  state: string
  detail?: string
  fps: number
  bitrate_bps: number
}
export const CONTROL_HEADER_LEN = 8
export const DEFAULT_MAX_BODY = 64 * 1024
export const MAX_CAMERAS = 16
export const MAX_DIMENSION = 8192
export const MAX_TRAIN_ID_LEN = 64
export const MAX_AUDIO_SOURCES = 4
/** The one audio sample rate of version 1. */
export const AUDIO_SAMPLE_RATE = 48_000
/** Opus frame durations an audio source may announce, ms. */
export const AUDIO_FRAME_MS = [10, 20, 40, 60]

export interface CameraInfo {
  id: number
  codec: string
  width: number
  height: number
  fps: number
}

/**
 * An audio source (the cab microphone) as announced in the hello (§3) and in the events of §4. Its
 * packets carry `id` in the camera field: cameras and audio sources share one id space per train.
 */
export interface AudioInfo {
  id: number
  codec: string
  sample_rate: number
  channels: number
  frame_ms: number
}

/** What an operator asks a train to do (`"type"` selects the variant). */
export type Action =
  | { type: 'request_keyframe'; camera?: number }
  | { type: 'set_speed'; kmh: number }
  | { type: 'horn'; duration_ms: number }

export interface Telemetry {
  timestamp_us: number
  speed_kmh: number
  odometer_m: number
  horn: boolean
}

export type ControlMessage =
  | { hello: { train_id: string; cameras: CameraInfo[]; audio?: AudioInfo[]; software?: string } }
  | { welcome: { server_time_us: number; max_payload: number } }
  | { command: { command_id: number; command: Action } }
  | { command_ack: { command_id: number; ok: boolean; message: string } }
  | { telemetry: Telemetry }
  | { keyframe_request: { camera?: number } }
  | { error: { code: string; message: string } }
  | { status: { sources: SourceStatus[] } }

const KIND_NAMES: Record<number, string> = {
  [KIND_HELLO]: 'hello',
  [KIND_WELCOME]: 'welcome',
  [KIND_COMMAND]: 'command',
  [KIND_COMMAND_ACK]: 'command_ack',
  [KIND_TELEMETRY]: 'telemetry',
  [KIND_KEYFRAME_REQUEST]: 'keyframe_request',
  [KIND_ERROR]: 'error',
  [KIND_STATUS]: 'status',
}

/** Why a train id is refused, or null: 1–64 characters from `A–Z a–z 0–9 . _ -`. */
export function trainIdProblem(id: string): string | null {
  if (id.length === 0) return 'id is empty'
  if (new TextEncoder().encode(id).length > MAX_TRAIN_ID_LEN) return `id is longer than ${MAX_TRAIN_ID_LEN} bytes`
  const bad = [...id].find((c) => !/^[A-Za-z0-9._-]$/.test(c))
  return bad === undefined ? null : `id contains ${JSON.stringify(bad)}; allowed are A-Z a-z 0-9 . _ -`
}

/** Semantic checks of an action beyond its JSON shape; the reason, or null. */
export function actionProblem(a: Action): string | null {
  if (a.type === 'set_speed' && !(a.kmh >= 0 && a.kmh <= 400)) return `set_speed: kmh must be within 0..=400, got ${a.kmh}`
  if (a.type === 'horn' && !(a.duration_ms >= 1 && a.duration_ms <= 10_000)) {
    return `horn: duration_ms must be within 1..=10000, got ${a.duration_ms}`
  }
  return null
}

/** Read an action from JSON with serde's defaults (horn 500 ms); throws {@link ShapeError}. */
export function readAction(v: Json): Action {
  const o = obj(v, 'action')
  const type = str(o, 'type')
  switch (type) {
    case 'request_keyframe': {
      const camera = optUint(o, 'camera', 16)
      return camera === undefined ? { type } : { type, camera }
    }
    case 'set_speed':
      return { type, kmh: Math.fround(float(o, 'kmh')) }
    case 'horn':
      return { type, duration_ms: optUint(o, 'duration_ms', 32) ?? 500 }
    default:
      throw new ShapeError(`unknown variant \`${type}\``)
  }
}

export function writeAction(a: Action): string {
  switch (a.type) {
    case 'request_keyframe':
      return writeObject([['type', '"request_keyframe"'], ['camera', a.camera === undefined ? undefined : String(a.camera)]])
    case 'set_speed':
      return writeObject([['type', '"set_speed"'], ['kmh', f32Text(a.kmh)]])
    case 'horn':
      return writeObject([['type', '"horn"'], ['duration_ms', String(a.duration_ms)]])
  }
}

function readCamera(v: Json): CameraInfo {
  const o = obj(v, 'camera')
  return { id: uint(o, 'id', 16), codec: str(o, 'codec'), width: uint(o, 'width', 32), height: uint(o, 'height', 32), fps: uint(o, 'fps', 32) }
}

export function readAudioInfo(v: Json): AudioInfo {
  const o = obj(v, 'audio source')
  return {
    id: uint(o, 'id', 16), codec: str(o, 'codec'), sample_rate: uint(o, 'sample_rate', 32), channels: uint(o, 'channels', 8),
    frame_ms: uint(o, 'frame_ms', 32),
  }
}

function audioProblem(cameras: CameraInfo[], audio: AudioInfo[]): string | null {
  if (audio.length > MAX_AUDIO_SOURCES) return `hello announces ${audio.length} audio sources, the limit is ${MAX_AUDIO_SOURCES}`
  for (let i = 0; i < audio.length; i++) {
    const a = audio[i]
    if (cameras.some((c) => c.id === a.id)) return `audio source id ${a.id} is also a camera id`
    if (audio.slice(0, i).some((b) => b.id === a.id)) return `audio source id ${a.id} announced twice`
    if (a.codec !== 'opus') return `audio source ${a.id}: unsupported codec ${JSON.stringify(a.codec)}`
    if (a.sample_rate !== AUDIO_SAMPLE_RATE) return `audio source ${a.id}: sample rate must be ${AUDIO_SAMPLE_RATE}, got ${a.sample_rate}`
    if (a.channels < 1 || a.channels > 2) return `audio source ${a.id}: channels must be 1 or 2, got ${a.channels}`
    if (!AUDIO_FRAME_MS.includes(a.frame_ms)) return `audio source ${a.id}: frame_ms must be one of ${AUDIO_FRAME_MS.join(', ')}, got ${a.frame_ms}`
  }
  return null
}

function helloProblem(cameras: CameraInfo[]): string | null {
  if (cameras.length === 0) return 'hello announces no camera'
  if (cameras.length > MAX_CAMERAS) return `hello announces ${cameras.length} cameras, the limit is ${MAX_CAMERAS}`
  for (let i = 0; i < cameras.length; i++) {
    const c = cameras[i]
    if (cameras.slice(0, i).some((d) => d.id === c.id)) return `camera id ${c.id} announced twice`
    if (c.codec !== 'h264') return `camera ${c.id}: unsupported codec ${JSON.stringify(c.codec)}`
    if (c.width === 0 || c.height === 0 || c.width > MAX_DIMENSION || c.height > MAX_DIMENSION) {
      return `camera ${c.id}: bad size ${c.width}x${c.height}`
    }
    if (c.fps === 0 || c.fps > 240) return `camera ${c.id}: bad fps ${c.fps}`
  }
  return null
}

const utf8Length = (s: string): number => new TextEncoder().encode(s).length

function readSourceStatus(v: unknown): SourceStatus {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShapeError('a source must be an object')
  const o = v as JsonObject
  const id = uint(o, 'id', 16)
  const state = str(o, 'state')
  if (state.length === 0 || utf8Length(state) > MAX_STATUS_STATE) throw new ShapeError(`source ${id}: state must be 1..=${MAX_STATUS_STATE} bytes`)
  const detail = optStr(o, 'detail')
  if (detail !== undefined && utf8Length(detail) > MAX_STATUS_DETAIL) throw new ShapeError(`source ${id}: detail longer than ${MAX_STATUS_DETAIL} bytes`)
  const fps = Object.prototype.hasOwnProperty.call(o, 'fps') ? Math.fround(float(o, 'fps')) : 0
  const bitrate_bps = Object.prototype.hasOwnProperty.call(o, 'bitrate_bps') ? float(o, 'bitrate_bps') : 0
  if (fps < 0 || bitrate_bps < 0) throw new ShapeError(`source ${id}: fps and bitrate_bps must be finite and not negative`)
  return { id, state, ...(detail === undefined ? {} : { detail }), fps, bitrate_bps }
}

function readBody(kind: number, o: JsonObject): ControlMessage {
  switch (kind) {
    case KIND_HELLO: {
      const trainId = str(o, 'train_id')
      const idProblem = trainIdProblem(trainId)
      if (idProblem) throw new ShapeError(idProblem)
      const cameras = arr(o, 'cameras').map(readCamera)
      const problem = helloProblem(cameras)
      if (problem) throw new ShapeError(problem)
      // Optional (absent: no audio), as serde's `#[serde(default)]`.
      const audio = Object.prototype.hasOwnProperty.call(o, 'audio') ? arr(o, 'audio').map(readAudioInfo) : []
      const aProblem = audioProblem(cameras, audio)
      if (aProblem) throw new ShapeError(aProblem)
      const software = optStr(o, 'software')
      return {
        hello: {
          train_id: trainId,
          cameras,
          ...(audio.length ? { audio } : {}),
          ...(software === undefined ? {} : { software }),
        },
      }
    }
    case KIND_WELCOME:
      return { welcome: { server_time_us: uint(o, 'server_time_us', 64), max_payload: uint(o, 'max_payload', 32) } }
    case KIND_COMMAND: {
      const command_id = uint(o, 'command_id', 64)
      if (!Object.prototype.hasOwnProperty.call(o, 'command')) throw new ShapeError('missing field `command`')
      const command = readAction(o.command)
      const problem = actionProblem(command)
      if (problem) throw new ShapeError(problem)
      return { command: { command_id, command } }
    }
    case KIND_COMMAND_ACK:
      return { command_ack: { command_id: uint(o, 'command_id', 64), ok: bool(o, 'ok'), message: optStr(o, 'message') ?? '' } }
    case KIND_TELEMETRY:
      return {
        telemetry: {
          timestamp_us: uint(o, 'timestamp_us', 64),
          speed_kmh: Math.fround(float(o, 'speed_kmh')),
          odometer_m: float(o, 'odometer_m'),
          horn: optBool(o, 'horn', false),
        },
      }
    case KIND_KEYFRAME_REQUEST: {
      const camera = optUint(o, 'camera', 16)
      return { keyframe_request: camera === undefined ? {} : { camera } }
    }
    case KIND_STATUS: {
      const sources = arr(o, 'sources').map(readSourceStatus)
      if (sources.length > MAX_STATUS_SOURCES) throw new ShapeError(`${sources.length} sources; at most ${MAX_STATUS_SOURCES}`)
      return { status: { sources } }
    }
    default:
      return { error: { code: str(o, 'code'), message: str(o, 'message') } }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Decode the frame at the start of `buf`; returns it and the number of bytes it used.
 * Throws a {@link DecodeError}: `incomplete` means "read more"; any other label is fatal for the stream.
 */
export function decodeControl(buf: Uint8Array, maxBody = DEFAULT_MAX_BODY): { message: ControlMessage; used: number } {
  if (buf.length < 4) {
    // Check what we have so that garbage fails fast instead of waiting for more.
    if ((buf.length >= 1 && buf[0] !== MAGIC0) || (buf.length >= 2 && buf[1] !== MAGIC1)) {
      throw new DecodeError('bad_magic', `bad magic ${hex2(buf[0])} ${hex2(buf[1] ?? 0)}, expected "RC"`)
    }
    throw new DecodeError('incomplete', `need ${CONTROL_HEADER_LEN - buf.length} more bytes`)
  }
  const kind = checkPreamble(buf, 'control frame')
  if (!isControlKind(kind)) {
    if (kind === KIND_VIDEO) throw new DecodeError('wrong_kind', `expected a control message, found kind 0x${hex2(kind)}`)
    throw new DecodeError('unknown_kind', `unknown message kind 0x${hex2(kind)}`)
  }
  if (buf.length < CONTROL_HEADER_LEN) throw new DecodeError('incomplete', `need ${CONTROL_HEADER_LEN - buf.length} more bytes`)
  const len = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getUint32(4)
  if (len > maxBody) throw new DecodeError('body_too_large', `message body of ${len} bytes exceeds the limit of ${maxBody}`)
  const total = CONTROL_HEADER_LEN + len
  if (buf.length < total) throw new DecodeError('incomplete', `need ${total - buf.length} more bytes`)
  const name = KIND_NAMES[kind]
  try {
    const body = JSON.parse(utf8.decode(buf.subarray(CONTROL_HEADER_LEN, total))) as Json
    return { message: readBody(kind, obj(body, name)), used: total }
  } catch (e) {
    throw new DecodeError('bad_body', `invalid ${name} body: ${e instanceof Error ? e.message : String(e)}`)
  }
}

/** The JSON body as serde_json writes it: fields in declaration order, Rust number formatting. */
export function controlBody(m: ControlMessage): { kind: number; json: string } {
  const u = (n: number) => String(n)
  if ('hello' in m) {
    const h = m.hello
    const cams = h.cameras.map((c) =>
      writeObject([['id', u(c.id)], ['codec', JSON.stringify(c.codec)], ['width', u(c.width)], ['height', u(c.height)], ['fps', u(c.fps)]]),
    )
    const audio = (h.audio ?? []).map((a) =>
      writeObject([
        ['id', u(a.id)], ['codec', JSON.stringify(a.codec)], ['sample_rate', u(a.sample_rate)], ['channels', u(a.channels)],
        ['frame_ms', u(a.frame_ms)],
      ]),
    )
    return {
      kind: KIND_HELLO,
      json: writeObject([
        ['train_id', JSON.stringify(h.train_id)],
        ['cameras', `[${cams.join(',')}]`],
        // Left out when empty, as serde's `skip_serializing_if`.
        ['audio', audio.length ? `[${audio.join(',')}]` : undefined],
        ['software', h.software === undefined ? undefined : JSON.stringify(h.software)],
      ]),
    }
  }
  if ('welcome' in m) return { kind: KIND_WELCOME, json: writeObject([['server_time_us', u(m.welcome.server_time_us)], ['max_payload', u(m.welcome.max_payload)]]) }
  if ('command' in m) return { kind: KIND_COMMAND, json: writeObject([['command_id', u(m.command.command_id)], ['command', writeAction(m.command.command)]]) }
  if ('command_ack' in m) {
    const a = m.command_ack
    return { kind: KIND_COMMAND_ACK, json: writeObject([['command_id', u(a.command_id)], ['ok', String(a.ok)], ['message', JSON.stringify(a.message)]]) }
  }
  if ('telemetry' in m) {
    const t = m.telemetry
    return {
      kind: KIND_TELEMETRY,
      json: writeObject([['timestamp_us', u(t.timestamp_us)], ['speed_kmh', f32Text(t.speed_kmh)], ['odometer_m', f64Text(t.odometer_m)], ['horn', String(t.horn)]]),
    }
  }
  if ('keyframe_request' in m) {
    const c = m.keyframe_request.camera
    return { kind: KIND_KEYFRAME_REQUEST, json: writeObject([['camera', c === undefined ? undefined : u(c)]]) }
  }
  if ('status' in m) {
    const sources = m.status.sources.map((src) =>
      writeObject([
        ['id', u(src.id)], ['state', JSON.stringify(src.state)], ['detail', src.detail === undefined ? undefined : JSON.stringify(src.detail)],
        ['fps', f32Text(src.fps)], ['bitrate_bps', f64Text(src.bitrate_bps)],
      ]),
    )
    return { kind: KIND_STATUS, json: writeObject([['sources', `[${sources.join(',')}]`]]) }
  }
  return { kind: KIND_ERROR, json: writeObject([['code', JSON.stringify(m.error.code)], ['message', JSON.stringify(m.error.message)]]) }
}

export function encodeControl(m: ControlMessage): Uint8Array {
  const { kind, json } = controlBody(m)
  const body = new TextEncoder().encode(json)
  const out = new Uint8Array(CONTROL_HEADER_LEN + body.length)
  out.set([MAGIC0, MAGIC1, VERSION, kind])
  new DataView(out.buffer).setUint32(4, body.length)
  out.set(body, CONTROL_HEADER_LEN)
  return out
}
