/**
 * The layers of src/ (docs/architecture.md, "Layers"): every module sits in one layer, imports only
 * from its own layer and the ones below it, and no modules import each other round in a circle. Every
 * kind of import counts — type-only ones, `export … from`, dynamic `import()` (also in a type) —
 * since a type import ties the files together for the reader just as a value import does. The module
 * a worker thread is started on counts for the layers too, not for circles: it runs in a thread of its
 * own, which loads its modules afresh (engine.ts starts a thread that runs a sandbox on the engine).
 * Read with TypeScript's own scanner, from the files on disk.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const SRC = join(ROOT, 'src')

/**
 * The layers, lowest first: a folder of src/, or a file at its top. A module may import from its
 * own layer and the ones before it. docs/architecture.md states the same order.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'wording.ts', 'threads.ts'],
  ['codec/'],
  ['script/'],
  ['sandbox/'],
  ['ledger/'],
  ['auth/'],
  ['vm/'],
  ['audit/'],
  ['net/'],
  ['rpc/'],
  ['client/'],
  ['seeder/'],
  ['explorer/'],
  ['cli/'],
  ['index.ts'],
]

/** The modules at the bottom, which import no module of LibVMS at all. */
const FOUNDATION = ['errors.ts', 'wording.ts', 'threads.ts']

/** A worker thread's entry, named beside the module that starts it (threads.ts). */
const WORKER_ENTRY = /moduleBeside\(\s*import\.meta\.url\s*,\s*'([\w.-]+)'\s*\)/g

/** What a module's text imports, as written: imports and `export … from` (type-only too), and `import()`. */
function importsOf(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName)
}

/** The modules a module's text starts worker threads on, as specifiers. */
function workerEntriesOf(text: string): string[] {
  return [...text.matchAll(WORKER_ENTRY)].map((m) => `./${m[1]}.js`)
}

/** Every module of src/ (TypeScript, and JavaScript modules; the `.vm.js` scripts are read as text and import nothing), as paths relative to src/ with '/'. */
function modules(): string[] {
  return (readdirSync(SRC, { recursive: true }) as string[])
    .map((path) => path.split(sep).join('/'))
    .filter((path) => /\.(ts|js)$/.test(path) && !path.endsWith('.vm.js') && !path.startsWith('explorer/page/'))
    .sort()
}

/** The module of src/ that `specifier`, written in `from`, names; null for a package, a Node built-in, or a file outside src/. */
function resolveSpecifier(from: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null
  const target = join(dirname(join(SRC, from)), specifier)
  const ts = target.replace(/\.js$/, '.ts')
  const found = existsSync(ts) ? ts : target
  const path = relative(SRC, found).split(sep).join('/')
  return path.startsWith('..') ? null : path
}

/** Each module of src/ → the modules of src/ it imports (with `workers`: and starts worker threads on). */
function importGraph(options: { workers?: boolean } = {}): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const module of modules()) {
    const text = readFileSync(join(SRC, module), 'utf8')
    const specifiers = options.workers ? [...importsOf(text), ...workerEntriesOf(text)] : importsOf(text)
    const targets = specifiers.map((s) => resolveSpecifier(module, s)).filter((t): t is string => t !== null)
    graph.set(module, [...new Set(targets)])
  }
  return graph
}

/** The layer a module sits in (its index in LAYERS), or -1 if none. */
function layerOf(module: string): number {
  return LAYERS.findIndex((layer) => layer.some((place) => (place.endsWith('/') ? module.startsWith(place) : module === place)))
}

/** The circles of a graph: its strongly connected components of more than one module, or of one that imports itself (Tarjan). */
function circles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  let next = 0
  // Iterative, so a long chain of imports cannot overflow the stack.
  for (const start of graph.keys()) {
    if (index.has(start)) continue
    const work: { node: string; edge: number }[] = [{ node: start, edge: 0 }]
    index.set(start, next)
    low.set(start, next++)
    stack.push(start)
    onStack.add(start)
    while (work.length > 0) {
      const frame = work[work.length - 1]
      const edges = graph.get(frame.node) ?? []
      if (frame.edge < edges.length) {
        const to = edges[frame.edge++]
        if (!graph.has(to)) continue
        if (!index.has(to)) {
          index.set(to, next)
          low.set(to, next++)
          stack.push(to)
          onStack.add(to)
          work.push({ node: to, edge: 0 })
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node) as number, index.get(to) as number))
        }
        continue
      }
      work.pop()
      const parent = work[work.length - 1]
      if (parent) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(frame.node) as number))
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = []
        let member: string
        do {
          member = stack.pop() as string
          onStack.delete(member)
          component.push(member)
        } while (member !== frame.node)
        if (component.length > 1 || edges.includes(frame.node)) found.push(component.sort())
      }
    }
  }
  return found
}

