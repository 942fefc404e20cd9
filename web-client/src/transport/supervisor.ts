/**
 * Runs the transport {@link ./policy} against real links: opens and closes them, keeps the timers,
 * times out attempts, pings the active link and gives it up when it falls silent.
 *
 * It also applies the one ordering rule of §4 for every link: video is held until the link's first
 * `mapped_train_changed` (on WebRTC, `video` may overtake `command`; on WebTransport, datagrams may
 * overtake the event stream). Only the active link's video and train events reach the console;
 * answers (acks, pongs) are delivered from any link.
 */
import { parseServerEvent, type ServerEvent } from '../wire/client'
import type { Link, LinkHandlers, MediaTracks, VideoData } from './link'
import { DEFAULT_POLICY, initialPolicy, step, type Kind, type Mode, type PolicyAction, type PolicyConfig, type PolicyEvent, type PolicyState, type TimerName } from './policy'

export type Opener = (remoteControlId: string, handlers: LinkHandlers) => Link

export interface SupervisorDeps {
  /** The remote control to connect as: created (again) when the server does not know it. */
  remoteControl(): Promise<string>
  open: Record<Kind, Opener>
  /** Transports this browser lacks, and why (asked at every start): Auto leaves them out. */
  unsupported?(): Partial<Record<Kind, string>>
  /** Browser wall clock, ms since the epoch. */
  now(): number
}

export interface SupervisorSink {
  onPolicy(state: PolicyState): void
  onDetail(kind: Kind, detail: Record<string, string>): void
  /** `kind` now carries video: start a new stream (reset reassembly and decoders). */
  onActivated(kind: Kind, mapping: Extract<ServerEvent, { type: 'mapped_train_changed' }> | null): void
  onEvent(ev: ServerEvent, from: Kind, active: boolean): void
  /** One packet (or a split error, {@link VideoData}) of the active link, in arrival order. */
  onVideo(data: VideoData, arrivalMs: number): void
  /**
   * The active link's media tracks, one stream per camera (WHEP), or `null` when a link without
   * tracks becomes active or the one with them goes.
   */
  onMedia(media: MediaTracks | null): void
  onLog(line: string): void
}

export interface SupervisorOptions {
  policy: PolicyConfig
  pingEveryMs: number
  /** The active link is given up after this long without any message. */
  silenceMs: number
  /** Packets held per link before its first mapping event; older ones are dropped beyond it. */
  holdLimit: number
}

export const DEFAULT_SUPERVISOR: SupervisorOptions = { policy: DEFAULT_POLICY, pingEveryMs: 1000, silenceMs: 3000, holdLimit: 2000 }

interface Slot {
  kind: Kind
  link: Link | null
  open: boolean
  mapped: boolean
  held: VideoData[]
  /** The link's media tracks (WHEP), shown while it is active. */
  media: MediaTracks | null
  lastRx: number
  openedAt: number
  mapping: Extract<ServerEvent, { type: 'mapped_train_changed' }> | null
  timeout: ReturnType<typeof setTimeout> | undefined
  /** The link is getting its carrier back by itself ({@link LinkHandlers.onStalled}): not given up for silence. */
  stalled: boolean
}

export class Supervisor {
  private state: PolicyState
  private slots: Record<Kind, Slot | null> = { webrtc: null, webtransport: null, websocket: null, mqtt: null, whep: null }
  private timers: Partial<Record<TimerName, ReturnType<typeof setTimeout>>> = {}
  private ticker: ReturnType<typeof setInterval> | undefined
  private opts: SupervisorOptions
  /** Successful opens since start (the end-to-end test watches it across server restarts). */
  opens = 0

  constructor(private readonly deps: SupervisorDeps, private readonly sink: SupervisorSink, opts: Partial<SupervisorOptions> = {}) {
    this.opts = { ...DEFAULT_SUPERVISOR, ...opts }
    this.state = initialPolicy(this.opts.policy)
  }

  get policy(): PolicyState {
    return this.state
  }

