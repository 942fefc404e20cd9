/**
 * The control lease of the mapped train, as the console sees it (docs/wire-format.md §4
 * "Control", docs/security.md "Control lease and link loss"), and the command audit's pages
 * (`GET /api/audit`). Pure functions: the store keeps the state, these compute it.
 *
 * - At most one session controls a train. The console takes it with `take_control` and a
 *   `console_id` that is random per tab and the same on all its links, so that when Auto switches
 *   transport the new link takes it over without a gap (`resumed`).
 * - While it holds the lease the console must send something at least every
 *   `control_heartbeat_timeout` (1 s): it pings every {@link HOLDER_PING_MS} then.
 */
import type { ServerEvent } from './wire/client'
import type { Role } from './roles'

/** Ping interval while this console holds control (the server's timeout is 1 s by default). */
export const HOLDER_PING_MS = 250
/** Ping interval otherwise (clock estimate and silence detection only). */
export const NORMAL_PING_MS = 1000

/** Who controls a train: from `control_changed` (`since_us`) or `GET /api/trains` (`since`, RFC 3339). */
export interface ControlHolder {
  name: string
  role: string
  session: number
  transport: string
  console_id?: string | null
  since_us?: number
  since?: string
  /** In a cluster, the node of the holder's session. */
  node?: string | null
}

export type ControlChanged = Extract<ServerEvent, { type: 'control_changed' }>

export interface ControlState {
  /** The train these facts are about (null: not mapped). */
  trainId: string | null
  holder: ControlHolder | null
  /** The reason of the last change (`taken`, `released`, `resumed`, `operator lost: …`, …). */
  reason: string | null
  /** This console holds the lease (the holder's `console_id` is ours). */
  mine: boolean
  /**
   * This console wants to hold control: set by our `take_control` being granted, cleared by a
   * release or a loss. A new link re-sends `take_control` while it is set.
   */
  wanted: boolean
  /** The lease ended because its holder fell silent or went away (`operator lost: …`), and when (ms). */
  lost: { reason: string; holder: string | null; mine: boolean; at: number } | null
  /**
   * The last refusal of a control message (`control_held`, `control_unavailable`: the train is
   * connected to another node of a cluster, which holds its lease and did not answer;
   * `control_elsewhere` from servers before leases were taken through any node;
   * `not_in_control`, `forbidden`, `not_mapped`).
   */
  error: { code: string; message: string } | null
  /**
   * A `take_control` or `release_control` is on its way: `take` (a click), `resume` (a new link
   * taking back the lease this console held), `release`.
   */
  pending: 'take' | 'resume' | 'release' | null
  /** When the last `control_changed` came (ms): an older `GET /api/trains` answer is stale. */
  eventAt: number
}

export const initialControl = (): ControlState => ({
  trainId: null, holder: null, reason: null, mine: false, wanted: false, lost: null, error: null, pending: null, eventAt: 0,
})

/** The `error` codes that answer a control message. */
export const CONTROL_ERROR_CODES = new Set([
  'control_held', 'control_unavailable', 'control_elsewhere', 'not_in_control', 'forbidden', 'not_mapped',
])

/** Refusals of a take after which this console does not hold the lease. */
const TAKE_REFUSED = new Set(['control_held', 'control_unavailable', 'control_elsewhere'])

export const isOperatorLost = (reason: string | null | undefined): boolean => !!reason && reason.startsWith('operator lost')

const isMine = (h: ControlHolder | null, consoleId: string) => !!h && !!h.console_id && h.console_id === consoleId

/** A `control_changed` event (for `trainId`; another train's is ignored). */
export function onControlChanged(s: ControlState, ev: ControlChanged, consoleId: string, nowMs: number): ControlState {
  if (s.trainId !== null && ev.train_id !== s.trainId) return s
  const holder = ev.holder ?? null
  const mine = isMine(holder, consoleId)
  const lostNow = isOperatorLost(ev.reason)
  // A new link asked to resume, and the server granted a free lease instead: ours had ended
  // meanwhile (the train was told operator_lost), and nobody here heard of it.
  const lapsed = s.pending === 'resume' && mine && ev.reason === 'taken'
  const lost = lostNow
    ? { reason: ev.reason, holder: s.holder?.name ?? null, mine: s.mine || s.wanted, at: nowMs }
    : lapsed
      ? { reason: 'operator lost: the lease lapsed while the link was down; this link took control again', holder: ev.holder?.name ?? null, mine: true, at: nowMs }
      : mine && ev.reason !== 'held' && ev.reason !== 'resumed'
        ? null // we took it (again): an older loss is history
        : s.lost
  return {
    ...s,
    trainId: ev.train_id,
    holder,
    reason: ev.reason,
    mine,
    // We keep wanting it while we hold it; anything else (released, lost, taken over) ends that.
    wanted: mine,
    lost,
    error: mine || holder === null ? null : s.error,
    pending: (s.pending === 'take' || s.pending === 'resume') && mine ? null : s.pending === 'release' && !mine ? null : s.pending,
    eventAt: nowMs,
  }
}

