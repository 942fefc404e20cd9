// The WebTransport link: NDJSON framing of the event stream, certificate hashes, the session URL,
// and the link against a fake of the browser's `WebTransport` (the W3C interface shapes, minimally).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { setToken } from '../src/auth'
import type { LinkHandlers, VideoData } from '../src/transport/link'
import {
  certificateHashes, describeClose, encodeLine, hexToBytes, LineSplitter, LineTooLong, MAX_EVENT_LINE, MAX_PACKET_BYTES,
  openWebTransport, webTransportSupported, webTransportUrl,
} from '../src/transport/webtransport'
import { DecodeError } from '../src/wire/common'

const enc = new TextEncoder()
const bytes = (s: string) => enc.encode(s)

// ---- framing ------------------------------------------------------------------------------------

describe('LineSplitter (NDJSON)', () => {
  it('several lines in one chunk', () => {
    const l = new LineSplitter()
    expect(l.push(bytes('{"type":"welcome"}\n{"type":"pong","t":1}\n'))).toEqual(['{"type":"welcome"}', '{"type":"pong","t":1}'])
    expect(l.pending).toBe(0)
  })

  it('a line split across chunks, a character cut in two included', () => {
    const l = new LineSplitter()
    const line = bytes('{"reason":"Zürich → Bern"}\n')
    const cut = line.indexOf(0xc3) + 1 // inside "ü"
    expect(l.push(line.subarray(0, 5))).toEqual([])
    expect(l.push(line.subarray(5, cut))).toEqual([])
    expect(l.pending).toBe(cut)
    expect(l.push(line.subarray(cut))).toEqual(['{"reason":"Zürich → Bern"}'])
    expect(l.pending).toBe(0)
  })

  it('the end of one line, whole lines and the start of the next in one chunk; empty lines skipped', () => {
    const l = new LineSplitter()
    expect(l.push(bytes('{"a":'))).toEqual([])
    expect(l.push(bytes('1}\n\n{"b":2}\n{"c"'))).toEqual(['{"a":1}', '{"b":2}'])
    expect(l.push(bytes(':3}\n'))).toEqual(['{"c":3}'])
  })

  it('one byte at a time', () => {
    const l = new LineSplitter()
    const out: string[] = []
    for (const b of bytes('{"x":"é"}\n{"y":1}\n')) out.push(...l.push(Uint8Array.of(b)))
    expect(out).toEqual(['{"x":"é"}', '{"y":1}'])
  })

  it('keeps its own copy of a partial line (the reader may reuse the chunk)', () => {
    const l = new LineSplitter()
    const chunk = bytes('{"k":1')
    l.push(chunk)
    chunk.fill(0x20)
    expect(l.push(bytes('}\n'))).toEqual(['{"k":1}'])
  })

  it('a line of exactly the limit passes; one byte more, with or without its newline, is refused', () => {
    const limit = 32
    const exact = 'x'.repeat(limit)
    expect(new LineSplitter(limit).push(bytes(`${exact}\n`))).toEqual([exact])
    expect(() => new LineSplitter(limit).push(bytes(`${exact}x\n`))).toThrow(LineTooLong)
    const l = new LineSplitter(limit)
    l.push(bytes(exact.slice(0, 20)))
    expect(() => l.push(bytes('y'.repeat(13)))).toThrow(/over 32 bytes/)
  })

  it('the default limit is the server message limit of a line (65,536 bytes)', () => {
    expect(MAX_EVENT_LINE).toBe(65_536)
    const l = new LineSplitter()
    expect(() => l.push(new Uint8Array(MAX_EVENT_LINE + 1).fill(0x61))).toThrow(LineTooLong)
  })

  it('encodeLine: UTF-8 JSON and one newline', () => {
    expect([...encodeLine('{"t":1}')]).toEqual([...bytes('{"t":1}\n')])
  })
})

// ---- hashes, URL, close codes ---------------------------------------------------------------------

