// The WebRTC link's JSON-RPC signaling (`?signaling=rpc`): the messages it builds, what it accepts
// from `/rpc`, how replies find their requests, how errors read; then the flow against a fake
// WebSocket playing the server and a fake RTCPeerConnection.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { setToken } from '../src/auth'
import type { LinkHandlers } from '../src/transport/link'
import { parseSignaling } from '../src/transport/mqtt-signaling'
import {
  applyPeerNotification, CALL_TIMEOUT, candidateParams, fromPeer, notificationMessage, parseAnnounced, parseCandidateParams, parsePeer,
  parseRelayAnswer, parseRpcMessage, peerName, requestMessage, RpcConnection, RpcError, rpcUrl, SOCKET_CLOSED, type RpcPeer, type RpcSocket,
} from '../src/transport/rpc-signaling'
import { openWebRtc, type RpcPeers } from '../src/transport/webrtc'

const HOST = 'candidate:1 1 udp 2122260223 192.0.2.7 50123 typ host'
const RELAY_PEER = { peer_id: 'relay', name: 'railcast relay', capabilities: ['datachannel', 'media'], role: 'relay' }

describe('JSON-RPC signaling: pure parts', () => {
  it('?signaling=rpc is a choice', () => {
    expect(parseSignaling('rpc')).toBe('rpc')
    expect(parseSignaling(' RPC ')).toBe('rpc')
    expect(parseSignaling('jsonrpc')).toBeNull()
  })

  it('/rpc on the same host, ws or wss, the token as access_token', () => {
    expect(rpcUrl('a b+c', { protocol: 'http:', host: 'localhost:8080' })).toBe('ws://localhost:8080/rpc?access_token=a%20b%2Bc')
    expect(rpcUrl('t', { protocol: 'https:', host: 'rail.example' })).toBe('wss://rail.example/rpc?access_token=t')
    expect(rpcUrl(null, { protocol: 'http:', host: 'h' })).toBe('ws://h/rpc')
  })

  it('the announced name: the principal\'s, else "console", at most 64 characters', () => {
    expect(peerName('ops-anna')).toBe('ops-anna')
    expect(peerName('  ')).toBe('console')
    expect(peerName(null)).toBe('console')
    expect(Array.from(peerName('é'.repeat(80)))).toHaveLength(64)
  })

  it('requests carry jsonrpc 2.0 and an id; notifications none', () => {
    expect(JSON.parse(requestMessage(7, 'announce', { name: 'x' }))).toEqual({ jsonrpc: '2.0', id: 7, method: 'announce', params: { name: 'x' } })
    expect(JSON.parse(requestMessage(8, 'list_peers'))).toEqual({ jsonrpc: '2.0', id: 8, method: 'list_peers' })
    const n = JSON.parse(notificationMessage('disconnect', { to_peer_id: 'relay' }))
    expect(n).toEqual({ jsonrpc: '2.0', method: 'disconnect', params: { to_peer_id: 'relay' } })
    expect(n).not.toHaveProperty('id')
  })

  it('sorts what the server sends: results, errors, notifications, batches, and the rest as malformed', () => {
    expect(parseRpcMessage('{"jsonrpc":"2.0","id":1,"result":{"a":1}}')).toEqual([{ kind: 'result', id: 1, result: { a: 1 } }])
    expect(parseRpcMessage('{"jsonrpc":"2.0","id":"x","result":null}')).toEqual([{ kind: 'result', id: 'x', result: null }])
    expect(parseRpcMessage('{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"no","data":{"code":"forbidden"}}}')).toEqual([
      { kind: 'error', id: 2, error: { code: -32000, message: 'no', data: { code: 'forbidden' } } },
    ])
    expect(parseRpcMessage('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}')).toEqual([
      { kind: 'error', id: null, error: { code: -32700, message: 'parse error' } },
    ])
    expect(parseRpcMessage('{"jsonrpc":"2.0","method":"peer_left","params":{"peer_id":"p-2"}}')).toEqual([
      { kind: 'notification', method: 'peer_left', params: { peer_id: 'p-2' } },
    ])
    expect(parseRpcMessage('{"jsonrpc":"2.0","method":"peer_left"}')).toEqual([{ kind: 'notification', method: 'peer_left', params: {} }])
    const batch = parseRpcMessage('[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","method":"m","params":{}}]')
    expect(batch.map((m) => m.kind)).toEqual(['result', 'notification'])
    for (const bad of ['nope', '[]', '7', '{"id":1,"result":1}', '{"jsonrpc":"1.0","id":1,"result":1}', '{"jsonrpc":"2.0","id":1}',
      '{"jsonrpc":"2.0","id":{},"result":1}', '{"jsonrpc":"2.0","id":1,"error":{"message":"x"}}', '{"jsonrpc":"2.0","id":3,"method":"ping"}']) {
      expect(parseRpcMessage(bad), bad).toMatchObject([{ kind: 'malformed' }])
    }
  })

  it('errors read with the method, the code, data.code and the message; -32601 means unsupported', () => {
    const e = RpcError.from('offer', { code: -32000, message: 'no such remote control', data: { code: 'remote_control_not_found' } })
    expect(e.dataCode).toBe('remote_control_not_found')
    expect(e.describe()).toBe('offer: -32000 remote_control_not_found (refused): no such remote control')
    expect(RpcError.from('announce', { code: -32601, message: 'Method not found' }).describe()).toBe('announce: -32601 method not found: Method not found')
    expect(RpcError.from('announce', { code: -32601, message: '' }).unsupported).toBe(true)
    expect(RpcError.from('x', { code: -32001, message: 'slow down', data: { code: 'rate_limited' } }).describe()).toBe('x: -32001 rate_limited (rate limited): slow down')
    expect(RpcError.from('x', { code: -32002, message: '' }).describe()).toBe('x: -32002 message too large')
    expect(RpcError.from('x', { code: -32050, message: 'odd' }).describe()).toBe('x: -32050 server error: odd')
    expect(RpcError.from('x', { code: 12, message: 'odd', data: 'text' }).describe()).toBe('x: 12 error: odd')
    expect(RpcError.from('x', { code: -32602, message: 'bad' }).unsupported).toBe(false)
  })

  it('peers: parsed leniently, joined, replaced, left; other notifications leave the same list', () => {
    expect(parsePeer(RELAY_PEER)).toEqual(RELAY_PEER)
    expect(parsePeer({ peer_id: 'p-1' })).toEqual({ peer_id: 'p-1', name: '', capabilities: [], role: '' })
    expect(parsePeer({ name: 'x' })).toBeNull()
    expect(parseAnnounced({ peer_id: 'p-1', peers: [RELAY_PEER, { bad: 1 }] })).toEqual({ peerId: 'p-1', peers: [RELAY_PEER] })
    expect(() => parseAnnounced({ peers: [] })).toThrow(/peer_id/)
    const a: RpcPeer = { peer_id: 'p-2', name: 'anna', capabilities: [], role: 'operator' }
    let list: readonly RpcPeer[] = [RELAY_PEER]
    list = applyPeerNotification(list, 'peer_joined', { peer: a })
    expect(list.map((p) => p.peer_id)).toEqual(['relay', 'p-2'])
    list = applyPeerNotification(list, 'peer_joined', { peer: { ...a, name: 'anna 2' } })
    expect(list.map((p) => p.name)).toEqual(['railcast relay', 'anna 2'])
    expect(applyPeerNotification(list, 'ice_candidate', { candidate: '' })).toBe(list)
    expect(applyPeerNotification(list, 'peer_left', { peer_id: 'p-9' })).toBe(list)
    expect(applyPeerNotification(list, 'peer_joined', { peer: {} })).toBe(list)
    expect(applyPeerNotification(list, 'peer_left', { peer_id: 'p-2' })).toEqual([RELAY_PEER])
  })

  it('the relay\'s answer needs a session and an SDP', () => {
    expect(parseRelayAnswer({ session_id: 's-1', sdp: 'v=0' })).toEqual({ sessionId: 's-1', sdp: 'v=0' })
    expect(() => parseRelayAnswer({ delivered: true })).toThrow(/session_id/)
    expect(() => parseRelayAnswer({ session_id: 's-1', sdp: ' ' })).toThrow(/sdp/)
    expect(() => parseRelayAnswer(null)).toThrow(/not an object/)
  })

  it('candidates: to the relay with the session, the end names the first section; forwarded ones in any spelling', () => {
    expect(candidateParams({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0, usernameFragment: 'u' }, 'relay', 's-1')).toEqual({
      to_peer_id: 'relay', session_id: 's-1', candidate: HOST, sdp_mid: '0', sdp_mline_index: 0,
    })
    expect(candidateParams(null, 'relay', 's-1', '0')).toEqual({ to_peer_id: 'relay', session_id: 's-1', candidate: '', sdp_mid: '0', sdp_mline_index: 0 })
    expect(candidateParams({ candidate: HOST, sdpMid: '1' }, 'p-2', null)).toEqual({ to_peer_id: 'p-2', candidate: HOST, sdp_mid: '1', sdp_mline_index: null })
    expect(parseCandidateParams({ candidate: HOST, sdp_mid: '0', sdp_mline_index: 0, from_peer_id: 'relay' })).toEqual({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0 })
    expect(parseCandidateParams({ candidate: HOST, sdp_m_line_index: 1 })).toEqual({ candidate: HOST, sdpMLineIndex: 1 })
    expect(parseCandidateParams({ candidate: HOST, sdpMid: 'a' })).toEqual({ candidate: HOST, sdpMid: 'a' })
    expect(parseCandidateParams({ candidate: '', sdp_mid: null })).toEqual({ candidate: '', sdpMLineIndex: 0 })
    expect(parseCandidateParams({ candidate: 3 })).toBeNull()
    expect(fromPeer({ from_peer_id: 'relay' })).toBe('relay')
    expect(fromPeer({ from: 'p-3' })).toBe('p-3')
    expect(fromPeer({})).toBeNull()
  })
})

