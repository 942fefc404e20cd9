import { describe, expect, it } from 'vitest'
import { plotValue, TREND_CAPACITY, TrendRing } from '../src/session/trend'

const sample = (t: number, v = t) => ({ t, latencyMs: v, bitrateKbps: v * 10, fps: 30 })

describe('trend ring', () => {
  it('keeps five minutes at 1/s by default, oldest first', () => {
    const r = new TrendRing()
    expect(r.capacity).toBe(TREND_CAPACITY)
    expect(TREND_CAPACITY).toBe(300)
    expect(r.length).toBe(0)
    expect(r.latest()).toBeNull()
    expect(r.columns()).toEqual([[], [], [], []])
    for (let t = 1; t <= 3; t++) r.push(sample(t))
    expect(r.columns()).toEqual([[1, 2, 3], [1, 2, 3], [10, 20, 30], [30, 30, 30]])
    expect(r.latest()?.t).toBe(3)
  })

  it('wraps: the oldest samples go, the order stays', () => {
    const r = new TrendRing(4)
    for (let t = 1; t <= 10; t++) r.push(sample(t))
    expect(r.length).toBe(4)
    expect(r.pushed).toBe(10)
    expect(r.samples().map((s) => s.t)).toEqual([7, 8, 9, 10])
    expect(r.columns(['fps'])).toEqual([[7, 8, 9, 10], [30, 30, 30, 30]])
  })

  it('exactly at capacity, and one past it', () => {
    const r = new TrendRing(3)
    for (let t = 1; t <= 3; t++) r.push(sample(t))
    expect(r.samples().map((s) => s.t)).toEqual([1, 2, 3])
    r.push(sample(4))
    expect(r.samples().map((s) => s.t)).toEqual([2, 3, 4])
  })

  it('drops a sample not later than the newest (uPlot wants increasing x)', () => {
    const r = new TrendRing(5)
    expect(r.push(sample(2))).toBe(true)
    expect(r.push(sample(2))).toBe(false)
    expect(r.push(sample(1))).toBe(false)
    expect(r.push({ t: Number.NaN, latencyMs: 1, bitrateKbps: 1, fps: 1 })).toBe(false)
    expect(r.length).toBe(1)
  })

  it('unknown figures are gaps (null), and clear empties it', () => {
    const r = new TrendRing(5)
    r.push({ t: 1, latencyMs: plotValue(null), bitrateKbps: plotValue(Number.NaN), fps: plotValue(Infinity) })
    r.push({ t: 2, latencyMs: plotValue(42), bitrateKbps: plotValue(0), fps: plotValue(undefined) })
    expect(r.columns()).toEqual([[1, 2], [null, 42], [null, 0], [null, null]])
    r.clear()
    expect(r.length).toBe(0)
    r.push(sample(1))
    expect(r.samples().map((s) => s.t)).toEqual([1])
  })

  it('refuses a capacity that is not a positive integer', () => {
    expect(() => new TrendRing(0)).toThrow(RangeError)
    expect(() => new TrendRing(2.5)).toThrow(RangeError)
  })
})
