// Train sessions are independent: the video wall makes one per cell, each with its own remote
// control, links, pipeline and control lease. Fake transports (the links' own tests cover them).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { LinkHandlers } from '../src/transport/link'
import type { Kind } from '../src/transport/policy'

interface FakeLink {
  kind: Kind
  id: string
  h: LinkHandlers
  closed: boolean
  sent: string[]
}

const fake = vi.hoisted(() => {
  const links: FakeLink[] = []
  const open = (kind: Kind) => (id: string, h: LinkHandlers) => {
    const l: FakeLink = { kind, id, h, closed: false, sent: [] }
    links.push(l)
    return {
      kind,
      send: (text: string) => !l.closed && (l.sent.push(text), true),
      close: () => {
        l.closed = true
      },
    }
  }
  return { links, open }
})

vi.mock('../src/transport/webrtc', () => ({ openWebRtc: fake.open('webrtc') }))
vi.mock('../src/transport/whep', () => ({ openWhep: fake.open('whep') }))
vi.mock('../src/transport/websocket', () => ({ openWebSocket: fake.open('websocket'), wsUrl: () => 'ws://fake' }))
vi.mock('../src/transport/mqtt', async (importOriginal) => ({ ...(await importOriginal<typeof import('../src/transport/mqtt')>()), openMqtt: fake.open('mqtt') }))
vi.mock('../src/transport/webtransport', () => ({ openWebTransport: fake.open('webtransport'), webTransportSupported: () => true, NO_WEBTRANSPORT: 'none' }))

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
  vi.stubGlobal('requestAnimationFrame', (cb: () => void) => setTimeout(cb, 16))
  fake.links.length = 0
})
afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

const mapped = (train: string, cameras = [{ id: 0, codec: 'h264', width: 320, height: 180, fps: 15 }]) =>
  JSON.stringify({ type: 'mapped_train_changed', train_id: train, online: true, cameras })

describe('train sessions', () => {
  it('several at once: each its own remote control, link, mapping and lease; stopping one leaves the others', async () => {
    const { createTrainSession } = await import('../src/session/train-session')
    const sessions = ['t1', 't2', 't3', 't4'].map((t) =>
      createTrainSession({ consoleId: 'console-x', remoteControl: async () => `rc-${t}` }),
    )
    sessions.forEach((s) => s.start('websocket'))
    await vi.advanceTimersByTimeAsync(0)
    expect(fake.links.map((l) => [l.kind, l.id])).toEqual([
      ['websocket', 'rc-t1'], ['websocket', 'rc-t2'], ['websocket', 'rc-t3'], ['websocket', 'rc-t4'],
    ])
    fake.links.forEach((l, i) => {
      l.h.onOpen()
      l.h.onText(mapped(`t${i + 1}`))
    })
    expect(sessions.map((s) => [s.mapping.trainId, s.policy.value.active, s.phase.value])).toEqual([
      ['t1', 'websocket', 'connected'], ['t2', 'websocket', 'connected'], ['t3', 'websocket', 'connected'], ['t4', 'websocket', 'connected'],
    ])
    // Take control in one cell: only its link carries take_control.
    sessions[2].takeControl()
    expect(fake.links.map((l) => l.sent.filter((t) => t.includes('take_control')).length)).toEqual([0, 0, 1, 0])
    // A command goes out on its own session's link only.
    const e = sessions[1].send({ type: 'horn', duration_ms: 100 })
    expect(fake.links[1].sent.some((t) => t.includes(e.request_id))).toBe(true)
    expect(fake.links[0].sent.some((t) => t.includes(e.request_id))).toBe(false)
    // The cell goes: its link closes, the others stay.
    sessions[0].dispose()
    expect(fake.links.map((l) => l.closed)).toEqual([true, false, false, false])
    expect(sessions[0].mapping.trainId).toBeNull()
    expect(sessions[1].mapping.trainId).toBe('t2')
    await vi.advanceTimersByTimeAsync(5000)
    // No reconnect of the disposed one (the others ping, so they stay open).
    expect(fake.links.filter((l) => l.id === 'rc-t1')).toHaveLength(1)
  })

  it('the remote control failing: the session retries, and says why in the link details', async () => {
    const { createTrainSession } = await import('../src/session/train-session')
    let n = 0
    const s = createTrainSession({
      consoleId: 'c',
      remoteControl: async () => {
        if (++n === 1) throw new Error('POST /api/remote-controls: 500 boom')
        return 'rc-ok'
      },
    })
    s.start('websocket')
    await vi.advanceTimersByTimeAsync(0)
    expect(s.details.websocket).toEqual({ state: 'closed', reason: 'remote control: POST /api/remote-controls: 500 boom' })
    expect(s.policy.value.lastError).toContain('500 boom')
    await vi.advanceTimersByTimeAsync(5000)
    expect(fake.links.map((l) => l.id)).toEqual(['rc-ok'])
    s.dispose()
  })
})
