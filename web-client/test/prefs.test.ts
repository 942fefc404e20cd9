import { describe, expect, it } from 'vitest'
import type { StorageLike } from '../src/auth'
import { readFlag, SHOW_STATS_KEY, writeFlag } from '../src/prefs'

function memory(): StorageLike & { data: Map<string, string> } {
  const data = new Map<string, string>()
  return {
    data,
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  }
}

describe('display preferences', () => {
  it('defaults when nothing is stored', () => {
    expect(readFlag(memory(), SHOW_STATS_KEY, true)).toBe(true)
    expect(readFlag(null, SHOW_STATS_KEY, true)).toBe(true)
  })
  it('remembers a choice', () => {
    const s = memory()
    writeFlag(s, SHOW_STATS_KEY, false)
    expect(s.data.get(SHOW_STATS_KEY)).toBe('0')
    expect(readFlag(s, SHOW_STATS_KEY, true)).toBe(false)
    writeFlag(s, SHOW_STATS_KEY, true)
    expect(readFlag(s, SHOW_STATS_KEY, false)).toBe(true)
  })
  it('ignores junk and a storage that throws', () => {
    const s = memory()
    s.setItem(SHOW_STATS_KEY, 'yes')
    expect(readFlag(s, SHOW_STATS_KEY, true)).toBe(true)
    const broken: StorageLike = {
      getItem: () => { throw new Error('denied') },
      setItem: () => { throw new Error('denied') },
      removeItem: () => {},
    }
    expect(readFlag(broken, SHOW_STATS_KEY, false)).toBe(false)
    expect(() => writeFlag(broken, SHOW_STATS_KEY, true)).not.toThrow()
  })
})
