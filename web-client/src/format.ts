// Small pure helpers for what the console shows (sizes, figures, counts), kept out of the
// components so that Vitest checks them without a browser.

/** A size, in pixels; 0 or missing when not known yet. */
export interface Size {
  width?: number | null
  height?: number | null
}

const known = (s: Size | null | undefined): s is { width: number; height: number } =>
  !!s && !!s.width && !!s.height && s.width > 0 && s.height > 0

/**
 * CSS `aspect-ratio` of a camera's picture: the first known size among `sizes` (the decoded
 * frame's first, then what the camera announced), 4 / 3 when none is known.
 */
export function aspectRatio(...sizes: (Size | null | undefined)[]): string {
  const s = sizes.find(known)
  return s ? `${s.width} / ${s.height}` : '4 / 3'
}

/** `v.toFixed(digits)`, without the sign of a figure that rounds to zero ("-0" → "0"). */
export function fixed(v: number, digits = 0): string {
  const s = v.toFixed(digits)
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s
}

/** A duration in whole milliseconds, "—" when not known. */
export const msText = (v: number | null | undefined): string => (v === null || v === undefined ? '—' : `${fixed(v, 0)} ms`)

/** "1 camera", "2 cameras", "0 cameras". */
export const plural = (n: number, word: string): string => `${n} ${n === 1 ? word : `${word}s`}`
