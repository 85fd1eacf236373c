/**
 * CallLog: the VM's append-only, signed log of calls — a Hypercore of JSON entries (log-entry.ts).
 * Only the host holding the key can append; every reader can check every block against it.
 */
import { EventEmitter } from 'node:events'
import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import { FetchError, StateError, storageError } from '../errors.js'
import { counted } from '../wording.js'
import { blocksWithin } from './block-sizes.js'
import { openLogStorage } from './data-dir.js'
import { assertNoFork } from './download.js'
import { keyToUrl, parseKeyUrl, toHex } from './keys.js'
import { decodeEntry, type LogEntry } from './log-entry.js'
import { RecentTree } from './recent-tree.js'
import { type RemoteOptions, remoteSource } from './remote-source.js'

const CALL_LOG_CORE_NAME = 'call-log'

/**
 * The bytes of blocks a reader of a log reads together, and reads ahead of its consumer: reads are
 * sized in bytes, never in entries alone, so a log of big entries costs its readers no more memory
 * than one of small ones (two windows at a time, or two entries when one is bigger than a window).
 */
export const READ_WINDOW_BYTES = 8 * 1024 * 1024
/** The most blocks in one window (small entries: one storage round trip for this many). */
export const READ_WINDOW_BLOCKS = 256

export interface ReadOptions {
  /** The first seq (default 0). */
  start?: number
  /** Up to but not including this seq (default: the log's length when reading starts). */
  end?: number
  /** The most bytes of blocks read together (default READ_WINDOW_BYTES); at least one block is. */
  windowBytes?: number
}

/** Consecutive blocks of a log, as stored, read together: seqs from `start`, `bytes` in all. */
export interface BlockWindow {
  start: number
  blocks: Buffer[]
  bytes: number
}

/** An entry as read from a log: its seq, and the size of its block (what holding it costs). */
export interface ReadEntry {
  seq: number
  entry: LogEntry
  bytes: number
}

/** What a window's slot holds once its block was handed on. */
const RELEASED = Buffer.alloc(0)

/**
 * Events: 'append' (the log grew: the host appended, or a fetched copy learned of new entries).
 */
export class CallLog extends EventEmitter {
  readonly core: Hypercore<LogEntry>
  /** What closing this log also releases (a store it opened itself, a fetched copy's connections). */
  private readonly release: (() => Promise<void>) | null
  /** The nodes of recent appends, once a receipt was asked for (recent-tree.ts). */
  private recentTree: RecentTree | null = null

  constructor(core: Hypercore<LogEntry>, release: Corestore | (() => Promise<void>) | null = null) {
    super()
    this.core = core
    this.release = typeof release === 'function' ? release : release ? () => release.close() : null
    core.on('append', () => this.emit('append'))
  }

  /**
   * A local copy of the call log at `url`, fetched from the hosts that serve it (`options.peers`, or
   * by default the hosts `options.hosts` knows: HostBook.shared, where an RPCClient notes the host it
   * connected to) and checked block by block against the host's signature. The copy refuses forks.
   * Close it when done.
   */
  static async fetch(url: string, options: RemoteOptions = {}): Promise<CallLog> {
    const remote = await remoteSource().fetchLog(parseKeyUrl(url), options)
    return new CallLog(remote.value, remote.close)
  }

  /**
   * Asks a fetched copy's hosts for the entries they have and it does not; true if it grew, false at
   * once if they have nothing newer (it does not wait for an append: see waitForLength). Rejects with
   * ERR_FORKED if a host rewrote history this copy already holds.
   */
  async update(): Promise<boolean> {
    this.assertOpen()
    const before = this.core.length
    try {
      await this.core.update({ wait: true })
    } catch (err) {
      throw storageError(err, `asking the hosts of ${this.url} for new entries`)
    }
    assertNoFork(this.core, this.url)
    return this.core.length > before
  }

  /**
   * Resolves once the log holds at least `length` entries, or when `signal` aborts. A fetched copy
   * asks its hosts every `pollMs` (default 500) besides listening for appends; rejects if asking
   * fails (a host that rewrote history: ERR_FORKED), and with a StateError if the log is closed
   * before it is that long.
   */
  async waitForLength(length: number, options: { signal?: AbortSignal; pollMs?: number } = {}): Promise<void> {
    const { signal, pollMs = 500 } = options
    while (this.length < length && !signal?.aborted) {
      this.assertOpen()
      let timer: NodeJS.Timeout | undefined
      let wake: () => void = () => {}
      const waited = new Promise<void>((resolve, reject) => {
        wake = resolve
        timer = setTimeout(resolve, pollMs)
        // Woken early only by growth; otherwise the timer paces the asking.
        if (!this.writable) this.update().then((grew) => grew && resolve(), reject)
      })
      this.once('append', wake)
      this.core.once('close', wake)
      signal?.addEventListener('abort', wake, { once: true })
      try {
        await waited
      } finally {
        clearTimeout(timer)
        this.off('append', wake)
        this.core.off('close', wake)
        signal?.removeEventListener('abort', wake)
      }
    }
  }

