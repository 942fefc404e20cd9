// The WebRTC link's MQTT signaling (`?signaling=mqtt`): the messages and options it builds, what it
// accepts from the server, and the flow against a fake MQTT.js client and a fake RTCPeerConnection
// (the server's REST answers are canned fetch responses, as in mqtt.test.ts).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { setToken } from '../src/auth'
import type { LinkHandlers } from '../src/transport/link'
import { MalformedSession, parseMqttSession } from '../src/transport/mqtt'
import {
  candidateMessage, firstMid, offerMessage, parseServerCandidate, parseSignaling, parseSignalingReply, parseSignalingTopics, signalingOptions,
  signalingSubscriptions,
} from '../src/transport/mqtt-signaling'
import { CHANNELS, openWebRtc } from '../src/transport/webrtc'
import { fakeConnect, FakeClient } from './fake-mqtt'

const SID = 'mq-0123456789abcdef'
const T = `railcast/v1/rc/rc-1/${SID}`
const SIG = { offer: `mobile/${SID}/webrtc/offer`, candidate: `mobile/${SID}/webrtc/candidate`, answer: `device/${SID}/webrtc/answer`, server_candidate: `device/${SID}/webrtc/candidate` }
const SESSION = {
  session_id: SID,
  url: 'ws://127.0.0.1:9001',
  client_id: `railcast-${SID}`,
  username: `railcast-${SID}`,
  password: 'sekret',
  topics: { video: `${T}/video`, events: `${T}/events`, command: `${T}/command` },
  signaling: SIG,
  max_message: 4000,
  claim_within_s: 30,
  idle_timeout_s: 30,
}
const HOST = 'candidate:1 1 udp 2122260223 192.0.2.7 50123 typ host'

describe('MQTT signaling: pure parts', () => {
  it('?signaling=: rest or mqtt, anything else is no choice', () => {
    expect(parseSignaling('mqtt')).toBe('mqtt')
    expect(parseSignaling(' MQTT ')).toBe('mqtt')
    expect(parseSignaling('rest')).toBe('rest')
    for (const v of [null, undefined, '', 'whep', 'mqtts']) expect(parseSignaling(v)).toBeNull()
  })

  it('the session names the four topics; a missing, wildcard or repeated one is refused', () => {
    expect(parseSignalingTopics(parseMqttSession(SESSION))).toEqual(SIG)
    const bad = (signaling: unknown) => () => parseSignalingTopics({ signaling } as never)
    expect(bad(undefined)).toThrow(MalformedSession)
    expect(bad({ ...SIG, answer: '' })).toThrow(/signaling.answer: missing/)
    expect(bad({ ...SIG, server_candidate: 'device/+/webrtc/candidate' })).toThrow(/wildcard/)
    expect(bad({ ...SIG, candidate: SIG.offer })).toThrow(/must differ/)
  })

  it('MQTT.js options: the credentials, 3.1.1, clean; no will (the command topic is the MQTT transport\'s) and no reconnection', () => {
    const o = signalingOptions(parseMqttSession(SESSION))
    expect(o).toMatchObject({ clientId: SESSION.client_id, username: SESSION.username, password: 'sekret', clean: true, protocolVersion: 4, reconnectPeriod: 0 })
    expect(o.will).toBeUndefined()
    expect(signalingSubscriptions(SIG)).toEqual({ [SIG.answer]: { qos: 1 }, [SIG.server_candidate]: { qos: 0 } })
  })

  it('offer and candidate messages as the server reads them; the end names the first section', () => {
    expect(JSON.parse(offerMessage('v=0\r\n'))).toEqual({ type: 'offer', sdp: 'v=0\r\n' })
    expect(JSON.parse(candidateMessage({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'abcd' }))).toEqual({
      candidate: HOST, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'abcd',
    })
    expect(JSON.parse(candidateMessage({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: null }))).not.toHaveProperty('usernameFragment')
    expect(JSON.parse(candidateMessage(null, '0'))).toEqual({ candidate: '', sdpMid: '0', sdpMLineIndex: 0 })
    expect(firstMid('v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n')).toBe('0')
    expect(firstMid('v=0\r\n')).toBeNull()
  })

  it('replies: an answer, an error, or malformed with the reason', () => {
    expect(parseSignalingReply('{"type":"answer","sdp":"v=0"}')).toEqual({ type: 'answer', sdp: 'v=0' })
    expect(parseSignalingReply('{"type":"error","code":"refused","message":"max_webrtc_sessions"}')).toEqual({ type: 'error', code: 'refused', message: 'max_webrtc_sessions' })
    expect(parseSignalingReply('{"type":"answer"}')).toMatchObject({ type: 'malformed', problem: expect.stringContaining('sdp') })
    expect(parseSignalingReply('nope')).toMatchObject({ type: 'malformed' })
    expect(parseSignalingReply('[1]')).toMatchObject({ type: 'malformed' })
    expect(parseSignalingReply('{"type":"offer","sdp":"v=0"}')).toMatchObject({ type: 'malformed' })
  })

  it('server candidates, the empty end too; anything else is no candidate', () => {
    expect(parseServerCandidate(`{"candidate":"${HOST}","sdpMid":"0","sdpMLineIndex":0}`)).toEqual({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0 })
    expect(parseServerCandidate('{"candidate":"","sdpMid":"0","sdpMLineIndex":0}')).toEqual({ candidate: '', sdpMid: '0', sdpMLineIndex: 0 })
    expect(parseServerCandidate('{"candidate":"","sdpMid":null}')).toEqual({ candidate: '', sdpMLineIndex: 0 })
    expect(parseServerCandidate('{"candidate":7}')).toBeNull()
    expect(parseServerCandidate('x')).toBeNull()
  })

  it('the console creates the channels as the server does: video unordered without retransmissions, command ordered', () => {
    expect(CHANNELS).toEqual([
      { label: 'video', init: { ordered: false, maxRetransmits: 0 } },
      { label: 'command', init: { ordered: true } },
    ])
  })
})

