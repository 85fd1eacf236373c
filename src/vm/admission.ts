/**
 * Admission: the rules that decide which calls a VM runs — one list, applied twice: to a live call
 * before it is queued (a refusal is thrown to the caller and nothing is logged), and to every logged
 * call before replay or reopen re-runs it (a logged call that breaks a rule is a divergence at its
 * seq). So replay admits exactly what a live VM admits: a host cannot log a call no live VM would have
 * run. The rules, in the order they are checked:
 * 1. the method is a function the script exported at load (an own property: not an inherited name
 *    such as `constructor` or `toString`), and not `init` (nor, from log schema 4 on, the `upgrade` hook);
 * 2. the arguments are a list that encodes to at most `limits.maxArgsBytes` characters, nested at most
 *    MAX_VALUE_DEPTH levels, in the tagged form a live VM logs (see codec/value-codec.ts);
 * 3. the caller is a string or null;
 * 4. the auth mode's caller check passes (auth/call-auth.ts: signatures, once each, in production mode;
 *    from schema 3 on, a signed call holds a client nonce and its entry logs that one);
 * 5. (logged calls) oracle values appear only in a factory's log: no other VM asks the host for any;
 *    and only as `{vms: [records]}`, each record in the shape a factory writes; and the call's replay
 *    asks for every one of them (`checkOracleUsed`, once it has run);
 * 6. (logged calls) a client nonce appears only in a log of schema 3 or later: no earlier VM logged one.
 *    (A live call's nonce is a string of 32 to 64 hex digits; a log of an earlier schema cannot hold
 *    it, and it is dropped there.)
 *
 * A live call comes either straight from a caller (`executeCall`: host values, encoded here once) or
 * from the RPC edge (`EdgeCall`: parsed and checked there, its arguments already in tagged form and
 * its signed payload parsed, so nothing is parsed or encoded twice). Admission returns the call as it
 * will be logged; the entry itself is built beside the log's schema (ledger/log-entry.ts).
 */
import type { CallAuthenticator } from '../auth/call-auth.js'
import type { AuthenticatedCall, CallPayload, ParsedSignedCall, SignedCall } from '../auth/signed-call.js'
import { decodeValue, type EncodedArgs, encodeArgs, encodeValue, jsonDeeperThan } from '../codec/value-codec.js'
import { DivergenceError, EncodingError, InvalidArgumentError, MethodNotFoundError } from '../errors.js'
import { type CallEntry, type CallInput, CLIENT_NONCE, callInputOf, type RunOutcome, UPGRADE_SCHEMA } from '../ledger/log-entry.js'
import type { VMLimits } from '../sandbox/limits.js'
import type { ExportInfo } from '../sandbox/sandbox.js'

/** The exports a VM factory's script must have (as callable own exports), live and on replay. */
export const FACTORY_EXPORTS = ['provisionVM', 'shutdownVM'] as const

/** The names in `required` the script does not export as a function. */
export function missingExports(exports: ExportInfo[], required: readonly string[]): string[] {
  return required.filter((name) => !exports.some((e) => e.name === name && e.callable))
}

/** The shape of a System.vms record as OracleSession writes it (src/vm/system-api.ts): nothing more. */
function isOracleRecord(record: unknown): boolean {
  if (record === null || typeof record !== 'object' || Array.isArray(record)) return false
  const r = record as Record<string, unknown>
  const keys = Object.keys(r)
  if (typeof r.op !== 'string' || !keys.includes('args') || keys.some((k) => !['op', 'args', 'result', 'error'].includes(k))) return false
  if (r.error === undefined) return true
  const e = r.error as Record<string, unknown> | null
  return (
    !keys.includes('result') &&
    e !== null &&
    typeof e === 'object' &&
    typeof e.name === 'string' &&
    typeof e.message === 'string' &&
    Object.keys(e).length === 2
  )
}

/** Why a logged call's oracle values are not ones a live VM records (rule 5), or null. */
function oracleProblemOf(oracle: CallEntry['oracle'], factory: boolean): string | null {
  if (oracle === undefined) return null
  if (!factory) return 'the entry records oracle values, but only a VM factory asks its host for any'
  if (Object.keys(oracle).some((k) => k !== 'vms') || !Array.isArray(oracle.vms))
    return 'a factory records only {vms: [...]} as oracle values'
  if (!oracle.vms.every(isOracleRecord))
    return 'each System.vms record is {op, args} with a result or an {name, message} error, as a factory records it'
  return null
}

/**
 * A call the RPC edge parsed and checked (rpc/rpc-connection.ts): its arguments in the tagged form a
 * VM logs, made once from the request's params or, in production mode, from its signed payload's args;
 * and then its signed call, parsed, whose signature the edge verified with the caller's key.
 * Admission checks the rest (rules 1 to 4), parsing and encoding nothing again.
 */
export interface EdgeCall {
  args: EncodedArgs
  signed?: ParsedSignedCall
}

/** A live call as it is asked for (its fields unchecked): by a caller directly, or from the RPC edge (`edge`). */
export interface LiveCall {
  methodName: unknown
  /** Host values (a direct call; not read when `edge` is given). */
  args?: unknown
  userId?: unknown
  /** A direct call's signed call (not read when `edge` is given). */
  signed?: SignedCall
  clientNonce?: unknown
  edge?: EdgeCall
}

/**
 * A call as it will be logged, once admitted, and its arguments' text; `signedPayload`: its signed
 * payload, parsed, whose counter its run advances (CallCounters.noteRun).
 */
export type AdmittedCall = Omit<CallInput, 'timestamp' | 'seed'> & { signedPayload?: CallPayload }

