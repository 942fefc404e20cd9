/**
 * Remote control ⇄ server JSON messages (docs/wire-format.md §4), as `railcast_protocol::client`.
 * The same on WebSocket text messages and on the WebRTC `command` data channel.
 */
import type { Action, AudioInfo, CameraInfo, Telemetry } from './control'

/** Largest client message the server reads. */
export const MAX_CLIENT_MESSAGE = 16 * 1024
/** Longest `request_id` a client may use, in bytes. */
export const MAX_REQUEST_ID = 64

export type ClientMessage =
  | { type: 'command'; request_id: string; command: Action }
  | { type: 'ping'; t: number }
  /** Take the mapped train's control lease (`force`: an admin takes it over from its holder). */
  | { type: 'take_control'; console_id?: string; force?: boolean }
  | { type: 'release_control' }

export type ServerEvent =
  | {
      type: 'welcome'
      remote_control_id: string
      transport: string
      train_id: string | null
      server_time_us: number
      /**
       * The server's payload limit, bytes (1–65535): it relays no packet with a larger payload, so
       * a client refuses one as `payload_too_large` (§2.1 step 5). Absent from servers before it.
       */
      max_payload?: number
    }
  /**
   * `cameras` (here and in `train_online`): the cameras of the train's latest hello, in its order
   * (§4); here also while the train is offline, and `[]` when not mapped or never connected.
   * `audio`: the audio sources of the same hello; absent when there are none (and from servers
   * before audio).
   */
  | { type: 'mapped_train_changed'; train_id: string | null; online: boolean; cameras: CameraInfo[]; audio?: AudioInfo[] }
  | { type: 'train_online'; train_id: string; cameras: CameraInfo[]; audio?: AudioInfo[] }
  | { type: 'train_offline'; train_id: string; reason: string }
  | { type: 'telemetry'; train_id: string; telemetry: Telemetry }
  | { type: 'command_ack'; request_id: string; command_id: number; ok: boolean; message: string; train_rtt_us: number }
  | { type: 'command_error'; request_id: string; code: string; message: string }
  | { type: 'error'; code: string; message: string }
  | { type: 'pong'; t: number; server_time_us: number }
  | { type: 'closing'; reason: string }
  /**
   * Who controls the mapped train changed (`holder` null: nobody). `reason`: `taken`, `released`,
   * `resumed`, `held`, `taken over by A from B`, `operator lost: …`.
   */
  | {
      type: 'control_changed'
      train_id: string
      holder: { name: string; role: string; session: number; transport: string; console_id?: string; since_us: number; node?: string } | null
      reason: string
    }

const KNOWN = new Set([
  'welcome', 'mapped_train_changed', 'train_online', 'train_offline', 'telemetry',
  'command_ack', 'command_error', 'error', 'pong', 'closing', 'control_changed',
])

/**
 * Parse one server event. Returns null for text that is not a JSON object with a `type`, and for
 * event types this client does not know (clients MUST ignore them).
 */
export function parseServerEvent(text: string): ServerEvent | null {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null
  const type = (v as { type?: unknown }).type
  if (typeof type !== 'string' || !KNOWN.has(type)) return null
  return v as ServerEvent
}

/** Serialize a client message; throws when it breaks the limits the server enforces. */
export function encodeClientMessage(m: ClientMessage): string {
  if (m.type === 'command') {
    const len = new TextEncoder().encode(m.request_id).length
    if (len === 0 || len > MAX_REQUEST_ID) throw new RangeError(`request_id must be 1..=${MAX_REQUEST_ID} bytes`)
  }
  const text = JSON.stringify(m)
  if (text.length > MAX_CLIENT_MESSAGE) throw new RangeError('client message too large')
  return text
}