describe('certificate hashes', () => {
  it('hexToBytes: either case; odd lengths and non-hex digits are refused', () => {
    expect([...hexToBytes('00ff10Ab')]).toEqual([0, 255, 16, 171])
    expect(hexToBytes('')).toHaveLength(0)
    expect(() => hexToBytes('abc')).toThrow(/not hex/)
    expect(() => hexToBytes('zz')).toThrow(/not hex/)
    expect(() => hexToBytes('0x00')).toThrow(/not hex/)
  })

  it('certificate_hashes → serverCertificateHashes, in order; each must be a SHA-256', () => {
    const a = '0123456789abcdef'.repeat(4)
    const b = 'f'.repeat(64)
    const out = certificateHashes([a, b])
    expect(out.map((h) => h.algorithm)).toEqual(['sha-256', 'sha-256'])
    expect([...(out[0].value as Uint8Array)].slice(0, 8)).toEqual([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef])
    expect((out[0].value as Uint8Array).byteLength).toBe(32)
    expect([...(out[1].value as Uint8Array)]).toEqual(new Array(32).fill(255))
    expect(certificateHashes([])).toEqual([])
    expect(() => certificateHashes(['abcd'])).toThrow(/certificate hash 0 is not 64 hex digits/)
  })
})

describe('webTransportUrl', () => {
  const info = { port: 4434, path: '/wt' }
  it('the console host, the server port and path, the /ws query with the token URL-encoded', () => {
    expect(webTransportUrl(info, 'rc 1', 'a+b/c=', { hostname: 'train.example' })).toBe(
      'https://train.example:4434/wt?remote_control_id=rc%201&access_token=a%2Bb%2Fc%3D',
    )
  })
  it('no token: no access_token; IPv6 hosts keep their brackets; a path without its slash', () => {
    expect(webTransportUrl(info, 'rc-1', null, { hostname: '[::1]' })).toBe('https://[::1]:4434/wt?remote_control_id=rc-1')
    expect(webTransportUrl({ port: 1, path: 'wt' }, 'rc-1', null, { hostname: 'localhost' })).toBe('https://127.0.0.1:1/wt?remote_control_id=rc-1')
  })
  it('the token in use by default', () => {
    setToken('cur')
    expect(webTransportUrl(info, 'rc-1', undefined, { hostname: 'h' })).toBe('https://h:4434/wt?remote_control_id=rc-1&access_token=cur')
    setToken(null)
  })
})

describe('describeClose', () => {
  it('the WebSocket wording: closed CODE (reason), the code meaning when the reason is empty', () => {
    expect(describeClose({ closeCode: 4003, reason: 'token revoked: credentials reloaded' })).toBe('closed 4003 (token revoked: credentials reloaded)')
    expect(describeClose({ closeCode: 1001, reason: '' })).toBe('closed 1001 (server shutting down)')
    expect(describeClose({ closeCode: 4001 })).toBe('closed 4001 (remote control deleted)')
    expect(describeClose({ closeCode: 1009 })).toBe('closed 1009 (message too big)')
    expect(describeClose({ closeCode: 1002 })).toBe('closed 1002 (protocol error)')
    expect(describeClose({ closeCode: 7 })).toBe('closed 7')
    expect(describeClose(undefined)).toBe('closed 0')
  })
})

// ---- a fake of the browser API ------------------------------------------------------------------

interface Deferred<T> {
  promise: Promise<T>
  resolve(v: T): void
  reject(e: unknown): void
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((a, b) => {
    resolve = a
    reject = b
  })
  return { promise, resolve, reject }
}

/**
 * The W3C `WebTransport` shapes the link uses: `ready`, `closed`, `close()`, `datagrams.readable`,
 * `incomingUnidirectionalStreams`, `createBidirectionalStream()`; plus the server's side for tests.
 */
