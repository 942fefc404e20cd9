// The transport state machine: forced transports, Auto's fallback to WebSocket and its way back.
import { describe, expect, it } from 'vitest'
import {
  DEFAULT_POLICY as cfg, initialPolicy, phaseOf, step, type Mode, type PolicyAction, type PolicyEvent, type PolicyState,
} from '../src/transport/policy'

/** Run events through the machine; returns the final state and every action, as short strings. */
function run(events: PolicyEvent[], mode: Mode = 'auto'): { s: PolicyState; log: string[][] } {
  let s = initialPolicy(cfg, mode)
  const log: string[][] = []
  for (const ev of events) {
    const out = step(cfg, s, ev)
    s = out.state
    log.push(out.actions.map(show))
  }
  return { s, log }
}

function show(a: PolicyAction): string {
  switch (a.type) {
    case 'connect':
      return `connect ${a.kind} ${a.timeoutMs}`
    case 'disconnect':
      return `disconnect ${a.kind}`
    case 'schedule':
      return `schedule ${a.name} ${a.delayMs}`
    case 'cancel':
      return `cancel ${a.name}`
  }
}

const start = (mode: Mode): PolicyEvent => ({ type: 'start', mode })
const opened = (kind: 'webrtc' | 'websocket'): PolicyEvent => ({ type: 'opened', kind })
const failed = (kind: 'webrtc' | 'websocket', reason = 'x'): PolicyEvent => ({ type: 'failed', kind, reason })
const timer = (name: 'reconnect' | 'webrtc_retry'): PolicyEvent => ({ type: 'timer', name })

describe('transport policy', () => {
  it('auto starts with WebRTC and stays on it', () => {
    const { s, log } = run([start('auto'), opened('webrtc')])
    expect(log).toEqual([['connect webrtc 3000'], []])
    expect(s.active).toBe('webrtc')
    expect(phaseOf(s)).toBe('connected')
  })

  it('auto falls back to WebSocket when WebRTC does not open, then probes WebRTC with backoff', () => {
    const { s, log } = run([
      start('auto'),
      failed('webrtc', 'not open within 3 s'),
      opened('websocket'),
      timer('webrtc_retry'),
      failed('webrtc', 'offer: 503'),
      timer('webrtc_retry'),
      failed('webrtc'),
    ])
    expect(log).toEqual([
      ['connect webrtc 3000'],
      ['connect websocket 10000'],
      ['schedule webrtc_retry 10000'],
      ['connect webrtc 3000'],
      ['schedule webrtc_retry 20000'],
      ['connect webrtc 3000'],
      ['schedule webrtc_retry 40000'],
    ])
    expect(s.active).toBe('websocket')
    expect(s.lastError).toBe('webrtc: x')
  })

  it('auto comes back to WebRTC when a probe opens, and closes the WebSocket', () => {
    const { s, log } = run([start('auto'), failed('webrtc'), opened('websocket'), timer('webrtc_retry'), opened('webrtc')])
    expect(log[4]).toEqual(['disconnect websocket'])
    expect(s.active).toBe('webrtc')
    expect(s.pending).toBeNull()
    expect(s.webrtcRetryMs).toBe(cfg.webrtcRetryMinMs)
  })

  it('auto falls back at once when an open WebRTC session dies', () => {
    const { s, log } = run([start('auto'), opened('webrtc'), failed('webrtc', 'connection failed'), opened('websocket')])
    expect(log[2]).toEqual(['connect websocket 10000'])
    expect(log[3]).toEqual(['schedule webrtc_retry 10000'])
    expect(s.active).toBe('websocket')
  })

  it('auto with the server down: both fail, reconnect with growing backoff, WebRTC first each time', () => {
    const { s, log } = run([
      start('auto'), opened('webrtc'),
      failed('webrtc', 'closed'), failed('websocket', 'refused'),
      timer('reconnect'), failed('webrtc'), failed('websocket'),
      timer('reconnect'), failed('webrtc'), failed('websocket'),
      timer('reconnect'), opened('webrtc'),
    ])
    expect(log.slice(2)).toEqual([
      ['connect websocket 10000'],
      ['schedule reconnect 500'],
      ['connect webrtc 3000'],
      ['connect websocket 10000'],
      ['schedule reconnect 1000'],
      ['connect webrtc 3000'],
      ['connect websocket 10000'],
      ['schedule reconnect 2000'],
      ['connect webrtc 3000'],
      [],
    ])
    expect(s.active).toBe('webrtc')
    expect(s.reconnectMs).toBe(cfg.reconnectMinMs)
  })

  it('auto on WebSocket: losing it cancels the probe timer and reconnects', () => {
    const { s, log } = run([start('auto'), failed('webrtc'), opened('websocket'), failed('websocket', 'closed 1001')])
    expect(log[3]).toEqual(['cancel webrtc_retry', 'schedule reconnect 500'])
    expect(s.active).toBeNull()
    expect(phaseOf(s)).toBe('waiting')
  })

  it('auto: WebSocket dies during a probe; the probe decides', () => {
    const base = [start('auto'), failed('webrtc'), opened('websocket'), timer('webrtc_retry'), failed('websocket')]
    const a = run([...base, opened('webrtc')])
    expect(a.log[4]).toEqual([])
    expect(a.s.active).toBe('webrtc')
    const b = run([...base, failed('webrtc')])
    expect(b.log[5]).toEqual(['connect websocket 10000'])
  })

  it('backoff is capped', () => {
    const events: PolicyEvent[] = [start('websocket')]
    for (let i = 0; i < 10; i++) events.push(failed('websocket'), timer('reconnect'))
    const { log } = run(events, 'websocket')
    const delays = log.flat().filter((a) => a.startsWith('schedule')).map((a) => Number(a.split(' ')[2]))
    expect(delays).toEqual([500, 1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000])
  })

  it('a forced transport never switches', () => {
    const { s, log } = run([start('webrtc'), failed('webrtc', 'offer: 404'), timer('reconnect'), opened('webrtc'), failed('webrtc')], 'webrtc')
    expect(log).toEqual([['connect webrtc 10000'], ['schedule reconnect 500'], ['connect webrtc 10000'], [], ['schedule reconnect 500']])
    expect(s.active).toBeNull()
    const ws = run([start('websocket'), opened('websocket')], 'websocket')
    expect(ws.log).toEqual([['connect websocket 10000'], []])
  })

  it('stale events are ignored, a stray open is closed', () => {
    const { s, log } = run([start('auto'), opened('webrtc'), failed('websocket'), opened('websocket'), timer('webrtc_retry')])
    expect(log.slice(2)).toEqual([[], ['disconnect websocket'], []])
    expect(s.active).toBe('webrtc')
  })

  it('start with another mode closes everything first', () => {
    const { s, log } = run([start('auto'), failed('webrtc'), opened('websocket'), start('webrtc')])
    expect(log[3]).toEqual(['cancel webrtc_retry', 'disconnect websocket', 'connect webrtc 10000'])
    expect(s.mode).toBe('webrtc')
    const stopped = run([start('auto'), opened('webrtc'), { type: 'stop' }, timer('reconnect'), failed('webrtc')])
    expect(stopped.log.slice(2)).toEqual([['disconnect webrtc'], [], []])
    expect(phaseOf(stopped.s)).toBe('stopped')
  })
})
