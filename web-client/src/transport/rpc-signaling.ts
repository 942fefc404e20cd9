/**
 * WebRTC signaling over JSON-RPC 2.0 on a WebSocket (docs/signaling.md "JSON-RPC 2.0 over
 * WebSocket"), for the WebRTC link's `?signaling=rpc`: the console offers, the relay answers.
 *
 * 1. A WebSocket to `/rpc` on the console's own host (`ws:`, or `wss:` under HTTPS), the token as
 *    `access_token` (browsers cannot set `Authorization` on a WebSocket), as the WebSocket link does.
 * 2. `announce {name, capabilities}` → `{peer_id, peers}`: this console is a peer; the others come
 *    and go as `peer_joined` / `peer_left` notifications (the Connection panel lists them).
 * 3. `offer {to_peer_id: "relay", remote_control_id, sdp}` → `{session_id, sdp}`: the answer (host
 *    candidates inside). Local candidates go as `ice_candidate {to_peer_id: "relay", session_id,
 *    candidate, sdp_mid, sdp_mline_index}`, `candidate: ""` last; those gathered before the offer's
 *    result wait for its `session_id`.
 * 4. The relay's later candidates arrive as `ice_candidate` notifications `from_peer_id: "relay"`
 *    with the `session_id`, `candidate: ""` last.
 * 5. The socket stays open while the link lives (its closing ends the relay session); the link's
 *    end sends `disconnect {to_peer_id: "relay", session_id}` and closes it.
 *
 * The pure parts (messages built and parsed, ids matched, errors described) are exported for the
 * tests; {@link RpcConnection} is the request/notification plumbing over any WebSocket-like object.
 */
import { getToken } from '../auth'

/** The relay's reserved peer id. */
export const RELAY = 'relay'
/** How long a request waits for its reply. */
export const CALL_TIMEOUT_MS = 10_000
/** A peer name is 1–64 characters. */
export const MAX_NAME = 64

