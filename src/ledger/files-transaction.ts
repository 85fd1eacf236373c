/**
 * A files transaction: the DatArchive semantics (Beaker's) over a FilesView, with every change held in
 * memory until `commit`. A VM call runs inside one transaction, so its changes reach the archive only
 * if the call returns normally, and all in one Hyperbee batch (the same batch boundaries on the host
 * and on every replay, which the files-state digest relies on).
 *
 * Rules: a file's parent directory must exist; mkdir of an existing path fails; unlink only removes
 * files; rmdir only removes directories, and non-empty ones only with {recursive: true}; the root
 * cannot be written or removed. Entries carry the call's logged timestamp as their mtime, never the
 * host's clock.
 */
import type Hyperbee from 'hyperbee'
import type Hyperblobs from 'hyperblobs'
import type { BlobId } from 'hyperblobs'
import { fileKey, folderKey } from './drive-format.js'
import { baseName, filesErrors, isWithin, normalizePath, parentOf } from './files-path.js'
import type { FileNode, FilesView, HistoryRecord } from './files-view.js'

type Change = { type: 'file'; data: Uint8Array } | { type: 'directory' } | null

export type FileEncoding = 'utf8' | 'binary' | 'base64' | 'hex'

export interface StatResult extends FileNode {}

/** What an archive holds: the sum of its files' sizes, and its files and folders. */
export interface StorageUsage {
  bytes: number
  entries: number
}

/** The storage quotas a transaction enforces (limits of the same names). */
export interface StorageQuota {
  maxArchiveBytes: number
  maxArchiveEntries: number
  maxFileBytes: number
}

/** Charges host work before it is done (the request's meter); throws when the call is over budget. */
export type WorkCharge = (kind: 'readKiB' | 'writeKiB' | 'lookup' | 'listed' | 'change' | 'record', amount?: number) => void

function noCharge(): void {}

function parseEncoding(opts: unknown, fallback: FileEncoding = 'utf8'): FileEncoding {
  let encoding: unknown = opts
  if (opts !== null && typeof opts === 'object') encoding = (opts as { encoding?: unknown }).encoding
  if (encoding === undefined || encoding === null) return fallback
  if (encoding === 'utf8' || encoding === 'utf-8') return 'utf8'
  if (encoding === 'binary' || encoding === 'base64' || encoding === 'hex') return encoding
  throw filesErrors.invalidEncoding(encoding)
}

export class FilesTransaction {
  private readonly changes = new Map<string, Change>()
  /** How the changes so far move the archive's usage. */
  readonly usageChange: StorageUsage = { bytes: 0, entries: 0 }
  /** The meter of the request being served (set by the host for each request). */
  charge: WorkCharge = noCharge

  constructor(
    private readonly view: FilesView,
    private readonly timestamp: number,
    /** With `quota`: the archive's usage before the transaction, which the quotas bound. */
    private readonly storage: { quota: StorageQuota; usage: StorageUsage } | null = null,
  ) {}

  get changed(): boolean {
    return this.changes.size > 0
  }

  private async node(path: string): Promise<FileNode | null> {
    if (this.changes.has(path)) {
      const c = this.changes.get(path)
      if (!c) return null
      return c.type === 'file'
        ? { type: 'file', size: c.data.byteLength, mtime: this.timestamp }
        : { type: 'directory', size: 0, mtime: this.timestamp }
    }
    return this.view.node(path)
  }

  async stat(rawPath: unknown): Promise<StatResult> {
    const path = normalizePath(rawPath)
    this.charge('lookup')
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    return node
  }