// ---- a fake /rpc --------------------------------------------------------------------------------

class FakeSocket implements RpcSocket {
  static made: FakeSocket[] = []
  readyState = 0
  sent: { id?: number; method: string; params?: Record<string, unknown> }[] = []
  closedWith: { code?: number; reason?: string } | null = null
  onopen: ((ev: Event) => void) | null = null
  onmessage: ((ev: MessageEvent) => void) | null = null
  onclose: ((ev: CloseEvent) => void) | null = null
  onerror: ((ev: Event) => void) | null = null
  constructor(readonly url: string) {
    FakeSocket.made.push(this)
  }
  send(text: string) {
    this.sent.push(JSON.parse(text))
  }
  close(code?: number, reason?: string) {
    this.closedWith = { code, reason }
    this.readyState = 3
  }
  accept() {
    this.readyState = 1
    this.onopen?.({} as Event)
  }
  push(m: unknown) {
    this.onmessage?.({ data: JSON.stringify(m) } as MessageEvent)
  }
  reply(id: number | undefined, result: unknown) {
    this.push({ jsonrpc: '2.0', id, result })
  }
  fail(id: number | undefined, code: number, message: string, dataCode?: string) {
    this.push({ jsonrpc: '2.0', id, error: { code, message, ...(dataCode ? { data: { code: dataCode } } : {}) } })
  }
  notify(method: string, params: Record<string, unknown>) {
    this.push({ jsonrpc: '2.0', method, params })
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3
    this.onclose?.({ code, reason } as CloseEvent)
  }
  /** The last request of `method`. */
  last(method: string) {
    return this.sent.filter((m) => m.method === method).at(-1)
  }
}