/** `ws(s)://HOST/rpc?access_token=TOKEN` (no token: no parameter). */
export function rpcUrl(token: string | null = getToken(), loc: Pick<Location, 'protocol' | 'host'> = location): string {
  const proto = loc.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${loc.host}/rpc${token ? `?access_token=${encodeURIComponent(token)}` : ''}`
}

/** The name this console announces: the principal's, else "console"; trimmed to 64 characters. */
export function peerName(name: string | null | undefined): string {
  const n = (name ?? '').trim()
  return n ? Array.from(n).slice(0, MAX_NAME).join('') : 'console'
}

// ---- messages -----------------------------------------------------------------------------------

export type RpcId = string | number | null
export type Params = Record<string, unknown>

/** A request: it gets a reply with the same id. */
export const requestMessage = (id: number, method: string, params?: Params) =>
  JSON.stringify(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params })

/** A notification: no id, never a reply (nor an error). */
export const notificationMessage = (method: string, params?: Params) =>
  JSON.stringify(params === undefined ? { jsonrpc: '2.0', method } : { jsonrpc: '2.0', method, params })

export interface RpcErrorBody {
  code: number
  message: string
  data?: unknown
}

/** One message from the server, sorted. */
export type RpcIncoming =
  | { kind: 'result'; id: RpcId; result: unknown }
  | { kind: 'error'; id: RpcId; error: RpcErrorBody }
  | { kind: 'notification'; method: string; params: Params }
  /** Not a message of JSON-RPC 2.0 (or a request to us, which the contract has none of). */
  | { kind: 'malformed'; problem: string }

const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v)
const isId = (v: unknown): v is RpcId => v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v))

function sortOne(v: unknown): RpcIncoming {
  if (!isObject(v)) return { kind: 'malformed', problem: 'not a JSON object' }
  if (v.jsonrpc !== '2.0') return { kind: 'malformed', problem: `"jsonrpc" is ${JSON.stringify(v.jsonrpc)?.slice(0, 20)}, not "2.0"` }
  if (typeof v.method === 'string') {
    if ('id' in v) return { kind: 'malformed', problem: `a request from the server ("${v.method.slice(0, 40)}")` }
    // Positional params are not in the contract's notifications: they read as none.
    return { kind: 'notification', method: v.method, params: isObject(v.params) ? v.params : {} }
  }
  if (!('id' in v) || !isId(v.id)) return { kind: 'malformed', problem: 'a reply without a valid "id"' }
  if ('error' in v) {
    const e = v.error
    if (!isObject(e) || typeof e.code !== 'number') return { kind: 'malformed', problem: 'an "error" without a numeric "code"' }
    const error: RpcErrorBody = { code: e.code, message: typeof e.message === 'string' ? e.message : '' }
    if ('data' in e) error.data = e.data
    return { kind: 'error', id: v.id, error }
  }
  if ('result' in v) return { kind: 'result', id: v.id, result: v.result }
  return { kind: 'malformed', problem: 'a reply with neither "result" nor "error"' }
}

/** A text message from `/rpc`: one object, or a batch (an array) of them. */
export function parseRpcMessage(text: string): RpcIncoming[] {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    return [{ kind: 'malformed', problem: `not JSON: ${text.slice(0, 80)}` }]
  }
  if (Array.isArray(v)) return v.length ? v.map(sortOne) : [{ kind: 'malformed', problem: 'an empty batch' }]
  return [sortOne(v)]
}

// ---- errors ---------------------------------------------------------------------------------------

/** The standard codes and the contract's own, in words. */
const MEANINGS: Record<number, string> = {
  [-32700]: 'parse error',
  [-32600]: 'invalid request',
  [-32601]: 'method not found',
  [-32602]: 'invalid params',
  [-32603]: 'internal error',
  [-32000]: 'refused',
  [-32001]: 'rate limited',
  [-32002]: 'message too large',
}

/** An error reply (or the call's own failure: timeout, socket closed), as an exception. */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    /** `data.code` of a server error (-32000…-32099): the REST API's error code. */
    readonly dataCode: string | null,
    message: string,
    readonly method: string,
  ) {
    super(message)
    this.name = 'RpcError'
  }

  static from(method: string, e: RpcErrorBody): RpcError {
    const dataCode = isObject(e.data) && typeof e.data.code === 'string' ? e.data.code : null
    return new RpcError(e.code, dataCode, e.message, method)
  }

  /** `offer: -32000 remote_control_not_found (refused): no such remote control`. */
  describe(): string {
    const what = this.dataCode ?? MEANINGS[this.code] ?? (this.code <= -32000 && this.code >= -32099 ? 'server error' : 'error')
    const meaning = this.dataCode && MEANINGS[this.code] ? ` (${MEANINGS[this.code]})` : ''
    return `${this.method}: ${this.code} ${what}${meaning}${this.message ? `: ${this.message}` : ''}`
  }

  /** The server lacks the method (a server without JSON-RPC signaling's methods). */
  get unsupported(): boolean {
    return this.code === -32601
  }
}

/** Local failures of a call, with codes outside JSON-RPC's range. */
export const CALL_TIMEOUT = 1
export const SOCKET_CLOSED = 2

// ---- peers ----------------------------------------------------------------------------------------

export interface RpcPeer {
  peer_id: string
  name: string
  capabilities: string[]
  role: string
}

export function parsePeer(v: unknown): RpcPeer | null {
  if (!isObject(v) || typeof v.peer_id !== 'string' || !v.peer_id) return null
  return {
    peer_id: v.peer_id,
    name: typeof v.name === 'string' ? v.name : '',
    capabilities: Array.isArray(v.capabilities) ? v.capabilities.filter((c): c is string => typeof c === 'string') : [],
    role: typeof v.role === 'string' ? v.role : '',
  }
}

export function parsePeers(v: unknown): RpcPeer[] {
  return Array.isArray(v) ? v.map(parsePeer).filter((p): p is RpcPeer => p !== null) : []
}

/** `announce`'s result: this console's peer id and the peers already there. */
export function parseAnnounced(v: unknown): { peerId: string; peers: RpcPeer[] } {
  if (!isObject(v) || typeof v.peer_id !== 'string' || !v.peer_id) throw new Error('announce: a result without "peer_id"')
  return { peerId: v.peer_id, peers: parsePeers(v.peers) }
}

/** `offer`'s result when the relay answers. */
export function parseRelayAnswer(v: unknown): { sessionId: string; sdp: string } {
  if (!isObject(v)) throw new Error('offer: the result is not an object')
  if (typeof v.session_id !== 'string' || !v.session_id) throw new Error('offer: a result without "session_id"')
  if (typeof v.sdp !== 'string' || !v.sdp.trim()) throw new Error('offer: a result without "sdp"')
  return { sessionId: v.session_id, sdp: v.sdp }
}

/**
 * The peer list after a notification: `peer_joined {peer}` adds (or replaces) the peer,
 * `peer_left {peer_id}` removes it; any other notification leaves the list as it is (the same array).
 */
export function applyPeerNotification(peers: readonly RpcPeer[], method: string, params: Params): readonly RpcPeer[] {
  if (method === 'peer_joined') {
    const p = parsePeer(params.peer)
    if (!p) return peers
    const i = peers.findIndex((x) => x.peer_id === p.peer_id)
    return i < 0 ? [...peers, p] : peers.map((x, j) => (j === i ? p : x))
  }
  if (method === 'peer_left') {
    const id = typeof params.peer_id === 'string' ? params.peer_id : null
    return id && peers.some((x) => x.peer_id === id) ? peers.filter((x) => x.peer_id !== id) : peers
  }
  return peers
}

// ---- candidates -----------------------------------------------------------------------------------

/** `ice_candidate`'s params for a local candidate; `null` (gathering complete) is `candidate: ""`. */
export function candidateParams(c: RTCIceCandidateInit | null, toPeerId: string, sessionId: string | null, firstMid: string | null = null): Params {
  const p: Params = { to_peer_id: toPeerId }
  if (sessionId) p.session_id = sessionId
  if (!c || !c.candidate) return { ...p, candidate: '', sdp_mid: c?.sdpMid ?? firstMid, sdp_mline_index: c?.sdpMLineIndex ?? 0 }
  return { ...p, candidate: c.candidate, sdp_mid: c.sdpMid ?? null, sdp_mline_index: c.sdpMLineIndex ?? null }
}

/**
 * A forwarded `ice_candidate` notification's candidate for `addIceCandidate` (the empty end too,
 * with its section); `sdp_m_line_index` and the browser's own spellings are taken as well. Null
 * when the params hold no candidate.
 */
export function parseCandidateParams(params: Params): RTCIceCandidateInit | null {
  if (typeof params.candidate !== 'string') return null
  const c: RTCIceCandidateInit = { candidate: params.candidate }
  const mid = params.sdp_mid ?? params.sdpMid
  if (typeof mid === 'string') c.sdpMid = mid
  const index = params.sdp_mline_index ?? params.sdp_m_line_index ?? params.sdpMLineIndex
  if (typeof index === 'number' && Number.isInteger(index) && index >= 0) c.sdpMLineIndex = index
  if (c.sdpMid === undefined && c.sdpMLineIndex === undefined) c.sdpMLineIndex = 0
  return c
}

/** Who sent a forwarded notification (`from_peer_id`, alias `from`). */
export function fromPeer(params: Params): string | null {
  const f = params.from_peer_id ?? params.from
  return typeof f === 'string' ? f : null
}

// ---- the connection -------------------------------------------------------------------------------

/** What {@link RpcConnection} needs of a WebSocket (a test passes a fake). */
export interface RpcSocket {
  readonly readyState: number
  send(text: string): void
  close(code?: number, reason?: string): void
  onopen: ((ev: Event) => void) | null
  onmessage: ((ev: MessageEvent) => void) | null
  onclose: ((ev: CloseEvent) => void) | null
  onerror: ((ev: Event) => void) | null
}

export type RpcSocketFactory = (url: string) => RpcSocket

const OPEN = 1

interface Pending {
  method: string
  resolve(v: unknown): void
  reject(e: RpcError): void
  timer: ReturnType<typeof setTimeout>
}

/**
 * Requests and notifications over one `/rpc` socket: numeric ids from 1, each reply matched to its
 * request by id (a reply to no pending request is counted in {@link stray} and dropped); every
 * pending request fails when the socket closes.
 */
export class RpcConnection {
  /** A notification from the server. */
  onNotification: (method: string, params: Params) => void = () => {}
  /** The socket closed (not by {@link close}). */
  onClosed: (code: number, reason: string) => void = () => {}
  /** Something the server sent that is not JSON-RPC 2.0, or an error reply with `id: null`. */
  onProblem: (problem: string) => void = () => {}
  /** Replies to no pending request. */
  stray = 0
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private closed = false

  constructor(private readonly socket: RpcSocket) {
    socket.onmessage = (e) => {
      if (this.closed || typeof e.data !== 'string') return
      for (const m of parseRpcMessage(e.data)) this.take(m)
    }
    socket.onclose = (e) => {
      if (this.closed) return
      this.closed = true
      this.failAll(`the /rpc socket closed (${e.code}${e.reason ? ` ${e.reason}` : ''})`)
      this.onClosed(e.code, e.reason)
    }
  }

  /** Open a socket to `url` and wait for it (or its failure, or `signal`). */
  static open(url: string, factory: RpcSocketFactory, signal?: AbortSignal): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const s = factory(url)
      const stop = () => {
        s.onopen = s.onclose = s.onerror = null
        s.close()
        reject(new Error('aborted'))
      }
      signal?.addEventListener('abort', stop, { once: true })
      s.onerror = () => {}
      s.onopen = () => {
        signal?.removeEventListener('abort', stop)
        resolve(new RpcConnection(s))
      }
      s.onclose = (e) => {
        signal?.removeEventListener('abort', stop)
        // A refused upgrade (401, 403, 404) looks like any other failure here: 1006.
        reject(new Error(`could not open /rpc (close ${e.code}${e.reason ? ` ${e.reason}` : ''})`))
      }
    })
  }

  get isOpen(): boolean {
    return !this.closed && this.socket.readyState === OPEN
  }

  /** A request; resolves with its result, rejects with an {@link RpcError}. */
  call(method: string, params?: Params, timeoutMs = CALL_TIMEOUT_MS): Promise<unknown> {
    if (!this.isOpen) return Promise.reject(new RpcError(SOCKET_CLOSED, null, 'the /rpc socket is not open', method))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new RpcError(CALL_TIMEOUT, null, `no reply within ${timeoutMs} ms`, method))
      }, timeoutMs)
      this.pending.set(id, { method, resolve, reject, timer })
      this.socket.send(requestMessage(id, method, params))
    })
  }

  /** A notification (no reply, whatever happens); false when the socket is not open. */
  notify(method: string, params?: Params): boolean {
    if (!this.isOpen) return false
    this.socket.send(notificationMessage(method, params))
    return true
  }

  /** Requests still waiting for their reply. */
  get waiting(): number {
    return this.pending.size
  }

  /** Close the socket (1000); pending requests fail; no handler is called afterwards. */
  close(reason = 'client closed'): void {
    if (this.closed) return
    this.closed = true
    this.failAll('the /rpc socket was closed')
    this.socket.onmessage = this.socket.onclose = this.socket.onerror = this.socket.onopen = null
    if (this.socket.readyState <= OPEN) this.socket.close(1000, reason)
  }

  private failAll(why: string) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer)
      p.reject(new RpcError(SOCKET_CLOSED, null, why, p.method))
    }
    this.pending.clear()
  }

  private take(m: RpcIncoming) {
    if (m.kind === 'notification') {
      this.onNotification(m.method, m.params)
      return
    }
    if (m.kind === 'malformed') {
      this.onProblem(m.problem)
      return
    }
    const p = typeof m.id === 'number' ? this.pending.get(m.id) : undefined
    if (!p) {
      if (m.kind === 'error' && m.id === null) this.onProblem(`${m.error.code} ${m.error.message}`)
      else this.stray++
      return
    }
    this.pending.delete(m.id as number)
    clearTimeout(p.timer)
    if (m.kind === 'result') p.resolve(m.result)
    else p.reject(RpcError.from(p.method, m.error))
  }
}
