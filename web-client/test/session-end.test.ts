import { describe, expect, it } from 'vitest'
import { endSession, isClosingEvent, type SessionEndDeps } from '../src/transport/session-end'
import { restSessionUrl, rtcIceServers } from '../src/transport/webrtc'

/** A server answering DELETE with `status` after `delayMs` (fake time), and what happened when. */
function harness(status: number | 'unreachable', delayMs = 10) {
  const events: string[] = []
  let now = 0
  const timers: { at: number; cb: () => void; id: number }[] = []
  let nextId = 0
  const deps: SessionEndDeps = {
    fetch: (url, init) => {
      events.push(`${init.method} ${url} keepalive=${init.keepalive} auth=${(init.headers as Record<string, string>).authorization ?? ''}`)
      return new Promise((resolve, reject) => {
        timers.push({ at: now + delayMs, id: nextId++, cb: () => (status === 'unreachable' ? reject(new TypeError('Failed to fetch')) : resolve({ status })) })
      })
    },
    headers: () => ({ authorization: 'Bearer t' }),
    setTimeout: (cb, ms) => {
      const t = { at: now + ms, cb, id: nextId++ }
      timers.push(t)
      return t.id
    },
    clearTimeout: (id) => {
      const i = timers.findIndex((t) => t.id === id)
      if (i >= 0) timers.splice(i, 1)
    },
  }
  const advance = async (ms: number) => {
    const end = now + ms
    for (;;) {
      timers.sort((a, b) => a.at - b.at)
      const t = timers[0]
      if (!t || t.at > end) break
      timers.shift()
      now = t.at
      t.cb()
      await Promise.resolve()
      await Promise.resolve()
    }
    now = end
  }
  const closePeer = () => events.push(`close peer at ${now}`)
  return { deps, events, advance, closePeer }
}

describe('endSession', () => {
  it('DELETEs first and closes the peer connection once the server answered', async () => {
    const h = harness(204, 30)
    const done = endSession('/api/webrtc/sessions/s1', false, h.closePeer, h.deps, 1500)
    expect(h.events).toEqual(['DELETE /api/webrtc/sessions/s1 keepalive=true auth=Bearer t'])
    await h.advance(2000)
    expect(await done).toBe('deleted')
    expect(h.events).toEqual(['DELETE /api/webrtc/sessions/s1 keepalive=true auth=Bearer t', 'close peer at 30'])
  })

  it('takes a 404 as "already gone", not an error', async () => {
    const h = harness(404)
    const done = endSession('/api/webrtc/sessions/s1', false, h.closePeer, h.deps)
    await h.advance(100)
    await expect(done).resolves.toBe('gone')
    expect(h.events.filter((e) => e.startsWith('close peer'))).toHaveLength(1)
  })

  it('sends nothing when the server ended the session, and closes at once', async () => {
    const h = harness(204)
    expect(await endSession('/api/webrtc/sessions/s1', true, h.closePeer, h.deps)).toBe('server-ended')
    expect(h.events).toEqual(['close peer at 0'])
  })

  it('sends nothing without a session', async () => {
    const h = harness(204)
    expect(await endSession(null, false, h.closePeer, h.deps)).toBe('none')
    expect(h.events).toEqual(['close peer at 0'])
  })

  it('closes the peer connection after the wait when the server is slow, and only once', async () => {
    const h = harness(204, 5000)
    const done = endSession('/w/1', false, h.closePeer, h.deps, 1500)
    await h.advance(1499)
    expect(h.events).toHaveLength(1)
    await h.advance(1)
    expect(h.events[1]).toBe('close peer at 1500')
    await h.advance(4000)
    expect(await done).toBe('deleted')
    expect(h.events.filter((e) => e.startsWith('close peer'))).toHaveLength(1)
  })

  it('never rejects: an unreachable server is "failed"', async () => {
    const h = harness('unreachable')
    const done = endSession('/w/1', false, h.closePeer, h.deps)
    await h.advance(100)
    expect(await done).toBe('failed')
    expect(h.events.filter((e) => e.startsWith('close peer'))).toHaveLength(1)
  })
})

describe('isClosingEvent', () => {
  it('knows the server goodbye from other events', () => {
    expect(isClosingEvent('{"type":"closing","reason":"shutting down"}')).toBe(true)
    expect(isClosingEvent('{"type":"pong","reason":"closing"}')).toBe(false)
    expect(isClosingEvent('{"type":"closing"')).toBe(false)
    expect(isClosingEvent('{"type":"train_offline"}')).toBe(false)
  })
})

describe('restSessionUrl', () => {
  it('names the REST resource, none with JSON-RPC signaling or before the offer', () => {
    expect(restSessionUrl('wrtc-1/2', 'rest')).toBe('/api/webrtc/sessions/wrtc-1%2F2')
    expect(restSessionUrl('wrtc-1', 'mqtt')).toBe('/api/webrtc/sessions/wrtc-1')
    expect(restSessionUrl('wrtc-1', 'rpc')).toBeNull()
    expect(restSessionUrl(null, 'rest')).toBeNull()
  })
})

describe('rtcIceServers', () => {
  it('drops the null username and credential the contract allows', () => {
    expect(
      rtcIceServers([
        { urls: ['stun:stun.example:3478'], username: null, credential: null },
        { urls: ['turn:turn.example:3478'], username: 'u', credential: 'p' },
        { urls: ['stun:a'] },
      ]),
    ).toEqual([{ urls: ['stun:stun.example:3478'] }, { urls: ['turn:turn.example:3478'], username: 'u', credential: 'p' }, { urls: ['stun:a'] }])
  })
})
