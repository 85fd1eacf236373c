/**
 * Admission (vm/admission.ts), rule by rule, live and on replay: a call a live VM admits is logged in a
 * form replay admits, and a call a live VM refuses is refused on replay with the same code when a host
 * logs it anyway. Each rule's calls go through three admissions of the same VM: a direct caller's
 * (`executeCall`: host values), the RPC edge's (EdgeCall: parsed and checked once, as
 * rpc-connection.ts hands it over) where it applies, and replay's (`admitLogged`, on the entry as a log
 * holds it). The exports are a real script's, loaded in a real sandbox; signatures are real Ed25519.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import test from 'node:test'
import { CallAuthenticator } from '../src/auth/call-auth.js'
import { callerIdOf, generateKeyPair, type KeyPair } from '../src/auth/key-pair.js'
import { encodeCallPayload, parseCallPayload, type SignedCall, signatureVerifies, signCallPayload } from '../src/auth/signed-call.js'
import { encodeArgs, MAX_VALUE_DEPTH, taggedArgs } from '../src/codec/value-codec.js'
import { DivergenceError, LibVMSError, LogFormatError } from '../src/errors.js'
import { type AuthMode, buildCallEntry, type CallEntry, decodeEntry, LOG_SCHEMA } from '../src/ledger/log-entry.js'
import { DEFAULT_LIMITS } from '../src/sandbox/limits.js'
import { type ExportInfo, Sandbox } from '../src/sandbox/sandbox.js'
import { type AdmittedCall, CallAdmission, checkOracleUsed, type LiveCall } from '../src/vm/admission.js'

const SCRIPT = `
exports.inc = (n) => n + 1
exports.init = () => {}
exports.value = 1
exports.provisionVM = () => {}
exports.shutdownVM = () => {}
`
const LOG_KEY = randomBytes(32).toString('hex')
const OTHER_LOG_KEY = randomBytes(32).toString('hex')
const FILES = { version: 1, dbHash: '0'.repeat(64), blobsLength: 0, blobsHash: '0'.repeat(64) }
const SEED = '0'.repeat(32)
const NONCE = randomBytes(16).toString('hex')
const MAX_ARGS_BYTES = 4096

/** The refusal code of a call, or 'admitted'. */
type Outcome = 'admitted' | string

interface VMSetup {
  mode?: AuthMode
  schema?: number
  factory?: boolean
}

interface Call {
  /** The call as a caller asks for it (absent: a call only a host's log can hold). */
  live?: LiveCall
  /** The entry as a log holds it; by default what the live VM logged or, refused, the call as a host would log it anyway. */
  logged?: Record<string, unknown>
  /** The outcome, live and on replay. */
  expect: Outcome
  /** On replay, when the log's reader refuses the entry's shape before admission sees it. */
  expectLogged?: Outcome
  /** Through the RPC edge's parsed form too (a signed call that reaches the VM): its outcome there. */
  edge?: Outcome
}

interface Case {
  rule: string
  label: string
  vm?: VMSetup
  calls: Call[]
}

let exportsOnce: Promise<ExportInfo[]> | null = null

/** The exports of SCRIPT as a real sandbox lists them. */
function scriptExports(): Promise<ExportInfo[]> {
  exportsOnce ??= (async () => {
    const sandbox = await Sandbox.create({ limits: { ...DEFAULT_LIMITS } })
    try {
      await sandbox.loadScript(SCRIPT, { timestamp: 0, seed: SEED, callerId: null })
      return sandbox.exports
    } finally {
      sandbox.dispose()
    }
  })()
  return exportsOnce
}

async function admissionOf({ mode = 'debug', schema = LOG_SCHEMA, factory = false }: VMSetup = {}): Promise<CallAdmission> {
  const authenticator = new CallAuthenticator(mode, LOG_KEY, schema)
  return new CallAdmission(await scriptExports(), { ...DEFAULT_LIMITS, maxArgsBytes: MAX_ARGS_BYTES }, authenticator, factory)
}

