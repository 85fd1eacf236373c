/**
 * The oracle: the outcome the server must give a frame, worked out by applying the rules of docs/api.md
 * ("Refused at the edge") to the frame's bytes and the connection's state.
 */
import { parseCallPayload } from '../../src/auth/signed-call.js'
import type { Frame } from './frames.js'
import { CLOSE_ABOVE, HANDSHAKE, MAX_MESSAGE_BYTES, METHODS, type Session } from './sessions.js'

/** Arguments nested deeper than this may be refused (the host's JSON recursion); shallower ones must run. */
const SHALLOW = 64

export type RequestId = number | string | null

export type Outcome =
  | { kind: 'close' }
  /** A notification (no id member): never answered; `runs` if it is a call that would have run. */
  | { kind: 'silent'; method: string; runs: boolean }
  | { kind: 'error'; id: RequestId; rpc: number; codes: readonly string[] }
  | { kind: 'handshake'; id: number | string; refusal: { rpc: number; code: string } | null; lenient: boolean; publicKey: string | null }
  | {
      kind: 'call'
      id: number | string
      method: string
      mustRun: boolean
      mayRun: boolean
      refusals: readonly (readonly [number, string])[]
    }

export const E = {
  parse: [-32700, 'ERR_PARSE'],
  invalidRequest: [-32600, 'ERR_INVALID_REQUEST'],
  methodNotFound: [-32601, 'ERR_METHOD_NOT_FOUND'],
  invalidParams: [-32602, 'ERR_INVALID_PARAMS'],
  encoding: [-32602, 'ERR_ENCODING'],
  tooLarge: [-32002, 'ERR_MESSAGE_TOO_LARGE'],
  handshakeRequired: [-32004, 'ERR_HANDSHAKE_REQUIRED'],
  handshakeDone: [-32004, 'ERR_HANDSHAKE_DONE'],
  authMode: [-32006, 'ERR_AUTH_MODE'],
  authRequired: [-32006, 'ERR_AUTH_REQUIRED'],
  badPayload: [-32006, 'ERR_BAD_PAYLOAD'],
  badSignature: [-32006, 'ERR_BAD_SIGNATURE'],
  wrongVM: [-32006, 'ERR_WRONG_VM'],
  replayed: [-32006, 'ERR_REPLAYED'],
} as const

function describe(bytes: Buffer): string {
  return bytes.toString('utf8').slice(0, 200)
}

function refused(id: RequestId, [rpc, code]: readonly [number, string]): Outcome {
  return { kind: 'error', id, rpc, codes: [code] }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

export function isRequestId(id: unknown): id is number | string {
  return (typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.length <= 256)
}

/** How deep `value` nests (iteratively: generated values nest 30,000 deep). */
function depthOf(value: unknown): number {
  let max = 0
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number]
    if (v === null || typeof v !== 'object') continue
    if (d > max) max = d
    for (const child of Object.values(v)) stack.push([child, d + 1])
  }
  return max
}

function hasNonFinite(value: unknown): boolean {
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    if (typeof v === 'number' && !Number.isFinite(v)) return true
    if (v !== null && typeof v === 'object') stack.push(...Object.values(v))
  }
  return false
}

