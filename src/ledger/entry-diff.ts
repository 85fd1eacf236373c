/**
 * The first field in which a logged entry and its replay differ, said so that a reader knows which
 * call and what: the verdict of an audit, of an execution proof, and of a VM reopening its own log.
 * It sits beside the log's schema (log-entry.ts), below every reader of a replay (vm/, audit/).
 */
import { DivergenceError } from '../errors.js'
import type { LogEntry } from './log-entry.js'

/** An entry of a log beside what a replay of it gave: what a replay hands out (vm/replay.ts), and what is compared. */
export interface ReplayEntry {
  seq: number
  logged: LogEntry
  replayed: LogEntry
}

/** Whether two fields have the same JSON text; one both entries share (a replayed call's arguments are the logged ones) is not written at all. */
function sameField(e: unknown, a: unknown): boolean {
  return e === a || JSON.stringify(e) === JSON.stringify(a)
}

/**
 * Whether two entries have the same JSON text (fields, their order and their values), written field
 * by field: the big ones a replay shares with the log (arguments, a signed payload) are never written.
 */
function sameEntry(e: Record<string, unknown>, a: Record<string, unknown>): boolean {
  const eKeys = Object.keys(e).filter((k) => e[k] !== undefined)
  const aKeys = Object.keys(a).filter((k) => a[k] !== undefined)
  return eKeys.length === aKeys.length && eKeys.every((k, i) => k === aKeys[i] && sameField(e[k], a[k]))
}

/** Outcome fields first: "the result differs" says more than "the cost differs". */
const FIELD_ORDER = [
  'type',
  'code',
  'method',
  'caller',
  'args',
  'timestamp',
  'seed',
  'oracle',
  'result',
  'error',
  'files',
  'cost',
  'state',
  'stateFormat',
]

/** The first field in which an entry and its replay differ, as a DivergenceError; null if they are the same. */
export function diffEntry({ seq, logged, replayed }: ReplayEntry): DivergenceError | null {
  const e = logged as unknown as Record<string, unknown>
  const a = replayed as unknown as Record<string, unknown>
  if (sameEntry(e, a)) return null
  const fields = [...new Set([...Object.keys(e), ...Object.keys(a)])]
  fields.sort((x, y) => (FIELD_ORDER.indexOf(x) + 1 || 99) - (FIELD_ORDER.indexOf(y) + 1 || 99))
  const field = fields.find((f) => !sameField(e[f], a[f])) ?? 'entry'
  const call = logged.type === 'call' ? logged : { method: logged.type, caller: null }
  return DivergenceError.ENTRY(seq, call, field, e[field], a[field], logged.type === 'upgrade')
}
