/**
 * Keeping up with the log as it grows: every entry is indexed (entry-index.ts: what the filters
 * read), in windows of the log's byte budget, one pass at a time; the rows of entries past the length
 * the explorer started at go to the pages listening (event-stream.ts, `entry`). A fetched copy of a
 * log (not the host's own) learns of new entries by asking its hosts, until the explorer closes.
 */
import type { CallLog } from '../ledger/call-log.js'
import { EntryIndex } from './entry-index.js'
import { type EntryRow, MAX_PAGE, rowOf } from './entry-rows.js'
import type { EventStream } from './event-stream.js'

export class LogIndexer {
  readonly index = new EntryIndex()
  private indexing: Promise<void> | null = null
  private indexError: Error | null = null
  private readonly waiters: { length: number; wake: () => void }[] = []
  private following: Promise<void> | null = null
  /** The log's length when the explorer started: entries past it are announced as live rows. */
  private initialLength: number | null = null
  private readonly onAppend = () => this.indexMore()

  constructor(
    private readonly callLog: CallLog,
    private readonly events: EventStream,
    /** Aborted when the explorer closes. */
    private readonly signal: AbortSignal,
  ) {}

  /** Indexes the log from its start, and every entry appended from now on. */
  start(): void {
    this.initialLength = this.callLog.length
    this.callLog.on('append', this.onAppend)
    this.indexMore()
    if (!this.callLog.writable) this.following = this.follow()
  }

  /** Stops taking new entries and wakes whoever waits for some (call once `signal` is aborted). */
  stop(): void {
    this.callLog.off('append', this.onAppend)
    for (const waiter of this.waiters.splice(0)) waiter.wake()
  }

  /** Resolves once the pass under way and the following of a fetched copy have ended (after stop()). */
  async settled(): Promise<void> {
    await this.following?.catch(() => {})
    await this.indexing?.catch(() => {})
  }

  /** Resolves once the index covers seqs [0, length). */
  async indexed(length: number): Promise<void> {
    if (this.indexError) throw this.indexError
    if (this.index.length >= length) return
    await new Promise<void>((wake) => this.waiters.push({ length, wake }))
    if (this.indexError) throw this.indexError
  }

  /** Indexes the entries not indexed yet, in chunks; one pass at a time, another queued if the log grew meanwhile. */
  private indexMore(): void {
    if (this.indexing || this.signal.aborted) return
    const start = this.index.length
    const end = this.callLog.length
    if (start >= end) return
    this.indexing = (async () => {
      const rows: EntryRow[] = []
      let seq = start
      // Read within the log's byte budget, one entry decoded at a time and only its row kept.
      for await (const entry of this.callLog.entries({ start, end })) {
        if (this.signal.aborted) break
        this.index.add(entry)
        if (this.events.listening && this.initialLength !== null && seq >= this.initialLength) rows.push(rowOf(seq, entry))
        seq++
        this.wakeWaiters()
      }
      if (rows.length > 0) this.events.broadcast('entry', { length: this.index.length, rows: rows.slice(-MAX_PAGE) })
    })()
      .catch((error: unknown) => {
        this.indexError = error as Error
        for (const waiter of this.waiters.splice(0)) waiter.wake()
      })
      .finally(() => {
        this.indexing = null
        if (!this.indexError && this.index.length < this.callLog.length) this.indexMore()
      })
  }

  private wakeWaiters(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i]
      if (this.index.length >= waiter.length) {
        this.waiters.splice(i, 1)
        waiter.wake()
      }
    }
  }

  /** A fetched copy learns of new entries by asking its hosts: do so until closed. */
  private async follow(): Promise<void> {
    while (!this.signal.aborted) {
      try {
        await this.callLog.waitForLength(this.callLog.length + 1, { signal: this.signal, pollMs: 1000 })
      } catch {
        // A host that went away: wait a moment and ask again.
        await new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())
      }
    }
  }
}
