/**
 * WebRTC signaling over MQTT topics (docs/signaling.md "MQTT topics"), for the WebRTC link's
 * `?signaling=mqtt`: the console offers, the server answers.
 *
 * 1. The MQTT link's first steps ({@link requestMqttSession}): `GET /api/mqtt` (a 404 or
 *    `url: null`: the server offers no MQTT, the link ends as *unsupported*), MQTT.js loaded,
 *    `POST /api/mqtt/sessions {remote_control_id}` → credentials and the `signaling` topics.
 * 2. MQTT.js connects with those credentials (MQTT 3.1.1, clean, no will, no reconnection: a
 *    broker lost during signaling fails the attempt, the next one asks for new credentials) and
 *    subscribes `signaling.answer` (QoS 1) and `signaling.server_candidate` (QoS 0).
 * 3. The WebRTC link makes its offer; {@link MqttSignaler.offer} publishes `{"type":"offer","sdp"}`
 *    on `signaling.offer` (QoS 1); every local candidate goes on `signaling.candidate` (QoS 0) as
 *    `{"candidate","sdpMid","sdpMLineIndex"}`, `candidate: ""` last. Candidates may overtake the
 *    offer: the server keeps them until it has answered.
 * 4. `signaling.answer` brings `{"type":"answer","sdp"}` or `{"type":"error","code","message"}`;
 *    `signaling.server_candidate` the server's later candidates, `candidate: ""` last.
 * 5. Once both data channels are open the link {@link MqttSignaler.finish}es: MQTT DISCONNECT.
 *    The server does not watch the signaling client's broker connection: the WebRTC session goes
 *    on, and the server deletes the credentials when the peer ends. `close()` before that (a
 *    failure, the supervisor giving up) also ends the client and `DELETE`s the MQTT session, so
 *    the credentials go at once instead of at `mqtt_claim_timeout` or the peer's end.
 */
import type { IClientOptions, MqttClient } from 'mqtt'
import { CONNECT_TIMEOUT_MS, deleteMqttSession, KEEPALIVE_S, MalformedSession, requestMqttSession, type MqttConnect, type MqttInfo, type MqttSession } from './mqtt'

/**
 * How the WebRTC link signals: REST (the server offers; the default), MQTT topics or JSON-RPC 2.0
 * over `/rpc` (`rpc-signaling.ts`); with the last two the console offers.
 */
export type Signaling = 'rest' | 'mqtt' | 'rpc'
export const SIGNALINGS: readonly Signaling[] = ['rest', 'mqtt', 'rpc']

/** `?signaling=` (or a stored choice): `rest`, `mqtt` or `rpc`, case-insensitive; anything else: null. */
export function parseSignaling(s: string | null | undefined): Signaling | null {
  const v = s?.trim().toLowerCase()
  return v === 'rest' || v === 'mqtt' || v === 'rpc' ? v : null
}

/** The four signaling topics of an MQTT session (`signaling` of `POST /api/mqtt/sessions`). */
export interface SignalingTopics {
  offer: string
  candidate: string
  answer: string
  server_candidate: string
}

/** QoS of each signaling topic (the contract's). */
export const SIGNALING_QOS = { offer: 1, candidate: 0, answer: 1, server_candidate: 0 } as const

