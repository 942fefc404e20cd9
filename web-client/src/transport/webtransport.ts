/**
 * The WebTransport transport (HTTP/3, the server's own UDP port; docs/wire-format.md §4
 * "Transports"):
 *
 * 1. `GET /api/webtransport` (bearer token, as every API call) says where: `port`, `path`, and the
 *    SHA-256 hashes of the server's self-signed certificates (`[]` for a CA-issued one). A 404
 *    (`webtransport_disabled`, or a server that predates it) means the server does not offer it:
 *    the link ends as *unsupported*, and Auto leaves WebTransport out.
 * 2. `new WebTransport('https://HOST:PORT/PATH?remote_control_id=…&access_token=…')`, HOST being the
 *    host the console was loaded from, with `serverCertificateHashes` when there are hashes. A
 *    refused CONNECT (401, 403, 404, 429) looks like any failed handshake to the page: the store asks
 *    `GET /api/me` afterwards, as for a WebSocket.
 * 3. One bidirectional stream, opened by us: our first message is a `ping` (the server sends nothing
 *    before it), then the same JSON messages as on WebSocket in both directions, one per line
 *    (NDJSON, {@link LineSplitter}).
 * 4. Video: each datagram is one wire packet; a packet too large for a datagram comes alone on a
 *    unidirectional stream the server opens, read to its end. Both go down the one packet path
 *    ({@link LinkHandlers.onBinary}), to the same assembler as every link's packets. Datagrams are
 *    unordered and unreliable: reassembly copes, as on WebRTC, and the supervisor holds video until
 *    the first `mapped_train_changed`.
 * 5. The server ends a session with a `closing` event, then a session close whose code is the
 *    WebSocket close code of the same cause (1001 shutting down, 4001 remote control deleted, 4003
 *    token revoked, …): the link ends with the same `closed CODE (reason)` as a WebSocket, and the
 *    same things follow (reconnect; a revoked token shows up at the access check).
 */
import { getToken } from '../auth'
import { DecodeError } from '../wire/common'
import { HEADER_LEN, MAX_PAYLOAD_LIMIT } from '../wire/packet'
import { api, ApiError, type Link, type LinkHandlers } from './link'

/** `GET /api/webtransport`. */
export interface WebTransportInfo {
  port: number
  path: string
  /** Lower-case hex SHA-256 of the DER certificates to accept, the current one first; `[]`: a CA-issued one. */
  certificate_hashes: string[]
  self_signed?: boolean
  /** RFC 3339, the current certificate's notAfter. */
  expires_at?: string
}

/** A line (one JSON message) longer than this, newline not counted, ends the session (1009), as on the server. */
export const MAX_EVENT_LINE = 65_536
/** One wire packet at most: a unidirectional stream carries exactly one. */
export const MAX_PACKET_BYTES = HEADER_LEN + MAX_PAYLOAD_LIMIT
/** Bytes written on the event stream and not yet taken by the transport before `send` says no. */
export const MAX_UNSENT = 65_536
/** Datagrams the browser may queue for us (`incomingHighWaterMark`): a keyframe of a few hundred packets. */
const INCOMING_DATAGRAMS = 1024
/** After the event stream ends, how long to wait for the session's close code. */
const CLOSE_GRACE_MS = 1000

/** The server's session close codes: those of its WebSocket closes (docs/wire-format.md §4). */
export const CLOSE_CODES: Readonly<Record<number, string>> = {
  1001: 'server shutting down',
  1002: 'protocol error',
  1009: 'message too big',
  4001: 'remote control deleted',
  4003: 'token revoked',
}

export const NO_WEBTRANSPORT = 'this browser has no WebTransport (it needs a secure context: https, or http://localhost)'

/** Whether this browser has WebTransport (only in a secure context: https, or http://localhost). */
export function webTransportSupported(g: object = globalThis): boolean {
  return typeof (g as { WebTransport?: unknown }).WebTransport === 'function'
}

/** Hex (either case) to bytes; throws on an odd length or a non-hex digit. */
export function hexToBytes(hex: string): Uint8Array<ArrayBuffer> {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new Error(`not hex: "${hex.slice(0, 80)}"`)
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return out
}

