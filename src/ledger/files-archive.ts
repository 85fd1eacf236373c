/**
 * The files archive of a VM (exported as DatArchive): a Hyperdrive with Beaker's DatArchive API.
 *
 * Writes through this class go straight to the archive, outside any call: on a VM's own archive
 * that is an out-of-band change, which replay and verification will report. VM scripts write through
 * System.files instead, inside their call's transaction.
 */

import crypto from 'hypercore-crypto'
import type Hyperdrive from 'hyperdrive'
import { FilesTransaction, type StatResult } from './files-transaction.js'
import { FilesView, type HistoryRecord } from './files-view.js'

/** FilesState is a field of the log's entries, defined with them (log-entry.ts); an archive's state() is one. */
export type { FilesState, HistoryRecord }

import { StateError, storageError } from '../errors.js'
import { assertNoFork, downloadAll, type StallHandler } from './download.js'
import { keyToUrl, parseKeyUrl, toHex } from './keys.js'
import type { FilesState } from './log-entry.js'
import { type RemoteOptions, remoteSource } from './remote-source.js'

/** The tree hash of an empty Hypercore (whatever its key). */
const EMPTY_TREE_HASH = toHex(crypto.tree([]))

export class DatArchive {
  private opened: Hyperdrive | null
  private opening: Promise<void> | null = null
  private readonly remoteKey: Buffer | null
  private readonly remoteOptions: RemoteOptions
  private release: (() => Promise<void>) | null = null
  private onStall: StallHandler | undefined
  private closed = false

  /**
   * A VM's own archive (given its Hyperdrive), or the archive at a `hyper://` URL on other hosts: by
   * default the hosts `options.hosts` knows (HostBook.shared, where an RPCClient notes the host it
   * connected to), or `options.peers`.
   */
  constructor(source: Hyperdrive | string, options: RemoteOptions = {}) {
    if (typeof source === 'string') {
      this.remoteKey = parseKeyUrl(source)
      this.opened = null
    } else {
      this.remoteKey = null
      this.opened = source
    }
    this.remoteOptions = options
  }

  /** The Hyperdrive behind the archive (a remote archive has one after ready()). */
  get drive(): Hyperdrive {
    if (!this.opened) throw new StateError('the archive is not open yet: await archive.ready() (or download()) first')
    return this.opened
  }

  get key(): string {
    return toHex(this.remoteKey ?? this.drive.key)
  }

  get url(): string {
    return keyToUrl(this.remoteKey ?? this.drive.key)
  }

  /** Length of the archive's metadata log: it grows by one for every change. */
  get version(): number {
    return this.drive.core.length
  }

  async ready(): Promise<void> {
    this.assertOpen()
    if (this.opened) {
      await this.opened.ready()
      return
    }
    this.opening ??= (async () => {
      const remote = await remoteSource().openArchive(this.remoteKey as Buffer, this.remoteOptions)
      this.opened = remote.value
      this.release = remote.close
      this.onStall = remote.onStall
    })()
    await this.opening
  }

  /**
   * Fetches the archive's whole history — every block of its metadata and blobs cores, not only the
   * current files — so an auditor can check it at every version the log records. `path` is
   * accepted for Beaker compatibility; the whole archive is fetched either way.
   */
  async download(_path = '/'): Promise<void> {
    await this.guard('downloading', () => this.fetchAll())
  }

  private async fetchAll(): Promise<void> {
    await this.ready()
    const drive = this.drive
    const stallMs = this.remoteOptions.timeout ?? 15_000
    await downloadAll(drive.core, this.url, stallMs, this.onStall)
    if (drive.core.length === 0) return // nothing was ever written: no contents either
    const blobs = await drive.getBlobs()
    await downloadAll(blobs.core, `${this.url} (contents)`, stallMs, this.onStall)
  }

  /**
   * A remote archive: learns of changes its hosts made since, and fetches them (the whole new
   * history, as download does). True if the archive grew. Rejects with ERR_FORKED if a host rewrote
   * history this copy holds. A local archive has nothing to learn: false.
   */
  async update(): Promise<boolean> {
    return this.guard('updating', async () => {
      await this.ready()
      if (!this.remoteKey) return false
      const before = this.drive.core.length
      await this.drive.core.update({ wait: true })
      assertNoFork(this.drive.core, this.url)
      await this.fetchAll()
      return this.drive.core.length > before
    })
  }

  async getInfo(): Promise<{ key: string; url: string; version: number; writable: boolean }> {
    return this.guard('reading its info', async () => {
      await this.drive.ready()
      return { key: this.key, url: this.url, version: this.version, writable: this.drive.writable }
    })
  }