// ---- the flow against fakes ---------------------------------------------------------------------

class FakeChannel {
  readyState: RTCDataChannelState = 'connecting'
  binaryType = 'blob'
  onopen: (() => void) | null = null
  onclose: (() => void) | null = null
  onmessage: ((m: MessageEvent) => void) | null = null
  sent: string[] = []
  constructor(readonly label: string, readonly init: RTCDataChannelInit | undefined) {}
  send(t: string) {
    this.sent.push(t)
  }
  open() {
    this.readyState = 'open'
    this.onopen?.()
  }
}

class FakePeer {
  static made: FakePeer[] = []
  channels: FakeChannel[] = []
  local: RTCSessionDescriptionInit | null = null
  remote: RTCSessionDescriptionInit | null = null
  added: RTCIceCandidateInit[] = []
  closed = false
  connectionState = 'new'
  iceConnectionState = 'new'
  iceGatheringState = 'new'
  signalingState = 'stable'
  onicecandidate: ((e: { candidate: { toJSON(): RTCIceCandidateInit } | null }) => void) | null = null
  onconnectionstatechange: (() => void) | null = null
  constructor(readonly config?: RTCConfiguration) {
    FakePeer.made.push(this)
  }
  createDataChannel(label: string, init?: RTCDataChannelInit) {
    const c = new FakeChannel(label, init)
    this.channels.push(c)
    return c
  }
  async createOffer() {
    return { type: 'offer', sdp: 'v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n' }
  }
  async setLocalDescription(d: RTCSessionDescriptionInit) {
    this.local = d
  }
  get localDescription() {
    return this.local
  }
  async setRemoteDescription(d: RTCSessionDescriptionInit) {
    this.remote = d
  }
  async addIceCandidate(c: RTCIceCandidateInit) {
    this.added.push(c)
  }
  close() {
    this.closed = true
  }
  gather(c: RTCIceCandidateInit | null) {
    this.onicecandidate?.({ candidate: c ? { toJSON: () => c } : null })
  }
}

let requests: string[] = []
let answers: Record<string, { status: number; body?: unknown }> = {}

