// The MQTT link: what it builds from the server's answers (MQTT.js options, topics, subscriptions),
// what it refuses, and how it drives a client (a fake with MQTT.js's shape; the server's answers are
// canned fetch responses, as in webtransport.test.ts).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { IClientOptions } from 'mqtt'
import { setToken } from '../src/auth'
import type { LinkHandlers, VideoData } from '../src/transport/link'
import {
  connackRefusal, MalformedSession, mqttInfoProblem, mqttOptions, mqttSubscriptions, openMqtt, parseMqttSession,
  RECONNECT_PERIOD_MS, RECONNECT_WINDOW_MS,
} from '../src/transport/mqtt'
import { DecodeError } from '../src/wire/common'
import { encodeVideoPacket, HEADER_LEN } from '../src/wire/packet'
import { fakeConnect, FakeClient } from './fake-mqtt'

const SID = 'mq-0123456789abcdef'
const T = `railcast/v1/rc/rc-1/${SID}`
/** The contract's example answer to POST /api/mqtt/sessions. */
const SESSION = {
  session_id: SID,
  url: 'ws://127.0.0.1:9001',
  client_id: `railcast-${SID}`,
  username: `railcast-${SID}`,
  password: 'sekret',
  topics: { video: `${T}/video`, events: `${T}/events`, command: `${T}/command` },
  signaling: { offer: `mobile/${SID}/webrtc/offer`, candidate: `mobile/${SID}/webrtc/candidate`, answer: `device/${SID}/webrtc/answer`, server_candidate: `device/${SID}/webrtc/candidate` },
  max_message: 4000,
  claim_within_s: 30,
  idle_timeout_s: 30,
}

