/**
 * The System API scripts see: System.caller (set by the sandbox for each turn) and System.files,
 * Beaker's DatArchive subset over the call's files transaction.
 *
 * SYSTEM_SOURCE runs inside the VM; `SystemHost` answers its requests on the host. Every answer
 * depends only on the archive's state before the call, the call's own changes and the logged
 * identity of the archive — never on the host's clock or the replaying machine's keys — so a replay
 * gets the same answers.
 */
import { LibVMSError } from '../errors.js'
import { FilesTransaction } from '../ledger/files-transaction.js'
import type { FilesView } from '../ledger/files-view.js'
import type { HostRequestHandler } from '../sandbox/sandbox.js'

export const SYSTEM_SOURCE = `(function (System, request) {
  'use strict'
  function orNull (v) { return v === undefined ? null : v }
  function toStat (s) {
    const mtime = new Date(s.mtime)
    return {
      type: s.type,
      size: s.size,
      mtime,
      ctime: new Date(s.mtime),
      isFile () { return s.type === 'file' },
      isDirectory () { return s.type === 'directory' }
    }
  }
  System.files = Object.freeze({
    getInfo () { return request('files.getInfo') },
    stat (path) { return request('files.stat', orNull(path)).then(toStat) },
    readFile (path, opts) { return request('files.readFile', orNull(path), orNull(opts)) },
    readdir (path, opts) { return request('files.readdir', orNull(path), orNull(opts)) },
    writeFile (path, data, opts) { return request('files.writeFile', orNull(path), orNull(data), orNull(opts)).then(function () {}) },
    mkdir (path) { return request('files.mkdir', orNull(path)).then(function () {}) },
    unlink (path) { return request('files.unlink', orNull(path)).then(function () {}) },
    rmdir (path, opts) { return request('files.rmdir', orNull(path), orNull(opts)).then(function () {}) },
    history (opts) { return request('files.history', orNull(opts)) }
  })
})`

/** Who the archive is, as the log records it: a replay answers with the original's key, not its own. */
export interface FilesIdentity {
  key: string
  title: string
}

export class UnknownSystemCallError extends LibVMSError {
  constructor(op: string) {
    super('TypeError', 'ERR_UNKNOWN_SYSTEM_CALL', `System has no operation ${op}`)
  }
}

/**
 * The host side of one turn's System calls. The files view is opened on first use (a turn that
 * touches no file costs nothing) and the transaction collects the turn's changes.
 */
export class SystemHost {
  private tx: FilesTransaction | null = null

  constructor(
    private readonly identity: FilesIdentity,
    /** The archive version the call starts from (before its own changes). */
    private readonly baseVersion: number,
    private readonly timestamp: number,
    private readonly openView: () => Promise<FilesView>,
  ) {}

  /** The turn's changes, if it made any. */
  get transaction(): FilesTransaction | null {
    return this.tx
  }

  readonly handle: HostRequestHandler = async (op, args) => {
    if (!this.tx) this.tx = new FilesTransaction(await this.openView(), this.timestamp)
    const tx = this.tx
    switch (op) {
      case 'files.getInfo':
        return { key: this.identity.key, url: `hyper://${this.identity.key}`, version: this.baseVersion, title: this.identity.title }
      case 'files.stat':
        return tx.stat(args[0])
      case 'files.readFile':
        return tx.readFile(args[0], args[1] ?? undefined)
      case 'files.readdir':
        return tx.readdir(args[0], args[1] ?? undefined)
      case 'files.writeFile':
        return tx.writeFile(args[0], args[1], args[2] ?? undefined)
      case 'files.mkdir':
        return tx.mkdir(args[0])
      case 'files.unlink':
        return tx.unlink(args[0])
      case 'files.rmdir':
        return tx.rmdir(args[0], args[1] ?? undefined)
      case 'files.history': {
        const opts = (args[0] ?? {}) as { start?: unknown; end?: unknown; reverse?: unknown }
        const start = typeof opts.start === 'number' ? opts.start : undefined
        const requestedEnd = typeof opts.end === 'number' ? opts.end : this.baseVersion
        return tx.history({ start, end: Math.min(requestedEnd, this.baseVersion), reverse: !!opts.reverse })
      }
      default:
        throw new UnknownSystemCallError(op)
    }
  }
}