/** `certificate_hashes` as `serverCertificateHashes`; each must be a SHA-256 (64 hex digits). */
export function certificateHashes(hexes: readonly string[]): WebTransportHash[] {
  return hexes.map((h, i) => {
    if (typeof h !== 'string' || h.length !== 64) throw new Error(`certificate hash ${i} is not 64 hex digits`)
    return { algorithm: 'sha-256', value: hexToBytes(h) }
  })
}

/**
 * The session URL: the console's own host (`location.hostname`, brackets included for IPv6), the
 * server's WebTransport port and path, and the same query as `/ws`. `localhost` becomes
 * `127.0.0.1`: Chromium's QUIC tries only `::1` for it, and the server's WebTransport endpoint
 * binds IPv4 loopback by default (a console opened at http://localhost:8080 could not connect).
 */
export function webTransportUrl(
  info: Pick<WebTransportInfo, 'port' | 'path'>,
  remoteControlId: string,
  token: string | null = getToken(),
  loc: Pick<Location, 'hostname'> = location,
): string {
  const path = info.path.startsWith('/') ? info.path : `/${info.path}`
  const auth = token ? `&access_token=${encodeURIComponent(token)}` : ''
  const host = loc.hostname === 'localhost' ? '127.0.0.1' : loc.hostname
  return `https://${host}:${info.port}${path}?remote_control_id=${encodeURIComponent(remoteControlId)}${auth}`
}

/** The same close description as a WebSocket's: `closed CODE (reason)`; the code's meaning when the reason is empty. */
export function describeClose(info: WebTransportCloseInfo | undefined): string {
  const code = info?.closeCode ?? 0
  const reason = info?.reason || CLOSE_CODES[code] || ''
  return `closed ${code}${reason ? ` (${reason})` : ''}`
}

/** A line of the event stream went over {@link MAX_EVENT_LINE} bytes. */
export class LineTooLong extends Error {
  constructor(readonly bytes: number, readonly limit: number) {
    super(`an event line over ${limit} bytes (${bytes} so far)`)
    this.name = 'LineTooLong'
  }
}

const NL = 0x0a
const utf8 = new TextDecoder()
const utf8Encoder = new TextEncoder()

/**
 * NDJSON framing of the event stream: bytes in, whole lines out. A chunk may hold several lines,
 * part of one, or both; the split is on the byte `\n` (which never occurs inside a UTF-8 sequence)
 * before decoding, so a character cut between chunks decodes whole. Empty lines are skipped.
 */
export class LineSplitter {
  private parts: Uint8Array[] = []
  private held = 0

  constructor(private readonly limit = MAX_EVENT_LINE) {}

  /** The lines this chunk completes; throws {@link LineTooLong} when a line outgrows the limit. */
  push(chunk: Uint8Array): string[] {
    const lines: string[] = []
    let from = 0
    for (let nl = chunk.indexOf(NL); nl >= 0; nl = chunk.indexOf(NL, from)) {
      const piece = chunk.subarray(from, nl)
      const len = this.held + piece.byteLength
      if (len > this.limit) throw new LineTooLong(len, this.limit)
      const line = this.held ? this.take(piece) : piece
      if (line.byteLength) lines.push(utf8.decode(line))
      from = nl + 1
    }
    const rest = chunk.subarray(from)
    if (rest.byteLength) {
      this.held += rest.byteLength
      if (this.held > this.limit) throw new LineTooLong(this.held, this.limit)
      this.parts.push(rest.slice()) // the reader may reuse its chunk
    }
    return lines
  }

  /** Bytes of an unfinished line. */
  get pending(): number {
    return this.held
  }

  private take(last: Uint8Array): Uint8Array {
    const out = concat([...this.parts, last], this.held + last.byteLength)
    this.parts = []
    this.held = 0
    return out
  }
}