  /** The call log kept in `store` (a VM's store, or a standalone log's). */
  static fromStore(store: Corestore): CallLog {
    return new CallLog(store.get<LogEntry>({ name: CALL_LOG_CORE_NAME, valueEncoding: 'json' }))
  }

  /** A new, empty, writable log in `dir` (which must be empty or absent). */
  static async create(dir: string): Promise<CallLog> {
    const { store, root } = await openLogStorage(dir, 'create')
    const log = new CallLog(store.get<LogEntry>({ name: CALL_LOG_CORE_NAME, valueEncoding: 'json' }), root)
    await log.ready()
    return log
  }

  /** The log kept in `dir`: a VM's data dir (while no VM has it open) or a dir made by CallLog.create. */
  static async open(dir: string): Promise<CallLog> {
    const { store, root } = await openLogStorage(dir, 'open')
    const log = new CallLog(store.get<LogEntry>({ name: CALL_LOG_CORE_NAME, valueEncoding: 'json' }), root)
    await log.ready()
    return log
  }

  async ready(): Promise<void> {
    await this.core.ready()
  }

  get key(): string {
    return toHex(this.core.key)
  }

  get url(): string {
    return keyToUrl(this.core.key)
  }

  get length(): number {
    return this.core.length
  }

  get writable(): boolean {
    return this.core.writable
  }

  /** Reading or writing a closed log is a StateError (ERR_INVALID_STATE), not Hypercore's bare SESSION_CLOSED. */
  private assertOpen(): void {
    if (this.core.closing || this.core.closed) throw new StateError(`the call log ${this.url} is closed; open it again to read it`)
  }

  /** The entry at `seq`, checked for shape. */
  async get(seq: number, opts: { wait?: boolean; timeout?: number } = {}): Promise<LogEntry> {
    return decodeEntry(await this.block(seq, opts), seq)
  }

  /** The entry at `seq` as stored: the bytes the log's signature covers. */
  async block(seq: number, opts: { wait?: boolean; timeout?: number } = {}): Promise<Buffer> {
    this.assertOpen()
    if (!Number.isSafeInteger(seq) || seq < 0) throw new StateError(`seq must be a non-negative integer, got ${seq}`)
    let block: Buffer | null
    try {
      block = (await this.core.get(seq, { wait: opts.wait ?? true, timeout: opts.timeout, valueEncoding: 'binary' })) as Buffer | null
    } catch (err) {
      throw this.readError(err, seq, opts.timeout)
    }
    if (block === null)
      throw new StateError(`entry ${seq} of ${this.url} is not available (the log has ${counted(this.length, 'entry', 'entries')})`)
    return block
  }

  /** Hypercore's error reading entry `seq`, as a LibVMS error with a code. */
  private readError(err: unknown, seq: number, timeout: number | undefined): unknown {
    const code = (err as { code?: unknown }).code
    if (code === 'REQUEST_TIMEOUT') {
      return new FetchError('ERR_FETCH_TIMEOUT', `entry ${seq} of ${this.url} did not arrive within ${timeout} ms; is a host of it online?`)
    }
    return storageError(err, `reading entry ${seq} of ${this.url}`)
  }

  /** Entries from `start` (default 0) up to but not including `end` (default: the length), all held at once. */
  async list(opts: { start?: number; end?: number } = {}): Promise<LogEntry[]> {
    const out: LogEntry[] = []
    for await (const entry of this.entries(opts)) out.push(entry)
    return out
  }

  /** Iterates entries [start, end) in order, read within a byte budget (see `read`). */
  async *entries(opts: ReadOptions = {}): AsyncGenerator<LogEntry> {
    for await (const { entry } of this.read(opts)) yield entry
  }

  /**
   * Iterates entries [start, end) in order, each with its seq and its block's size, decoded one at a
   * time as the consumer asks: a block is let go once its entry is decoded. See `windows` for what is
   * read ahead.
   */
  async *read(opts: ReadOptions = {}): AsyncGenerator<ReadEntry> {
    for await (const window of this.windows(opts)) {
      const { start, blocks } = window
      for (let i = 0; i < blocks.length; i++) {
        const block = blocks[i]
        blocks[i] = RELEASED
        yield { seq: start + i, entry: decodeEntry(block, start + i), bytes: block.byteLength }
      }
    }
  }

