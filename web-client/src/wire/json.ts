/**
 * Strict readers for JSON bodies, so that a body serde would refuse (missing required field, wrong
 * type, out-of-range integer) is refused here too, and writers that format numbers the way Rust's
 * serde_json does, so that re-encoding gives the same bytes.
 *
 * Known difference: `JSON.parse` cannot tell `80` from `80.0`, so an integer field written as
 * `80.0` is accepted here while serde refuses it; and integers above 2⁵³ lose precision.
 */

export class ShapeError extends Error {}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
export type JsonObject = { [k: string]: Json }

export function obj(v: unknown, what: string): JsonObject {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ShapeError(`${what}: expected an object`)
  return v as JsonObject
}

function present(o: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key)
}

export function uint(o: JsonObject, key: string, bits: 8 | 16 | 32 | 64): number {
  if (!present(o, key)) throw new ShapeError(`missing field \`${key}\``)
  return uintValue(o[key], key, bits)
}

function uintValue(v: Json, key: string, bits: 8 | 16 | 32 | 64): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ShapeError(`\`${key}\`: expected u${bits}`)
  if (bits < 64 && v >= 2 ** bits) throw new ShapeError(`\`${key}\`: ${v} out of range for u${bits}`)
  return v
}

export function optUint(o: JsonObject, key: string, bits: 8 | 16 | 32 | 64): number | undefined {
  if (!present(o, key) || o[key] === null) return undefined
  return uintValue(o[key], key, bits)
}

export function float(o: JsonObject, key: string): number {
  if (!present(o, key)) throw new ShapeError(`missing field \`${key}\``)
  const v = o[key]
  if (typeof v !== 'number') throw new ShapeError(`\`${key}\`: expected a number`)
  return v
}

export function str(o: JsonObject, key: string): string {
  if (!present(o, key)) throw new ShapeError(`missing field \`${key}\``)
  const v = o[key]
  if (typeof v !== 'string') throw new ShapeError(`\`${key}\`: expected a string`)
  return v
}

export function optStr(o: JsonObject, key: string): string | undefined {
  if (!present(o, key) || o[key] === null) return undefined
  const v = o[key]
  if (typeof v !== 'string') throw new ShapeError(`\`${key}\`: expected a string`)
  return v
}

export function bool(o: JsonObject, key: string): boolean {
  if (!present(o, key)) throw new ShapeError(`missing field \`${key}\``)
  const v = o[key]
  if (typeof v !== 'boolean') throw new ShapeError(`\`${key}\`: expected a boolean`)
  return v
}

export function optBool(o: JsonObject, key: string, dflt: boolean): boolean {
  if (!present(o, key)) return dflt
  const v = o[key]
  if (typeof v !== 'boolean') throw new ShapeError(`\`${key}\`: expected a boolean`)
  return v
}

export function arr(o: JsonObject, key: string): Json[] {
  if (!present(o, key)) throw new ShapeError(`missing field \`${key}\``)
  const v = o[key]
  if (!Array.isArray(v)) throw new ShapeError(`\`${key}\`: expected an array`)
  return v
}

/** An f64 as serde_json prints it: shortest round-trip digits, integral values with `.0`. */
export function f64Text(v: number): string {
  if (!Number.isFinite(v)) return 'null'
  if (Number.isInteger(v) && Math.abs(v) < 1e16) return `${v}.0`
  return String(v)
}

/** An f32 as serde_json prints it: the shortest decimal that reads back as the same f32. */
export function f32Text(v: number): string {
  const f = Math.fround(v)
  if (!Number.isFinite(f)) return 'null'
  for (let p = 1; p <= 9; p++) {
    const n = Number(f.toPrecision(p))
    if (Math.fround(n) === f) return f64Text(n)
  }
  return f64Text(f)
}

/** One field of a hand-written JSON object; `undefined` values are skipped (serde's skip_serializing_if). */
export type Field = [key: string, text: string | undefined]

export function writeObject(fields: Field[]): string {
  return '{' + fields.filter(([, t]) => t !== undefined).map(([k, t]) => `${JSON.stringify(k)}:${t}`).join(',') + '}'
}
