/** The browser storages the console keeps its choices in; every access survives a disabled storage. */
import type { StorageLike } from '../auth'

/** `sessionStorage` (per tab), or nothing. */
export function tabStorage() {
  try {
    return sessionStorage
  } catch {
    return null
  }
}

/** `localStorage`, or nothing when it is disabled. */
export function storage(): StorageLike | null {
  try {
    return localStorage
  } catch {
    return null
  }
}

export const load = (key: string): string | null => storage()?.getItem(key) ?? null

export const persist = (key: string, value: string | null): void => {
  try {
    if (value === null) storage()?.removeItem(key)
    else storage()?.setItem(key, value)
  } catch {
    // storage disabled
  }
}

export const now = (): number => performance.timeOrigin + performance.now()

export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))