  start(mode: Mode): void {
    if (!this.ticker) this.ticker = setInterval(() => this.tick(), Math.min(this.opts.pingEveryMs, 1000))
    this.dispatch({ type: 'start', mode, unsupported: this.deps.unsupported?.() ?? {} })
  }

  stop(): void {
    this.dispatch({ type: 'stop' })
    clearInterval(this.ticker)
    this.ticker = undefined
  }

  /**
   * Ping the active link every `ms` from now on (the holder of a control lease pings faster: its
   * messages are its heartbeat). The ticker runs at least that often.
   */
  setPingEvery(ms: number): void {
    if (ms === this.opts.pingEveryMs) return
    this.opts = { ...this.opts, pingEveryMs: ms }
    if (this.ticker) {
      clearInterval(this.ticker)
      this.ticker = setInterval(() => this.tick(), Math.min(ms, 1000))
      this.tick()
    }
  }

  get pingEveryMs(): number {
    return this.opts.pingEveryMs
  }

  /** The server says whether it offers `kind` (`reason` null) or not, and why (Auto's `askServer`). */
  offered(kind: Kind, reason: string | null): void {
    this.dispatch({ type: 'offered', kind, reason })
  }

  /** Send on the active link; false when there is none or it cannot take the message. */
  send(text: string): boolean {
    const a = this.state.active
    const slot = a ? this.slots[a] : null
    return !!slot?.link?.send(text)
  }

  private lastPing = 0

  private tick(): void {
    const a = this.state.active
    const slot = a ? this.slots[a] : null
    if (!slot?.link) return
    const now = this.deps.now()
    if (!slot.stalled && now - slot.lastRx > this.opts.silenceMs) {
      this.fail(slot, `nothing received for ${Math.round((now - slot.lastRx) / 1000)} s`)
      return
    }
    // A tick may come a little early (timer clamping): 10 % slack, so that 250 ms stays 250 ms.
    if (now - this.lastPing >= this.opts.pingEveryMs * 0.9) {
      this.lastPing = now
      slot.link.send(JSON.stringify({ type: 'ping', t: now }))
    }
  }

  private dispatch(ev: PolicyEvent): void {
    const before = this.state.active
    const { state, actions } = step(this.opts.policy, this.state, ev)
    this.state = state
    for (const a of actions) this.apply(a)
    if (state.active && state.active !== before) {
      const slot = this.slots[state.active]
      this.opens++
      this.sink.onLog(`${state.active} active`)
      this.sink.onActivated(state.active, slot?.mapping ?? null)
      this.sink.onMedia(slot?.media ?? null)
      if (slot?.mapped) this.flush(slot)
    } else if (!state.active && before) {
      this.sink.onMedia(null)
    }
    this.sink.onPolicy(state)
  }

  private apply(a: PolicyAction): void {
    switch (a.type) {
      case 'connect':
        this.connect(a.kind, a.timeoutMs)
        break
      case 'disconnect': {
        const slot = this.slots[a.kind]
        if (slot) this.drop(slot)
        break
      }
      case 'schedule':
        clearTimeout(this.timers[a.name])
        this.sink.onLog(`${a.name === 'reconnect' ? 'reconnect' : 'probe of the better transports'} in ${(a.delayMs / 1000).toFixed(1)} s`)
        this.timers[a.name] = setTimeout(() => {
          delete this.timers[a.name]
          this.dispatch({ type: 'timer', name: a.name })
        }, a.delayMs)
        break
      case 'cancel':
        clearTimeout(this.timers[a.name])
        delete this.timers[a.name]
        break
    }
  }