/** An `error` event: kept when it answers a control message we sent. */
export function onControlError(s: ControlState, code: string, message: string): ControlState {
  if (!CONTROL_ERROR_CODES.has(code)) return s
  // A `forbidden` or `not_mapped` error is about a control message only when one is pending.
  if ((code === 'forbidden' || code === 'not_mapped') && !s.pending) return s
  const wasTake = s.pending === 'take' || s.pending === 'resume'
  return {
    ...s,
    error: { code, message },
    pending: null,
    // A refused (re-)take: we do not hold it, whatever we believed.
    wanted: wasTake ? false : s.wanted,
    mine: wasTake && TAKE_REFUSED.has(code) ? false : s.mine,
  }
}

/**
 * `GET /api/trains` (asked at `requestedAt`, ms): the `control` of the mapped train. It fills in
 * who holds it at start and whatever a link missed, but never overrides the events while this
 * console holds or asks for control (a poll answer may predate the latest event): the lease's
 * heartbeat depends on {@link ControlState.wanted}, which only events and refusals change.
 */
export function onTrainControl(
  s: ControlState, trainId: string | null, control: ControlHolder | null | undefined, requestedAt: number,
): ControlState {
  if (control === undefined || trainId === null) return s // a server without leases; not mapped
  if (s.wanted || s.pending || requestedAt < s.eventAt) return s
  if (s.trainId !== null && s.trainId !== trainId) return s
  const holder = control ?? null
  const same =
    s.trainId === trainId &&
    (s.holder?.session ?? null) === (holder?.session ?? null) &&
    (s.holder?.name ?? null) === (holder?.name ?? null)
  if (same) return s
  // Even our console id on it is not ours to release: a previous page of this tab (reloaded),
  // whose lease ends within the heartbeat timeout (`take_control` would resume it).
  return { ...s, trainId, holder, mine: false }
}

/** The mapping changed to `trainId`: forget the lease of another train. */
export function onMapped(s: ControlState, trainId: string | null): ControlState {
  if (s.trainId === trainId) return s
  return { ...initialControl(), trainId, lost: s.lost }
}

/** How often the supervisor pings the active link. */
export const pingEveryMs = (holding: boolean): number => (holding ? HOLDER_PING_MS : NORMAL_PING_MS)

/** What the control buttons offer this role (null: nothing, e.g. a viewer or no train). */
export type ControlOffer = 'take' | 'take-over' | 'release' | null

export function controlOffer(role: Role | null, s: ControlState, mapped: boolean): ControlOffer {
  if (!mapped || (role !== 'operator' && role !== 'admin')) return null
  if (s.mine) return 'release'
  if (!s.holder) return 'take'
  return role === 'admin' ? 'take-over' : null
}

/** The holder for people: "alice (operator, websocket)"; "you" when it is this console. */
export function describeHolder(h: ControlHolder | null, mine: boolean): string {
  if (!h) return 'nobody'
  const who = `${h.name} (${h.role}, ${h.transport}${h.node ? ` on ${h.node}` : ''})`
  return mine ? `you — ${who}` : who
}

/** `take_control`'s message. */
export function takeControlMessage(consoleId: string, force = false): { type: 'take_control'; console_id: string; force?: boolean } {
  return force ? { type: 'take_control', console_id: consoleId, force: true } : { type: 'take_control', console_id: consoleId }
}

// ---- console id -----------------------------------------------------------------------------------

export interface SessionStorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
}

export const KEY_CONSOLE_ID = 'railcast.consoleId'

/** A random id, 1–64 bytes: `console-` and 16 hex digits. */
export function newConsoleId(random: () => number = Math.random): string {
  let hex = ''
  for (let i = 0; i < 16; i++) hex += Math.floor(random() * 16).toString(16)
  return `console-${hex}`
}

/** This tab's console id: kept in sessionStorage (per tab, survives a reload), made once. */
export function consoleIdFrom(storage: SessionStorageLike | null, random?: () => number): string {
  const ok = (v: string | null): v is string => !!v && v.length <= 64
  try {
    const v = storage?.getItem(KEY_CONSOLE_ID) ?? null
    if (ok(v)) return v
  } catch {
    // storage disabled
  }
  const id = newConsoleId(random)
  try {
    storage?.setItem(KEY_CONSOLE_ID, id)
  } catch {
    // storage disabled: this page's id lives as long as the page
  }
  return id
}

