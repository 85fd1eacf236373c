/**
 * Scripts written like the rest of one's code: an entry in TypeScript or JavaScript modules, with
 * relative imports and npm packages, bundled into the one self-contained CommonJS script a VM
 * deploys and logs.
 *
 * The bundler is esbuild. It is fast enough to run at every `exec`, and it reads TypeScript itself,
 * type-stripping without type-checking. It ships as a prebuilt binary in an npm package, with no
 * download. Its output is deterministic for the same inputs and version.
 *
 * The bundle must not depend on the machine, path or time of the build, because its bytes are the
 * logged code. So paths are made relative to the entry's project root (the nearest folder up with a
 * package.json), and no timestamp goes in. The same sources and lock file give the same bytes. A
 * first line says what the code is (`// libvms bundle of src/app.ts (esbuild 0.28.2)`), for `info`,
 * `log` and the explorer. An inline source map, without the sources' text, lets a script error name
 * the user's file and line rather than the bundle's.
 *
 * A VM has no Node APIs. An import of a Node built-in, from the script or from a package it uses,
 * is refused at build time, with an error naming the import and the file that makes it.
 */
import { existsSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path'
import type { Plugin } from 'esbuild'
import { InvalidArgumentError, ScriptError } from '../errors.js'

/** A bundled script: what `new VM(bundle.code)` (or `new VM(bundle)`) deploys. */
export interface ScriptBundle {
  /** The one CommonJS script: the bundle, its first line saying so, an inline source map last. */
  code: string
  /** The entry, relative to its project root, with `/` separators (as the first line names it). */
  entry: string
  /** The bundler and its version, e.g. `esbuild 0.28.2`. */
  bundler: string
}

/** What a bundle's first line says: its entry and bundler. */
export interface BundleInfo {
  entry: string
  bundler: string
}

export interface BundleOptions {
  /** The project root paths are made relative to (default: the nearest folder up from the entry with a package.json). */
  root?: string
}

const HEADER = /^\/\/ libvms bundle of (.+) \((\S+ [^)\s]+)\)\n/
const NODE_BUILTINS = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]))

/** The entry and bundler a bundle's first line names, or null for code that is not a bundle. */
export function bundleInfoOf(code: string): BundleInfo | null {
  const match = HEADER.exec(code)
  return match ? { entry: match[1], bundler: match[2] } : null
}

/**
 * Whether a script file must be bundled to run in a VM: TypeScript, an ES module, or JavaScript that
 * imports or requires something. A plain script is deployed exactly as written, so a VM deployed from
 * it before bundling existed reopens with the same code. That is why JavaScript is judged by esbuild's
 * parse of it (its format and import records), not by its text: `require('fs')` in a comment or a
 * string is not an import.
 */
export async function needsBundling(file: string, code: string): Promise<boolean> {
  if (/\.(ts|mts|cts|tsx|mjs)$/.test(file)) return true
  const esbuild = await import('esbuild')
  try {
    // The text on its own (not the file): its format is then its syntax's, whatever a package.json near it says.
    const { metafile } = await esbuild.build({
      stdin: { contents: code, loader: 'js', sourcefile: file },
      bundle: true,
      write: false,
      metafile: true,
      external: ['*'],
      platform: 'neutral',
      logLevel: 'silent',
    })
    const input = Object.values(metafile.inputs)[0]
    return input?.format === 'esm' || (input?.imports.length ?? 0) > 0
  } catch {
    // Text esbuild cannot parse is deployed as written: the VM's own load reports its syntax error.
    return false
  }
}

/** Bundles the script at `entry` (and what it imports) into one VM script. Throws ScriptError, naming file and line, if it cannot. */
export async function bundleScript(entry: string, options: BundleOptions = {}): Promise<ScriptBundle> {
  if (typeof entry !== 'string' || entry === '') throw new InvalidArgumentError('bundleScript(entry): entry must be the path of a script')
  const entryPath = resolve(entry)
  if (!existsSync(entryPath)) throw new InvalidArgumentError(`bundleScript: ${entry} does not exist`)
  const root = options.root === undefined ? projectRootOf(entryPath) : resolve(options.root)
  const relativeEntry = relative(root, entryPath).split(sep).join('/')
  if (relativeEntry.startsWith('../') || isAbsolute(relativeEntry)) {
    throw new InvalidArgumentError(`bundleScript: the entry ${entry} is not inside its root ${root}`)
  }
  const esbuild = await import('esbuild')
  const bundler = `esbuild ${esbuild.version}`
  let result: Awaited<ReturnType<typeof esbuild.build>>
  try {
    result = await esbuild.build({
      absWorkingDir: root,
      entryPoints: [relativeEntry],
      outfile: 'libvms-bundle.js',
      bundle: true,
      write: false,
      format: 'cjs',
      platform: 'neutral',
      mainFields: ['module', 'main'],
      // Paths as the project sees them (a symlinked node_modules stays inside it), not where links lead.
      preserveSymlinks: true,
      target: 'es2022',
      charset: 'utf8',
      legalComments: 'inline',
      sourcemap: 'inline',
      sourcesContent: false,
      banner: { js: `// libvms bundle of ${relativeEntry} (${bundler})` },
      logLevel: 'silent',
      plugins: [refuseNodeBuiltins(root)],
    })
  } catch (error) {
    throw bundleFailure(error, relativeEntry)
  }
  const output = result.outputFiles?.find((file) => file.path.endsWith('.js'))
  if (!output) throw new ScriptError('BundleError', `bundling ${relativeEntry} produced no script`)
  return { code: output.text, entry: relativeEntry, bundler }
}

/** The nearest folder up from `file` holding a package.json, else the file's own folder. */
function projectRootOf(file: string): string {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) return dirname(file)
  }
}

/** An esbuild plugin: any import of a Node built-in fails, naming it and the importing file. */
function refuseNodeBuiltins(root: string): Plugin {
  return {
    name: 'libvms-refuse-node-builtins',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        if (!NODE_BUILTINS.has(args.path)) return undefined
        const importer = relative(root, args.importer).split(sep).join('/')
        return {
          errors: [
            {
              text: `${importer} imports the Node built-in '${args.path}', which a VM does not have: VM scripts run in a sandbox with no Node APIs (use System.files for files, System.caller for the caller); a package that needs '${args.path}' cannot run in a VM`,
            },
          ],
        }
      })
    },
  }
}

interface EsbuildMessage {
  text: string
  location?: { file: string; line: number; column: number } | null
}

/** esbuild's failure as a ScriptError naming the first error's file and line. */
function bundleFailure(error: unknown, entry: string): Error {
  const errors = (error as { errors?: EsbuildMessage[] }).errors
  if (!Array.isArray(errors) || errors.length === 0) return error as Error
  const [first] = errors
  const at = first.location ? ` (${first.location.file} line ${first.location.line})` : ''
  const more = errors.length > 1 ? `; ${errors.length - 1} more error${errors.length > 2 ? 's' : ''}` : ''
  return new ScriptError('BundleError', `cannot bundle ${entry}: ${first.text}${at}${more}`)
}
