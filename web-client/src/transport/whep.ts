/**
 * Media tracks over WHEP (draft-ietf-wish-whep): the browser offers, the server answers; each camera
 * of the mapped train arrives as an H.264 RTP video track that a plain `<video>` element plays, so
 * the browser's own jitter buffer and decoder do the work. The `command` data channel rides in the
 * same peer connection and carries the same JSON as the other links (events, pings, commands), so
 * the rest of the console treats this link like the others; it hands over no packets.
 *
 * Flow: learn how many cameras the mapped train has (`GET /api/remote-controls/{id}`, then the
 * train) and offer that many receive-only video transceivers (at least one) plus the channel; wait
 * for our host candidates (no trickle: on the paths the console serves, gathering takes a few
 * milliseconds); `POST /api/whep/remote-controls/{id}` with the SDP → `201`, the answer and the
 * session's `Location`; `DELETE` that location when done. Camera `i` of the train plays on the
 * `i`-th video transceiver (the server answers extra ones inactive; README "WHEP").
 */
import { authHeaders } from '../auth'
import type { RemoteControlView, TrainView } from '../api'
import { api, ApiError, type AudioTrackStats, type Link, type LinkHandlers, type MediaTracks, type TrackStats } from './link'
import { endSession, isClosingEvent } from './session-end'

/** Our candidates are waited for this long at most before the offer goes without the rest. */
const GATHER_MS = 1500
/** An open connection left `disconnected` this long is given up (ICE may recover before). */
const DISCONNECTED_GRACE_MS = 4000
/** Transceivers offered when the train's cameras are not known (no train mapped yet). */
const DEFAULT_CAMERAS = 1

/** The cameras to offer for: the mapped train's, else {@link DEFAULT_CAMERAS}. */
export async function camerasToOffer(remoteControlId: string, signal?: AbortSignal): Promise<number> {
  const rc = await api<RemoteControlView>('GET', `/api/remote-controls/${encodeURIComponent(remoteControlId)}`, undefined, signal)
  if (!rc.train_id) return DEFAULT_CAMERAS
  try {
    const t = await api<TrainView>('GET', `/api/trains/${encodeURIComponent(rc.train_id)}`, undefined, signal)
    return Math.max(DEFAULT_CAMERAS, t.cameras.length)
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return DEFAULT_CAMERAS
    throw e
  }
}

/** Resolve when ICE gathering is complete, or after `ms`. */
function gathered(pc: RTCPeerConnection, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      pc.removeEventListener('icegatheringstatechange', check)
      resolve()
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done()
    }
    pc.addEventListener('icegatheringstatechange', check)
  })
}

/** `Link: <stun:…>; rel="ice-server"; username="…"; credential="…"` headers → ICE servers (WHEP §4.4). */
export function iceServersFromLinks(header: string | null): RTCIceServer[] {
  if (!header) return []
  const out: RTCIceServer[] = []
  // Split on commas that start a new `<…>` entry (commas inside quoted values stay).
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part)
    if (!m) continue
    const params: Record<string, string> = {}
    for (const p of m[2].split(';')) {
      const kv = /^\s*([A-Za-z-]+)\s*=\s*"?([^"]*)"?\s*$/.exec(p)
      if (kv) params[kv[1].toLowerCase()] = kv[2]
    }
    if (params.rel !== 'ice-server') continue
    const s: RTCIceServer = { urls: m[1] }
    if (params.username) s.username = params.username
    if (params.credential) s.credential = params.credential
    out.push(s)
  }
  return out
}