describe('MQTT session answer', () => {
  it('the contract example parses as is', () => {
    const s = parseMqttSession(SESSION)
    expect(s).toMatchObject({ session_id: SID, url: 'ws://127.0.0.1:9001', client_id: `railcast-${SID}`, max_message: 4000 })
    expect(s.topics).toEqual(SESSION.topics)
  })

  it('MQTT.js options: the credentials, 3.1.1, clean, keepalive 10, the empty goodbye will on the command topic', () => {
    const o: IClientOptions = mqttOptions(parseMqttSession(SESSION))
    expect(o).toMatchObject({
      clientId: `railcast-${SID}`,
      username: `railcast-${SID}`,
      password: 'sekret',
      clean: true,
      protocolVersion: 4,
      keepalive: 10,
      reconnectOnConnackError: false,
      will: { topic: `${T}/command`, payload: '', qos: 1, retain: false },
    })
    // A lost broker is retried a few times within the window, then the link gives up.
    expect(o.reconnectPeriod).toBe(RECONNECT_PERIOD_MS)
    expect(RECONNECT_WINDOW_MS / RECONNECT_PERIOD_MS).toBeGreaterThanOrEqual(3)
    expect(RECONNECT_WINDOW_MS).toBeLessThanOrEqual(25_000)
  })

  it('subscriptions: video QoS 0, events QoS 1', () => {
    expect(mqttSubscriptions(parseMqttSession(SESSION))).toEqual({ [`${T}/video`]: { qos: 0 }, [`${T}/events`]: { qos: 1 } })
  })

  it('a malformed answer is refused with the problem named', () => {
    const bad = (patch: Record<string, unknown>) => () => parseMqttSession({ ...SESSION, ...patch })
    expect(() => parseMqttSession(null)).toThrow(MalformedSession)
    expect(() => parseMqttSession([])).toThrow(/not an object/)
    expect(bad({ password: undefined })).toThrow(/"password" is missing/)
    expect(bad({ client_id: '' })).toThrow(/"client_id"/)
    expect(bad({ url: 'http://127.0.0.1:9001' })).toThrow(/"url" is not a ws:\/\/ or wss:\/\/ URL/)
    expect(bad({ url: null })).toThrow(/"url"/)
    expect(bad({ topics: undefined })).toThrow(/"topics" is missing/)
    expect(bad({ topics: { ...SESSION.topics, events: '' } })).toThrow(/topics\.events: missing or empty/)
    expect(bad({ topics: { ...SESSION.topics, video: `${T}/#` } })).toThrow(/topics\.video: .* wildcard/)
    expect(bad({ topics: { ...SESSION.topics, command: SESSION.topics.events } })).toThrow(/must differ/)
    expect(bad({ max_message: 0 })).toThrow(/"max_message" is not a positive integer/)
    expect(bad({ max_message: '4000' })).toThrow(/"max_message"/)
    expect(bad({ password: undefined })).toThrow(/^POST \/api\/mqtt\/sessions: malformed answer: /)
  })

  it('GET /api/mqtt: a broker URL offers MQTT; url null (or none) does not', () => {
    expect(mqttInfoProblem({ url: 'ws://127.0.0.1:9001', connected: true, max_message: 4000 })).toBeNull()
    expect(mqttInfoProblem({ url: 'wss://broker.example/mqtt', connected: false, max_message: 4000 })).toBeNull()
    expect(mqttInfoProblem({ url: null, connected: true, max_message: 4000 })).toMatch(/no broker URL/)
    expect(mqttInfoProblem({ connected: true })).toMatch(/no broker URL/)
    expect(mqttInfoProblem({ url: 'tcp://127.0.0.1:1883' })).toMatch(/not ws:\/\/ or wss:\/\//)
    expect(mqttInfoProblem('nope')).toMatch(/not an MQTT answer/)
  })

  it('connackRefusal: CONNACK return codes (3.1.1 and 5), not other errors', () => {
    const withCode = (code: unknown, msg = 'Connection refused: Not authorized') => Object.assign(new Error(msg), { code })
    expect(connackRefusal(withCode(5))).toEqual({ code: 5, message: 'Connection refused: Not authorized' })
    expect(connackRefusal(withCode(135))?.code).toBe(135)
    expect(connackRefusal(withCode(4))?.code).toBe(4)
    expect(connackRefusal(withCode('ECONNREFUSED'))).toBeNull()
    expect(connackRefusal(new Error('Keepalive timeout'))).toBeNull()
    expect(connackRefusal(null)).toBeNull()
  })
})

// ---- the link against a fake MQTT.js client ------------------------------------------------------


interface Seen {
  opened: number
  closed: { reason: string; why?: { unsupported?: boolean } }[]
  texts: string[]
  binary: VideoData[]
  details: Record<string, string>[]
  stalled: boolean[]
}

function handlers(): { h: LinkHandlers; seen: Seen } {
  const seen: Seen = { opened: 0, closed: [], texts: [], binary: [], details: [], stalled: [] }
  return {
    seen,
    h: {
      onOpen: () => void seen.opened++,
      onClose: (reason, why) => void seen.closed.push(why ? { reason, why } : { reason }),
      onText: (t) => void seen.texts.push(t),
      onBinary: (d) => void seen.binary.push(d),
      onDetail: (d) => void seen.details.push(d),
      onStalled: (s) => void seen.stalled.push(s),
    },
  }
}

let requests: { method: string; url: string; auth: string | undefined; body: unknown }[] = []
let answers: Record<string, { status: number; body?: unknown }> = {}

beforeEach(() => {
  FakeClient.made = []
  requests = []
  answers = {
    'GET /api/mqtt': { status: 200, body: { url: 'ws://127.0.0.1:9001', connected: true, max_message: 4000 } },
    'POST /api/mqtt/sessions': { status: 201, body: SESSION },
    [`DELETE /api/mqtt/sessions/${SID}`]: { status: 204 },
  }
  vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
    const method = init.method ?? 'GET'
    requests.push({ method, url, auth: (init.headers as Record<string, string> | undefined)?.authorization, body: init.body ? JSON.parse(init.body as string) : undefined })
    const a = answers[`${method} ${url}`] ?? { status: 404, body: { code: 'not_found', message: 'no route' } }
    return new Response(a.body === undefined ? null : JSON.stringify(a.body), { status: a.status })
  })
  setToken('tok')
})

afterEach(() => {
  vi.unstubAllGlobals()
  vi.useRealTimers()
  setToken(null)
})

