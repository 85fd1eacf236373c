/**
 * The QuickJS engine: one compiled WebAssembly module per process, one instance per sandbox, each with
 * its own fixed-size memory (initial = maximum): a new one, or that of a disposed instance, cleared.
 * A fixed memory is what bounds a script's allocations: QuickJS's own memory limit does not hold in
 * these builds, and growing memory while jobs run trips an assertion in quickjs-emscripten 0.32.
 *
 * Nothing of the host reaches an instance: host-imports.ts replaces the engine's windows on the host
 * (time zone, clock, environment, program path, timers) with fixed answers before it starts, so every
 * instance starts with the same bytes in its memory and reads UTC, on whichever host, thread or program.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { isMainThread } from 'node:worker_threads'
import releaseSyncModule from '@jitl/quickjs-wasmfile-release-sync'
import {
  type EmscriptenModuleLoaderOptions,
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSSyncVariant,
  type QuickJSWASMModule,
} from 'quickjs-emscripten-core'
import { moduleBeside, startModuleWorker } from '../threads.js'
import { deterministicImports } from './host-imports.js'
import { runInSlices, type Steps } from './slices.js'

const require = createRequire(import.meta.url)

// The variant package is CommonJS under NodeNext resolution; its variant is the default export.
const releaseSyncVariant = ((releaseSyncModule as { default?: unknown }).default ?? releaseSyncModule) as QuickJSSyncVariant

export const PAGE_BYTES = 64 * 1024
/** The engine module declares a minimum memory of 256 pages. */
export const MIN_MEMORY_BYTES = 256 * PAGE_BYTES
/** The largest memory a VM may have (limits.memoryBytes): 2 GiB. */
export const MAX_MEMORY_BYTES = 2 ** 31

export const ENGINE_NAME = 'quickjs-emscripten'
export const ENGINE_VARIANT = 'release-sync'
export const ENGINE_VERSION: string = require('@jitl/quickjs-wasmfile-release-sync/package.json').version

/** What the engine is told its program is called, on every host. */
const ENGINE_PROGRAM = '/libvms'

const ENGINE_WASM_PATH = require.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')
let compiledModule: Promise<WebAssembly.Module> | undefined
let engineBytesHash: string | undefined

/** SHA-256 (hex) of the engine's WebAssembly module, as this process loads it. */
export function engineHash(): string {
  engineBytesHash ??= createHash('sha256').update(readFileSync(ENGINE_WASM_PATH)).digest('hex')
  return engineBytesHash
}

/** How long the main thread waits for the warm-up thread before it compiles the engine itself. */
const WARM_UP_LIMIT_MS = 30_000
const WARM_UP_THREAD = moduleBeside(import.meta.url, 'engine-warm-up-thread')

/**
 * The engine, compiled once per process (a cache: the module is immutable); every sandbox instantiates
 * it. WebAssembly compiles each function of a module the first time it runs: a first sandbox's setup
 * on a fresh engine held the event loop for 100–200 ms. So on the main thread the engine is compiled
 * and run once — a first sandbox — on a thread of its own (engine-warm-up-thread.ts), which hands
 * over the module, its compiled code with it; should that thread fail, the engine is compiled here.
 * Elsewhere (a sandbox or audit thread, or that thread itself) it is compiled where it is asked for.
 */
export function compiledEngine(): Promise<WebAssembly.Module> {
  compiledModule ??= isMainThread ? warmedOnThread().catch(() => compileHere()) : compileHere()
  return compiledModule
}

async function compileHere(): Promise<WebAssembly.Module> {
  return WebAssembly.compile(await readFile(ENGINE_WASM_PATH))
}

async function warmedOnThread(): Promise<WebAssembly.Module> {
  const thread = startModuleWorker(WARM_UP_THREAD)
  let limit: NodeJS.Timeout | undefined
  try {
    return await new Promise<WebAssembly.Module>((resolve, reject) => {
      limit = setTimeout(() => reject(new Error('the engine warm-up thread took too long')), WARM_UP_LIMIT_MS)
      thread.once('message', (module: unknown) =>
        module instanceof WebAssembly.Module ? resolve(module) : reject(new Error('the warm-up thread sent no module')),
      )
      thread.once('error', reject)
      thread.once('exit', (code) => reject(new Error(`the engine warm-up thread exited (code ${code})`)))
    })
  } finally {
    // Its work is done either way (a module it sent stays valid when it ends).
    clearTimeout(limit)
    void thread.terminate()
  }
}

