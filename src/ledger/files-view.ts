/**
 * A read-only view of a files archive at one version: what a call sees before its own changes.
 * Directories are explicit entries (metadata.type 'directory'); a path with entries below it but no
 * entry of its own (written by another Hyperdrive tool) also reads as a directory.
 */
import type Hyperdrive from 'hyperdrive'

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

/** Hyperdrive keeps file entries under this Hyperbee key prefix. */
const FILES_PREFIX = 'files\u0000'

const ROOT: FileNode = { type: 'directory', size: 0, mtime: 0 }

export class FilesView {
  /** `drive` null is the empty archive (version 0). */
  constructor(private readonly drive: Hyperdrive | null) {}

  async node(path: string): Promise<FileNode | null> {
    if (path === '/') return ROOT
    if (!this.drive) return null
    const entry = await this.drive.entry(path)
    if (entry) {
      const meta = (entry.value.metadata ?? {}) as { type?: string; mtime?: number }
      const mtime = typeof meta.mtime === 'number' ? meta.mtime : 0
      if (meta.type === 'directory') return { type: 'directory', size: 0, mtime }
      return { type: 'file', size: entry.value.blob?.byteLength ?? 0, mtime }
    }
    for await (const _ of this.drive.readdir(path)) return { type: 'directory', size: 0, mtime: 0 }
    return null
  }

  /** True if the archive holds an entry of its own at `path` (not only an implied directory). */
  async hasEntry(path: string): Promise<boolean> {
    if (!this.drive || path === '/') return false
    return (await this.drive.entry(path)) !== null
  }

  async read(path: string): Promise<Uint8Array | null> {
    if (!this.drive) return null
    const data = await this.drive.get(path)
    return data ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null
  }

  /** Names of the entries directly inside `path`. */
  async children(path: string): Promise<string[]> {
    if (!this.drive) return []
    const names: string[] = []
    for await (const name of this.drive.readdir(path)) names.push(name)
    return names
  }

  /** Changes recorded in the archive's history, oldest first (or newest first with `reverse`). */
  async history(opts: { start?: number; end?: number; reverse?: boolean } = {}): Promise<HistoryRecord[]> {
    if (!this.drive) return []
    const range: { gte?: number; lt?: number; reverse?: boolean } = { reverse: !!opts.reverse }
    if (opts.start !== undefined) range.gte = opts.start
    if (opts.end !== undefined) range.lt = opts.end
    const records: HistoryRecord[] = []
    for await (const node of this.drive.db.createHistoryStream(range)) {
      if (!node.key.startsWith(FILES_PREFIX)) continue
      records.push({ type: node.type, path: node.key.slice(FILES_PREFIX.length), version: node.seq + 1 })
    }
    return records
  }

  /** Full paths of every entry below `path`. */
  async descendants(path: string): Promise<string[]> {
    if (!this.drive) return []
    const paths: string[] = []
    for await (const entry of this.drive.list(path, { recursive: true })) {
      if (entry.key !== path) paths.push(entry.key)
    }
    return paths
  }
}
