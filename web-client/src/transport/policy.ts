/**
 * Which transport to run, when to fall back and when to come back: a pure state machine (events
 * in, actions out; no timers, no sockets), driven by {@link ./supervisor}.
 *
 * Modes:
 * - `webrtc`, `webtransport`, `websocket`, `mqtt`, `whep`: that transport only; after a failure or a loss,
 *   reconnect with exponential backoff. `whep` (media tracks played by `<video>`) is never in
 *   Auto's default ranking: it is a different way of showing video, chosen on purpose.
 * - `auto`: the transports of `PolicyConfig.ranking`, best first (default WebRTC, WebTransport,
 *   WebSocket, MQTT), leaving out those this browser lacks or the server does not offer:
 *   - try the best; when it does not open within `fallbackOpenTimeoutMs` (or fails), try the next
 *     at once, down to the last, which has `openTimeoutMs`;
 *   - while a transport that is not the best carries the video, probe the better ones later, with
 *     backoff (`probeMinMs` doubling to `probeMaxMs`): a probe tries the best, then each next one
 *     still better than the active transport; the first that opens takes over and the old one is
 *     closed. When none opens, the next probe is scheduled;
 *   - when the active transport dies, fall to the next one at once; when the last one dies, or
 *     everything failed, reconnect with backoff, from the best.
 *   A transport that fails as unsupported (the server answers that it does not offer it) is left
 *   out of the ranking until Auto starts over from the best after everything was lost (a restarted
 *   server may offer it again); one the browser lacks (given at `start`) is left out for the run.
 *   A transport of `PolicyConfig.askServer` (MQTT: the server may have no broker) is left out
 *   until the server says it offers it (an `offered` event: the store asks `GET /api/mqtt`), and
 *   again whenever it says it does not; that answer outlives start-overs, until the next one.
 *   With two transports this is what Auto always did: WebRTC first, WebSocket as the fall-back.
 */

export type Kind = 'webrtc' | 'webtransport' | 'websocket' | 'mqtt' | 'whep'
export type Mode = 'auto' | Kind
export type TimerName = 'reconnect' | 'probe'

/** Every transport, in the order the UI lists them. */
export const KINDS: readonly Kind[] = ['webrtc', 'webtransport', 'websocket', 'mqtt', 'whep']

/** Why Auto leaves out a transport of `askServer` before the server answered. */
export const NOT_ASKED_YET = 'not known yet whether the server offers it'

export interface PolicyConfig {
  /**
   * Auto's order of preference, best first. WebRTC leads: it crosses NATs (ICE, TURN), carries video
   * unreliably (no head-of-line blocking) and is the transport the console has used longest.
   * WebTransport comes next: QUIC datagrams, also unreliable, and it opens in milliseconds, but it
   * needs the server's own UDP port to be reachable (no ICE, no TURN) and it is newer. WebSocket is
   * the fall-back that passes wherever HTTP does, at the cost of TCP's head-of-line blocking. MQTT
   * comes last: it goes through a broker (one more hop, and TCP under its WebSocket), and only
   * where the server has one.
   */
  ranking: Kind[]
  /**
   * Transports Auto leaves out until the server says it offers them (`offered` events): MQTT,
   * which needs a broker the server may not have (`GET /api/mqtt` answers 404, or no URL).
   */
  askServer?: Kind[]
  /** Auto: how long a transport that is not the last of the ranking may take to open. */
  fallbackOpenTimeoutMs: number
  /** A forced transport, and Auto's last: how long an attempt may take. */
  openTimeoutMs: number
  reconnectMinMs: number
  reconnectMaxMs: number
  /** Auto below the best: first delay before the better transports are probed, doubled after each failed probe. */
  probeMinMs: number
  probeMaxMs: number
}

export const DEFAULT_POLICY: PolicyConfig = {
  ranking: ['webrtc', 'webtransport', 'websocket', 'mqtt'],
  askServer: ['mqtt'],
  fallbackOpenTimeoutMs: 3000,
  openTimeoutMs: 10_000,
  reconnectMinMs: 500,
  reconnectMaxMs: 5000,
  probeMinMs: 10_000,
  probeMaxMs: 60_000,
}

