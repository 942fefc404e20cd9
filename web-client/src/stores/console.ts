/**
 * The console's state, as one facade (`useConsole()`) over its parts:
 * - who we are: {@link createIdentity} (token, `GET /api/me`, role);
 * - the trains (`GET /api/trains`, polled) and this console's remote control: an admin's own
 *   ({@link ensureOwnRemoteControl}), or one an admin assigned ({@link chooseRemoteControl});
 * - the viewing session of the mapped train: {@link createTrainSession} (links, video pipeline,
 *   figures and trends, commands, control lease). The video wall makes one such session per cell;
 * - the command history: {@link createAudit}.
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
import { computed, ref } from 'vue'
import type { MeView, RemoteControlView, TrainView } from '../api'
import { getToken, normalizeTokenInput, onUnauthorized, type TokenSource } from '../auth'
import {
  canCommand, canManage, chooseRemoteControl, commandBlockReason, noAssignmentMessage, parseMe, READ_ONLY_TRAINS_NOTE, type Me,
} from '../roles'
import { api, ApiError } from '../transport/link'
import { parseSignaling, type Signaling } from '../transport/mqtt-signaling'
import { mqttInfoProblem, type MqttInfo } from '../transport/mqtt'
import { DEFAULT_POLICY, KINDS, rankingOf, type Kind, type Mode } from '../transport/policy'
import { consoleIdFrom, controlOffer, onTrainControl, type ControlState } from '../control'
import { createTrainSession } from '../session/train-session'
import { errorText, load, now, persist, tabStorage } from '../session/storage'
import { createAudit } from './audit'
import { createIdentity } from './identity'
import { ensureOwnRemoteControl } from './remote-control'

export type { AckEntry, AckStatus, CommandErrorView } from '../session/train-session'

/** The remote control an admin's console created for itself. */
const KEY_RC = 'railcast.remoteControlId'
/** The assigned remote control an operator's or viewer's console last used. */
const KEY_ASSIGNED_RC = 'railcast.assignedRemoteControlId'
const KEY_TRAIN = 'railcast.train'
const KEY_MODE = 'railcast.transport'
const KEY_SIGNALING = 'railcast.signaling'
const TRAIN_POLL_MS = 1000
/** No remote control assigned yet: ask again this often. */
export const ASSIGNMENT_POLL_MS = 3000
/** `GET /api/me` failed (server down): try again this often. */
const ME_RETRY_MS = 2000
/** After a failed WebSocket, `GET /api/me` at most this often. */
const ACCESS_CHECK_EVERY_MS = 2000
/** Auto asks `GET /api/mqtt` (does the server offer MQTT?) at most this often. */
const OFFER_CHECK_EVERY_MS = 2000

export interface LogLine {
  at: string
  text: string
}