beforeEach(() => {
  FakeClient.made = []
  FakePeer.made = []
  requests = []
  answers = {
    'GET /api/mqtt': { status: 200, body: { url: 'ws://127.0.0.1:9001', connected: true, max_message: 4000 } },
    'POST /api/mqtt/sessions': { status: 201, body: SESSION },
    [`DELETE /api/mqtt/sessions/${SID}`]: { status: 204 },
  }
  vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
    const method = init.method ?? 'GET'
    requests.push(`${method} ${url}`)
    const a = answers[`${method} ${url}`] ?? { status: 404, body: { code: 'not_found', message: 'no route' } }
    return new Response(a.body === undefined ? null : JSON.stringify(a.body), { status: a.status })
  })
  vi.stubGlobal('RTCPeerConnection', FakePeer)
  setToken('tok')
})

afterEach(() => {
  vi.unstubAllGlobals()
  setToken(null)
})

interface Seen {
  opened: number
  closed: { reason: string; why?: { unsupported?: boolean } }[]
  details: Record<string, string>[]
}

function handlers(): { h: LinkHandlers; seen: Seen } {
  const seen: Seen = { opened: 0, closed: [], details: [] }
  return {
    seen,
    h: {
      onOpen: () => void seen.opened++,
      onClose: (reason, why) => void seen.closed.push(why ? { reason, why } : { reason }),
      onText: () => {},
      onBinary: () => {},
      onDetail: (d) => void seen.details.push(d),
    },
  }
}

const open = (h: LinkHandlers) => openWebRtc('rc-1', h, { signaling: 'mqtt', connect: fakeConnect })

/** Up to the offer: the session, the broker connection, the subscriptions, the offer published. */
async function offered() {
  const { h, seen } = handlers()
  const link = open(h)
  await vi.waitFor(() => expect(FakeClient.made).toHaveLength(1))
  const c = FakeClient.made[0]
  c.accept()
  await vi.waitFor(() => expect(c.published.some((p) => p.topic === SIG.offer)).toBe(true))
  return { link, c, pc: FakePeer.made[0], seen }
}