  async stat(path: string): Promise<StatResult> {
    return this.guard(`stat ${path}`, () => this.reader().stat(path))
  }

  async readFile(path: string, opts?: string | { encoding?: string }): Promise<string | Uint8Array> {
    return this.guard(`reading ${path}`, () => this.reader().readFile(path, opts))
  }

  async readdir(path: string, opts?: { recursive?: boolean }): Promise<string[]> {
    return this.guard(`listing ${path}`, () => this.reader().readdir(path, opts))
  }

  async writeFile(path: string, data: string | Uint8Array, opts?: string | { encoding?: string }): Promise<void> {
    await this.write((tx) => tx.writeFile(path, data, opts))
  }

  async mkdir(path: string): Promise<void> {
    await this.write((tx) => tx.mkdir(path))
  }

  async unlink(path: string): Promise<void> {
    await this.write((tx) => tx.unlink(path))
  }

  async rmdir(path: string, opts?: { recursive?: boolean }): Promise<void> {
    await this.write((tx) => tx.rmdir(path, opts))
  }

  /** Every change in the archive's history, oldest first (or newest first with `reverse`). */
  async history(opts: { start?: number; end?: number; reverse?: boolean } = {}): Promise<HistoryRecord[]> {
    return this.guard('reading the history', async () => {
      await this.drive.ready()
      return this.view().history(opts)
    })
  }

  /** A view of the archive as it is now. */
  view(): FilesView {
    this.assertOpen()
    return new FilesView({ bee: this.drive.db, blobs: () => this.drive.getBlobs() })
  }

  /** A read-only view of the archive as it was at `version`. */
  checkout(version: number): DatArchive {
    this.assertOpen()
    return new DatArchive(this.drive.checkout(version))
  }

  /** The archive's state digest now (see FilesState). */
  async state(): Promise<FilesState> {
    this.assertOpen()
    await this.ready()
    // A never-written archive has no header yet, so its blobs core cannot even be located (a
    // remote one would wait for it): its state is that of two empty cores.
    if (this.drive.core.length === 0) return this.stateAt(0, 0)
    const blobs = await this.drive.getBlobs()
    return this.stateAt(this.drive.core.length, blobs.core.length)
  }

  /** The state digest at an earlier point of the archive's history. */
  async stateAt(version: number, blobsLength: number): Promise<FilesState> {
    this.assertOpen()
    const dbHash = toHex(await this.drive.core.treeHash(version))
    if (blobsLength === 0) return { version, dbHash, blobsLength, blobsHash: EMPTY_TREE_HASH }
    const blobs = await this.drive.getBlobs()
    return { version, dbHash, blobsLength, blobsHash: toHex(await blobs.core.treeHash(blobsLength)) }
  }

  async close(): Promise<void> {
    this.closed = true
    await this.opening?.catch(() => {})
    await this.opened?.close()
    await this.release?.()
  }

  /** Whether the archive, or the store under it (a closed VM's), was closed. */
  private get isClosed(): boolean {
    const drive = this.opened
    return this.closed || (drive !== null && (drive.core.closing !== null || drive.core.closed))
  }

  /** Using a closed archive is a StateError (ERR_INVALID_STATE), not Hypercore's bare SESSION_CLOSED. */
  private assertOpen(): void {
    if (this.isClosed) throw new StateError(`the files archive ${this.url} is closed; open it again to use it`)
  }

  private reader(): FilesTransaction {
    return new FilesTransaction(this.view(), Date.now())
  }

  private async write(change: (tx: FilesTransaction) => Promise<void>): Promise<void> {
    await this.guard('writing', async () => {
      await this.drive.ready()
      // Refused before anything is staged: a copy fetched from its hosts cannot be written.
      if (!this.drive.writable)
        throw new StateError(`the files archive ${this.url} is a read-only copy: only the host that holds its key writes to it`)
      const tx = new FilesTransaction(this.view(), Date.now())
      await change(tx)
      await tx.commit({ bee: this.drive.db, blobs: await this.drive.getBlobs() })
    })
  }

  /**
   * Runs one operation of the archive's API: a closed archive is a StateError, and the storage's
   * own errors (Hypercore's timeouts, closed or read-only cores) come out as LibVMS errors.
   */
  private async guard<T>(what: string, operation: () => Promise<T>): Promise<T> {
    this.assertOpen()
    try {
      return await operation()
    } catch (err) {
      throw storageError(err, `${what} in the files archive ${this.url}`)
    }
  }
}
