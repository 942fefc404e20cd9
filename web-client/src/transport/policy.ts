/**
 * Which transport to run, when to fall back and when to come back: a pure state machine (events
 * in, actions out; no timers, no sockets), driven by {@link ./supervisor}.
 *
 * Modes:
 * - `webrtc`, `websocket`: that transport only; after a failure or a loss, reconnect with
 *   exponential backoff.
 * - `auto`: WebRTC first. When it does not open within `webrtcOpenTimeoutMs` (or the offer fails),
 *   fall back to WebSocket at once, and probe WebRTC again later, with backoff, while WebSocket carries
 *   the video; when a probe opens, switch to it and close the WebSocket. If an open WebRTC session
 *   dies, fall back to WebSocket at once. If everything is down, reconnect with backoff, WebRTC first.
 */

export type Kind = 'webrtc' | 'websocket'
export type Mode = 'auto' | Kind
export type TimerName = 'reconnect' | 'webrtc_retry'

export interface PolicyConfig {
  /** Auto: how long WebRTC may take to open before WebSocket takes over. */
  webrtcOpenTimeoutMs: number
  /** A forced transport: how long an attempt may take. */
  openTimeoutMs: number
  reconnectMinMs: number
  reconnectMaxMs: number
  /** Auto on WebSocket: first delay before WebRTC is tried again, doubled after each failed probe. */
  webrtcRetryMinMs: number
  webrtcRetryMaxMs: number
}

export const DEFAULT_POLICY: PolicyConfig = {
  webrtcOpenTimeoutMs: 3000,
  openTimeoutMs: 10_000,
  reconnectMinMs: 500,
  reconnectMaxMs: 5000,
  webrtcRetryMinMs: 10_000,
  webrtcRetryMaxMs: 60_000,
}

export interface PolicyState {
  mode: Mode
  /** The transport carrying video and commands now. */
  active: Kind | null
  /** An attempt under way; in auto it may run beside an active WebSocket (a WebRTC probe). */
  pending: Kind | null
  /** Delay of the next reconnect after everything failed. */
  reconnectMs: number
  /** Delay of the next WebRTC probe while auto runs on WebSocket. */
  webrtcRetryMs: number
  reconnectScheduled: boolean
  retryScheduled: boolean
  lastError: string | null
  running: boolean
}

export type PolicyEvent =
  | { type: 'start'; mode: Mode }
  | { type: 'stop' }
  /** An attempt of `kind` opened. */
  | { type: 'opened'; kind: Kind }
  /** An attempt failed or timed out, or an open transport closed. */
  | { type: 'failed'; kind: Kind; reason: string }
  | { type: 'timer'; name: TimerName }

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
    webrtcRetryMs: cfg.webrtcRetryMinMs,
    reconnectScheduled: false,
    retryScheduled: false,
    lastError: null,
    running: false,
  }
}

/** What the UI shows as the overall state. */
export function phaseOf(s: PolicyState): Phase {
  if (!s.running) return 'stopped'
  if (s.active) return 'connected'
  if (s.pending) return 'connecting'
  return 'waiting'
}

function firstAttempt(cfg: PolicyConfig, mode: Mode): PolicyAction {
  if (mode === 'auto') return { type: 'connect', kind: 'webrtc', timeoutMs: cfg.webrtcOpenTimeoutMs }
  return { type: 'connect', kind: mode, timeoutMs: cfg.openTimeoutMs }
}

export function step(
  cfg: PolicyConfig,
  s: PolicyState,
  ev: PolicyEvent,
): { state: PolicyState; actions: PolicyAction[] } {
  const actions: PolicyAction[] = []
  const next: PolicyState = { ...s }
  const connect = (a: PolicyAction) => {
    if (a.type === 'connect') next.pending = a.kind
    actions.push(a)
  }
  const scheduleReconnect = () => {
    actions.push({ type: 'schedule', name: 'reconnect', delayMs: next.reconnectMs })
    next.reconnectScheduled = true
    next.reconnectMs = Math.min(next.reconnectMs * 2, cfg.reconnectMaxMs)
  }
  const scheduleRetry = () => {
    actions.push({ type: 'schedule', name: 'webrtc_retry', delayMs: next.webrtcRetryMs })
    next.retryScheduled = true
    next.webrtcRetryMs = Math.min(next.webrtcRetryMs * 2, cfg.webrtcRetryMaxMs)
  }
  const cancelTimers = () => {
    if (next.reconnectScheduled) actions.push({ type: 'cancel', name: 'reconnect' })
    if (next.retryScheduled) actions.push({ type: 'cancel', name: 'webrtc_retry' })
    next.reconnectScheduled = false
    next.retryScheduled = false
  }

  switch (ev.type) {
    case 'start':
    case 'stop': {
      cancelTimers()
      if (next.pending) actions.push({ type: 'disconnect', kind: next.pending })
      if (next.active) actions.push({ type: 'disconnect', kind: next.active })
      const fresh = initialPolicy(cfg, ev.type === 'start' ? ev.mode : next.mode)
      Object.assign(next, fresh, { running: ev.type === 'start' })
      if (ev.type === 'start') connect(firstAttempt(cfg, ev.mode))
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
      if (ev.kind === 'webrtc') {
        next.webrtcRetryMs = cfg.webrtcRetryMinMs
        if (next.retryScheduled) actions.push({ type: 'cancel', name: 'webrtc_retry' })
        next.retryScheduled = false
      } else if (s.mode === 'auto' && !next.retryScheduled) {
        scheduleRetry()
      }
      break
    }

    case 'failed': {
      if (!s.running) break
      if (s.pending === ev.kind) {
        next.pending = null
        next.lastError = `${ev.kind}: ${ev.reason}`
        if (s.mode === 'auto' && ev.kind === 'webrtc') {
          if (s.active === 'websocket') {
            if (!next.retryScheduled) scheduleRetry() // a probe failed; WebSocket carries on
          } else {
            connect({ type: 'connect', kind: 'websocket', timeoutMs: cfg.openTimeoutMs }) // fall back
          }
        } else if (!s.active && !next.reconnectScheduled) {
          scheduleReconnect()
        }
      } else if (s.active === ev.kind) {
        next.active = null
        next.lastError = `${ev.kind}: ${ev.reason}`
        if (s.mode === 'auto' && ev.kind === 'webrtc') {
          if (!s.pending) connect({ type: 'connect', kind: 'websocket', timeoutMs: cfg.openTimeoutMs })
        } else if (s.mode === 'auto' && s.pending === 'webrtc') {
          // WebSocket died while a WebRTC probe runs: let the probe decide.
          if (next.retryScheduled) actions.push({ type: 'cancel', name: 'webrtc_retry' })
          next.retryScheduled = false
        } else {
          if (next.retryScheduled) actions.push({ type: 'cancel', name: 'webrtc_retry' })
          next.retryScheduled = false
          if (!next.reconnectScheduled) scheduleReconnect()
        }
      }
      // Anything else is a stale attempt: ignored.
      break
    }

    case 'timer': {
      if (!s.running) break
      if (ev.name === 'reconnect') {
        next.reconnectScheduled = false
        if (!s.active && !s.pending) connect(firstAttempt(cfg, s.mode))
      } else {
        next.retryScheduled = false
        if (s.mode === 'auto' && s.active === 'websocket' && !s.pending) {
          connect({ type: 'connect', kind: 'webrtc', timeoutMs: cfg.webrtcOpenTimeoutMs })
        }
      }
      break
    }
  }
  return { state: next, actions }
}
