// Texts inlined at build time. A module listed here reads a file of src/ at run time when Node runs
// the sources (tsx); the build writes in its place a module holding the text itself (scripts/build.mjs
// for dist/, and inlineTextsPlugin for esbuild bundles), so that a built module reads no file and a
// browser bundle needs no `fs`. The file read stays the one definition of the text.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Each module (under src/) that reads a text, the file it reads (under src/), and the name it exports. */
export const INLINED_TEXTS = [{ module: 'codec/tagged-json-text.ts', file: 'codec/tagged-json.vm.js', name: 'TAGGED_JSON_TEXT' }]

/** The module that replaces `entry`: its text as a constant. */
export function inlinedModule(entry) {
  const text = readFileSync(join(root, 'src', entry.file), 'utf8')
  return `// Written by scripts/inline-texts.mjs: the text of src/${entry.file}.\nexport const ${entry.name} = ${JSON.stringify(text)}\n`
}

/** After tsc wrote `out` (a build of src/): each reading module replaced by its text. */
export function inlineTexts(out) {
  for (const entry of INLINED_TEXTS) writeFileSync(join(out, entry.module.replace(/\.ts$/, '.js')), inlinedModule(entry))
}

/** An esbuild plugin that loads each reading module of src/ as its text. */
export const inlineTextsPlugin = {
  name: 'libvms-inline-texts',
  setup(build) {
    for (const entry of INLINED_TEXTS) {
      const path = join(root, 'src', entry.module)
      const filter = new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)
      build.onLoad({ filter }, () => ({ contents: inlinedModule(entry), loader: 'js' }))
    }
  },
}
