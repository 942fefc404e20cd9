// The console store's role-dependent behaviour, without a browser: the transports are fakes, the
// server is a stubbed fetch, and location/history/localStorage are plain objects.
import { createPinia, setActivePinia } from 'pinia'
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
      send: (text: string) => {
        if (l.closed) return false
        l.sent.push(text)
        return true
      },
      close: () => {
        l.closed = true
      },
    }
  }
  /** Whether the page's browser has WebTransport. */
  const browser = { webTransport: true }
  return { links, open, browser }
})

vi.mock('../src/transport/webrtc', () => ({ openWebRtc: fake.open('webrtc') }))
vi.mock('../src/transport/whep', () => ({ openWhep: fake.open('whep') }))
vi.mock('../src/transport/websocket', () => ({ openWebSocket: fake.open('websocket'), wsUrl: () => 'ws://fake' }))
vi.mock('../src/transport/mqtt', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../src/transport/mqtt')>()),
  openMqtt: fake.open('mqtt'),
}))
vi.mock('../src/transport/webtransport', () => ({
  openWebTransport: fake.open('webtransport'),
  webTransportSupported: () => fake.browser.webTransport,
  NO_WEBTRANSPORT: 'no WebTransport here',
}))

// ---- a fake server --------------------------------------------------------------------------------

interface Req {
  method: string
  path: string
  auth: string | null
  body: unknown
}

type Answer = { status: number; body?: unknown }
type Route = (r: Req) => Answer | undefined

let requests: Req[] = []
let tokens: Record<string, { name: string; role: string }> = {}
let assigned: Record<string, { id: string; name: string; train_id: string | null; created_at: string }[]> = {}
let trains: unknown[] = []
let extra: Route | null = null

function serve(r: Req): Answer {
  const x = extra?.(r)
  if (x) return x
  const token = r.auth?.replace(/^Bearer /, '') ?? null
  const who = token ? tokens[token] : undefined
  if (!who) return { status: 401, body: { code: 'unauthorized', message: token ? 'unknown access token' : 'missing access token' } }
  if (r.method === 'GET' && r.path === '/api/me') return { status: 200, body: who }
  if (r.method === 'GET' && r.path === '/api/trains') return { status: 200, body: trains }
  if (who.role !== 'admin') {
    if (r.method === 'GET' && r.path === '/api/remote-controls') return { status: 200, body: assigned[who.name] ?? [] }
    return { status: 403, body: { code: 'forbidden', message: `${who.role}s may not do that` } }
  }
  if (r.method === 'POST' && r.path === '/api/remote-controls') {
    // The console's own remote control is owned by its admin: not listed to operators and viewers.
    if ((r.body as { owner?: string }).owner !== who.name) return { status: 400, body: { code: 'bad_request', message: 'no owner' } }
    return { status: 201, body: { id: 'rc-new', name: 'console', train_id: null, created_at: 'now' } }
  }
  const put = /^\/api\/remote-controls\/([^/]+)\/train$/.exec(r.path)
  if (r.method === 'PUT' && put) {
    return { status: 200, body: { id: put[1], name: 'console', train_id: (r.body as { train_id: string }).train_id, created_at: 'now' } }
  }
  return { status: 404, body: { code: 'not_found', message: r.path } }
}

// ---- the browser globals the store reads ----------------------------------------------------------

let storage: Map<string, string>
let url: { search: string; hash: string; pathname: string }
let replaced: string[]

function page(search: string, hash: string, stored: Record<string, string> = {}) {
  url = { search, hash, pathname: '/' }
  storage = new Map(Object.entries(stored))
  replaced = []
  vi.stubGlobal('location', { ...url, protocol: 'http:', host: '127.0.0.1:8080' })
  vi.stubGlobal('history', { replaceState: (_d: unknown, _t: string, u: string) => replaced.push(u) })
  vi.stubGlobal('localStorage', {
    getItem: (k: string) => storage.get(k) ?? null,
    setItem: (k: string, v: string) => void storage.set(k, v),
    removeItem: (k: string) => void storage.delete(k),
  })
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
  vi.resetModules()
  fake.links.length = 0
  fake.browser.webTransport = true
  requests = []
  extra = null
  tokens = {
    'admin-token': { name: 'demo-admin', role: 'admin' },
    'op-token': { name: 'demo-operator', role: 'operator' },
    'viewer-token': { name: 'demo-viewer', role: 'viewer' },
  }
  assigned = {}
  trains = [{ id: 't1', online: true, cameras: [], bitrate_bps: 0, fps: 0, packets_in: 0, frames_in: 0, subscribers: 0, connections: 0 }]
  vi.stubGlobal('requestAnimationFrame', (cb: () => void) => setTimeout(cb, 16))
  vi.stubGlobal('fetch', async (path: string, init: RequestInit = {}) => {
    const headers = (init.headers ?? {}) as Record<string, string>
    const r: Req = {
      method: init.method ?? 'GET',
      path: path.split('?')[0],
      auth: headers.authorization ?? null,
      body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
    }
    requests.push(r)
    const a = serve(r)
    return new Response(a.body === undefined ? null : JSON.stringify(a.body), { status: a.status })
  })
})

