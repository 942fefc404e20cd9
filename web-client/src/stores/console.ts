/**
 * The console's state: trains, this console's remote control and its mapping, the transport, the
 * stream figures and the commands. The hot path (packets, reassembly, decoding) lives in the
 * non-reactive {@link VideoPipeline}; the store copies its figures a few times a second.
 */
import { defineStore } from 'pinia'
import { computed, markRaw, reactive, ref, shallowRef } from 'vue'
import type { RemoteControlView, TrainView } from '../api'
import { api, ApiError } from '../transport/link'
import { openWebRtc } from '../transport/webrtc'
import { openWebSocket } from '../transport/websocket'
import { initialPolicy, phaseOf, type Kind, type Mode, type PolicyState } from '../transport/policy'
import { Supervisor } from '../transport/supervisor'
import { VideoPipeline, type CameraStats } from '../video/pipeline'
import type { OffsetEstimate } from '../stats/clock'
import { encodeClientMessage, type ServerEvent } from '../wire/client'
import type { Action, CameraInfo, Telemetry } from '../wire/control'

const KEY_RC = 'railcast.remoteControlId'
const KEY_TRAIN = 'railcast.train'
const KEY_MODE = 'railcast.transport'
const TRAIN_POLL_MS = 1000
const STATS_EVERY_MS = 250
const COMMAND_TIMEOUT_MS = 15_000
const KEYFRAME_REQUEST_EVERY_MS = 2000

export type AckStatus = 'pending' | 'ok' | 'refused' | 'error' | 'no answer' | 'not sent'

export interface AckEntry {
  request_id: string
  action: Action
  label: string
  transport: Kind | null
  sentAt: number
  status: AckStatus
  rtt_ms: number | null
  train_rtt_ms: number | null
  message: string
  code?: string
  internal: boolean
}

export interface LogLine {
  at: string
  text: string
}

const now = () => performance.timeOrigin + performance.now()

function describe(a: Action): string {
  switch (a.type) {
    case 'request_keyframe':
      return a.camera === undefined ? 'request keyframe' : `request keyframe (camera ${a.camera})`
    case 'set_speed':
      return `set speed ${a.kmh} km/h`
    case 'horn':
      return `horn ${a.duration_ms} ms`
  }
}

function isMode(s: string | null): s is Mode {
  return s === 'auto' || s === 'webrtc' || s === 'websocket'
}