function codeOf(err: unknown): string {
  if (err instanceof LibVMSError) return err.code
  throw err
}

function admitLive(admission: CallAdmission, request: LiveCall): [Outcome, AdmittedCall | null] {
  try {
    return ['admitted', admission.admitLive(request)]
  } catch (err) {
    return [codeOf(err), null]
  }
}

/** The field a divergence names for each rule. */
const FIELD: Record<string, string> = { method: 'method', args: 'args', auth: 'signed', oracle: 'oracle', clientNonce: 'clientNonce' }

/** Replay's admission of `entry` at `seq`, read from its bytes as a log's reader reads it. */
function admitLogged(admission: CallAdmission, seq: number, entry: Record<string, unknown>, rule: string): Outcome {
  let read: CallEntry
  try {
    read = decodeEntry(Buffer.from(JSON.stringify(entry)), seq) as CallEntry
  } catch (err) {
    assert.ok(err instanceof LogFormatError, String(err))
    return err.code
  }
  try {
    const input = admission.admitLogged(seq, read)
    assert.equal(input.argsJson, JSON.stringify(read.args), 'the arguments text replay runs is the logged one')
    return 'admitted'
  } catch (err) {
    assert.ok(err instanceof DivergenceError, String(err))
    assert.equal(err.seq, seq)
    if (FIELD[rule]) assert.equal(err.field, FIELD[rule], err.message)
    return String(err.actual)
  }
}

/** The entry a live VM logs for an admitted call. */
function loggedEntryOf(admitted: AdmittedCall): Record<string, unknown> {
  const { signedPayload: _parsed, ...input } = admitted
  return buildCallEntry({ ...input, timestamp: 1000, seed: SEED }, { ok: true, cost: 1 }, FILES) as unknown as Record<string, unknown>
}

/** The client nonce a signed payload holds, if it parses and holds one. */
function signedNonceOf(signed: SignedCall | undefined): string | undefined {
  try {
    return signed ? parseCallPayload(signed.payload).clientNonce : undefined
  } catch {
    return undefined
  }
}

/** A call a live VM refused, as a host that logs it anyway would (with the client nonce it signed, if any). */
function forgedEntryOf(request: LiveCall): Record<string, unknown> {
  const clientNonce = request.clientNonce ?? signedNonceOf(request.signed)
  return {
    type: 'call',
    caller: request.userId ?? null,
    ...(request.signed ? { signed: request.signed } : {}),
    ...(clientNonce !== undefined ? { clientNonce } : {}),
    method: request.methodName,
    args: encodeArgs((request.args ?? []) as unknown[]).values,
    timestamp: 1000,
    seed: SEED,
    files: FILES,
    cost: 1,
  }
}

/** The call as the RPC edge hands it over: its signed payload parsed once, its arguments taken from it. */
function throughEdge(request: LiveCall): LiveCall {
  const signed = request.signed as SignedCall
  const payload = parseCallPayload(signed.payload)
  assert.ok(signatureVerifies(signed, request.userId as string), 'only a call whose signature holds reaches the VM from the edge')
  const edged: LiveCall = {
    methodName: request.methodName,
    userId: request.userId,
    edge: { args: taggedArgs(payload.args), signed: { signed, payload } },
  }
  if (request.clientNonce !== undefined) edged.clientNonce = request.clientNonce
  return edged
}

const alice = generateKeyPair()
const mallory = generateKeyPair()

