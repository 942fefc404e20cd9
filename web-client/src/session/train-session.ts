/**
 * One viewing session of one train: a remote control's links (the {@link Supervisor} and its
 * transports), the {@link VideoPipeline} that decodes what they carry, the figures, the commands
 * and the control lease as this link sees them. The console's single view has one; the video wall
 * has one per cell. A session knows nothing of tokens, roles or the train list: its owner passes
 * in how to get the remote control to connect as, and is told about what it needs (a link that
 * closed, an ack, an operator lost).
 *
 * The state is Vue-reactive (refs, reactive objects); the hot path (packets, reassembly, decoding)
 * stays in the non-reactive pipeline, copied into `cameraStats` a few times a second and sampled
 * into the {@link TrendRing}s once a second.
 */
import { computed, markRaw, reactive, ref, shallowRef, watch } from 'vue'
import type { AudioStats } from '../audio/player'
import {
  initialControl, isOperatorLost, onControlChanged, onControlError, onMapped, pingEveryMs, takeControlMessage, type ControlState,
} from '../control'
import { plural } from '../format'
import { describeCommandError, explainCommandError } from '../roles'
import type { OffsetEstimate } from '../stats/clock'
import type { AudioTrackStats, Link, LinkHandlers, MediaTracks, TrackStats } from '../transport/link'
import type { Signaling } from '../transport/mqtt-signaling'
import { openMqtt } from '../transport/mqtt'
import { KINDS, phaseOf, type Kind, type Mode, type PolicyState, initialPolicy } from '../transport/policy'
import { Supervisor } from '../transport/supervisor'
import { openWebRtc, type RpcPeers } from '../transport/webrtc'
import { openWebSocket } from '../transport/websocket'
import { NO_WEBTRANSPORT, openWebTransport, webTransportSupported } from '../transport/webtransport'
import { openWhep } from '../transport/whep'
import { MediaLatencyMeter, type MediaLatency, type PresentedFrame } from '../video/media'
import { VideoPipeline, type CameraStats } from '../video/pipeline'
import { encodeClientMessage, type ServerEvent } from '../wire/client'
import type { Action, AudioInfo, CameraInfo, Telemetry } from '../wire/control'
import { mergeDetail } from './details'
import { now } from './storage'
import { plotValue, TrendRing } from './trend'

const STATS_EVERY_MS = 250
const TREND_EVERY_MS = 1000
const COMMAND_TIMEOUT_MS = 15_000
const KEYFRAME_REQUEST_EVERY_MS = 2000

export type AckStatus = 'pending' | 'ok' | 'refused' | 'error' | 'no answer' | 'not sent'

export interface AckEntry {
  request_id: string
  action: Action
  label: string
  transport: Kind | null
  sentAt: number
  /** When it was sent, epoch ms (the playback view's "▶ replay" opens a few seconds before). */
  sentAtMs: number
  /** The train it was sent to. */
  trainId: string | null
  status: AckStatus
  rtt_ms: number | null
  train_rtt_ms: number | null
  message: string
  code?: string
  internal: boolean
}

export interface CommandErrorView {
  request_id: string
  label: string
  code: string
  /** The server's message. */
  message: string
  /** What the code means (`forbidden`, `rate_limited`), when known. */
  meaning: string | null
}

export interface Mapping {
  trainId: string | null
  online: boolean
  cameras: CameraInfo[]
  audio: AudioInfo[]
  known: boolean
}

export function describeAction(a: Action): string {
  switch (a.type) {
    case 'request_keyframe':
      return a.camera === undefined ? 'request keyframe' : `request keyframe (camera ${a.camera})`
    case 'set_speed':
      return `set speed ${a.kmh} km/h`
    case 'horn':
      return `horn ${a.duration_ms} ms`
  }
}

export interface TrainSessionOptions {
  /** The remote control to connect as, asked before every connection attempt. */
  remoteControl(): Promise<string>
  /** This tab's console id (`take_control`). */
  consoleId: string
  /** How the WebRTC link signals (read at every WebRTC attempt). */
  signaling?: () => Signaling
  /** The principal's name (JSON-RPC signaling's `announce`). */
  name?: () => string | undefined
  /** The mode before the first {@link start} (the policy shown until then). */
  initialMode?: Mode
  /** WHEP: every track's `jitterBufferTarget`. */
  jitterBufferTargetMs?: number | null
  /** A line for the event log. */
  note?(text: string): void
  /** A link closed (not as unsupported); `refusedRc`: it never opened, as that remote control. */
  onLinkClosed?(kind: Kind, refusedRc: string | null): void
  /** Every link was lost (Auto starts over). */
  onAllLost?(): void
  /** A command (not an internal keyframe request) was acked, or the train's control was lost. */
  onAudited?(): void
}