afterEach(() => {
  vi.useRealTimers()
  vi.unstubAllGlobals()
})

/** A fresh store module (and auth module) for this page. */
async function openConsole() {
  const { useConsole } = await import('../src/stores/console')
  setActivePinia(createPinia())
  const store = useConsole()
  store.start()
  await settle()
  return store
}

const settle = () => vi.advanceTimersByTimeAsync(0)
const paths = () => requests.map((r) => `${r.method} ${r.path}`)

/** The link opens and the server says which train it follows. */
async function connect(l: FakeLink, train: string | null = 't1') {
  l.h.onOpen()
  l.h.onText(JSON.stringify({ type: 'mapped_train_changed', train_id: train, online: true, cameras: [] }))
  await settle()
}

function lastCommand(l: FakeLink): { request_id: string; command: { type: string } } {
  const cmds = l.sent.map((t) => JSON.parse(t) as { type: string }).filter((m) => m.type === 'command')
  return cmds[cmds.length - 1] as unknown as { request_id: string; command: { type: string } }
}

// ---- tests ----------------------------------------------------------------------------------------

describe('console store: token sources', () => {
  it('the URL fragment: used for every request, removed from the URL, kept in localStorage', async () => {
    page('?transport=websocket&train=t1', '#token=admin-token&rc=rc-123', { 'railcast.token': 'viewer-token' })
    const store = await openConsole()
    expect(replaced).toEqual(['/?transport=websocket&train=t1#rc=rc-123'])
    expect(storage.get('railcast.token')).toBe('admin-token')
    expect(store.tokenSource).toBe('fragment')
    expect(store.me).toEqual({ name: 'demo-admin', role: 'admin' })
    expect(requests.length).toBeGreaterThan(0)
    expect(requests.every((r) => r.auth === 'Bearer admin-token')).toBe(true)
  })

  it('localStorage when the URL has none', async () => {
    page('?transport=websocket', '', { 'railcast.token': 'op-token' })
    const store = await openConsole()
    expect(store.tokenSource).toBe('storage')
    expect(store.me?.role).toBe('operator')
    expect(replaced).toEqual([])
  })

  it('no token: the prompt shows the server 401 message; nothing connects; a typed token starts the session', async () => {
    page('?transport=websocket', '')
    const store = await openConsole()
    expect(requests[0]).toMatchObject({ path: '/api/me', auth: null })
    expect(store.tokenPrompt).toBe(true)
    expect(store.authError).toBe('missing access token')
    await vi.advanceTimersByTimeAsync(10_000)
    expect(paths()).toEqual(['GET /api/me']) // stopped: no polling with a refused token
    expect(fake.links).toEqual([])

    expect(store.useToken('  http://127.0.0.1:8080/#token=op-token  ')).toBe(true)
    assigned['demo-operator'] = [{ id: 'rc-7', name: 'cab', train_id: 't1', created_at: 'now' }]
    await settle()
    expect(store.tokenPrompt).toBe(false)
    expect(store.tokenSource).toBe('input')
    expect(storage.get('railcast.token')).toBe('op-token')
    expect(fake.links.map((l) => l.id)).toEqual(['rc-7'])
  })
})