/** What the server must do with `frame` on a connection in `session`'s state (docs/api.md, RPCServer). */
export function expectOutcome(frame: Frame, session: Session): Outcome {
  const bytes = typeof frame.data === 'string' ? Buffer.from(frame.data) : frame.data
  if (bytes.length > CLOSE_ABOVE) return { kind: 'close' }
  if (bytes.length > MAX_MESSAGE_BYTES) return refused(null, E.tooLarge)
  if (frame.binary) return refused(null, E.invalidRequest)
  let request: unknown
  try {
    request = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return refused(null, E.parse)
  }
  if (!isPlainObject(request)) return refused(null, E.invalidRequest)
  const { jsonrpc, id, method, params } = request
  if (!Object.hasOwn(request, 'id') && jsonrpc === '2.0' && typeof method === 'string') {
    // Dropped unrun: a handshake, or anything before one. Otherwise it runs exactly when it would as a request.
    if (method === HANDSHAKE || !session.handshaken) return { kind: 'silent', method, runs: false }
    const asRequest = expectOutcome({ ...frame, data: JSON.stringify({ ...request, id: 0 }) }, session)
    if (asRequest.kind === 'call' && asRequest.mustRun !== asRequest.mayRun) {
      throw new Error(`the oracle cannot tell whether notification ${describe(bytes)} runs: make it unambiguous`)
    }
    return { kind: 'silent', method, runs: asRequest.kind === 'call' && asRequest.mustRun }
  }
  if (!isRequestId(id)) return refused(null, E.invalidRequest)
  if (jsonrpc !== '2.0' || typeof method !== 'string') return refused(id, E.invalidRequest)
  if (method === HANDSHAKE) {
    if (session.handshaken) return refused(id, E.handshakeDone)
    // Params that are not an object: the docs do not say; taken as none (anonymous) or refused.
    const lenient = !isPlainObject(params)
    const { user, publicKey } = isPlainObject(params) ? params : {}
    const given = (v: unknown) => v !== undefined && v !== null
    let refusal: { rpc: number; code: string } | null = null
    if (session.mode === 'debug') {
      if (given(publicKey)) refusal = { rpc: E.authMode[0], code: E.authMode[1] }
      else if (given(user) && (typeof user !== 'string' || user.length === 0 || user.length > 1024)) {
        refusal = { rpc: E.invalidParams[0], code: E.invalidParams[1] }
      }
    } else if (given(user)) refusal = { rpc: E.authMode[0], code: E.authMode[1] }
    else if (given(publicKey) && (typeof publicKey !== 'string' || !/^[0-9a-f]{64}$/.test(publicKey))) {
      refusal = { rpc: E.invalidParams[0], code: E.invalidParams[1] }
    }
    return { kind: 'handshake', id, refusal, lenient, publicKey: typeof publicKey === 'string' ? publicKey : null }
  }
  if (!session.handshaken) return refused(id, E.handshakeRequired)
  if (!METHODS.includes(method)) return refused(id, E.methodNotFound)
  if (session.mode === 'debug') {
    if (params !== undefined && !Array.isArray(params)) return refused(id, E.invalidParams)
    // A client nonce beside the call: 32 to 64 lowercase hex digits, or none.
    const { clientNonce } = request as Record<string, unknown>
    if (clientNonce !== undefined && !(typeof clientNonce === 'string' && /^[0-9a-f]{32,64}$/.test(clientNonce))) {
      return refused(id, E.invalidParams)
    }
    const args = (params ?? []) as unknown[]
    if (depthOf(args) > SHALLOW) {
      return { kind: 'call', id, method, mustRun: false, mayRun: true, refusals: [E.invalidParams, E.encoding] }
    }
    if (hasNonFinite(args)) return refused(id, E.encoding)
    return { kind: 'call', id, method, mustRun: true, mayRun: true, refusals: [] }
  }
  // Production mode: the edge checks the signed call's form, nonce and method; the VM the rest.
  if (session.publicKey === null) return refused(id, E.authRequired)
  if (!isPlainObject(params) || typeof params.payload !== 'string' || typeof params.signature !== 'string') {
    return refused(id, E.authRequired)
  }
  let payload: ReturnType<typeof parseCallPayload>
  try {
    payload = parseCallPayload(params.payload)
  } catch {
    return refused(id, E.badPayload)
  }
  if (payload.nonce !== session.nonce) return refused(id, E.replayed)
  if (payload.method !== method) return refused(id, E.badPayload)
  // Only a call signed with the test's key can run: nothing else carries a valid signature.
  const honest = frame.intent === 'run'
  return {
    kind: 'call',
    id,
    method,
    mustRun: honest,
    mayRun: honest,
    refusals: [E.invalidParams, E.encoding, E.badSignature, E.wrongVM, E.badPayload, E.replayed],
  }
}
