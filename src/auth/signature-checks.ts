/**
 * Checking the signatures of a production log's calls ahead of replay, on a worker thread: an
 * Ed25519 check costs about as much as re-running a trivial call, and the two can run side by side.
 * The outcome is only an input to CallAuthenticator.checkLogged, which still checks everything else
 * in log order; the same libsodium check as the VM's admission decides (signatureVerifies).
 */
import type { Worker } from 'node:worker_threads'
import type { ReadEntry } from '../ledger/call-log.js'
import type { CallEntry } from '../ledger/log-entry.js'
import { moduleBeside, startModuleWorker } from '../threads.js'
import type { SignatureBatch } from './signature-thread.js'

const THREAD_ENTRY = moduleBeside(import.meta.url, 'signature-thread')
/** Entries per batch sent to the thread, at most. */
const BATCH = 256
/**
 * Bytes of entries per batch, at most (at least one entry): a batch is held until it is replayed, and
 * one more is checked meanwhile, so this bounds what the checks hold ahead of a replay of big entries.
 */
const BATCH_BYTES = 4 * 1024 * 1024

class SignatureThread {
  private worker: Worker | null = null
  private readonly pending = new Map<number, (results: (boolean | null)[] | null) => void>()
  private nextId = 1

  /** The signatures' outcomes, or null if the thread failed (the caller then checks on its own thread). */
  check(items: SignatureBatch['items']): Promise<(boolean | null)[] | null> {
    const worker = this.start()
    const id = this.nextId++
    return new Promise((resolve) => {
      if (this.pending.size === 0) worker.ref()
      this.pending.set(id, resolve)
      worker.postMessage({ id, items } satisfies SignatureBatch)
    })
  }

  private start(): Worker {
    if (this.worker) return this.worker
    const worker = startModuleWorker(THREAD_ENTRY)
    worker.unref()
    worker.on('message', ({ id, results }: { id: number; results: (boolean | null)[] }) => this.settle(id, results))
    const fail = () => {
      for (const id of [...this.pending.keys()]) this.settle(id, null)
      if (this.worker === worker) this.worker = null
    }
    worker.on('error', fail)
    worker.on('exit', fail)
    this.worker = worker
    return worker
  }

  /** Ends the thread; checks still waiting resolve null (the caller checks them itself). */
  async close(): Promise<void> {
    const worker = this.worker
    this.worker = null
    await worker?.terminate()
  }

  private settle(id: number, results: (boolean | null)[] | null): void {
    const resolve = this.pending.get(id)
    this.pending.delete(id)
    if (this.pending.size === 0) this.worker?.unref()
    resolve?.(results)
  }
}

/** An entry as read, with the outcome of its signature's check when one was made ahead (undefined: none made, or the thread could not say). */
export interface CheckedEntry extends ReadEntry {
  signatureValid?: boolean
}

/**
 * Yields `entries` with the outcome of each one's signature check (undefined when it has no
 * signature, or when the thread could not say), checking each batch (BATCH entries or BATCH_BYTES,
 * whichever comes first) while the previous one is used.
 * The thread is this iteration's own: started by the first full batch (a shorter log is checked by
 * the caller, on its own thread: starting one costs more than the checks) and ended when the
 * iteration ends, however it ends, so nothing outlives the replay that asked.
 */
export async function* withSignatureChecks(entries: AsyncIterable<ReadEntry>): AsyncGenerator<CheckedEntry> {
  let thread: SignatureThread | null = null
  const submit = (batch: ReadEntry[]) => {
    thread ??= new SignatureThread()
    const items = batch.map(({ entry }) => {
      const e = entry as CallEntry
      return e.signed && typeof e.caller === 'string' ? { signed: e.signed, caller: e.caller } : null
    })
    return { batch, results: thread.check(items) }
  }
  let current: ReadEntry[] = []
  let currentBytes = 0
  let ahead: ReturnType<typeof submit> | null = null
  // Each entry is let go of as it is handed on.
  async function* drain(batch: ReadEntry[], results: (boolean | null)[] | null): AsyncGenerator<CheckedEntry> {
    for (let i = 0; i < batch.length; i++) {
      const read = batch[i]
      batch[i] = RELEASED
      yield { ...read, signatureValid: results?.[i] ?? undefined }
    }
  }
  try {
    for await (const read of entries) {
      current.push(read)
      currentBytes += read.bytes
      if (current.length < BATCH && currentBytes < BATCH_BYTES) continue
      const submitted = submit(current)
      current = []
      currentBytes = 0
      if (ahead) yield* drain(ahead.batch, await ahead.results)
      ahead = submitted
    }
    const last = thread && current.length > 0 ? submit(current) : null
    if (ahead) yield* drain(ahead.batch, await ahead.results)
    if (last) yield* drain(last.batch, await last.results)
    else yield* drain(current, null)
  } finally {
    await (thread as SignatureThread | null)?.close()
  }
}

const RELEASED: ReadEntry = { seq: -1, entry: null as unknown as CallEntry, bytes: 0 }
