// The transport state machine: forced transports, Auto's fallback down its ranking and its way back.
import { describe, expect, it } from 'vitest'
import {
  DEFAULT_POLICY, initialPolicy, NOT_ASKED_YET, phaseOf, rankingOf, step, type Kind, type Mode, type PolicyAction, type PolicyConfig, type PolicyEvent, type PolicyState,
} from '../src/transport/policy'

/** The two transports Auto always had (a browser without WebTransport, or a server without it). */
const cfg: PolicyConfig = { ...DEFAULT_POLICY, ranking: ['webrtc', 'websocket'] }

/** Run events through the machine; returns the final state and every action, as short strings. */
function run(events: PolicyEvent[], mode: Mode = 'auto', c: PolicyConfig = cfg): { s: PolicyState; log: string[][] } {
  let s = initialPolicy(c, mode)
  const log: string[][] = []
  for (const ev of events) {
    const out = step(c, s, ev)
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
const opened = (kind: Kind): PolicyEvent => ({ type: 'opened', kind })
const failed = (kind: Kind, reason = 'x'): PolicyEvent => ({ type: 'failed', kind, reason })
const timer = (name: 'reconnect' | 'probe'): PolicyEvent => ({ type: 'timer', name })

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
      timer('probe'),
      failed('webrtc', 'offer: 503'),
      timer('probe'),
      failed('webrtc'),
    ])
    expect(log).toEqual([
      ['connect webrtc 3000'],
      ['connect websocket 10000'],
      ['schedule probe 10000'],
      ['connect webrtc 3000'],
      ['schedule probe 20000'],
      ['connect webrtc 3000'],
      ['schedule probe 40000'],
    ])
    expect(s.active).toBe('websocket')
    expect(s.lastError).toBe('webrtc: x')
  })

  it('auto comes back to WebRTC when a probe opens, and closes the WebSocket', () => {
    const { s, log } = run([start('auto'), failed('webrtc'), opened('websocket'), timer('probe'), opened('webrtc')])
    expect(log[4]).toEqual(['disconnect websocket'])
    expect(s.active).toBe('webrtc')
    expect(s.pending).toBeNull()
    expect(s.probeMs).toBe(cfg.probeMinMs)
  })

  it('auto falls back at once when an open WebRTC session dies', () => {
    const { s, log } = run([start('auto'), opened('webrtc'), failed('webrtc', 'connection failed'), opened('websocket')])
    expect(log[2]).toEqual(['connect websocket 10000'])
    expect(log[3]).toEqual(['schedule probe 10000'])
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
    expect(log[3]).toEqual(['cancel probe', 'schedule reconnect 500'])
    expect(s.active).toBeNull()
    expect(phaseOf(s)).toBe('waiting')
  })

  it('auto: WebSocket dies during a probe; the probe decides', () => {
    const base = [start('auto'), failed('webrtc'), opened('websocket'), timer('probe'), failed('websocket')]
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
    const { s, log } = run([start('auto'), opened('webrtc'), failed('websocket'), opened('websocket'), timer('probe')])
    expect(log.slice(2)).toEqual([[], ['disconnect websocket'], []])
    expect(s.active).toBe('webrtc')
  })

  it('start with another mode closes everything first', () => {
    const { s, log } = run([start('auto'), failed('webrtc'), opened('websocket'), start('webrtc')])
    expect(log[3]).toEqual(['cancel probe', 'disconnect websocket', 'connect webrtc 10000'])
    expect(s.mode).toBe('webrtc')
    const stopped = run([start('auto'), opened('webrtc'), { type: 'stop' }, timer('reconnect'), failed('webrtc')])
    expect(stopped.log.slice(2)).toEqual([['disconnect webrtc'], [], []])
    expect(phaseOf(stopped.s)).toBe('stopped')
  })
})

// ---- three transports ---------------------------------------------------------------------------

const three = DEFAULT_POLICY
const run3 = (events: PolicyEvent[], mode: Mode = 'auto') => run(events, mode, three)
const unsupported = (reason = 'x'): PolicyEvent => ({ type: 'failed', kind: 'webtransport', reason, unsupported: true })
const noWebTransport: PolicyEvent = { type: 'start', mode: 'auto', unsupported: { webtransport: 'not in this browser' } }

