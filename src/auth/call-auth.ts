/**
 * Who may call, by auth mode. Debug mode takes callers' ids on trust and carries no signatures.
 * Production mode admits a call with a caller only if that caller signed it for this VM, and only
 * once (signed-call.ts); a call with no caller is the host's own and is logged as such (caller null,
 * unattributed). The VM admits calls through this before queueing them; replay checks every logged
 * call through it, so a log holding a call its caller did not sign fails verification at that seq.
 * From log schema 3 on, a signed call must also hold a client nonce, which its entry logs.
 */
import { AuthError, DivergenceError } from '../errors.js'
import { type AuthMode, type CallEntry, CLIENT_NONCE_SCHEMA } from '../ledger/log-entry.js'
import { type AuthenticatedCall, CallCounters, type CallPayload, checkSignedCall, parseCallPayload } from './signed-call.js'

export class CallAuthenticator {
  private readonly counters = new CallCounters()
  /** Whether the log's entries hold their clients' nonces (schema 3 and later). */
  readonly clientNonces: boolean

  constructor(
    readonly mode: AuthMode,
    private readonly callLogKey: string,
    /** The log's schema (its init entry's). */
    schema: number,
  ) {
    this.clientNonces = schema >= CLIENT_NONCE_SCHEMA
  }

  /**
   * Checks a call before it runs; throws AuthError (the call is then not run and not logged).
   * Returns its signed payload, if it has one. `signatureValid`: the outcome of checking its
   * signature elsewhere (see signature-checks.ts).
   */
  admit(call: AuthenticatedCall, signatureValid?: boolean): CallPayload | null {
    if (this.mode === 'debug') {
      if (call.signed !== undefined) {
        throw new AuthError('ERR_AUTH_MODE', 'this VM runs in debug mode: calls are not signed; call with a user id instead')
      }
      return null
    }
    if (call.caller === null && call.signed === undefined) return null
    const payload = checkSignedCall(call, this.callLogKey, this.clientNonces, signatureValid)
    this.counters.accept(payload)
    return payload
  }

  /** Takes note of a call in the VM's own log (on reopen), so it cannot be admitted again. */
  remember(entry: CallEntry): void {
    if (entry.signed) this.counters.accept(parseCallPayload(entry.signed.payload))
  }

  /** Takes note of the counters a snapshot kept (the signed calls before it), so none can be admitted again. */
  loadCounters(list: readonly (readonly [string, number])[]): void {
    this.counters.load(list)
  }

  /** A logged call as admit() checks it. */
  loggedCall(entry: CallEntry): AuthenticatedCall {
    const { caller, method, args, signed } = entry
    // Schema 3: the nonce the entry logs must be the one its caller signed (none logged is not it).
    const clientNonce = this.clientNonces ? (entry.clientNonce ?? null) : undefined
    return { caller, method, argsJson: JSON.stringify(args), signed, clientNonce }
  }

  /** Checks a logged call as an auditor would; throws a DivergenceError naming its seq. */
  checkLogged(seq: number, entry: CallEntry, signatureValid?: boolean): void {
    try {
      this.admit(this.loggedCall(entry), signatureValid)
    } catch (err) {
      if (!(err instanceof AuthError)) throw err
      const who = entry.caller ? `caller ${entry.caller}` : 'an anonymous caller'
      throw new DivergenceError({
        message: `call ${seq} (${entry.method} by ${who}) fails the ${this.mode}-mode caller check (${err.code}): ${err.message}`,
        seq,
        method: entry.method,
        caller: entry.caller,
        field: 'signed',
        expected: 'a call its caller signed for this VM, once',
        actual: err.code,
      })
    }
  }
}