describe('console store: 401', () => {
  it('a wrong token: prompt with the server message, no video, no retries', async () => {
    page('?transport=websocket', '#token=wrong')
    const store = await openConsole()
    expect(store.tokenPrompt).toBe(true)
    expect(store.authError).toBe('unknown access token')
    expect(store.testHook()).toMatchObject({ tokenPrompt: true, authError: 'unknown access token', hasToken: true, transport: null, role: null })
    await vi.advanceTimersByTimeAsync(10_000)
    expect(requests).toHaveLength(1)
    expect(fake.links).toEqual([])
  })

  it('a WebSocket that fails: GET /api/me tells a revoked token apart, and everything stops', async () => {
    page('?transport=websocket', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-1', name: 'cab', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    expect(store.phase).toBe('connected')

    delete tokens['op-token'] // revoked: the next upgrade is refused, which the browser only sees as a failure
    const before = requests.length
    l.h.onClose('closed 1006')
    await settle()
    expect(requests.slice(before).map((r) => r.path)).toContain('/api/me')
    expect(store.authError).toBe('unknown access token')
    expect(store.tokenPrompt).toBe(true)
    expect(store.phase).toBe('stopped')
    expect(store.mapping.trainId).toBeNull()
    const n = requests.length
    const linksBefore = fake.links.length
    await vi.advanceTimersByTimeAsync(20_000)
    expect(requests.length).toBe(n)
    expect(fake.links.length).toBe(linksBefore)
  })

  it('a 401 answering a token that was replaced meanwhile is ignored', async () => {
    page('?transport=websocket', '#token=admin-token&train=t1')
    const { reportUnauthorized } = await import('../src/auth')
    const store = await openConsole()
    reportUnauthorized('stale', 'some-old-token')
    expect(store.authError).toBeNull()
    expect(store.me?.role).toBe('admin')
  })

  it('forget token: storage cleared, prompt shown', async () => {
    page('?transport=websocket', '#token=admin-token')
    const store = await openConsole()
    store.forgetToken()
    await settle()
    expect(storage.has('railcast.token')).toBe(false)
    expect(store.token).toBeNull()
    expect(store.tokenPrompt).toBe(true)
    expect(store.me).toBeNull()
    expect(requests[requests.length - 1]).toMatchObject({ path: '/api/me', auth: null })
  })
})

describe('console store: admin', () => {
  it('creates its remote control, maps it to the train picked, and may command', async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(paths()).toEqual(expect.arrayContaining(['GET /api/me', 'POST /api/remote-controls', 'PUT /api/remote-controls/rc-new/train']))
    expect(fake.links.map((l) => [l.kind, l.id])).toEqual([['websocket', 'rc-new']])
    await connect(fake.links[0])
    expect(store.testHook()).toMatchObject({ role: 'admin', user: 'demo-admin', trainListReadOnly: false, remoteControlId: 'rc-new', commandBlocked: null })
  })
})

describe('console store: the welcome', () => {
  it("sets the payload limit: a larger packet is refused as payload_too_large, counted and explained", async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    const store = await openConsole()
    const l = fake.links[0]
    l.h.onOpen()
    l.h.onText(JSON.stringify({ type: 'welcome', remote_control_id: 'rc-new', transport: 'websocket', train_id: 't1', server_time_us: 1, max_payload: 100 }))
    l.h.onText(JSON.stringify({ type: 'mapped_train_changed', train_id: 't1', online: true, cameras: [] }))
    await settle()
    const { encodeVideoPacket } = await import('../src/wire')
    const pkt = (len: number) => encodeVideoPacket({ keyframe: false, codec: 'h264', camera: 0, seq: 1, captureUs: 1, chunkIndex: 0, chunkCount: 2 }, new Uint8Array(len))
    l.h.onBinary(pkt(101))
    l.h.onBinary(pkt(100))
    expect(store.testHook()).toMatchObject({
      payloadLimit: 100,
      rejected: { payload_too_large: 1 },
      lastRejection: "payload_too_large: payload of 101 bytes exceeds the limit of 100 (the server's max_payload)",
    })
    expect(store.log.some((e) => e.text === 'websocket: welcome as rc-new, payload limit 100 bytes')).toBe(true)
  })
})

