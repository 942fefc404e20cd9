/**
 * The MQTT transport: the server and the console meet at an MQTT broker (mosquitto with the
 * dynamic-security plugin), which the browser reaches over MQTT-over-WebSocket.
 *
 * 1. `GET /api/mqtt` (bearer token, as every API call) → `{url, connected, max_message}`. A 404
 *    (`mqtt_disabled`: no broker configured), or `url: null` (the server knows no broker URL for
 *    browsers), means the server does not offer MQTT to the console: the link ends as
 *    *unsupported*, and Auto leaves MQTT out (the store asks the same question for Auto's ranking).
 * 2. `POST /api/mqtt/sessions {remote_control_id}` → 201 with single-use credentials
 *    (`client_id`, `username`, `password`) and the session's topics (`video`, `events`, `command`).
 *    Every attempt makes a new POST: a link never reuses another's credentials.
 * 3. MQTT.js connects to `url` (MQTT 3.1.1, clean session, keepalive 10 s) with a will: an empty
 *    payload on `topics.command`, QoS 1 (an empty command message means goodbye). It subscribes
 *    `topics.video` (QoS 0) and `topics.events` (QoS 1); only after the SUBACK does it publish the
 *    first client message, a `ping`, on `topics.command` (QoS 1). The link is open once the broker
 *    has acknowledged that ping. Every client message goes the same way: JSON text on
 *    `topics.command`, QoS 1.
 * 4. Server → console: JSON events on `topics.events`, exactly as WebSocket text messages; video on
 *    `topics.video`, messages of one or more whole wire packets back to back, split as WebRTC
 *    `video` messages are (docs/wire-format.md §2.6, {@link handVideoMessage}). Video and events are
 *    different topics, so video may overtake events: the supervisor holds video until the first
 *    `mapped_train_changed`, as for WebRTC and WebTransport.
 * 5. End: the server publishes `closing` on events, then deletes the credentials, so the broker
 *    drops the client and refuses it (CONNACK "not authorized"). After a `closing` event or a
 *    refused CONNACK the link ends and does not reconnect. A broker connection lost otherwise (a
 *    broker restart) is retried by MQTT.js every {@link RECONNECT_PERIOD_MS} for at most
 *    {@link RECONNECT_WINDOW_MS}, then the link ends (the supervisor opens a new one: new POST).
 *    The console closes a link by publishing the empty goodbye on `topics.command`, ending the
 *    client, and `DELETE /api/mqtt/sessions/{id}` (best effort).
 *
 * MQTT.js (~100 kB gzipped) is loaded with `import()` when a link first opens, so a console that
 * never uses MQTT never downloads it.
 */
import type { IClientOptions, IClientPublishOptions, MqttClient } from 'mqtt'
import { authHeaders } from '../auth'
import { api, ApiError, handVideoMessage, type Link, type LinkHandlers } from './link'

/** `GET /api/mqtt`. */
export interface MqttInfo {
  /** The broker's MQTT-over-WebSocket URL for browsers; null when the server was not told one. */
  url: string | null
  /** Whether the server is connected to the broker now. */
  connected: boolean
  /** The largest MQTT payload either side publishes, bytes. */
  max_message: number
}

export interface MqttTopics {
  video: string
  events: string
  command: string
}

/** `POST /api/mqtt/sessions` (201), checked by {@link parseMqttSession}. */
export interface MqttSession {
  session_id: string
  url: string
  client_id: string
  username: string
  password: string
  topics: MqttTopics
  /** Topics of the WebRTC-over-MQTT signaling (the WebRTC link's `?signaling=mqtt`; checked by `parseSignalingTopics`). */
  signaling?: Record<string, string>
  max_message: number
  claim_within_s?: number
  idle_timeout_s?: number
}

/** MQTT.js `reconnectPeriod`: how often a lost broker connection is tried again. */
export const RECONNECT_PERIOD_MS = 3000
/** How long after losing the broker the link keeps trying, before it ends (≈6 tries). */
export const RECONNECT_WINDOW_MS = 20_000
/** MQTT.js `connectTimeout`: a CONNACK must come within this. */
export const CONNECT_TIMEOUT_MS = 5000
/** MQTT keepalive, seconds (the contract's). */
export const KEEPALIVE_S = 10
/** Before a `max_message` is known (the POST's), what the contract names. */
export const DEFAULT_MAX_MESSAGE = 4000
/** After publishing the goodbye, how long `end()` may wait for its PUBACK before it is forced. */
const GOODBYE_GRACE_MS = 1000

