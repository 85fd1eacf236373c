/**
 * Signed calls (production mode). A caller signs, with its Ed25519 key, a payload that binds the call
 * to one VM (its call log key), one method with its arguments, one place in one connection (the
 * server's per-connection nonce and the caller's counter on that connection) and, from schema 3 on,
 * one value the caller chose at random for this call alone (`clientNonce`). The payload text and the
 * signature go into the call entry, so anyone holding the log can check that the caller asked for
 * exactly this call, on this VM, once; and the caller, given a receipt of the entry, that it answers
 * the call it just made and no earlier one. docs/log-format.md describes the payload.
 *
 * Invariants enforced here and checked again by replay:
 * - an entry's caller is the public key (hex) that signed its payload;
 * - the payload names the log it is in, and the entry's method and arguments;
 * - per nonce, counters strictly increase in log order (no call is logged twice or out of order);
 * - schema 3: the payload holds a client nonce, and the entry logs that same nonce.
 */
import crypto from 'hypercore-crypto'
import type { TaggedValue } from '../codec/value-codec.js'
import { jsonDeeperThan, jsonHasDuplicateKeys, MAX_VALUE_DEPTH } from '../codec/value-codec.js'
import { AuthError } from '../errors.js'
import { CLIENT_NONCE, type SignedCall } from '../ledger/log-entry.js'

export const CALL_PAYLOAD_TYPE = 'libvms-call'

/** SignedCall is a field of the log's call entries, defined with them (log-entry.ts). */
export type { SignedCall }

export interface CallPayload {
  type: typeof CALL_PAYLOAD_TYPE
  /** Hex key of the call log: the VM the call is for. */
  callLog: string
  method: string
  args: TaggedValue[]
  /** The server's nonce for the connection the call was sent on (hex). */
  nonce: string
  /** The caller's count of calls on that connection, from 1. */
  counter: number
  /** Schema 3: the value the caller chose at random for this call (hex); older clients sign none. */
  clientNonce?: string
}

const HEX64 = /^[0-9a-f]{64}$/
const HEX128 = /^[0-9a-f]{128}$/
const NONCE = /^[0-9a-f]{32,64}$/

/** The payload text for a call; `argsJson` is the arguments already encoded as tagged JSON. */
export function encodeCallPayload(fields: {
  callLog: string
  method: string
  argsJson: string
  nonce: string
  counter: number
  clientNonce?: string
}): string {
  const clientNonce = fields.clientNonce === undefined ? '' : `,"clientNonce":${JSON.stringify(fields.clientNonce)}`
  return `{"type":"${CALL_PAYLOAD_TYPE}","callLog":${JSON.stringify(fields.callLog)},"method":${JSON.stringify(fields.method)},"args":${fields.argsJson},"nonce":${JSON.stringify(fields.nonce)},"counter":${fields.counter}${clientNonce}}`
}