describe('transport policy: Auto ranks WebRTC, WebTransport, WebSocket', () => {
  it('the default ranking, and WebRTC first', () => {
    // MQTT is last, and left out until the server says it offers it (below).
    expect(three.ranking).toEqual(['webrtc', 'webtransport', 'websocket', 'mqtt'])
    expect(rankingOf(three, initialPolicy(three))).toEqual(['webrtc', 'webtransport', 'websocket'])
    const { s, log } = run3([start('auto'), opened('webrtc')])
    expect(log).toEqual([['connect webrtc 3000'], []])
    expect(s.active).toBe('webrtc')
  })

  it('falls down the ranking one by one; only the last gets the long timeout', () => {
    const { s, log } = run3([start('auto'), failed('webrtc'), failed('webtransport'), opened('websocket')])
    expect(log).toEqual([['connect webrtc 3000'], ['connect webtransport 3000'], ['connect websocket 10000'], ['schedule probe 10000']])
    expect(s.active).toBe('websocket')
  })

  it('WebRTC blocked: WebTransport carries the video, and WebRTC is probed with backoff', () => {
    const { s, log } = run3([
      start('auto'), failed('webrtc'), opened('webtransport'),
      timer('probe'), failed('webrtc'), timer('probe'), failed('webrtc'), timer('probe'), opened('webrtc'),
    ])
    expect(log).toEqual([
      ['connect webrtc 3000'],
      ['connect webtransport 3000'],
      ['schedule probe 10000'],
      ['connect webrtc 3000'],
      ['schedule probe 20000'], // WebTransport is the active one: nothing between to try
      ['connect webrtc 3000'],
      ['schedule probe 40000'],
      ['connect webrtc 3000'],
      ['disconnect webtransport'],
    ])
    expect(s).toMatchObject({ active: 'webrtc', pending: null, probeMs: three.probeMinMs, probeScheduled: false })
  })

  it('on WebSocket, a probe tries WebRTC, then WebTransport; the first that opens takes over', () => {
    const base = [start('auto'), failed('webrtc'), failed('webtransport'), opened('websocket'), timer('probe'), failed('webrtc')]
    const { s, log } = run3([...base, opened('webtransport')])
    expect(log.slice(4)).toEqual([['connect webrtc 3000'], ['connect webtransport 3000'], ['disconnect websocket', 'schedule probe 20000']])
    expect(s).toMatchObject({ active: 'webtransport', probeScheduled: true })
    // ... and the next probe goes for WebRTC only, which now opens.
    const up = run3([...base, opened('webtransport'), timer('probe'), opened('webrtc')])
    expect(up.log.slice(7)).toEqual([['connect webrtc 3000'], ['disconnect webtransport']])
    expect(up.s).toMatchObject({ active: 'webrtc', probeMs: three.probeMinMs })
  })

  it('a probe where nothing better opens keeps WebSocket and doubles the delay', () => {
    const { s, log } = run3([
      start('auto'), failed('webrtc'), failed('webtransport'), opened('websocket'),
      timer('probe'), failed('webrtc'), failed('webtransport'),
      timer('probe'), failed('webrtc'), failed('webtransport'),
    ])
    expect(log.slice(4)).toEqual([
      ['connect webrtc 3000'], ['connect webtransport 3000'], ['schedule probe 20000'],
      ['connect webrtc 3000'], ['connect webtransport 3000'], ['schedule probe 40000'],
    ])
    expect(s.active).toBe('websocket')
  })

  it('an open transport that dies falls to the next at once; the last one reconnects from the best', () => {
    const rtc = run3([start('auto'), opened('webrtc'), failed('webrtc', 'connection failed')])
    expect(rtc.log[2]).toEqual(['connect webtransport 3000'])
    const wt = run3([start('auto'), failed('webrtc'), opened('webtransport'), failed('webtransport', 'closed 1001 (server shutting down)'), failed('websocket'), timer('reconnect')])
    expect(wt.log.slice(3)).toEqual([['connect websocket 10000'], ['cancel probe', 'schedule reconnect 500'], ['connect webrtc 3000']])
    expect(wt.s.lastError).toBe('websocket: x')
  })

  it('the active transport dies during a probe: the probe decides, then Auto falls from there', () => {
    const base = [start('auto'), failed('webrtc'), failed('webtransport'), opened('websocket'), timer('probe'), failed('websocket')]
    const a = run3(base)
    expect(a.log[5]).toEqual([])
    expect(a.s).toMatchObject({ active: null, pending: 'webrtc' })
    const b = run3([...base, failed('webrtc'), failed('webtransport'), opened('websocket')])
    // The probe delay keeps growing, as it always did when WebSocket came back after a failed probe.
    expect(b.log.slice(6)).toEqual([['connect webtransport 3000'], ['connect websocket 10000'], ['schedule probe 20000']])
  })

  it('a browser without WebTransport: exactly the two-transport behaviour', () => {
    const sequences: PolicyEvent[][] = [
      [opened('webrtc')],
      [failed('webrtc'), opened('websocket'), timer('probe'), failed('webrtc'), timer('probe'), opened('webrtc')],
      [opened('webrtc'), failed('webrtc'), failed('websocket'), timer('reconnect'), failed('webrtc'), failed('websocket'), timer('reconnect')],
      [failed('webrtc'), opened('websocket'), timer('probe'), failed('websocket'), failed('webrtc')],
      [failed('webrtc'), opened('websocket'), failed('websocket', 'closed 1001')],
    ]
    for (const seq of sequences) {
      const two = run([start('auto'), ...seq])
      const lacking = run3([noWebTransport, ...seq])
      expect(lacking.log).toEqual(two.log)
      expect(lacking.s.active).toBe(two.s.active)
    }
    expect(run3([noWebTransport]).s.unsupported).toEqual({ webtransport: 'not in this browser' })
  })

  it('the browser lack lasts the run, a reconnect included', () => {
    const { s, log } = run3([noWebTransport, failed('webrtc'), failed('websocket'), timer('reconnect'), failed('webrtc')])
    expect(log.flat().filter((a) => a.includes('webtransport'))).toEqual([])
    expect(s.unsupported).toEqual({ webtransport: 'not in this browser' })
  })

  it('a server without WebTransport (404 webtransport_disabled): skipped at once and in later probes', () => {
    const { s, log } = run3([
      start('auto'), failed('webrtc'), unsupported('webtransport_disabled'), opened('websocket'),
      timer('probe'), failed('webrtc'), timer('probe'),
    ])
    expect(log).toEqual([
      ['connect webrtc 3000'],
      ['connect webtransport 3000'],
      ['connect websocket 10000'],
      ['schedule probe 10000'],
      ['connect webrtc 3000'],
      ['schedule probe 20000'], // WebTransport is not tried again
      ['connect webrtc 3000'],
    ])
    expect(s.disabled).toEqual({ webtransport: 'webtransport_disabled' })
  })

  it('a server without WebTransport is asked again when Auto starts over (a restarted server may offer it)', () => {
    const { s, log } = run3([
      start('auto'), failed('webrtc'), unsupported(), opened('websocket'),
      failed('websocket', 'closed 1001'), timer('reconnect'), failed('webrtc'),
    ])
    expect(log.slice(4)).toEqual([['cancel probe', 'schedule reconnect 500'], ['connect webrtc 3000'], ['connect webtransport 3000']])
    expect(s.disabled).toEqual({})
  })

  it('an unsupported WebTransport probe is left out while another carries on', () => {
    const { s, log } = run3([
      start('auto'), failed('webrtc'), failed('webtransport'), opened('websocket'),
      timer('probe'), failed('webrtc'), unsupported(), timer('probe'), failed('webrtc'),
    ])
    expect(log.slice(4)).toEqual([['connect webrtc 3000'], ['connect webtransport 3000'], ['schedule probe 20000'], ['connect webrtc 3000'], ['schedule probe 40000']])
    expect(s.active).toBe('websocket')
  })

  it('forced WebTransport: reconnects with backoff, never switches, even when unsupported', () => {
    const { s, log } = run3([start('webtransport'), unsupported(), timer('reconnect'), opened('webtransport'), failed('webtransport', 'closed 4001')], 'webtransport')
    expect(log).toEqual([['connect webtransport 10000'], ['schedule reconnect 500'], ['connect webtransport 10000'], [], ['schedule reconnect 500']])
    expect(s).toMatchObject({ mode: 'webtransport', active: null, lastError: 'webtransport: closed 4001' })
  })

  it('a custom ranking is followed (WebTransport first)', () => {
    const c: PolicyConfig = { ...DEFAULT_POLICY, ranking: ['webtransport', 'webrtc', 'websocket'] }
    const { log } = run([start('auto'), failed('webtransport'), opened('webrtc'), timer('probe'), opened('webtransport')], 'auto', c)
    expect(log).toEqual([['connect webtransport 3000'], ['connect webrtc 3000'], ['schedule probe 10000'], ['connect webtransport 3000'], ['disconnect webrtc']])
  })

  it('a stop keeps what the browser lacks; a start replaces it', () => {
    const stopped = run3([noWebTransport, { type: 'stop' }])
    expect(stopped.s.unsupported).toEqual({ webtransport: 'not in this browser' })
    expect(run3([noWebTransport, start('auto')]).s.unsupported).toEqual({})
  })
})

