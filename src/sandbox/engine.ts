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
import { createRequire } from 'node:module'
import releaseSyncModule from '@jitl/quickjs-wasmfile-release-sync'
import {
  type EmscriptenModuleLoaderOptions,
  newQuickJSWASMModuleFromVariant,
  newVariant,
  type QuickJSSyncVariant,
  type QuickJSWASMModule,
} from 'quickjs-emscripten-core'
import { deterministicImports } from './host-imports.js'

const require = createRequire(import.meta.url)

// The variant package is CommonJS under NodeNext resolution; its variant is the default export.
const releaseSyncVariant = ((releaseSyncModule as { default?: unknown }).default ?? releaseSyncModule) as QuickJSSyncVariant

export const PAGE_BYTES = 64 * 1024
/** The engine module declares a minimum memory of 256 pages. */
export const MIN_MEMORY_BYTES = 256 * PAGE_BYTES

export const ENGINE_NAME = 'quickjs-emscripten'
export const ENGINE_VARIANT = 'release-sync'
export const ENGINE_VERSION: string = require('@jitl/quickjs-wasmfile-release-sync/package.json').version

/** What the engine is told its program is called, on every host. */
const ENGINE_PROGRAM = '/libvms'

const ENGINE_WASM_PATH = require.resolve('@jitl/quickjs-wasmfile-release-sync/wasm')
let compiledModule: WebAssembly.Module | undefined
let engineBytesHash: string | undefined

/** SHA-256 (hex) of the engine's WebAssembly module, as this process loads it. */
export function engineHash(): string {
  engineBytesHash ??= createHash('sha256').update(readFileSync(ENGINE_WASM_PATH)).digest('hex')
  return engineBytesHash
}

/** Compiles the engine once per process (a cache: the module is immutable); every sandbox instantiates it. */
function compiledEngine(): WebAssembly.Module {
  compiledModule ??= new WebAssembly.Module(readFileSync(ENGINE_WASM_PATH))
  return compiledModule
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

/** A memory of `bytes` holding only zeros, as a new one does: the spare one, cleared, or a new one. */
function zeroedMemory(bytes: number): WebAssembly.Memory {
  const spare = spareMemories.get(bytes)?.deref()
  spareMemories.delete(bytes)
  if (spare && zeroPages(spare, new Set(), MAX_SPARE_WRITTEN_PAGES)) return spare
  return new WebAssembly.Memory({ initial: bytes / PAGE_BYTES, maximum: bytes / PAGE_BYTES })
}

/** A view of page `page` of `memory`. */
export function pageOf(memory: WebAssembly.Memory, page: number): Uint8Array {
  return new Uint8Array(memory.buffer, page * PAGE_BYTES, PAGE_BYTES)
}

/** The index of each page of `memory` that holds a non-zero byte, ascending (every page is checked). */
export function* writtenPages(memory: WebAssembly.Memory): Generator<number> {
  for (let page = 0; page * PAGE_BYTES < memory.buffer.byteLength; page++) {
    if (Buffer.compare(pageOf(memory, page), ZERO_PAGE) !== 0) yield page
  }
}

/**
 * Zeroes each page of `memory` that holds a non-zero byte, but those in `keep`; false if more than
 * `most` pages had to be (it then stops). Zeroing only those that hold something keeps the rest of
 * the memory uncommitted.
 */
export function zeroPages(memory: WebAssembly.Memory, keep: ReadonlySet<number>, most = Number.POSITIVE_INFINITY): boolean {
  let written = 0
  for (const page of writtenPages(memory)) {
    if (keep.has(page)) continue
    if (++written > most) return false
    pageOf(memory, page).fill(0)
  }
  return true
}

/** A fresh engine instance with a memory of exactly `memoryBytes` (a multiple of 64 KiB, ≥ 16 MiB). */
export async function createEngineInstance(memoryBytes: number): Promise<EngineInstance> {
  const memory = zeroedMemory(memoryBytes)
  const compiled = compiledEngine()
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
  return Number.isInteger(bytes) && bytes >= MIN_MEMORY_BYTES && bytes % PAGE_BYTES === 0 && bytes <= 2 ** 31
}
