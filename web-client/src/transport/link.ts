/**
 * One transport session ("link") to the server, whatever carries it: the shape every transport
 * module (WebSocket, WebRTC data channels, WebTransport, WHEP media tracks) implements, so the
 * rest of the console never asks which.
 */
import { authHeaders, getToken, reportUnauthorized } from '../auth'
import type { DecodeError } from '../wire/common'
import { splitVideoMessage } from '../wire/packet'
import type { Kind } from './policy'

/**
 * What a link hands over on its video path: one video packet (a whole WebSocket message, a view
 * into a data-channel message, never a copy, or one WebTransport datagram or stream), or the {@link DecodeError} that ended the split of a
 * data-channel message (docs/wire-format.md §2.6). The error travels the packets' path so that the
 * one place counting malformed packets (the video pipeline) counts it once, under its reason.
 */
export type VideoData = ArrayBuffer | Uint8Array | DecodeError

export interface LinkHandlers {
  /** Video and commands can flow (WebSocket open; both data channels open; WebTransport session and its stream open). */
  onOpen(): void
  /**
   * The link is over (failed to open, or closed after opening). Called at most once. `unsupported`:
   * the server (or browser) does not offer this transport at all, so Auto need not try it again soon.
   */
  onClose(reason: string, why?: { unsupported?: boolean }): void
  /** A JSON text message (server event). */
  onText(text: string): void
  /** One video packet, or the error that ended the split of a data-channel message ({@link VideoData}). */
  onBinary(data: VideoData): void
  /**
   * Media tracks (WHEP only): one stream per camera of the train, in camera order, handed over
   * again whenever a track arrives; packet links never call it.
   */
  onMedia?(media: MediaTracks): void
  /** Connection / ICE / channel states, for the UI. */
  onDetail(detail: Record<string, string>): void
  /**
   * The link lost its carrier and is getting it back by itself (MQTT: MQTT.js reconnecting to the
   * broker after a restart), `true`, or got it back, `false`. Meanwhile the supervisor does not give
   * the link up for silence: the link bounds the wait itself and calls `onClose` when it gives up.
   */
  onStalled?(stalled: boolean): void
}

/**
 * Hand over a message that holds one or more whole video packets back to back (a WebRTC `video`
 * data-channel message, an MQTT video message; docs/wire-format.md §2.6): every packet, as a view
 * into the message, then the error that ended the split, if any, once, to be counted like a
 * malformed packet. `stopped` is asked between packets (a handler may close the link).
 */
export function handVideoMessage(message: ArrayBuffer | Uint8Array, onBinary: (data: VideoData) => void, stopped: () => boolean = () => false): void {
  const { packets, error } = splitVideoMessage(message)
  for (const p of packets) {
    if (stopped()) return
    onBinary(p)
  }
  if (error && !stopped()) onBinary(error)
}

/** What `getStats()` says about one camera's track (WHEP), for the overlay and the tests. */
export interface TrackStats {
  /** Index of the camera (and of its video transceiver). */
  index: number
  framesDecoded: number
  framesPerSecond: number
  packetsReceived: number
  packetsLost: number
  /** Interarrival jitter, ms. */
  jitterMs: number
  /** Average time a frame spent in the jitter buffer, ms (`jitterBufferDelay / jitterBufferEmittedCount`). */
  jitterBufferMs: number | null
  keyFramesDecoded: number
  pliSent: number
  width: number
  height: number
  codec: string
}

/** What `getStats()` says about the cab audio track (WHEP). */
export interface AudioTrackStats {
  packetsReceived: number
  packetsLost: number
  totalSamplesReceived: number
  audioLevel: number
  /** Average time a sample spent in the jitter buffer, ms. */
  jitterBufferMs: number | null
  codec: string
}

/** A link's media tracks: one stream per camera, the cab audio's, and their statistics. */
export interface MediaTracks {
  streams: MediaStream[]
  /** The train's audio track (the server answers the audio m-line inactive when it has none). */
  audio: MediaStream | null
  stats(): Promise<TrackStats[]>
  audioStats(): Promise<AudioTrackStats | null>
}

export interface Link {
  readonly kind: Kind
  /** Send one JSON text message; false when the link cannot take it now. */
  send(text: string): boolean
  /** Close and release everything; no handler is called afterwards. */
  close(): void
}

/**
 * A JSON request to the server with this console's token (`Authorization: Bearer …`); throws an
 * {@link ApiError} carrying the HTTP status, the error code and the server's message. A 401 is
 * also reported to the `onUnauthorized` listeners (see `../auth`).
 */
export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const token = getToken()
  const headers: Record<string, string> = authHeaders(token)
  if (body !== undefined) headers['content-type'] = 'application/json'
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  })
  const text = await r.text()
  if (!r.ok) {
    let code = ''
    let message = text
    try {
      const e = JSON.parse(text) as { code?: string; message?: string }
      code = e.code ?? ''
      message = e.message ?? text
    } catch {
      // not the server's JSON error shape (a proxy's page, say)
    }
    if (r.status === 401) reportUnauthorized(message.trim() || r.statusText || 'unauthorized', token)
    throw new ApiError(r.status, code, `${method} ${path}: ${r.status} ${message}`.trim(), message.trim())
  }
  return (text ? JSON.parse(text) : null) as T
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The server's own `message` (or body), without the method and path. */
    readonly detail: string = message,
  ) {
    super(message)
    this.name = 'ApiError'
  }
}