/** Per-camera figures from a `getStats()` report: inbound video RTP streams matched by `mid`. */
export function trackStats(report: RTCStatsReport, mids: (string | null)[]): TrackStats[] {
  const byId = new Map<string, Record<string, unknown>>()
  report.forEach((v: Record<string, unknown>) => byId.set(v.id as string, v))
  const out: TrackStats[] = []
  report.forEach((v: Record<string, unknown>) => {
    if (v.type !== 'inbound-rtp' || v.kind !== 'video') return
    const index = mids.indexOf((v.mid as string | undefined) ?? null)
    if (index < 0) return
    const n = (k: string) => (typeof v[k] === 'number' ? (v[k] as number) : 0)
    const emitted = n('jitterBufferEmittedCount')
    const codec = v.codecId ? byId.get(v.codecId as string) : undefined
    out.push({
      index,
      framesDecoded: n('framesDecoded'),
      framesPerSecond: n('framesPerSecond'),
      packetsReceived: n('packetsReceived'),
      packetsLost: n('packetsLost'),
      jitterMs: n('jitter') * 1000,
      jitterBufferMs: emitted > 0 ? (n('jitterBufferDelay') / emitted) * 1000 : null,
      keyFramesDecoded: n('keyFramesDecoded'),
      pliSent: n('pliCount'),
      width: n('frameWidth'),
      height: n('frameHeight'),
      codec: typeof codec?.mimeType === 'string' ? codec.mimeType : '',
    })
  })
  return out.sort((a, b) => a.index - b.index)
}

export interface WhepOptions {
  /**
   * `RTCRtpReceiver.jitterBufferTarget` for every track, ms (the console's `?jitterBufferTarget=`):
   * how much the browser's jitter buffer should hold; unset, the browser decides (its default
   * adapts to the jitter it sees). docs/benchmarks.md has what it changes.
   */
  jitterBufferTargetMs?: number | null
}

/** The cab audio's figures from a `getStats()` report: the inbound audio RTP stream of `mid`. */
export function audioTrackStats(report: RTCStatsReport, mid: string | null): AudioTrackStats | null {
  let out: AudioTrackStats | null = null
  const byId = new Map<string, Record<string, unknown>>()
  report.forEach((v: Record<string, unknown>) => byId.set(v.id as string, v))
  report.forEach((v: Record<string, unknown>) => {
    if (v.type !== 'inbound-rtp' || v.kind !== 'audio' || mid === null || v.mid !== mid) return
    const n = (k: string) => (typeof v[k] === 'number' ? (v[k] as number) : 0)
    const emitted = n('jitterBufferEmittedCount')
    const codec = v.codecId ? byId.get(v.codecId as string) : undefined
    out = {
      packetsReceived: n('packetsReceived'),
      packetsLost: n('packetsLost'),
      totalSamplesReceived: n('totalSamplesReceived'),
      audioLevel: n('audioLevel'),
      jitterBufferMs: emitted > 0 ? (n('jitterBufferDelay') / emitted) * 1000 : null,
      codec: typeof codec?.mimeType === 'string' ? codec.mimeType : '',
    }
  })
  return out
}

