/**
 * What the explorer answers about the files archive as of a call: a folder (GET /api/files), a file's
 * contents (GET /api/file), the paths a call changed (GET /api/changes) and what it did to a text file,
 * line by line (GET /api/diff, line-diff.ts). Each reads a checkout of the archive at the version the
 * call's entry records, and each is bounded: so many names, so many bytes, so many lines.
 */
import { HttpError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { filesFormat } from '../ledger/drive-format.js'
import type { DatArchive } from '../ledger/files-archive.js'
import { FilesView } from '../ledger/files-view.js'
import type { InitEntry } from '../ledger/log-entry.js'
import { isoTime } from './entry-rows.js'
import { diffLines, type LineDiff, MAX_DIFF_LINES, splitLines } from './line-diff.js'
import { intParam, pathParam, seqParam } from './request-params.js'

/** The most of a file's contents /api/file returns. */
export const MAX_FILE_BYTES = 256 * 1024
/** The most names a folder listing and a change list return. */
export const MAX_LISTING = 2000

/** One side of a diff: what was at the path (`text` stays on the server). */
interface DiffSide {
  exists: boolean
  type: 'file' | 'directory' | null
  size: number
  /** Its number of lines; null when it is binary or too big to read. */
  lines: number | null
  /** Not UTF-8 text; null when too big to read. */
  binary: boolean | null
  text?: string | null
}

/** What a files view knows of a path (FilesView.node). */
type PathNode = NonNullable<Awaited<ReturnType<FilesView['node']>>>

function decodeText(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return null
  }
}

export class ArchiveViews {
  constructor(
    private readonly callLog: CallLog,
    private readonly archive: DatArchive,
    private readonly init: InitEntry,
  ) {}

  files(params: URLSearchParams): Promise<Record<string, unknown>> {
    return this.atPath(params, 'directory', async ({ seq, path, version, view }) => {
      const names = await view.children(path)
      const children = []
      for (const name of names.slice(0, MAX_LISTING)) {
        const child = path === '/' ? `/${name}` : `${path}/${name}`
        const info = await view.node(child)
        if (info) children.push({ name, path: child, type: info.type, size: info.size, mtime: info.mtime ? isoTime(info.mtime) : null })
      }
      return { seq, version, path, children, truncated: names.length > MAX_LISTING }
    })
  }

  file(params: URLSearchParams): Promise<Record<string, unknown>> {
    return this.atPath(params, 'file', async ({ seq, path, version, view, node }) => {
      const bytes = node.size > MAX_FILE_BYTES * 4 ? null : await view.read(path)
      const shown = bytes ? bytes.subarray(0, MAX_FILE_BYTES) : new Uint8Array(0)
      const text = decodeText(shown)
      return {
        seq,
        version,
        path,
        size: node.size,
        mtime: node.mtime ? isoTime(node.mtime) : null,
        truncated: node.size > shown.byteLength,
        encoding: text === null ? 'base64' : 'utf8',
        content: text ?? Buffer.from(shown).toString('base64'),
      }
    })
  }

  async changes(seq: number): Promise<Record<string, unknown>> {
    seqParam(this.callLog, seq)
    const entry = await this.callLog.get(seq)
    const from = seq > 0 ? (await this.callLog.get(seq - 1)).files.version : 0
    const to = entry.files.version
    if (to > this.archive.version)
      throw new HttpError(409, `the archive has only ${this.archive.version} versions; entry ${seq} records ${to}`)
    const records = to > from ? await this.archive.view().history({ start: from, end: to }) : []
    const shown = records.slice(0, MAX_LISTING)
    // What each path is: a file or a folder after the call (or, deleted, before it); null if neither.
    const kinds = new Map<string, 'file' | 'folder' | null>()
    if (shown.length > 0) {
      const after = await this.viewAt(seq)
      const before = seq > 0 ? await this.viewAt(seq - 1) : null
      try {
        for (const { path } of shown) {
          if (kinds.has(path)) continue
          const node = (await after.view.node(path)) ?? (await before?.view.node(path)) ?? null
          kinds.set(path, node ? (node.type === 'directory' ? 'folder' : 'file') : null)
        }
      } finally {
        await after.close()
        await before?.close()
      }
    }
    const changes = shown.map((record) => ({ ...record, kind: kinds.get(record.path) ?? null }))
    return { seq, from, to, changes, truncated: records.length > MAX_LISTING }
  }

