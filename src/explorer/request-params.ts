/**
 * Reading a request's query: whole numbers, archive paths, and seqs the log holds. A bad one is an
 * HttpError (400, or 404 for a seq past the log's end) that says what was wrong.
 */
import { HttpError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { normalizePath } from '../ledger/files-path.js'

/** The whole number `name` of the query, `fallback` when it is absent or empty. */
export function intParam(params: URLSearchParams, name: string, fallback: number): number {
  const raw = params.get(name)
  if (raw === null || raw === '') return fallback
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new HttpError(400, `${name} must be a whole number`)
  return Number(raw)
}

/** The query's `path` as an archive path (default `/`). */
export function pathParam(params: URLSearchParams): string {
  try {
    return normalizePath(params.get('path') ?? '/')
  } catch (error) {
    throw new HttpError(400, (error as Error).message)
  }
}

/** `seq`, if the log has an entry there. */
export function seqParam(callLog: CallLog, seq: number): number {
  if (seq >= callLog.length) throw new HttpError(404, `the log has no entry ${seq} (it has ${callLog.length})`)
  return seq
}