class FakeWebTransport {
  static sessions: FakeWebTransport[] = []
  private readyD = deferred<void>()
  private closedD = deferred<WebTransportCloseInfo>()
  readonly ready = this.readyD.promise
  readonly closed = this.closedD.promise
  private dgCtl!: ReadableStreamDefaultController<Uint8Array>
  private uniCtl!: ReadableStreamDefaultController<ReadableStream<Uint8Array>>
  private evCtl: ReadableStreamDefaultController<Uint8Array> | null = null
  readonly datagrams = {
    maxDatagramSize: 1211,
    readable: new ReadableStream<Uint8Array>({ start: (c) => void (this.dgCtl = c) }),
  }
  readonly incomingUnidirectionalStreams = new ReadableStream<ReadableStream<Uint8Array>>({ start: (c) => void (this.uniCtl = c) })
  /** What the client wrote on its bidirectional stream. */
  written: Uint8Array[] = []
  bidiOpened = 0
  closedWith: WebTransportCloseInfo | null = null
  cancelledStreams = 0

  constructor(readonly url: string, readonly options?: WebTransportOptions) {
    FakeWebTransport.sessions.push(this)
    // A rejected promise nobody awaits must not fail the test run (the browser's are handled too).
    this.ready.catch(() => {})
  }

  async createBidirectionalStream() {
    this.bidiOpened++
    return {
      readable: new ReadableStream<Uint8Array>({ start: (c) => void (this.evCtl = c) }),
      writable: new WritableStream<Uint8Array>({ write: (chunk) => void this.written.push(chunk.slice()) }),
    }
  }

  close(info?: WebTransportCloseInfo) {
    if (this.closedWith) return
    this.closedWith = info ?? {}
    this.end()
    this.closedD.resolve(info ?? {})
  }

  // ---- the server's side ----
  accept() {
    this.readyD.resolve()
  }
  refuse(message = 'Opening handshake failed.') {
    const e = new Error(message)
    this.readyD.reject(e)
    this.closedD.reject(e)
  }
  event(text: string) {
    this.evCtl?.enqueue(bytes(text))
  }
  datagram(b: Uint8Array) {
    this.dgCtl.enqueue(b)
  }
  /** A unidirectional stream carrying `chunks`, then FIN (unless `fin` is false). */
  uniStream(chunks: Uint8Array[], fin = true) {
    this.uniCtl.enqueue(
      new ReadableStream<Uint8Array>({
        start: (c) => {
          for (const x of chunks) c.enqueue(x)
          if (fin) c.close()
        },
        cancel: () => void this.cancelledStreams++,
      }),
    )
  }
  /** The server closes the session with an application code and reason. */
  serverClose(closeCode: number, reason: string) {
    this.closedWith = { closeCode, reason }
    this.end()
    this.closedD.resolve({ closeCode, reason })
  }
  get lines(): string[] {
    return this.written.map((b) => new TextDecoder().decode(b))
  }
  private end() {
    const err = new Error('session closed')
    for (const c of [this.dgCtl, this.uniCtl, this.evCtl]) {
      try {
        c?.error(err)
      } catch {
        // already closed
      }
    }
  }
}

interface Seen {
  opened: number
  closed: { reason: string; why?: { unsupported?: boolean } }[]
  texts: string[]
  binary: VideoData[]
  details: Record<string, string>[]
}

function handlers(): { h: LinkHandlers; seen: Seen } {
  const seen: Seen = { opened: 0, closed: [], texts: [], binary: [], details: [] }
  return {
    seen,
    h: {
      onOpen: () => void seen.opened++,
      onClose: (reason, why) => void seen.closed.push(why ? { reason, why } : { reason }),
      onText: (t) => void seen.texts.push(t),
      onBinary: (d) => void seen.binary.push(d),
      onDetail: (d) => void seen.details.push(d),
    },
  }
}

const HASH = 'ab'.repeat(32)
let requests: { url: string; auth: string | undefined }[] = []
let infoAnswer: { status: number; body: unknown } = { status: 200, body: {} }

