/**
 * The console's access token: where it comes from, where it is kept, and how it reaches the
 * server.
 *
 * Sources, first match wins:
 * 1. the URL fragment, `#token=XYZ` (maybe with more: `#token=XYZ&rc=rc-123`). The token is then
 *    removed from the visible URL (`history.replaceState`) and saved in `localStorage`;
 * 2. `localStorage` key {@link TOKEN_KEY};
 * 3. the token input of the Connection panel ({@link normalizeTokenInput}).
 *
 * REST calls carry it as `Authorization: Bearer TOKEN` ({@link authHeaders}); the WebSocket, which
 * cannot set headers, as `access_token=TOKEN` in its URL. Any 401 answer is reported to the
 * {@link onUnauthorized} listeners with the token it was sent with, so an answer to a token that
 * has been replaced meanwhile can be ignored.
 */

export const TOKEN_KEY = 'railcast.token'

export type TokenSource = 'fragment' | 'storage' | 'input'

export interface StorageLike {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem(key: string): void
}

export interface FragmentParams {
  /** `token=`, when present and not empty. */
  token: string | null
  /** `rc=`: the remote control to use (operators and viewers). */
  rc: string | null
  /** Whether the fragment had a `token` key at all (even empty): it must go from the URL. */
  hadToken: boolean
  /** The fragment without `token` (no leading `#`), as it should stay in the URL. */
  rest: string
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

/**
 * Parse a URL fragment of `key=value` pairs joined by `&`. Values are percent-decoded, and `+`
 * stays a `+` (tokens may be base64), unlike `URLSearchParams`.
 */
export function parseFragment(hash: string): FragmentParams {
  const body = hash.startsWith('#') ? hash.slice(1) : hash
  const out: FragmentParams = { token: null, rc: null, hadToken: false, rest: '' }
  const keep: string[] = []
  for (const part of body.split('&')) {
    if (!part) continue
    const eq = part.indexOf('=')
    const key = decode(eq < 0 ? part : part.slice(0, eq))
    const value = eq < 0 ? '' : decode(part.slice(eq + 1)).trim()
    if (key === 'token') {
      out.hadToken = true
      if (value) out.token = value
      continue
    }
    if (key === 'rc' && value) out.rc = value
    keep.push(part)
  }
  out.rest = keep.join('&')
  return out
}

export interface TokenEnv {
  location: Pick<Location, 'hash' | 'pathname' | 'search'>
  history: Pick<History, 'replaceState'>
  storage: StorageLike | null
}

export interface ResolvedToken {
  token: string | null
  source: TokenSource | null
  /** The remote control named in the fragment (`rc=`), if any. */
  rc: string | null
}

function storageGet(storage: StorageLike | null): string | null {
  try {
    return storage?.getItem(TOKEN_KEY) || null
  } catch {
    return null // storage disabled
  }
}

export function saveToken(storage: StorageLike | null, token: string | null): void {
  try {
    if (token) storage?.setItem(TOKEN_KEY, token)
    else storage?.removeItem(TOKEN_KEY)
  } catch {
    // storage disabled: the token lives for this page only
  }
}

/**
 * Find the token (fragment, then storage). A token found in the fragment is saved in storage and
 * removed from the visible URL; the rest of the fragment (`rc=`) stays.
 */
export function resolveToken(env: TokenEnv): ResolvedToken {
  const f = parseFragment(env.location.hash)
  if (f.hadToken) {
    const url = `${env.location.pathname}${env.location.search}${f.rest ? `#${f.rest}` : ''}`
    env.history.replaceState(null, '', url)
  }
  if (f.token) {
    saveToken(env.storage, f.token)
    return { token: f.token, source: 'fragment', rc: f.rc }
  }
  const stored = storageGet(env.storage)
  if (stored) return { token: stored, source: 'storage', rc: f.rc }
  return { token: null, source: null, rc: f.rc }
}

/**
 * What the user typed or pasted into the token input: the token itself, `token=XYZ`, or a whole
 * console URL with `#token=XYZ`. Returns null when there is no token in it.
 */
export function normalizeTokenInput(text: string): string | null {
  const s = text.trim()
  if (!s) return null
  const hash = s.indexOf('#')
  if (hash >= 0 || s.startsWith('token=')) return parseFragment(hash >= 0 ? s.slice(hash) : s).token
  return /\s/.test(s) ? null : s
}

// ---- the token in use ----------------------------------------------------------------------------

let current: string | null = null

export function getToken(): string | null {
  return current
}

export function setToken(token: string | null): void {
  current = token || null
}

/** `Authorization: Bearer …` when there is a token; nothing otherwise. */
export function authHeaders(token: string | null = current): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {}
}

/** The server refused `token` (HTTP 401) with `message`. */
export type UnauthorizedListener = (message: string, token: string | null) => void

const listeners = new Set<UnauthorizedListener>()

export function onUnauthorized(l: UnauthorizedListener): () => void {
  listeners.add(l)
  return () => listeners.delete(l)
}

export function reportUnauthorized(message: string, token: string | null): void {
  for (const l of [...listeners]) l(message, token)
}
