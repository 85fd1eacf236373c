/**
 * Entries as the page's table shows them: one row per entry, its values as text cut to a few hundred
 * characters as they are written (an entry may hold megabytes), read from the log one window at a time.
 */
import { clippedJSON, clippedList } from '../codec/clipped-json.js'
import type { CallLog } from '../ledger/call-log.js'
import type { InitEntry, LogEntry } from '../ledger/log-entry.js'
import { codeHash } from '../ledger/log-hashes.js'
import { bundleInfoOf } from '../script/bundle.js'
import { INIT_METHOD, UPGRADE_METHOD } from './entry-index.js'

/** The largest page of entries. */
export const MAX_PAGE = 500
/** A value shown in a table row is cut to this many characters. */
const ROW_TEXT = 300

/** One entry as a table row: values as (cut) text. */
export interface EntryRow {
  seq: number
  type: 'init' | 'call' | 'upgrade'
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

/** A time in ms as the explorer's answers write it: ISO 8601, or the number itself if it is no date. */
export function isoTime(ms: number): string {
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
      args: initArgs(entry),
      result: entry.result === undefined ? null : clippedJSON(entry.result, ROW_TEXT),
      error: null,
      cost: entry.cost,
      filesVersion: entry.files.version,
    }
  }
  if (entry.type === 'upgrade') {
    const bundle = bundleInfoOf(entry.code)
    return {
      seq,
      type: 'upgrade',
      time: isoTime(entry.timestamp),
      caller: null,
      signed: false,
      method: UPGRADE_METHOD,
      // What the row says of the code: its version hash, the one it replaced, and its bundle's entry.
      args: cut(
        `code ${codeHash(entry.code).slice(0, 12)} (replaces ${entry.replaces.hash.slice(0, 12)} of #${entry.replaces.seq})${bundle ? `, bundled from ${bundle.entry}` : ''}`,
      ),
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

/** What an init row says of its call: the VM's title, and the bundle its code was made from, if it is one. */
function initArgs(entry: InitEntry): string {
  const bundle = bundleInfoOf(entry.code)
  const title = clippedJSON(entry.title, ROW_TEXT)
  return bundle ? `${title} · code bundled from ${cut(bundle.entry, 200)} by ${cut(bundle.bundler, 100)}` : title
}

/** The rows of `seqs` (newest first), each entry cut to its row as soon as it is decoded. */
export async function readRows(callLog: CallLog, seqs: number[]): Promise<EntryRow[]> {
  if (seqs.length === 0) return []
  // Contiguous (newest first): read in windows of the log's byte budget; otherwise one entry at a time.
  const high = seqs[0]
  const low = seqs[seqs.length - 1]
  const rows: EntryRow[] = []
  if (high - low + 1 === seqs.length) {
    for await (const { seq, entry } of callLog.read({ start: low, end: high + 1 })) rows.push(rowOf(seq, entry))
    return rows.reverse()
  }
  for (const seq of seqs) rows.push(rowOf(seq, await callLog.get(seq)))
  return rows
}