const factory = (url: string) => new FakeSocket(url)

describe('RpcConnection', () => {
  beforeEach(() => {
    FakeSocket.made = []
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  async function connected() {
    const p = RpcConnection.open('ws://h/rpc', factory)
    FakeSocket.made[0].accept()
    return { c: await p, s: FakeSocket.made[0] }
  }

  it('numbers requests from 1 and matches replies by id, in any order; stray replies are counted', async () => {
    const { c, s } = await connected()
    const a = c.call('announce', { name: 'x' })
    const b = c.call('list_peers')
    expect(s.sent.map((m) => [m.id, m.method])).toEqual([[1, 'announce'], [2, 'list_peers']])
    s.reply(2, [RELAY_PEER])
    s.reply(99, 'nobody asked')
    s.reply(1, { peer_id: 'p-1', peers: [] })
    await expect(a).resolves.toEqual({ peer_id: 'p-1', peers: [] })
    await expect(b).resolves.toEqual([RELAY_PEER])
    expect(c.stray).toBe(1)
    expect(c.waiting).toBe(0)
  })

  it('an error reply rejects its own request with an RpcError; an id-less error is a problem, not a reply', async () => {
    const { c, s } = await connected()
    const problems: string[] = []
    c.onProblem = (p) => void problems.push(p)
    const a = c.call('offer', { to_peer_id: 'p-9', sdp: 'v=0' })
    s.fail(undefined, -32700, 'parse error')
    s.push({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } })
    s.fail(1, -32000, 'no such peer', 'unknown_peer')
    const e = await a.catch((x: unknown) => x)
    expect(e).toBeInstanceOf(RpcError)
    expect((e as RpcError).describe()).toBe('offer: -32000 unknown_peer (refused): no such peer')
    expect(problems).toEqual(['a reply without a valid "id"', '-32700 Parse error'])
  })

  it('notifications go to onNotification, batches too; sending one has no id', async () => {
    const { c, s } = await connected()
    const got: [string, unknown][] = []
    c.onNotification = (m, p) => void got.push([m, p])
    s.push([{ jsonrpc: '2.0', method: 'peer_joined', params: { peer: RELAY_PEER } }, { jsonrpc: '2.0', method: 'peer_left', params: { peer_id: 'p-2' } }])
    expect(got.map((g) => g[0])).toEqual(['peer_joined', 'peer_left'])
    expect(c.notify('disconnect', { to_peer_id: 'relay' })).toBe(true)
    expect(s.sent.at(-1)).toEqual({ jsonrpc: '2.0', method: 'disconnect', params: { to_peer_id: 'relay' } })
  })

  it('a call times out; the socket closing fails the pending ones and says so once', async () => {
    vi.useFakeTimers()
    const { c, s } = await connected()
    const slow = c.call('list_peers', undefined, 500).catch((e: RpcError) => e.code)
    await vi.advanceTimersByTimeAsync(600)
    expect(await slow).toBe(CALL_TIMEOUT)
    const pending = c.call('announce', { name: 'x' }).catch((e: RpcError) => e.code)
    const closes: number[] = []
    c.onClosed = (code) => void closes.push(code)
    s.drop(1011, 'shutdown')
    s.drop(1011, 'again')
    expect(await pending).toBe(SOCKET_CLOSED)
    expect(closes).toEqual([1011])
    await expect(c.call('list_peers')).rejects.toMatchObject({ code: SOCKET_CLOSED })
    expect(c.notify('x')).toBe(false)
  })

  it('a socket that never opens rejects with its close code; close() is quiet', async () => {
    const p = RpcConnection.open('ws://h/rpc', factory)
    FakeSocket.made[0].drop(1006)
    await expect(p).rejects.toThrow('could not open /rpc (close 1006)')
    const { c, s } = await (async () => {
      const q = RpcConnection.open('ws://h/rpc', factory)
      FakeSocket.made[1].accept()
      return { c: await q, s: FakeSocket.made[1] }
    })()
    let closed = 0
    c.onClosed = () => void closed++
    c.close('bye')
    expect(s.closedWith).toEqual({ code: 1000, reason: 'bye' })
    expect(closed).toBe(0)
  })
})

// ---- the link's flow ----------------------------------------------------------------------------

class FakeChannel {
  readyState: RTCDataChannelState = 'connecting'
  binaryType = 'blob'
  onopen: (() => void) | null = null
  onclose: (() => void) | null = null
  onmessage: ((m: MessageEvent) => void) | null = null
  constructor(readonly label: string, readonly init: RTCDataChannelInit | undefined) {}
  send() {}
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

interface Seen {
  opened: number
  closed: { reason: string; why?: { unsupported?: boolean } }[]
  details: Record<string, string>[]
  peers: (RpcPeers | null)[]
}

let requests: string[] = []

beforeEach(() => {
  FakeSocket.made = []
  FakePeer.made = []
  requests = []
  vi.stubGlobal('RTCPeerConnection', FakePeer)
  vi.stubGlobal('location', { protocol: 'http:', host: 'localhost:8080' })
  vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
    requests.push(`${init.method ?? 'GET'} ${url}`)
    return new Response(null, { status: 204 })
  })
  setToken('tok')
})

