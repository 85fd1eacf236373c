/**
 * Long work on the event loop, in slices: a pass over a VM's memory (64 MiB by default) or a hash of
 * it takes from a few ms to hundreds (reading pages of a memory that were never touched costs a page
 * fault each: on a virtual machine, 200 ms and more for 64 MiB). Held in one go, that stalls every
 * socket, timer and VM of the process. Such work is written once, as *steps*: a generator that yields
 * between small units of work (a page, a chunk) and returns its result. `runAtOnce` runs them in one
 * go (where nothing else waits: a worker, an audit); `runInSlices` gives the event loop a turn
 * whenever a slice has held it `SLICE_MS`. The result is the same either way: only when the work runs
 * differs, never what it computes.
 */
import { performance } from 'node:perf_hooks'

/** Work in steps: yields between units of work, returns its result. */
export type Steps<T> = Generator<void, T, void>

/** The longest a slice holds the event loop before it gives it a turn (a unit of work may add to it). */
export const SLICE_MS = 5

/** Runs steps to their end in one go. */
export function runAtOnce<T>(steps: Steps<T>): T {
  for (;;) {
    const next = steps.next()
    if (next.done) return next.value
  }
}

/**
 * Runs steps to their end, giving the event loop a turn (setImmediate: timers and I/O run) whenever a
 * slice has lasted SLICE_MS. `afterPause` runs after each turn given, before the next step: it may
 * throw to stop the work (what it works on went away meanwhile).
 */
export async function runInSlices<T>(steps: Steps<T>, afterPause?: () => void): Promise<T> {
  let sliceStart = performance.now()
  for (;;) {
    const next = steps.next()
    if (next.done) return next.value
    if (performance.now() - sliceStart >= SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      try {
        afterPause?.()
      } catch (err) {
        steps.return(undefined as T)
        throw err
      }
      sliceStart = performance.now()
    }
  }
}

/** Consecutive pieces of `bytes`, each `size` long but maybe the last (views, not copies). */
export function* chunksOf(bytes: Uint8Array, size: number): Generator<Uint8Array> {
  for (let offset = 0; offset < bytes.byteLength; offset += size) yield bytes.subarray(offset, offset + size)
}

/**
 * Steps that copy `bytes` into a new SharedArrayBuffer, a chunk a step: what a message to a worker can
 * carry without the copy its serialization would make in one go.
 */
export function* sharedCopySteps(bytes: Uint8Array, chunk = 64 * 1024): Steps<Uint8Array> {
  const copy = new Uint8Array(new SharedArrayBuffer(bytes.byteLength))
  for (let at = 0; at < bytes.byteLength; at += chunk) {
    copy.set(bytes.subarray(at, at + chunk), at)
    yield
  }
  return copy
}
