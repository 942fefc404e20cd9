/**
 * The WebSocket transport: `/ws?remote_control_id=ID&access_token=TOKEN` (browsers cannot set an
 * `Authorization` header on a WebSocket); binary messages are video, text is JSON. A refused
 * upgrade (401/403) looks like any other failure here (close code 1006): the store asks
 * `GET /api/me` to tell a bad token from the rest.
 */
import { getToken } from '../auth'
import type { Link, LinkHandlers } from './link'

const STATES = ['connecting', 'open', 'closing', 'closed']

export function wsUrl(remoteControlId: string, token: string | null = getToken(), loc: Pick<Location, 'protocol' | 'host'> = location): string {
  const proto = loc.protocol === 'https:' ? 'wss:' : 'ws:'
  const auth = token ? `&access_token=${encodeURIComponent(token)}` : ''
  return `${proto}//${loc.host}/ws?remote_control_id=${encodeURIComponent(remoteControlId)}${auth}`
}

export function openWebSocket(remoteControlId: string, h: LinkHandlers): Link {
  let done = false
  const ws = new WebSocket(wsUrl(remoteControlId))
  ws.binaryType = 'arraybuffer'
  const detail = (extra: Record<string, string> = {}) => h.onDetail({ readyState: STATES[ws.readyState], ...extra })
  const finish = (reason: string) => {
    if (done) return
    done = true
    h.onClose(reason)
  }
  detail()
  ws.onopen = () => {
    if (done) return
    detail()
    h.onOpen()
  }
  ws.onmessage = (e: MessageEvent) => {
    if (done) return
    if (typeof e.data === 'string') h.onText(e.data)
    else h.onBinary(e.data as ArrayBuffer)
  }
  ws.onerror = () => detail()
  ws.onclose = (e: CloseEvent) => {
    detail({ closeCode: String(e.code), closeReason: e.reason })
    finish(`closed ${e.code}${e.reason ? ` (${e.reason})` : ''}`)
  }
  return {
    kind: 'websocket',
    send(text: string) {
      if (done || ws.readyState !== WebSocket.OPEN) return false
      ws.send(text)
      return true
    },
    close() {
      done = true
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, 'client closed')
    },
  }
}
