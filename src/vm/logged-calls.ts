/**
 * What a VM logs of a call: the rules that admit a call, and the entries built from what its turns did.
 *
 * Admission — one list of rules, applied twice: to a live call before it is queued (a refusal is
 * thrown to the caller and nothing is logged), and to every logged call before replay or reopen
 * re-runs it (a logged call that breaks a rule is a divergence at its seq). So replay admits
 * exactly what a live VM admits: a host cannot log a call no live VM would have run. The rules, in
 * the order they are checked:
 * 1. the method is a function the script exported at load (an own property: not an inherited name
 *    such as `constructor` or `toString`), and not `init`;
 * 2. the arguments are a list that encodes to at most `limits.maxArgsBytes` characters, nested at most
 *    MAX_VALUE_DEPTH levels, in the tagged form a live VM logs (see codec/value-codec.ts);
 * 3. the caller is a string or null;
 * 4. the auth mode's caller check passes (auth/call-auth.ts: signatures, once each, in production mode;
 *    from schema 3 on, a signed call holds a client nonce and its entry logs that one);
 * 5. (logged calls) oracle values appear only in a factory's log: no other VM asks the host for any;
 *    and only as `{vms: [records]}`, each record in the shape a factory writes;
 * 6. (logged calls) a client nonce appears only in a log of schema 3 or later: no earlier VM logged one.
 *    (A live call's nonce is a string of 32 to 64 hex digits; a log of an earlier schema cannot hold
 *    it, and it is dropped there.)
 *
 * Entries — the init entry of a deploy and one call entry per call, field by field in a fixed order
 * (entries are compared as JSON text); the inputs of a call as they are logged; the seeds of new calls.
 */

import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import type { CallAuthenticator } from '../auth/call-auth.js'
import type { SignedCall } from '../auth/signed-call.js'
import { decodeValue, encodeValue, jsonDeeperThan, type TaggedValue } from '../codec/value-codec.js'
import { DivergenceError, EncodingError, InvalidArgumentError, LibVMSError, MethodNotFoundError } from '../errors.js'
import type { FilesState } from '../ledger/files-archive.js'
import { type CallEntry, CLIENT_NONCE, type EngineInfo, type InitEntry, LOG_SCHEMA } from '../ledger/log-entry.js'
import { ENGINE_NAME, ENGINE_VARIANT, ENGINE_VERSION } from '../sandbox/engine.js'
import { recordedLimits, type VMLimits } from '../sandbox/limits.js'
import type { CallOutcome, ExportInfo } from '../sandbox/sandbox.js'

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

/** A call as it will be logged, once admitted. */
export type AdmittedCall = Pick<CallEntry, 'caller' | 'method' | 'args' | 'signed' | 'clientNonce'>

export class CallAdmission {
  private readonly methods: Set<string>

  constructor(
    exports: ExportInfo[],
    private readonly limits: VMLimits,
    readonly authenticator: CallAuthenticator,
    private readonly factory = false,
  ) {
    this.methods = new Set(exports.filter((e) => e.callable && e.name !== 'init').map((e) => e.name))
  }

  /** The callable exports a caller may call. */
  get methodNames(): string[] {
    return [...this.methods]
  }

  /** Checks a live call; throws the refusal (nothing is logged). Returns the call as it will be logged. */
  admitLive(request: {
    methodName: unknown
    args?: unknown
    userId?: unknown
    signed?: SignedCall
    clientNonce?: unknown
    signatureChecked?: boolean
  }): AdmittedCall {
    const { methodName, args = [], userId = null, signed, clientNonce, signatureChecked } = request
    this.checkMethod(methodName)
    if (!Array.isArray(args)) throw new InvalidArgumentError('executeCall: args must be an array')
    if (userId !== null && typeof userId !== 'string') throw new InvalidArgumentError('executeCall: userId must be a string or null')
    if (clientNonce !== undefined && (typeof clientNonce !== 'string' || !CLIENT_NONCE.test(clientNonce))) {
      throw new InvalidArgumentError('executeCall: clientNonce must be 32 to 64 lowercase hex digits (a random value chosen for this call)')
    }
    const json = encodeValue(args, 'the argument list') ?? '[]'
    this.checkArgsSize(json)
    const auth = this.authenticator
    // A signature the RPC server verified already (signatureChecked) is not verified again.
    const payload = auth.admit(
      { caller: userId, method: methodName, argsJson: json, signed, clientNonce },
      signatureChecked === true ? true : undefined,
    )
    const call: AdmittedCall = { caller: userId, method: methodName, args: JSON.parse(json) as TaggedValue[] }
    if (signed !== undefined) call.signed = { payload: signed.payload, signature: signed.signature }
    // A signed call's nonce is the one it signed; a log before schema 3 has no place for one.
    const logged = payload?.clientNonce ?? clientNonce
    if (auth.clientNonces && logged !== undefined) call.clientNonce = logged
    return call
  }

