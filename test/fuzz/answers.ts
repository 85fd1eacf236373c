/**
 * Checking the server's answers: each against the JSON-RPC 2.0 response shape, and against the oracle's
 * expected outcome for the frame it answers; a tally of what was sent and answered.
 */
import assert from 'node:assert/strict'
import { describeFrame, type Frame } from './frames.js'
import { E, isPlainObject, isRequestId, type Outcome, type RequestId } from './oracle.js'
import { SEED } from './random.js'
import { METHODS, type Mode, type Session } from './sessions.js'

export interface Pending {
  index: number
  frame: Frame
  outcome: Exclude<Outcome, { kind: 'close' }>
}

/** A frame that is answered: every one but a notification. */
export type Answered = Pending & { outcome: Exclude<Outcome, { kind: 'close' | 'silent' }> }

export function idKey(id: number | string): string {
  return typeof id === 'number' ? `n${JSON.stringify(id)}` : `s${id}`
}

export interface Tally {
  frames: number
  byCategory: Map<string, number>
  errors: Map<string, number>
  ran: Record<Mode, { echo: number; count: number }>
  handshakes: number
  closes: { code: number; reason: string; frame: string }[]
  connections: number
}

export function fail(message: string): never {
  assert.fail(`[seed ${SEED}] ${message}`)
}

/** Checks a decoded answer against the JSON-RPC 2.0 response shape LibVMS promises. */
export function checkShape(
  message: unknown,
  where: string,
): asserts message is { jsonrpc: string; id: RequestId; result?: unknown; error?: unknown } {
  if (!isPlainObject(message)) fail(`${where}: the answer is not a JSON object: ${JSON.stringify(message)}`)
  if (message.jsonrpc !== '2.0') fail(`${where}: the answer's jsonrpc is ${JSON.stringify(message.jsonrpc)}`)
  if (!('id' in message) || !(message.id === null || isRequestId(message.id))) fail(`${where}: the answer has no usable id`)
  if ('result' in message === 'error' in message) fail(`${where}: the answer must have exactly one of result and error`)
  if ('error' in message) {
    const error = message.error
    if (!isPlainObject(error)) fail(`${where}: error is not an object`)
    if (typeof error.code !== 'number' || !Number.isInteger(error.code)) fail(`${where}: error.code is not an integer`)
    if (typeof error.message !== 'string' || error.message.length === 0) fail(`${where}: error.message is not a non-empty string`)
    const data = error.data
    if (!isPlainObject(data)) fail(`${where}: error.data is not an object`)
    if (typeof data.code !== 'string' || !/^ERR_[A-Z0-9_]+$/.test(data.code)) fail(`${where}: error.data.code ${JSON.stringify(data.code)}`)
    if (typeof data.name !== 'string' || data.name.length === 0) fail(`${where}: error.data.name is not a non-empty string`)
  }
}

export type Answer = {
  jsonrpc: string
  id: RequestId
  result?: unknown
  error?: { code: number; message: string; data: { code: string; seq?: number } }
}

function errorOf(answer: Answer): [number, string] | null {
  return answer.error ? [answer.error.code, answer.error.data.code] : null
}

/** Checks one answer against its frame's expected outcome; returns true if the call ran (and is logged). */
export function checkAnswer(p: Answered, answer: Answer, session: Session, tally: Tally): boolean {
  const where = () =>
    `frame #${p.index} ${describeFrame(p.frame)} on a ${session.mode} connection (${session.handshaken ? 'after' : 'before'} the handshake): expected ${JSON.stringify(p.outcome)}, got ${JSON.stringify(answer).slice(0, 400)}`
  const error = errorOf(answer)
  if (error) tally.errors.set(error[1], (tally.errors.get(error[1]) ?? 0) + 1)
  const { outcome } = p
  switch (outcome.kind) {
    case 'error': {
      if (!error || error[0] !== outcome.rpc || !outcome.codes.includes(error[1])) fail(where())
      return false
    }
    case 'handshake': {
      if (error) {
        const expected = outcome.refusal ?? (outcome.lenient ? { rpc: E.invalidParams[0], code: E.invalidParams[1] } : null)
        if (!expected || error[0] !== expected.rpc || error[1] !== expected.code) fail(where())
        return false
      }
      if (outcome.refusal) fail(where())
      const info = answer.result
      if (
        !isPlainObject(info) ||
        JSON.stringify(info.methods) !== JSON.stringify(METHODS) ||
        info.auth !== session.mode ||
        typeof info.callLogUrl !== 'string' ||
        (session.mode === 'production' && (typeof info.nonce !== 'string' || !/^[0-9a-f]{32}$/.test(info.nonce)))
      ) {
        fail(where())
      }
      session.handshaken = true
      session.publicKey = session.mode === 'production' && !outcome.lenient ? outcome.publicKey : null
      session.nonce = typeof info.nonce === 'string' ? info.nonce : null
      tally.handshakes++
      return false
    }
    case 'call': {
      const ran = !error || (error[0] === -32000 && typeof answer.error?.data.seq === 'number')
      if (ran) {
        if (!outcome.mayRun || p.frame.intent === 'refuse') fail(`${where()} — it ran (and was logged)`)
        tally.ran[session.mode][outcome.method as 'echo' | 'count']++
        return true
      }
      if (outcome.mustRun || p.frame.intent === 'run') fail(`${where()} — a valid call was not run`)
      if (!error || !outcome.refusals.some(([rpc, code]) => rpc === error[0] && code === error[1])) fail(where())
      return false
    }
  }
}
