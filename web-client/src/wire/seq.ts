/**
 * Frame sequence numbers: 32 bits, wrapping, compared by serial-number arithmetic (RFC 1982),
 * as `railcast_protocol::FrameSeq`.
 *
 * `a` is after `b` when `(a − b) mod 2³²` is in `1 … 2³¹−1`; two numbers exactly 2³¹ apart are
 * unordered.
 */

/** Signed distance from `earlier` to `seq`, or `null` when exactly half the space apart. */
export function seqDistance(seq: number, earlier: number): number | null {
  const d = (seq - earlier) >>> 0
  if (d === 0x8000_0000) return null
  return d | 0 // reinterpret as i32
}

export function seqIsAfter(seq: number, other: number): boolean {
  const d = seqDistance(seq, other)
  return d !== null && d > 0
}

export function seqNext(seq: number): number {
  return (seq + 1) >>> 0
}