  /**
   * Checks a logged call as a live VM would have checked it; throws a DivergenceError naming the seq.
   * `signatureValid`: its signature's check, done ahead (auth/signature-checks.ts). `checkAuth: false`
   * only takes note of its signed counter (a VM reopening its own log).
   */
  admitLogged(seq: number, entry: CallEntry, options: { signatureValid?: boolean; checkAuth?: boolean } = {}): void {
    const refuse = (rule: string, err: unknown) => {
      const who = entry.caller ? `caller ${entry.caller}` : 'an anonymous caller'
      return new DivergenceError({
        message: `call ${seq} (${entry.method} by ${who}) is one no live VM would have run: ${(err as Error).message}`,
        seq,
        method: entry.method,
        caller: entry.caller,
        field: rule,
        expected: 'a call a live VM admits',
        actual: err instanceof LibVMSError ? err.code : String(err),
      })
    }
    try {
      this.checkMethod(entry.method)
    } catch (err) {
      throw refuse('method', err)
    }
    try {
      const json = JSON.stringify(entry.args)
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
    else this.authenticator.checkLogged(seq, entry, options.signatureValid)
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

const require = createRequire(import.meta.url)

export const ENGINE_INFO: EngineInfo = {
  name: ENGINE_NAME,
  variant: ENGINE_VARIANT,
  version: ENGINE_VERSION,
  hyperdrive: require('hyperdrive/package.json').version,
  hyperbee: require('hyperbee/package.json').version,
  libvms: require('../../package.json').version,
}

/** A call's inputs, as they are (or will be) logged. */
export type CallInput = Pick<CallEntry, 'caller' | 'signed' | 'clientNonce' | 'method' | 'args' | 'timestamp' | 'seed' | 'oracle'>

/**
 * A call's outcome, and the oracle values it recorded if it ran live. On replay, `oracleUnused`
 * counts the recorded answers the call never asked for (see {@link checkOracleUsed}).
 */
export type RunOutcome = CallOutcome & { oracle?: Record<string, TaggedValue>; oracleUnused?: number }

/** The init turn's seed, derived from the logged one so top level and init draw different numbers. */
export function initSeed(seed: string): string {
  return createHash('sha256').update(`${seed}:init`).digest('hex').slice(0, 32)
}

export function buildInitEntry(
  fields: Pick<InitEntry, 'code' | 'title' | 'filesArchiveKey' | 'limits' | 'auth' | 'timestamp' | 'seed' | 'files'> & {
    costSchedule: number
    filesFormat: number
    exports: ExportInfo[]
    outcome: CallOutcome & { ok: true }
    loadCost: number
    factory?: boolean
    snapshotsKey?: string
  },
): InitEntry {
  const entry: InitEntry = {
    type: 'init',
    schema: LOG_SCHEMA,
    engine: ENGINE_INFO,
    code: fields.code,
    title: fields.title,
    filesArchiveKey: fields.filesArchiveKey,
    ...(fields.snapshotsKey !== undefined ? { snapshotsKey: fields.snapshotsKey } : {}),
    limits: recordedLimits(fields.limits, fields.costSchedule > 0),
    ...(fields.costSchedule > 0 ? { costSchedule: fields.costSchedule } : {}),
    ...(fields.filesFormat > 0 ? { filesFormat: fields.filesFormat } : {}),
    auth: fields.auth,
    timestamp: fields.timestamp,
    seed: fields.seed,
    exports: fields.exports.map((e) => e.name),
    ...(fields.factory ? { factory: true } : {}),
    files: fields.files,
    cost: fields.loadCost + fields.outcome.cost,
  }
  if (fields.outcome.value !== undefined) entry.result = fields.outcome.value
  return entry
}

/**
 * A replayed call must ask for every answer its entry records: a host that adds System.vms answers
 * the script never asked for (say, a VM it claims the factory provisioned) forges the factory's
 * registry, so leftover records are a divergence at the call's seq.
 */
export function checkOracleUsed(seq: number, logged: CallEntry, outcome: RunOutcome): void {
  if (!outcome.oracleUnused) return
  throw new DivergenceError({
    message: `call ${seq} (${logged.method}) records ${outcome.oracleUnused} System.vms answer(s) its replay never asked for: the host added oracle values to its log`,
    seq,
    method: logged.method,
    caller: logged.caller,
    field: 'oracle',
  })
}

export function buildCallEntry(input: CallInput, outcome: RunOutcome, files: FilesState): CallEntry {
  const oracle = input.oracle ?? outcome.oracle
  // Fields in a fixed order: entries are compared as JSON text.
  return {
    type: 'call',
    caller: input.caller,
    ...(input.signed ? { signed: input.signed } : {}),
    ...(input.clientNonce !== undefined ? { clientNonce: input.clientNonce } : {}),
    method: input.method,
    args: input.args,
    timestamp: input.timestamp,
    seed: input.seed,
    ...(oracle ? { oracle } : {}),
    ...(outcome.ok && outcome.value !== undefined ? { result: outcome.value } : {}),
    ...(outcome.ok ? {} : { error: outcome.error }),
    files,
    cost: outcome.cost,
  }
}

/** The inputs of a logged call entry, for replay. */
export function callInputOf({ caller, signed, clientNonce, method, args, timestamp, seed, oracle }: CallEntry): CallInput {
  return {
    caller,
    method,
    args,
    timestamp,
    seed,
    ...(signed && { signed }),
    ...(clientNonce !== undefined && { clientNonce }),
    ...(oracle && { oracle }),
  }
}