  async readFile(rawPath: unknown, opts?: unknown): Promise<string | Uint8Array> {
    const path = normalizePath(rawPath)
    const encoding = parseEncoding(opts)
    this.charge('lookup')
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'file') throw filesErrors.isADirectory(path)
    this.charge('readKiB', node.size)
    const change = this.changes.get(path)
    const data = change && change.type === 'file' ? change.data : ((await this.view.read(path)) ?? new Uint8Array(0))
    if (encoding === 'binary') return new Uint8Array(data)
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString(encoding)
  }

  async readdir(rawPath: unknown, opts?: unknown): Promise<string[]> {
    const path = normalizePath(rawPath)
    const recursive = !!(opts && typeof opts === 'object' && (opts as { recursive?: unknown }).recursive)
    this.charge('lookup')
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'directory') throw filesErrors.notADirectory(path)
    const names = await this.childNames(path)
    if (!recursive) return names
    const out: string[] = []
    const walk = async (dir: string, prefix: string, entries: string[]): Promise<void> => {
      for (const name of entries) {
        const rel = prefix ? `${prefix}/${name}` : name
        out.push(rel)
        const child = dir === '/' ? `/${name}` : `${dir}/${name}`
        this.charge('lookup')
        const childNode = await this.node(child)
        if (childNode?.type === 'directory') await walk(child, rel, await this.childNames(child))
      }
    }
    await walk(path, '', names)
    return out
  }

  private async childNames(path: string): Promise<string[]> {
    // rmdir marks every descendant removed, so view children not in `changes` are still there.
    const names = new Set(await this.view.children(path, () => this.charge('listed')))
    for (const [changed, c] of this.changes) {
      if (changed === '/' || parentOf(changed) !== path) continue
      if (c === null) names.delete(baseName(changed))
      else names.add(baseName(changed))
    }
    return [...names].sort()
  }

  /** The archive's recorded history (this transaction's own changes are not in it yet). */
  history(opts: { start?: number; end?: number; reverse?: boolean }): Promise<HistoryRecord[]> {
    return this.view.history(opts, () => this.charge('record'))
  }

  async writeFile(rawPath: unknown, data: unknown, opts?: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    if (path === '/') throw filesErrors.rootIsImmutable()
    let bytes: Uint8Array
    if (data instanceof Uint8Array) bytes = data
    else if (typeof data === 'string') {
      const encoding = parseEncoding(opts)
      bytes = new Uint8Array(Buffer.from(data, encoding === 'binary' ? 'latin1' : encoding))
    } else {
      throw filesErrors.invalidPath(path, 'writeFile data must be a string or a Uint8Array')
    }
    this.charge('lookup')
    this.charge('writeKiB', bytes.byteLength)
    if (this.storage && bytes.byteLength > this.storage.quota.maxFileBytes) {
      throw filesErrors.storageLimit(
        'maxFileBytes',
        `${path} would be ${bytes.byteLength} bytes, over the largest file of ${this.storage.quota.maxFileBytes}`,
      )
    }
    await this.assertParentDirectory(path)
    const existing = await this.node(path)
    if (existing?.type === 'directory') throw filesErrors.isADirectory(path)
    // The file (if any) is the archive's own entry when the transaction has not changed it.
    await this.setChange(path, { type: 'file', data: bytes }, existing ? { size: existing.size } : null)
  }

  async mkdir(rawPath: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    if (path === '/') throw filesErrors.alreadyExists(path)
    this.charge('lookup')
    await this.assertParentDirectory(path)
    if (await this.node(path)) throw filesErrors.alreadyExists(path)
    await this.setChange(path, { type: 'directory' }, null)
  }

  async unlink(rawPath: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    this.charge('lookup')
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'file') throw filesErrors.notAFile(path)
    await this.setChange(path, null, { size: node.size })
  }

  async rmdir(rawPath: unknown, opts?: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    if (path === '/') throw filesErrors.rootIsImmutable()
    const recursive = !!(opts && typeof opts === 'object' && (opts as { recursive?: unknown }).recursive)
    this.charge('lookup')
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'directory') throw filesErrors.notADirectory(path)
    const children = await this.childNames(path)
    if (children.length > 0 && !recursive) throw filesErrors.directoryNotEmpty(path)
    for (const { path: descendant, size } of await this.view.descendants(path, () => this.charge('listed'))) {
      await this.setChange(descendant, null, { size })
    }
    for (const changed of [...this.changes.keys()]) {
      if (changed !== path && isWithin(changed, path)) await this.setChange(changed, null)
    }
    await this.setChange(path, null)
  }

  /**
   * Records a change and what it does to the archive's usage; throws StorageLimitExceeded (the change
   * not made) if it would take the archive past a quota. `stored` is the view's entry at `path` when
   * the caller has already read it (used only if the transaction has not changed `path` yet).
   */
  private async setChange(path: string, change: Change, stored?: { size: number } | null): Promise<void> {
    const before = this.changes.has(path)
      ? sizeOf(this.changes.get(path) ?? null)
      : stored !== undefined
        ? stored
        : await this.view.storedEntry(path)
    const after = sizeOf(change)
    const bytes = (after?.size ?? 0) - (before?.size ?? 0)
    const entries = (after ? 1 : 0) - (before ? 1 : 0)
    this.charge('change')
    if (this.storage) {
      const { quota, usage } = this.storage
      if (entries > 0 && usage.entries + this.usageChange.entries + entries > quota.maxArchiveEntries) {
        throw filesErrors.storageLimit(
          'maxArchiveEntries',
          `${path} would make the archive hold more than ${quota.maxArchiveEntries} files and folders`,
        )
      }
      if (bytes > 0 && usage.bytes + this.usageChange.bytes + bytes > quota.maxArchiveBytes) {
        throw filesErrors.storageLimit('maxArchiveBytes', `${path} would make the archive hold more than ${quota.maxArchiveBytes} bytes`)
      }
    }
    this.usageChange.bytes += bytes
    this.usageChange.entries += entries
    this.changes.set(path, change)
  }

  private async assertParentDirectory(path: string): Promise<void> {
    const parent = parentOf(path)
    const node = await this.node(parent)
    if (!node) throw filesErrors.parentNotFound(path)
    if (node.type !== 'directory') throw filesErrors.notADirectory(parent)
  }

  /**
   * Writes every change, in path order: contents in one blobs append, entries in one Hyperbee batch.
   * The same changes written the same way give the same blocks, which the files-state digest relies on.
   * Folders are written in the view's files format (drive-format.ts): format 0 as `files\0` entries,
   * format 1 as `folders\0` records. In format 1 a path's file entry and folder record never coexist:
   * the one a change replaces is deleted first, in the same batch.
   */
  async commit(target: ArchiveTarget): Promise<void> {
    if (this.changes.size === 0) return
    const blobBatch = target.blobs.batch()
    const beeBatch = target.bee.batch()
    let blobsWritten = false
    try {
      for (const path of [...this.changes.keys()].sort()) {
        const change = this.changes.get(path) ?? null
        let blob: BlobId | null = null
        if (change?.type === 'file') {
          blob = await blobBatch.put(Buffer.from(change.data.buffer, change.data.byteOffset, change.data.byteLength))
          blobsWritten = true
        }
        if (this.view.format === 0) await this.stageFormat0(beeBatch, path, change, blob)
        else await this.stageFormat1(beeBatch, path, change, blob)
      }
      // Contents first, so an entry never points at a blob that is not there.
      if (blobsWritten) await blobBatch.flush()
      await beeBatch.flush()
    } catch (err) {
      await beeBatch.close().catch(() => {})
      throw err
    }
  }

  /** Format 0: files and folders are `files\0` entries; a folder's has blob null. */
  private async stageFormat0(batch: BeeBatch, path: string, change: Change, blob: BlobId | null): Promise<void> {
    const key = fileKey(path)
    if (change === null) {
      if (await this.view.hasEntry(path)) await batch.del(key)
    } else if (change.type === 'directory') {
      await batch.put(key, { executable: false, linkname: null, blob: null, metadata: { type: 'directory', mtime: this.timestamp } })
    } else {
      await batch.put(key, { executable: false, linkname: null, blob, metadata: { type: 'file', mtime: this.timestamp } })
    }
  }

  /**
   * Format 1: files are `files\0` entries, folders `folders\0` records. What the change replaces
   * under the other key (a file made a folder, or a folder a file, in one call) is deleted first.
   */
  private async stageFormat1(batch: BeeBatch, path: string, change: Change, blob: BlobId | null): Promise<void> {
    const type = change?.type ?? null
    if (type !== 'file' && (await this.view.hasEntry(path))) await batch.del(fileKey(path))
    if (type !== 'directory' && (await this.view.hasFolderRecord(path))) await batch.del(folderKey(path))
    if (type === 'directory') {
      await batch.put(folderKey(path), {
        executable: false,
        linkname: null,
        blob: null,
        metadata: { type: 'directory', mtime: this.timestamp },
      })
    } else if (type === 'file') {
      await batch.put(fileKey(path), { executable: false, linkname: null, blob, metadata: { type: 'file', mtime: this.timestamp } })
    }
  }
}

type BeeBatch = ReturnType<Hyperbee['batch']>

function sizeOf(change: Change): { size: number } | null {
  if (!change) return null
  return { size: change.type === 'file' ? change.data.byteLength : 0 }
}

/** Where a transaction's changes go: a writable Hyperbee in the Hyperdrive format and its blobs. */
export interface ArchiveTarget {
  bee: Hyperbee
  blobs: Hyperblobs
}
