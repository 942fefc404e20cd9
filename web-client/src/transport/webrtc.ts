/**
 * The WebRTC transport: REST signaling in which the server is the offerer (README "WebRTC data
 * channels"), then two data channels the server creates: `video` (unordered, no retransmits; each
 * binary message holds one or more whole video packets, docs/wire-format.md §2.6, handed over one
 * by one) and `command` (ordered, reliable; the same JSON as the WebSocket text messages).
 *
 * Flow: POST /api/webrtc/offer → setRemoteDescription → createAnswer → POST /api/webrtc/answer;
 * our candidates are trickled with POST /api/webrtc/ice-candidate (an empty one at the end); the
 * server's late candidates are long-polled from GET /api/webrtc/sessions/{id}/candidates.
 * Every signaling request carries the bearer token (`api`; the keepalive DELETE sets it itself).
 *
 * With `signaling: 'mqtt'` (the console's `?signaling=mqtt`) the console offers instead, over MQTT
 * topics ({@link MqttSignaler}, docs/signaling.md "MQTT topics"): it creates both channels itself,
 * `video` unordered without retransmissions and `command` ordered, exactly as the server does when
 * it offers; publishes the offer and trickles its candidates; applies the answer and the server's
 * candidates; and ends its broker connection once both channels are open. Everything after that
 * (video, commands, states) is the same link.
 *
 * With `signaling: 'rpc'` (`?signaling=rpc`) the console offers the same way over JSON-RPC 2.0 on
 * a `/rpc` WebSocket ({@link RpcConnection}, docs/signaling.md "JSON-RPC 2.0 over WebSocket"): it
 * announces itself (the principal's name), offers to the peer `relay` with the remote control id,
 * applies the answer in the result, trickles its candidates with `ice_candidate` and applies the
 * relay's `ice_candidate` notifications. The socket stays open while the link lives (its closing
 * ends the relay session, so it closing first fails the link); the link's end sends `disconnect`
 * and closes it. The peers it learns of (`announce`, `peer_joined`, `peer_left`) go to `onPeers`.
 */
import type { IceServer, OfferResponse, ServerCandidates } from '../api'
import { api, handVideoMessage, type Link, type LinkHandlers } from './link'
import type { MqttConnect } from './mqtt'
import { firstMid, MqttSignaler, SignalingFailed, type Signaling } from './mqtt-signaling'
import {
  applyPeerNotification, candidateParams, fromPeer, parseAnnounced, parseCandidateParams, parseRelayAnswer, peerName, RELAY,
  RpcConnection, RpcError, rpcUrl, type Params, type RpcPeer, type RpcSocketFactory,
} from './rpc-signaling'
import { endSession, isClosingEvent } from './session-end'

/**
 * The offer's ICE servers as the browser takes them. The contract lets `username` and
 * `credential` be null, and RTCPeerConnection would take a null one as the string "null".
 */
export function rtcIceServers(servers: readonly IceServer[]): RTCIceServer[] {
  return servers.map(({ urls, username, credential }) => ({
    urls,
    ...(username != null ? { username } : {}),
    ...(credential != null ? { credential } : {}),
  }))
}

/** An open connection left `disconnected` this long is given up (ICE may recover before). */
const DISCONNECTED_GRACE_MS = 4000

/** The channels the console creates when it offers: as the server creates them when it does. */
export const CHANNELS: readonly { label: 'video' | 'command'; init: RTCDataChannelInit }[] = [
  { label: 'video', init: { ordered: false, maxRetransmits: 0 } },
  { label: 'command', init: { ordered: true } },
]

export interface WebRtcOptions {
  /** How to signal: REST, the server offering (default), or MQTT topics, the console offering. */
  signaling?: Signaling
  /** MQTT signaling: MQTT.js's `connect` (a test passes a fake). */
  connect?: MqttConnect
  /** JSON-RPC signaling: the name to announce (the principal's; default "console"). */
  name?: string | null
  /** JSON-RPC signaling: opens the `/rpc` WebSocket (a test passes a fake). */
  rpcSocket?: RpcSocketFactory
  /** JSON-RPC signaling: this console's peer id and the peers it knows of, at every change; null once the link is over. */
  onPeers?(peers: RpcPeers | null): void
}

