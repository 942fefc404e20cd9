/**
 * The console's state: who we are (token, role), trains, this console's remote control and its
 * mapping, the transport, the stream figures and the commands. The hot path (packets, reassembly,
 * decoding) lives in the non-reactive {@link VideoPipeline}; the store copies its figures a few
 * times a second.
 *
 * A session starts with `GET /api/me`:
 * - 401 (here or on any later request, or after a WebSocket that failed, checked with
 *   `GET /api/me`): everything stops and the token prompt shows the server's message;
 * - `admin`: the console creates its own remote control and maps it to the train picked in the
 *   list (as before authentication existed; also what a server without `/api/me` gets);
 * - `operator`, `viewer`: the console connects as a remote control an admin assigned, from
 *   `GET /api/remote-controls` (see {@link chooseRemoteControl}); with none, it says so and asks
 *   again every few seconds. The train list is read-only; a viewer's commands are disabled.
 */
import { defineStore } from 'pinia'
import { computed, markRaw, reactive, ref, shallowRef, watch } from 'vue'
import type { MeView, RemoteControlView, TrainView } from '../api'
import { getToken, normalizeTokenInput, onUnauthorized, resolveToken, saveToken, setToken, type StorageLike, type TokenSource } from '../auth'
import {
  canCommand, canManage, chooseRemoteControl, commandBlockReason, describeCommandError, explainCommandError, noAssignmentMessage,
  parseMe, READ_ONLY_TRAINS_NOTE, type Me,
} from '../roles'
import { api, ApiError, type Link, type LinkHandlers } from '../transport/link'
import { openWebRtc, type RpcPeers } from '../transport/webrtc'
import { parseSignaling, type Signaling } from '../transport/mqtt-signaling'
import { openWhep } from '../transport/whep'
import { plural } from '../format'
import type { AudioTrackStats, MediaTracks, TrackStats } from '../transport/link'
import { MediaLatencyMeter, type MediaLatency, type PresentedFrame } from '../video/media'
import { openWebSocket } from '../transport/websocket'
import { NO_WEBTRANSPORT, openWebTransport, webTransportSupported } from '../transport/webtransport'
import { mqttInfoProblem, openMqtt, type MqttInfo } from '../transport/mqtt'
import { DEFAULT_POLICY, initialPolicy, KINDS, phaseOf, rankingOf, type Kind, type Mode, type PolicyState } from '../transport/policy'
import { Supervisor } from '../transport/supervisor'
import { VideoPipeline, type CameraStats } from '../video/pipeline'
import type { OffsetEstimate } from '../stats/clock'
import { encodeClientMessage, type ServerEvent } from '../wire/client'
import type { Action, AudioInfo, CameraInfo, Telemetry } from '../wire/control'
import type { AudioStats } from '../audio/player'
import {
  auditQuery, consoleIdFrom, controlOffer, initialControl, isOperatorLost, mergeAudit, onControlChanged, onControlError, onMapped,
  onTrainControl, parseAuditPage, pingEveryMs, takeControlMessage, type AuditEntry, type ControlState,
} from '../control'

/** The remote control an admin's console created for itself. */
const KEY_RC = 'railcast.remoteControlId'
/** The assigned remote control an operator's or viewer's console last used. */
const KEY_ASSIGNED_RC = 'railcast.assignedRemoteControlId'
const KEY_TRAIN = 'railcast.train'
const KEY_MODE = 'railcast.transport'
const KEY_SIGNALING = 'railcast.signaling'
const TRAIN_POLL_MS = 1000
const STATS_EVERY_MS = 250
const COMMAND_TIMEOUT_MS = 15_000
const KEYFRAME_REQUEST_EVERY_MS = 2000
/** No remote control assigned yet: ask again this often. */
export const ASSIGNMENT_POLL_MS = 3000
/** `GET /api/me` failed (server down): try again this often. */
const ME_RETRY_MS = 2000
/** After a failed WebSocket, `GET /api/me` at most this often. */
const ACCESS_CHECK_EVERY_MS = 2000
/** Auto asks `GET /api/mqtt` (does the server offer MQTT?) at most this often. */
const OFFER_CHECK_EVERY_MS = 2000
/** The audit history (admins): entries kept, page size, pages read per refresh, refresh period. */
const AUDIT_KEEP = 50
const AUDIT_PAGE = 1000
const AUDIT_MAX_PAGES = 20
const AUDIT_REFRESH_MS = 2000

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