afterEach(() => {
  vi.unstubAllGlobals()
  setToken(null)
})

function open(name: string | null = 'ops-anna') {
  const seen: Seen = { opened: 0, closed: [], details: [], peers: [] }
  const h: LinkHandlers = {
    onOpen: () => void seen.opened++,
    onClose: (reason, why) => void seen.closed.push(why ? { reason, why } : { reason }),
    onText: () => {},
    onBinary: () => {},
    onDetail: (d) => void seen.details.push(d),
  }
  const link = openWebRtc('rc-1', h, { signaling: 'rpc', name, rpcSocket: factory, onPeers: (p) => void seen.peers.push(p) })
  return { link, seen }
}

/** Up to the offer: socket, announce answered, the offer sent to the relay. */
async function offered() {
  const { link, seen } = open()
  await vi.waitFor(() => expect(FakeSocket.made).toHaveLength(1))
  const s = FakeSocket.made[0]
  s.accept()
  await vi.waitFor(() => expect(s.last('announce')).toBeDefined())
  s.reply(s.last('announce')!.id, { peer_id: 'p-1', peers: [RELAY_PEER, { peer_id: 'p-1', name: 'ops-anna', capabilities: ['datachannel'], role: 'operator' }] })
  await vi.waitFor(() => expect(s.last('offer')).toBeDefined())
  return { link, seen, s, pc: FakePeer.made[0] }
}