/** What JSON-RPC signaling knows of the peers: its own id and the list (the relay first). */
export interface RpcPeers {
  self: string
  peers: readonly RpcPeer[]
}

/** The REST resource of a session to DELETE at the end; null with JSON-RPC signaling (`disconnect` ends it). */
export const restSessionUrl = (sessionId: string | null, signaling: Signaling): string | null =>
  sessionId && signaling !== 'rpc' ? `/api/webrtc/sessions/${encodeURIComponent(sessionId)}` : null

const describeError = (e: unknown) => (e instanceof RpcError ? e.describe() : e instanceof Error ? e.message : String(e))

export function openWebRtc(remoteControlId: string, h: LinkHandlers, opts: WebRtcOptions = {}): Link {
  const signaling: Signaling = opts.signaling ?? 'rest'
  const startedAt = performance.now()
  /** Link opened → both channels open, ms (signaling included). */
  let setupMs: number | null = null
  let done = false
  let opened = false
  let pc: RTCPeerConnection | null = null
  let sessionId: string | null = null
  /**
   * The server ended the session itself (its `closing` event, a channel or the connection closed
   * by it): it has dropped it, so no DELETE (it would only earn a 404).
   */
  let serverEnded = false
  let signaler: MqttSignaler | null = null
  /** MQTT signaling: where it is, and what it learnt (session, broker). */
  let mqttState = 'asking the server'
  const mqttFixed: Record<string, string> = {}
  /** JSON-RPC signaling: the socket, where it is, this peer, the peers, the counts. */
  let rpc: RpcConnection | null = null
  let rpcState = 'connecting to /rpc'
  let rpcPeerId: string | null = null
  let rpcPeers: readonly RpcPeer[] = []
  let rpcError: string | null = null
  const rpcCounts = { sent: 0, received: 0, ended: false }
  let disconnectedTimer: ReturnType<typeof setTimeout> | undefined
  const abort = new AbortController()
  const channels: Record<string, RTCDataChannel> = {}

  const detail = () => {
    if (done) return
    const d: Record<string, string> = { signaling }
    if (signaling === 'rest') d.restSignaling = sessionId ? 'offer received' : 'offer requested'
    else if (signaling === 'rpc') {
      d.rpcSignaling = rpcState
      if (rpcPeerId) d.peerId = rpcPeerId
      d.peers = String(rpcPeers.length)
      d.candidatesSent = String(rpcCounts.sent)
      d.relayCandidates = String(rpcCounts.received)
      d.relayCandidatesEnd = rpcCounts.ended ? 'yes' : 'no'
      if (rpcError) d.signalingError = rpcError
    } else {
      Object.assign(d, { mqttSignaling: mqttState }, mqttFixed)
      if (signaler) {
        d.candidatesSent = String(signaler.counts.sent)
        d.serverCandidates = String(signaler.counts.received)
      }
    }
    if (sessionId) d.session = sessionId
    if (setupMs !== null) d.setupMs = setupMs.toFixed(0)
    if (pc) {
      d.connectionState = pc.connectionState
      d.iceConnectionState = pc.iceConnectionState
      d.iceGatheringState = pc.iceGatheringState
      d.signalingState = pc.signalingState
    }
    for (const label of ['video', 'command']) d[`${label}Channel`] = channels[label]?.readyState ?? 'none'
    h.onDetail(d)
  }

  const cleanup = () => {
    clearTimeout(disconnectedTimer)
    abort.abort()
    signaler?.close()
    if (rpc) {
      // The relay session ends with the socket anyway; `disconnect` says so first, explicitly.
      // A notification: nobody would read the reply.
      if (sessionId) rpc.notify('disconnect', { to_peer_id: RELAY, session_id: sessionId })
      rpc.close('link closed')
    }
    if (signaling === 'rpc') opts.onPeers?.(null)
    for (const dc of Object.values(channels)) {
      dc.onopen = dc.onclose = dc.onmessage = null
    }
    const peer = pc
    if (peer) {
      peer.onconnectionstatechange = peer.oniceconnectionstatechange = peer.onicegatheringstatechange = null
      peer.onsignalingstatechange = peer.ondatachannel = peer.onicecandidate = null
    }
    // Tell the server at once instead of letting it time the session out (REST and MQTT
    // signaling; JSON-RPC's `disconnect` went above), then close the peer connection: see
    // `session-end.ts` for why in that order, and why not at all when the server ended it.
    void endSession(restSessionUrl(sessionId, signaling), serverEnded, () => peer?.close())
  }

  const fail = (reason: string, why?: { unsupported?: boolean }) => {
    if (done) return
    detail()
    done = true
    cleanup()
    h.onClose(reason, why)
  }

  const checkOpen = () => {
    if (done || opened) return
    if (channels.video?.readyState === 'open' && channels.command?.readyState === 'open') {
      opened = true
      setupMs = performance.now() - startedAt
      if (rpc) rpcState = 'open (socket kept for the session)'
      if (signaler) {
        // Signaling is over: the broker connection goes, the WebRTC session stays (the server
        // releases the MQTT credentials when the peer ends).
        signaler.finish()
        mqttState = 'done (broker connection closed)'
      }
      detail()
      h.onOpen()
    }
  }

  /** Connection and ICE states, for the details and to give a dead connection up. */
  const watch = (p: RTCPeerConnection) => {
    p.onconnectionstatechange = () => {
      detail()
      clearTimeout(disconnectedTimer)
      if (p.connectionState === 'closed') serverEnded = true
      if (p.connectionState === 'failed' || p.connectionState === 'closed') fail(`connection ${p.connectionState}`)
      else if (p.connectionState === 'disconnected') {
        disconnectedTimer = setTimeout(() => fail('connection disconnected'), DISCONNECTED_GRACE_MS)
      }
    }
    p.oniceconnectionstatechange = detail
    p.onicegatheringstatechange = detail
    p.onsignalingstatechange = detail
  }

  /** One of the two channels, whoever created it. */
  const attach = (dc: RTCDataChannel) => {
    dc.binaryType = 'arraybuffer'
    channels[dc.label] = dc
    dc.onopen = () => {
      detail()
      checkOpen()
    }
    dc.onclose = () => {
      // Our own close removes this handler first: the server closed it.
      serverEnded = true
      fail(`${dc.label} channel closed`)
    }
    dc.onmessage = (m: MessageEvent) => {
      if (done) return
      if (dc.label === 'video') {
        if (typeof m.data === 'string') return
        // Every packet of the message, as a view into it; a framing error ends the message and
        // is handed over once, to be counted like a malformed packet.
        handVideoMessage(m.data as ArrayBuffer, h.onBinary, () => done)
      } else if (typeof m.data === 'string') {
        // The server's goodbye: it drops the session next, whatever else comes.
        if (isClosingEvent(m.data)) serverEnded = true
        h.onText(m.data)
      }
    }
    detail()
    checkOpen()
  }

  const pollServerCandidates = async (id: string) => {
    let after = 0
    while (!done && pc && pc.connectionState !== 'connected') {
      const r = await api<ServerCandidates>('GET', `/api/webrtc/sessions/${encodeURIComponent(id)}/candidates?after=${after}&wait_ms=2000`, undefined, abort.signal)
      for (const c of r.candidates) await pc?.addIceCandidate(c)
      after = r.next
      if (r.complete) return
    }
  }

  const run = async () => {
    const offer = await api<OfferResponse>('POST', '/api/webrtc/offer', { remote_control_id: remoteControlId }, abort.signal)
    if (done) {
      // Closed while the offer was on its way: end the session it created (no peer yet).
      void endSession(restSessionUrl(offer.session_id, signaling), false, () => {})
      return
    }
    sessionId = offer.session_id
    pc = new RTCPeerConnection({ iceServers: rtcIceServers(offer.ice_servers) })
    const p = pc
    watch(p)
    p.ondatachannel = (e) => attach(e.channel)
    p.onicecandidate = (e) => {
      const c = e.candidate ? e.candidate.toJSON() : { candidate: '' }
      api('POST', '/api/webrtc/ice-candidate', { session_id: offer.session_id, ...c }, abort.signal).catch(() => {
        // A lost candidate only matters if none gets through; the open timeout covers that.
      })
    }
    await p.setRemoteDescription({ type: 'offer', sdp: offer.sdp })
    await p.setLocalDescription(await p.createAnswer())
    detail()
    await api('POST', '/api/webrtc/answer', { session_id: offer.session_id, type: 'answer', sdp: p.localDescription?.sdp }, abort.signal)
    pollServerCandidates(offer.session_id).catch(() => {
      // Late candidates are optional (the offer carries the host candidates).
    })
  }

  /** The console offers over MQTT topics; the server answers. */
  const runMqtt = async () => {
    const s = await MqttSignaler.open(remoteControlId, {
      signal: abort.signal,
      stopped: () => done,
      connect: opts.connect,
      onState: (state, fixed = {}) => {
        mqttState = state
        Object.assign(mqttFixed, fixed)
        detail()
      },
    })
    if (!s) return
    if (done) {
      s.close()
      return
    }
    signaler = s
    // No ICE servers: the MQTT session does not name any (the REST offer does).
    const p = new RTCPeerConnection()
    pc = p
    watch(p)
    for (const c of CHANNELS) attach(p.createDataChannel(c.label, c.init))
    let answered = false
    const early: RTCIceCandidateInit[] = []
    const add = (c: RTCIceCandidateInit) => {
      p.addIceCandidate(c).catch(() => {
        // A candidate the browser cannot use: others may do (the answer carries the host ones).
      })
    }
    s.onCandidate = (c) => (answered ? add(c) : early.push(c))
    s.onLost = (reason) => {
      if (!opened) fail(s.lastError ? `${reason}: ${s.lastError}` : reason)
    }
    s.onReply = (r) => {
      if (done) return
      if (r.type === 'error') {
        if (!answered) fail(`MQTT signaling: the server refused the offer: ${r.code}: ${r.message}`)
        else {
          // About a candidate, say: the connection may well open anyway.
          mqttFixed.signalingError = `${r.code}: ${r.message}`
          detail()
        }
        return
      }
      if (r.type === 'malformed') {
        if (!answered) fail(`MQTT signaling: not an answer: ${r.problem}`)
        return
      }
      if (answered) return
      answered = true
      mqttState = 'answer received'
      detail()
      p.setRemoteDescription({ type: 'answer', sdp: r.sdp })
        .then(() => {
          for (const c of early.splice(0)) add(c)
          if (!done && !opened) {
            mqttState = 'answer applied'
            detail()
          }
        })
        .catch((e: unknown) => fail(`MQTT signaling: the answer does not apply: ${e instanceof Error ? e.message : String(e)}`))
    }
    p.onicecandidate = (e) => s.candidate(e.candidate ? e.candidate.toJSON() : null)
    await p.setLocalDescription(await p.createOffer())
    if (done) return
    mqttState = 'offer sent'
    await s.offer(p.localDescription?.sdp ?? '')
    detail()
  }

  /** The console offers over JSON-RPC 2.0 on `/rpc`; the relay answers in the offer's result. */
  const runRpc = async () => {
    const factory: RpcSocketFactory = opts.rpcSocket ?? ((url) => new WebSocket(url))
    let c: RpcConnection
    try {
      c = await RpcConnection.open(rpcUrl(), factory, abort.signal)
    } catch (e) {
      if (done) return
      throw new SignalingFailed(`JSON-RPC signaling: ${describeError(e)}`)
    }
    if (done) {
      c.close()
      return
    }
    rpc = c
    const peersChanged = () => {
      if (!done && rpcPeerId) opts.onPeers?.({ self: rpcPeerId, peers: rpcPeers })
      detail()
    }
    let answered = false
    /** The relay's candidates that came before the answer applied. */
    const early: RTCIceCandidateInit[] = []
    let p: RTCPeerConnection | null = null
    const add = (cand: RTCIceCandidateInit) => {
      p?.addIceCandidate(cand).catch(() => {
        // A candidate the browser cannot use: others may do (the answer carries the host ones).
      })
    }
    c.onNotification = (method: string, params: Params) => {
      if (done) return
      const next = applyPeerNotification(rpcPeers, method, params)
      if (next !== rpcPeers) {
        rpcPeers = next
        peersChanged()
        return
      }
      if (fromPeer(params) !== RELAY) return
      if (typeof params.session_id === 'string' && sessionId && params.session_id !== sessionId) return
      if (method === 'ice_candidate') {
        const cand = parseCandidateParams(params)
        if (!cand) return
        if (cand.candidate) rpcCounts.received++
        else rpcCounts.ended = true
        if (answered) add(cand)
        else early.push(cand)
        detail()
      } else if (method === 'disconnect') {
        fail('JSON-RPC signaling: the relay ended the session')
      }
    }
    c.onClosed = (code, reason) => fail(`JSON-RPC signaling: the /rpc socket closed (${code}${reason ? ` ${reason}` : ''})`)
    c.onProblem = (problem) => {
      rpcError = problem
      detail()
    }
    const call = async (method: string, params?: Params) => {
      try {
        return await c.call(method, params)
      } catch (e) {
        if (done) throw e
        throw new SignalingFailed(`JSON-RPC signaling: ${describeError(e)}`, e instanceof RpcError && e.unsupported)
      }
    }

    rpcState = 'announcing'
    detail()
    const announced = parseAnnounced(await call('announce', { name: peerName(opts.name), capabilities: ['datachannel'] }))
    if (done) return
    rpcPeerId = announced.peerId
    // Notifications may have come between the reply and now: merge, the announce result first.
    const seen = new Set(announced.peers.map((x) => x.peer_id))
    rpcPeers = [...announced.peers, ...rpcPeers.filter((x) => !seen.has(x.peer_id))]
    rpcState = 'announced'
    peersChanged()

    // No ICE servers: the contract names none (the REST offer does).
    p = new RTCPeerConnection()
    pc = p
    const peer = p
    watch(peer)
    for (const ch of CHANNELS) attach(peer.createDataChannel(ch.label, ch.init))
    let mid: string | null = null
    /** Local candidates gathered before the offer's result named the session. */
    const waiting: (RTCIceCandidateInit | null)[] = []
    const send = (cand: RTCIceCandidateInit | null) => {
      if (done || !sessionId) return
      if (cand?.candidate) rpcCounts.sent++
      c.call('ice_candidate', candidateParams(cand, RELAY, sessionId, mid)).catch((e: unknown) => {
        if (done) return
        // A candidate refused: the connection may well open anyway (the others, the relay's).
        rpcError = describeError(e)
        detail()
      })
    }
    peer.onicecandidate = (e) => {
      const cand = e.candidate ? e.candidate.toJSON() : null
      if (sessionId) send(cand)
      else waiting.push(cand)
    }
    await peer.setLocalDescription(await peer.createOffer())
    if (done) return
    const sdp = peer.localDescription?.sdp ?? ''
    mid = firstMid(sdp)
    rpcState = 'offer sent'
    detail()
    const answer = parseRelayAnswer(await call('offer', { to_peer_id: RELAY, remote_control_id: remoteControlId, sdp }))
    if (done) return
    sessionId = answer.sessionId
    rpcState = 'answer received'
    detail()
    for (const cand of waiting.splice(0)) send(cand)
    try {
      await peer.setRemoteDescription({ type: 'answer', sdp: answer.sdp })
    } catch (e) {
      throw new SignalingFailed(`JSON-RPC signaling: the answer does not apply: ${describeError(e)}`)
    }
    answered = true
    for (const cand of early.splice(0)) add(cand)
    if (!done && !opened) {
      rpcState = 'answer applied'
      detail()
    }
  }

  detail()
  const signal = signaling === 'mqtt' ? runMqtt : signaling === 'rpc' ? runRpc : run
  signal().catch((e: unknown) => {
    if (e instanceof SignalingFailed) fail(e.message, e.unsupported ? { unsupported: true } : undefined)
    else fail(e instanceof Error ? e.message : String(e))
  })

  return {
    kind: 'webrtc',
    send(text: string) {
      const dc = channels.command
      if (done || !dc || dc.readyState !== 'open') return false
      dc.send(text)
      return true
    },
    close() {
      if (done) return
      done = true
      cleanup()
    },
  }
}
