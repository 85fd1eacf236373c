/**
 * The explorer: a local HTTP server showing one VM's call log and files archive in a browser page
 * (src/explorer/page/), with a small JSON API under /api/. Everything it shows comes from the log and
 * the archive it was given, which are hostile input: the API returns them as JSON, and the page only
 * ever puts them in the document as text.
 *
 *   GET  /api/vm                  the VM: title, keys, auth mode, engine, limits, script, length
 *   GET  /api/entries?start&limit&method&caller&failed=1
 *                                 a page of entries, newest first from `start` (default: the newest)
 *   GET  /api/entries/:seq        one entry in full
 *   GET  /api/files?seq&path      a folder of the archive as of call `seq`
 *   GET  /api/file?seq&path       a file's contents as of call `seq` (text or base64, bounded)
 *   GET  /api/changes?seq         the paths call `seq` put or deleted
 *   GET  /api/diff?seq&path       the lines call `seq` removed from and added to a text file (bounded)
 *   GET  /api/events              server-sent events: `entry` (the log grew), `audit` (progress, verdict)
 *   GET  /api/audit               the audit's state
 *   POST /api/audit               starts an audit (Verifier.verify into a temp replay dir); one at a time
 *   GET  /api/proof               the last audit's execution proof (nodevms check-proof checks it), when it made one
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Verifier } from '../audit/verifier.js'
import { CallAuthenticator } from '../auth/call-auth.js'
import { parseCallPayload } from '../auth/signed-call.js'
import { clippedJSON, clippedList } from '../codec/clipped-json.js'
import { AuthError, DivergenceError, LogFormatError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { filesFormat } from '../ledger/drive-format.js'
import type { DatArchive } from '../ledger/files-archive.js'
import { normalizePath } from '../ledger/files-path.js'
import { FilesView } from '../ledger/files-view.js'
import type { InitEntry, LogEntry } from '../ledger/log-entry.js'
import type { VMLimits } from '../sandbox/limits.js'
import { type EntryFilter, EntryIndex, INIT_METHOD } from './entry-index.js'
import { diffLines, type LineDiff, MAX_DIFF_LINES, splitLines } from './line-diff.js'

export interface ExplorerOptions {
  callLog: CallLog
  filesArchive: DatArchive
  /** What was opened (a URL or a dir), shown on the page. */
  label: string
  /** The most of each limit an audited log may claim. */
  maxLimits?: Partial<VMLimits>
}

/** The largest page of entries. */
export const MAX_PAGE = 500
/** The most of a file's contents /api/file returns. */
export const MAX_FILE_BYTES = 256 * 1024
/** The most names a folder listing and a change list return. */
export const MAX_LISTING = 2000
/** A value shown in a table row is cut to this many characters. */
const ROW_TEXT = 300

const PAGE_DIR = fileURLToPath(new URL('./page/', import.meta.url))
const PAGE_FILES: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/explorer.css': 'explorer.css',
  '/explorer.js': 'explorer.js',
}
const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
}
/** Nothing but this server: no outside script, style, font, frame or connection. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

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

export type AuditState =
  | { state: 'idle' }
  | { state: 'running'; done: number; total: number; rate: number; startedAt: number }
  | { state: 'done'; verdict: AuditVerdict }

export type AuditVerdict =
  | { verified: true; entries: number; calls: number; failedCalls: number; filesVersion: number; ms: number }
  | { verified: false; divergence: Record<string, unknown>; ms: number }
  | { verified: null; error: { name: string; code: string; message: string }; ms: number }

/** One entry as a table row: values as (cut) text. */
export interface EntryRow {
  seq: number
  type: 'init' | 'call'
  time: string
  caller: string | null
  signed: boolean
  method: string
  args: string
  result: string | null
  error: { name: string; message: string } | null
  cost: number
  filesVersion: number
}

function cut(text: string, max = ROW_TEXT): string {
  return text.length > max ? `${text.slice(0, max)}…` : text
}

function isoTime(ms: number): string {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString()
}

export function rowOf(seq: number, entry: LogEntry): EntryRow {
  if (entry.type === 'init') {
    return {
      seq,
      type: 'init',
      time: isoTime(entry.timestamp),
      caller: null,
      signed: false,
      method: INIT_METHOD,
      args: clippedJSON(entry.title, ROW_TEXT),
      result: entry.result === undefined ? null : clippedJSON(entry.result, ROW_TEXT),
      error: null,
      cost: entry.cost,
      filesVersion: entry.files.version,
    }
  }
  return {
    seq,
    type: 'call',
    time: isoTime(entry.timestamp),
    caller: entry.caller,
    signed: !!entry.signed,
    method: entry.method,
    args: clippedList(entry.args, ROW_TEXT),
    result: entry.error ? null : clippedJSON(entry.result, ROW_TEXT),
    error: entry.error ? { name: cut(String(entry.error.name), 100), message: cut(String(entry.error.message)) } : null,
    cost: entry.cost,
    filesVersion: entry.files.version,
  }
}

