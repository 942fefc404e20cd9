// Drift check: src/api/schema.d.ts must be what openapi-typescript makes from openapi/openapi.json
// now. Someone who changes the spec (the server's API) without `npm run gen:api` fails here.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
// @ts-expect-error: a plain ES module without declarations (scripts/ is not type-checked)
import { generate, OUTPUT, SPEC } from '../scripts/gen-api.mjs'

const dir = mkdtempSync(join(tmpdir(), 'railcast-api-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('src/api/schema.d.ts', () => {
  it('is what openapi-typescript generates from openapi/openapi.json now', async () => {
    const fresh: string = await generate()
    const tmp = join(dir, 'schema.d.ts')
    writeFileSync(tmp, fresh)
    // Not toEqual on 3,000 lines: say which line differs and how to fix it.
    const committed = readFileSync(OUTPUT, 'utf8').split('\n')
    const now = readFileSync(tmp, 'utf8').split('\n')
    const line = committed.findIndex((l, i) => l !== now[i])
    const at = line < 0 && committed.length !== now.length ? Math.min(committed.length, now.length) : line
    expect(
      at < 0 ? null : { line: at + 1, committed: committed[at], generated: now[at], fix: 'cd web-client && npm run gen:api' },
    ).toBeNull()
  }, 20_000)

  it('differs as soon as the spec changes (the check can fail)', async () => {
    const spec = JSON.parse(readFileSync(SPEC, 'utf8'))
    spec.components.schemas.Me.properties.drift_probe = { type: 'string' }
    const edited = join(dir, 'openapi.json')
    writeFileSync(edited, JSON.stringify(spec))
    const fresh: string = await generate(pathToFileURL(edited))
    expect(fresh).toContain('drift_probe?: string;')
    expect(fresh).not.toEqual(readFileSync(OUTPUT, 'utf8'))
  }, 20_000)
})