// ---- MQTT: last, and only when the server offers it ---------------------------------------------

const offered = (reason: string | null, kind: Kind = 'mqtt'): PolicyEvent => ({ type: 'offered', kind, reason })
const NO_BROKER = 'the server offers no MQTT (mqtt_disabled)'

describe('transport policy: MQTT comes last, only when the server offers it', () => {
  it('before GET /api/mqtt answers, and after a 404 or url: null, Auto leaves MQTT out', () => {
    const s0 = initialPolicy(three)
    expect(s0.unoffered).toEqual({ mqtt: NOT_ASKED_YET })
    const { s, log } = run3([start('auto'), offered(NO_BROKER), failed('webrtc'), failed('webtransport'), failed('websocket')])
    expect(rankingOf(three, s)).toEqual(['webrtc', 'webtransport', 'websocket'])
    expect(s.unoffered).toEqual({ mqtt: NO_BROKER })
    // WebSocket is still the last: the long timeout, then a reconnect from the best.
    expect(log).toEqual([['connect webrtc 3000'], [], ['connect webtransport 3000'], ['connect websocket 10000'], ['schedule reconnect 500']])
  })

  it('offered: MQTT joins the ranking last; WebSocket gets the short timeout, MQTT the long one', () => {
    const { s, log } = run3([offered(null), start('auto'), failed('webrtc'), failed('webtransport'), failed('websocket'), opened('mqtt')])
    expect(rankingOf(three, s)).toEqual(['webrtc', 'webtransport', 'websocket', 'mqtt'])
    expect(log).toEqual([[], ['connect webrtc 3000'], ['connect webtransport 3000'], ['connect websocket 3000'], ['connect mqtt 10000'], ['schedule probe 10000']])
    expect(s.active).toBe('mqtt')
  })

  it('on MQTT, a probe climbs back: WebRTC, then WebTransport, then WebSocket', () => {
    const { s, log } = run3([
      offered(null), start('auto'), failed('webrtc'), failed('webtransport'), failed('websocket'), opened('mqtt'),
      timer('probe'), failed('webrtc'), failed('webtransport'), opened('websocket'),
    ])
    expect(log.slice(6)).toEqual([['connect webrtc 3000'], ['connect webtransport 3000'], ['connect websocket 3000'], ['disconnect mqtt', 'schedule probe 20000']])
    expect(s.active).toBe('websocket')
  })

  it('the answer outlives a start and a start-over; a later answer replaces it', () => {
    const { s } = run3([offered(null), start('auto'), { type: 'stop' }, start('auto'), failed('webrtc'), failed('webtransport'), failed('websocket'), failed('mqtt'), timer('reconnect')])
    expect(s.unoffered).toEqual({})
    expect(rankingOf(three, s)).toContain('mqtt')
    const again = run3([offered(null), start('auto'), offered(NO_BROKER)])
    expect(rankingOf(three, again.s)).not.toContain('mqtt')
  })

  it('an MQTT link that finds no broker is left out until the start-over, or until the server offers it again', () => {
    const base = [offered(null), start('auto'), failed('webrtc'), failed('webtransport'), failed('websocket'),
      { type: 'failed', kind: 'mqtt', reason: NO_BROKER, unsupported: true } as PolicyEvent]
    const { s } = run3(base)
    expect(s.disabled).toEqual({ mqtt: NO_BROKER })
    expect(rankingOf(three, s)).not.toContain('mqtt')
    expect(rankingOf(three, run3([...base, offered(null)]).s)).toContain('mqtt')
  })

  it('forced MQTT ignores what Auto was told; offered events for other transports change nothing', () => {
    const forced = run3([start('mqtt')], 'mqtt')
    expect(forced.log).toEqual([['connect mqtt 10000']])
    const other = run3([start('auto'), offered('no', 'websocket')])
    expect(other.s.unoffered).toEqual({ mqtt: NOT_ASKED_YET })
    expect(other.log[1]).toEqual([])
  })
})
