// The control lease as the console reduces it, the ping interval, the console id and the audit pages.
import { describe, expect, it } from 'vitest'
import {
  auditQuery, consoleIdFrom, controlOffer, describeAuditCommand, describeHolder, initialControl, mergeAudit, onControlChanged,
  onControlError, onMapped, onTrainControl, parseAuditPage, pingEveryMs, takeControlMessage, type ControlChanged, type ControlState,
} from '../src/control'
import { parseServerEvent } from '../src/wire/client'

const ME = 'console-aaaa'
const holder = (name: string, console_id?: string, session = 1) => ({ name, role: 'operator', session, transport: 'websocket', since_us: 1, ...(console_id ? { console_id } : {}) })
const changed = (h: ReturnType<typeof holder> | null, reason: string, train_id = 't1'): ControlChanged => ({ type: 'control_changed', train_id, holder: h, reason })
const mapped = (): ControlState => onMapped(initialControl(), 't1')

describe('control state from events', () => {
  it('is parsed as a known event', () => {
    const ev = parseServerEvent(JSON.stringify(changed(holder('alice', ME), 'taken')))
    expect(ev?.type).toBe('control_changed')
  })

  it('take, hold, release', () => {
    let s: ControlState = { ...mapped(), pending: 'take' }
    s = onControlChanged(s, changed(holder('alice', ME), 'taken'), ME, 10)
    expect(s).toMatchObject({ mine: true, wanted: true, pending: null, reason: 'taken', lost: null, eventAt: 10 })
    expect(describeHolder(s.holder, s.mine)).toBe('you — alice (operator, websocket)')
    expect(describeHolder({ ...holder('bob'), node: 'node-b' }, false)).toBe('bob (operator, websocket on node-b)')
    s = { ...s, pending: 'release' }
    s = onControlChanged(s, changed(null, 'released'), ME, 20)
    expect(s).toMatchObject({ mine: false, wanted: false, pending: null, holder: null, lost: null })
  })

  it('another console holds it: not mine, an admin may take over', () => {
    const s = onControlChanged(mapped(), changed(holder('bob', 'console-other'), 'taken'), ME, 1)
    expect(s.mine).toBe(false)
    expect(controlOffer('operator', s, true)).toBeNull()
    expect(controlOffer('admin', s, true)).toBe('take-over')
    expect(controlOffer('viewer', s, true)).toBeNull()
    expect(controlOffer('admin', initialControl(), false)).toBeNull()
    expect(controlOffer('operator', mapped(), true)).toBe('take')
  })

  it('same name, no console id: not mine', () => {
    const s = onControlChanged(mapped(), changed(holder('alice'), 'taken'), ME, 1)
    expect(s.mine).toBe(false)
  })

  it('operator lost: shown as this console\'s loss, nothing held, wanted no more', () => {
    let s = onControlChanged(mapped(), changed(holder('alice', ME), 'taken'), ME, 1)
    s = onControlChanged(s, changed(null, "operator lost: nothing from alice for 1000 ms"), ME, 2)
    expect(s).toMatchObject({ mine: false, wanted: false, holder: null })
    expect(s.lost).toEqual({ reason: 'operator lost: nothing from alice for 1000 ms', holder: 'alice', mine: true, at: 2 })
    // Another train's event changes nothing.
    expect(onControlChanged(s, changed(holder('x', ME), 'taken', 't2'), ME, 3)).toBe(s)
  })

  it('taken over by an admin: the old holder is told, not lost', () => {
    let s = onControlChanged(mapped(), changed(holder('alice', ME), 'taken'), ME, 1)
    s = onControlChanged(s, changed({ ...holder('root', 'console-b', 9), role: 'admin' }, 'taken over by root from alice'), ME, 2)
    expect(s).toMatchObject({ mine: false, wanted: false, lost: null })
    expect(s.holder?.name).toBe('root')
  })

  it('resume: resumed keeps holding; taken instead says the lease lapsed', () => {
    const held = onControlChanged(mapped(), changed(holder('alice', ME), 'taken'), ME, 1)
    const resumed = onControlChanged({ ...held, pending: 'resume' }, changed(holder('alice', ME, 2), 'resumed'), ME, 2)
    expect(resumed).toMatchObject({ mine: true, wanted: true, pending: null, lost: null })
    const lapsed = onControlChanged({ ...held, pending: 'resume' }, changed(holder('alice', ME, 2), 'taken'), ME, 3)
    expect(lapsed.mine).toBe(true)
    expect(lapsed.lost?.reason).toMatch(/^operator lost: the lease lapsed/)
  })

  it('refusals: control_held ends a take, forbidden only counts when one is pending', () => {
    const s = onControlError({ ...mapped(), pending: 'take', wanted: true }, 'control_held', 'bob (operator) controls t1')
    expect(s).toMatchObject({ pending: null, wanted: false, mine: false, error: { code: 'control_held', message: 'bob (operator) controls t1' } })
    const idle = mapped()
    expect(onControlError(idle, 'forbidden', 'viewer')).toBe(idle)
    expect(onControlError(idle, 'bad_message', 'x')).toBe(idle)
    expect(onControlError({ ...idle, pending: 'take' }, 'forbidden', 'viewer').error?.code).toBe('forbidden')
    expect(onControlError({ ...idle, pending: 'release' }, 'not_in_control', 'no').error?.code).toBe('not_in_control')
    // The cluster node the train is connected to did not answer: a resumed lease is not ours any more.
    for (const code of ['control_unavailable', 'control_elsewhere']) {
      const elsewhere = onControlError({ ...mapped(), pending: 'resume', wanted: true, mine: true }, code, "t1's node did not answer")
      expect(elsewhere).toMatchObject({ pending: null, wanted: false, mine: false, error: { code } })
    }
  })

  it('GET /api/trains fills in the holder, but never against events or while holding', () => {
    let s = onTrainControl(mapped(), 't1', holder('bob', 'console-b'), 100)
    expect(s.holder?.name).toBe('bob')
    s = onControlChanged(s, changed(null, 'released'), ME, 200)
    // A poll asked before that event is stale.
    expect(onTrainControl(s, 't1', holder('bob', 'console-b'), 150)).toBe(s)
    // Our own console id on a lease we do not want (a reloaded page): not ours to release.
    expect(onTrainControl(s, 't1', holder('alice', ME), 300).mine).toBe(false)
    const mine = onControlChanged(s, changed(holder('alice', ME), 'taken'), ME, 400)
    expect(onTrainControl(mine, 't1', null, 500)).toBe(mine)
    expect(onTrainControl(s, 't1', undefined, 600)).toBe(s)
  })

  it('a mapping to another train forgets the lease, keeps the loss banner', () => {
    let s = onControlChanged(mapped(), changed(null, 'operator lost: x'), ME, 1)
    s = onMapped(s, 't2')
    expect(s).toMatchObject({ trainId: 't2', holder: null, wanted: false })
    expect(s.lost?.reason).toBe('operator lost: x')
    expect(onMapped(s, 't2')).toBe(s)
  })
})

