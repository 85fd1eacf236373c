/**
 * What the explorer filters by, per seq, in memory: the method, the caller and whether the call failed.
 * Method and caller names are interned (a log has few distinct ones), so a 100,000-entry log costs a few
 * hundred kilobytes here and a filter is a scan of typed arrays, not a read of the log.
 */
import type { LogEntry } from '../ledger/log-entry.js'

export interface EntryFilter {
  method?: string
  /** A caller's id or key; '' is the anonymous caller. */
  caller?: string
  failed?: boolean
}

/** The name `init` stands for entry 0 in filters and listings. */
export const INIT_METHOD = 'init'
/** The method an upgrade entry is listed under. */
export const UPGRADE_METHOD = 'upgrade'

class Interned {
  readonly names: string[] = []
  private readonly ids = new Map<string, number>()

  id(name: string): number {
    let id = this.ids.get(name)
    if (id === undefined) {
      id = this.names.length
      this.names.push(name)
      this.ids.set(name, id)
    }
    return id
  }

  find(name: string): number | undefined {
    return this.ids.get(name)
  }
}

export class EntryIndex {
  private readonly methodNames = new Interned()
  private readonly callerNames = new Interned()
  private methods = new Uint32Array(1024)
  private callers = new Uint32Array(1024)
  private failures = new Uint8Array(1024)
  /** Entries indexed: seqs [0, length). */
  length = 0

  /** Takes note of the entry at seq `this.length`. */
  add(entry: LogEntry): void {
    if (this.length === this.methods.length) this.grow()
    const seq = this.length
    if (entry.type !== 'call') {
      this.methods[seq] = this.methodNames.id(entry.type === 'init' ? INIT_METHOD : UPGRADE_METHOD)
      this.callers[seq] = this.callerNames.id('')
      this.failures[seq] = 0
    } else {
      this.methods[seq] = this.methodNames.id(entry.method)
      this.callers[seq] = this.callerNames.id(entry.caller ?? '')
      this.failures[seq] = entry.error ? 1 : 0
    }
    this.length = seq + 1
  }

  private grow(): void {
    const size = this.methods.length * 2
    const methods = new Uint32Array(size)
    methods.set(this.methods)
    const callers = new Uint32Array(size)
    callers.set(this.callers)
    const failures = new Uint8Array(size)
    failures.set(this.failures)
    this.methods = methods
    this.callers = callers
    this.failures = failures
  }

  /** Distinct method names and callers seen so far (for the page's suggestions). */
  get names(): { methods: string[]; callers: string[] } {
    return { methods: [...this.methodNames.names], callers: [...this.callerNames.names] }
  }

  /**
   * Up to `limit` seqs matching `filter`, from `start` down to 0 (newest first), and the seq to start
   * the next (older) page at, or null when there is none.
   */
  query(filter: EntryFilter, start: number, limit: number): { seqs: number[]; next: number | null } {
    const method = filter.method ? this.methodNames.find(filter.method) : undefined
    const caller = filter.caller !== undefined ? this.callerNames.find(filter.caller) : undefined
    // A name never seen matches nothing.
    if ((filter.method && method === undefined) || (filter.caller !== undefined && caller === undefined)) return { seqs: [], next: null }
    const seqs: number[] = []
    let seq = Math.min(start, this.length - 1)
    for (; seq >= 0 && seqs.length < limit; seq--) {
      if (method !== undefined && this.methods[seq] !== method) continue
      if (caller !== undefined && this.callers[seq] !== caller) continue
      if (filter.failed && this.failures[seq] !== 1) continue
      seqs.push(seq)
    }
    return { seqs, next: seq >= 0 ? seq : null }
  }
}