beforeEach(() => {
  FakeWebTransport.sessions = []
  requests = []
  infoAnswer = {
    status: 200,
    body: { port: 4434, path: '/wt', certificate_hashes: [HASH, 'cd'.repeat(32)], self_signed: true, expires_at: '2026-12-11T00:00:00Z' },
  }
  vi.stubGlobal('fetch', async (url: string, init: RequestInit = {}) => {
    requests.push({ url, auth: (init.headers as Record<string, string> | undefined)?.authorization })
    return new Response(JSON.stringify(infoAnswer.body), { status: infoAnswer.status })
  })
  setToken('tok en')
})

afterEach(() => {
  vi.unstubAllGlobals()
  setToken(null)
})

const open = (h: LinkHandlers, opts: Parameters<typeof openWebTransport>[2] = {}) =>
  openWebTransport('rc-1', h, {
    WebTransport: FakeWebTransport as unknown as typeof WebTransport,
    location: { hostname: 'localhost' },
    now: () => 1234,
    ...opts,
  })

/** Open a link and bring its session up; returns the link, the fake session and what was seen. */
async function up(opts: Parameters<typeof openWebTransport>[2] = {}) {
  const { h, seen } = handlers()
  const link = open(h, opts)
  await vi.waitFor(() => expect(FakeWebTransport.sessions).toHaveLength(1))
  const wt = FakeWebTransport.sessions[0]
  wt.accept()
  await vi.waitFor(() => expect(seen.opened).toBe(1))
  return { link, wt, seen }
}

const packet = (n: number, fill = 1) => new Uint8Array(n).fill(fill)

