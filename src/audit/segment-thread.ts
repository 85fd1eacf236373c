/**
 * An audit segment's thread (a worker): replays one stretch of a call log — from the script, or from
 * the snapshot of a checkpoint — and compares every replayed entry with the logged one, as a whole
 * audit does. The log's blocks arrive from the auditor's main thread in batches (parallel-audit.ts
 * sends them; a batch is asked for once the one before is replayed, so a segment holds a few at a
 * time). This module's state is the thread's own.
 */
import { parentPort } from 'node:worker_threads'
import { DivergenceError, StateError } from '../errors.js'
import type { ReadEntry } from '../ledger/call-log.js'
import { decodeEntry, type LogEntry } from '../ledger/log-entry.js'
import { decodeSnapshot } from '../ledger/snapshot.js'
import { toCrossing } from '../sandbox/thread-messages.js'
import { openReplay, type ReplaySource } from '../vm/replay.js'
import { EntryChecks } from './entry-checks.js'
import type { FromSegment, SegmentTask, ToSegment } from './segment-messages.js'

const port = parentPort
if (!port) throw new Error('segment-thread runs as a worker thread')

function post(message: FromSegment): void {
  port?.postMessage(message)
}

const RELEASED = new Uint8Array(0)

/** The log as the segment sees it: its init entry, the entry it starts after, and the blocks sent. */
class SegmentSource implements ReplaySource {
  readonly url: string
  private readonly batches: Uint8Array[][] = []
  private wake: (() => void) | null = null

  constructor(
    readonly key: string,
    private readonly task: SegmentTask,
  ) {
    this.url = `hyper://${key}`
  }

  get length(): number {
    return this.task.end
  }

  async ready(): Promise<void> {}

  async get(seq: number): Promise<LogEntry> {
    return decodeEntry(await this.block(seq), seq)
  }

  /** The init entry's block, that of the entry the segment starts after, or that of the upgrade whose code its start runs. */
  async block(seq: number): Promise<Uint8Array> {
    if (seq === 0) return this.task.init
    if (this.task.from && seq === this.task.from.seq) return this.task.from.entry
    if (this.task.from?.code && seq === this.task.from.code.seq) return this.task.from.code.entry
    throw new StateError(`an audit segment holds no entry ${seq} out of order`)
  }

  push(blocks: Uint8Array[]): void {
    this.batches.push(blocks)
    this.wake?.()
  }

  /** The entries sent, as they arrive; each block is let go once its entry is decoded. */
  async *read(opts: { start?: number; end?: number } = {}): AsyncGenerator<ReadEntry> {
    let seq = (this.task.from?.seq ?? 0) + 1
    if ((opts.start ?? seq) !== seq) throw new StateError(`an audit segment reads from seq ${seq}, not ${opts.start}`)
    const end = Math.min(opts.end ?? this.task.end, this.task.end)
    while (seq < end) {
      const batch = this.batches.shift()
      if (!batch) {
        await new Promise<void>((resolve) => {
          this.wake = resolve
        })
        this.wake = null
        continue
      }
      for (let i = 0; i < batch.length && seq < end; i++, seq++) {
        const block = batch[i]
        batch[i] = RELEASED
        yield { seq, entry: decodeEntry(block, seq), bytes: block.byteLength }
      }
      post({ t: 'progress', seq: seq - 1 })
    }
  }

  async waitForLength(): Promise<void> {
    throw new StateError('an audit segment does not follow its log')
  }
}

let source: SegmentSource | null = null

async function run(task: SegmentTask): Promise<void> {
  source = new SegmentSource(task.logKey, task)
  const from = task.from ? { snapshot: decodeSnapshot(task.from.snapshot), archive: task.from.archive } : undefined
  const replay = await openReplay(source, {
    end: task.end,
    dir: task.dir,
    from,
    allowEngineMismatch: task.allowEngineMismatch,
    maxLimits: task.maxLimits,
  })
  // The archive is checked on the auditor's main thread, as it sends the entries (parallel-audit.ts).
  const checks = new EntryChecks(null)
  try {
    let lastSign = Date.now()
    for await (const entry of replay.entries()) {
      const now = Date.now()
      if (now - lastSign >= 1000) {
        lastSign = now
        post({ t: 'alive' })
      }
      await checks.check(entry)
    }
  } finally {
    await replay.close()
  }
  // Once its storage is closed: the auditor ends this thread and removes its dir when it hears this.
  post({ t: 'done', calls: checks.calls, failedCalls: checks.failedCalls })
}

port.on('message', (message: ToSegment) => {
  if (message.t === 'blocks') {
    source?.push(message.blocks)
    return
  }
  run(message.task).catch((err) => {
    if (err instanceof DivergenceError) post({ t: 'divergence', divergence: err.toJSON() })
    else post({ t: 'failed', error: toCrossing(err) })
  })
})