const open = (h: LinkHandlers) => openMqtt('rc-1', h, { connect: fakeConnect, now: () => 1234 })
const paths = () => requests.map((r) => `${r.method} ${r.url}`)

/** Open a link and bring it up; returns the link, the fake client and what was seen. */
async function up() {
  const { h, seen } = handlers()
  const link = open(h)
  await vi.waitFor(() => expect(FakeClient.made).toHaveLength(1))
  const c = FakeClient.made[0]
  c.accept()
  await vi.waitFor(() => expect(seen.opened).toBe(1))
  return { link, c, seen }
}

/** A video wire packet of `n` payload bytes. */
const video = (n: number) =>
  encodeVideoPacket({ keyframe: true, codec: 'h264', camera: 0, seq: n, captureUs: 1_763_812_800_123_456, chunkIndex: 0, chunkCount: 1 }, new Uint8Array(n).fill(7))
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

describe('MQTT link', () => {
  it('GET /api/mqtt, POST a session, connect with its credentials, subscribe, then ping, then open', async () => {
    const { c, seen } = await up()
    expect(paths()).toEqual(['GET /api/mqtt', 'POST /api/mqtt/sessions'])
    expect(requests.every((r) => r.auth === 'Bearer tok')).toBe(true)
    expect(requests[1].body).toEqual({ remote_control_id: 'rc-1' })
    expect(c.url).toBe('ws://127.0.0.1:9001')
    expect(c.options).toMatchObject({ clientId: `railcast-${SID}`, password: 'sekret', will: { topic: `${T}/command`, payload: '', qos: 1 } })
    expect(c.subscribed).toEqual([{ [`${T}/video`]: { qos: 0 }, [`${T}/events`]: { qos: 1 } }])
    expect(c.published).toEqual([{ topic: `${T}/command`, message: '{"type":"ping","t":1234}', qos: 1 }])
    expect(seen.details[seen.details.length - 1]).toMatchObject({ state: 'open', session: SID, url: 'ws://127.0.0.1:9001' })
    expect(JSON.stringify(seen.details)).not.toContain('sekret') // the details reach the test hook
  })

  it('nothing is published before the SUBACK; a refused subscription fails the link', async () => {
    const { h, seen } = handlers()
    open(h)
    await vi.waitFor(() => expect(FakeClient.made).toHaveLength(1))
    const c = FakeClient.made[0]
    expect(c.published).toEqual([])
    c.grant = [0, 128]
    c.accept()
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0].reason).toMatch(/refused the subscription to .*\/events/)
    expect(seen.opened).toBe(0)
    // No ping: only the goodbye, so that the server need not wait for the session's idle timeout.
    expect(c.published).toEqual([{ topic: `${T}/command`, message: '', qos: 1 }])
  })

  it('commands: JSON text on the command topic, QoS 1; not while the broker is away, not over max_message', async () => {
    const { link, c } = await up()
    expect(link.send('{"type":"command","action":"horn"}')).toBe(true)
    expect(c.published[1]).toEqual({ topic: `${T}/command`, message: '{"type":"command","action":"horn"}', qos: 1 })
    expect(link.send(`"${'x'.repeat(4000)}"`)).toBe(false)
    c.connected = false
    expect(link.send('{"type":"ping","t":1}')).toBe(false)
  })

  it('events as text; video messages split into packets, a framing error handed over once', async () => {
    const { c, seen } = await up()
    c.message(`${T}/events`, '{"type":"welcome","transport":"mqtt"}')
    expect(seen.texts).toEqual(['{"type":"welcome","transport":"mqtt"}'])
    const a = video(10)
    const b = video(20)
    c.message(`${T}/video`, concat(a, b))
    expect(seen.binary.map((d) => (d as Uint8Array).byteLength)).toEqual([HEADER_LEN + 10, HEADER_LEN + 20])
    c.message(`${T}/video`, concat(a, new Uint8Array(5)))
    expect(seen.binary).toHaveLength(4)
    expect(seen.binary[3]).toBeInstanceOf(DecodeError)
    expect((seen.binary[3] as DecodeError).label).toBe('truncated')
  })

  it('a closing event ends the link at once: no reconnect, no goodbye, no DELETE', async () => {
    const { link, c, seen } = await up()
    c.message(`${T}/events`, '{"type":"closing","reason":"token revoked"}')
    expect(seen.texts).toHaveLength(1)
    expect(seen.closed).toEqual([{ reason: 'server closing (token revoked)' }])
    expect(c.ended).toBe(true)
    expect(c.published).toHaveLength(1) // the first ping only
    link.close()
    expect(paths()).not.toContain(`DELETE /api/mqtt/sessions/${SID}`)
  })

  it('a refused CONNACK (not authorized) ends the link, and it is not retried', async () => {
    const { c, seen } = await up()
    c.drop()
    expect(seen.stalled).toEqual([true])
    c.emit('error', Object.assign(new Error('Connection refused: Not authorized'), { code: 5 }))
    expect(seen.closed).toHaveLength(1)
    expect(seen.closed[0].reason).toMatch(/refused the connection \(5: Connection refused: Not authorized\)/)
    expect(c.ended).toBe(true)
  })

  it('a lost broker: stalled, then back within the window; or given up after it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    const { c, seen } = await up()
    c.drop()
    c.emit('reconnect')
    c.accept()
    expect(seen.stalled).toEqual([true, false])
    expect(seen.closed).toEqual([])
    c.drop()
    vi.advanceTimersByTime(RECONNECT_WINDOW_MS - 1)
    expect(seen.closed).toEqual([])
    vi.advanceTimersByTime(1)
    expect(seen.closed[0].reason).toMatch(/lost and not back within 20 s/)
    expect(paths()).toContain(`DELETE /api/mqtt/sessions/${SID}`)
  })

  it('a connection that closes before it opened fails at once (the next attempt asks for new credentials)', async () => {
    const { h, seen } = handlers()
    open(h)
    await vi.waitFor(() => expect(FakeClient.made).toHaveLength(1))
    FakeClient.made[0].drop()
    expect(seen.closed[0].reason).toMatch(/could not connect to the broker/)
  })

  it('close(): goodbye (empty, QoS 1) on the command topic, end, DELETE; no handler afterwards', async () => {
    const { link, c, seen } = await up()
    link.close()
    expect(c.published[1]).toEqual({ topic: `${T}/command`, message: '', qos: 1 })
    expect(c.ended).toBe(false)
    await vi.waitFor(() => expect(paths()).toContain(`DELETE /api/mqtt/sessions/${SID}`))
    c.message(`${T}/events`, '{"type":"pong"}')
    expect(seen.texts).toEqual([])
    expect(seen.closed).toEqual([])
  })

  it('404 mqtt_disabled or url null: unsupported, no session asked', async () => {
    answers['GET /api/mqtt'] = { status: 404, body: { code: 'mqtt_disabled', message: 'no broker' } }
    let { h, seen } = handlers()
    open(h)
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'the server offers no MQTT (mqtt_disabled)', why: { unsupported: true } })
    answers['GET /api/mqtt'] = { status: 200, body: { url: null, connected: true, max_message: 4000 } }
    ;({ h, seen } = handlers())
    open(h)
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0].why).toEqual({ unsupported: true })
    expect(paths()).not.toContain('POST /api/mqtt/sessions')
    expect(FakeClient.made).toEqual([])
  })

  it('503 mqtt_unavailable and malformed answers are plain failures (Auto tries again later)', async () => {
    answers['POST /api/mqtt/sessions'] = { status: 503, body: { code: 'mqtt_unavailable', message: 'broker not reachable' } }
    let { h, seen } = handlers()
    open(h)
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'POST /api/mqtt/sessions: 503 broker not reachable' })
    answers['POST /api/mqtt/sessions'] = { status: 201, body: { ...SESSION, password: 42 } }
    ;({ h, seen } = handlers())
    open(h)
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0].reason).toMatch(/malformed answer: "password"/)
    expect(seen.closed[0].why).toBeUndefined()
    await vi.waitFor(() => expect(paths()).toContain(`DELETE /api/mqtt/sessions/${SID}`)) // released
    expect(FakeClient.made).toEqual([])
  })
})
