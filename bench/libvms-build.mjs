/**
 * Points `import 'libvms'` at the build named by LIBVMS_BENCH_BUILD (a LibVMS checkout whose
 * `npm run build` has run): preload it with `node --import <this file's URL>` (or in NODE_OPTIONS, so
 * that every node process a bench starts runs on the same build). Without LIBVMS_BENCH_BUILD it does
 * nothing, and `libvms` resolves as usual (this checkout's dist/, by the package's self-reference).
 *
 * compare-builds.ts runs the same bench programs against two builds this way. The mapping itself is
 * in libvms-build-hooks.mjs (module resolve hooks run on a thread of their own).
 */
import { existsSync } from 'node:fs'
import { register } from 'node:module'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const tree = process.env.LIBVMS_BENCH_BUILD
if (tree !== undefined && tree !== '') {
  const index = join(resolve(tree), 'dist', 'index.js')
  if (!existsSync(index)) {
    throw new Error(`LIBVMS_BENCH_BUILD=${tree}: there is no ${index}; run npm run build in that checkout first`)
  }
  register(new URL('./libvms-build-hooks.mjs', import.meta.url), { data: { indexUrl: pathToFileURL(index).href } })
}
