/**
 * Starting a worker thread that runs one of this package's modules (the sandbox threads and the
 * engine's warm-up thread, the signature-checking thread, the audit's segment threads). Under a
 * TypeScript loader (tsx, in development) the modules are .ts files, and the worker registers the
 * loader before it loads its entry. A worker takes none of the process's Node options (e.g.
 * --input-type would stop it). A low layer, beside errors.ts: it imports nothing of LibVMS.
 */
import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

/** The URL of module `name` in the same folder as the module at `here` (an import.meta.url), with its extension. */
export function moduleBeside(here: string, name: string): URL {
  return new URL(`./${name}${extname(fileURLToPath(here))}`, here)
}

/** A worker thread running the module at `entry` (a .js module as is, a .ts one through tsx). */
export function startModuleWorker(entry: URL): Worker {
  if (extname(fileURLToPath(entry)) !== '.ts') return new Worker(entry, { execArgv: [] })
  const loader = import.meta.resolve('tsx/esm/api')
  const boot = `import(${JSON.stringify(loader)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(boot, { eval: true, execArgv: [] })
}