  private connect(kind: Kind, timeoutMs: number): void {
    const old = this.slots[kind]
    if (old) this.drop(old)
    const slot: Slot = { kind, link: null, open: false, mapped: false, held: [], media: null, lastRx: 0, openedAt: 0, mapping: null, timeout: undefined, stalled: false }
    this.slots[kind] = slot
    this.sink.onLog(`${kind}: connecting`)
    this.sink.onDetail(kind, { state: 'connecting' })
    slot.timeout = setTimeout(() => this.fail(slot, `not open within ${(timeoutMs / 1000).toFixed(0)} s`), timeoutMs)
    this.deps
      .remoteControl()
      .then((id) => {
        if (this.slots[kind] !== slot) return
        slot.link = this.deps.open[kind](id, this.handlers(slot))
      })
      .catch((e: unknown) => this.fail(slot, `remote control: ${e instanceof Error ? e.message : String(e)}`))
  }

  private handlers(slot: Slot): LinkHandlers {
    const live = () => this.slots[slot.kind] === slot
    return {
      onOpen: () => {
        if (!live()) return
        clearTimeout(slot.timeout)
        slot.open = true
        slot.openedAt = slot.lastRx = this.deps.now()
        this.sink.onLog(`${slot.kind}: open`)
        this.sink.onDetail(slot.kind, { state: 'open' })
        this.dispatch({ type: 'opened', kind: slot.kind })
      },
      onClose: (reason, why) => {
        if (live()) this.fail(slot, reason, why?.unsupported)
      },
      onDetail: (d) => {
        if (live()) this.sink.onDetail(slot.kind, d)
      },
      onStalled: (stalled) => {
        if (!live() || slot.stalled === stalled) return
        slot.stalled = stalled
        // Back: silence counts again from now.
        if (!stalled) slot.lastRx = this.deps.now()
        this.sink.onLog(`${slot.kind}: ${stalled ? 'carrier lost, the link reconnects by itself' : 'carrier back'}`)
      },
      onMedia: (media) => {
        if (!live()) return
        slot.media = media
        if (this.state.active === slot.kind) this.sink.onMedia(media)
      },
      onText: (text) => {
        if (!live()) return
        slot.lastRx = this.deps.now()
        const ev = parseServerEvent(text)
        if (!ev) return
        const active = this.state.active === slot.kind
        if (ev.type === 'mapped_train_changed') {
          slot.mapping = ev
        } else if (ev.type === 'train_online' && slot.mapping) {
          slot.mapping = { ...slot.mapping, online: true, cameras: ev.cameras }
        } else if (ev.type === 'train_offline' && slot.mapping) {
          slot.mapping = { ...slot.mapping, online: false }
        } else if (ev.type === 'closing') {
          this.sink.onLog(`${slot.kind}: server closing (${ev.reason})`)
        }
        this.sink.onEvent(ev, slot.kind, active)
        if (ev.type === 'mapped_train_changed' && !slot.mapped) {
          slot.mapped = true
          if (active) this.flush(slot)
        }
      },
      onBinary: (data) => {
        if (!live()) return
        const now = this.deps.now()
        slot.lastRx = now
        if (!slot.mapped) {
          slot.held.push(data)
          if (slot.held.length > this.opts.holdLimit) slot.held.shift()
        } else if (this.state.active === slot.kind) {
          this.sink.onVideo(data, now)
        }
      },
    }
  }

  private flush(slot: Slot): void {
    const held = slot.held
    slot.held = []
    const now = this.deps.now()
    for (const data of held) this.sink.onVideo(data, now)
  }

  /** Close a slot without telling the policy (it asked for it). */
  private drop(slot: Slot): void {
    clearTimeout(slot.timeout)
    if (this.slots[slot.kind] === slot) this.slots[slot.kind] = null
    slot.link?.close()
    this.sink.onDetail(slot.kind, { state: 'closed' })
  }

  /** A slot failed or closed: tell the policy (`unsupported`: the server does not offer the transport). */
  private fail(slot: Slot, reason: string, unsupported = false): void {
    if (this.slots[slot.kind] !== slot) return
    this.drop(slot)
    this.sink.onDetail(slot.kind, { state: 'closed', reason })
    this.sink.onLog(`${slot.kind}: ${reason}`)
    this.dispatch({ type: 'failed', kind: slot.kind, reason, ...(unsupported ? { unsupported } : {}) })
  }
}
