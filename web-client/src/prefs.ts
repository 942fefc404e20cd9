// Console display preferences remembered in this browser (`localStorage`).
import { ref, watch } from 'vue'
import type { StorageLike } from './auth'

/** `localStorage` key of the camera stats overlay toggle ('1' shown, '0' hidden). */
export const SHOW_STATS_KEY = 'railcast.showStats'

/** A remembered on/off choice; `fallback` when none is stored (or storage is disabled). */
export function readFlag(storage: StorageLike | null, key: string, fallback: boolean): boolean {
  try {
    const v = storage?.getItem(key)
    return v === '1' ? true : v === '0' ? false : fallback
  } catch {
    return fallback
  }
}

export function writeFlag(storage: StorageLike | null, key: string, on: boolean): void {
  try {
    storage?.setItem(key, on ? '1' : '0')
  } catch {
    // storage disabled: the choice lasts for this page only
  }
}

function browserStorage(): StorageLike | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage
  } catch {
    return null
  }
}

/** Whether the camera views show their stats overlay (default on). */
export const showStats = ref(readFlag(browserStorage(), SHOW_STATS_KEY, true))
watch(showStats, (on) => writeFlag(browserStorage(), SHOW_STATS_KEY, on))
