// After tsc: ship the Holepunch type shims with the declarations, so a consumer's TypeScript sees
// the types the public API mentions (DatArchive.drive, CallLog.core) without any @types package.
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'

copyFileSync('types/holepunch.d.ts', 'dist/holepunch.d.ts')
const index = 'dist/index.d.ts'
const reference = '/// <reference path="./holepunch.d.ts" />\n'
const text = readFileSync(index, 'utf8')
if (!text.startsWith(reference)) writeFileSync(index, reference + text)
