// The token on the wire: the bearer header on every REST and signaling request, access_token in the
// WebSocket URL, and 401 answers reported with the token they were sent with.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { onUnauthorized, setToken } from '../src/auth'
import { api, ApiError } from '../src/transport/link'
import { openWebRtc } from '../src/transport/webrtc'
import { wsUrl } from '../src/transport/websocket'

interface Call {
  url: string
  method: string
  headers: Record<string, string>
  body: unknown
  keepalive: boolean
}

let calls: Call[] = []

function stubFetch(answer: (url: string, method: string) => { status: number; body?: unknown }) {
  calls = []
  vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
    const method = init.method ?? 'GET'
    calls.push({
      url,
      method,
      headers: { ...(init.headers as Record<string, string> | undefined) },
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
      keepalive: !!init.keepalive,
    })
    const a = answer(url, method)
    return new Response(a.body === undefined ? null : JSON.stringify(a.body), { status: a.status })
  })
}

beforeEach(() => setToken(null))
afterEach(() => {
  vi.unstubAllGlobals()
  setToken(null)
})

describe('api()', () => {
  it('sends Authorization: Bearer with the token in use', async () => {
    stubFetch(() => ({ status: 200, body: { name: 'demo-admin', role: 'admin' } }))
    setToken('s3cret')
    await expect(api('GET', '/api/me')).resolves.toEqual({ name: 'demo-admin', role: 'admin' })
    await api('POST', '/api/remote-controls', { name: 'x' })
    expect(calls.map((c) => c.headers.authorization)).toEqual(['Bearer s3cret', 'Bearer s3cret'])
    expect(calls[0].headers['content-type']).toBeUndefined()
    expect(calls[1].headers['content-type']).toBe('application/json')
  })

  it('sends no Authorization header without a token', async () => {
    stubFetch(() => ({ status: 200, body: [] }))
    await api('GET', '/api/trains')
    expect(calls[0].headers).toEqual({})
  })

  it('401: throws with the server message and tells the listeners which token was refused', async () => {
    stubFetch(() => ({ status: 401, body: { code: 'unauthorized', message: 'unknown token' } }))
    setToken('bad')
    const seen: [string, string | null][] = []
    const off = onUnauthorized((m, t) => seen.push([m, t]))
    const e = await api('GET', '/api/me').catch((x: unknown) => x)
    off()
    expect(e).toBeInstanceOf(ApiError)
    expect(e).toMatchObject({ status: 401, code: 'unauthorized', detail: 'unknown token' })
    expect((e as Error).message).toBe('GET /api/me: 401 unknown token')
    expect(seen).toEqual([['unknown token', 'bad']])
  })

  it('403, 413, 429: errors with their codes, not reported as 401', async () => {
    const seen: string[] = []
    const off = onUnauthorized((m) => seen.push(m))
    for (const [status, code] of [[403, 'forbidden'], [413, 'body_too_large'], [429, 'rate_limited'], [429, 'limit_remote_controls']] as const) {
      stubFetch(() => ({ status, body: { code, message: 'no' } }))
      await expect(api('POST', '/api/remote-controls', {})).rejects.toMatchObject({ status, code, detail: 'no' })
    }
    off()
    expect(seen).toEqual([])
  })
})

describe('wsUrl', () => {
  const loc = { protocol: 'http:', host: '127.0.0.1:8080' }
  it('carries the token as access_token, URL-encoded', () => {
    expect(wsUrl('rc-1', 'a+b/c=', loc)).toBe('ws://127.0.0.1:8080/ws?remote_control_id=rc-1&access_token=a%2Bb%2Fc%3D')
    expect(wsUrl('rc 1', 'T', { protocol: 'https:', host: 'h' })).toBe('wss://h/ws?remote_control_id=rc%201&access_token=T')
  })
  it('uses the token in use by default, and none without one', () => {
    setToken('cur')
    expect(wsUrl('rc-1', undefined, loc)).toBe('ws://127.0.0.1:8080/ws?remote_control_id=rc-1&access_token=cur')
    setToken(null)
    expect(wsUrl('rc-1', undefined, loc)).toBe('ws://127.0.0.1:8080/ws?remote_control_id=rc-1')
  })
})

describe('WebRTC signaling', () => {
  /** Just enough of RTCPeerConnection for the signaling steps. */
  class FakePeer {
    connectionState = 'new'
    iceConnectionState = 'new'
    iceGatheringState = 'new'
    signalingState = 'stable'
    localDescription: { sdp: string } | null = null
    onicecandidate: ((e: { candidate: null | { toJSON(): unknown } }) => void) | null = null
    async setRemoteDescription() {}
    async createAnswer() {
      return { type: 'answer', sdp: 'v=0 answer' }
    }
    async setLocalDescription(d: { sdp: string }) {
      this.localDescription = d
      queueMicrotask(() => this.onicecandidate?.({ candidate: null }))
    }
    async addIceCandidate() {}
    close() {}
  }

  it('offer, answer, ice-candidate, candidates and the keepalive DELETE all carry the bearer token', async () => {
    vi.stubGlobal('RTCPeerConnection', FakePeer)
    stubFetch((url) => {
      if (url === '/api/webrtc/offer') return { status: 200, body: { session_id: 's-1', type: 'offer', sdp: 'v=0', ice_servers: [] } }
      if (url.includes('/candidates')) return { status: 200, body: { candidates: [], next: 0, complete: true } }
      return { status: 204 }
    })
    setToken('tok')
    const closed: string[] = []
    const link = openWebRtc('rc-1', { onOpen() {}, onClose: (r) => closed.push(r), onText() {}, onBinary() {}, onDetail() {} })
    await vi.waitFor(() => expect(calls.some((c) => c.url.includes('/candidates'))).toBe(true))
    await vi.waitFor(() => expect(calls.some((c) => c.url === '/api/webrtc/ice-candidate')).toBe(true))
    link.close()
    const del = calls.find((c) => c.method === 'DELETE')
    expect(del).toMatchObject({ url: '/api/webrtc/sessions/s-1', keepalive: true })
    expect(calls.map((c) => `${c.method} ${c.url.split('?')[0]}`).sort()).toEqual([
      'DELETE /api/webrtc/sessions/s-1',
      'GET /api/webrtc/sessions/s-1/candidates',
      'POST /api/webrtc/answer',
      'POST /api/webrtc/ice-candidate',
      'POST /api/webrtc/offer',
    ])
    for (const c of calls) expect(c.headers.authorization, `${c.method} ${c.url}`).toBe('Bearer tok')
    expect(calls[0].body).toEqual({ remote_control_id: 'rc-1' })
    expect(closed).toEqual([])
  })
})
