// A fake MQTT.js client (what the links use of an `MqttClient`) and the broker's side, for the
// MQTT link's tests and the WebRTC link's MQTT signaling tests.
import type { IClientOptions, MqttClient } from 'mqtt'

type Listener = (...a: unknown[]) => void

/** What the link uses of an `MqttClient`, and the broker's side for the tests. */
export class FakeClient {
  static made: FakeClient[] = []
  connected = false
  listeners: Record<string, Listener[]> = {}
  subscribed: Record<string, { qos: number }>[] = []
  published: { topic: string; message: string; qos: number | undefined }[] = []
  ended: boolean | null = null
  grant: number[] = [0, 1]
  constructor(readonly url: string, readonly options: IClientOptions) {
    FakeClient.made.push(this)
  }
  on(ev: string, fn: Listener) {
    ;(this.listeners[ev] ??= []).push(fn)
    return this
  }
  once(ev: string, fn: Listener) {
    const once: Listener = (...a) => {
      this.listeners[ev] = (this.listeners[ev] ?? []).filter((f) => f !== once)
      fn(...a)
    }
    return this.on(ev, once)
  }
  emit(ev: string, ...a: unknown[]) {
    for (const fn of [...(this.listeners[ev] ?? [])]) fn(...a)
  }
  async subscribeAsync(map: Record<string, { qos: number }>) {
    this.subscribed.push(map)
    return Object.keys(map).map((topic, i) => ({ topic, qos: this.grant[i] }))
  }
  async publishAsync(topic: string, message: string, opts: { qos?: number }) {
    this.published.push({ topic, message, qos: opts.qos })
  }
  publish(topic: string, message: string, opts: { qos?: number }, cb?: (e?: Error) => void) {
    this.published.push({ topic, message, qos: opts.qos })
    cb?.()
    return this
  }
  end(force?: boolean, _opts?: object, cb?: () => void) {
    this.ended = !!force
    this.connected = false
    cb?.()
    return this
  }
  // ---- the broker's side ----
  accept() {
    this.connected = true
    this.emit('connect', { returnCode: 0 })
  }
  message(topic: string, payload: Uint8Array | string) {
    this.emit('message', topic, typeof payload === 'string' ? new TextEncoder().encode(payload) : payload)
  }
  drop() {
    this.connected = false
    this.emit('close')
  }
}

export const fakeConnect = (url: string, opts: IClientOptions) => new FakeClient(url, opts) as unknown as MqttClient