export interface PolicyState {
  mode: Mode
  /** The transport carrying video and commands now. */
  active: Kind | null
  /** An attempt under way; in auto it may run beside an active transport (a probe of a better one). */
  pending: Kind | null
  /** Delay of the next reconnect after everything failed. */
  reconnectMs: number
  /** Delay of the next probe while auto runs below the best transport. */
  probeMs: number
  reconnectScheduled: boolean
  probeScheduled: boolean
  lastError: string | null
  running: boolean
  /** Transports this browser lacks (given at `start`), and why: Auto leaves them out for the run. */
  unsupported: Partial<Record<Kind, string>>
  /** Transports the server said it does not offer, and why: Auto leaves them out until it starts over. */
  disabled: Partial<Record<Kind, string>>
  /**
   * Transports of `askServer` the server has not said it offers (yet), and why: Auto leaves them out
   * until an `offered` event says otherwise (kept across start-overs).
   */
  unoffered: Partial<Record<Kind, string>>
}

export type PolicyEvent =
  | { type: 'start'; mode: Mode; unsupported?: Partial<Record<Kind, string>> }
  | { type: 'stop' }
  /** An attempt of `kind` opened. */
  | { type: 'opened'; kind: Kind }
  /**
   * An attempt failed or timed out, or an open transport closed. `unsupported`: the server does not
   * offer this transport (Auto leaves it out, see above).
   */
  | { type: 'failed'; kind: Kind; reason: string; unsupported?: boolean }
  | { type: 'timer'; name: TimerName }
  /** The server says whether it offers `kind` (`reason` null) or not (why): see `askServer`. */
  | { type: 'offered'; kind: Kind; reason: string | null }

export type PolicyAction =
  | { type: 'connect'; kind: Kind; timeoutMs: number }
  | { type: 'disconnect'; kind: Kind }
  | { type: 'schedule'; name: TimerName; delayMs: number }
  | { type: 'cancel'; name: TimerName }

export type Phase = 'stopped' | 'connecting' | 'connected' | 'waiting'

export function initialPolicy(cfg: PolicyConfig = DEFAULT_POLICY, mode: Mode = 'auto'): PolicyState {
  return {
    mode,
    active: null,
    pending: null,
    reconnectMs: cfg.reconnectMinMs,
    probeMs: cfg.probeMinMs,
    reconnectScheduled: false,
    probeScheduled: false,
    lastError: null,
    running: false,
    unsupported: {},
    disabled: {},
    unoffered: Object.fromEntries((cfg.askServer ?? []).map((k) => [k, NOT_ASKED_YET])),
  }
}

/** What the UI shows as the overall state. */
export function phaseOf(s: PolicyState): Phase {
  if (!s.running) return 'stopped'
  if (s.active) return 'connected'
  if (s.pending) return 'connecting'
  return 'waiting'
}

/** Auto's ranking now: the configured one without what the browser lacks or the server refused or does not offer. */
export function rankingOf(cfg: PolicyConfig, s: PolicyState): Kind[] {
  return cfg.ranking.filter((k) => !(k in s.unsupported) && !(k in s.disabled) && !(k in s.unoffered))
}

