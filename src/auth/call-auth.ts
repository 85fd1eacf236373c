/**
 * Who may call, by auth mode. Debug mode takes callers' ids on trust and carries no signatures.
 * Production mode admits a call with a caller only if that caller signed it for this VM, and only
 * once (signed-call.ts); a call with no caller is the host's own and is logged as such (caller null,
 * unattributed). The VM admits calls through this before queueing them; replay checks every logged
 * call through it, so a log holding a call its caller did not sign fails verification at that seq.
 * From log schema 3 on, a signed call must also hold a client nonce, which its entry logs.
 *
 * The authenticator holds the VM's one set of signed-call counters (`counters`): live admission and
 * the log's calls take them here; the VM's executor shares the same object to advance the run marks
 * and to put them in snapshots.
 */
import { AuthError, DivergenceError } from '../errors.js'
import { type AuthMode, type CallEntry, CLIENT_NONCE_SCHEMA } from '../ledger/log-entry.js'
import { type AuthenticatedCall, CallCounters, type CallPayload, checkSignedCall, parseCallPayload } from './signed-call.js'

export class CallAuthenticator {
  /** The counters of this VM's signed calls (its only set: see CallCounters). */
  readonly counters = new CallCounters()
  /** Whether the log's entries hold their clients' nonces (schema 3 and later). */
  readonly clientNonces: boolean

  constructor(
    readonly mode: AuthMode,
    private readonly callLogKey: string,
    /** The log's schema (its init entry's). */
    readonly schema: number,
  ) {
    this.clientNonces = schema >= CLIENT_NONCE_SCHEMA
  }

  /**
   * Checks a live call before it is queued; throws AuthError (the call is then not run and not logged).
   * Returns its signed payload, if it has one, whose counter it takes.
   */
  admit(call: AuthenticatedCall): CallPayload | null {
    const payload = this.check(call)
    if (payload) this.counters.take(payload)
    return payload
  }

  /** The mode's check of a call, its counter aside; throws AuthError. */
  private check(call: AuthenticatedCall): CallPayload | null {
    if (this.mode === 'debug') {
      if (call.signed !== undefined) {
        throw new AuthError('ERR_AUTH_MODE', 'this VM runs in debug mode: calls are not signed; call with a user id instead')
      }
      return null
    }
    if (call.caller === null && call.signed === undefined) return null
    return checkSignedCall(call, this.callLogKey, this.clientNonces)
  }

  /**
   * Takes note of a call in the VM's own log (on reopen), so it cannot be admitted again; its
   * signature is not checked again (the VM checked it when it logged the call).
   */
  remember(entry: CallEntry): void {
    if (entry.signed) this.counters.takeLogged(parseCallPayload(entry.signed.payload))
  }

  /** A logged call as the caller check sees it; `argsJson`: its arguments' text, when written already. */
  loggedCall(entry: CallEntry, argsJson: string = JSON.stringify(entry.args)): AuthenticatedCall {
    const { caller, method, signed } = entry
    // Schema 3: the nonce the entry logs must be the one its caller signed (none logged is not it).
    const clientNonce = this.clientNonces ? (entry.clientNonce ?? null) : undefined
    return { caller, method, argsJson, signed, clientNonce }
  }

  /**
   * Checks a logged call as an auditor would, and takes its counter in log order; throws a
   * DivergenceError naming its seq. `argsJson`: its arguments' text (the caller wrote it already);
   * `signatureValid`: its signature's check, made ahead (signature-checks.ts).
   */
  checkLogged(seq: number, entry: CallEntry, argsJson: string, signatureValid?: boolean): void {
    try {
      const payload = this.check({ ...this.loggedCall(entry, argsJson), signatureValid })
      if (payload) this.counters.takeLogged(payload)
    } catch (err) {
      if (!(err instanceof AuthError)) throw err
      throw DivergenceError.CALLER_CHECK(seq, entry, this.mode, err)
    }
  }
}