  /**
   * Iterates blocks [start, end) as stored, in windows: consecutive blocks whose sizes (read from the
   * log's Merkle tree before the blocks, block-sizes.ts) sum to at most `windowBytes` (default
   * READ_WINDOW_BYTES), and at most READ_WINDOW_BLOCKS of them; a block bigger than that is a window
   * of its own, as is one whose size is not on this machine. A window's blocks are read together (one
   * storage round trip), the next window while the current one is consumed: so a reader holds at most
   * two windows — 2 × windowBytes, or two entries when entries are bigger — whatever the entries hold.
   */
  async *windows(opts: ReadOptions = {}): AsyncGenerator<BlockWindow> {
    this.assertOpen()
    const start = Math.max(0, opts.start ?? 0)
    const end = Math.min(this.length, opts.end ?? this.length)
    const windowBytes = Math.max(1, opts.windowBytes ?? READ_WINDOW_BYTES)
    // A snapshot reads without the live session's bookkeeping, and cannot change under us.
    const snapshot = this.core.snapshot({ valueEncoding: 'binary' }) as unknown as Hypercore<Buffer>
    const readWindow = async (from: number): Promise<BlockWindow> => {
      let count: number
      try {
        count = await blocksWithin(snapshot as Hypercore<unknown>, from, end, windowBytes, READ_WINDOW_BLOCKS)
      } catch (err) {
        this.assertOpen() // closed meanwhile: its storage says so in its own words
        throw storageError(err, `reading the sizes of entries from ${from} of ${this.url}`)
      }
      const blocks = await Promise.all(Array.from({ length: count }, (_, i) => snapshot.get(from + i))).catch((err) => {
        throw this.readError(err, from, undefined)
      })
      let bytes = 0
      for (const [i, block] of blocks.entries()) {
        if (block === null) throw new StateError(`entry ${from + i} of ${this.url} is not available`)
        bytes += block.byteLength
      }
      return { start: from, blocks: blocks as Buffer[], bytes }
    }
    try {
      await snapshot.ready().catch((err) => {
        throw storageError(err, `reading entries from ${start} of ${this.url}`)
      })
      let pending = start < end ? readWindow(start) : null
      while (pending) {
        const window = await pending
        const next = window.start + window.blocks.length
        pending = next < end ? readWindow(next) : null
        pending?.catch(() => {}) // observed when its turn comes
        yield window
      }
    } finally {
      await snapshot.close()
    }
  }

  /**
   * Appends one entry or several in one signed batch; resolves with the new length. `onStored` is
   * called as soon as they are in storage: the core grew ('append'). Hypercore's append then stores a
   * hint it also wrote with the batch (the contiguous length), which an answer need not wait for.
   */
  async append(entries: LogEntry | LogEntry[], onStored?: () => void): Promise<number> {
    this.assertOpen()
    const core = this.core
    const list = Array.isArray(entries) ? entries : [entries]
    const target = core.length + list.length
    const noted = this.noteAppend(list)
    const grew = () => {
      if (core.length < target) return
      noted()
      onStored?.()
    }
    // Only a caller waiting for storage, or receipts from memory, need the moment the core grew.
    if (onStored || this.recentTree) core.once('append', grew)
    try {
      const { length } = await core.append(entries)
      noted()
      return length
    } catch (err) {
      // A read-only copy, or a log closed meanwhile, is the caller's mistake: a LibVMS error. A
      // failing disk stays as it is (a VM takes it for a host fault).
      const code = (err as { code?: unknown }).code
      if (code === 'SESSION_NOT_WRITABLE' || code === 'SESSION_CLOSED') throw storageError(err, `appending to the call log ${this.url}`)
      throw err
    } finally {
      core.off('append', grew)
    }
  }

  /**
   * Takes note of entries about to be appended (here, or through a commit group's atomic session),
   * for receipts built from memory (recent-tree.ts); call the function returned once they are stored.
   * A no-op until a receipt was asked for.
   */
  noteAppend(entries: LogEntry[]): () => void {
    const tree = this.recentTree
    if (!tree) return () => {}
    const before = tree.rootsNow()
    let done = false
    return () => {
      if (done) return
      done = true
      tree.appended(
        before,
        entries.map((e) => Buffer.from(JSON.stringify(e))),
      )
    }
  }

  /** Hypercore's proof of block `seq` in the log as it is now, built from memory; null when not at hand. */
  recentProof(seq: number, block: Buffer): Buffer | null {
    this.recentTree ??= new RecentTree(this.core as unknown as Hypercore)
    return this.recentTree.proof(seq, block)
  }

  async close(): Promise<void> {
    await this.core.close()
    if (this.release) await this.release()
  }
}