export function step(
  cfg: PolicyConfig,
  s: PolicyState,
  ev: PolicyEvent,
): { state: PolicyState; actions: PolicyAction[] } {
  const actions: PolicyAction[] = []
  const next: PolicyState = { ...s }
  const auto = () => next.mode === 'auto'
  const ranked = () => rankingOf(cfg, next)
  /** Position in the configured ranking (also for a transport left out since). */
  const rank = (k: Kind) => {
    const i = cfg.ranking.indexOf(k)
    return i < 0 ? cfg.ranking.length : i
  }
  /** The first usable transport ranked below `k`. */
  const after = (k: Kind) => ranked().find((x) => rank(x) > rank(k)) ?? null
  const best = () => ranked()[0] ?? null
  const connect = (kind: Kind) => {
    // Auto gives a transport little time when another can take over; a forced one, or the last, more.
    const timeoutMs = auto() && after(kind) ? cfg.fallbackOpenTimeoutMs : cfg.openTimeoutMs
    next.pending = kind
    actions.push({ type: 'connect', kind, timeoutMs })
  }
  const firstAttempt = () => {
    const k = auto() ? best() : (next.mode as Kind)
    if (k) connect(k)
    else if (!next.reconnectScheduled) scheduleReconnect() // nothing usable (a ranking of only what is missing)
  }
  const scheduleReconnect = () => {
    actions.push({ type: 'schedule', name: 'reconnect', delayMs: next.reconnectMs })
    next.reconnectScheduled = true
    next.reconnectMs = Math.min(next.reconnectMs * 2, cfg.reconnectMaxMs)
  }
  const scheduleProbe = () => {
    actions.push({ type: 'schedule', name: 'probe', delayMs: next.probeMs })
    next.probeScheduled = true
    next.probeMs = Math.min(next.probeMs * 2, cfg.probeMaxMs)
  }
  const cancelProbe = () => {
    if (next.probeScheduled) actions.push({ type: 'cancel', name: 'probe' })
    next.probeScheduled = false
  }
  const cancelTimers = () => {
    if (next.reconnectScheduled) actions.push({ type: 'cancel', name: 'reconnect' })
    next.reconnectScheduled = false
    cancelProbe()
  }

  switch (ev.type) {
    case 'start':
    case 'stop': {
      cancelTimers()
      if (next.pending) actions.push({ type: 'disconnect', kind: next.pending })
      if (next.active) actions.push({ type: 'disconnect', kind: next.active })
      const unsupported = ev.type === 'start' ? { ...ev.unsupported } : next.unsupported
      const fresh = initialPolicy(cfg, ev.type === 'start' ? ev.mode : next.mode)
      // What the server said it offers stays known: the store asks again when it matters.
      Object.assign(next, fresh, { running: ev.type === 'start', unsupported, unoffered: next.unoffered })
      if (ev.type === 'start') firstAttempt()
      break
    }

    case 'opened': {
      if (!s.running || s.pending !== ev.kind) {
        // Nobody asked for it (a stale attempt): close it.
        actions.push({ type: 'disconnect', kind: ev.kind })
        break
      }
      next.pending = null
      if (s.active && s.active !== ev.kind) actions.push({ type: 'disconnect', kind: s.active })
      next.active = ev.kind
      next.lastError = null
      next.reconnectMs = cfg.reconnectMinMs
      if (next.reconnectScheduled) actions.push({ type: 'cancel', name: 'reconnect' })
      next.reconnectScheduled = false
      if (!auto()) break
      if (ev.kind === best()) {
        next.probeMs = cfg.probeMinMs
        cancelProbe()
      } else if (!next.probeScheduled) {
        // Below the best: look for a better one later. (A probe that reached a middle transport
        // keeps its backoff: the best one still failed just now.)
        scheduleProbe()
      }
      break
    }

    case 'failed': {
      if (!s.running) break
      if (ev.unsupported && !(ev.kind in next.disabled)) next.disabled = { ...next.disabled, [ev.kind]: ev.reason }
      if (s.pending === ev.kind) {
        next.pending = null
        next.lastError = `${ev.kind}: ${ev.reason}`
        const lower = auto() ? after(ev.kind) : null
        if (s.active) {
          // A probe failed while a worse transport carries on: try the next better one, if any.
          if (lower && rank(lower) < rank(s.active)) connect(lower)
          else if (!next.probeScheduled) scheduleProbe()
        } else if (lower) {
          connect(lower) // fall back
        } else {
          cancelProbe() // nothing to probe from: the reconnect starts from the best
          if (!next.reconnectScheduled) scheduleReconnect()
        }
      } else if (s.active === ev.kind) {
        next.active = null
        next.lastError = `${ev.kind}: ${ev.reason}`
        const lower = auto() ? after(ev.kind) : null
        if (auto() && s.pending) {
          // The active transport died during a probe of a better one: let the probe decide (if it
          // fails, Auto falls from there as from a first attempt).
          cancelProbe()
        } else if (lower) {
          connect(lower) // fall back at once; a scheduled probe stays
        } else {
          cancelProbe()
          if (!next.reconnectScheduled) scheduleReconnect()
        }
      }
      // Anything else is a stale attempt: ignored.
      break
    }

    case 'offered': {
      // Only what Auto must ask about; the attempts under way find out by themselves.
      if (!cfg.askServer?.includes(ev.kind)) break
      const unoffered = { ...next.unoffered }
      if (ev.reason === null) {
        delete unoffered[ev.kind]
        if (ev.kind in next.disabled) {
          const disabled = { ...next.disabled }
          delete disabled[ev.kind]
          next.disabled = disabled
        }
      } else {
        unoffered[ev.kind] = ev.reason
      }
      next.unoffered = unoffered
      break
    }

    case 'timer': {
      if (!s.running) break
      if (ev.name === 'reconnect') {
        next.reconnectScheduled = false
        if (!s.active && !s.pending) {
          // Everything was lost: start over from the best, asking again for what the server refused.
          next.disabled = {}
          firstAttempt()
        }
      } else {
        next.probeScheduled = false
        const top = best()
        if (auto() && s.active && !s.pending && top && rank(top) < rank(s.active)) connect(top)
      }
      break
    }
  }
  return { state: next, actions }
}
