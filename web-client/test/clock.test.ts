// The clock-offset estimator and the meters behind the stats overlay.
import { describe, expect, it } from 'vitest'
import { ClockOffsetEstimator, glassToGlassMs, WindowMin } from '../src/stats/clock'
import { percentile, RateMeter, Ring } from '../src/stats/meters'

describe('WindowMin', () => {
  it('tracks the minimum of a sliding window', () => {
    const w = new WindowMin(1000)
    expect(w.min(0)).toBeNull()
    w.add(0, 5)
    w.add(100, 3)
    w.add(200, 7)
    expect(w.min(200)).toBe(3)
    expect(w.min(1099)).toBe(3)
    expect(w.min(1100)).toBe(7) // 3 left the window
    expect(w.min(1200)).toBeNull()
    for (let t = 0; t < 5000; t++) w.add(2000 + t, Math.sin(t) * 10)
    expect(w.min(6999)).toBeCloseTo(-10, 1)
  })
})

describe('ClockOffsetEstimator', () => {
  const train = (browserMs: number, offsetMs: number) => browserMs - offsetMs // train clock reading

  it('on synchronised clocks the offset is about the encode time and is not applied', () => {
    const c = new ClockOffsetEstimator()
    for (let i = 0; i < 300; i++) {
      const capture = 1_000_000 + i * 33
      const delay = 4 + (i % 7) // encode + network jitter
      c.addFrame(capture + delay, capture)
    }
    c.addPong(1_000_000, 1_000_001, 1_000_000.5)
    const e = c.estimate(1_000_000 + 300 * 33)
    expect(e.floorMs).toBe(4)
    expect(e.serverRttMs).toBe(1)
    expect(e.offsetMs).toBeCloseTo(3.5)
    expect(e.applied).toBe(false)
    expect(glassToGlassMs(1_000_050, 1_000_000, e)).toBe(50)
  })

  it('a train clock seconds off is detected and corrected', () => {
    const c = new ClockOffsetEstimator()
    const theta = 2500 // the browser's clock is 2.5 s ahead of the train's
    for (let i = 0; i < 100; i++) {
      const captureBrowser = 5_000_000 + i * 33
      c.addFrame(captureBrowser + 20 + (i % 5), train(captureBrowser, theta))
    }
    c.addPong(0, 10, 5) // browser ⇄ server RTT 10 ms
    c.addTrainRtt(30) // server ⇄ train RTT 30 ms → path delay 20 ms
    const e = c.estimate(5_000_000 + 100 * 33)
    expect(e.pathDelayMs).toBe(20)
    expect(e.offsetMs).toBe(theta)
    expect(e.applied).toBe(true)
    // A frame captured at browser time T, painted 60 ms later: 60 ms glass to glass.
    expect(glassToGlassMs(5_000_060, train(5_000_000, theta), e)).toBe(60)
  })

  it('an offset within its own uncertainty is not applied', () => {
    const c = new ClockOffsetEstimator()
    c.addFrame(1002, 1000) // floor 2 ms
    c.addPong(0, 8, 4)
    c.addTrainRtt(65) // a slow ack (busy train): path delay 36.5 ms → θ ≈ −34.5 ms, ± 36.5 ms
    const e = c.estimate(1002)
    expect(e.offsetMs).toBeCloseTo(-34.5)
    expect(e.applied).toBe(false)
    c.addTrainRtt(1) // a quick one later: the minimum wins
    expect(c.estimate(1002).pathDelayMs).toBe(4.5)
  })

  it('the best pong is the one with the smallest round trip', () => {
    const c = new ClockOffsetEstimator()
    c.addPong(0, 100, 80) // rtt 100, offset 30
    c.addPong(1000, 1002, 1011) // rtt 2, offset 10
    c.addPong(2000, 2050, 2030) // rtt 50
    const e = c.estimate(3000)
    expect(e.serverRttMs).toBe(2)
    expect(e.serverOffsetMs).toBe(10)
    expect(e.floorMs).toBeNull()
    expect(e.offsetMs).toBeNull()
    expect(e.applied).toBe(false)
  })

  it('follows a clock step once the old samples leave the window', () => {
    const c = new ClockOffsetEstimator({ windowMs: 1000 })
    for (let t = 0; t < 1000; t += 33) c.addFrame(t + 5, t)
    expect(c.estimate(1000).offsetMs).toBe(5)
    for (let t = 1000; t < 3000; t += 33) c.addFrame(t + 5, t - 400) // train clock steps back 400 ms
    expect(c.estimate(3000).offsetMs).toBe(405)
  })

  it('resetTrain forgets the old train clock', () => {
    const c = new ClockOffsetEstimator()
    c.addFrame(100, 0)
    c.addTrainRtt(8)
    c.resetTrain()
    const e = c.estimate(200)
    expect(e.floorMs).toBeNull()
    expect(e.trainRttMs).toBeNull()
  })
})

describe('meters', () => {
  it('RateMeter counts over a sliding second', () => {
    const m = new RateMeter(1000)
    for (let t = 0; t < 3000; t += 33.4) m.add(t, 1000)
    expect(m.count(3000)).toBe(30)
    expect(m.rate(3000)).toBe(30_000)
    expect(m.rate(5000)).toBe(0)
  })

  it('percentile is nearest-rank', () => {
    const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6]
    expect(percentile(xs, 50)).toBe(5)
    expect(percentile(xs, 95)).toBe(10)
    expect(percentile(xs, 0)).toBe(1)
    expect(percentile([], 50)).toBeNull()
  })

  it('Ring keeps the latest samples', () => {
    const r = new Ring(3)
    for (const x of [1, 2, 3, 4, 5]) r.push(x)
    expect(r.values()).toEqual([3, 4, 5])
  })
})