describe('WebTransport link', () => {
  it('webTransportSupported looks for the constructor', () => {
    expect(webTransportSupported({})).toBe(false)
    expect(webTransportSupported({ WebTransport: FakeWebTransport })).toBe(true)
  })

  it('asks /api/webtransport with the token, opens the URL with the pinned hashes, pings first, then opens', async () => {
    const { wt, seen } = await up()
    expect(requests).toEqual([{ url: '/api/webtransport', auth: 'Bearer tok en' }])
    expect(wt.url).toBe('https://127.0.0.1:4434/wt?remote_control_id=rc-1&access_token=tok%20en')
    const pinned = wt.options?.serverCertificateHashes ?? []
    expect(pinned.map((x) => [x.algorithm, Buffer.from(x.value as Uint8Array).toString('hex')])).toEqual([
      ['sha-256', HASH],
      ['sha-256', 'cd'.repeat(32)],
    ])
    expect(wt.bidiOpened).toBe(1)
    expect(wt.lines).toEqual(['{"type":"ping","t":1234}\n'])
    const last = seen.details[seen.details.length - 1]
    expect(last).toMatchObject({ state: 'open', url: 'https://127.0.0.1:4434/wt?remote_control_id=rc-1', maxDatagramSize: '1211' })
    expect(last.certificate).toContain('pinned by 2 hashes')
    expect(JSON.stringify(seen.details)).not.toContain('tok') // the details reach the test hook: never the token
  })

  it('a CA-issued certificate (no hashes): no serverCertificateHashes', async () => {
    infoAnswer.body = { port: 443, path: '/wt', certificate_hashes: [], self_signed: false }
    const { wt, seen } = await up()
    expect(wt.options).toEqual({})
    expect(seen.details[seen.details.length - 1].certificate).toBe('verified by the browser')
  })

  it('events: NDJSON lines, however the chunks fall', async () => {
    const { wt, seen } = await up()
    wt.event('{"type":"welcome","transport":"webtransport"}\n{"type":"mapped_')
    wt.event('train_changed","train_id":"t1"}\n')
    await vi.waitFor(() => expect(seen.texts).toHaveLength(2))
    expect(seen.texts.map((t) => JSON.parse(t).type)).toEqual(['welcome', 'mapped_train_changed'])
  })

  it('commands go out as NDJSON; a text with a raw newline is refused', async () => {
    const { link, wt } = await up()
    expect(link.send('{"type":"command","request_id":"r1","command":{"type":"horn","duration_ms":100}}')).toBe(true)
    expect(link.send('{"a":\n1}')).toBe(false)
    await vi.waitFor(() => expect(wt.lines).toHaveLength(2))
    expect(wt.lines[1]).toBe('{"type":"command","request_id":"r1","command":{"type":"horn","duration_ms":100}}\n')
  })

  it('nothing is sent before the session is open', () => {
    const { h } = handlers()
    const link = open(h)
    expect(link.send('{"type":"ping","t":1}')).toBe(false)
    link.close()
  })

  it('video: each datagram is one packet, each unidirectional stream is one packet read to its end', async () => {
    const { wt, seen } = await up({ statsEveryMs: 5 })
    wt.datagram(packet(1176, 1))
    wt.datagram(packet(40, 2))
    wt.uniStream([packet(1000, 3), packet(1000, 3), packet(500, 3)])
    await vi.waitFor(() => expect(seen.binary).toHaveLength(3))
    const sizes = seen.binary.map((d) => (d as Uint8Array).byteLength)
    expect(sizes.sort((a, b) => a - b)).toEqual([40, 1176, 2500])
    const big = seen.binary.find((d) => (d as Uint8Array).byteLength === 2500) as Uint8Array
    expect(big.every((b) => b === 3)).toBe(true)
    await vi.waitFor(() => expect(seen.details[seen.details.length - 1]).toMatchObject({ datagrams: '2', streams: '1', packets: '3', bytes: String(1176 + 40 + 2500) }))
  })

  it('a unidirectional stream longer than one packet is cut off and counted as a malformed packet', async () => {
    const { wt, seen } = await up()
    wt.uniStream([packet(MAX_PACKET_BYTES), packet(1)], false)
    await vi.waitFor(() => expect(seen.binary).toHaveLength(1))
    expect(seen.binary[0]).toBeInstanceOf(DecodeError)
    expect((seen.binary[0] as DecodeError).label).toBe('length_mismatch')
    expect(wt.cancelledStreams).toBe(1)
  })

  it.each([
    [1001, 'server shutting down', 'closed 1001 (server shutting down)'],
    [4001, 'remote control deleted', 'closed 4001 (remote control deleted)'],
    [4003, 'token revoked', 'closed 4003 (token revoked)'],
    [1009, '', 'closed 1009 (message too big)'],
  ])('the server closes with %i: the link ends like a WebSocket closed with that code', async (code, reason, want) => {
    const { wt, seen } = await up()
    wt.event('{"type":"closing","reason":"going"}\n')
    await vi.waitFor(() => expect(seen.texts).toHaveLength(1))
    wt.serverClose(code, reason)
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: want })
    expect(seen.details[seen.details.length - 1]).toMatchObject({ state: 'closed', closeCode: String(code), closeReason: reason })
  })

  it('the event stream ends before the session: the close code still names the cause', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    try {
      const { h, seen } = handlers()
      open(h)
      await vi.waitFor(() => expect(FakeWebTransport.sessions).toHaveLength(1))
      const wt = FakeWebTransport.sessions[0]
      wt.accept()
      await vi.waitFor(() => expect(seen.opened).toBe(1))
      ;(wt as unknown as { evCtl: ReadableStreamDefaultController<Uint8Array> }).evCtl.close() // FIN on the event stream
      await vi.advanceTimersByTimeAsync(100)
      expect(seen.closed).toEqual([])
      wt.serverClose(4003, 'token revoked')
      await vi.advanceTimersByTimeAsync(0)
      expect(seen.closed).toEqual([{ reason: 'closed 4003 (token revoked)' }])
      await vi.advanceTimersByTimeAsync(2000)
      expect(seen.closed).toHaveLength(1)
    } finally {
      vi.useRealTimers()
    }
  })

  it('a session that fails after a closing event ends with that reason', async () => {
    const { wt, seen } = await up()
    wt.event('{"type":"closing","reason":"server shutting down"}\n')
    await vi.waitFor(() => expect(seen.texts).toHaveLength(1))
    wt.refuse('Connection lost.')
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'server closing (server shutting down)' })
  })

  it('a session that fails without a closing event', async () => {
    const { wt, seen } = await up()
    wt.refuse('Connection lost.')
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'session failed: Connection lost.' })
  })

  it('an event line over the limit: the console closes the session with 1009', async () => {
    const { wt, seen } = await up()
    wt.event('{"type":"telemetry","x":"')
    wt.event('x'.repeat(MAX_EVENT_LINE))
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0].reason).toMatch(/^event stream: an event line over 65536 bytes/)
    expect(wt.closedWith).toEqual({ closeCode: 1009, reason: 'message too big' })
  })

  it('the server does not offer WebTransport (404 webtransport_disabled): unsupported, no session', async () => {
    infoAnswer = { status: 404, body: { code: 'webtransport_disabled', message: 'WebTransport is disabled' } }
    const { h, seen } = handlers()
    open(h)
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'the server offers no WebTransport (webtransport_disabled)', why: { unsupported: true } })
    expect(FakeWebTransport.sessions).toEqual([])
  })

  it('a browser without WebTransport: unsupported, and the server is not even asked', async () => {
    const { h, seen } = handlers()
    const link = openWebTransport('rc-1', h, { location: { hostname: 'localhost' } })
    expect(seen.closed).toEqual([]) // never inside the opener
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0].why).toEqual({ unsupported: true })
    expect(seen.closed[0].reason).toMatch(/no WebTransport/)
    expect(requests).toEqual([])
    expect(link.kind).toBe('webtransport')
  })

  it('a refused handshake (401/403/404/429 to the CONNECT) is a plain failure, not "unsupported"', async () => {
    const { h, seen } = handlers()
    open(h)
    await vi.waitFor(() => expect(FakeWebTransport.sessions).toHaveLength(1))
    FakeWebTransport.sessions[0].refuse()
    await vi.waitFor(() => expect(seen.closed).toHaveLength(1))
    expect(seen.closed[0]).toEqual({ reason: 'not opened: Opening handshake failed.' })
    expect(seen.opened).toBe(0)
  })

  it('other API failures and malformed answers are plain failures', async () => {
    infoAnswer = { status: 503, body: { code: 'unavailable', message: 'busy' } }
    const a = handlers()
    open(a.h)
    await vi.waitFor(() => expect(a.seen.closed).toHaveLength(1))
    expect(a.seen.closed[0]).toEqual({ reason: 'GET /api/webtransport: 503 busy' })

    infoAnswer = { status: 200, body: { port: 4434, path: '/wt', certificate_hashes: ['nothex'] } }
    const b = handlers()
    open(b.h)
    await vi.waitFor(() => expect(b.seen.closed).toHaveLength(1))
    expect(b.seen.closed[0].reason).toBe('not opened: certificate hash 0 is not 64 hex digits')

    infoAnswer = { status: 200, body: { port: 0, path: '/wt', certificate_hashes: [] } }
    const c = handlers()
    open(c.h)
    await vi.waitFor(() => expect(c.seen.closed).toHaveLength(1))
    expect(c.seen.closed[0].reason).toMatch(/not a WebTransport answer/)
    expect(FakeWebTransport.sessions).toEqual([])
  })

  it('close(): the session is closed, and no handler is called afterwards', async () => {
    const { link, wt, seen } = await up()
    link.close()
    expect(wt.closedWith).toEqual({ closeCode: 1000, reason: 'client closed' })
    await new Promise((r) => setTimeout(r, 10))
    expect(seen.closed).toEqual([])
    expect(seen.binary).toEqual([])
    expect(link.send('{"type":"ping","t":1}')).toBe(false)
  })

  it('closed while fetching the endpoint: no session is made', async () => {
    const { h, seen } = handlers()
    const link = open(h)
    link.close()
    await new Promise((r) => setTimeout(r, 10))
    expect(FakeWebTransport.sessions).toEqual([])
    expect(seen.closed).toEqual([])
  })
})