export function openWhep(remoteControlId: string, h: LinkHandlers, opts: WhepOptions = {}): Link {
  let done = false
  let opened = false
  let pc: RTCPeerConnection | null = null
  let channel: RTCDataChannel | null = null
  let sessionUrl: string | null = null
  /** The server ended the session itself (`closing`, the channel or connection closed by it): no DELETE. */
  let serverEnded = false
  let disconnectedTimer: ReturnType<typeof setTimeout> | undefined
  const abort = new AbortController()
  const streams: MediaStream[] = []

  const detail = () => {
    if (done) return
    const d: Record<string, string> = { whep: sessionUrl ? 'answered' : 'offering' }
    if (sessionUrl) d.session = sessionUrl.split('/').pop() ?? sessionUrl
    if (pc) {
      d.connectionState = pc.connectionState
      d.iceConnectionState = pc.iceConnectionState
      d.signalingState = pc.signalingState
    }
    d.commandChannel = channel?.readyState ?? 'none'
    d.tracks = String(streams.filter((s) => s.getTracks().length > 0).length)
    h.onDetail(d)
  }

  const cleanup = () => {
    clearTimeout(disconnectedTimer)
    abort.abort()
    if (channel) channel.onopen = channel.onclose = channel.onmessage = null
    const peer = pc
    if (peer) peer.onconnectionstatechange = peer.oniceconnectionstatechange = peer.onsignalingstatechange = peer.ontrack = null
    // Tell the server at once instead of letting ICE time the session out, then close the peer
    // connection; not when the server ended it (session-end.ts).
    void endSession(sessionUrl, serverEnded, () => peer?.close())
  }

  const fail = (reason: string) => {
    if (done) return
    detail()
    done = true
    cleanup()
    h.onClose(reason)
  }

  const run = async () => {
    const cameras = await camerasToOffer(remoteControlId, abort.signal)
    if (done) return
    const p = new RTCPeerConnection()
    pc = p
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
    p.onsignalingstatechange = detail
    // The cab audio first (the server answers it inactive when the train has no audio source),
    // then one video transceiver per camera: camera i plays on the i-th *video* m-line.
    const audioTransceiver = p.addTransceiver('audio', { direction: 'recvonly' })
    let audio: MediaStream | null = null
    const transceivers: RTCRtpTransceiver[] = []
    for (let i = 0; i < cameras; i++) {
      const t = p.addTransceiver('video', { direction: 'recvonly' })
      const target = opts.jitterBufferTargetMs
      if (target !== undefined && target !== null && 'jitterBufferTarget' in t.receiver) {
        ;(t.receiver as RTCRtpReceiver & { jitterBufferTarget: number | null }).jitterBufferTarget = target
      }
      transceivers.push(t)
      streams.push(new MediaStream())
    }
    const media = (): MediaTracks => ({
      streams: [...streams],
      audio,
      stats: async () => (done ? [] : trackStats(await p.getStats(), transceivers.map((t) => t.mid))),
      audioStats: async () => (done || !audio ? null : audioTrackStats(await p.getStats(), audioTransceiver.mid)),
    })
    p.ontrack = (e) => {
      if (e.transceiver === audioTransceiver) {
        if (done) return
        audio = new MediaStream([e.track])
        h.onMedia?.(media())
        return
      }
      const i = transceivers.indexOf(e.transceiver)
      if (i < 0 || done) return
      streams[i] = new MediaStream([e.track])
      h.onMedia?.(media())
      detail()
    }
    const dc = p.createDataChannel('command')
    channel = dc
    dc.onopen = () => {
      detail()
      if (!opened && !done) {
        opened = true
        h.onOpen()
        h.onMedia?.(media())
      }
    }
    dc.onclose = () => {
      // Our own close removes this handler first: the server closed it.
      serverEnded = true
      fail('command channel closed')
    }
    dc.onmessage = (m: MessageEvent) => {
      if (done || typeof m.data !== 'string') return
      // The server's goodbye: it drops the session next.
      if (isClosingEvent(m.data)) serverEnded = true
      h.onText(m.data)
    }
    await p.setLocalDescription(await p.createOffer())
    await gathered(p, GATHER_MS)
    if (done) return
    const r = await fetch(`/api/whep/remote-controls/${encodeURIComponent(remoteControlId)}`, {
      method: 'POST',
      headers: { ...authHeaders(), 'content-type': 'application/sdp' },
      body: p.localDescription?.sdp ?? '',
      signal: abort.signal,
    })
    const text = await r.text()
    if (r.status !== 201) {
      let message = text
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text
      } catch {
        // not the server's JSON error shape
      }
      // A server without WHEP: Auto (and the panel) need not try it again soon.
      if (r.status === 404 || r.status === 405) {
        done = true
        cleanup()
        h.onClose(`WHEP not offered by this server (${r.status})`, { unsupported: true })
        return
      }
      throw new Error(`WHEP offer: ${r.status} ${message}`.trim())
    }
    const loc = r.headers.get('location')
    sessionUrl = loc ? new URL(loc, globalThis.location.href).pathname : null
    if (done) {
      cleanup()
      return
    }
    const servers = iceServersFromLinks(r.headers.get('link'))
    if (servers.length) p.setConfiguration({ iceServers: servers })
    await p.setRemoteDescription({ type: 'answer', sdp: text })
    detail()
  }

  detail()
  run().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)))

  return {
    kind: 'whep',
    send(text: string) {
      if (done || !channel || channel.readyState !== 'open') return false
      channel.send(text)
      return true
    },
    close() {
      if (done) return
      done = true
      cleanup()
    },
  }
}
