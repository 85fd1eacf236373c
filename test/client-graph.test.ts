/**
 * libvms/client's import graph (src/client/index.ts) holds no Node built-in: bundled by esbuild for a
 * browser, as the build inlines texts (scripts/inline-texts.mjs), no module it reaches imports `node:*`
 * or a built-in's bare name. A failure names the chain of imports that pulls the built-in in.
 */
import assert from 'node:assert/strict'
import { builtinModules } from 'node:module'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import * as esbuild from 'esbuild'
// @ts-expect-error: a build script, plain JavaScript without declarations
import { inlineTextsPlugin } from '../scripts/inline-texts.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const BUILTINS = new Set(builtinModules)

interface Graph {
  /** Each Node built-in imported, with the chain of modules from the entry to it. */
  builtins: string[]
  /** Packages the bundle could not find (what a browser bundle must still be given), with their importer. */
  missing: string[]
  /** Every module reached. */
  modules: string[]
}

function isBuiltin(path: string): boolean {
  return path.startsWith('node:') || BUILTINS.has(path) || BUILTINS.has(path.split('/')[0])
}

/** The browser import graph of `entry` (a path from the package root). */
async function importGraph(entry: string): Promise<Graph> {
  const builtins: { path: string; importer: string }[] = []
  const missing: string[] = []
  const relative = (file: string) => (file.startsWith(root) ? file.slice(root.length) : file)
  const watch: esbuild.Plugin = {
    name: 'node-builtins',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.pluginData === 'resolving') return undefined
        if (isBuiltin(args.path) && !args.path.startsWith('.')) {
          builtins.push({ path: args.path, importer: relative(args.importer) })
          return { path: args.path, external: true }
        }
        if (args.path.startsWith('.') || args.path.startsWith('/')) return undefined
        const found = await build.resolve(args.path, {
          kind: args.kind,
          resolveDir: args.resolveDir,
          importer: args.importer,
          pluginData: 'resolving',
        })
        if (found.errors.length === 0) return found
        missing.push(`${args.path} (imported by ${relative(args.importer)})`)
        return { path: args.path, external: true }
      })
    },
  }
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'browser',
    format: 'esm',
    logLevel: 'silent',
    plugins: [inlineTextsPlugin, watch],
  })
  const inputs = result.metafile.inputs
  // The chain from the entry to each module: breadth first over the metafile's imports.
  const via = new Map<string, string | null>([[entry, null]])
  const queue = [entry]
  while (queue.length > 0) {
    const at = queue.shift() as string
    for (const next of inputs[at]?.imports ?? []) {
      if (next.external || via.has(next.path)) continue
      via.set(next.path, at)
      queue.push(next.path)
    }
  }
  const chainTo = (module: string): string[] => {
    const chain: string[] = []
    for (let at: string | null | undefined = module; at; at = via.get(at)) chain.unshift(at)
    return chain
  }
  return {
    builtins: builtins.map(({ path, importer }) => [...chainTo(importer), path].join(' → ')),
    missing,
    modules: Object.keys(inputs),
  }
}

test('the import graph of libvms/client holds no Node built-in', async (t) => {
  const graph = await importGraph('src/client/index.ts')
  // The graph is the client's: its RPC client, receipt checks, value codec and signed calls.
  for (const module of ['src/client/rpc-client.ts', 'src/ledger/receipts.ts', 'src/codec/value-codec.ts', 'src/auth/signed-call.ts']) {
    assert.ok(graph.modules.includes(module), `${module} is not on the client's graph`)
  }
  assert.deepEqual(graph.builtins, [], `Node built-ins on the client's import graph:\n${graph.builtins.join('\n')}`)
  for (const what of graph.missing) t.diagnostic(`a browser bundle must still be given: ${what}`)
})

test('the check finds a Node built-in and names the chain that pulls it in', async () => {
  // The main entry is Node's: its graph reaches node:fs, e.g. through the key files.
  const graph = await importGraph('src/index.ts')
  const chain = graph.builtins.find((line) => line.includes('src/auth/key-file.ts → node:fs/promises'))
  assert.ok(chain, `expected a chain to node:fs/promises through src/auth/key-file.ts, got:\n${graph.builtins.join('\n')}`)
  assert.ok(chain.startsWith('src/index.ts → '), chain)
})