export type TrainSession = ReturnType<typeof createTrainSession>

export function createTrainSession(opts: TrainSessionOptions) {
  const note = opts.note ?? (() => {})
  const consoleId = opts.consoleId

  const mapping = reactive<Mapping>({ trainId: null, online: false, cameras: [], audio: [], known: false })
  const mode = ref<Mode>(opts.initialMode ?? 'auto')
  /** JSON-RPC signaling: the latest WebRTC link's peer id and the peers on `/rpc` (null: no such link). */
  const rpcPeers = shallowRef<RpcPeers | null>(null)
  /** Which link's peers {@link rpcPeers} holds: an older link ending must not clear a newer one's. */
  let rpcPeersOwner: object | null = null
  const policy = shallowRef<PolicyState>(initialPolicy(undefined, mode.value))
  const details = reactive<Record<Kind, Record<string, string>>>(Object.fromEntries(KINDS.map((k) => [k, {}])) as Record<Kind, Record<string, string>>)
  /** The active link's media tracks (WHEP), one stream per camera in camera order, and their `getStats()`. */
  const media = shallowRef<MediaTracks | null>(null)
  const trackStats = shallowRef<TrackStats[]>([])
  /** Frames each camera's `<video>` presented (`requestVideoFrameCallback`), WHEP. */
  const framesPresented: Record<number, number> = {}
  /** WHEP: the cab audio track's `getStats()`, and whether its `<audio>` element is muted. */
  const whepAudio = shallowRef<AudioTrackStats | null>(null)
  const whepAudioMuted = ref(true)
  /** Glass-to-glass of those frames, per camera index, refreshed with the other figures. */
  const mediaLatency = shallowRef<MediaLatency[]>([])
  const telemetry = ref<Telemetry | null>(null)
  const acks = ref<AckEntry[]>([])
  const cameraStats = shallowRef<CameraStats[]>([])
  /** The cab audio's figures, copied from the pipeline with the camera stats. */
  const audioStats = shallowRef<AudioStats | null>(null)
  const clock = shallowRef<OffsetEstimate | null>(null)
  const rejected = shallowRef<Record<string, number>>({})
  const lastRejection = shallowRef<string | null>(null)
  const lastCommandError = ref<CommandErrorView | null>(null)
  /** The mapped train's control lease ({@link ControlState}). */
  const control = ref<ControlState>(initialControl())
  /** Per camera: the last minutes of latency, bitrate and frame rate (not reactive: see `trendTick`). */
  const trends = markRaw(new Map<number, TrendRing>())
  /** Bumped at every trend sample: the plots redraw on it. */
  const trendTick = ref(0)
  /** When the session started and when each camera first painted (ms since the start). */
  let startedAt: number | null = null
  const firstPaint = reactive<Record<number, number>>({})

  const phase = computed(() => phaseOf(policy.value))
  const lastAck = computed(() => acks.value.find((a) => !a.internal && a.status !== 'pending') ?? null)

  // ---- video and transport --------------------------------------------------------------------

  const lastKeyframeRequest = new Map<number, number>()

  const pipeline = markRaw(
    new VideoPipeline({
      now,
      schedulePaint: (cb) => requestAnimationFrame(() => cb()),
      needKeyframe: (camera, why) => {
        const t = now()
        if (t - (lastKeyframeRequest.get(camera) ?? 0) < KEYFRAME_REQUEST_EVERY_MS) return
        lastKeyframeRequest.set(camera, t)
        note(`camera ${camera}: ${why}, asking for a keyframe`)
        send({ type: 'request_keyframe', camera }, true)
      },
    }),
  )
  const mediaMeter = markRaw(new MediaLatencyMeter(pipeline.clock, () => pipeline.clockEstimate(), performance.timeOrigin))

  function applyMapping(ev: Extract<ServerEvent, { type: 'mapped_train_changed' }>) {
    const otherTrain = ev.train_id !== mapping.trainId
    mapping.trainId = ev.train_id
    mapping.online = ev.online
    mapping.cameras = ev.cameras
    mapping.audio = ev.audio ?? []
    mapping.known = true
    control.value = onMapped(control.value, ev.train_id)
    // A new link (Auto switched transport, or reconnected) of a console that held control takes it
    // back with the same console id: the server resumes the lease without a gap.
    if (control.value.wanted && ev.train_id) sendControl('resume')
    if (otherTrain) {
      telemetry.value = null
      trends.clear()
    }
    pipeline.reset(otherTrain)
    pipeline.audio.configure(mapping.audio)
  }

  /** A link that fails or closes is reported to the owner (it may ask `GET /api/me`). */
  function checkedLink(kind: Kind, id: string, h: LinkHandlers, open: (id: string, h: LinkHandlers) => Link): Link {
    let opened = false
    return open(id, {
      ...h,
      onOpen: () => {
        opened = true
        h.onOpen()
      },
      onClose: (reason, why) => {
        h.onClose(reason, why)
        if (!why?.unsupported) opts.onLinkClosed?.(kind, opened ? null : id)
      },
    })
  }

  const supervisor = markRaw(
    new Supervisor(
      {
        remoteControl: () => opts.remoteControl(),
        open: {
          webrtc: (id, h) => {
            const owner = {}
            return openWebRtc(id, h, {
              signaling: opts.signaling?.() ?? 'rest',
              name: opts.name?.(),
              onPeers: (p) => {
                if (p) {
                  rpcPeersOwner = owner
                  rpcPeers.value = p
                } else if (rpcPeersOwner === owner) {
                  rpcPeersOwner = null
                  rpcPeers.value = null
                }
              },
            })
          },
          webtransport: (id, h) => checkedLink('webtransport', id, h, openWebTransport),
          whep: (id, h) => checkedLink('whep', id, h, (i, hh) => openWhep(i, hh, { jitterBufferTargetMs: opts.jitterBufferTargetMs ?? null })),
          websocket: (id, h) => checkedLink('websocket', id, h, openWebSocket),
          mqtt: (id, h) => checkedLink('mqtt', id, h, openMqtt),
        },
        unsupported: () => (webTransportSupported() ? {} : { webtransport: NO_WEBTRANSPORT }),
        now,
      },
      {
        onPolicy: (s) => {
          const lost = phaseOf(s) === 'waiting' && phaseOf(policy.value) !== 'waiting'
          policy.value = s
          // Everything lost: Auto starts over from the best soon; the owner may ask what the server offers.
          if (lost) opts.onAllLost?.()
        },
        onDetail: (kind, d) => {
          details[kind] = mergeDetail(kind, details[kind], d)
        },
        onActivated: (_kind, m) => {
          pipeline.reset(true)
          if (m) applyMapping(m)
        },
        onEvent,
        onVideo: (data, at) => pipeline.push(data, at),
        onMedia: (m) => {
          media.value = m
          trackStats.value = []
          if (!m?.audio) whepAudio.value = null
          mediaLatency.value = []
          mediaMeter.reset()
          for (const k of Object.keys(framesPresented)) delete framesPresented[Number(k)]
        },
        onLog: note,
      },
    ),
  )

  function onEvent(ev: ServerEvent, from: Kind, active: boolean) {
    switch (ev.type) {
      case 'welcome':
        // Every link speaks to the same server: take its limit before any video is let through
        // (video waits for the mapping, which follows the welcome).
        pipeline.setMaxPayload(ev.max_payload)
        if (active) note(`${from}: welcome as ${ev.remote_control_id}, payload limit ${pipeline.payloadLimit()} bytes`)
        return
      case 'pong':
        pipeline.clock.addPong(ev.t, now(), ev.server_time_us / 1000)
        return
      case 'command_ack':
      case 'command_error':
        settle(ev)
        return
      case 'error':
        // The answer to a control message comes on the link that sent it.
        if (control.value.pending || ev.code === 'control_held' || ev.code === 'control_unavailable' || ev.code === 'control_elsewhere' || ev.code === 'not_in_control') {
          const before = control.value
          control.value = onControlError(before, ev.code, ev.message)
          if (control.value !== before) {
            note(`control: ${ev.code}: ${ev.message}`)
            return
          }
        }
        break
    }
    if (!active) return
    switch (ev.type) {
      case 'mapped_train_changed':
        note(
          ev.train_id
            ? `mapped to ${ev.train_id} (${ev.online ? 'online' : 'offline'}, ${plural(ev.cameras.length, 'camera')}${ev.audio?.length ? `, ${ev.audio.length} audio` : ''})`
            : 'not mapped to any train',
        )
        applyMapping(ev)
        break
      case 'train_online':
        note(`${ev.train_id} online`)
        mapping.online = true
        mapping.cameras = ev.cameras
        mapping.audio = ev.audio ?? []
        pipeline.reset(true)
        pipeline.audio.configure(mapping.audio)
        break
      case 'train_offline':
        note(`${ev.train_id} offline: ${ev.reason}`)
        mapping.online = false
        break
      case 'telemetry':
        telemetry.value = ev.telemetry
        break
      case 'control_changed': {
        control.value = onControlChanged(control.value, ev, consoleId, now())
        const who = ev.holder ? `${ev.holder.name} (${ev.holder.role}, ${ev.holder.transport}${ev.holder.node ? ` on ${ev.holder.node}` : ''})` : 'nobody'
        note(`control of ${ev.train_id}: ${who} — ${ev.reason}${control.value.mine ? ' (this console)' : ''}`)
        if (isOperatorLost(ev.reason) || control.value.lost?.at === control.value.eventAt) opts.onAudited?.()
        break
      }
      case 'error':
        note(`server refused a message: ${ev.code} ${ev.message}`)
        break
      case 'closing':
        break
    }
  }

  // ---- commands -------------------------------------------------------------------------------

  let commandSeq = 0
  const pendingCommands = new Map<string, AckEntry>()

  function send(action: Action, internal = false): AckEntry {
    const entry = reactive<AckEntry>({
      request_id: `${internal ? 'kf' : 'cmd'}-${Date.now().toString(36)}-${++commandSeq}`,
      action,
      label: describeAction(action),
      transport: policy.value.active,
      sentAt: performance.now(),
      sentAtMs: Date.now(),
      trainId: mapping.trainId,
      status: 'pending',
      rtt_ms: null,
      train_rtt_ms: null,
      message: '',
      internal,
    }) as AckEntry
    const text = encodeClientMessage({ type: 'command', request_id: entry.request_id, command: action })
    if (!supervisor.send(text)) {
      entry.status = 'not sent'
      entry.message = 'no open transport'
    } else {
      pendingCommands.set(entry.request_id, entry)
      setTimeout(() => {
        if (entry.status !== 'pending') return
        pendingCommands.delete(entry.request_id)
        entry.status = 'no answer'
        entry.message = `no answer within ${COMMAND_TIMEOUT_MS / 1000} s`
      }, COMMAND_TIMEOUT_MS)
    }
    if (!internal) {
      acks.value.unshift(entry)
      if (acks.value.length > 50) acks.value.length = 50
    }
    return entry
  }

  function settle(ev: Extract<ServerEvent, { type: 'command_ack' | 'command_error' }>) {
    const entry = pendingCommands.get(ev.request_id)
    if (!entry) return
    pendingCommands.delete(ev.request_id)
    entry.rtt_ms = performance.now() - entry.sentAt
    entry.message = ev.message
    if (ev.type === 'command_ack') {
      entry.status = ev.ok ? 'ok' : 'refused'
      entry.train_rtt_ms = ev.train_rtt_us / 1000
      pipeline.clock.addTrainRtt(ev.train_rtt_us / 1000)
      if (!entry.internal) opts.onAudited?.()
    } else {
      entry.status = 'error'
      entry.code = ev.code
      if (!entry.internal) {
        lastCommandError.value = { request_id: entry.request_id, label: entry.label, code: ev.code, message: ev.message, meaning: explainCommandError(ev.code) }
      }
      note(`${entry.label}: refused, ${describeCommandError(ev.code, ev.message)}`)
    }
  }

  // ---- control lease --------------------------------------------------------------------------

  /** Send `take_control` (`take`: a click; `resume`: a new link) or `release_control` on the active link. */
  function sendControl(what: 'take' | 'take-over' | 'resume' | 'release'): boolean {
    const msg = what === 'release' ? ({ type: 'release_control' } as const) : takeControlMessage(consoleId, what === 'take-over')
    const sent = supervisor.send(encodeClientMessage(msg))
    const pending = what === 'take-over' ? 'take' : what
    if (sent) control.value = { ...control.value, pending, error: null }
    else if (what !== 'resume') control.value = { ...control.value, error: { code: 'not_sent', message: 'no open transport' } }
    if (what !== 'resume' || sent) note(`control: ${msg.type}${what === 'take-over' ? ' (force)' : ''}${what === 'resume' ? ' (resuming on the new link)' : ''}${sent ? '' : ': no open transport'}`)
    return sent
  }

  // While this console holds (or is taking back) the lease its pings are the heartbeat.
  watch(
    () => control.value.wanted || control.value.mine,
    (holding) => {
      supervisor.setPingEvery(pingEveryMs(holding))
      note(`pinging every ${pingEveryMs(holding)} ms${holding ? ' (heartbeat of the control lease)' : ''}`)
    },
  )

  // ---- figures --------------------------------------------------------------------------------

  function refreshStats() {
    cameraStats.value = pipeline.stats()
    audioStats.value = pipeline.audio.stats()
    if (startedAt !== null) {
      for (const s of cameraStats.value) if (s.framesPainted > 0 && firstPaint[s.camera] === undefined) firstPaint[s.camera] = Math.round(now() - startedAt)
    }
    const m = media.value
    if (m) {
      m.stats()
        .then((st) => {
          if (media.value === m) trackStats.value = st
        })
        .catch(() => {})
      m.audioStats()
        .then((a) => {
          if (media.value === m) whepAudio.value = a
        })
        .catch(() => {})
      mediaLatency.value = m.streams.map((_, i) => mediaMeter.stats(i))
    }
    clock.value = pipeline.clockEstimate()
    rejected.value = { ...pipeline.rejected }
    lastRejection.value = pipeline.lastRejection
  }

  /** One trend sample per camera: the packet transports' figures, or the media tracks' (WHEP). */
  function sampleTrends() {
    if (!running) return
    const t = now() / 1000
    const m = media.value
    const rows: { camera: number; latency: number | null; kbps: number | null; fps: number | null }[] = m
      ? mapping.cameras.map((c, i) => {
          const ts = trackStats.value.find((s) => s.index === i)
          return { camera: c.id, latency: mediaLatency.value[i]?.latencyP50 ?? null, kbps: null, fps: ts?.framesPerSecond ?? null }
        })
      : cameraStats.value.map((s) => ({ camera: s.camera, latency: s.latencyP50, kbps: s.bitrateBps / 1000, fps: s.fps }))
    for (const r of rows) {
      let ring = trends.get(r.camera)
      if (!ring) trends.set(r.camera, (ring = new TrendRing()))
      ring.push({ t, latencyMs: plotValue(r.latency), bitrateKbps: plotValue(r.kbps), fps: plotValue(r.fps) })
    }
    trendTick.value++
  }

  let statsTimer: ReturnType<typeof setInterval> | undefined
  let trendTimer: ReturnType<typeof setInterval> | undefined

  /** Copy the figures from now on (the single view's session does so for the page's lifetime). */
  function startFigures() {
    statsTimer ??= setInterval(refreshStats, STATS_EVERY_MS)
    trendTimer ??= setInterval(sampleTrends, TREND_EVERY_MS)
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  let running = false

  /** Open links (the policy of `m`) as the owner's remote control. */
  function start(m: Mode) {
    mode.value = m
    if (!running) startedAt = now()
    running = true
    supervisor.start(m)
  }

  /** Close every link and forget the stream. */
  function stop() {
    if (running) supervisor.stop()
    running = false
    startedAt = null
    for (const k of Object.keys(firstPaint)) delete firstPaint[Number(k)]
    mapping.trainId = null
    mapping.online = false
    mapping.cameras = []
    mapping.audio = []
    mapping.known = false
    control.value = { ...initialControl(), lost: control.value.lost }
    telemetry.value = null
    pipeline.clear()
    trends.clear()
    cameraStats.value = []
    audioStats.value = null
  }

  /** Stop for good: links, timers. */
  function dispose() {
    stop()
    clearInterval(statsTimer)
    clearInterval(trendTimer)
    statsTimer = trendTimer = undefined
  }

  /** A plain copy of each camera's trend, for tests and the hook. */
  function trendPoints(): Record<number, number> {
    return Object.fromEntries([...trends].map(([c, r]) => [c, r.length]))
  }

  return {
    mapping, mode, rpcPeers, policy, phase, details, media, trackStats, framesPresented, whepAudio, whepAudioMuted, mediaLatency,
    telemetry, acks, lastAck, cameraStats, audioStats, clock, rejected, lastRejection, lastCommandError, control, trends, trendTick,
    firstPaint, pipeline, mediaMeter, supervisor,
    get running() {
      return running
    },
    start, stop, dispose, startFigures, refreshStats, sampleTrends, send, sendControl, trendPoints,
    takeControl: (force = false) => void sendControl(force ? 'take-over' : 'take'),
    releaseControl: () => void sendControl('release'),
    dismissControlLoss: () => {
      control.value = { ...control.value, lost: null }
    },
    attachCanvas: (camera: number, canvas: HTMLCanvasElement | null) => pipeline.attachCanvas(camera, canvas),
    framePresented: (index: number, frame: PresentedFrame): void => {
      framesPresented[index] = (framesPresented[index] ?? 0) + 1
      mediaMeter.presented(index, frame)
    },
    /** The server says whether it offers `kind` (Auto's `askServer`). */
    offered: (kind: Kind, reason: string | null) => supervisor.offered(kind, reason),
  }
}
