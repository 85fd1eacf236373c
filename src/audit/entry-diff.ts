/**
 * The first field in which a logged entry and its replay differ, said so that a reader knows which
 * call and what: the verdict of an audit, and of an execution proof.
 */
import { DivergenceError } from '../errors.js'
import type { LogEntry } from '../ledger/log-entry.js'

function describeCaller(caller: string | null | undefined): string {
  return caller ? `caller ${caller}` : 'an anonymous caller'
}

function short(value: unknown): string {
  const s = value === undefined ? 'nothing' : JSON.stringify(value)
  return s.length > 200 ? `${s.slice(0, 200)}…` : s
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

/** The first field in which two entries of the same seq differ, as a DivergenceError; null if equal. */
export function diffEntries(seq: number, expected: LogEntry, actual: LogEntry): DivergenceError | null {
  const e = expected as unknown as Record<string, unknown>
  const a = actual as unknown as Record<string, unknown>
  if (sameEntry(e, a)) return null
  const fields = [...new Set([...Object.keys(e), ...Object.keys(a)])]
  // Outcome fields first: "the result differs" says more than "the cost differs".
  const order = [
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
  fields.sort((x, y) => (order.indexOf(x) + 1 || 99) - (order.indexOf(y) + 1 || 99))
  const field = fields.find((f) => !sameField(e[f], a[f])) ?? 'entry'
  const method = expected.type === 'call' ? expected.method : 'init'
  const caller = expected.type === 'call' ? expected.caller : null
  const what = seq === 0 ? 'the init entry' : `call ${seq} (${method} by ${describeCaller(caller)})`
  return new DivergenceError({
    message: `${what} diverges in ${field}: the log says ${short(e[field])}, the replay gives ${short(a[field])}`,
    seq,
    method,
    caller,
    field,
    expected: e[field],
    actual: a[field],
  })
}
