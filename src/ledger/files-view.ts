/**
 * A read-only view of a files archive at one version: what a call sees before its own changes.
 * It reads the Hyperdrive format straight from a Hyperbee and its blobs (drive-format.ts), so the same
 * code reads the live archive, a checkout of an older version, or a commit group's uncommitted state.
 *
 * Directories are explicit records — entries of metadata.type 'directory' under `files\0` in files format
 * 0, folder records under `folders\0` in format 1 (drive-format.ts) — and a path with entries below it
 * but no record of its own (a folder implied by file paths, as Hyperdrive has them) also reads as a
 * directory. A view of format 1 also reads format 0's folder entries, so it reads any archive; a view
 * of format 0 reads exactly what it always read (a format 0 log replays byte for byte).
 */
import type Hyperbee from 'hyperbee'
import type Hyperblobs from 'hyperblobs'
import {
  CURRENT_FILES_FORMAT,
  type DriveEntryValue,
  FILES_KEY_PREFIX,
  type FilesFormat,
  FOLDERS_KEY_PREFIX,
  fileKey,
  folderKey,
  folderRange,
} from './drive-format.js'

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
function prefixOf(path: string): string {
  return path === '/' ? '' : path
}

function mtimeOf(value: DriveEntryValue): number {
  const meta = (value.metadata ?? {}) as { mtime?: unknown }
  return typeof meta.mtime === 'number' ? meta.mtime : 0
}

export class FilesView {
  /**
   * `source` null is the empty archive (version 0). `format`: how folders are stored (drive-format.ts);
   * a VM's view has its log's, and a transaction over the view writes that format.
   */
  constructor(
    private readonly source: ArchiveSource | null,
    readonly format: FilesFormat = CURRENT_FILES_FORMAT,
  ) {}

  /** The same archive, read (and written by a transaction over it) in files format `format`. */
  withFormat(format: FilesFormat): FilesView {
    return format === this.format ? this : new FilesView(this.source, format)
  }

  private async entry(path: string): Promise<DriveEntryValue | null> {
    if (!this.source) return null
    const node = await this.source.bee.get<DriveEntryValue>(fileKey(path))
    return node ? node.value : null
  }

  /** Format 1: the folder record at `path`, if mkdir made one. */
  private async folderRecord(path: string): Promise<DriveEntryValue | null> {
    if (!this.source || this.format === 0 || path === '/') return null
    const node = await this.source.bee.get<DriveEntryValue>(folderKey(path))
    return node ? node.value : null
  }

  async node(path: string): Promise<FileNode | null> {
    if (path === '/') return ROOT
    const value = await this.entry(path)
    if (value) {
      const meta = (value.metadata ?? {}) as { type?: string }
      if (meta.type === 'directory') return { type: 'directory', size: 0, mtime: mtimeOf(value) }
      return { type: 'file', size: value.blob?.byteLength ?? 0, mtime: mtimeOf(value) }
    }
    if (!this.source) return null
    const folder = await this.folderRecord(path)
    if (folder) return { type: 'directory', size: 0, mtime: mtimeOf(folder) }
    if (await this.source.bee.peek(folderRange(prefixOf(path)))) return { type: 'directory', size: 0, mtime: 0 }
    if (this.format === 1 && (await this.source.bee.peek(folderRange(prefixOf(path), '/', FOLDERS_KEY_PREFIX)))) {
      return { type: 'directory', size: 0, mtime: 0 }
    }
    return null
  }

  /**
   * The archive's own entry at `path` (its contents' size; 0 for a folder), or null (none, or only an
   * implied directory). Format 1: a file entry, or else a folder record.
   */
  async storedEntry(path: string): Promise<{ size: number } | null> {
    if (path === '/') return null
    const value = await this.entry(path)
    if (value) return { size: value.blob?.byteLength ?? 0 }
    return (await this.folderRecord(path)) ? { size: 0 } : null
  }

  /** True if the archive holds an entry under `files\0` at `path` (a file; in format 0, a file or a folder). */
  async hasEntry(path: string): Promise<boolean> {
    return path !== '/' && (await this.entry(path)) !== null
  }

  /** Format 1: true if the archive holds a folder record at `path`. */
  async hasFolderRecord(path: string): Promise<boolean> {
    return (await this.folderRecord(path)) !== null
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
   * Names of the entries directly inside `path` (format 0: in key order, a name possibly repeated;
   * format 1: the names under `files\0` and under `folders\0`, merged and sorted); `onEach` is called
   * as each is read. Keys are streamed in order; a subfolder's own entries are skipped by starting the
   * next stream after them, so a listing costs one read per name (per range), not one per entry below it.
   */
  async children(path: string, onEach: () => void = noop): Promise<string[]> {
    if (!this.source) return []
    const names = await this.childrenIn(path, FILES_KEY_PREFIX, onEach)
    if (this.format === 0) return names
    // Format 1: the folders mkdir made, and those implied by files' paths, merged.
    const folders = await this.childrenIn(path, FOLDERS_KEY_PREFIX, onEach)
    return [...new Set([...names, ...folders])].sort()
  }

  private async childrenIn(path: string, prefix: string, onEach: () => void): Promise<string[]> {
    if (!this.source) return []
    const folder = prefixOf(path)
    const names: string[] = []
    let prev = '/'
    let heldSince = performance.now()
    for (let more = true; more; ) {
      more = false
      for await (const node of this.source.bee.createReadStream(folderRange(folder, prev, prefix))) {
        onEach()
        const suffix = node.key.slice(prefix.length + folder.length + 1)
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
    for (const prefix of this.format === 0 ? [FILES_KEY_PREFIX] : [FILES_KEY_PREFIX, FOLDERS_KEY_PREFIX]) {
      for await (const node of this.source.bee.createReadStream<DriveEntryValue>(folderRange(prefixOf(path), '/', prefix))) {
        onEach()
        heldSince = await shareLoop(heldSince)
        found.push({ path: node.key.slice(prefix.length), size: node.value?.blob?.byteLength ?? 0 })
      }
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
      const prefix = node.key.startsWith(FILES_KEY_PREFIX)
        ? FILES_KEY_PREFIX
        : this.format === 1 && node.key.startsWith(FOLDERS_KEY_PREFIX)
          ? FOLDERS_KEY_PREFIX
          : null
      if (prefix === null) continue
      records.push({ type: node.type, path: node.key.slice(prefix.length), version: node.seq + 1 })
    }
    return records
  }
}
