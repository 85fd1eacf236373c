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
import { fileKey } from './drive-format.js'
import { baseName, filesErrors, isWithin, normalizePath, parentOf } from './files-path.js'
import type { FileNode, FilesView, HistoryRecord } from './files-view.js'

type Change = { type: 'file'; data: Uint8Array } | { type: 'directory' } | null

export type FileEncoding = 'utf8' | 'binary' | 'base64' | 'hex'

export interface StatResult extends FileNode {}

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

  constructor(
    private readonly view: FilesView,
    private readonly timestamp: number,
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
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    return node
  }

  async readFile(rawPath: unknown, opts?: unknown): Promise<string | Uint8Array> {
    const path = normalizePath(rawPath)
    const encoding = parseEncoding(opts)
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'file') throw filesErrors.isADirectory(path)
    const change = this.changes.get(path)
    const data = change && change.type === 'file' ? change.data : ((await this.view.read(path)) ?? new Uint8Array(0))
    if (encoding === 'binary') return new Uint8Array(data)
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString(encoding)
  }

  async readdir(rawPath: unknown, opts?: unknown): Promise<string[]> {
    const path = normalizePath(rawPath)
    const recursive = !!(opts && typeof opts === 'object' && (opts as { recursive?: unknown }).recursive)
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
        const childNode = await this.node(child)
        if (childNode?.type === 'directory') await walk(child, rel, await this.childNames(child))
      }
    }
    await walk(path, '', names)
    return out
  }

  private async childNames(path: string): Promise<string[]> {
    // rmdir marks every descendant removed, so view children not in `changes` are still there.
    const names = new Set(await this.view.children(path))
    for (const [changed, c] of this.changes) {
      if (changed === '/' || parentOf(changed) !== path) continue
      if (c === null) names.delete(baseName(changed))
      else names.add(baseName(changed))
    }
    return [...names].sort()
  }

  /** The archive's recorded history (this transaction's own changes are not in it yet). */
  history(opts: { start?: number; end?: number; reverse?: boolean }): Promise<HistoryRecord[]> {
    return this.view.history(opts)
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
    await this.assertParentDirectory(path)
    const existing = await this.node(path)
    if (existing?.type === 'directory') throw filesErrors.isADirectory(path)
    this.changes.set(path, { type: 'file', data: bytes })
  }

  async mkdir(rawPath: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    if (path === '/') throw filesErrors.alreadyExists(path)
    await this.assertParentDirectory(path)
    if (await this.node(path)) throw filesErrors.alreadyExists(path)
    this.changes.set(path, { type: 'directory' })
  }

  async unlink(rawPath: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'file') throw filesErrors.notAFile(path)
    this.changes.set(path, null)
  }

  async rmdir(rawPath: unknown, opts?: unknown): Promise<void> {
    const path = normalizePath(rawPath)
    if (path === '/') throw filesErrors.rootIsImmutable()
    const recursive = !!(opts && typeof opts === 'object' && (opts as { recursive?: unknown }).recursive)
    const node = await this.node(path)
    if (!node) throw filesErrors.notFound(path)
    if (node.type !== 'directory') throw filesErrors.notADirectory(path)
    const children = await this.childNames(path)
    if (children.length > 0 && !recursive) throw filesErrors.directoryNotEmpty(path)
    for (const descendant of await this.view.descendants(path)) this.changes.set(descendant, null)
    for (const changed of [...this.changes.keys()]) {
      if (changed !== path && isWithin(changed, path)) this.changes.set(changed, null)
    }
    this.changes.set(path, null)
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
   */
  async commit(target: ArchiveTarget): Promise<void> {
    if (this.changes.size === 0) return
    const blobBatch = target.blobs.batch()
    const beeBatch = target.bee.batch()
    let blobsWritten = false
    try {
      for (const path of [...this.changes.keys()].sort()) {
        const change = this.changes.get(path)
        const key = fileKey(path)
        if (change === null || change === undefined) {
          if (await this.view.hasEntry(path)) await beeBatch.del(key)
        } else if (change.type === 'directory') {
          await beeBatch.put(key, { executable: false, linkname: null, blob: null, metadata: { type: 'directory', mtime: this.timestamp } })
        } else {
          const blob = await blobBatch.put(Buffer.from(change.data.buffer, change.data.byteOffset, change.data.byteLength))
          blobsWritten = true
          await beeBatch.put(key, { executable: false, linkname: null, blob, metadata: { type: 'file', mtime: this.timestamp } })
        }
      }
      // Contents first, so an entry never points at a blob that is not there.
      if (blobsWritten) await blobBatch.flush()
      await beeBatch.flush()
    } catch (err) {
      await beeBatch.close().catch(() => {})
      throw err
    }
  }
}

/** Where a transaction's changes go: a writable Hyperbee in the Hyperdrive format and its blobs. */
export interface ArchiveTarget {
  bee: Hyperbee
  blobs: Hyperblobs
}