describe('console store: operator', () => {
  it('uses an assigned remote control (#rc= first), never creates or maps one', async () => {
    page('?transport=websocket&train=t9', '#token=op-token&rc=rc-2', { 'railcast.assignedRemoteControlId': 'rc-1' })
    assigned['demo-operator'] = [
      { id: 'rc-1', name: 'a', train_id: 't1', created_at: 'now' },
      { id: 'rc-2', name: 'b', train_id: 't1', created_at: 'now' },
    ]
    const store = await openConsole()
    expect(fake.links.map((l) => l.id)).toEqual(['rc-2'])
    expect(store.rcId).toBe('rc-2')
    await connect(fake.links[0])
    expect(store.commandBlocked).toBeNull()
    expect(store.testHook()).toMatchObject({ role: 'operator', trainListReadOnly: true, assignedRemoteControls: ['rc-1', 'rc-2'] })

    await store.selectTrain('t9') // read-only: no request
    expect(paths().filter((p) => !p.startsWith('GET'))).toEqual([])
  })

  it('the stored remote control when still listed, else the first', async () => {
    page('?transport=websocket', '#token=op-token', { 'railcast.assignedRemoteControlId': 'rc-2' })
    assigned['demo-operator'] = [
      { id: 'rc-1', name: 'a', train_id: 't1', created_at: 'now' },
      { id: 'rc-2', name: 'b', train_id: 't1', created_at: 'now' },
    ]
    await openConsole()
    expect(fake.links.map((l) => l.id)).toEqual(['rc-2'])
  })

  it('nothing assigned: says so, polls every few seconds, connects once an admin assigns one', async () => {
    page('?transport=websocket', '#token=op-token')
    const store = await openConsole()
    expect(store.noAssignment).toBe('no remote control is assigned to demo-operator yet')
    expect(store.commandBlocked).toBe('no remote control is assigned to demo-operator yet')
    expect(fake.links).toEqual([])
    const lists = () => requests.filter((r) => r.path === '/api/remote-controls').length
    expect(lists()).toBe(1)
    await vi.advanceTimersByTimeAsync(3000)
    expect(lists()).toBe(2)
    assigned['demo-operator'] = [{ id: 'rc-5', name: 'a', train_id: 't1', created_at: 'now' }]
    await vi.advanceTimersByTimeAsync(3000)
    expect(store.noAssignment).toBeNull()
    expect(fake.links.map((l) => l.id)).toEqual(['rc-5'])
  })

  it('its remote control unassigned while connected: back to waiting at the next reconnect', async () => {
    page('?transport=websocket', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-5', name: 'a', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    await connect(fake.links[0])
    assigned['demo-operator'] = []
    fake.links[0].h.onClose('closed 1008')
    await vi.advanceTimersByTimeAsync(1000)
    expect(store.noAssignment).toBe('no remote control is assigned to demo-operator yet')
    expect(store.phase).toBe('stopped')
    expect(store.rcId).toBeNull()
  })

  it('a rate_limited command_error is shown with its code', async () => {
    page('?transport=websocket', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-1', name: 'a', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    const entry = store.send({ type: 'horn', duration_ms: 100 })
    const sent = lastCommand(l)
    expect(sent.request_id).toBe(entry.request_id)
    l.h.onText(JSON.stringify({ type: 'command_error', request_id: sent.request_id, code: 'rate_limited', message: 'at most 10 commands/s' }))
    expect(store.acks[0]).toMatchObject({ status: 'error', code: 'rate_limited', message: 'at most 10 commands/s' })
    expect(store.lastCommandError).toMatchObject({ code: 'rate_limited', meaning: 'too many commands: slow down', message: 'at most 10 commands/s' })
    expect(store.log[0].text).toBe('horn 100 ms: refused, rate_limited: too many commands: slow down — at most 10 commands/s')
  })
})

describe('console store: viewer', () => {
  it('watches; commands disabled with the reason; a forced command refused as forbidden is shown', async () => {
    page('?transport=websocket', '#token=viewer-token&rc=rc-v')
    assigned['demo-viewer'] = [{ id: 'rc-v', name: 'wall', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    const l = fake.links[0]
    expect(l.id).toBe('rc-v')
    await connect(l)
    expect(store.phase).toBe('connected')
    expect(store.mapping.trainId).toBe('t1')
    expect(store.commandBlocked).toBe('the viewer role may watch but not command')
    expect(store.testHook()).toMatchObject({ role: 'viewer', trainListReadOnly: true, commandBlocked: 'the viewer role may watch but not command' })

    store.send({ type: 'set_speed', kmh: 10 }) // what the e2e hook does past the disabled buttons
    const sent = lastCommand(l)
    l.h.onText(JSON.stringify({ type: 'command_error', request_id: sent.request_id, code: 'forbidden', message: 'viewers may not command' }))
    expect(store.acks[0]).toMatchObject({ status: 'error', code: 'forbidden' })
    expect(store.testHook().lastCommandError).toMatchObject({ code: 'forbidden', label: 'set speed 10 km/h' })
    expect(store.log[0].text).toContain('forbidden')
    expect(paths().filter((p) => !p.startsWith('GET'))).toEqual([])
  })
})

describe('console store: WebTransport', () => {
  it('?transport=webtransport: a WebTransport link carries the session and the commands', async () => {
    page('?transport=webtransport&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(fake.links.map((l) => [l.kind, l.id])).toEqual([['webtransport', 'rc-new']])
    const l = fake.links[0]
    await connect(l)
    expect(store.testHook()).toMatchObject({ mode: 'webtransport', transport: 'webtransport', state: 'connected', trainId: 't1' })
    const entry = store.send({ type: 'horn', duration_ms: 100 })
    expect(lastCommand(l).request_id).toBe(entry.request_id)
    expect(entry.transport).toBe('webtransport')
  })

  it('closed 4003 (token revoked): GET /api/me says 401, and everything stops, as after a WebSocket close', async () => {
    page('?transport=webtransport', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-1', name: 'cab', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    delete tokens['op-token']
    l.h.onText(JSON.stringify({ type: 'closing', reason: 'token revoked' }))
    l.h.onClose('closed 4003 (token revoked)')
    await settle()
    expect(store.log.some((e) => e.text === 'webtransport: server closing (token revoked)')).toBe(true)
    expect(store.authError).toBe('unknown access token')
    expect(store.phase).toBe('stopped')
    const n = fake.links.length
    await vi.advanceTimersByTimeAsync(20_000)
    expect(fake.links.length).toBe(n)
  })

  it('closed 4001 (remote control deleted): an operator goes back to waiting for an assignment', async () => {
    page('?transport=webtransport', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-5', name: 'a', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    await connect(fake.links[0])
    assigned['demo-operator'] = []
    fake.links[0].h.onClose('closed 4001 (remote control deleted)')
    await vi.advanceTimersByTimeAsync(1000)
    expect(store.noAssignment).toBe('no remote control is assigned to demo-operator yet')
    expect(store.phase).toBe('stopped')
    expect(store.authError).toBeNull()
  })

  it('closed 1001 (server shutting down): reconnects later', async () => {
    page('?transport=webtransport&train=t1', '#token=admin-token')
    const store = await openConsole()
    await connect(fake.links[0])
    fake.links[0].h.onClose('closed 1001 (server shutting down)')
    await settle()
    expect(store.phase).toBe('waiting')
    await vi.advanceTimersByTimeAsync(600)
    expect(fake.links.map((l) => l.kind)).toEqual(['webtransport', 'webtransport'])
    expect(store.authError).toBeNull()
  })

  it('Auto: WebRTC, then WebTransport, then WebSocket; the hook shows the ranking', async () => {
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(store.testHook()).toMatchObject({ ranking: ['webrtc', 'webtransport', 'websocket'], skipped: {} })
    fake.links[0].h.onClose('offer: 503')
    await settle()
    expect(fake.links.map((l) => l.kind)).toEqual(['webrtc', 'webtransport'])
    await connect(fake.links[1])
    expect(store.testHook()).toMatchObject({ transport: 'webtransport', trainId: 't1' })
  })

  it('Auto in a browser without WebTransport: WebRTC, then WebSocket', async () => {
    fake.browser.webTransport = false
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(store.testHook()).toMatchObject({ ranking: ['webrtc', 'websocket'], skipped: { webtransport: 'no WebTransport here' } })
    fake.links[0].h.onClose('offer: 503')
    await settle()
    expect(fake.links.map((l) => l.kind)).toEqual(['webrtc', 'websocket'])
  })

  it('Auto, the server without WebTransport: skipped, and no access check for that', async () => {
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    fake.links[0].h.onClose('offer: 503')
    await settle()
    const before = requests.length
    fake.links[1].h.onClose('the server offers no WebTransport (webtransport_disabled)', { unsupported: true })
    await settle()
    expect(fake.links.map((l) => l.kind)).toEqual(['webrtc', 'webtransport', 'websocket'])
    expect(requests.slice(before).map((r) => r.path)).not.toContain('/api/me')
    expect(store.testHook()).toMatchObject({
      ranking: ['webrtc', 'websocket'],
      skipped: { webtransport: 'the server offers no WebTransport (webtransport_disabled)' },
    })
  })
})

describe('console store: Auto and MQTT (GET /api/mqtt)', () => {
  const broker = (url: string | null): Route => (r) =>
    r.method === 'GET' && r.path === '/api/mqtt' ? { status: 200, body: { url, connected: true, max_message: 4000 } } : undefined

  it('no broker (404 mqtt_disabled): MQTT left out, the ranking stays WebRTC, WebTransport, WebSocket', async () => {
    extra = (r) => (r.path === '/api/mqtt' ? { status: 404, body: { code: 'mqtt_disabled', message: 'no broker' } } : undefined)
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(paths()).toContain('GET /api/mqtt')
    expect(requests.find((r) => r.path === '/api/mqtt')?.auth).toBe('Bearer admin-token')
    expect(store.testHook()).toMatchObject({ ranking: ['webrtc', 'webtransport', 'websocket'], skipped: { mqtt: 'the server offers no MQTT (mqtt_disabled)' } })
    for (const k of [0, 1, 2]) {
      fake.links[k].h.onClose('failed')
      await settle()
    }
    expect(fake.links.map((l) => l.kind)).toEqual(['webrtc', 'webtransport', 'websocket'])
  })

  it('url null: left out as well', async () => {
    extra = broker(null)
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(store.testHook().ranking).toEqual(['webrtc', 'webtransport', 'websocket'])
    expect(store.testHook().skipped.mqtt).toMatch(/no broker URL/)
  })

  it('a broker URL: MQTT joins last, and Auto falls to it after WebSocket', async () => {
    extra = broker('ws://127.0.0.1:9001')
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(store.testHook()).toMatchObject({ ranking: ['webrtc', 'webtransport', 'websocket', 'mqtt'] })
    expect(store.testHook().skipped).toEqual({})
    for (const k of [0, 1, 2]) {
      fake.links[k].h.onClose('failed')
      await settle()
    }
    expect(fake.links.map((l) => l.kind)).toEqual(['webrtc', 'webtransport', 'websocket', 'mqtt'])
    await connect(fake.links[3])
    expect(store.testHook()).toMatchObject({ transport: 'mqtt', trainId: 't1' })
  })

  it('?transport=mqtt: the MQTT link carries the session and the commands; Auto is not asked about', async () => {
    page('?transport=mqtt&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(fake.links.map((l) => l.kind)).toEqual(['mqtt'])
    await connect(fake.links[0])
    expect(store.testHook()).toMatchObject({ mode: 'mqtt', transport: 'mqtt', state: 'connected' })
    expect(paths()).not.toContain('GET /api/mqtt')
  })
})

describe('console store: WHEP', () => {
  it('?transport=whep: the link carries session and commands; its tracks play while it is active', async () => {
    page('?transport=whep&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(fake.links.map((l) => [l.kind, l.id])).toEqual([['whep', 'rc-new']])
    const l = fake.links[0]
    await connect(l)
    expect(store.testHook()).toMatchObject({ mode: 'whep', transport: 'whep', state: 'connected', trainId: 't1', media: null })
    // Two cameras' tracks (stand-ins: node has no MediaStream).
    const streams = [{ id: 's0', getVideoTracks: () => [{}] }, { id: 's1', getVideoTracks: () => [] }] as unknown as MediaStream[]
    const stats = [{ index: 0, framesDecoded: 42 }]
    l.h.onMedia?.({ streams, audio: null, stats: async () => stats as never, audioStats: async () => null })
    expect(store.hasMedia).toBe(true)
    expect(store.streamAt(0)).toBe(streams[0])
    expect(store.streamAt(2)).toBeNull()
    // Two frames shown now, captured 40 ms ago (RTP timestamps: capture time at 90 kHz), their
    // last packets in 5 ms after capture: glass-to-glass 40 ms.
    const wall = Date.now()
    const shown = wall - performance.timeOrigin
    for (const lag of [40, 40]) {
      const capture = wall - lag
      store.framePresented(0, { expectedDisplayTime: shown, receiveTime: capture + 5 - performance.timeOrigin, rtpTimestamp: Math.round(capture * 90) % 2 ** 32 })
    }
    await vi.advanceTimersByTimeAsync(300)
    const m = store.testHook().media
    expect(m).toMatchObject({ tracks: 1, stats, framesPresented: { 0: 2 } })
    expect(m?.latency[0].latencySamples).toHaveLength(2)
    expect(m?.latency[0].latencyP50).toBeCloseTo(40, 0)
    expect(m?.latency[1].latencySamples).toEqual([])
    const entry = store.send({ type: 'horn', duration_ms: 100 })
    expect(lastCommand(l).request_id).toBe(entry.request_id)
    expect(entry.transport).toBe('whep')
    // The link goes: no tracks any more.
    l.h.onClose('connection failed')
    await settle()
    expect(store.hasMedia).toBe(false)
    expect(store.testHook().media).toBeNull()
  })

  it('Auto never picks WHEP', async () => {
    page('?transport=auto&train=t1', '#token=admin-token')
    const store = await openConsole()
    expect(fake.links.map((l) => l.kind)).toEqual(['webrtc'])
    expect(store.testHook().ranking).not.toContain('whep')
  })
})

describe('console store: control lease', () => {
  const sentOf = (l: FakeLink, type: string) => l.sent.map((t) => JSON.parse(t) as Record<string, unknown>).filter((m) => m.type === type)
  const pings = (l: FakeLink) => sentOf(l, 'ping').length
  // The supervisor reads performance.now(): fake it too.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance'] })
  })
  /** `ms` of time with the server answering (a pong every 200 ms: the link is not silent). */
  async function run(l: FakeLink, ms: number) {
    for (let t = 0; t < ms; t += 200) {
      l.h.onText(JSON.stringify({ type: 'pong', t: 0, server_time_us: 0 }))
      await vi.advanceTimersByTimeAsync(200)
    }
  }

  it('takes control with its console id, pings every 250 ms while holding, resumes on a new link, 1 s after loss', async () => {
    page('?transport=websocket', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-1', name: 'cab', train_id: 't1', created_at: 'now' }]
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    expect(store.controlOffer).toBe('take')
    await run(l, 5000)
    const slow = pings(l)
    expect(slow).toBeGreaterThanOrEqual(4)
    expect(slow).toBeLessThanOrEqual(6)

    store.takeControl()
    const take = sentOf(l, 'take_control')
    expect(take).toEqual([{ type: 'take_control', console_id: store.consoleId }])
    expect(store.consoleId).toMatch(/^console-[0-9a-f]{16}$/)
    const me = { name: 'demo-operator', role: 'operator', session: 1, transport: 'websocket', console_id: store.consoleId, since_us: 1 }
    l.h.onText(JSON.stringify({ type: 'control_changed', train_id: 't1', holder: me, reason: 'taken' }))
    await settle()
    expect(store.control.mine).toBe(true)
    expect(store.controlOffer).toBe('release')
    expect(store.testHook().pingEveryMs).toBe(250)
    const p0 = pings(l)
    await run(l, 2000)
    expect(pings(l) - p0).toBeGreaterThanOrEqual(7) // 8 in 2 s
    expect(pings(l) - p0).toBeLessThanOrEqual(9)

    // The link drops; the next one takes control back with the same console id after its mapping.
    l.h.onClose('closed 1006')
    await vi.advanceTimersByTimeAsync(3000)
    const l2 = fake.links[fake.links.length - 1]
    expect(l2).not.toBe(l)
    await connect(l2)
    expect(sentOf(l2, 'take_control')).toEqual([{ type: 'take_control', console_id: store.consoleId }])
    l2.h.onText(JSON.stringify({ type: 'control_changed', train_id: 't1', holder: { ...me, session: 2 }, reason: 'resumed' }))
    await settle()
    expect(store.control).toMatchObject({ mine: true, wanted: true, lost: null, pending: null })

    // Lost: prominent, and back to 1 s pings.
    l2.h.onText(JSON.stringify({ type: 'control_changed', train_id: 't1', holder: null, reason: 'operator lost: nothing from demo-operator for 1000 ms' }))
    await settle()
    expect(store.control.lost).toMatchObject({ mine: true, holder: 'demo-operator' })
    expect(store.testHook().pingEveryMs).toBe(1000)
    expect(store.controlOffer).toBe('take')
  })

  it('control_held is shown; an operator gets no take-over; the audit is admins only', async () => {
    page('?transport=websocket', '#token=op-token')
    assigned['demo-operator'] = [{ id: 'rc-1', name: 'cab', train_id: 't1', created_at: 'now' }]
    trains = [{ ...(trains[0] as object), control: { name: 'bob', role: 'operator', session: 9, transport: 'webrtc', since: 'x' } }]
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    await vi.advanceTimersByTimeAsync(1100)
    expect(store.control.holder?.name).toBe('bob')
    expect(store.controlOffer).toBeNull()
    store.takeControl() // past the UI
    l.h.onText(JSON.stringify({ type: 'error', code: 'control_held', message: 'bob (operator) controls t1' }))
    await settle()
    expect(store.control.error).toEqual({ code: 'control_held', message: 'bob (operator) controls t1' })
    expect(store.testHook().pingEveryMs).toBe(1000)
    store.showAudit(true)
    await settle()
    expect(store.audit.shown).toBe(false)
    expect(paths()).not.toContain('GET /api/audit')
  })

  it('an admin: take over with force; the history loads from the audit, newest first', async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    trains = [{ ...(trains[0] as object), control: { name: 'bob', role: 'operator', session: 9, transport: 'webrtc', since: 'x' } }]
    const entry = (seq: number, type: string) => ({ seq, at_us: seq, principal: 'bob', role: 'operator', remote_control_id: 'rc', session: 9, transport: 'webrtc', train_id: 't1', request_id: `r${seq}`, command: { type }, result: 'acked', ok: true, code: null, message: '', command_id: seq, rtt_us: 100 })
    const afters: (string | null)[] = []
    const orders: (string | null)[] = []
    extra = (r) => {
      if (r.path !== '/api/audit') return undefined
      // The newest first when asked (`order=newest`), else the log's order.
      const newest = orders.at(-1) === 'newest'
      const entries = newest ? [entry(2, 'set_speed'), entry(1, 'horn')] : [entry(1, 'horn'), entry(2, 'set_speed')]
      return { status: 200, body: { entries, next: null } }
    }
    vi.stubGlobal('fetch', ((orig) => async (path: string, init?: RequestInit) => {
      if (path.startsWith('/api/audit')) {
        const q = new URL(path, 'http://x').searchParams
        afters.push(q.get('after'))
        orders.push(q.get('order'))
      }
      return orig(path, init)
    })(globalThis.fetch))
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    await vi.advanceTimersByTimeAsync(1100)
    expect(store.controlOffer).toBe('take-over')
    store.takeControl(true)
    expect(sentOf(l, 'take_control')).toEqual([{ type: 'take_control', console_id: store.consoleId, force: true }])
    store.showAudit(true)
    await settle()
    expect(store.audit.entries.map((e) => e.seq)).toEqual([2, 1])
    await vi.advanceTimersByTimeAsync(2100)
    // One read of the newest, then only what follows the newest seq held.
    expect(afters.slice(0, 3)).toEqual([null, '2', '2'])
    expect(orders.slice(0, 3)).toEqual(['newest', null, null])
  })
})

describe('console store: the connection panel after a switch (Chromium finding)', () => {
  it('WebRTC → WebSocket: the WebRTC details keep no open channels or connected ICE', async () => {
    page('?transport=webrtc&train=t1', '#token=admin-token')
    const store = await openConsole()
    const rtc = fake.links[0]
    rtc.h.onDetail({
      signaling: 'rest', restSignaling: 'offer received', session: 's-1', connectionState: 'connected', iceConnectionState: 'connected',
      signalingState: 'stable', videoChannel: 'open', commandChannel: 'open',
    })
    await connect(rtc)
    expect(store.details.webrtc).toMatchObject({ state: 'open', restSignaling: 'connected (stable)', iceConnectionState: 'connected' })
    store.setMode('websocket')
    await settle()
    const ws = fake.links[1]
    expect(ws.kind).toBe('websocket')
    expect(rtc.closed).toBe(true)
    ws.h.onDetail({ readyState: 'OPEN' })
    await connect(ws)
    expect(store.details.webrtc.state).toBe('closed')
    expect(store.details.webrtc).not.toHaveProperty('videoChannel')
    expect(store.details.webrtc).not.toHaveProperty('iceConnectionState')
    expect(store.details.websocket).toMatchObject({ state: 'open', readyState: 'OPEN' })
    expect(store.testHook().transport).toBe('websocket')
  })
})

describe('console store: trends', () => {
  it('samples each camera once a second while links run, and forgets them when they stop', async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    const store = await openConsole()
    const l = fake.links[0]
    l.h.onOpen()
    l.h.onText(JSON.stringify({ type: 'mapped_train_changed', train_id: 't1', online: true, cameras: [{ id: 0, codec: 'h264', width: 320, height: 180, fps: 30 }] }))
    await settle()
    // No packet yet: the pipeline has no camera to sample.
    await vi.advanceTimersByTimeAsync(3000)
    expect(store.testHook().trendPoints).toEqual({})
    const s = store.trainSession()
    s.cameraStats.value = [{ camera: 0, fps: 30, bitrateBps: 300_000, latencyP50: 80 } as never]
    s.sampleTrends()
    expect(s.trendPoints()).toEqual({ 0: 1 })
    expect(s.trends.get(0)?.latest()).toMatchObject({ latencyMs: 80, bitrateKbps: 300, fps: 30 })
    store.forgetToken()
    expect(s.trendPoints()).toEqual({})
  })
})

describe('console store: the wall in front', () => {
  it("closes the single view's links while the wall shows, and opens them again after", async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    const store = await openConsole()
    await connect(fake.links[0])
    store.setBackground(true)
    expect(fake.links[0].closed).toBe(true)
    expect(store.phase).toBe('stopped')
    await vi.advanceTimersByTimeAsync(5000)
    expect(fake.links).toHaveLength(1)
    store.setBackground(false)
    await settle()
    expect(fake.links.map((l) => [l.kind, l.closed])).toEqual([['websocket', true], ['websocket', false]])
    await connect(fake.links[1])
    expect(store.testHook()).toMatchObject({ transport: 'websocket', trainId: 't1' })
  })

  it('keeps them while this console holds control (closing them would end the lease)', async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    const store = await openConsole()
    const l = fake.links[0]
    await connect(l)
    store.takeControl()
    l.h.onText(JSON.stringify({
      type: 'control_changed', train_id: 't1', reason: 'taken',
      holder: { name: 'demo-admin', role: 'admin', session: 1, transport: 'websocket', console_id: store.consoleId, since_us: 1 },
    }))
    expect(store.control.mine).toBe(true)
    store.setBackground(true)
    expect(l.closed).toBe(false)
    expect(store.phase).toBe('connected')
  })

  it('a session that starts while the wall shows waits for it to go', async () => {
    page('?transport=websocket&train=t1', '#token=admin-token')
    const { useConsole } = await import('../src/stores/console')
    setActivePinia(createPinia())
    const store = useConsole()
    store.setBackground(true)
    store.start()
    await settle()
    expect(fake.links).toHaveLength(0)
    expect(store.me?.name).toBe('demo-admin')
    store.setBackground(false)
    await settle()
    expect(fake.links.map((l) => l.kind)).toEqual(['websocket'])
  })
})