describe('heartbeat', () => {
  it('pings every 250 ms while holding, 1 s otherwise', () => {
    expect(pingEveryMs(true)).toBe(250)
    expect(pingEveryMs(false)).toBe(1000)
  })

  it('take_control carries the console id, force only for a take-over', () => {
    expect(takeControlMessage(ME)).toEqual({ type: 'take_control', console_id: ME })
    expect(takeControlMessage(ME, true)).toEqual({ type: 'take_control', console_id: ME, force: true })
  })

  it('the console id is made once per tab and kept', () => {
    const m = new Map<string, string>()
    const st = { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v) }
    const a = consoleIdFrom(st, () => 0.5)
    expect(a).toBe('console-8888888888888888')
    expect(consoleIdFrom(st, () => 0.1)).toBe(a)
    const broken = { getItem: () => { throw new Error('denied') }, setItem: () => { throw new Error('denied') } }
    expect(consoleIdFrom(broken, () => 0)).toBe('console-0000000000000000')
    expect(consoleIdFrom(null).length).toBeLessThanOrEqual(64)
  })
})

describe('audit pages', () => {
  const entry = (seq: number, type = 'horn') => ({
    seq, at_us: seq * 1000, principal: 'demo-admin', role: 'admin', remote_control_id: 'rc-1', session: 3, transport: 'websocket',
    train_id: 't1', request_id: `cmd-${seq}`, command: { type, duration_ms: 500 }, result: 'acked', ok: true, code: null,
    message: 'ok', command_id: seq, rtt_us: 1500, node: null as string | null,
  })

  it('parses a page and drops what is not an entry', () => {
    const p = parseAuditPage({ entries: [entry(1), { seq: 'x' }, null, { ...entry(2), ok: null, code: 'not_in_control', rtt_us: null, train_id: null }], next: 2 })
    expect(p.next).toBe(2)
    expect(p.entries.map((e) => e.seq)).toEqual([1, 2])
    expect(p.entries[1]).toMatchObject({ ok: null, code: 'not_in_control', rtt_us: null, train_id: null })
    const empty = { entries: [], next: null, cursor: null, resume: null, missing: [] }
    expect(parseAuditPage({ entries: [] })).toEqual(empty)
    expect(parseAuditPage('nonsense')).toEqual(empty)
    expect(parseAuditPage({ entries: [{ seq: 5, command: 'x' }] }).entries[0].command).toEqual({})
  })

  it('merges pages newest first, without duplicates, keeping the newest', () => {
    let h = mergeAudit([], parseAuditPage({ entries: [entry(1), entry(2), entry(3)] }).entries, 3)
    expect(h.map((e) => e.seq)).toEqual([3, 2, 1])
    h = mergeAudit(h, [entry(3), entry(4, 'operator_lost')], 3)
    expect(h.map((e) => e.seq)).toEqual([4, 3, 2])
    expect(mergeAudit(h, [entry(4)], 3)).toBe(h)
  })

  it('parses a cluster page and keeps entries of several nodes apart', () => {
    const on = (node: string, seq: number, at: number) => ({ ...entry(seq), node, at_us: at })
    const p = parseAuditPage({ entries: [on('node-a', 1, 10), on('node-b', 1, 20)], next: null, cursor: 'node-a:1,node-b:1', resume: 'node-a:4,node-b:1', missing: ['node-c', 3] })
    expect([p.cursor, p.resume, p.missing]).toEqual(['node-a:1,node-b:1', 'node-a:4,node-b:1', ['node-c']])
    expect(p.entries.map((e) => e.node)).toEqual(['node-a', 'node-b'])
    // The same seq on two nodes is two entries; newest first by time across nodes.
    let h = mergeAudit([], p.entries, 10)
    expect(h.map((e) => `${e.node}:${e.seq}`)).toEqual(['node-b:1', 'node-a:1'])
    h = mergeAudit(h, [on('node-a', 2, 30), on('node-b', 1, 20)], 10)
    expect(h.map((e) => `${e.node}:${e.seq}`)).toEqual(['node-a:2', 'node-b:1', 'node-a:1'])
    expect(auditQuery('t1', 50, 'node-a:2,node-b:1')).toBe('/api/audit?train=t1&limit=50&cursor=node-a%3A2%2Cnode-b%3A1')
  })

  it('queries after the newest seq known', () => {
    expect(auditQuery('train 1', 1000, null)).toBe('/api/audit?train=train+1&limit=1000')
    expect(auditQuery('t1', 50, 42)).toBe('/api/audit?train=t1&limit=50&after=42')
    expect(auditQuery('t1', 50, null, 'newest')).toBe('/api/audit?train=t1&limit=50&order=newest')
  })

  it('describes a command', () => {
    expect(describeAuditCommand({ type: 'horn', duration_ms: 500 })).toBe('horn (duration_ms 500)')
    expect(describeAuditCommand({ type: 'operator_lost', operator: 'alice', reason: 'x' })).toBe('operator_lost (operator alice, reason x)')
    expect(describeAuditCommand({})).toBe('?')
  })
})