/** An engine instance and the WebAssembly memory it runs in (all of its state but its stack pointer). */
export interface EngineInstance {
  module: QuickJSWASMModule
  memory: WebAssembly.Memory
}

/**
 * The memory of the instance last disposed, by size, held weakly (a collection frees it, as before):
 * the next instance of that size takes it, cleared, rather than allocating another one — each new
 * memory counts its whole size against V8's external memory limit, which made nearly every deploy
 * wait on a garbage collection.
 */
const spareMemories = new Map<number, WeakRef<WebAssembly.Memory>>()
/** A spare memory with more pages written than this is not reused (its pages would stay resident). */
const MAX_SPARE_WRITTEN_PAGES = 64
const ZERO_PAGE = new Uint8Array(PAGE_BYTES)

/** Gives back the memory of a disposed instance: nothing will run on it again. */
export function recycleMemory(memory: WebAssembly.Memory): void {
  spareMemories.set(memory.buffer.byteLength, new WeakRef(memory))
}

/**
 * A memory of `bytes` holding only zeros, as a new one does: the spare one, cleared (in slices: its
 * pages are all checked, slices.ts), or a new one.
 */
async function zeroedMemory(bytes: number): Promise<WebAssembly.Memory> {
  const spare = spareMemories.get(bytes)?.deref()
  spareMemories.delete(bytes)
  if (spare && (await runInSlices(zeroPageSteps(spare, new Set(), MAX_SPARE_WRITTEN_PAGES)))) return spare
  return new WebAssembly.Memory({ initial: bytes / PAGE_BYTES, maximum: bytes / PAGE_BYTES })
}

/** A view of page `page` of `memory`. */
export function pageOf(memory: WebAssembly.Memory, page: number): Uint8Array {
  return new Uint8Array(memory.buffer, page * PAGE_BYTES, PAGE_BYTES)
}

/** The number of pages of `memory`. */
function pageCount(memory: WebAssembly.Memory): number {
  return memory.buffer.byteLength / PAGE_BYTES
}

/** Whether page `page` of `memory` holds a non-zero byte. */
function isWritten(memory: WebAssembly.Memory, page: number): boolean {
  return Buffer.compare(pageOf(memory, page), ZERO_PAGE) !== 0
}

/**
 * Steps (slices.ts) that list each page of `memory` that holds a non-zero byte, ascending. Every page
 * is checked, one a step: the first check of a page never touched costs a page fault.
 */
export function* writtenPageSteps(memory: WebAssembly.Memory): Steps<number[]> {
  const pages: number[] = []
  for (let page = 0; page < pageCount(memory); page++) {
    if (isWritten(memory, page)) pages.push(page)
    yield
  }
  return pages
}

/**
 * Steps that zero each page of `memory` that holds a non-zero byte, but those in `keep`; their result
 * is false if more than `most` pages had to be (they then stop). Zeroing only those that hold
 * something keeps the rest of the memory uncommitted.
 */
export function* zeroPageSteps(memory: WebAssembly.Memory, keep: ReadonlySet<number>, most = Number.POSITIVE_INFINITY): Steps<boolean> {
  let written = 0
  for (let page = 0; page < pageCount(memory); page++) {
    if (!keep.has(page) && isWritten(memory, page)) {
      if (++written > most) return false
      pageOf(memory, page).fill(0)
    }
    yield
  }
  return true
}

/** A fresh engine instance with a memory of exactly `memoryBytes` (a multiple of 64 KiB, ≥ 16 MiB). */
export async function createEngineInstance(memoryBytes: number): Promise<EngineInstance> {
  const memory = await zeroedMemory(memoryBytes)
  const compiled = await compiledEngine()
  const variant = newVariant<QuickJSSyncVariant>(releaseSyncVariant, {
    wasmMemory: memory,
    emscriptenModule: {
      // The program path the engine's libc would copy into memory: the same everywhere.
      thisProgram: ENGINE_PROGRAM,
      instantiateWasm(imports: WebAssembly.Imports, onSuccess: (instance: WebAssembly.Instance) => void) {
        const instance = new WebAssembly.Instance(compiled, deterministicImports(imports, memory))
        onSuccess(instance)
        return instance.exports
      },
    } as EmscriptenModuleLoaderOptions,
  })
  return { module: await newQuickJSWASMModuleFromVariant(variant), memory }
}

export function isValidMemorySize(bytes: number): boolean {
  return Number.isInteger(bytes) && bytes >= MIN_MEMORY_BYTES && bytes % PAGE_BYTES === 0 && bytes <= MAX_MEMORY_BYTES
}