export function signCallPayload(payload: string, secretKey: Uint8Array): SignedCall {
  return { payload, signature: crypto.sign(Buffer.from(payload, 'utf8'), secretKey).toString('hex') }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Parses a payload's text, checking its shape; throws AuthError ERR_BAD_PAYLOAD. */
export function parseCallPayload(text: string): CallPayload {
  let p: unknown
  // The payload's args are a value like any other: bounded in depth before anything recurses into them.
  if (jsonDeeperThan(text, MAX_VALUE_DEPTH + 1)) {
    throw new AuthError('ERR_BAD_PAYLOAD', `the signed payload's arguments are nested deeper than ${MAX_VALUE_DEPTH} levels`)
  }
  try {
    p = JSON.parse(text)
  } catch {
    throw new AuthError('ERR_BAD_PAYLOAD', 'the signed payload is not JSON: sign the payload LibVMS builds (see docs/log-format.md)')
  }
  // A key named twice reads as one call here (the last wins) and may read as another elsewhere.
  if (jsonHasDuplicateKeys(text)) {
    throw new AuthError(
      'ERR_BAD_PAYLOAD',
      'the signed payload names a key twice in one object: sign each field once (see docs/log-format.md)',
    )
  }
  if (
    !isObject(p) ||
    p.type !== CALL_PAYLOAD_TYPE ||
    typeof p.callLog !== 'string' ||
    !HEX64.test(p.callLog) ||
    typeof p.method !== 'string' ||
    !Array.isArray(p.args) ||
    typeof p.nonce !== 'string' ||
    !NONCE.test(p.nonce) ||
    typeof p.counter !== 'number' ||
    !Number.isSafeInteger(p.counter) ||
    p.counter < 1 ||
    (p.clientNonce !== undefined && (typeof p.clientNonce !== 'string' || !CLIENT_NONCE.test(p.clientNonce)))
  ) {
    throw new AuthError(
      'ERR_BAD_PAYLOAD',
      `the signed payload must be {type: "${CALL_PAYLOAD_TYPE}", callLog, method, args, nonce, counter, clientNonce} with clientNonce 32 to 64 hex digits (see docs/log-format.md)`,
    )
  }
  return p as unknown as CallPayload
}

/**
 * A signed call whose payload was parsed once, where the call arrived (the RPC edge), and travels
 * parsed: nothing after it parses the payload again.
 */
export interface ParsedSignedCall {
  signed: SignedCall
  payload: CallPayload
}

/** A call as the caller check sees it: who, what, with which (encoded) arguments, and what they signed. */
export interface AuthenticatedCall {
  caller: string | null
  method: string
  /** The arguments as tagged JSON text, as JSON.stringify writes them. */
  argsJson: string
  signed?: SignedCall
  /** `signed`'s payload, when it was parsed already where the call arrived: it is not parsed again. */
  payload?: CallPayload
  /**
   * Whether the arguments are the payload's own, written as the payload holds them, when that is known
   * without writing them again (the edge took them from the payload); otherwise they are compared as text.
   */
  argsAsSigned?: boolean
  /** The outcome of checking the signature already, elsewhere (the RPC edge, a signature thread). */
  signatureValid?: boolean
  /**
   * The client nonce the call carries beside its payload (a live call's, if it gave one; a logged
   * entry's, null when the entry holds none): it must be the one the payload holds.
   */
  clientNonce?: string | null
}

/** Whether `signed.signature` is `caller`'s Ed25519 signature over `signed.payload` (false for malformed input). */
export function signatureVerifies(signed: SignedCall, caller: string): boolean {
  if (typeof caller !== 'string' || !HEX64.test(caller) || typeof signed?.signature !== 'string' || !HEX128.test(signed.signature))
    return false
  if (typeof signed.payload !== 'string') return false
  return crypto.verify(Buffer.from(signed.payload, 'utf8'), Buffer.from(signed.signature, 'hex'), Buffer.from(caller, 'hex'))
}

/**
 * Checks that `call` was signed by its caller for this VM (`callLogKey`, hex), this method and these
 * arguments, and (`clientNonces`: a log of schema 3 or later) with a client nonce, the one the call
 * carries if it carries one. Returns the payload (for the counter check); throws AuthError naming
 * what is wrong. What the call says was checked already (its parsed payload, its signature's outcome)
 * is not done again.
 */
export function checkSignedCall(call: AuthenticatedCall, callLogKey: string, clientNonces: boolean): CallPayload {
  const { caller, signed } = call
  if (signed === undefined || signed === null) {
    throw new AuthError('ERR_AUTH_REQUIRED', 'this VM runs in production mode: every call must be signed (connect with {keyPair})')
  }
  if (typeof caller !== 'string' || !HEX64.test(caller)) {
    throw new AuthError('ERR_BAD_SIGNATURE', 'in production mode the caller id is the public key that signed the call (64 hex digits)')
  }
  if (!isObject(signed) || typeof signed.payload !== 'string' || typeof signed.signature !== 'string' || !HEX128.test(signed.signature)) {
    throw new AuthError('ERR_BAD_SIGNATURE', 'a signed call is {payload: string, signature: 128 hex digits}')
  }
  const payload = call.payload ?? parseCallPayload(signed.payload)
  if (payload.callLog !== callLogKey) {
    throw new AuthError(
      'ERR_WRONG_VM',
      `the call was signed for the VM with call log ${payload.callLog}, not this one (${callLogKey}); sign calls for the VM you send them to`,
    )
  }
  if (payload.method !== call.method) {
    throw new AuthError(
      'ERR_BAD_PAYLOAD',
      `the call was signed for method ${JSON.stringify(payload.method)}, not ${JSON.stringify(call.method)}`,
    )
  }
  if (!(call.argsAsSigned ?? JSON.stringify(payload.args) === call.argsJson)) {
    throw new AuthError('ERR_BAD_PAYLOAD', 'the call was signed with other arguments than it carries')
  }
  if (clientNonces && payload.clientNonce === undefined) {
    throw new AuthError(
      'ERR_BAD_PAYLOAD',
      'the signed payload holds no clientNonce, which this VM (log schema 3) requires of every signed call: sign with a LibVMS client of 3.0 or later',
    )
  }
  if (call.clientNonce !== undefined && call.clientNonce !== payload.clientNonce) {
    throw new AuthError('ERR_BAD_PAYLOAD', 'the call carries another clientNonce than the one it was signed with')
  }
  if (!(call.signatureValid ?? signatureVerifies(signed, caller))) {
    throw new AuthError('ERR_BAD_SIGNATURE', `the signature does not verify with the caller's key ${caller}: the call was not signed by it`)
  }
  return payload
}

/**
 * The counters of signed calls, per nonce (one nonce per connection ever made to the VM). A call is
 * fresh only if its counter is above the last one its nonce had: the same signed call cannot be logged
 * twice, nor a caller's calls reordered. One set per VM, held by its CallAuthenticator (call-auth.ts);
 * its executor shares it by reference. Two marks per nonce:
 * - taken: the highest counter of any call taken so far, live (admitted: queued, maybe not run yet) or
 *   read from the log. A live call must be above it.
 * - run: the counter of the last call run, in log order. A logged call must be above it, and it is what
 *   a snapshot keeps: a snapshot after seq N holds the counters of the calls up to N, never those of
 *   calls queued behind N, so a replay computes the same state digest.
 * About 150 bytes per nonce.
 */
export class CallCounters {
  private readonly taken = new Map<string, number>()
  private readonly run = new Map<string, number>()

  /** A live call, before it is queued: throws AuthError ERR_REPLAYED unless its counter is fresh; takes it. */
  take(payload: CallPayload): void {
    const last = this.taken.get(payload.nonce) ?? 0
    if (payload.counter <= last) throw replayed(payload, last)
    this.taken.set(payload.nonce, payload.counter)
  }

  /** A live call taken earlier has run. */
  noteRun(payload: CallPayload): void {
    if (payload.counter > (this.run.get(payload.nonce) ?? 0)) this.run.set(payload.nonce, payload.counter)
  }

  /**
   * A logged call, about to be run in log order (replay, reopen): throws AuthError ERR_REPLAYED unless
   * its counter is above that of its nonce's calls before it in the log; takes it and counts it as run.
   */
  takeLogged(payload: CallPayload): void {
    const last = this.run.get(payload.nonce) ?? 0
    if (payload.counter <= last) throw replayed(payload, last)
    this.run.set(payload.nonce, payload.counter)
    if (payload.counter > (this.taken.get(payload.nonce) ?? 0)) this.taken.set(payload.nonce, payload.counter)
  }

  /** The run counter of each nonce, sorted by nonce: what a snapshot keeps. */
  list(): [string, number][] {
    return [...this.run.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  }

  /**
   * Runs start again from a state: a snapshot's counters (`list()`), or none (the init entry). What was
   * taken stays taken: a call already admitted is not admitted again while the state is rebuilt.
   */
  restartFrom(list: readonly (readonly [string, number])[]): void {
    this.run.clear()
    for (const [nonce, counter] of list) {
      this.run.set(nonce, counter)
      if (counter > (this.taken.get(nonce) ?? 0)) this.taken.set(nonce, counter)
    }
  }
}

function replayed(payload: CallPayload, last: number): AuthError {
  return new AuthError(
    'ERR_REPLAYED',
    `this signed call (nonce ${payload.nonce}, counter ${payload.counter}) is not new: counter ${last} was already used on that connection; a signed call runs at most once`,
  )
}