  /**
   * What call `seq` did to the file at `path`: the lines it removed and added (a path not there on one
   * side counts as an empty file), or, for a binary or large file or a folder, why there is no line diff.
   */
  async diff(params: URLSearchParams): Promise<Record<string, unknown>> {
    const seq = seqParam(this.callLog, intParam(params, 'seq', this.callLog.length - 1))
    const path = pathParam(params)
    const none: DiffSide = { exists: false, type: null, size: 0, lines: 0, binary: false }
    const [before, after] = await Promise.all([seq > 0 ? this.sideAt(seq - 1, path) : none, this.sideAt(seq, path)])
    const from = seq > 0 ? (await this.callLog.get(seq - 1)).files.version : 0
    const to = (await this.callLog.get(seq)).files.version
    let diff: LineDiff | null = null
    let why: string | null = null
    const sides: [string, DiffSide][] = [
      ['before', before],
      ['after', after],
    ]
    if (before.type !== 'file' && after.type !== 'file') why = `${path} is not a file before or after call ${seq}`
    for (const [when, side] of sides) {
      if (why) break
      if (side.type === 'directory') why = `${path} is a folder ${when} the call`
      else if (side.type === 'file' && side.size > MAX_FILE_BYTES)
        why = `${path} has ${side.size} bytes ${when} the call: line diffs are made for files up to ${MAX_FILE_BYTES / 1024} KiB`
      else if (side.binary) why = `${path} is binary ${when} the call (not UTF-8 text)`
      else if (side.lines !== null && side.lines > MAX_DIFF_LINES)
        why = `${path} has ${side.lines} lines ${when} the call: line diffs are made for files up to ${MAX_DIFF_LINES} lines`
    }
    if (!why) diff = diffLines(before.text ?? '', after.text ?? '')
    const summary = ({ text: _, ...side }: DiffSide) => side
    return { seq, path, from, to, before: summary(before), after: summary(after), diff, why }
  }

  /** A read-only view of the archive at the version entry `seq` records, and that version. */
  private async viewAt(seq: number): Promise<{ view: FilesView; version: number; close: () => Promise<void> }> {
    seqParam(this.callLog, seq)
    const entry = await this.callLog.get(seq)
    const version = entry.files.version
    const format = filesFormat(this.init.filesFormat ?? 0) ?? 0
    if (version === 0) return { view: new FilesView(null, format), version, close: async () => {} }
    if (version > this.archive.version)
      throw new HttpError(409, `the archive has only ${this.archive.version} versions; entry ${seq} records ${version}`)
    const drive = this.archive.drive
    const checkout = drive.db.checkout(version)
    return { view: new FilesView({ bee: checkout, blobs: () => drive.getBlobs() }, format), version, close: () => checkout.close() }
  }

  /** Runs `use` on what is at the query's `path` as of call `seq`, which must be a `type`; 404 if nothing is. */
  private async atPath<T>(
    params: URLSearchParams,
    type: 'file' | 'directory',
    use: (at: { seq: number; path: string; version: number; view: FilesView; node: PathNode }) => Promise<T>,
  ): Promise<T> {
    const seq = intParam(params, 'seq', this.callLog.length - 1)
    const path = pathParam(params)
    const { view, version, close } = await this.viewAt(seq)
    try {
      const node = await view.node(path)
      if (!node) throw new HttpError(404, `nothing at ${path} as of call ${seq}`)
      if (node.type !== type)
        throw new HttpError(400, type === 'file' ? `${path} is a folder: use /api/files` : `${path} is a file: use /api/file`)
      return await use({ seq, path, version, view, node })
    } finally {
      await close()
    }
  }

  /** What is at `path` as of call `seq`, for a diff: nothing, a folder, or a file (its text, or null when binary or too big). */
  private async sideAt(seq: number, path: string): Promise<DiffSide> {
    const { view, close } = await this.viewAt(seq)
    try {
      const node = await view.node(path)
      if (!node) return { exists: false, type: null, size: 0, lines: 0, binary: false }
      if (node.type === 'directory') return { exists: true, type: 'directory', size: 0, lines: 0, binary: false }
      if (node.size > MAX_FILE_BYTES) return { exists: true, type: 'file', size: node.size, lines: null, binary: null }
      const bytes = (await view.read(path)) ?? new Uint8Array(0)
      const text = decodeText(bytes)
      return {
        exists: true,
        type: 'file',
        size: node.size,
        lines: text === null ? null : splitLines(text).length,
        binary: text === null,
        text,
      }
    } finally {
      await close()
    }
  }
}