export const useConsole = defineStore('console', () => {
  const query = new URLSearchParams(location.search)
  const qTransport = query.get('transport')
  const qTrain = query.get('train')

  const trains = ref<TrainView[]>([])
  const serverReachable = ref<boolean | null>(null)
  const rcId = ref<string | null>(localStorage.getItem(KEY_RC))
  const desiredTrain = ref<string | null>(qTrain ?? localStorage.getItem(KEY_TRAIN))
  const mapping = reactive<{ trainId: string | null; online: boolean; cameras: CameraInfo[]; known: boolean }>({
    trainId: null, online: false, cameras: [], known: false,
  })
  const mappingProblem = ref<string | null>(null)
  const mode = ref<Mode>(isMode(qTransport) ? qTransport : isMode(localStorage.getItem(KEY_MODE)) ? (localStorage.getItem(KEY_MODE) as Mode) : 'auto')
  const policy = shallowRef<PolicyState>(initialPolicy(undefined, mode.value))
  const details = reactive<Record<Kind, Record<string, string>>>({ webrtc: {}, websocket: {} })
  const log = ref<LogLine[]>([])
  const telemetry = ref<Telemetry | null>(null)
  const acks = ref<AckEntry[]>([])
  const cameraStats = shallowRef<CameraStats[]>([])
  const clock = shallowRef<OffsetEstimate | null>(null)
  const rejected = shallowRef<Record<string, number>>({})

  const phase = computed(() => phaseOf(policy.value))
  const commandBlocked = computed<string | null>(() => {
    if (!policy.value.active) return 'not connected to the server'
    if (!mapping.trainId) return 'no train is mapped to this console: pick one'
    if (!mapping.online) return `train ${mapping.trainId} is offline`
    return null
  })
  const lastAck = computed(() => acks.value.find((a) => !a.internal && a.status !== 'pending') ?? null)

  function note(text: string) {
    log.value.unshift({ at: new Date().toISOString().slice(11, 23), text })
    if (log.value.length > 80) log.value.length = 80
  }

  // ---- remote control -------------------------------------------------------------------------

  let ensuring: Promise<string> | null = null

  /** This console's remote control, created (again, after a server restart) and mapped as wanted. */
  function remoteControl(): Promise<string> {
    ensuring ??= ensureRemoteControl().finally(() => (ensuring = null))
    return ensuring
  }

  async function ensureRemoteControl(): Promise<string> {
    let rc: RemoteControlView | null = null
    if (rcId.value) {
      try {
        rc = await api<RemoteControlView>('GET', `/api/remote-controls/${encodeURIComponent(rcId.value)}`)
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404)) throw e
        note(`the server does not know remote control ${rcId.value} (restarted?): creating a new one`)
      }
    }
    if (!rc) {
      rc = await api<RemoteControlView>('POST', '/api/remote-controls', { name: `console ${new Date().toISOString().slice(0, 19)}` })
      rcId.value = rc.id
      localStorage.setItem(KEY_RC, rc.id)
      note(`remote control ${rc.id} created`)
    }
    const want = desiredTrain.value
    if (want && rc.train_id !== want) {
      try {
        rc = await api<RemoteControlView>('PUT', `/api/remote-controls/${encodeURIComponent(rc.id)}/train`, { train_id: want })
        mappingProblem.value = null
        note(`mapped to ${want}`)
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 404 && e.code !== 'remote_control_not_found')) throw e
        mappingProblem.value = `train ${want} is not known to the server yet; mapping when it appears`
      }
    } else if (want) {
      mappingProblem.value = null
    }
    return rc.id
  }

  async function selectTrain(id: string | null) {
    desiredTrain.value = id
    if (id) localStorage.setItem(KEY_TRAIN, id)
    else localStorage.removeItem(KEY_TRAIN)
    try {
      if (id) await remoteControl()
      else if (rcId.value) await api('DELETE', `/api/remote-controls/${encodeURIComponent(rcId.value)}/train`)
    } catch (e) {
      note(`mapping failed: ${e instanceof Error ? e.message : String(e)}`)
    }
  }

  // ---- trains ---------------------------------------------------------------------------------

  let lastMapAttempt = 0

  async function pollTrains() {
    try {
      trains.value = await api<TrainView[]>('GET', '/api/trains')
      serverReachable.value = true
      const want = desiredTrain.value
      // After a server restart the train reappears some time after we reconnect: map it then.
      if (want && mapping.known && mapping.trainId !== want && trains.value.some((t) => t.id === want) && now() - lastMapAttempt > 2000) {
        lastMapAttempt = now()
        remoteControl().catch(() => {})
      }
    } catch {
      serverReachable.value = false
    }
  }

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

  function applyMapping(ev: Extract<ServerEvent, { type: 'mapped_train_changed' }>) {
    const otherTrain = ev.train_id !== mapping.trainId
    mapping.trainId = ev.train_id
    mapping.online = ev.online
    mapping.cameras = ev.cameras
    mapping.known = true
    if (otherTrain) telemetry.value = null
    pipeline.reset(otherTrain)
  }

  const supervisor = markRaw(
    new Supervisor(
      { remoteControl, open: { webrtc: openWebRtc, websocket: openWebSocket }, now },
      {
        onPolicy: (s) => (policy.value = s),
        onDetail: (kind, d) => {
          details[kind] = d.state === 'connecting' ? { ...d } : { ...details[kind], ...d }
        },
        onActivated: (_kind, m) => {
          pipeline.reset(true)
          if (m) applyMapping(m)
        },
        onEvent,
        onVideo: (data, at) => pipeline.push(data, at),
        onLog: note,
      },
    ),
  )

  function onEvent(ev: ServerEvent, from: Kind, active: boolean) {
    switch (ev.type) {
      case 'pong':
        pipeline.clock.addPong(ev.t, now(), ev.server_time_us / 1000)
        return
      case 'command_ack':
      case 'command_error':
        settle(ev)
        return
    }
    if (!active) return
    switch (ev.type) {
      case 'welcome':
        note(`${from}: welcome as ${ev.remote_control_id}`)
        break
      case 'mapped_train_changed':
        note(ev.train_id ? `mapped to ${ev.train_id} (${ev.online ? 'online' : 'offline'}, ${ev.cameras.length} cameras)` : 'not mapped to any train')
        applyMapping(ev)
        break
      case 'train_online':
        note(`${ev.train_id} online`)
        mapping.online = true
        mapping.cameras = ev.cameras
        pipeline.reset(true)
        break
      case 'train_offline':
        note(`${ev.train_id} offline: ${ev.reason}`)
        mapping.online = false
        break
      case 'telemetry':
        telemetry.value = ev.telemetry
        break
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
      label: describe(action),
      transport: policy.value.active,
      sentAt: performance.now(),
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
    } else {
      entry.status = 'error'
      entry.code = ev.code
    }
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  function setMode(m: Mode) {
    mode.value = m
    localStorage.setItem(KEY_MODE, m)
    note(`transport: ${m}`)
    supervisor.start(m)
  }

  let started = false
  function start() {
    if (started) return
    started = true
    if (qTrain) localStorage.setItem(KEY_TRAIN, qTrain)
    void pollTrains()
    setInterval(pollTrains, TRAIN_POLL_MS)
    setInterval(() => {
      cameraStats.value = pipeline.stats()
      clock.value = pipeline.clockEstimate()
      rejected.value = { ...pipeline.rejected }
    }, STATS_EVERY_MS)
    supervisor.start(mode.value)
  }

  /** A plain snapshot for the end-to-end test (`window.__railcast`). */
  function testHook() {
    const stats = Object.fromEntries(pipeline.stats().map((s) => [s.camera, s]))
    const est = pipeline.clockEstimate()
    const la = lastAck.value
    return {
      mode: mode.value,
      transport: policy.value.active,
      pending: policy.value.pending,
      state: phase.value,
      lastError: policy.value.lastError,
      opens: supervisor.opens,
      remoteControlId: rcId.value,
      trainId: mapping.trainId,
      online: mapping.online,
      cameras: mapping.cameras.map((c) => c.id),
      details: JSON.parse(JSON.stringify(details)) as Record<Kind, Record<string, string>>,
      stats,
      clockOffsetMs: est.offsetMs,
      clock: est,
      lastAck: la ? { request_id: la.request_id, label: la.label, status: la.status, rtt_ms: la.rtt_ms, train_rtt_ms: la.train_rtt_ms, transport: la.transport } : null,
      commandBlocked: commandBlocked.value,
      rejected: { ...pipeline.rejected },
    }
  }

  return {
    trains, serverReachable, rcId, desiredTrain, mapping, mappingProblem, mode, policy, phase, details, log, telemetry,
    acks, lastAck, cameraStats, clock, rejected, commandBlocked,
    start, setMode, selectTrain, send, testHook,
    attachCanvas: (camera: number, canvas: HTMLCanvasElement | null) => pipeline.attachCanvas(camera, canvas),
  }
})