export interface CommandErrorView {
  request_id: string
  label: string
  code: string
  /** The server's message. */
  message: string
  /** What the code means (`forbidden`, `rate_limited`), when known. */
  meaning: string | null
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
  return s === 'auto' || (KINDS as readonly (string | null)[]).includes(s)
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** `sessionStorage` (per tab), or nothing. */
function tabStorage() {
  try {
    return sessionStorage
  } catch {
    return null
  }
}

/** `localStorage`, or nothing when it is disabled. */
function storage(): StorageLike | null {
  try {
    return localStorage
  } catch {
    return null
  }
}
const load = (key: string) => storage()?.getItem(key) ?? null
const persist = (key: string, value: string | null) => {
  try {
    if (value === null) storage()?.removeItem(key)
    else storage()?.setItem(key, value)
  } catch {
    // storage disabled
  }
}

export const useConsole = defineStore('console', () => {
  const query = new URLSearchParams(location.search)
  const qTransport = query.get('transport')
  // `?signaling=mqtt` / `rpc`: the WebRTC link signals over MQTT topics or JSON-RPC on /rpc (the
  // console offers); default REST.
  const qSignaling = parseSignaling(query.get('signaling'))
  const qTrain = query.get('train')
  // WHEP: `?jitterBufferTarget=MS` sets every track's RTCRtpReceiver.jitterBufferTarget.
  const qJitter = query.get('jitterBufferTarget')
  const jitterBufferTargetMs = qJitter !== null && qJitter.trim() !== '' && Number.isFinite(Number(qJitter)) ? Number(qJitter) : null

  // Who we are.
  const initial = resolveToken({ location, history, storage: storage() })
  setToken(initial.token)
  const token = ref<string | null>(initial.token)
  const tokenSource = ref<TokenSource | null>(initial.source)
  /** `#rc=` of the URL: the assigned remote control to use. */
  const rcFromUrl = ref<string | null>(initial.rc)
  const me = ref<Me | null>(null)
  /** The server's message when it refused the token (401); the token prompt shows it. */
  const authError = ref<string | null>(null)
  /** Remote controls assigned to this operator or viewer (`GET /api/remote-controls`). */
  const assigned = ref<RemoteControlView[]>([])
  /** "no remote control is assigned to NAME yet", while waiting for one. */
  const noAssignment = ref<string | null>(null)
  const rcProblem = ref<string | null>(null)

  const role = computed(() => me.value?.role ?? null)
  const manages = computed(() => canManage(role.value))
  const tokenPrompt = computed(() => authError.value !== null || (!token.value && !me.value))

  const trains = ref<TrainView[]>([])
  const serverReachable = ref<boolean | null>(null)
  const rcId = ref<string | null>(null)
  const desiredTrain = ref<string | null>(qTrain ?? load(KEY_TRAIN))
  const mapping = reactive<{ trainId: string | null; online: boolean; cameras: CameraInfo[]; audio: AudioInfo[]; known: boolean }>({
    trainId: null, online: false, cameras: [], audio: [], known: false,
  })
  const mappingProblem = ref<string | null>(null)
  const storedMode = load(KEY_MODE)
  const mode = ref<Mode>(isMode(qTransport) ? qTransport : isMode(storedMode) ? storedMode : 'auto')
  /** How the WebRTC link signals: REST (the server offers), MQTT topics or JSON-RPC (the console offers). */
  const signaling = ref<Signaling>(qSignaling ?? parseSignaling(load(KEY_SIGNALING)) ?? 'rest')
  /** JSON-RPC signaling: the latest WebRTC link's peer id and the peers on `/rpc` (null: no such link). */
  const rpcPeers = shallowRef<RpcPeers | null>(null)
  /** Which link's peers {@link rpcPeers} holds: an older link ending must not clear a newer one's. */
  let rpcPeersOwner: object | null = null
  const policy = shallowRef<PolicyState>(initialPolicy(undefined, mode.value))
  const details = reactive<Record<Kind, Record<string, string>>>({ webrtc: {}, webtransport: {}, websocket: {}, mqtt: {}, whep: {} })
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
  const log = ref<LogLine[]>([])
  const telemetry = ref<Telemetry | null>(null)
  const acks = ref<AckEntry[]>([])
  const cameraStats = shallowRef<CameraStats[]>([])
  /** The cab audio's figures, copied from the pipeline with the camera stats. */
  const audioStats = shallowRef<AudioStats | null>(null)
  const clock = shallowRef<OffsetEstimate | null>(null)
  const rejected = shallowRef<Record<string, number>>({})
  const lastRejection = shallowRef<string | null>(null)
  const lastCommandError = ref<CommandErrorView | null>(null)
  /** This tab's console id: sent with every `take_control`, the same on all its links. */
  const consoleId = consoleIdFrom(tabStorage())
  /** The mapped train's control lease ({@link ControlState}). */
  const control = ref<ControlState>(initialControl())
  /** Admins: the train's last commands from the audit (`GET /api/audit`), newest first. */
  const audit = reactive<{ shown: boolean; loading: boolean; error: string | null; forbidden: boolean; trainId: string | null; entries: AuditEntry[]; lastSeq: number | null; loadedAt: number | null }>({
    shown: false, loading: false, error: null, forbidden: false, trainId: null, entries: [], lastSeq: null, loadedAt: null,
  })

  const phase = computed(() => phaseOf(policy.value))
  const commandBlocked = computed<string | null>(() =>
    commandBlockReason({ role: role.value, connected: !!policy.value.active, trainId: mapping.trainId, online: mapping.online, waiting: noAssignment.value }),
  )
  const lastAck = computed(() => acks.value.find((a) => !a.internal && a.status !== 'pending') ?? null)
  const controlOffered = computed(() => controlOffer(role.value, control.value, !!mapping.trainId && !!policy.value.active))

  function note(text: string) {
    log.value.unshift({ at: new Date().toISOString().slice(11, 23), text })
    if (log.value.length > 80) log.value.length = 80
  }

  // ---- remote control -------------------------------------------------------------------------

  let ensuring: Promise<string> | null = null

  /**
   * The remote control to connect as (asked before every connection attempt): an admin's own,
   * created (again, after a server restart) and mapped as wanted; or an assigned one.
   */
  function remoteControl(): Promise<string> {
    ensuring ??= (manages.value ? ensureRemoteControl() : assignedRemoteControl()).finally(() => (ensuring = null))
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
      // Owned by this admin: the server lists owner-less remote controls to every operator and viewer.
      const owner = me.value && me.value.name !== 'anonymous' ? { owner: me.value.name } : {}
      rc = await api<RemoteControlView>('POST', '/api/remote-controls', { name: `console ${new Date().toISOString().slice(0, 19)}`, ...owner })
      rcId.value = rc.id
      persist(KEY_RC, rc.id)
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

  async function refreshAssigned(): Promise<RemoteControlView[]> {
    const list = await api<RemoteControlView[]>('GET', '/api/remote-controls')
    assigned.value = Array.isArray(list) ? list : []
    return assigned.value
  }

  /** Connect as this assigned remote control. */
  function useAssigned(id: string, problem: string | null) {
    if (rcId.value !== id) note(`using remote control ${id}${problem ? ` (${problem})` : ''}`)
    rcId.value = id
    rcProblem.value = problem
    noAssignment.value = null
    persist(KEY_ASSIGNED_RC, id)
  }

  /** Nothing assigned: no links; ask again every few seconds. */
  function waitForAssignment(gen: number) {
    stopLinks()
    rcId.value = null
    const text = noAssignmentMessage(me.value?.name ?? 'you')
    if (noAssignment.value !== text) note(text)
    noAssignment.value = text
    clearTimeout(retryTimer)
    retryTimer = setTimeout(() => void connectAssigned(gen), ASSIGNMENT_POLL_MS)
  }

  async function assignedRemoteControl(): Promise<string> {
    const gen = session
    const list = await refreshAssigned()
    const choice = chooseRemoteControl(list, rcFromUrl.value, rcId.value ?? load(KEY_ASSIGNED_RC))
    if (!choice.id) {
      if (gen === session) waitForAssignment(gen)
      throw new Error(noAssignmentMessage(me.value?.name ?? 'you'))
    }
    if (gen === session) useAssigned(choice.id, choice.problem)
    return choice.id
  }

  /** Operators and viewers: pick an assigned remote control and connect, or wait for one. */
  async function connectAssigned(gen: number) {
    let list: RemoteControlView[]
    try {
      list = await refreshAssigned()
    } catch (e) {
      if (gen !== session) return
      if (!(e instanceof ApiError)) serverReachable.value = false
      note(`remote controls: ${errorText(e)}`)
      clearTimeout(retryTimer)
      retryTimer = setTimeout(() => void connectAssigned(gen), ASSIGNMENT_POLL_MS)
      return
    }
    if (gen !== session) return
    const choice = chooseRemoteControl(list, rcFromUrl.value, rcId.value ?? load(KEY_ASSIGNED_RC))
    if (!choice.id) {
      waitForAssignment(gen)
      return
    }
    useAssigned(choice.id, choice.problem)
    startLinks()
  }

  async function selectTrain(id: string | null) {
    if (!manages.value) {
      note(`only an admin can change the mapping: ${READ_ONLY_TRAINS_NOTE}`)
      return
    }
    if (control.value.mine && id !== mapping.trainId) {
      // The lease belongs to the old train: give it back rather than let it lapse (operator_lost).
      releaseControl()
    }
    desiredTrain.value = id
    persist(KEY_TRAIN, id)
    try {
      if (id) await remoteControl()
      else if (rcId.value) await api('DELETE', `/api/remote-controls/${encodeURIComponent(rcId.value)}/train`)
    } catch (e) {
      note(`mapping failed: ${errorText(e)}`)
    }
  }

  // ---- trains ---------------------------------------------------------------------------------

  let lastMapAttempt = 0

  async function pollTrains() {
    try {
      const askedAt = now()
      trains.value = await api<TrainView[]>('GET', '/api/trains')
      serverReachable.value = true
      const mine = trains.value.find((t) => t.id === mapping.trainId)
      if (mine && mapping.known) control.value = onTrainControl(control.value, mapping.trainId, mine.control, askedAt)
      const want = desiredTrain.value
      // After a server restart the train reappears some time after we reconnect: map it then.
      if (manages.value && want && mapping.known && mapping.trainId !== want && trains.value.some((t) => t.id === want) && now() - lastMapAttempt > 2000) {
        lastMapAttempt = now()
        remoteControl().catch(() => {})
      }
    } catch (e) {
      // An HTTP error (429, 403, …) comes from a reachable server; a 401 stops the session.
      serverReachable.value = e instanceof ApiError
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
    if (otherTrain) telemetry.value = null
    pipeline.reset(otherTrain)
    pipeline.audio.configure(mapping.audio)
  }

  const supervisor = markRaw(
    new Supervisor(
      {
        remoteControl,
        open: {
          webrtc: (id, h) => {
            const owner = {}
            return openWebRtc(id, h, {
              signaling: signaling.value,
              name: me.value?.name,
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
          whep: (id, h) => checkedLink('whep', id, h, (i, hh) => openWhep(i, hh, { jitterBufferTargetMs })),
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
          // Everything lost: Auto starts over from the best soon; ask again what the server offers.
          if (lost) void askOffers()
        },
        onDetail: (kind, d) => {
          details[kind] = d.state === 'connecting' ? { ...d } : { ...details[kind], ...d }
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

  /**
   * A WebSocket whose upgrade the server refused (401/403) just fails, like one that cannot reach
   * the server, and so does a refused WebTransport CONNECT; a session the server closed because
   * the token was revoked (4003) ends like any other: after every failure, ask `GET /api/me`, whose
   * 401 stops everything and shows the token prompt.
   */
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
        if (!why?.unsupported) void checkAccess(kind, opened ? null : id)
      },
    })
  }

  /**
   * Auto leaves MQTT out until `GET /api/mqtt` says the server offers it to browsers (200 with a
   * broker `url`); a 404 (`mqtt_disabled`) or `url: null` keeps it out. Asked when links start, when
   * the mode becomes Auto, and when Auto lost everything; an unreachable server changes nothing.
   */
  let lastOfferCheck = -Infinity
  async function askOffers() {
    if (mode.value !== 'auto' || !linksRunning || !me.value) return
    const t = now()
    if (t - lastOfferCheck < OFFER_CHECK_EVERY_MS) return
    lastOfferCheck = t
    const gen = session
    let reason: string | null
    try {
      reason = mqttInfoProblem(await api<MqttInfo>('GET', '/api/mqtt'))
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) return // away, or a 401 (handled by its listener)
      reason = `the server offers no MQTT (${e.code || e.detail || '404'})`
    }
    if (gen !== session || !linksRunning) return
    if (reason !== (policy.value.unoffered.mqtt ?? null)) note(reason === null ? 'mqtt: the server offers it: Auto may use it' : `mqtt: Auto leaves it out: ${reason}`)
    supervisor.offered('mqtt', reason)
  }

  let lastAccessCheck = -Infinity
  async function checkAccess(kind: Kind, refusedRc: string | null) {
    const t = now()
    if (t - lastAccessCheck < ACCESS_CHECK_EVERY_MS || !me.value) return
    lastAccessCheck = t
    const gen = session
    try {
      await api<MeView>('GET', '/api/me')
    } catch {
      return // 401: handled by the listener; anything else: the server is away, the link retries
    }
    if (gen === session && refusedRc) note(`${kind}: not opened, though the token is valid: is remote control ${refusedRc} still ours?`)
  }

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
        if (control.value.pending || ev.code === 'control_held' || ev.code === 'not_in_control') {
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
        const who = ev.holder ? `${ev.holder.name} (${ev.holder.role}, ${ev.holder.transport})` : 'nobody'
        note(`control of ${ev.train_id}: ${who} — ${ev.reason}${control.value.mine ? ' (this console)' : ''}`)
        if (isOperatorLost(ev.reason) || control.value.lost?.at === control.value.eventAt) void refreshAudit()
        break
      }
      case 'error':
        note(`server refused a message: ${ev.code} ${ev.message}`)
        break
      case 'closing':
        break
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

  function takeControl(force = false) {
    sendControl(force ? 'take-over' : 'take')
  }

  function releaseControl() {
    sendControl('release')
  }

  function dismissControlLoss() {
    control.value = { ...control.value, lost: null }
  }

  // While this console holds (or is taking back) the lease its pings are the heartbeat.
  watch(
    () => control.value.wanted || control.value.mine,
    (holding) => {
      supervisor.setPingEvery(pingEveryMs(holding))
      note(`pinging every ${pingEveryMs(holding)} ms${holding ? ' (heartbeat of the control lease)' : ''}`)
    },
  )

  // ---- command audit (admins) -----------------------------------------------------------------

  let auditTimer: ReturnType<typeof setInterval> | undefined
  let auditBusy: Promise<void> | null = null

  /** Read the mapped train's audit entries newer than the last seen (all pages), keep the newest. */
  function refreshAudit(): Promise<void> {
    if (!audit.shown || !manages.value || audit.forbidden) return Promise.resolve()
    auditBusy ??= loadAudit().finally(() => (auditBusy = null))
    return auditBusy
  }

  async function loadAudit() {
    const train = mapping.trainId
    if (!train) {
      audit.entries = []
      audit.trainId = null
      return
    }
    if (audit.trainId !== train) {
      audit.trainId = train
      audit.entries = []
      audit.lastSeq = null
    }
    audit.loading = true
    try {
      let after = audit.lastSeq
      for (let i = 0; i < AUDIT_MAX_PAGES; i++) {
        const page = parseAuditPage(await api<unknown>('GET', auditQuery(train, AUDIT_PAGE, after)))
        if (audit.trainId !== train) return
        audit.entries = mergeAudit(audit.entries, page.entries, AUDIT_KEEP)
        const last = page.entries.at(-1)?.seq ?? null
        if (last !== null) after = audit.lastSeq = Math.max(last, audit.lastSeq ?? 0)
        if (page.next === null) break
        after = page.next
      }
      audit.error = null
      audit.loadedAt = Date.now()
    } catch (e) {
      // 403: not an admin (the role changed): no history, and no error to show.
      if (e instanceof ApiError && e.status === 403) audit.forbidden = true
      else audit.error = errorText(e)
    } finally {
      audit.loading = false
    }
  }

  function showAudit(shown: boolean) {
    audit.shown = shown && manages.value
    clearInterval(auditTimer)
    auditTimer = undefined
    if (audit.shown) {
      void refreshAudit()
      auditTimer = setInterval(() => void refreshAudit(), AUDIT_REFRESH_MS)
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
      if (!entry.internal) void refreshAudit()
    } else {
      entry.status = 'error'
      entry.code = ev.code
      if (!entry.internal) {
        lastCommandError.value = { request_id: entry.request_id, label: entry.label, code: ev.code, message: ev.message, meaning: explainCommandError(ev.code) }
      }
      note(`${entry.label}: refused, ${describeCommandError(ev.code, ev.message)}`)
    }
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  function setMode(m: Mode) {
    mode.value = m
    persist(KEY_MODE, m)
    note(`transport: ${m}`)
    if (linksRunning) supervisor.start(m)
    void askOffers()
  }

  /** WebRTC signaling: REST, MQTT or JSON-RPC. A WebRTC link under way or open is replaced by one signaling so. */
  function setSignaling(s: Signaling) {
    if (s === signaling.value) return
    signaling.value = s
    persist(KEY_SIGNALING, s)
    const how = { rest: 'REST (the server offers)', mqtt: 'MQTT topics (the console offers)', rpc: 'JSON-RPC on /rpc (the console offers)' }
    note(`WebRTC signaling: ${how[s]}`)
    const p = policy.value
    if (linksRunning && (p.active === 'webrtc' || p.pending === 'webrtc' || mode.value === 'webrtc')) supervisor.start(mode.value)
  }

  // ---- session --------------------------------------------------------------------------------

  /** Bumped whenever a session ends: answers to an older one are dropped. */
  let session = 0
  let linksRunning = false
  let trainTimer: ReturnType<typeof setInterval> | undefined
  let retryTimer: ReturnType<typeof setTimeout> | undefined

  function startLinks() {
    linksRunning = true
    supervisor.start(mode.value)
    void askOffers()
  }

  /** Close every link and forget the stream. */
  function stopLinks() {
    if (linksRunning) supervisor.stop()
    linksRunning = false
    mapping.trainId = null
    mapping.online = false
    mapping.cameras = []
    mapping.audio = []
    mapping.known = false
    control.value = { ...initialControl(), lost: control.value.lost }
    telemetry.value = null
    pipeline.clear()
    cameraStats.value = []
    audioStats.value = null
  }

  /** End the session: links, polls, timers. */
  function halt() {
    session++
    ensuring = null // a lookup for the old token must not serve the next session
    clearInterval(trainTimer)
    trainTimer = undefined
    clearTimeout(retryTimer)
    retryTimer = undefined
    stopLinks()
  }

  /** Start a session with the current token: who am I, then connect as my role allows. */
  async function begin() {
    halt()
    const gen = session
    let who: Me
    try {
      who = parseMe(await api<MeView>('GET', '/api/me'))
    } catch (e) {
      if (gen !== session) return // a 401 halted us; the prompt is up
      if (e instanceof ApiError && e.status === 404) {
        // A server without authentication: the console does everything, as it did before.
        who = { name: 'anonymous', role: 'admin' }
        note('the server has no /api/me (no authentication): full console')
      } else {
        if (!(e instanceof ApiError)) serverReachable.value = false
        note(`who am I: ${errorText(e)}; trying again`)
        retryTimer = setTimeout(() => void begin(), ME_RETRY_MS)
        return
      }
    }
    if (gen !== session) return
    me.value = who
    authError.value = null
    serverReachable.value = true
    note(`signed in as ${who.name} (${who.role})`)
    void pollTrains()
    trainTimer = setInterval(pollTrains, TRAIN_POLL_MS)
    if (canManage(who.role)) {
      rcId.value = load(KEY_RC)
      rcProblem.value = null
      noAssignment.value = null
      startLinks()
    } else {
      rcId.value = null
      await connectAssigned(gen)
    }
  }

  /** The server refused the token we hold: stop, and ask for another. */
  onUnauthorized((message, used) => {
    if (used !== getToken()) return // an answer to a token replaced meanwhile
    const first = authError.value === null
    halt()
    me.value = null
    trains.value = []
    assigned.value = []
    noAssignment.value = null
    rcId.value = null
    authError.value = message || 'the server refused the access token'
    if (first) note(`the server refused the access token: ${authError.value}`)
  })

  /** Use this token (typed or pasted into the prompt; a console URL with `#token=` works too). */
  function useToken(text: string): boolean {
    const t = normalizeTokenInput(text)
    if (!t) return false
    applyToken(t, 'input')
    return true
  }

  function applyToken(t: string, source: TokenSource) {
    setToken(t)
    saveToken(storage(), t)
    token.value = t
    tokenSource.value = source
    authError.value = null
    me.value = null
    note(`access token from the ${source}`)
    if (started) void begin()
  }

  function forgetToken() {
    setToken(null)
    saveToken(storage(), null)
    token.value = null
    tokenSource.value = null
    halt()
    me.value = null
    authError.value = null
    trains.value = []
    assigned.value = []
    noAssignment.value = null
    rcId.value = null
    note('access token forgotten')
    if (started) void begin()
  }

  /** The fragment changed (a console URL pasted into this tab): take its token and `rc`. */
  function readFragment() {
    const r = resolveToken({ location, history, storage: storage() })
    const rcChanged = r.rc !== null && r.rc !== rcFromUrl.value
    if (r.rc !== null) rcFromUrl.value = r.rc
    if (r.source === 'fragment' && r.token !== token.value) applyToken(r.token as string, 'fragment')
    else if (rcChanged && !manages.value && started) void begin()
  }

  let started = false
  function start() {
    if (started) return
    started = true
    if (qTrain) persist(KEY_TRAIN, qTrain)
    setInterval(() => {
      cameraStats.value = pipeline.stats()
      audioStats.value = pipeline.audio.stats()
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
    }, STATS_EVERY_MS)
    void begin()
  }

  /** A plain snapshot for the end-to-end test (`window.__railcast`). */
  function testHook() {
    const stats = Object.fromEntries(pipeline.stats().map((s) => [s.camera, s]))
    const est = pipeline.clockEstimate()
    const la = lastAck.value
    return {
      mode: mode.value,
      signaling: signaling.value,
      rpcPeers: rpcPeers.value ? { self: rpcPeers.value.self, peers: rpcPeers.value.peers.map((p) => ({ ...p, capabilities: [...p.capabilities] })) } : null,
      transport: policy.value.active,
      pending: policy.value.pending,
      state: phase.value,
      lastError: policy.value.lastError,
      opens: supervisor.opens,
      ranking: rankingOf(DEFAULT_POLICY, policy.value),
      skipped: { ...policy.value.unoffered, ...policy.value.unsupported, ...policy.value.disabled },
      remoteControlId: rcId.value,
      trainId: mapping.trainId,
      online: mapping.online,
      cameras: mapping.cameras.map((c) => c.id),
      audioSources: mapping.audio.map((a) => a.id),
      audio: pipeline.audio.stats(),
      details: JSON.parse(JSON.stringify(details)) as Record<Kind, Record<string, string>>,
      stats,
      media: media.value
        ? {
            tracks: media.value.streams.filter((st) => st.getVideoTracks().length > 0).length,
            stats: trackStats.value,
            framesPresented: { ...framesPresented },
            latency: media.value.streams.map((_, i) => mediaMeter.stats(i)),
            audio: media.value.audio ? { muted: whepAudioMuted.value, stats: whepAudio.value } : null,
          }
        : null,
      clockOffsetMs: est.offsetMs,
      clock: est,
      lastAck: la ? { request_id: la.request_id, label: la.label, status: la.status, rtt_ms: la.rtt_ms, train_rtt_ms: la.train_rtt_ms, transport: la.transport } : null,
      commandBlocked: commandBlocked.value,
      rejected: { ...pipeline.rejected },
      lastRejection: pipeline.lastRejection,
      payloadLimit: pipeline.payloadLimit(),
      user: me.value?.name ?? null,
      role: role.value,
      hasToken: !!token.value,
      tokenSource: tokenSource.value,
      tokenPrompt: tokenPrompt.value,
      authError: authError.value,
      assignedRemoteControls: assigned.value.map((rc) => rc.id),
      noAssignment: noAssignment.value,
      trainListReadOnly: !!me.value && !manages.value,
      lastCommandError: lastCommandError.value ? { ...lastCommandError.value } : null,
      acks: acks.value.slice(0, 10).map((a) => ({ request_id: a.request_id, label: a.label, status: a.status, code: a.code ?? null, message: a.message })),
      consoleId,
      control: JSON.parse(JSON.stringify(control.value)) as ControlState,
      controlOffer: controlOffered.value,
      pingEveryMs: supervisor.pingEveryMs,
      audit: { shown: audit.shown, forbidden: audit.forbidden, error: audit.error, entries: audit.entries.length, newest: audit.entries[0] ? { seq: audit.entries[0].seq, command: audit.entries[0].command.type ?? null, principal: audit.entries[0].principal } : null },
    }
  }

  return {
    token, tokenSource, me, role, authError, tokenPrompt, assigned, noAssignment, rcProblem, manages,
    canCommand: computed(() => canCommand(role.value)),
    trains, serverReachable, rcId, desiredTrain, mapping, mappingProblem, mode, signaling, rpcPeers, policy, phase, details, log, telemetry,
    acks, lastAck, lastCommandError, cameraStats, audioStats, clock, rejected, lastRejection, commandBlocked, trackStats,
    // Not the MediaTracks themselves: pinia would unwrap MediaStream's DOM type into the store's.
    hasMedia: computed(() => media.value !== null),
    hasWhepAudio: computed(() => !!media.value?.audio),
    whepAudioStream: (): MediaStream | null => media.value?.audio ?? null,
    whepAudio,
    whepAudioMuted,
    streamAt: (index: number): MediaStream | null => media.value?.streams[index] ?? null,
    mediaLatency,
    framePresented: (index: number, frame: PresentedFrame): void => {
      framesPresented[index] = (framesPresented[index] ?? 0) + 1
      mediaMeter.presented(index, frame)
    },
    consoleId, control, controlOffer: controlOffered, takeControl, releaseControl, dismissControlLoss, audit, showAudit, refreshAudit,
    start, setMode, setSignaling, selectTrain, send, testHook, useToken, forgetToken, readFragment,
    attachCanvas: (camera: number, canvas: HTMLCanvasElement | null) => pipeline.attachCanvas(camera, canvas),
    /** Mute or unmute the cab audio; call from a click (unmuting needs a user gesture). */
    setAudioMuted: async (muted: boolean) => {
      if (media.value?.audio) {
        // WHEP: the track plays in an <audio> element (AudioPanel), muted until this click.
        whepAudioMuted.value = muted
        note(muted ? 'cab audio muted' : 'cab audio on (WHEP track)')
        return
      }
      await pipeline.audio.setMuted(muted)
      audioStats.value = pipeline.audio.stats()
      note(muted ? 'cab audio muted' : `cab audio on (AudioContext ${audioStats.value.contextState})`)
    },
  }
})
