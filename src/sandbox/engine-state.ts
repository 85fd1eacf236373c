/**
 * The state of a sandbox between turns, as bytes: its engine's WebAssembly memory (every page that is
 * not all zeros, by index) and the little the host keeps beside it that a later turn reads (the
 * script's export list, whether the driver's request queue must be reset).
 *
 * Why this is all of it: an engine instance starts with the same bytes in its memory everywhere
 * (engine.ts), its memory never grows (initial = maximum), and between turns no engine function is on
 * the stack, so the stack pointer — its one mutable global outside memory — is back at its base. A
 * sandbox built the same way (the same limits, prelude and System API, which allocate the same
 * objects at the same addresses) and given these bytes is the sandbox that wrote them. Measured, not
 * assumed: test/checkpoints.test.ts runs turns on both and compares their memory byte for byte.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, sep } from 'node:path'
import { engineHash, PAGE_BYTES, pageOf, writtenPageSteps, zeroPageSteps } from './engine.js'
import { PRELUDE_SOURCE, UPGRADE_PRELUDE_SOURCE } from './prelude.js'
import type { Steps } from './slices.js'

const require = createRequire(import.meta.url)

/**
 * The version of what builds a sandbox around the engine and runs its turns (sandbox.ts, host-imports.ts,
 * the engine-state capture): raise it with any change there that changes what lands in the engine's
 * memory, so that digests of other builds are told apart rather than taken for lies.
 */
const SANDBOX_SETUP_VERSION = 1

/** One export of a script, as the sandbox lists it after loading it. */
export interface ExportInfo {
  name: string
  callable: boolean
  /** A non-function export's value at load time (tagged JSON), or null if it cannot be encoded. */
  value?: string | null
}

/** A sandbox's state between turns. */
export interface EngineState {
  /** Size of the whole memory (the VM's limits.memoryBytes). */
  memoryBytes: number
  /** Indices of the pages that hold a non-zero byte, ascending. */
  pages: number[]
  /** Those pages' bytes, in the order of `pages` (PAGE_BYTES each). */
  bytes: Uint8Array
  exports: ExportInfo[]
  /** The last turn was aborted with host requests queued: the next turn resets the driver's queue. */
  requestsLeft: boolean
}

/** quickjs-emscripten-core's version (its package exports no package.json: read beside its entry). */
function coreVersion(): string {
  const entry = require.resolve('quickjs-emscripten-core')
  const root = entry.slice(0, entry.lastIndexOf(`${sep}dist${sep}`))
  return (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version
}

/**
 * The *state format* of sandboxes built with these System API sources: 16 hex digits of a hash of
 * everything that decides the bytes a turn leaves in the engine's memory besides the log — the
 * engine's WebAssembly, the prelude, the System API sources, quickjs-emscripten-core's version and
 * the sandbox's own setup. Two builds of the same format compute the same state digest for the same
 * log; a digest of another format cannot be compared (it is not a lie, nor proof of none).
 * `upgradeHook`: the sandbox loads code from an upgrade entry, and its prelude has the upgrade hook.
 */
export function stateFormatOf(systemSources: readonly string[], upgradeHook = false): string {
  const hash = createHash('sha256')
  const part = (text: string) => hash.update(`${Buffer.byteLength(text)}:`).update(text)
  part(`libvms-sandbox/${SANDBOX_SETUP_VERSION}`)
  part(engineHash())
  part(coreVersion())
  part(upgradeHook ? UPGRADE_PRELUDE_SOURCE : PRELUDE_SOURCE)
  for (const source of systemSources) part(source)
  return hash.digest('hex').slice(0, 16)
}

/** Steps (slices.ts) that copy the memory's non-zero pages: a page checked, or copied, a step. */
export function* captureSteps(memory: WebAssembly.Memory): Steps<{ pages: number[]; bytes: Uint8Array }> {
  const pages = yield* writtenPageSteps(memory)
  // Not zero-filled first (that would write it all in one go): every byte is copied over below.
  const buffer = Buffer.allocUnsafeSlow(pages.length * PAGE_BYTES)
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  for (let i = 0; i < pages.length; i++) {
    bytes.set(pageOf(memory, pages[i]), i * PAGE_BYTES)
    yield
  }
  return { pages, bytes }
}

/** Steps that make `memory` hold exactly the captured pages (every other byte zero). */
export function* writeMemorySteps(memory: WebAssembly.Memory, state: Pick<EngineState, 'pages' | 'bytes' | 'memoryBytes'>): Steps<void> {
  const size = memory.buffer.byteLength
  if (size !== state.memoryBytes) throw new RangeError(`the state is of a ${state.memoryBytes}-byte memory, this engine has ${size} bytes`)
  checkEngineStateShape(state)
  // Pages the state has are overwritten; of the others, only those that hold something are zeroed
  // (a fresh engine has written a few): filling all of it would commit the whole memory for nothing.
  yield* zeroPageSteps(memory, new Set(state.pages))
  for (let i = 0; i < state.pages.length; i++) {
    pageOf(memory, state.pages[i]).set(state.bytes.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES))
    yield
  }
}

/** Throws RangeError unless the pages are ascending, within the memory, and their bytes are all there. */
export function checkEngineStateShape(state: Pick<EngineState, 'pages' | 'bytes' | 'memoryBytes'>): void {
  const count = state.memoryBytes / PAGE_BYTES
  if (!Number.isSafeInteger(count) || count <= 0) throw new RangeError(`memoryBytes ${state.memoryBytes} is not a whole number of pages`)
  if (state.bytes.byteLength !== state.pages.length * PAGE_BYTES) {
    throw new RangeError(
      `${state.pages.length} pages need ${state.pages.length * PAGE_BYTES} bytes, the state has ${state.bytes.byteLength}`,
    )
  }
  let last = -1
  for (const page of state.pages) {
    if (!Number.isSafeInteger(page) || page <= last || page >= count) throw new RangeError(`page index ${page} is out of order or range`)
    last = page
  }
}