function intParam(params: URLSearchParams, name: string, fallback: number): number {
  const raw = params.get(name)
  if (raw === null || raw === '') return fallback
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new HttpError(400, `${name} must be a whole number`)
  return Number(raw)
}

function pathParam(params: URLSearchParams): string {
  try {
    return normalizePath(params.get('path') ?? '/')
  } catch (error) {
    throw new HttpError(400, (error as Error).message)
  }
}

function decodeText(bytes: Uint8Array): string | null {
  if (bytes.includes(0)) return null
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    return null
  }
}

export class ExplorerServer {
  private readonly callLog: CallLog
  private readonly archive: DatArchive
  private readonly label: string
  private readonly maxLimits: Partial<VMLimits> | undefined
  private readonly http: Server
  private readonly index = new EntryIndex()
  private indexing: Promise<void> | null = null
  private indexError: Error | null = null
  private readonly indexWaiters: { length: number; wake: () => void }[] = []
  private readonly clients = new Set<ServerResponse>()
  private readonly stop = new AbortController()
  private init: InitEntry | null = null
  private audit: AuditState = { state: 'idle' }
  private auditRun: Promise<void> | null = null
  /** The last audit's execution proof (JSON text), when its divergence is in the log's entries. */
  private proof: string | null = null
  private following: Promise<void> | null = null
  private host = '127.0.0.1'
  private port = 0
  private readonly onAppend = () => this.indexMore()