describe('WebRTC link, MQTT signaling', () => {
  it('session, connect with its credentials, subscribe, then the offer (QoS 1) with both channels', async () => {
    const { c, pc } = await offered()
    expect(requests).toEqual(['GET /api/mqtt', 'POST /api/mqtt/sessions'])
    expect(c.url).toBe('ws://127.0.0.1:9001')
    expect(c.options).toMatchObject({ clientId: SESSION.client_id, password: 'sekret' })
    expect(c.subscribed).toEqual([{ [SIG.answer]: { qos: 1 }, [SIG.server_candidate]: { qos: 0 } }])
    const offer = c.published.find((p) => p.topic === SIG.offer)!
    expect(offer.qos).toBe(1)
    expect(JSON.parse(offer.message)).toEqual({ type: 'offer', sdp: pc.local?.sdp })
    expect(pc.channels.map((ch) => [ch.label, ch.init])).toEqual([
      ['video', { ordered: false, maxRetransmits: 0 }],
      ['command', { ordered: true }],
    ])
    // Nothing on the MQTT transport's topics: the ID stays a signaling session.
    expect(c.published.every((p) => !p.topic.startsWith('railcast/'))).toBe(true)
  })

  it('candidates trickle (QoS 0, the end last); server candidates wait for the answer; open ends the broker connection', async () => {
    const { link, c, pc, seen } = await offered()
    pc.gather({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0 })
    pc.gather(null)
    const cands = c.published.filter((p) => p.topic === SIG.candidate)
    expect(cands.map((p) => p.qos)).toEqual([0, 0])
    expect(cands.map((p) => JSON.parse(p.message).candidate)).toEqual([HOST, ''])
    expect(JSON.parse(cands[1].message).sdpMid).toBe('0')

    // A server candidate before the answer (QoS 0 may overtake QoS 1): kept until the answer applies.
    c.message(SIG.server_candidate, `{"candidate":"${HOST}","sdpMid":"0","sdpMLineIndex":0}`)
    expect(pc.added).toEqual([])
    c.message(SIG.answer, '{"type":"answer","sdp":"v=0 answer"}')
    await vi.waitFor(() => expect(pc.added).toHaveLength(1))
    expect(pc.remote).toEqual({ type: 'answer', sdp: 'v=0 answer' })
    c.message(SIG.server_candidate, '{"candidate":"","sdpMid":"0","sdpMLineIndex":0}')
    await vi.waitFor(() => expect(pc.added).toHaveLength(2))

    for (const ch of pc.channels) ch.open()
    expect(seen.opened).toBe(1)
    expect(c.ended).toBe(false) // a clean DISCONNECT
    expect(seen.details.at(-1)).toMatchObject({ signaling: 'mqtt', mqttSignaling: 'done (broker connection closed)', mqttSession: SID, candidatesSent: '1', serverCandidates: '1' })
    // The broker connection going away now is no failure.
    c.drop()
    expect(seen.closed).toEqual([])
    expect(link.send('{"type":"ping"}')).toBe(true)
    expect(pc.channels[1].sent).toEqual(['{"type":"ping"}'])
    link.close()
    expect(pc.closed).toBe(true)
    await vi.waitFor(() => expect(requests).toContain(`DELETE /api/mqtt/sessions/${SID}`))
  })

  it('an error reply before the answer fails the link with its code; the session is deleted', async () => {
    const { c, pc, seen } = await offered()
    c.message(SIG.answer, '{"type":"error","code":"refused","message":"too many WebRTC sessions"}')
    expect(seen.closed).toEqual([{ reason: 'MQTT signaling: the server refused the offer: refused: too many WebRTC sessions' }])
    expect(pc.closed).toBe(true)
    expect(c.ended).toBe(true)
    await vi.waitFor(() => expect(requests).toContain(`DELETE /api/mqtt/sessions/${SID}`))
  })

  it('an error reply after the answer (a candidate refused) is shown, not fatal', async () => {
    const { c, seen } = await offered()
    c.message(SIG.answer, '{"type":"answer","sdp":"v=0"}')
    c.message(SIG.answer, '{"type":"error","code":"bad_candidate","message":"nope"}')
    expect(seen.closed).toEqual([])
    expect(seen.details.at(-1)).toMatchObject({ signalingError: 'bad_candidate: nope' })
  })

  it('the broker lost before the channels open fails the attempt', async () => {
    const { c, seen } = await offered()
    c.drop()
    expect(seen.closed).toEqual([{ reason: 'MQTT signaling: the broker connection closed' }])
  })

  it('no MQTT on the server (404, url null): a clear reason, unsupported, no session, no peer', async () => {
    answers['GET /api/mqtt'] = { status: 404, body: { code: 'mqtt_disabled', message: 'MQTT is off' } }
    const a = handlers()
    open(a.h)
    await vi.waitFor(() => expect(a.seen.closed).toHaveLength(1))
    expect(a.seen.closed[0]).toEqual({ reason: 'MQTT signaling: the server offers no MQTT (mqtt_disabled)', why: { unsupported: true } })

    answers['GET /api/mqtt'] = { status: 200, body: { url: null, connected: true, max_message: 4000 } }
    const b = handlers()
    open(b.h)
    await vi.waitFor(() => expect(b.seen.closed).toHaveLength(1))
    expect(b.seen.closed[0]).toEqual({ reason: 'MQTT signaling: the server knows no broker URL for browsers (url: null)', why: { unsupported: true } })
    expect(requests.filter((r) => r.startsWith('POST'))).toEqual([])
    expect(FakeClient.made).toEqual([])
    expect(FakePeer.made).toEqual([])
  })

  it('REST signaling is untouched: no MQTT request', async () => {
    const { h, seen } = handlers()
    const link = openWebRtc('rc-1', h)
    await vi.waitFor(() => expect(requests).toEqual(['POST /api/webrtc/offer']))
    link.close()
    expect(seen.details[0]).toMatchObject({ signaling: 'rest', restSignaling: 'offer requested' })
    expect(FakeClient.made).toEqual([])
  })
})
