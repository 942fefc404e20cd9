// Generates src/api/schema.d.ts (the console's REST types) from ../openapi/openapi.json with
// openapi-typescript, the same output as `npx openapi-typescript ../openapi/openapi.json -o
// src/api/schema.d.ts`. `npm run gen:api` writes it; `--check` (and test/api-schema.test.ts, run
// by `npm test`) fails when the committed file differs from what the generator produces now,
// so nobody can change openapi.json without regenerating.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createConfig } from '@redocly/openapi-core'
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript'

export const SPEC = new URL('../../openapi/openapi.json', import.meta.url)
export const OUTPUT = new URL('../src/api/schema.d.ts', import.meta.url)

/** The file's text as the generator makes it from `spec` (a file URL) now. */
export async function generate(spec = SPEC) {
  // The CLI's lint rules without a redocly.yaml: "minimal". (Unique operationIds are checked by
  // the server's api::openapi_drift test.)
  const redocly = await createConfig({}, { extends: ['minimal'] })
  return `${COMMENT_HEADER}${astToString(await openapiTS(spec, { redocly, silent: true }))}`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const fresh = await generate()
  if (process.argv.includes('--check')) {
    if (readFileSync(OUTPUT, 'utf8') !== fresh) {
      console.error('src/api/schema.d.ts is out of date with openapi/openapi.json: run `npm run gen:api`')
      process.exit(1)
    }
    console.log('src/api/schema.d.ts matches openapi/openapi.json')
  } else {
    writeFileSync(OUTPUT, fresh, 'utf8')
    console.log(`wrote ${fileURLToPath(OUTPUT)}`)
  }
}