describe('WebRTC link, JSON-RPC signaling', () => {
  it('opens /rpc with the token, announces the principal, offers both channels to the relay with the remote control', async () => {
    const { s, pc, seen } = await offered()
    expect(s.url).toBe('ws://localhost:8080/rpc?access_token=tok')
    expect(s.sent[0]).toMatchObject({ id: 1, method: 'announce', params: { name: 'ops-anna', capabilities: ['datachannel'] } })
    expect(s.last('offer')).toEqual({
      jsonrpc: '2.0', id: 2, method: 'offer', params: { to_peer_id: 'relay', remote_control_id: 'rc-1', sdp: pc.local?.sdp },
    })
    expect(pc.channels.map((ch) => [ch.label, ch.init])).toEqual([
      ['video', { ordered: false, maxRetransmits: 0 }],
      ['command', { ordered: true }],
    ])
    expect(seen.peers.at(-1)).toEqual({ self: 'p-1', peers: [RELAY_PEER, expect.objectContaining({ peer_id: 'p-1' })] })
    expect(seen.details.at(-1)).toMatchObject({ signaling: 'rpc', rpcSignaling: 'offer sent', peerId: 'p-1', peers: '2' })
    expect(requests).toEqual([])
  })

  it('candidates wait for the session, then trickle with it; the relay\'s wait for the answer; open keeps the socket', async () => {
    const { link, s, pc, seen } = await offered()
    pc.gather({ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0 })
    expect(s.last('ice_candidate')).toBeUndefined()
    // A relay candidate before the answer applies: kept.
    s.notify('ice_candidate', { from_peer_id: 'relay', from: 'relay', to_peer_id: 'p-1', session_id: 'ws-1', candidate: HOST, sdp_mid: '0', sdp_mline_index: 0 })
    s.reply(s.last('offer')!.id, { session_id: 'ws-1', sdp: 'v=0 answer' })
    await vi.waitFor(() => expect(pc.remote).toEqual({ type: 'answer', sdp: 'v=0 answer' }))
    await vi.waitFor(() => expect(pc.added).toEqual([{ candidate: HOST, sdpMid: '0', sdpMLineIndex: 0 }]))
    expect(s.last('ice_candidate')?.params).toEqual({ to_peer_id: 'relay', session_id: 'ws-1', candidate: HOST, sdp_mid: '0', sdp_mline_index: 0 })
    pc.gather(null)
    expect(s.last('ice_candidate')?.params).toEqual({ to_peer_id: 'relay', session_id: 'ws-1', candidate: '', sdp_mid: '0', sdp_mline_index: 0 })
    // Another session's candidate, or another peer's, is not ours.
    s.notify('ice_candidate', { from_peer_id: 'relay', session_id: 'ws-0', candidate: HOST })
    s.notify('ice_candidate', { from_peer_id: 'p-7', candidate: HOST })
    s.notify('ice_candidate', { from_peer_id: 'relay', session_id: 'ws-1', candidate: '', sdp_mid: '0', sdp_mline_index: 0 })
    await vi.waitFor(() => expect(pc.added).toHaveLength(2))
    expect(pc.added[1]).toEqual({ candidate: '', sdpMid: '0', sdpMLineIndex: 0 })

    // Peers come and go.
    s.notify('peer_joined', { peer: { peer_id: 'p-2', name: 'bob', capabilities: [], role: 'viewer' } })
    s.notify('peer_left', { peer_id: 'p-2' })
    expect(seen.peers.at(-2)?.peers.map((p) => p.peer_id)).toEqual(['relay', 'p-1', 'p-2'])
    expect(seen.peers.at(-1)?.peers.map((p) => p.peer_id)).toEqual(['relay', 'p-1'])

    for (const ch of pc.channels) ch.open()
    expect(seen.opened).toBe(1)
    expect(s.closedWith).toBeNull()
    expect(seen.details.at(-1)).toMatchObject({ rpcSignaling: 'open (socket kept for the session)', session: 'ws-1', candidatesSent: '1', relayCandidates: '1', relayCandidatesEnd: 'yes' })

    // The link's end: disconnect (a notification), then the socket closes; no REST DELETE.
    link.close()
    expect(s.sent.at(-1)).toEqual({ jsonrpc: '2.0', method: 'disconnect', params: { to_peer_id: 'relay', session_id: 'ws-1' } })
    expect(s.closedWith).toEqual({ code: 1000, reason: 'link closed' })
    expect(pc.closed).toBe(true)
    expect(seen.peers.at(-1)).toBeNull()
    expect(seen.closed).toEqual([])
    expect(requests).toEqual([])
  })

  it('the socket closing while the link lives fails it', async () => {
    const { s, pc, seen } = await offered()
    s.reply(s.last('offer')!.id, { session_id: 'ws-1', sdp: 'v=0' })
    await vi.waitFor(() => expect(pc.remote).not.toBeNull())
    for (const ch of pc.channels) ch.open()
    s.drop(1001, 'going away')
    expect(seen.closed).toEqual([{ reason: 'JSON-RPC signaling: the /rpc socket closed (1001 going away)' }])
    expect(pc.closed).toBe(true)
  })

  it('a refused offer fails the link with the error\'s code', async () => {
    const { s, pc, seen } = await offered()
    s.fail(s.last('offer')!.id, -32000, 'no remote control rc-1', 'remote_control_not_found')
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'JSON-RPC signaling: offer: -32000 remote_control_not_found (refused): no remote control rc-1' })
    expect(pc.closed).toBe(true)
    expect(s.closedWith).not.toBeNull()
  })

  it('a server without the methods (-32601) is unsupported; one refusing the socket fails plainly', async () => {
    const a = open(null)
    await vi.waitFor(() => expect(FakeSocket.made).toHaveLength(1))
    FakeSocket.made[0].accept()
    await vi.waitFor(() => expect(FakeSocket.made[0].last('announce')).toBeDefined())
    expect(FakeSocket.made[0].last('announce')?.params?.name).toBe('console')
    FakeSocket.made[0].fail(1, -32601, 'Method not found')
    await vi.waitFor(() => expect(a.seen.closed).toHaveLength(1))
    expect(a.seen.closed[0]).toEqual({ reason: 'JSON-RPC signaling: announce: -32601 method not found: Method not found', why: { unsupported: true } })

    const b = open()
    await vi.waitFor(() => expect(FakeSocket.made).toHaveLength(2))
    FakeSocket.made[1].drop(1006)
    await vi.waitFor(() => expect(b.seen.closed).toHaveLength(1))
    expect(b.seen.closed[0]).toEqual({ reason: 'JSON-RPC signaling: could not open /rpc (close 1006)' })
    expect(FakePeer.made).toEqual([])
  })

  it('closing before the socket opens leaves nothing behind', async () => {
    const { link } = open()
    await vi.waitFor(() => expect(FakeSocket.made).toHaveLength(1))
    link.close()
    expect(FakeSocket.made[0].closedWith).not.toBeNull()
    expect(FakePeer.made).toEqual([])
  })
})
