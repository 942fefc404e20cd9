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
 */
import { authHeaders } from '../auth'
import { api, handVideoMessage, type Link, type LinkHandlers } from './link'

interface Offer {
  session_id: string
  type: string
  sdp: string
  ice_servers: RTCIceServer[]
}

interface ServerCandidates {
  candidates: RTCIceCandidateInit[]
  next: number
  complete: boolean
}

/** An open connection left `disconnected` this long is given up (ICE may recover before). */
const DISCONNECTED_GRACE_MS = 4000

export function openWebRtc(remoteControlId: string, h: LinkHandlers): Link {
  let done = false
  let opened = false
  let pc: RTCPeerConnection | null = null
  let sessionId: string | null = null
  let disconnectedTimer: ReturnType<typeof setTimeout> | undefined
  const abort = new AbortController()
  const channels: Record<string, RTCDataChannel> = {}

  const detail = () => {
    if (done) return
    const d: Record<string, string> = { restSignaling: sessionId ? 'offer received' : 'offer requested' }
    if (sessionId) d.session = sessionId
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
    for (const dc of Object.values(channels)) {
      dc.onopen = dc.onclose = dc.onmessage = null
    }
    if (pc) {
      pc.onconnectionstatechange = pc.oniceconnectionstatechange = pc.onicegatheringstatechange = null
      pc.onsignalingstatechange = pc.ondatachannel = pc.onicecandidate = null
      pc.close()
    }
    if (sessionId) {
      // Tell the server at once instead of letting it time the session out.
      fetch(`/api/webrtc/sessions/${encodeURIComponent(sessionId)}`, { method: 'DELETE', keepalive: true, headers: authHeaders() }).catch(() => {})
    }
  }

  const fail = (reason: string) => {
    if (done) return
    detail()
    done = true
    cleanup()
    h.onClose(reason)
  }

  const checkOpen = () => {
    if (done || opened) return
    if (channels.video?.readyState === 'open' && channels.command?.readyState === 'open') {
      opened = true
      h.onOpen()
    }
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
    const offer = await api<Offer>('POST', '/api/webrtc/offer', { remote_control_id: remoteControlId }, abort.signal)
    if (done) {
      sessionId = offer.session_id
      cleanup()
      return
    }
    sessionId = offer.session_id
    pc = new RTCPeerConnection({ iceServers: offer.ice_servers })
    const p = pc
    p.onconnectionstatechange = () => {
      detail()
      clearTimeout(disconnectedTimer)
      if (p.connectionState === 'failed' || p.connectionState === 'closed') fail(`connection ${p.connectionState}`)
      else if (p.connectionState === 'disconnected') {
        disconnectedTimer = setTimeout(() => fail('connection disconnected'), DISCONNECTED_GRACE_MS)
      }
    }
    p.oniceconnectionstatechange = detail
    p.onicegatheringstatechange = detail
    p.onsignalingstatechange = detail
    p.ondatachannel = (e) => {
      const dc = e.channel
      dc.binaryType = 'arraybuffer'
      channels[dc.label] = dc
      dc.onopen = () => {
        detail()
        checkOpen()
      }
      dc.onclose = () => fail(`${dc.label} channel closed`)
      dc.onmessage = (m: MessageEvent) => {
        if (done) return
        if (dc.label === 'video') {
          if (typeof m.data === 'string') return
          // Every packet of the message, as a view into it; a framing error ends the message and
          // is handed over once, to be counted like a malformed packet.
          handVideoMessage(m.data as ArrayBuffer, h.onBinary, () => done)
        } else if (typeof m.data === 'string') {
          h.onText(m.data)
        }
      }
      detail()
      checkOpen()
    }
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

  detail()
  run().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)))

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
