/** Small pure meters for the stats overlay: rates over a sliding window, percentiles. */

/** Events (and an amount, e.g. bytes) per second over the last `windowMs`. */
export class RateMeter {
  private times: number[] = []
  private amounts: number[] = []
  private sum = 0

  constructor(private readonly windowMs = 1000) {}

  add(nowMs: number, amount = 1): void {
    this.times.push(nowMs)
    this.amounts.push(amount)
    this.sum += amount
    this.expire(nowMs)
  }

  /** Amount per second. While less than a window has been seen, over the time seen so far. */
  rate(nowMs: number): number {
    this.expire(nowMs)
    return (this.sum * 1000) / this.windowMs
  }

  count(nowMs: number): number {
    this.expire(nowMs)
    return this.times.length
  }

  clear(): void {
    this.times = []
    this.amounts = []
    this.sum = 0
  }

  private expire(nowMs: number): void {
    let n = 0
    while (n < this.times.length && this.times[n] <= nowMs - this.windowMs) {
      this.sum -= this.amounts[n]
      n++
    }
    if (n > 0) {
      this.times.splice(0, n)
      this.amounts.splice(0, n)
    }
  }
}

/** Nearest-rank percentile (p in 0…100) of unsorted samples; null when empty. */
export function percentile(samples: readonly number[], p: number): number | null {
  if (samples.length === 0) return null
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

/** A bounded list of the latest samples. */
export class Ring {
  private items: number[] = []
  constructor(private readonly size: number) {}
  push(v: number): void {
    this.items.push(v)
    if (this.items.length > this.size) this.items.splice(0, this.items.length - this.size)
  }
  values(): number[] {
    return [...this.items]
  }
  clear(): void {
    this.items = []
  }
  get length(): number {
    return this.items.length
  }
}