/** A call signed by `keyPair` (by default: for this VM, on one connection, with a fresh client nonce). */
function signedCall(
  keyPair: KeyPair,
  fields: { method?: string; args?: unknown[]; argsJson?: string; counter?: number; callLog?: string; clientNonce?: string | null } = {},
): LiveCall {
  const method = fields.method ?? 'inc'
  const args = fields.args ?? [1]
  const clientNonce = fields.clientNonce === null ? undefined : (fields.clientNonce ?? randomBytes(16).toString('hex'))
  const payload = encodeCallPayload({
    callLog: fields.callLog ?? LOG_KEY,
    method,
    argsJson: fields.argsJson ?? encodeArgs(args).json,
    nonce: NONCE,
    counter: fields.counter ?? 1,
    clientNonce,
  })
  return { methodName: method, args, userId: callerIdOf(keyPair), signed: signCallPayload(payload, keyPair.secretKey) }
}

function nested(depth: number): unknown {
  let v: unknown = 0
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

const CASES: Case[] = [
  // 1. the method
  { rule: 'method', label: 'an exported function', calls: [{ live: { methodName: 'inc', args: [1] }, expect: 'admitted' }] },
  { rule: 'method', label: 'init', calls: [{ live: { methodName: 'init' }, expect: 'ERR_METHOD_NOT_FOUND' }] },
  { rule: 'method', label: 'a name the script does not export', calls: [{ live: { methodName: 'nope' }, expect: 'ERR_METHOD_NOT_FOUND' }] },
  { rule: 'method', label: 'an inherited name', calls: [{ live: { methodName: 'toString' }, expect: 'ERR_METHOD_NOT_FOUND' }] },
  { rule: 'method', label: 'an export that is not a function', calls: [{ live: { methodName: 'value' }, expect: 'ERR_METHOD_NOT_FOUND' }] },
  // 2. the arguments
  {
    rule: 'args',
    label: 'bytes, logged tagged',
    calls: [{ live: { methodName: 'inc', args: [new Uint8Array([1, 2])] }, expect: 'admitted' }],
  },
  {
    rule: 'args',
    label: 'arguments over maxArgsBytes',
    calls: [{ live: { methodName: 'inc', args: ['x'.repeat(MAX_ARGS_BYTES)] }, expect: 'ERR_INVALID_ARGUMENT' }],
  },
  {
    rule: 'args',
    label: 'an argument list nested at the depth bound',
    calls: [{ live: { methodName: 'inc', args: [nested(MAX_VALUE_DEPTH - 1)] }, expect: 'admitted' }],
  },
  {
    rule: 'args',
    label: 'an argument list nested past the depth bound',
    calls: [
      {
        live: { methodName: 'inc', args: [nested(MAX_VALUE_DEPTH)] },
        logged: { ...forgedEntryOf({ methodName: 'inc' }), args: [nested(MAX_VALUE_DEPTH)] },
        expect: 'ERR_ENCODING',
      },
    ],
  },
  {
    rule: 'args',
    label: 'a needless escape: the edge writes it plainly, and only the plain form is logged',
    calls: [
      { live: { methodName: 'inc', edge: { args: taggedArgs([{ $esc: ['a', 1] }]) } }, expect: 'admitted' },
      { logged: { ...forgedEntryOf({ methodName: 'inc' }), args: [{ $esc: ['a', 1] }] }, expect: 'ERR_ENCODING' },
    ],
  },
  {
    rule: 'args',
    label: 'bytes in unpadded base64 (not the form a live VM logs)',
    calls: [{ logged: { ...forgedEntryOf({ methodName: 'inc' }), args: [{ $bytes: 'AQ' }] }, expect: 'ERR_ENCODING' }],
  },
  // 3. the caller
  { rule: 'caller', label: 'a user id', calls: [{ live: { methodName: 'inc', args: [1], userId: 'alice' }, expect: 'admitted' }] },
  {
    rule: 'caller',
    label: 'a caller that is not a string',
    // A log's reader refuses such an entry for its shape, before admission sees it.
    calls: [{ live: { methodName: 'inc', userId: 5 }, expect: 'ERR_INVALID_ARGUMENT', expectLogged: 'ERR_LOG_FORMAT' }],
  },
  // 4. the auth mode's caller check
  {
    rule: 'auth',
    label: 'debug mode: a signed call',
    calls: [{ live: signedCall(alice), expect: 'ERR_AUTH_MODE' }],
  },
  {
    rule: 'auth',
    label: 'production mode: the host itself (no caller, no signature)',
    vm: { mode: 'production' },
    calls: [{ live: { methodName: 'inc', args: [1] }, expect: 'admitted' }],
  },
  {
    rule: 'auth',
    label: 'production mode: a caller without a signature',
    vm: { mode: 'production' },
    calls: [{ live: { methodName: 'inc', args: [1], userId: callerIdOf(alice) }, expect: 'ERR_AUTH_REQUIRED' }],
  },
  {
    rule: 'auth',
    label: 'production mode: a signed call',
    vm: { mode: 'production' },
    calls: [{ live: signedCall(alice), expect: 'admitted', edge: 'admitted' }],
  },
  {
    rule: 'auth',
    label: 'production mode: signed for another VM',
    vm: { mode: 'production' },
    calls: [{ live: signedCall(alice, { callLog: OTHER_LOG_KEY }), expect: 'ERR_WRONG_VM', edge: 'ERR_WRONG_VM' }],
  },
  {
    rule: 'auth',
    label: 'production mode: signed for another method',
    vm: { mode: 'production' },
    calls: [
      { live: { ...signedCall(alice, { method: 'shutdownVM' }), methodName: 'inc' }, expect: 'ERR_BAD_PAYLOAD', edge: 'ERR_BAD_PAYLOAD' },
    ],
  },
  {
    rule: 'auth',
    label: 'production mode: signed with other arguments',
    vm: { mode: 'production' },
    calls: [{ live: { ...signedCall(alice, { args: [1] }), args: [2] }, expect: 'ERR_BAD_PAYLOAD' }],
  },
  {
    rule: 'auth',
    label: 'production mode: signed with arguments in a form no VM logs',
    vm: { mode: 'production' },
    calls: [
      { live: signedCall(alice, { args: [{ a: 1 }], argsJson: '[{"$esc":["a",1]}]' }), expect: 'ERR_BAD_PAYLOAD', edge: 'ERR_BAD_PAYLOAD' },
    ],
  },
  {
    rule: 'auth',
    label: "production mode: another key's signature",
    vm: { mode: 'production' },
    calls: [{ live: { ...signedCall(mallory), userId: callerIdOf(alice) }, expect: 'ERR_BAD_SIGNATURE' }],
  },
  {
    rule: 'auth',
    label: 'production mode: a payload that is not JSON',
    vm: { mode: 'production' },
    calls: [{ live: { ...signedCall(alice), signed: signCallPayload('{"type":', alice.secretKey) }, expect: 'ERR_BAD_PAYLOAD' }],
  },
  {
    rule: 'auth',
    label: 'production mode, schema 3: signed without a client nonce',
    vm: { mode: 'production' },
    calls: [{ live: signedCall(alice, { clientNonce: null }), expect: 'ERR_BAD_PAYLOAD', edge: 'ERR_BAD_PAYLOAD' }],
  },
  {
    rule: 'auth',
    label: 'production mode: another client nonce beside the signed one',
    vm: { mode: 'production' },
    calls: [{ live: { ...signedCall(alice), clientNonce: 'ab'.repeat(16) }, expect: 'ERR_BAD_PAYLOAD', edge: 'ERR_BAD_PAYLOAD' }],
  },
  {
    rule: 'auth',
    label: 'production mode, schema 2: signed without a client nonce',
    vm: { mode: 'production', schema: 2 },
    calls: [{ live: signedCall(alice, { clientNonce: null }), expect: 'admitted', edge: 'admitted' }],
  },
  {
    rule: 'auth',
    label: 'production mode: the same signed call twice',
    vm: { mode: 'production' },
    calls: (() => {
      const call = signedCall(alice, { counter: 1 })
      return [
        { live: call, expect: 'admitted', edge: 'admitted' },
        { live: call, expect: 'ERR_REPLAYED', edge: 'ERR_REPLAYED' },
      ]
    })(),
  },
  {
    rule: 'auth',
    label: "production mode: a caller's calls out of order",
    vm: { mode: 'production' },
    calls: [
      { live: signedCall(alice, { counter: 2 }), expect: 'admitted', edge: 'admitted' },
      { live: signedCall(alice, { counter: 1 }), expect: 'ERR_REPLAYED', edge: 'ERR_REPLAYED' },
      { live: signedCall(alice, { counter: 3 }), expect: 'admitted', edge: 'admitted' },
    ],
  },
  // 5. oracle values (only a log holds them; a live call brings none)
  {
    rule: 'oracle',
    label: 'oracle values in the log of a VM that is not a factory',
    calls: [{ logged: { ...forgedEntryOf({ methodName: 'inc' }), oracle: { vms: [] } }, expect: 'ERR_ENCODING' }],
  },
  {
    rule: 'oracle',
    label: "a factory's System.vms records, as it writes them",
    vm: { factory: true },
    calls: [
      {
        logged: {
          ...forgedEntryOf({ methodName: 'inc' }),
          oracle: {
            vms: [
              { op: 'provision', args: [], result: 1 },
              { op: 'x', args: [], error: { name: 'E', message: 'm' } },
            ],
          },
        },
        expect: 'admitted',
      },
    ],
  },
  {
    rule: 'oracle',
    label: 'a factory record in another shape',
    vm: { factory: true },
    calls: [
      {
        logged: { ...forgedEntryOf({ methodName: 'inc' }), oracle: { vms: [{ op: 'provision', args: [], extra: 1 }] } },
        expect: 'ERR_ENCODING',
      },
    ],
  },
  {
    rule: 'oracle',
    label: 'factory oracle values other than System.vms',
    vm: { factory: true },
    calls: [{ logged: { ...forgedEntryOf({ methodName: 'inc' }), oracle: { other: 1 } }, expect: 'ERR_ENCODING' }],
  },
  // 6. client nonces, by the log's schema
  {
    rule: 'clientNonce',
    label: 'schema 3: a client nonce, logged',
    calls: [{ live: { methodName: 'inc', args: [1], clientNonce: 'cd'.repeat(16) }, expect: 'admitted' }],
  },
  {
    rule: 'clientNonce',
    label: 'schema 2: a client nonce, dropped (no place for it in the log)',
    vm: { schema: 2 },
    calls: [{ live: { methodName: 'inc', args: [1], clientNonce: 'cd'.repeat(16) }, expect: 'admitted' }],
  },
  {
    rule: 'clientNonce',
    label: 'schema 2: a client nonce in the log',
    vm: { schema: 2 },
    calls: [{ logged: { ...forgedEntryOf({ methodName: 'inc' }), clientNonce: 'cd'.repeat(16) }, expect: 'ERR_ENCODING' }],
  },
  {
    rule: 'clientNonce',
    label: 'a malformed client nonce',
    // A log's reader refuses such an entry for its shape, before admission sees it.
    calls: [{ live: { methodName: 'inc', clientNonce: 'XYZ' }, expect: 'ERR_INVALID_ARGUMENT', expectLogged: 'ERR_LOG_FORMAT' }],
  },
]

for (const { rule, label, vm, calls } of CASES) {
  test(`admission, ${rule}: ${label}: the same outcome live${calls.some((c) => c.edge) ? ', from the RPC edge' : ''} and on replay`, async () => {
    const live = await admissionOf(vm)
    const edge = await admissionOf(vm)
    const replay = await admissionOf(vm)
    for (const [i, call] of calls.entries()) {
      let admitted: AdmittedCall | null = null
      if (call.live) {
        const [outcome, made] = admitLive(live, call.live)
        assert.equal(outcome, call.expect, `call ${i + 1}, live`)
        admitted = made
        if (admitted) {
          assert.equal(admitted.argsJson, JSON.stringify(admitted.args), 'the arguments text is that of the logged arguments')
          assert.equal('oracle' in admitted, false, 'a live call brings no oracle values')
        }
      }
      if (call.edge && call.live) {
        const [outcome, made] = admitLive(edge, throughEdge(call.live))
        assert.equal(outcome, call.edge, `call ${i + 1}, from the edge`)
        // What the edge hands over is logged exactly as what a direct caller hands over.
        if (made && admitted) assert.deepEqual(loggedEntryOf(made), loggedEntryOf(admitted))
      }
      const entry = call.logged ?? (admitted ? loggedEntryOf(admitted) : forgedEntryOf(call.live as LiveCall))
      assert.equal(admitLogged(replay, i + 1, entry, rule), call.expectLogged ?? call.expect, `call ${i + 1}, on replay`)
    }
  })
}

test('admission: a schema 2 log keeps no client nonce, and a signed call logs the one it signed', async () => {
  const old = await admissionOf({ schema: 2 })
  assert.equal(old.admitLive({ methodName: 'inc', args: [1], clientNonce: 'cd'.repeat(16) }).clientNonce, undefined)
  const production = await admissionOf({ mode: 'production' })
  const call = signedCall(alice, { clientNonce: 'ef'.repeat(16) })
  assert.equal(production.admitLive(call).clientNonce, 'ef'.repeat(16))
})

test('admission, oracle: a replayed call must ask for every answer its entry records', () => {
  const entry = forgedEntryOf({ methodName: 'inc' }) as unknown as CallEntry
  checkOracleUsed(3, entry, { ok: true, cost: 1, oracleUnused: 0 })
  assert.throws(
    () => checkOracleUsed(3, entry, { ok: true, cost: 1, oracleUnused: 2 }),
    (err: DivergenceError) => {
      assert.equal(err.seq, 3)
      assert.equal(err.field, 'oracle')
      return true
    },
  )
})

test('signed-call counters: one set per VM; a snapshot holds the calls run, never those queued behind them', async () => {
  const admission = await admissionOf({ mode: 'production' })
  const counters = admission.authenticator.counters
  const first = admission.admitLive(signedCall(alice, { counter: 1 }))
  const second = admission.admitLive(signedCall(alice, { counter: 2 }))
  // Both are taken (queued): neither may be admitted again, while only a run call counts in a snapshot.
  assert.deepEqual(counters.list(), [])
  counters.noteRun(first.signedPayload as NonNullable<AdmittedCall['signedPayload']>)
  assert.deepEqual(counters.list(), [[NONCE, 1]])
  assert.throws(() => admission.admitLive(signedCall(alice, { counter: 2 })), { code: 'ERR_REPLAYED' })
  // The state is rebuilt from a snapshot taken after the first call (a host fault): the second call,
  // queued meanwhile, is still taken.
  counters.restartFrom([[NONCE, 1]])
  assert.throws(() => admission.admitLive(signedCall(alice, { counter: 2 })), { code: 'ERR_REPLAYED' })
  counters.noteRun(second.signedPayload as NonNullable<AdmittedCall['signedPayload']>)
  assert.deepEqual(counters.list(), [[NONCE, 2]])
  // Replay takes a logged call's counter in log order, against the calls before it in the log.
  const replay = await admissionOf({ mode: 'production' })
  replay.authenticator.counters.restartFrom([[NONCE, 1]])
  assert.equal(admitLogged(replay, 2, loggedEntryOf(second), 'auth'), 'admitted')
  assert.deepEqual(replay.authenticator.counters.list(), [[NONCE, 2]])
  assert.equal(admitLogged(replay, 3, loggedEntryOf(first), 'auth'), 'ERR_REPLAYED')
})