export class CallAdmission {
  private readonly methods: Set<string>

  constructor(
    exports: ExportInfo[],
    private readonly limits: VMLimits,
    readonly authenticator: CallAuthenticator,
    private readonly factory = false,
  ) {
    // From log schema 4 on, `upgrade` is the upgrade hook: like `init`, never a caller's to call.
    const hooks = authenticator.schema >= UPGRADE_SCHEMA ? ['init', 'upgrade'] : ['init']
    this.methods = new Set(exports.filter((e) => e.callable && !hooks.includes(e.name)).map((e) => e.name))
  }

  /** The callable exports a caller may call. */
  get methodNames(): string[] {
    return [...this.methods]
  }

  /** Checks a live call; throws the refusal (nothing is logged). Returns the call as it will be logged. */
  admitLive(request: LiveCall): AdmittedCall {
    const { methodName, userId = null, clientNonce, edge } = request
    this.checkMethod(methodName)
    const args = request.args === undefined ? [] : request.args
    if (!edge && !Array.isArray(args)) throw new InvalidArgumentError('executeCall: args must be an array')
    if (userId !== null && typeof userId !== 'string') throw new InvalidArgumentError('executeCall: userId must be a string or null')
    if (clientNonce !== undefined && (typeof clientNonce !== 'string' || !CLIENT_NONCE.test(clientNonce))) {
      throw new InvalidArgumentError('executeCall: clientNonce must be 32 to 64 lowercase hex digits (a random value chosen for this call)')
    }
    const encoded = edge ? edge.args : encodeArgs(args as unknown[])
    this.checkArgsSize(encoded.json)
    const signed = edge ? edge.signed?.signed : request.signed
    const call: AuthenticatedCall = { caller: userId, method: methodName, argsJson: encoded.json, signed, clientNonce }
    if (edge?.signed) {
      // Parsed at the edge, its signature verified there, its arguments taken from its payload.
      call.payload = edge.signed.payload
      call.argsAsSigned = !encoded.reencoded
      call.signatureValid = true
    }
    const auth = this.authenticator
    const payload = auth.admit(call)
    const admitted: AdmittedCall = { caller: userId, method: methodName, args: encoded.values, argsJson: encoded.json }
    if (signed !== undefined) admitted.signed = { payload: signed.payload, signature: signed.signature }
    if (payload) admitted.signedPayload = payload
    // A signed call's nonce is the one it signed; a log before schema 3 has no place for one.
    const logged = payload?.clientNonce ?? clientNonce
    if (auth.clientNonces && logged !== undefined) admitted.clientNonce = logged
    return admitted
  }

  /**
   * Checks a logged call as a live VM would have checked it; throws a DivergenceError naming the seq.
   * Returns its inputs, to re-run it. `signatureValid`: its signature's check, done ahead
   * (auth/signature-checks.ts). `checkAuth: false` only takes note of its signed counter (a VM
   * reopening its own log).
   */
  admitLogged(seq: number, entry: CallEntry, options: { signatureValid?: boolean; checkAuth?: boolean } = {}): CallInput {
    const refuse = (rule: string, err: unknown) => DivergenceError.INADMISSIBLE(seq, entry, rule, err)
    try {
      this.checkMethod(entry.method)
    } catch (err) {
      throw refuse('method', err)
    }
    let json: string
    try {
      json = JSON.stringify(entry.args)
      this.checkArgsSize(json)
      // (Live args were bounded in depth while they were encoded; logged ones are checked here.)
      if (jsonDeeperThan(json)) throw new EncodingError('the arguments are nested deeper than the most a value may have')
      // The tagged form a live VM logs: decoding and encoding again gives the same text.
      if (json.includes('"$') && encodeValue(decodeValue(json, 'the arguments'), 'the arguments') !== json) {
        throw new EncodingError('the arguments are not in the tagged form a live VM logs (a malformed or needless $bytes/$esc tag)')
      }
    } catch (err) {
      throw refuse('args', err)
    }
    const oracleProblem = oracleProblemOf(entry.oracle, this.factory)
    if (oracleProblem) throw refuse('oracle', new EncodingError(oracleProblem))
    if (entry.clientNonce !== undefined && !this.authenticator.clientNonces) {
      throw refuse('clientNonce', new EncodingError('the entry holds a client nonce, which no VM logged before log schema 3'))
    }
    if (options.checkAuth === false) this.authenticator.remember(entry)
    else this.authenticator.checkLogged(seq, entry, json, options.signatureValid)
    return callInputOf(entry, json)
  }

  private checkMethod(methodName: unknown): asserts methodName is string {
    if (typeof methodName !== 'string' || !this.methods.has(methodName)) throw new MethodNotFoundError(String(methodName))
  }

  private checkArgsSize(json: string): void {
    const limit = this.limits.maxArgsBytes
    if (json.length > limit) {
      throw new InvalidArgumentError(`the arguments encode to ${json.length} bytes, over the VM's limit of ${limit} (limits.maxArgsBytes)`)
    }
  }
}

/**
 * Rule 5, once a logged call has run: a replayed call must ask for every answer its entry records. A
 * host that adds System.vms answers the script never asked for (say, a VM it claims the factory
 * provisioned) forges the factory's registry, so leftover records are a divergence at the call's seq.
 */
export function checkOracleUsed(seq: number, logged: CallEntry, outcome: RunOutcome): void {
  if (!outcome.oracleUnused) return
  throw DivergenceError.ORACLE_UNUSED(seq, logged, outcome.oracleUnused)
}
