/**
 * What the explorer answers about the log: the VM (GET /api/vm), a page of entries, filtered or not
 * (GET /api/entries), and one entry in full with its caller check (GET /api/entries/:seq).
 */
import { CallAuthenticator } from '../auth/call-auth.js'
import { parseCallPayload } from '../auth/signed-call.js'
import { AuthError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import type { DatArchive } from '../ledger/files-archive.js'
import type { InitEntry, LogEntry } from '../ledger/log-entry.js'
import type { EntryFilter } from './entry-index.js'
import { isoTime, MAX_PAGE, readRows, rowOf } from './entry-rows.js'
import type { LogIndexer } from './log-indexer.js'
import { intParam, seqParam } from './request-params.js'

/** The caller check of one entry, as the page shows it. */
interface SignatureCheck {
  ok: boolean
  problem: { code: string; message: string } | null
  payload: unknown
}

export class LogViews {
  constructor(
    private readonly callLog: CallLog,
    private readonly archive: DatArchive,
    /** What was opened (a URL or a dir). */
    private readonly label: string,
    private readonly init: InitEntry,
    private readonly indexer: LogIndexer,
  ) {}

  async vmInfo(): Promise<Record<string, unknown>> {
    const init = this.init
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
      names: this.indexer.index.names,
      indexed: this.indexer.index.length,
    }
  }

  /** A page of rows, newest first from the query's `start`; filtered ones through the index (waiting for it to reach `start`). */
  async entries(params: URLSearchParams): Promise<Record<string, unknown>> {
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
      await this.indexer.indexed(start + 1)
      ;({ seqs, next } = this.indexer.index.query(filter, start, limit))
    } else {
      const low = Math.max(0, start - limit + 1)
      seqs = Array.from({ length: start - low + 1 }, (_, i) => start - i)
      next = low > 0 ? low - 1 : null
    }
    const rows = await readRows(this.callLog, seqs)
    return { length, indexed: this.indexer.index.length, start, limit, next, rows }
  }

  async entry(seq: number): Promise<Record<string, unknown>> {
    seqParam(this.callLog, seq)
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
  private signatureOf(entry: LogEntry): SignatureCheck | null {
    if (entry.type !== 'call') return null
    const { auth: mode, schema } = this.init
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
}
