import { describe, expect, it } from 'vitest'
import { ageText, LastChange, staleFigureText, staleness, staleVideoText, TELEMETRY_STALE_AFTER_MS, VIDEO_STALE_AFTER_MS } from '../src/freshness'

describe('LastChange', () => {
  it('takes a count first seen above 0 as a frame now, 0 as none', () => {
    const a = new LastChange()
    expect(a.observe(0, 100)).toBeNull()
    expect(a.observe(null, 200)).toBeNull()
    const b = new LastChange()
    expect(b.observe(42, 300)).toBe(300)
  })

  it('moves only when the count goes up', () => {
    const c = new LastChange()
    c.observe(1, 1000)
    expect(c.observe(1, 1500)).toBe(1000)
    expect(c.observe(5, 2000)).toBe(2000)
    expect(c.observe(5, 9000)).toBe(2000)
    // A new pipeline starts from 0 again: not a frame; its first frame is.
    expect(c.observe(0, 9500)).toBe(2000)
    expect(c.observe(1, 9600)).toBe(9600)
  })
})

describe('staleness', () => {
  it('is live up to the threshold and stale past it', () => {
    expect(staleness(true, 1000, 1000 + VIDEO_STALE_AFTER_MS)).toEqual({ stale: false, ageMs: VIDEO_STALE_AFTER_MS, offline: false })
    expect(staleness(true, 1000, 1001 + VIDEO_STALE_AFTER_MS).stale).toBe(true)
  })

  it('is stale at once when the train is offline, whatever the age', () => {
    expect(staleness(false, 1000, 1100)).toEqual({ stale: true, ageMs: 100, offline: true })
    expect(staleness(false, null, 1100)).toEqual({ stale: true, ageMs: null, offline: true })
  })

  it('is not stale before the first frame while the train is online or unknown', () => {
    expect(staleness(true, null, 1e9).stale).toBe(false)
    expect(staleness(null, null, 1e9).stale).toBe(false)
  })

  it('takes its own threshold (telemetry)', () => {
    expect(staleness(true, 0, TELEMETRY_STALE_AFTER_MS, TELEMETRY_STALE_AFTER_MS).stale).toBe(false)
    expect(staleness(true, 0, TELEMETRY_STALE_AFTER_MS + 1, TELEMETRY_STALE_AFTER_MS).stale).toBe(true)
  })

  it('never reports a negative age (a clock read before the frame time)', () => {
    expect(staleness(true, 2000, 1990).ageMs).toBe(0)
  })
})

describe('texts', () => {
  it('writes ages to the second', () => {
    expect(ageText(0)).toBe('0 s')
    expect(ageText(12_999)).toBe('12 s')
    expect(ageText(185_000)).toBe('3 min 5 s')
    expect(ageText(7_440_000)).toBe('2 h 4 min')
  })

  it('says why the picture is stale', () => {
    expect(staleVideoText(staleness(false, 0, 12_400))).toBe('no video for 12 s — train offline')
    expect(staleVideoText(staleness(true, 0, 3_100))).toBe('no video for 3 s')
    expect(staleVideoText(staleness(false, null, 5))).toBe('no video — train offline')
    // Just gone offline: no "for 0 s".
    expect(staleVideoText(staleness(false, 1000, 1400))).toBe('no video — train offline')
  })

  it('replaces a figure by its age', () => {
    expect(staleFigureText(staleness(false, 0, 12_000))).toBe('— (stale 12 s)')
    expect(staleFigureText(staleness(false, null, 0))).toBe('— (stale)')
    expect(staleFigureText(staleness(false, 0, 999))).toBe('— (stale)')
  })
})
