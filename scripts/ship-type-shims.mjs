// After tsc: ship the Holepunch type shims with the declarations, so a consumer's TypeScript sees
// the types the public API mentions (DatArchive.drive, CallLog.core) without any @types package.
import { copyFileSync, cpSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

// Where the build was written (scripts/build.mjs stages it beside dist/).
const out = process.argv[2] ?? 'dist'

// The JavaScript that runs inside VMs (src/**/*.vm.js) is read as text at run time: ship it beside
// the compiled modules that read it.
for (const entry of readdirSync('src', { recursive: true, withFileTypes: true })) {
  if (entry.isFile() && entry.name.endsWith('.vm.js')) {
    const from = join(entry.parentPath ?? entry.path, entry.name)
    copyFileSync(from, join(out, from.slice('src/'.length)))
  }
}

// The explorer's page (src/explorer/page/: HTML, CSS and browser JavaScript) is served from beside
// the compiled server.
cpSync('src/explorer/page', join(out, 'explorer/page'), { recursive: true })

copyFileSync('types/holepunch.d.ts', join(out, 'holepunch.d.ts'))
const index = join(out, 'index.d.ts')
const reference = '/// <reference path="./holepunch.d.ts" />\n'
const text = readFileSync(index, 'utf8')
if (!text.startsWith(reference)) writeFileSync(index, reference + text)
