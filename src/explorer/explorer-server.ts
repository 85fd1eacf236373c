/**
 * The explorer: a local HTTP server showing one VM's call log and files archive in a browser page
 * (src/explorer/page/), with a small JSON API under /api/. Everything it shows comes from the log and
 * the archive it was given, which are hostile input: the API returns them as JSON, and the page only
 * ever puts them in the document as text. This file routes requests; what each answers lives in:
 * log-views.ts (the VM, entries; rows: entry-rows.ts), archive-views.ts (files, changes, diffs),
 * audit-runner.ts (the audit) and divergence-proof.ts (its proof), event-stream.ts (live updates,
 * fed by log-indexer.ts as the log grows, and by host-watch.ts as a fetched log's hosts come and go);
 * request-params.ts and http-answers.ts read and answer.
 *
 *   GET  /api/vm                  the VM: title, keys, auth mode, engine, limits, script, length
 *   GET  /api/entries?start&limit&method&caller&failed=1
 *                                 a page of entries, newest first from `start` (default: the newest)
 *   GET  /api/entries/:seq        one entry in full
 *   GET  /api/files?seq&path      a folder of the archive as of call `seq`
 *   GET  /api/file?seq&path       a file's contents as of call `seq` (text or base64, bounded)
 *   GET  /api/changes?seq         the paths call `seq` put or deleted
 *   GET  /api/diff?seq&path       the lines call `seq` removed from and added to a text file (bounded)
 *   GET  /api/events              server-sent events: `entry` (the log grew), `audit` (progress, verdict),
 *                                 `host` (a fetched log's host is gone, back, or rewrote history: host-watch.ts)
 *   GET  /api/audit               the audit's state
 *   POST /api/audit               starts an audit (Verifier.verify into a temp replay dir); one at a time
 *   GET  /api/proof               the last audit's execution proof (nodevms check-proof checks it), when it made one
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { HttpError, LogFormatError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import type { DatArchive } from '../ledger/files-archive.js'
import type { VMLimits } from '../sandbox/limits.js'
import { ArchiveViews } from './archive-views.js'
import { AuditRunner } from './audit-runner.js'
import { sendProof } from './divergence-proof.js'
import { EventStream } from './event-stream.js'
import { HostWatch } from './host-watch.js'
import { sendFailure, sendJson, sendPageFile } from './http-answers.js'
import { LogIndexer } from './log-indexer.js'
import { LogViews } from './log-views.js'
import { intParam } from './request-params.js'

export interface ExplorerOptions {
  callLog: CallLog
  filesArchive: DatArchive
  /** What was opened (a URL or a dir), shown on the page. */
  label: string
  /** The most of each limit an audited log may claim. */
  maxLimits?: Partial<VMLimits>
  /** Where lines about a fetched log's hosts go (gone, back, rewrote history: host-watch.ts); default: nowhere. */
  onHostNote?: (line: string) => void
}

export class ExplorerServer {
  private readonly callLog: CallLog
  private readonly archive: DatArchive
  private readonly label: string
  private readonly http: Server
  private readonly stop = new AbortController()
  private readonly events = new EventStream()
  private readonly indexer: LogIndexer
  private readonly hosts: HostWatch
  private readonly audit: AuditRunner
  /** Made once the init entry is read (listen). */
  private views: { log: LogViews; archive: ArchiveViews } | null = null
  private host = '127.0.0.1'
  private port = 0

  constructor(options: ExplorerOptions) {
    this.callLog = options.callLog
    this.archive = options.filesArchive
    this.label = options.label
    this.indexer = new LogIndexer(this.callLog, this.events, this.stop.signal)
    this.hosts = new HostWatch(this.callLog, this.events, options.onHostNote ?? (() => {}), this.stop.signal, this.label)
    this.audit = new AuditRunner({
      callLog: this.callLog,
      filesArchive: this.archive,
      maxLimits: options.maxLimits,
      events: this.events,
      signal: this.stop.signal,
    })
    this.http = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => sendFailure(res, error))
    })
  }

  /** Listens on `host` (default 127.0.0.1) and `port` (default 0: a free one); resolves with the page's URL. */
  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    await this.callLog.ready()
    await this.archive.ready()
    const init = await this.callLog.get(0)
    if (init.type !== 'init') throw new LogFormatError('entry 0 is not an init entry', 0)
    this.views = {
      log: new LogViews(this.callLog, this.archive, this.label, init, this.indexer),
      archive: new ArchiveViews(this.callLog, this.archive, init),
    }
    this.indexer.start()
    this.hosts.start(this.archive)
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
    this.indexer.stop()
    this.events.close()
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve())
      this.http.closeAllConnections()
    })
    await this.audit.settled()
    await this.indexer.settled()
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only pages of this server talk to it: a page on another site, or a DNS name rebound to 127.0.0.1,
    // sends another Host.
    if (!this.hostAllowed(req.headers.host)) throw new HttpError(403, 'this explorer answers requests for its IP address or localhost only')
    const url = new URL(req.url ?? '/', this.url)
    const path = url.pathname
    if (req.method === 'POST' && path === '/api/audit') return this.startAudit(req, res)
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed here`)
    if (!path.startsWith('/api/')) return sendPageFile(path, res)
    const params = url.searchParams
    const { log, archive } = this.views as { log: LogViews; archive: ArchiveViews }
    if (path === '/api/vm') return sendJson(res, await log.vmInfo())
    if (path === '/api/entries') return sendJson(res, await log.entries(params))
    const one = /^\/api\/entries\/(\d+)$/.exec(path)
    if (one) return sendJson(res, await log.entry(Number(one[1])))
    if (path === '/api/files') return sendJson(res, await archive.files(params))
    if (path === '/api/file') return sendJson(res, await archive.file(params))
    if (path === '/api/changes') return sendJson(res, await archive.changes(intParam(params, 'seq', 0)))
    if (path === '/api/diff') return sendJson(res, await archive.diff(params))
    if (path === '/api/audit') return sendJson(res, this.audit.state)
    if (path === '/api/proof') return sendProof(res, this.audit.proof)
    if (path === '/api/events')
      return this.events.open(req, res, { length: this.callLog.length, audit: this.audit.state, host: this.hosts.state })
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

  private startAudit(req: IncomingMessage, res: ServerResponse): void {
    // A form on another site cannot set this header: only this page starts audits.
    if (req.headers['x-explorer'] !== '1') throw new HttpError(403, 'POST /api/audit needs the header X-Explorer: 1')
    req.resume()
    if (this.audit.running) {
      sendJson(res, { started: false, audit: this.audit.state }, 409)
      return
    }
    this.audit.start()
    sendJson(res, { started: true, audit: this.audit.state }, 202)
  }
}
