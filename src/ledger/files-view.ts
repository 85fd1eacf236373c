/**
 * A read-only view of a files archive at one version: what a call sees before its own changes.
 * It reads the Hyperdrive format straight from a Hyperbee and its blobs (drive-format.ts), so the same
 * code reads the live archive, a checkout of an older version, or a commit group's uncommitted state.
 *
 * Directories are explicit entries (metadata.type 'directory'); a path with entries below it but no
 * entry of its own (written by another Hyperdrive tool) also reads as a directory.
 */
import type Hyperbee from 'hyperbee'
import type Hyperblobs from 'hyperblobs'
import { type DriveEntryValue, FILES_KEY_PREFIX, fileKey, folderRange } from './drive-format.js'

export interface FileNode {
  type: 'file' | 'directory'
  size: number
  /** Milliseconds since the epoch: the logged timestamp of the call that wrote it. */
  mtime: number
}

export interface HistoryRecord {
  type: 'put' | 'del'
  path: string
  /** The archive version right after this change. */
  version: number
}

/** Where a view reads from: a Hyperbee in the Hyperdrive format, and the blobs its entries point to. */
export interface ArchiveSource {
  bee: Hyperbee
  blobs: () => Promise<Hyperblobs>
}

function noop(): void {}

/** A long listing answered from caches never lets the event loop turn by itself: give it a turn every 2 ms. */
async function shareLoop(heldSince: number): Promise<number> {
  if (performance.now() - heldSince <= 2) return heldSince
  await new Promise<void>((resolve) => setImmediate(resolve))
  return performance.now()
}

const ROOT: FileNode = { type: 'directory', size: 0, mtime: 0 }

/** `folder` as the key prefix form Hyperdrive uses: '' for the root, '/a/b' otherwise. */
function folderKey(path: string): string {
  return path === '/' ? '' : path
}

export class FilesView {
  /** `source` null is the empty archive (version 0). */
  constructor(private readonly source: ArchiveSource | null) {}

  private async entry(path: string): Promise<DriveEntryValue | null> {
    if (!this.source) return null
    const node = await this.source.bee.get<DriveEntryValue>(fileKey(path))
    return node ? node.value : null
  }

  async node(path: string): Promise<FileNode | null> {
    if (path === '/') return ROOT
    const value = await this.entry(path)
    if (value) {
      const meta = (value.metadata ?? {}) as { type?: string; mtime?: number }
      const mtime = typeof meta.mtime === 'number' ? meta.mtime : 0
      if (meta.type === 'directory') return { type: 'directory', size: 0, mtime }
      return { type: 'file', size: value.blob?.byteLength ?? 0, mtime }
    }
    if (this.source && (await this.source.bee.peek(folderRange(folderKey(path))))) return { type: 'directory', size: 0, mtime: 0 }
    return null
  }

  /** The archive's own entry at `path` (its contents' size; 0 for a folder), or null (none, or only an implied directory). */
  async storedEntry(path: string): Promise<{ size: number } | null> {
    if (path === '/') return null
    const value = await this.entry(path)
    return value ? { size: value.blob?.byteLength ?? 0 } : null
  }

  /** True if the archive holds an entry of its own at `path` (not only an implied directory). */
  async hasEntry(path: string): Promise<boolean> {
    return path !== '/' && (await this.entry(path)) !== null
  }

  async read(path: string): Promise<Uint8Array | null> {
    const value = await this.entry(path)
    if (!value || !this.source) return null
    if (!value.blob || value.blob.byteLength === 0) return new Uint8Array(0)
    const blobs = await this.source.blobs()
    const data = await blobs.get(value.blob)
    return data ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null
  }

  /**
   * Names of the entries directly inside `path`, in key order; `onEach` is called as each is read.
   * Keys are streamed in order; a subfolder's own entries are skipped by starting the next stream
   * after them, so a listing costs one read per name, not one per entry below it.
   */
  async children(path: string, onEach: () => void = noop): Promise<string[]> {
    if (!this.source) return []
    const folder = folderKey(path)
    const names: string[] = []
    let prev = '/'
    let heldSince = performance.now()
    for (let more = true; more; ) {
      more = false
      for await (const node of this.source.bee.createReadStream(folderRange(folder, prev))) {
        onEach()
        const suffix = node.key.slice(FILES_KEY_PREFIX.length + folder.length + 1)
        const slash = suffix.indexOf('/')
        const name = slash === -1 ? suffix : suffix.slice(0, slash)
        if (names[names.length - 1] !== name) names.push(name)
        heldSince = await shareLoop(heldSince)
        if (slash !== -1) {
          // Skip the rest of `name`'s subtree: '0' sorts right after '/'.
          prev = `/${name}0`
          more = true
          break
        }
      }
    }
    return names
  }

  /** Every entry below `path` (its full path, and its contents' size); `onEach` is called as each is read. */
  async descendants(path: string, onEach: () => void = noop): Promise<{ path: string; size: number }[]> {
    if (!this.source) return []
    const found: { path: string; size: number }[] = []
    let heldSince = performance.now()
    for await (const node of this.source.bee.createReadStream<DriveEntryValue>(folderRange(folderKey(path)))) {
      onEach()
      heldSince = await shareLoop(heldSince)
      found.push({ path: node.key.slice(FILES_KEY_PREFIX.length), size: node.value?.blob?.byteLength ?? 0 })
    }
    return found
  }

  /** Changes recorded in the archive's history, oldest first (or newest first with `reverse`). */
  async history(opts: { start?: number; end?: number; reverse?: boolean } = {}, onEach: () => void = noop): Promise<HistoryRecord[]> {
    if (!this.source) return []
    const range: { gte?: number; lt?: number; reverse?: boolean } = { reverse: !!opts.reverse }
    if (opts.start !== undefined) range.gte = opts.start
    if (opts.end !== undefined) range.lt = opts.end
    const records: HistoryRecord[] = []
    let heldSince = performance.now()
    for await (const node of this.source.bee.createHistoryStream(range)) {
      onEach()
      heldSince = await shareLoop(heldSince)
      if (!node.key.startsWith(FILES_KEY_PREFIX)) continue
      records.push({ type: node.type, path: node.key.slice(FILES_KEY_PREFIX.length), version: node.seq + 1 })
    }
    return records
  }
}