  constructor(options: ExplorerOptions) {
    this.callLog = options.callLog
    this.archive = options.filesArchive
    this.label = options.label
    this.maxLimits = options.maxLimits
    this.http = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => this.fail(res, error))
    })
  }

  /** Listens on `host` (default 127.0.0.1) and `port` (default 0: a free one); resolves with the page's URL. */
  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    await this.callLog.ready()
    await this.archive.ready()
    const init = await this.callLog.get(0)
    if (init.type !== 'init') throw new LogFormatError('entry 0 is not an init entry', 0)
    this.init = init
    this.initialLength = this.callLog.length
    this.callLog.on('append', this.onAppend)
    this.indexMore()
    if (!this.callLog.writable) this.following = this.follow()
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject)
      this.http.listen(port, host, () => {
        this.http.off('error', reject)
        resolve()
      })
    })
    const address = this.http.address() as AddressInfo
    this.host = host
    this.port = address.port
    return this.url
  }

  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host
    return `http://${host}:${this.port}/`
  }

  /** Ends the event streams and the server, stops following the log and cancels a running audit. */
  async close(): Promise<void> {
    this.stop.abort()
    this.callLog.off('append', this.onAppend)
    for (const client of this.clients) client.end()
    this.clients.clear()
    for (const waiter of this.indexWaiters.splice(0)) waiter.wake()
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve())
      this.http.closeAllConnections()
    })
    await this.auditRun?.catch(() => {})
    await this.following?.catch(() => {})
    await this.indexing?.catch(() => {})
  }

  // ---- the index ----

  /** Indexes the entries not indexed yet, in chunks; one pass at a time, another queued if the log grew meanwhile. */
  private indexMore(): void {
    if (this.indexing || this.stop.signal.aborted) return
    const start = this.index.length
    const end = this.callLog.length
    if (start >= end) return
    this.indexing = (async () => {
      const rows: EntryRow[] = []
      let seq = start
      // Read within the log's byte budget, one entry decoded at a time and only its row kept.
      for await (const entry of this.callLog.entries({ start, end })) {
        if (this.stop.signal.aborted) break
        this.index.add(entry)
        if (this.clients.size > 0 && this.initialLength !== null && seq >= this.initialLength) rows.push(rowOf(seq, entry))
        seq++
        this.wakeWaiters()
      }
      if (rows.length > 0) this.broadcast('entry', { length: this.index.length, rows: rows.slice(-MAX_PAGE) })
    })()
      .catch((error: unknown) => {
        this.indexError = error as Error
        for (const waiter of this.indexWaiters.splice(0)) waiter.wake()
      })
      .finally(() => {
        this.indexing = null
        if (!this.indexError && this.index.length < this.callLog.length) this.indexMore()
      })
  }

  /** The log's length when the explorer started: entries past it are announced as live rows. */
  private initialLength: number | null = null

  private wakeWaiters(): void {
    for (let i = this.indexWaiters.length - 1; i >= 0; i--) {
      const waiter = this.indexWaiters[i]
      if (this.index.length >= waiter.length) {
        this.indexWaiters.splice(i, 1)
        waiter.wake()
      }
    }
  }

  /** Resolves once the index covers seqs [0, length). */
  private async indexed(length: number): Promise<void> {
    if (this.indexError) throw this.indexError
    if (this.index.length >= length) return
    await new Promise<void>((wake) => this.indexWaiters.push({ length, wake }))
    if (this.indexError) throw this.indexError
  }

  /** A fetched copy learns of new entries by asking its hosts: do so until closed. */
  private async follow(): Promise<void> {
    while (!this.stop.signal.aborted) {
      try {
        await this.callLog.waitForLength(this.callLog.length + 1, { signal: this.stop.signal, pollMs: 1000 })
      } catch {
        // A host that went away: wait a moment and ask again.
        await new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())
      }
    }
  }

  // ---- requests ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only pages of this server talk to it: a page on another site, or a DNS name rebound to 127.0.0.1,
    // sends another Host.
    if (!this.hostAllowed(req.headers.host)) throw new HttpError(403, 'this explorer answers requests for its IP address or localhost only')
    const url = new URL(req.url ?? '/', this.url)
    const path = url.pathname
    if (req.method === 'POST' && path === '/api/audit') return this.startAudit(req, res)
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed here`)
    if (!path.startsWith('/api/')) return this.servePage(path, res)
    const params = url.searchParams
    if (path === '/api/vm') return this.json(res, await this.vmInfo())
    if (path === '/api/entries') return this.json(res, await this.entries(params))
    const one = /^\/api\/entries\/(\d+)$/.exec(path)
    if (one) return this.json(res, await this.entry(Number(one[1])))
    if (path === '/api/files') return this.json(res, await this.files(params))
    if (path === '/api/file') return this.json(res, await this.file(params))
    if (path === '/api/changes') return this.json(res, await this.changes(intParam(params, 'seq', 0)))
    if (path === '/api/diff') return this.json(res, await this.diff(params))
    if (path === '/api/audit') return this.json(res, this.audit)
    if (path === '/api/proof') return this.sendProof(res)
    if (path === '/api/events') return this.events(req, res)
    throw new HttpError(404, `no such API: ${path}`)
  }

  /** A Host header naming this port on an IP address or localhost (never a DNS name, which could be rebound). */
  private hostAllowed(header: string | undefined): boolean {
    if (!header) return false
    let url: URL
    try {
      url = new URL(`http://${header}/`)
    } catch {
      return false
    }
    if (url.port !== String(this.port)) return false
    const name = url.hostname
    return name === 'localhost' || /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.startsWith('[')
  }

  private async servePage(path: string, res: ServerResponse): Promise<void> {
    const name = PAGE_FILES[path]
    if (!name) throw new HttpError(404, 'not found')
    const body = await readFile(join(PAGE_DIR, name))
    res.writeHead(200, {
      'content-type': TYPES[name.slice(name.lastIndexOf('.') + 1)],
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
    })
    res.end(body)
  }

  private json(res: ServerResponse, value: unknown, status = 200): void {
    const body = JSON.stringify(value)
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    })
    res.end(body)
  }

  private fail(res: ServerResponse, error: unknown): void {
    if (res.headersSent) {
      res.destroy()
      return
    }
    const status = error instanceof HttpError ? error.status : 500
    const e = error as { name?: string; code?: string; message?: string }
    this.json(res, { error: { name: e?.name ?? 'Error', code: e?.code ?? null, message: e?.message ?? String(error) } }, status)
  }

  private seqParam(seq: number): number {
    if (seq >= this.callLog.length) throw new HttpError(404, `the log has no entry ${seq} (it has ${this.callLog.length})`)
    return seq
  }

  private async vmInfo(): Promise<Record<string, unknown>> {
    const init = this.init as InitEntry
    const last = await this.callLog.get(this.callLog.length - 1)
    return {
      target: this.label,
      title: init.title,
      callLogKey: this.callLog.key,
      callLogUrl: this.callLog.url,
      filesKey: init.filesArchiveKey,
      auth: init.auth,
      factory: !!init.factory,
      engine: init.engine,
      limits: init.limits,
      costSchedule: init.costSchedule ?? 0,
      filesFormat: init.filesFormat ?? 0,
      exports: init.exports,
      created: isoTime(init.timestamp),
      code: init.code,
      length: this.callLog.length,
      writable: this.callLog.writable,
      filesVersion: this.archive.version,
      loggedFilesVersion: last.files.version,
      names: this.index.names,
      indexed: this.index.length,
    }
  }

  private async entries(params: URLSearchParams): Promise<Record<string, unknown>> {
    const length = this.callLog.length
    const limit = Math.min(MAX_PAGE, Math.max(1, intParam(params, 'limit', 50)))
    const start = Math.min(length - 1, intParam(params, 'start', length - 1))
    const filter: EntryFilter = {}
    const method = params.get('method')
    const caller = params.get('caller')
    if (method) filter.method = method
    if (caller !== null && caller !== '') filter.caller = caller === '(anonymous)' ? '' : caller
    if (params.get('failed') === '1') filter.failed = true
    const filtered = filter.method !== undefined || filter.caller !== undefined || filter.failed === true
    let seqs: number[]
    let next: number | null
    if (filtered) {
      await this.indexed(start + 1)
      ;({ seqs, next } = this.index.query(filter, start, limit))
    } else {
      const low = Math.max(0, start - limit + 1)
      seqs = Array.from({ length: start - low + 1 }, (_, i) => start - i)
      next = low > 0 ? low - 1 : null
    }
    const rows = await this.rows(seqs)
    return { length, indexed: this.index.length, start, limit, next, rows }
  }

  private async rows(seqs: number[]): Promise<EntryRow[]> {
    if (seqs.length === 0) return []
    // Each entry is cut to its row as soon as it is decoded. Contiguous (newest first): read in windows
    // of the log's byte budget; otherwise one entry at a time.
    const high = seqs[0]
    const low = seqs[seqs.length - 1]
    const rows: EntryRow[] = []
    if (high - low + 1 === seqs.length) {
      for await (const { seq, entry } of this.callLog.read({ start: low, end: high + 1 })) rows.push(rowOf(seq, entry))
      return rows.reverse()
    }
    for (const seq of seqs) rows.push(rowOf(seq, await this.callLog.get(seq)))
    return rows
  }

  private async entry(seq: number): Promise<Record<string, unknown>> {
    this.seqParam(seq)
    const entry = await this.callLog.get(seq)
    const previous = seq > 0 ? (await this.callLog.get(seq - 1)).files.version : 0
    const signer = entry.type === 'call' && entry.signed ? entry.caller : null
    return { seq, row: rowOf(seq, entry), entry, signer, signature: this.signatureOf(entry), previousFilesVersion: previous }
  }

  /**
   * The caller check of one call, as the VM admitted it and as replay checks it (call-auth.ts): in
   * production mode the signature verifies with the caller's key, over a payload for this VM, this
   * method and these arguments. The counter's freshness needs the whole log: the audit checks it.
   * Null for a debug-mode call without a signature (nothing to check) and for the init entry.
   */
  private signatureOf(entry: LogEntry): { ok: boolean; problem: { code: string; message: string } | null; payload: unknown } | null {
    if (entry.type !== 'call') return null
    const { auth: mode, schema } = this.init as InitEntry
    if (mode !== 'production' && entry.signed === undefined) return null
    let problem: { code: string; message: string } | null = null
    try {
      const authenticator = new CallAuthenticator(mode, this.callLog.key, schema)
      authenticator.admit(authenticator.loggedCall(entry))
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      problem = { code: error.code, message: error.message }
    }
    let payload: unknown = null
    if (entry.signed) {
      try {
        const { callLog, method, nonce, counter, clientNonce } = parseCallPayload(entry.signed.payload)
        payload = { callLog, method, nonce, counter, ...(clientNonce === undefined ? {} : { clientNonce }) }
      } catch {
        // malformed: `problem` says so
      }
    }
    return { ok: problem === null, problem, payload }
  }

  /** A read-only view of the archive at the version entry `seq` records, and that version. */
  private async viewAt(seq: number): Promise<{ view: FilesView; version: number; close: () => Promise<void> }> {
    this.seqParam(seq)
    const entry = await this.callLog.get(seq)
    const version = entry.files.version
    const format = filesFormat((this.init as InitEntry).filesFormat ?? 0) ?? 0
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

  private files(params: URLSearchParams): Promise<Record<string, unknown>> {
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

  private file(params: URLSearchParams): Promise<Record<string, unknown>> {
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

  private async changes(seq: number): Promise<Record<string, unknown>> {
    this.seqParam(seq)
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

  /**
   * What call `seq` did to the file at `path`: the lines it removed and added (a path not there on one
   * side counts as an empty file), or, for a binary or large file or a folder, why there is no line diff.
   */
  private async diff(params: URLSearchParams): Promise<Record<string, unknown>> {
    const seq = this.seqParam(intParam(params, 'seq', this.callLog.length - 1))
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

  // ---- events ----

  private events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      connection: 'keep-alive',
    })
    res.write(`retry: 2000\n\n`)
    this.clients.add(res)
    res.write(`event: hello\ndata: ${JSON.stringify({ length: this.callLog.length, audit: this.audit })}\n\n`)
    req.on('close', () => this.clients.delete(res))
  }

  private broadcast(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    for (const client of this.clients) client.write(frame)
  }

  // ---- the audit ----

  private sendProof(res: ServerResponse): void {
    if (this.proof === null) throw new HttpError(404, 'no execution proof: the last audit found none to make (run one, or it verified)')
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-disposition': 'attachment; filename="execution-proof.json"',
      'content-length': Buffer.byteLength(this.proof),
    })
    res.end(this.proof)
  }

  private startAudit(req: IncomingMessage, res: ServerResponse): void {
    // A form on another site cannot set this header: only this page starts audits.
    if (req.headers['x-explorer'] !== '1') throw new HttpError(403, 'POST /api/audit needs the header X-Explorer: 1')
    req.resume()
    if (this.audit.state === 'running') {
      this.json(res, { started: false, audit: this.audit }, 409)
      return
    }
    this.auditRun = this.runAudit().finally(() => {
      this.auditRun = null
    })
    this.json(res, { started: true, audit: this.audit }, 202)
  }

  /**
   * The execution proof of a divergent entry, kept for GET /api/proof when it holds (the log's own
   * entries show the lie): its size, or why there is none (a lie in the archive alone).
   */
  private async prove(seq: number): Promise<{ bytes: number; entries: number } | { why: string }> {
    try {
      const { proof, verdict } = await Verifier.proveDivergence(this.callLog, seq, { maxLimits: this.maxLimits })
      if (!verdict.holds) return { why: `the log's entries alone do not show it (${verdict.why})` }
      this.proof = `${JSON.stringify(proof, null, 1)}\n`
      return { bytes: Buffer.byteLength(this.proof), entries: proof.seq + 1 }
    } catch (err) {
      return { why: (err as Error).message }
    }
  }

  private async runAudit(): Promise<void> {
    this.proof = null
    const started = performance.now()
    const running = { state: 'running' as const, done: 0, total: this.callLog.length, rate: 0, startedAt: Date.now() }
    this.audit = running
    this.broadcast('audit', running)
    const replayDir = await mkdtemp(join(tmpdir(), 'nodevms-explore-replay-'))
    let lastSent = 0
    const ms = () => Math.round(performance.now() - started)
    try {
      const report = await Verifier.verify(this.callLog, this.archive, {
        dir: join(replayDir, 'replay'),
        maxLimits: this.maxLimits,
        onProgress: (done, total) => {
          if (this.stop.signal.aborted) throw new Error('the explorer closed: audit cancelled')
          const now = performance.now()
          running.done = done
          running.total = total
          running.rate = done / Math.max(0.001, (now - started) / 1000)
          if (now - lastSent >= 100 || done >= total) {
            lastSent = now
            this.broadcast('audit', running)
          }
        },
      })
      this.audit = { state: 'done', verdict: { verified: true, ...report, ms: ms() } }
    } catch (error) {
      if (error instanceof DivergenceError) {
        const divergence = {
          ...error.toJSON(),
          proof: error.seq === undefined ? { why: 'the divergence is not at an entry of the log' } : await this.prove(error.seq),
        }
        this.audit = { state: 'done', verdict: { verified: false, divergence, ms: ms() } }
      } else if (error instanceof LogFormatError) {
        const e = error as LogFormatError & { seq?: number }
        const divergence = { name: e.name, code: e.code, message: e.message, seq: e.seq ?? null, field: 'format' }
        this.audit = { state: 'done', verdict: { verified: false, divergence, ms: ms() } }
      } else {
        const e = error as { name?: string; code?: string; message?: string }
        this.audit = {
          state: 'done',
          verdict: {
            verified: null,
            error: { name: e?.name ?? 'Error', code: e?.code ?? 'ERR_UNKNOWN', message: e?.message ?? String(error) },
            ms: ms(),
          },
        }
      }
    } finally {
      await rm(replayDir, { recursive: true, force: true }).catch(() => {})
    }
    this.broadcast('audit', this.audit)
  }
}