/** One message of the event stream: the JSON text and its newline. */
export function encodeLine(text: string): Uint8Array<ArrayBuffer> {
  return utf8Encoder.encode(`${text}\n`)
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** The `reason` of a `closing` event line, or null for any other line. */
function closingReason(line: string): string | null {
  try {
    const ev = JSON.parse(line) as { type?: unknown; reason?: unknown }
    return ev.type === 'closing' ? String(ev.reason ?? '') : null
  } catch {
    return null
  }
}

export interface WebTransportLinkOptions {
  /** The browser's `WebTransport` constructor; a test passes a fake. */
  WebTransport?: typeof WebTransport
  location?: Pick<Location, 'hostname'>
  token?: string | null
  /** Browser wall clock (ms since the epoch) for the first ping. */
  now?: () => number
  /** How often the counters go to the Connection panel. */
  statsEveryMs?: number
}

/** Link-level counters, shown in the Connection panel (the overlay's figures come from the packets). */
interface Counters {
  datagrams: number
  streams: number
  packets: number
  bytes: number
  eventLines: number
}

export function openWebTransport(remoteControlId: string, h: LinkHandlers, opts: WebTransportLinkOptions = {}): Link {
  const now = opts.now ?? (() => performance.timeOrigin + performance.now())
  let done = false
  let opened = false
  let wt: WebTransport | null = null
  let writer: WritableStreamDefaultWriter<Uint8Array> | null = null
  let unsent = 0
  let state = 'connecting'
  const fixed: Record<string, string> = {}
  const n: Counters = { datagrams: 0, streams: 0, packets: 0, bytes: 0, eventLines: 0 }
  let shown = ''
  /** The reason of the server's `closing` event, for a session that then ends without a close code. */
  let closing: string | null = null
  const abort = new AbortController()

  const detail = (extra: Record<string, string> = {}) => {
    const d: Record<string, string> = { state, ...fixed }
    if (wt && opened) d.maxDatagramSize = String(wt.datagrams.maxDatagramSize)
    for (const [k, v] of Object.entries(n)) d[k] = String(v)
    shown = JSON.stringify(n)
    h.onDetail({ ...d, ...extra })
  }
  const stats = setInterval(() => {
    if (!done && JSON.stringify(n) !== shown) detail()
  }, opts.statsEveryMs ?? 1000)

  const release = (closeInfo: WebTransportCloseInfo) => {
    clearInterval(stats)
    abort.abort()
    try {
      wt?.close(closeInfo)
    } catch {
      // already closed
    }
  }

  const finish = (
    reason: string,
    why?: { unsupported?: boolean },
    extra: Record<string, string> = {},
    closeInfo: WebTransportCloseInfo = { closeCode: 1000, reason: 'client closed' },
  ) => {
    if (done) return
    state = 'closed'
    detail(extra)
    done = true
    release(closeInfo)
    h.onClose(reason, why)
  }

  /** The event stream ended or failed: the session's close code, if it comes soon, says why. */
  let settling = false
  const settle = (reason: string) => {
    if (done || settling) return
    settling = true
    setTimeout(() => finish(reason), CLOSE_GRACE_MS)
  }

  const onPacket = (bytes: Uint8Array) => {
    n.packets++
    n.bytes += bytes.byteLength
    h.onBinary(bytes)
  }

  const readEvents = async (readable: ReadableStream<Uint8Array>) => {
    const reader = readable.getReader()
    const lines = new LineSplitter()
    try {
      for (;;) {
        const { value, done: end } = await reader.read()
        if (done) return
        if (end) break
        for (const line of lines.push(value)) {
          if (done) return
          n.eventLines++
          if (line.includes('"closing"')) closing = closingReason(line) ?? closing
          h.onText(line)
        }
      }
    } catch (e) {
      if (done) return
      if (e instanceof LineTooLong) {
        // The same rule the server applies to us: a line that long closes the session with 1009.
        const close = { closeCode: 1009, reason: 'message too big' }
        finish(`event stream: ${e.message}`, undefined, { closeCode: '1009', closeReason: close.reason }, close)
        return
      }
      settle(`event stream failed: ${errorText(e)}`)
      return
    }
    settle('the server ended the event stream')
  }

  const readDatagrams = async (readable: ReadableStream<Uint8Array>) => {
    const reader = readable.getReader()
    try {
      for (;;) {
        const { value, done: end } = await reader.read()
        if (done || end) return
        n.datagrams++
        onPacket(value)
      }
    } catch {
      // The session is over: `closed` says how.
    }
  }

  /** One packet on a unidirectional stream, read to its end. */
  const readPacketStream = async (stream: ReadableStream<Uint8Array>) => {
    const reader = stream.getReader()
    const parts: Uint8Array[] = []
    let len = 0
    try {
      for (;;) {
        const { value, done: end } = await reader.read()
        if (done) {
          reader.cancel().catch(() => {})
          return
        }
        if (end) break
        len += value.byteLength
        if (len > MAX_PACKET_BYTES) {
          reader.cancel().catch(() => {})
          n.streams++
          h.onBinary(new DecodeError('length_mismatch', `a unidirectional stream over ${MAX_PACKET_BYTES} bytes: it carries one packet at most`))
          return
        }
        parts.push(value)
      }
    } catch {
      return // reset, or the session ended: the packet is lost, as a datagram can be
    }
    n.streams++
    onPacket(parts.length === 1 ? parts[0] : concat(parts, len))
  }

  const readStreams = async (incoming: ReadableStream<ReadableStream<Uint8Array>>) => {
    const reader = incoming.getReader()
    try {
      for (;;) {
        const { value, done: end } = await reader.read()
        if (done || end) return
        void readPacketStream(value)
      }
    } catch {
      // The session is over: `closed` says how.
    }
  }

  const run = async () => {
    const Ctor = opts.WebTransport ?? (webTransportSupported() ? WebTransport : undefined)
    if (!Ctor) {
      finish(NO_WEBTRANSPORT, { unsupported: true })
      return
    }
    let info: WebTransportInfo
    try {
      info = await api<WebTransportInfo>('GET', '/api/webtransport', undefined, abort.signal)
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        finish(`the server offers no WebTransport (${e.code || e.detail || '404'})`, { unsupported: true })
      } else {
        finish(e instanceof ApiError ? e.message : `GET /api/webtransport: ${errorText(e)}`)
      }
      return
    }
    if (done) return
    if (!info || !Number.isInteger(info.port) || info.port < 1 || info.port > 65535 || typeof info.path !== 'string' || !Array.isArray(info.certificate_hashes)) {
      finish(`GET /api/webtransport: not a WebTransport answer: ${JSON.stringify(info)?.slice(0, 200)}`)
      return
    }
    const hashes = certificateHashes(info.certificate_hashes)
    const loc = opts.location ?? location
    const token = opts.token === undefined ? getToken() : opts.token
    fixed.url = webTransportUrl(info, remoteControlId, null, loc) // never the token: details reach the test hook
    fixed.certificate = hashes.length
      ? `${info.self_signed === false ? '' : 'self-signed, '}pinned by ${hashes.length} hash${hashes.length > 1 ? 'es' : ''}${info.expires_at ? `, until ${info.expires_at}` : ''}`
      : 'verified by the browser'
    state = 'handshake'
    detail()
    const session = new Ctor(webTransportUrl(info, remoteControlId, token, loc), hashes.length ? { serverCertificateHashes: hashes } : {})
    wt = session
    session.closed.then(
      (c) => finish(describeClose(c), undefined, { closeCode: String(c?.closeCode ?? 0), closeReason: c?.reason ?? '' }),
      (e: unknown) =>
        finish(!opened ? `not opened: ${errorText(e)}` : closing !== null ? `server closing (${closing})` : `session failed: ${errorText(e)}`),
    )
    await session.ready
    if (done) return
    // Read datagrams at once, and let the browser queue a keyframe's burst while the page is busy
    // (a datagram that does not fit its queue is dropped, as one lost on the way).
    try {
      session.datagrams.incomingHighWaterMark = Math.max(session.datagrams.incomingHighWaterMark || 0, INCOMING_DATAGRAMS)
    } catch {
      // read-only in this browser: its default
    }
    void readDatagrams(session.datagrams.readable)
    void readStreams(session.incomingUnidirectionalStreams)
    const bidi = await session.createBidirectionalStream()
    if (done) return
    writer = bidi.writable.getWriter()
    void readEvents(bidi.readable)
    // The server speaks only after our first message.
    await writer.write(encodeLine(JSON.stringify({ type: 'ping', t: now() })))
    if (done) return
    opened = true
    state = 'open'
    detail()
    h.onOpen()
  }

  detail()
  // Not before `openWebTransport` has returned: a link never ends inside its opener.
  Promise.resolve()
    .then(run)
    .catch((e: unknown) => finish(opened ? errorText(e) : `not opened: ${errorText(e)}`))

  return {
    kind: 'webtransport',
    send(text: string) {
      if (done || !opened || !writer || text.includes('\n') || unsent > MAX_UNSENT) return false
      const bytes = encodeLine(text)
      unsent += bytes.byteLength
      writer.write(bytes).then(
        () => (unsent -= bytes.byteLength),
        (e: unknown) => finish(`send failed: ${errorText(e)}`),
      )
      return true
    },
    close() {
      if (done) return
      done = true
      release({ closeCode: 1000, reason: 'client closed' })
    },
  }
}