export function isMode(s: string | null): s is Mode {
  return s === 'auto' || (KINDS as readonly (string | null)[]).includes(s)
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
  const id = createIdentity()
  const { token, tokenSource, rcFromUrl, me, authError, role, manages, tokenPrompt } = id
  /** Remote controls assigned to this operator or viewer (`GET /api/remote-controls`). */
  const assigned = ref<RemoteControlView[]>([])
  /** "no remote control is assigned to NAME yet", while waiting for one. */
  const noAssignment = ref<string | null>(null)
  const rcProblem = ref<string | null>(null)

  const trains = ref<TrainView[]>([])
  const serverReachable = ref<boolean | null>(null)
  const rcId = ref<string | null>(null)
  const desiredTrain = ref<string | null>(qTrain ?? load(KEY_TRAIN))
  const mappingProblem = ref<string | null>(null)
  const storedMode = load(KEY_MODE)
  const mode = ref<Mode>(isMode(qTransport) ? qTransport : isMode(storedMode) ? storedMode : 'auto')
  /** How the WebRTC link signals: REST (the server offers), MQTT topics or JSON-RPC (the console offers). */
  const signaling = ref<Signaling>(qSignaling ?? parseSignaling(load(KEY_SIGNALING)) ?? 'rest')
  const log = ref<LogLine[]>([])
  /** This tab's console id: sent with every `take_control`, the same on all its links. */
  const consoleId = consoleIdFrom(tabStorage())

  function note(text: string) {
    log.value.unshift({ at: new Date().toISOString().slice(11, 23), text })
    if (log.value.length > 80) log.value.length = 80
  }

  // The mapped train's viewing session.
  const train = createTrainSession({
    remoteControl: () => remoteControl(),
    consoleId,
    initialMode: mode.value,
    signaling: () => signaling.value,
    name: () => me.value?.name,
    jitterBufferTargetMs,
    note,
    onLinkClosed: (kind, refusedRc) => void checkAccess(kind, refusedRc),
    onAllLost: () => void askOffers(),
    onAudited: () => void auditor.refresh(),
  })
  const { mapping, policy, control } = train

  const auditor = createAudit({ manages, trainId: () => mapping.trainId })

  const commandBlocked = computed<string | null>(() =>
    commandBlockReason({ role: role.value, connected: !!policy.value.active, trainId: mapping.trainId, online: mapping.online, waiting: noAssignment.value }),
  )
  const controlOffered = computed(() => controlOffer(role.value, control.value, !!mapping.trainId && !!policy.value.active))

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
    const want = desiredTrain.value
    const rc = await ensureOwnRemoteControl({ id: rcId.value, want, me: me.value, name: `console ${new Date().toISOString().slice(0, 19)}`, note })
    if (rc.created) {
      rcId.value = rc.id
      persist(KEY_RC, rc.id)
    }
    if (want) mappingProblem.value = rc.problem
    return rc.id
  }

  async function refreshAssigned(): Promise<RemoteControlView[]> {
    const list = await api<RemoteControlView[]>('GET', '/api/remote-controls')
    assigned.value = Array.isArray(list) ? list : []
    return assigned.value
  }

  /** Connect as this assigned remote control. */
  function useAssigned(rc: string, problem: string | null) {
    if (rcId.value !== rc) note(`using remote control ${rc}${problem ? ` (${problem})` : ''}`)
    rcId.value = rc
    rcProblem.value = problem
    noAssignment.value = null
    persist(KEY_ASSIGNED_RC, rc)
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

  async function selectTrain(trainId: string | null) {
    if (!manages.value) {
      note(`only an admin can change the mapping: ${READ_ONLY_TRAINS_NOTE}`)
      return
    }
    if (control.value.mine && trainId !== mapping.trainId) {
      // The lease belongs to the old train: give it back rather than let it lapse (operator_lost).
      train.releaseControl()
    }
    desiredTrain.value = trainId
    persist(KEY_TRAIN, trainId)
    try {
      if (trainId) await remoteControl()
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

  // ---- links ----------------------------------------------------------------------------------

  /**
   * Auto leaves MQTT out until `GET /api/mqtt` says the server offers it to browsers (200 with a
   * broker `url`); a 404 (`mqtt_disabled`) or `url: null` keeps it out. Asked when links start, when
   * the mode becomes Auto, and when Auto lost everything; an unreachable server changes nothing.
   */
  let lastOfferCheck = -Infinity
  async function askOffers() {
    if (mode.value !== 'auto' || !train.running || !me.value) return
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
    if (gen !== session || !train.running) return
    if (reason !== (policy.value.unoffered.mqtt ?? null)) note(reason === null ? 'mqtt: the server offers it: Auto may use it' : `mqtt: Auto leaves it out: ${reason}`)
    train.offered('mqtt', reason)
  }

  /**
   * A WebSocket whose upgrade the server refused (401/403) just fails, like one that cannot reach
   * the server, and so does a refused WebTransport CONNECT; a session the server closed because
   * the token was revoked (4003) ends like any other: after every failure, ask `GET /api/me`, whose
   * 401 stops everything and shows the token prompt.
   */
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

  function setMode(m: Mode) {
    mode.value = m
    persist(KEY_MODE, m)
    note(`transport: ${m}`)
    if (train.running) train.start(m)
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
    if (train.running && (p.active === 'webrtc' || p.pending === 'webrtc' || mode.value === 'webrtc')) train.start(mode.value)
  }

  // ---- session --------------------------------------------------------------------------------

  /** Bumped whenever a session ends: answers to an older one are dropped. */
  let session = 0
  let trainTimer: ReturnType<typeof setInterval> | undefined
  let retryTimer: ReturnType<typeof setTimeout> | undefined

  /** The wall shows: the single view's links wait (unless they carry this console's control lease). */
  let background = false
  /** The session wants links (started and not stopped), whether or not they wait for the wall. */
  let linksWanted = false
  const holding = () => control.value.wanted || control.value.mine

  function startLinks() {
    linksWanted = true
    if (background && !holding()) return
    train.start(mode.value)
    void askOffers()
  }

  /** Close every link and forget the stream. */
  function stopLinks() {
    linksWanted = false
    train.stop()
  }

  /**
   * While the video wall shows, the single view's train would still be received and decoded for
   * nothing: its links close, and open again when the wall goes. Not while this console holds the
   * train's control lease: closing them would end it (`operator_lost`).
   */
  function setBackground(on: boolean) {
    if (on === background) return
    background = on
    if (on && train.running && !holding()) {
      train.stop()
      note('another view shows: the single view closes its links until it comes back')
    } else if (!on && linksWanted && !train.running) {
      note('back to the single view: it connects again')
      train.start(mode.value)
      void askOffers()
    }
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

  /** Forget who we were and what we were given (a 401, a forgotten token). */
  function signOut() {
    halt()
    me.value = null
    trains.value = []
    assigned.value = []
    noAssignment.value = null
    rcId.value = null
  }

  /** The server refused the token we hold: stop, and ask for another. */
  onUnauthorized((message, used) => {
    if (used !== getToken()) return // an answer to a token replaced meanwhile
    const first = authError.value === null
    signOut()
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
    id.hold(t, source)
    note(`access token from the ${source}`)
    if (started) void begin()
  }

  function forgetToken() {
    id.hold(null, null)
    signOut()
    note('access token forgotten')
    if (started) void begin()
  }

  /** The fragment changed (a console URL pasted into this tab): take its token and `rc`. */
  function readFragment() {
    const r = id.reread()
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
    train.startFigures()
    void begin()
  }

  /** A plain snapshot for the end-to-end test (`window.__railcast`). */
  function testHook() {
    const pipeline = train.pipeline
    const stats = Object.fromEntries(pipeline.stats().map((s) => [s.camera, s]))
    const est = pipeline.clockEstimate()
    const la = train.lastAck.value
    const rpcPeers = train.rpcPeers.value
    const media = train.media.value
    const audit = auditor.audit
    return {
      mode: mode.value,
      signaling: signaling.value,
      rpcPeers: rpcPeers ? { self: rpcPeers.self, peers: rpcPeers.peers.map((p) => ({ ...p, capabilities: [...p.capabilities] })) } : null,
      transport: policy.value.active,
      pending: policy.value.pending,
      state: train.phase.value,
      lastError: policy.value.lastError,
      opens: train.supervisor.opens,
      ranking: rankingOf(DEFAULT_POLICY, policy.value),
      skipped: { ...policy.value.unoffered, ...policy.value.unsupported, ...policy.value.disabled },
      remoteControlId: rcId.value,
      trainId: mapping.trainId,
      online: mapping.online,
      cameras: mapping.cameras.map((c) => c.id),
      audioSources: mapping.audio.map((a) => a.id),
      audio: pipeline.audio.stats(),
      details: JSON.parse(JSON.stringify(train.details)) as Record<Kind, Record<string, string>>,
      stats,
      media: media
        ? {
            tracks: media.streams.filter((st) => st.getVideoTracks().length > 0).length,
            stats: train.trackStats.value,
            framesPresented: { ...train.framesPresented },
            latency: media.streams.map((_, i) => train.mediaMeter.stats(i)),
            audio: media.audio ? { muted: train.whepAudioMuted.value, stats: train.whepAudio.value } : null,
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
      lastCommandError: train.lastCommandError.value ? { ...train.lastCommandError.value } : null,
      acks: train.acks.value.slice(0, 10).map((a) => ({ request_id: a.request_id, label: a.label, status: a.status, code: a.code ?? null, message: a.message })),
      consoleId,
      control: JSON.parse(JSON.stringify(control.value)) as ControlState,
      controlOffer: controlOffered.value,
      pingEveryMs: train.supervisor.pingEveryMs,
      audit: { shown: audit.shown, forbidden: audit.forbidden, error: audit.error, entries: audit.entries.length, newest: audit.entries[0] ? { seq: audit.entries[0].seq, command: audit.entries[0].command.type ?? null, principal: audit.entries[0].principal } : null },
      trendPoints: train.trendPoints(),
    }
  }

  const media = train.media
  return {
    token, tokenSource, me, role, authError, tokenPrompt, assigned, noAssignment, rcProblem, manages,
    canCommand: computed(() => canCommand(role.value)),
    trains, serverReachable, rcId, desiredTrain, mapping, mappingProblem, mode, signaling,
    rpcPeers: train.rpcPeers, policy, phase: train.phase, details: train.details, log, telemetry: train.telemetry,
    acks: train.acks, lastAck: train.lastAck, lastCommandError: train.lastCommandError, cameraStats: train.cameraStats,
    audioStats: train.audioStats, clock: train.clock, rejected: train.rejected, lastRejection: train.lastRejection, commandBlocked,
    trackStats: train.trackStats, trendTick: train.trendTick,
    // Not the MediaTracks themselves: pinia would unwrap MediaStream's DOM type into the store's.
    hasMedia: computed(() => media.value !== null),
    hasWhepAudio: computed(() => !!media.value?.audio),
    whepAudioStream: (): MediaStream | null => media.value?.audio ?? null,
    whepAudio: train.whepAudio,
    whepAudioMuted: train.whepAudioMuted,
    streamAt: (index: number): MediaStream | null => media.value?.streams[index] ?? null,
    mediaLatency: train.mediaLatency,
    framePresented: train.framePresented,
    consoleId, control, controlOffer: controlOffered,
    takeControl: train.takeControl, releaseControl: train.releaseControl, dismissControlLoss: train.dismissControlLoss,
    audit: auditor.audit, showAudit: auditor.show, refreshAudit: auditor.refresh,
    start, setMode, setSignaling, selectTrain, setBackground, testHook, useToken, forgetToken, readFragment,
    send: (action: Parameters<typeof train.send>[0], internal = false) => train.send(action, internal),
    attachCanvas: train.attachCanvas,
    /** The mapped train's session itself (the trend panel reads its rings; not reactive). */
    trainSession: () => train,
    /** Mute or unmute the cab audio; call from a click (unmuting needs a user gesture). */
    setAudioMuted: async (muted: boolean) => {
      if (media.value?.audio) {
        // WHEP: the track plays in an <audio> element (AudioPanel), muted until this click.
        train.whepAudioMuted.value = muted
        note(muted ? 'cab audio muted' : 'cab audio on (WHEP track)')
        return
      }
      await train.pipeline.audio.setMuted(muted)
      train.audioStats.value = train.pipeline.audio.stats()
      note(muted ? 'cab audio muted' : `cab audio on (AudioContext ${train.audioStats.value.contextState})`)
    },
  }
})