test('the scanner sees every kind of import (type-only, export-from, dynamic, in a type) and worker entries apart', () => {
  const text = `
    import { a } from './a.js'
    import type { B } from '../b/b.js'
    export { c } from './c.js'
    export type { D } from './d.js'
    const e = await import('./e.js')
    type F = import('./f.js').F
    const thread = moduleBeside(import.meta.url, 'g-thread')
    // import { h } from './h.js' (a comment, not an import)
  `
  assert.deepEqual(importsOf(text).sort(), ['../b/b.js', './a.js', './c.js', './d.js', './e.js', './f.js'])
  assert.deepEqual(workerEntriesOf(text), ['./g-thread.js'])
  // A graph written as `from>to` pairs.
  const graph = (pairs: string) => {
    const edges = new Map<string, string[]>()
    for (const [from, to] of pairs.split(' ').map((p) => p.split('>'))) {
      edges.set(from, [...(edges.get(from) ?? []), to])
      if (!edges.has(to)) edges.set(to, [])
    }
    return edges
  }
  assert.deepEqual(circles(graph('x>y y>z z>x w>x')), [['x', 'y', 'z']])
  assert.deepEqual(circles(graph('x>x')), [['x']])
  assert.deepEqual(circles(graph('x>y w>y')), [])
})

test('every module of src/ sits in a layer', () => {
  const graph = importGraph()
  assert.ok(graph.size > 50, `found only ${graph.size} modules under ${SRC}`)
  const homeless = [...graph.keys()].filter((m) => layerOf(m) === -1)
  assert.deepEqual(homeless, [], `add these to LAYERS here and to the layer table of docs/architecture.md: ${homeless.join(', ')}`)
})

test('no module imports from (or starts a thread on) a layer above its own', () => {
  const graph = importGraph({ workers: true })
  const upward: string[] = []
  for (const [from, targets] of graph) {
    for (const to of targets) {
      if (layerOf(to) > layerOf(from)) upward.push(`${from} → ${to}`)
    }
  }
  assert.deepEqual(upward, [], `imports from a higher layer (move the type or value down, or the importer up):\n${upward.join('\n')}`)
})

test('the foundation (errors.ts, wording.ts, threads.ts) imports no module of LibVMS', () => {
  const graph = importGraph()
  for (const module of FOUNDATION) {
    assert.ok(graph.has(module), `src/${module} is missing`)
    assert.deepEqual(graph.get(module), [], `src/${module} imports ${graph.get(module)?.join(', ')}`)
  }
})

test('no modules of src/ import each other in a circle', () => {
  const found = circles(importGraph())
  assert.deepEqual(found, [], `import circles:\n${found.map((c) => c.join(' ↔ ')).join('\n')}`)
})

test('no class extends an error outside src/errors.ts', () => {
  const errorsText = readFileSync(join(SRC, 'errors.ts'), 'utf8')
  const errorClasses = new Set([...errorsText.matchAll(/\bclass\s+(\w+)/g)].map((m) => m[1]))
  assert.ok(errorClasses.has('LibVMSError'), 'src/errors.ts defines LibVMSError')
  const outside: string[] = []
  for (const module of modules()) {
    if (module === 'errors.ts') continue
    const text = readFileSync(join(SRC, module), 'utf8')
    for (const m of text.matchAll(/\bclass\s+(\w+)(?:\s*<[^>{]*>)?\s+extends\s+([\w.]+)/g)) {
      const base = m[2].split('.').pop() as string
      if (base.endsWith('Error') || errorClasses.has(base)) outside.push(`${module}: class ${m[1]} extends ${m[2]}`)
    }
  }
  assert.deepEqual(outside, [], `error classes belong in src/errors.ts:\n${outside.join('\n')}`)
})

test('docs/architecture.md states the layers in this order', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8')
  const section = doc.slice(doc.indexOf('## Layers'))
  assert.ok(section.length < doc.length, 'docs/architecture.md has a "## Layers" section')
  // The table's rows: the first cell names the layer's folders and files, in backticks.
  const rows = section
    .split('\n## ')[0]
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => [...(line.split('|')[1] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1]))
  assert.deepEqual(rows, LAYERS, 'the layer table of docs/architecture.md and LAYERS here must agree')
})