/** Checks the session's `signaling` topics; throws {@link MalformedSession} naming the first problem. */
export function parseSignalingTopics(s: Pick<MqttSession, 'signaling'>): SignalingTopics {
  const t = s.signaling
  if (!t || typeof t !== 'object') throw new MalformedSession('"signaling" is missing (a server without WebRTC signaling over MQTT?)')
  const keys = ['offer', 'candidate', 'answer', 'server_candidate'] as const
  for (const k of keys) {
    const v = (t as Record<string, unknown>)[k]
    if (typeof v !== 'string' || !v) throw new MalformedSession(`signaling.${k}: missing or empty`)
    if (/[+#\u0000]/.test(v)) throw new MalformedSession(`signaling.${k}: "${v}" holds a wildcard or NUL`)
  }
  if (new Set(keys.map((k) => t[k])).size !== keys.length) throw new MalformedSession('the four signaling topics must differ')
  return { offer: t.offer, candidate: t.candidate, answer: t.answer, server_candidate: t.server_candidate }
}

/**
 * MQTT.js options of the signaling client: the session's credentials, MQTT 3.1.1, clean; no will
 * (the session's command topic belongs to the MQTT transport: a message there would claim the ID
 * for it) and no reconnection (signaling lasts a second; a new attempt gets new credentials).
 */
export function signalingOptions(s: MqttSession): IClientOptions {
  return {
    clientId: s.client_id,
    username: s.username,
    password: s.password,
    clean: true,
    protocolVersion: 4,
    keepalive: KEEPALIVE_S,
    reconnectPeriod: 0,
    connectTimeout: CONNECT_TIMEOUT_MS,
    reconnectOnConnackError: false,
    queueQoSZero: false,
  }
}

/** The subscriptions of the signaling client: the answer (QoS 1) and the server's candidates (QoS 0). */
export function signalingSubscriptions(t: SignalingTopics): Record<string, { qos: 0 | 1 }> {
  return { [t.answer]: { qos: SIGNALING_QOS.answer }, [t.server_candidate]: { qos: SIGNALING_QOS.server_candidate } }
}

/** The offer message. */
export const offerMessage = (sdp: string) => JSON.stringify({ type: 'offer', sdp })

/** A local candidate as the server takes it; `null` (gathering complete) is `candidate: ""`. */
export function candidateMessage(c: RTCIceCandidateInit | null, firstMid: string | null = null): string {
  if (!c || !c.candidate) return JSON.stringify({ candidate: '', sdpMid: c?.sdpMid ?? firstMid, sdpMLineIndex: c?.sdpMLineIndex ?? 0 })
  const m: Record<string, unknown> = { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null }
  if (c.usernameFragment) m.usernameFragment = c.usernameFragment
  return JSON.stringify(m)
}

/** What arrives on `signaling.answer`. */
export type SignalingReply =
  | { type: 'answer'; sdp: string }
  | { type: 'error'; code: string; message: string }
  /** Not a message of the contract: the text says why. */
  | { type: 'malformed'; problem: string }

export function parseSignalingReply(payload: string): SignalingReply {
  let v: unknown
  try {
    v = JSON.parse(payload)
  } catch {
    return { type: 'malformed', problem: `not JSON: ${payload.slice(0, 100)}` }
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { type: 'malformed', problem: `not a JSON object: ${payload.slice(0, 100)}` }
  const m = v as Record<string, unknown>
  if (m.type === 'answer') {
    if (typeof m.sdp !== 'string' || !m.sdp.trim()) return { type: 'malformed', problem: 'an answer without "sdp"' }
    return { type: 'answer', sdp: m.sdp }
  }
  if (m.type === 'error') return { type: 'error', code: typeof m.code === 'string' ? m.code : '?', message: typeof m.message === 'string' ? m.message : '' }
  return { type: 'malformed', problem: `unexpected "type": ${JSON.stringify(m.type)?.slice(0, 40)}` }
}

/**
 * A server candidate for `addIceCandidate`; `candidate: ""` (the end) too, with its section.
 * Null when the message is not a candidate.
 */
export function parseServerCandidate(payload: string): RTCIceCandidateInit | null {
  let v: unknown
  try {
    v = JSON.parse(payload)
  } catch {
    return null
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null
  const m = v as Record<string, unknown>
  if (typeof m.candidate !== 'string') return null
  const c: RTCIceCandidateInit = { candidate: m.candidate }
  if (typeof m.sdpMid === 'string') c.sdpMid = m.sdpMid
  if (typeof m.sdpMLineIndex === 'number' && Number.isInteger(m.sdpMLineIndex) && m.sdpMLineIndex >= 0) c.sdpMLineIndex = m.sdpMLineIndex
  if (c.sdpMid === undefined && c.sdpMLineIndex === undefined) c.sdpMLineIndex = 0
  return c
}

/** The `a=mid:` of an SDP's first section (the end-of-candidates names it). */
export function firstMid(sdp: string): string | null {
  const m = /^a=mid:(\S+)/m.exec(sdp)
  return m ? m[1] : null
}

/** The server refused the offer (`{"type":"error"}` before an answer), or signaling broke down. */
export class SignalingFailed extends Error {
  constructor(message: string, readonly unsupported = false) {
    super(message)
    this.name = 'SignalingFailed'
  }
}

export interface SignalerOptions {
  signal: AbortSignal
  stopped(): boolean
  connect?: MqttConnect
  /** Progress, for the link's details. */
  onState(state: string, fixed?: Record<string, string>): void
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))
const utf8 = new TextDecoder()

/**
 * One signaling exchange over the broker. {@link MqttSignaler.open} asks for a session, connects
 * and subscribes; then the link sets the handlers and sends its offer and candidates.
 */
export class MqttSignaler {
  /** `signaling.answer`: the answer, an error, or something else. */
  onReply: (r: SignalingReply) => void = () => {}
  /** `signaling.server_candidate`. */
  onCandidate: (c: RTCIceCandidateInit) => void = () => {}
  /** The broker connection ended (or failed) before {@link finish}/{@link close}. */
  onLost: (reason: string) => void = () => {}
  private ended = false
  private mid: string | null = null
  /** The client's last error (MQTT.js emits `error` for every failure; a listener must take it). */
  lastError: string | null = null
  /** Candidates sent, server candidates received, the empty end not counted (for the details). */
  readonly counts = { sent: 0, received: 0 }

  private constructor(
    readonly session: MqttSession,
    readonly topics: SignalingTopics,
    private readonly client: MqttClient,
  ) {
    client.on('message', (topic: string, payload: Uint8Array) => {
      if (this.ended) return
      const text = utf8.decode(payload)
      if (topic === topics.answer) this.onReply(parseSignalingReply(text))
      else if (topic === topics.server_candidate) {
        const c = parseServerCandidate(text)
        if (c) {
          if (c.candidate) this.counts.received++
          this.onCandidate(c)
        }
      }
    })
    client.on('error', (e: unknown) => {
      this.lastError = errorText(e)
    })
    client.on('close', () => {
      if (!this.ended) this.onLost('MQTT signaling: the broker connection closed')
    })
  }

  /**
   * Session, connection, subscriptions: ready for the offer. Throws {@link SignalingFailed}
   * (unsupported: the server offers no MQTT); null when `stopped()` meanwhile.
   */
  static async open(remoteControlId: string, o: SignalerOptions): Promise<MqttSignaler | null> {
    let got: Awaited<ReturnType<typeof requestMqttSession>>
    try {
      got = await requestMqttSession(remoteControlId, {
        signal: o.signal,
        stopped: o.stopped,
        connect: o.connect,
        offered: (info: MqttInfo) => o.onState('session requested', info.connected ? {} : { serverBroker: 'the server is not connected to the broker' }),
      })
    } catch (e) {
      throw new SignalingFailed(`MQTT signaling: ${errorText(e)}`, (e as { unsupported?: boolean }).unsupported === true)
    }
    if (!got) return null
    const { session, connect } = got
    let topics: SignalingTopics
    try {
      topics = parseSignalingTopics(session)
    } catch (e) {
      deleteMqttSession(session.session_id)
      throw new SignalingFailed(`MQTT signaling: ${errorText(e)}`)
    }
    o.onState('connecting to the broker', { mqttSession: session.session_id, broker: session.url })
    const client = connect(session.url, signalingOptions(session))
    const s = new MqttSignaler(session, topics, client)
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve())
        client.once('error', (e: unknown) => reject(new Error(`the broker refused the connection: ${errorText(e)}`)))
        client.once('close', () => reject(new Error('could not connect to the broker')))
      })
      if (o.stopped()) {
        s.close()
        return null
      }
      o.onState('subscribing')
      const granted = await client.subscribeAsync(signalingSubscriptions(topics))
      const refused = granted.filter((g) => g.qos === 128)
      if (refused.length) throw new Error(`the broker refused the subscription to ${refused.map((g) => g.topic).join(', ')}`)
    } catch (e) {
      s.close()
      throw new SignalingFailed(`MQTT signaling: ${errorText(e)}`)
    }
    if (o.stopped()) {
      s.close()
      return null
    }
    return s
  }

  /** Publish the offer (QoS 1); resolves on the broker's PUBACK. */
  async offer(sdp: string): Promise<void> {
    this.mid = firstMid(sdp)
    await this.client.publishAsync(this.topics.offer, offerMessage(sdp), { qos: SIGNALING_QOS.offer, retain: false })
  }

  /** Publish a local candidate (QoS 0); `null`: the end of them. Nothing once finished. */
  candidate(c: RTCIceCandidateInit | null): void {
    if (this.ended || !this.client.connected) return
    if (c?.candidate) this.counts.sent++
    this.client.publish(this.topics.candidate, candidateMessage(c, this.mid), { qos: SIGNALING_QOS.candidate, retain: false })
  }

  /** Signaling is over (both channels open): DISCONNECT. The server keeps the WebRTC session. */
  finish(): void {
    if (this.ended) return
    this.ended = true
    this.client.end(false)
  }

  /** Give up: end the client and delete the MQTT session (its credentials go at once). */
  close(): void {
    const wasEnded = this.ended
    this.ended = true
    if (!wasEnded) this.client.end(true)
    deleteMqttSession(this.session.session_id)
  }
}