// ---- audit ----------------------------------------------------------------------------------------

/** One `GET /api/audit` entry (docs/security.md "Command audit"). */
export interface AuditEntry {
  seq: number
  at_us: number
  principal: string
  role: string
  remote_control_id: string
  session: number
  transport: string
  train_id: string | null
  request_id: string
  command: { type?: string; [k: string]: unknown }
  result: string
  ok: boolean | null
  code: string | null
  message: string
  command_id: number | null
  rtt_us: number | null
  /** The node that recorded it; null outside a cluster. */
  node: string | null
}

export interface AuditPage {
  entries: AuditEntry[]
  /** One node's log: the seq to page on from (`after`); null when last, and in a cluster. */
  next: number | null
  /** A cluster-wide page: the cursor of the next page; null when last. */
  cursor: string | null
  /** A cluster-wide page: the cursor that reads only what is recorded after it; null outside a cluster. */
  resume: string | null
  /** A cluster-wide page: nodes that did not answer in time. */
  missing: string[]
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null)
const str = (v: unknown): string => (typeof v === 'string' ? v : '')

/** A page of `GET /api/audit`, checked: entries without a numeric `seq` are dropped. */
export function parseAuditPage(v: unknown): AuditPage {
  const o = (typeof v === 'object' && v !== null ? v : {}) as { entries?: unknown; next?: unknown; cursor?: unknown; resume?: unknown; missing?: unknown }
  const raw = Array.isArray(o.entries) ? o.entries : []
  const entries: AuditEntry[] = []
  for (const r of raw) {
    if (typeof r !== 'object' || r === null) continue
    const e = r as Record<string, unknown>
    const seq = num(e.seq)
    if (seq === null) continue
    const command = typeof e.command === 'object' && e.command !== null && !Array.isArray(e.command) ? (e.command as AuditEntry['command']) : {}
    entries.push({
      seq,
      at_us: num(e.at_us) ?? 0,
      principal: str(e.principal),
      role: str(e.role),
      remote_control_id: str(e.remote_control_id),
      session: num(e.session) ?? 0,
      transport: str(e.transport),
      train_id: typeof e.train_id === 'string' ? e.train_id : null,
      request_id: str(e.request_id),
      command,
      result: str(e.result),
      ok: typeof e.ok === 'boolean' ? e.ok : null,
      code: typeof e.code === 'string' ? e.code : null,
      message: str(e.message),
      command_id: num(e.command_id),
      rtt_us: num(e.rtt_us),
      node: typeof e.node === 'string' ? e.node : null,
    })
  }
  const text = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null)
  const missing = Array.isArray(o.missing) ? o.missing.filter((m): m is string => typeof m === 'string') : []
  return { entries, next: num(o.next), cursor: text(o.cursor), resume: text(o.resume), missing }
}

/** An entry's identity: its seq on its node (seqs repeat across a cluster's nodes). */
export const auditKey = (e: AuditEntry): string => `${e.node ?? ''}:${e.seq}`

/**
 * Add a page (oldest first, as the server sends them) to the history (newest first), keeping the
 * newest `keep` entries and no duplicates.
 */
export function mergeAudit(history: AuditEntry[], page: AuditEntry[], keep: number): AuditEntry[] {
  const seen = new Set(history.map(auditKey))
  const fresh = page.filter((e) => !seen.has(auditKey(e)))
  if (!fresh.length) return history
  // Newest first: by time across nodes (a cluster), by seq within one node's log.
  const newer = (a: AuditEntry, b: AuditEntry) => (a.node === b.node ? b.seq - a.seq : b.at_us - a.at_us || b.seq - a.seq)
  return [...fresh, ...history].sort(newer).slice(0, keep)
}

/**
 * The query of the next page: `after` the newest seq known (or the page's `next`), oldest first;
 * with `order` `newest`, the newest `limit` entries (newest first). In a cluster, `after` is a
 * cursor string (the page's `resume` or `cursor`) instead of a seq.
 */
export function auditQuery(train: string, limit: number, after: number | string | null, order?: 'newest'): string {
  const q = new URLSearchParams({ train, limit: String(limit) })
  if (typeof after === 'number') q.set('after', String(after))
  else if (typeof after === 'string') q.set('cursor', after)
  if (order) q.set('order', order)
  return `/api/audit?${q.toString()}`
}

/** An audit entry's command for people: "horn (duration_ms 500)", "operator_lost (alice: …)". */
export function describeAuditCommand(c: AuditEntry['command']): string {
  const type = typeof c.type === 'string' ? c.type : '?'
  const args = Object.entries(c)
    .filter(([k]) => k !== 'type')
    .map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`)
  return args.length ? `${type} (${args.join(', ')})` : type
}