/** The reason the link ends with when the server does not offer MQTT to the console, or null when it does. */
export function mqttInfoProblem(info: unknown): string | null {
  if (!info || typeof info !== 'object') return `GET /api/mqtt: not an MQTT answer: ${JSON.stringify(info)?.slice(0, 200)}`
  const url = (info as { url?: unknown }).url
  if (url === null || url === undefined || url === '') return 'the server knows no broker URL for browsers (url: null)'
  if (typeof url !== 'string' || !/^wss?:\/\//i.test(url)) return `GET /api/mqtt: the broker URL is not ws:// or wss://: ${JSON.stringify(url).slice(0, 200)}`
  return null
}

/** A POST /api/mqtt/sessions answer the link cannot use. */
export class MalformedSession extends Error {
  constructor(problem: string) {
    super(`POST /api/mqtt/sessions: malformed answer: ${problem}`)
    this.name = 'MalformedSession'
  }
}

const text = (v: unknown): v is string => typeof v === 'string' && v.length > 0

/** A topic we subscribe or publish to: non-empty, no wildcard, no NUL (MQTT 3.1.1 §4.7). */
function topicProblem(t: unknown): string | null {
  if (!text(t)) return 'missing or empty'
  if (/[+#\u0000]/.test(t)) return `"${t}" holds a wildcard or NUL`
  return null
}

/**
 * Checks a `POST /api/mqtt/sessions` answer and returns it typed; throws {@link MalformedSession}
 * naming the first problem (a missing credential, a topic with a wildcard, a URL that is not
 * ws:// or wss://, a `max_message` that is not a positive integer).
 */
export function parseMqttSession(body: unknown): MqttSession {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new MalformedSession(`not an object: ${JSON.stringify(body)?.slice(0, 200)}`)
  const b = body as Record<string, unknown>
  for (const k of ['session_id', 'client_id', 'username', 'password'] as const) {
    if (!text(b[k])) throw new MalformedSession(`"${k}" is missing or not a non-empty string`)
  }
  if (!text(b.url) || !/^wss?:\/\//i.test(b.url)) throw new MalformedSession(`"url" is not a ws:// or wss:// URL: ${JSON.stringify(b.url)?.slice(0, 200)}`)
  const topics = b.topics
  if (!topics || typeof topics !== 'object') throw new MalformedSession('"topics" is missing')
  for (const k of ['video', 'events', 'command'] as const) {
    const p = topicProblem((topics as Record<string, unknown>)[k])
    if (p) throw new MalformedSession(`topics.${k}: ${p}`)
  }
  const t = topics as MqttTopics
  if (new Set([t.video, t.events, t.command]).size !== 3) throw new MalformedSession('topics.video, topics.events and topics.command must differ')
  const max = b.max_message === undefined ? DEFAULT_MAX_MESSAGE : b.max_message
  if (typeof max !== 'number' || !Number.isInteger(max) || max <= 0) throw new MalformedSession(`"max_message" is not a positive integer: ${JSON.stringify(b.max_message)}`)
  return {
    session_id: b.session_id as string,
    url: b.url,
    client_id: b.client_id as string,
    username: b.username as string,
    password: b.password as string,
    topics: { video: t.video, events: t.events, command: t.command },
    signaling: b.signaling && typeof b.signaling === 'object' ? (b.signaling as Record<string, string>) : undefined,
    max_message: max,
    claim_within_s: typeof b.claim_within_s === 'number' ? b.claim_within_s : undefined,
    idle_timeout_s: typeof b.idle_timeout_s === 'number' ? b.idle_timeout_s : undefined,
  }
}

/** QoS of each topic: video may be lost (as a WebRTC `video` message), events and commands may not. */
export const QOS = { video: 0, events: 1, command: 1 } as const

/** MQTT.js options for a session: its credentials, MQTT 3.1.1, clean, keepalive 10 s, the goodbye will. */
export function mqttOptions(s: MqttSession): IClientOptions {
  return {
    clientId: s.client_id,
    username: s.username,
    password: s.password,
    clean: true,
    protocolVersion: 4,
    keepalive: KEEPALIVE_S,
    reconnectPeriod: RECONNECT_PERIOD_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A refused CONNACK ends the session: never retried (MQTT.js's default; said here on purpose).
    reconnectOnConnackError: false,
    resubscribe: true,
    // Nothing queued while the broker is away: a stale ping or command is worth nothing later.
    queueQoSZero: false,
    will: { topic: s.topics.command, payload: '', qos: QOS.command, retain: false },
  }
}

/** The subscriptions (topic → QoS) a session makes. */
export function mqttSubscriptions(s: MqttSession): Record<string, { qos: 0 | 1 }> {
  return { [s.topics.video]: { qos: QOS.video }, [s.topics.events]: { qos: QOS.events } }
}

/** Publish options for every client message, the goodbye too. */
export const COMMAND_PUBLISH: IClientPublishOptions = { qos: QOS.command, retain: false }

/**
 * A CONNACK refusal (MQTT.js's error carries the return code: 1–5 in 3.1.1, ≥ 128 in 5), or null
 * for any other error. 5 / 135 "not authorized" is how the broker refuses credentials the server
 * deleted: the session is over.
 */
export function connackRefusal(e: unknown): { code: number; message: string } | null {
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code !== 'number' || !((code >= 1 && code <= 5) || code >= 128)) return null
  const msg = e instanceof Error ? e.message : String(e)
  return { code, message: msg }
}

export type MqttConnect = (url: string, opts: IClientOptions) => MqttClient

export interface MqttLinkOptions {
  /** MQTT.js's `connect`; a test passes a fake. Default: MQTT.js, loaded on first use. */
  connect?: MqttConnect
  /** Browser wall clock (ms since the epoch) for the first ping. */
  now?: () => number
  /** How often the counters go to the Connection panel. */
  statsEveryMs?: number
}

let loaded: Promise<MqttConnect> | null = null
/** MQTT.js, loaded once (its own chunk). */
export function loadMqtt(): Promise<MqttConnect> {
  loaded ??= import('mqtt').then((m) => {
    const mod = m as unknown as { connect?: MqttConnect; default?: { connect: MqttConnect } }
    const connect = mod.default?.connect ?? mod.connect
    if (!connect) throw new Error('MQTT.js has no connect()')
    return connect
  })
  loaded.catch(() => (loaded = null))
  return loaded
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))
const utf8 = new TextDecoder()
const utf8Encoder = new TextEncoder()

/** The `reason` of a `closing` event, or null for any other text. */
function closingReason(line: string): string | null {
  if (!line.includes('"closing"')) return null
  try {
    const ev = JSON.parse(line) as { type?: unknown; reason?: unknown }
    return ev.type === 'closing' ? String(ev.reason ?? '') : null
  } catch {
    return null
  }
}

interface Counters {
  videoMessages: number
  packets: number
  bytes: number
  events: number
  reconnects: number
}

/** `DELETE /api/mqtt/sessions/{id}`, best effort, surviving the page's unload. */
export function deleteMqttSession(id: string): void {
  fetch(`/api/mqtt/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true, headers: authHeaders() }).catch(() => {})
}
const deleteSession = deleteMqttSession

/**
 * The server cannot give us an MQTT session: its reason (the link's close reason), and whether
 * the server does not offer MQTT at all (`GET /api/mqtt` 404 or `url: null`, `POST` 404
 * `mqtt_disabled`).
 */
export class MqttSessionRefused extends Error {
  constructor(message: string, readonly unsupported = false) {
    super(message)
    this.name = 'MqttSessionRefused'
  }
}

export interface SessionRequest {
  signal: AbortSignal
  /** Asked after every step: true when the caller gave up meanwhile (then nothing is returned). */
  stopped(): boolean
  /** MQTT.js's `connect`; default: MQTT.js, loaded (once) between the GET and the POST. */
  connect?: MqttConnect
  /** `GET /api/mqtt` said the server offers MQTT to browsers. */
  offered?(info: MqttInfo): void
}

/**
 * Steps 1 and 2 of the MQTT link, shared with the WebRTC link's MQTT signaling: `GET /api/mqtt`
 * (is MQTT offered to browsers?), MQTT.js loaded, `POST /api/mqtt/sessions`, the answer checked.
 * Throws {@link MqttSessionRefused} with the reason; returns null when `stopped()` (a session made
 * meanwhile is deleted).
 */
export async function requestMqttSession(remoteControlId: string, r: SessionRequest): Promise<{ session: MqttSession; connect: MqttConnect } | null> {
  let info: MqttInfo
  try {
    info = await api<MqttInfo>('GET', '/api/mqtt', undefined, r.signal)
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) throw new MqttSessionRefused(`the server offers no MQTT (${e.code || e.detail || '404'})`, true)
    throw new MqttSessionRefused(e instanceof ApiError ? e.message : `GET /api/mqtt: ${errorText(e)}`)
  }
  if (r.stopped()) return null
  const problem = mqttInfoProblem(info)
  if (problem) throw new MqttSessionRefused(problem, info?.url === null || info?.url === undefined)
  r.offered?.(info)
  const connect = r.connect ?? (await loadMqtt())
  if (r.stopped()) return null
  let body: unknown
  try {
    body = await api<unknown>('POST', '/api/mqtt/sessions', { remote_control_id: remoteControlId }, r.signal)
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && e.code === 'mqtt_disabled') throw new MqttSessionRefused(`the server offers no MQTT (${e.code})`, true)
    throw new MqttSessionRefused(e instanceof ApiError ? e.message : `POST /api/mqtt/sessions: ${errorText(e)}`)
  }
  let session: MqttSession
  try {
    session = parseMqttSession(body)
  } catch (e) {
    // Release what the server made for us, if we can tell which it was.
    const id = (body as { session_id?: unknown } | null)?.session_id
    if (typeof id === 'string' && id) deleteSession(id)
    throw new MqttSessionRefused(errorText(e))
  }
  if (r.stopped()) {
    deleteSession(session.session_id)
    return null
  }
  return { session, connect }
}

export function openMqtt(remoteControlId: string, h: LinkHandlers, opts: MqttLinkOptions = {}): Link {
  const now = opts.now ?? (() => performance.timeOrigin + performance.now())
  let done = false
  let opened = false
  let state = 'asking'
  let client: MqttClient | null = null
  let session: MqttSession | null = null
  /** The server ended the session (a `closing` event, or credentials refused): no DELETE, no goodbye. */
  let endedByServer = false
  let lostAt: number | null = null
  let giveUp: ReturnType<typeof setTimeout> | undefined
  const fixed: Record<string, string> = {}
  const n: Counters = { videoMessages: 0, packets: 0, bytes: 0, events: 0, reconnects: 0 }
  let shown = ''
  const abort = new AbortController()

  const detail = (extra: Record<string, string> = {}) => {
    const d: Record<string, string> = { state, ...fixed }
    for (const [k, v] of Object.entries(n)) d[k] = String(v)
    shown = JSON.stringify(n)
    h.onDetail({ ...d, ...extra })
  }
  const stats = setInterval(() => {
    if (!done && JSON.stringify(n) !== shown) detail()
  }, opts.statsEveryMs ?? 1000)

  /** Stop the client: with the goodbye first when `goodbye` (and the broker is there to take it). */
  const release = (goodbye: boolean) => {
    clearInterval(stats)
    clearTimeout(giveUp)
    abort.abort()
    const c = client
    if (c) {
      // Our listeners stay (MQTT.js has its own on the same events); each returns once `done`.
      if (goodbye && session && c.connected) {
        // An empty command message is goodbye; then end once it is acknowledged (or soon anyway).
        const force = setTimeout(() => c.end(true), GOODBYE_GRACE_MS)
        c.publish(session.topics.command, '', COMMAND_PUBLISH, () => c.end(false, {}, () => clearTimeout(force)))
      } else {
        c.end(true)
      }
    }
    if (session && !endedByServer) deleteSession(session.session_id)
  }

  const finish = (reason: string, why?: { unsupported?: boolean }, goodbye = !endedByServer) => {
    if (done) return
    state = 'closed'
    detail({ closeReason: reason })
    done = true
    release(goodbye)
    h.onClose(reason, why)
  }

  const onMessage = (topic: string, payload: Uint8Array) => {
    if (done || !session) return
    if (topic === session.topics.video) {
      n.videoMessages++
      n.bytes += payload.byteLength
      handVideoMessage(
        payload,
        (p) => {
          if (p instanceof Uint8Array) n.packets++
          h.onBinary(p)
        },
        () => done,
      )
    } else if (topic === session.topics.events) {
      if (payload.byteLength === 0) return
      n.events++
      const line = utf8.decode(payload)
      const closing = closingReason(line)
      h.onText(line)
      if (closing !== null && !done) {
        // The server deletes the credentials next: the session is over, do not reconnect.
        endedByServer = true
        finish(`server closing (${closing})`, undefined, false)
      }
    }
  }

  const run = async () => {
    let s: MqttSession
    let connect: MqttConnect
    try {
      const got = await requestMqttSession(remoteControlId, {
        signal: abort.signal,
        stopped: () => done,
        connect: opts.connect,
        offered: (info) => {
          if (!info.connected) fixed.serverBroker = 'the server is not connected to the broker'
          state = 'session requested'
          detail()
        },
      })
      if (!got) return
      s = got.session
      session = s
      connect = got.connect
    } catch (e) {
      if (!(e instanceof MqttSessionRefused)) throw e
      finish(e.message, e.unsupported ? { unsupported: true } : undefined, false)
      return
    }
    fixed.session = s.session_id
    fixed.url = s.url
    fixed.clientId = s.client_id
    fixed.maxMessage = String(s.max_message)
    state = 'connecting to the broker'
    detail()
    const c = connect(s.url, mqttOptions(s))
    client = c
    c.on('message', (topic, payload) => onMessage(topic, payload))
    c.on('error', (e: unknown) => {
      if (done) return
      const refused = connackRefusal(e)
      if (refused) {
        // Credentials deleted (the session ended) or never valid: over, no retry.
        endedByServer = true
        finish(`the broker refused the connection (${refused.code}: ${refused.message})`, undefined, false)
      } else {
        fixed.lastError = errorText(e)
        detail()
      }
    })
    c.on('close', () => {
      if (done) return
      if (!opened) {
        // Not even open: fail now; the next attempt asks for new credentials.
        finish(fixed.lastError ? `could not connect to the broker: ${fixed.lastError}` : 'could not connect to the broker')
        return
      }
      if (lostAt !== null) return
      lostAt = now()
      state = 'reconnecting'
      detail()
      h.onStalled?.(true)
      giveUp = setTimeout(() => finish(`the broker connection was lost and not back within ${RECONNECT_WINDOW_MS / 1000} s`), RECONNECT_WINDOW_MS)
    })
    c.on('reconnect', () => {
      if (done) return
      n.reconnects++
      detail()
    })
    c.on('connect', () => {
      if (done) return
      if (!opened) {
        subscribeAndGreet(c, s).catch((e: unknown) => finish(`not opened: ${errorText(e)}`))
        return
      }
      // Back after a lost broker connection: MQTT.js subscribes again (`resubscribe`).
      clearTimeout(giveUp)
      lostAt = null
      state = 'open'
      delete fixed.lastError
      detail()
      h.onStalled?.(false)
    })
  }

  /** Subscribe, and only after the SUBACK publish our first message (the server speaks after it). */
  const subscribeAndGreet = async (c: MqttClient, s: MqttSession) => {
    state = 'subscribing'
    detail()
    const granted = await c.subscribeAsync(mqttSubscriptions(s))
    if (done) return
    const refused = granted.filter((g) => g.qos === 128)
    if (refused.length) {
      finish(`the broker refused the subscription to ${refused.map((g) => g.topic).join(', ')}`)
      return
    }
    await c.publishAsync(s.topics.command, JSON.stringify({ type: 'ping', t: now() }), COMMAND_PUBLISH)
    if (done) return
    opened = true
    state = 'open'
    detail()
    h.onOpen()
  }

  detail()
  // Not before `openMqtt` has returned: a link never ends inside its opener.
  Promise.resolve()
    .then(run)
    .catch((e: unknown) => finish(opened ? errorText(e) : `not opened: ${errorText(e)}`))

  return {
    kind: 'mqtt',
    send(msg: string) {
      const c = client
      if (done || !opened || !c || !session || !c.connected) return false
      if (utf8Encoder.encode(msg).byteLength > session.max_message) return false
      c.publish(session.topics.command, msg, COMMAND_PUBLISH, (e) => {
        if (e && !done) {
          fixed.lastError = `publish: ${errorText(e)}`
          detail()
        }
      })
      return true
    },
    close() {
      if (done) return
      done = true
      release(!endedByServer)
    },
  }
}
