/**
 * Ending a WebRTC session the server holds: REST signaling's `/api/webrtc/sessions/{id}` and a
 * WHEP session's `Location`. The console DELETEs it so the server need not time it out, but:
 *
 * - not when the server ended it itself: its goodbye (`closing` event), or a channel or the
 *   connection closed by the other end. The server has dropped it, and the DELETE would only
 *   earn a 404, which Chromium prints in the page console;
 * - before closing the peer connection, not after: closed first, its DTLS close reaches the
 *   server before the DELETE does, the server drops the session and answers the DELETE 404.
 *   So the peer connection closes once the DELETE is answered, or after {@link DELETE_WAIT_MS};
 * - a 404 still means "already gone" (the server may end it meanwhile): an outcome, not an error.
 */
import { authHeaders } from '../auth'

/** How long the peer connection waits for the DELETE's answer before it closes anyway. */
export const DELETE_WAIT_MS = 1500

/**
 * What became of the session: deleted now (2xx), already gone (404), left alone (the server ended
 * it), none to end (the server never named one), or unknown (no answer, another status).
 */
export type SessionEndOutcome = 'deleted' | 'gone' | 'server-ended' | 'none' | 'failed'

/** A server event saying it ends this session (`{"type":"closing","reason":…}`). */
export function isClosingEvent(text: string): boolean {
  if (!text.includes('"closing"')) return false
  try {
    return (JSON.parse(text) as { type?: unknown }).type === 'closing'
  } catch {
    return false
  }
}

export interface SessionEndDeps {
  fetch(url: string, init: RequestInit): Promise<{ status: number }>
  headers(): Record<string, string>
  setTimeout(cb: () => void, ms: number): unknown
  clearTimeout(t: unknown): void
}

const browser: SessionEndDeps = {
  fetch: (url, init) => fetch(url, init),
  headers: () => authHeaders(),
  setTimeout: (cb, ms) => setTimeout(cb, ms),
  clearTimeout: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
}

/**
 * End the session at `url` (null: the server never named one) and close the peer connection
 * (`closePeer`, called exactly once): at once when there is nothing to DELETE, else once the
 * DELETE is answered or after `waitMs`. Never rejects.
 */
export async function endSession(
  url: string | null,
  serverEnded: boolean,
  closePeer: () => void,
  deps: SessionEndDeps = browser,
  waitMs = DELETE_WAIT_MS,
): Promise<SessionEndOutcome> {
  let closed = false
  const close = () => {
    if (closed) return
    closed = true
    closePeer()
  }
  if (!url || serverEnded) {
    close()
    return url ? 'server-ended' : 'none'
  }
  const timer = deps.setTimeout(close, waitMs)
  try {
    // keepalive: the request outlives the page when the tab closes.
    const r = await deps.fetch(url, { method: 'DELETE', keepalive: true, headers: deps.headers() })
    if (r.status === 404) return 'gone'
    return r.status >= 200 && r.status < 300 ? 'deleted' : 'failed'
  } catch {
    // Unreachable server (a restart, say): it drops the session itself.
    return 'failed'
  } finally {
    deps.clearTimeout(timer)
    close()
  }
}
