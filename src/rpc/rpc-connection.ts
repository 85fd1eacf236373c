/**
 * One client connection to one mounted VM: decodes frames, checks them at the edge, runs calls and
 * sends the answers. A frame that is not a valid request is answered with an error and the
 * connection stays usable; nothing invalid reaches the VM. What reaches it travels parsed: a signed
 * call's payload is parsed here, once, and a call's arguments put in the tagged form a VM logs, once
 * (vm/admission.ts, EdgeCall). Every refusal is an error of src/errors.ts, answered with its name,
 * code and message; the JSON-RPC number comes from its code (RPC_NUMBERS).
 */
import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { type CallPayload, type ParsedSignedCall, parseCallPayload, signatureVerifies } from '../auth/signed-call.js'
import { type EncodedArgs, encodeValue, type TaggedValue, taggedArgs } from '../codec/value-codec.js'
import {
  AuthError,
  CallError,
  EncodingError,
  type ErrorCode,
  LibVMSError,
  MethodNotFoundError,
  QueueFullError,
  RPCEdgeError,
  StateError,
} from '../errors.js'
import { CLIENT_NONCE } from '../ledger/log-entry.js'
import type { Receipt } from '../ledger/receipts.js'
import { REPLICATION_PROTOCOL } from '../net/replication.js'
import type { EdgeCall } from '../vm/admission.js'
import type { QueueRoom } from '../vm/call-queue.js'
import {
  type BackendInfo,
  CLOSE_CODES,
  closeReason,
  HANDSHAKE_METHOD,
  type MessageSocket,
  type ReplicaInfo,
  RPC_ERRORS,
  type RPCErrorObject,
} from './protocol.js'

type BackendCall = {
  methodName: string
  userId: string | null
  clientNonce?: string
  /**
   * The call as the edge parsed and checked it: its arguments in tagged form (from the params, or
   * from the signed payload), and its signed call parsed, its signature verified with `userId`'s key.
   */
  edge: EdgeCall
  /** The queue lane the call waits in: its connection (see queueRoom). */
  lane?: object
  /** The backend's queue bound for the call (maxQueuedCalls), given with the lane. */
  maxQueued?: number
  /** Called as the backend queues the call (it refused the call if this was not called when executeCall returns). */
  onAdmitted?: () => void
}

/** What the server needs of a mounted VM. */
export interface RPCBackend {
  readonly methods: string[]
  readonly title: string
  readonly auth: 'debug' | 'production'
  /** The schema of the VM's call log, said in the handshake (clients check client nonces from schema 3 on). */
  readonly logSchema?: number
  /** The bundle the code the VM runs was made from, said in the handshake (absent or null: not a bundle). */
  readonly bundle?: { entry: string; bundler: string } | null
  /** The code version the VM runs now, said in the handshake (absent or null: not said). */
  readonly codeVersion?: { hash: string; seq: number } | null
  /** Every code version the VM ran, oldest first (said in the handshake once there are several). */
  readonly codeVersions?: readonly { hash: string; seq: number }[]
  /** The receipt of the entry that set the code the VM runs (given in the handshake to a client that asks). */
  codeReceipt?(): Promise<Receipt>
  readonly callLog: { url: string }
  readonly filesArchive: { url: string }
  executeCall(request: BackendCall): Promise<unknown>
  /**
   * Whether a call of `lane` (a connection) fits the backend's queue bounded at `maxQueued` waiting
   * calls, shared fairly among lanes (a VM: vm/call-queue.ts); asked before each call, which is then
   * sent with its lane and that bound. Without it, the server bounds the calls in flight (accepted,
   * not answered) through the mount at `maxQueued`, first come first served.
   */
  queueRoom?(lane: object, maxQueued: number): QueueRoom
  /** Runs the call like executeCall, and answers with its receipt too (a logged failure carries it as `receipt`). */
  executeCallWithReceipt?(request: BackendCall): Promise<{ result: unknown; receipt: Receipt }>
  /**
   * A replication stream of the VM's cores (its call log and files archive), for auditors: a new
   * one (`isInitiator`), or over an existing encrypted connection (a Hyperswarm socket).
   */
  replicate(isInitiatorOrStream: boolean | Duplex): Duplex
  /**
   * Present on a seeder's copy (not the VM's host): how current the copy is, sent in the handshake.
   * Every call to such a backend is refused at the edge (ERR_NOT_HOST).
   */
  replica?(): ReplicaInfo
}

interface ServerLimits {
  readonly maxMessageBytes: number
  readonly maxQueuedCalls: number
  /** From connecting to the handshake (the time left is given to the connection: it may have started before the upgrade). */
  readonly handshakeTimeoutMs: number
  /** 0: never closed for being idle. */
  readonly idleTimeoutMs: number
  /** Production mode: signed calls a connection may have refused by the caller check before it is closed (0: no limit). */
  readonly maxBadSignatures: number
}

/** The caller-check refusals that count against maxBadSignatures: a signed call that does not check out. */
const BAD_SIGNED_CALL: ReadonlySet<string> = new Set(['ERR_BAD_SIGNATURE', 'ERR_BAD_PAYLOAD', 'ERR_WRONG_VM', 'ERR_REPLAYED'])

/**
 * Frames of one connection handled in one turn of the event loop before it stops reading until the
 * next turn (what it had already read is still handled, a socket read at most: 64 KiB): so a
 * connection sending frames as fast as it can is read no faster than the others get their turns.
 */
const FRAMES_PER_TURN = 32

const MAX_USER_ID_LENGTH = 1024
const PUBLIC_KEY = /^[0-9a-f]{64}$/

type RequestId = number | string | null
/** The id of a notification: a request without one, which JSON-RPC 2.0 says is never answered. */
const NOTIFICATION = undefined
type CallId = number | string | typeof NOTIFICATION

function isRequestId(id: unknown): id is number | string {
  return (typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.length <= 256)
}

/**
 * The JSON-RPC number of each code the server answers with (protocol.ts); any other code is
 * INTERNAL_ERROR. The error itself says the rest (its name, code and message): the edge refuses with
 * the same error classes as the VM. A logged call's failure (CallError) is CALL_FAILED, whatever its code.
 */
const RPC_NUMBERS: Partial<Record<ErrorCode, number>> = {
  ERR_PARSE: RPC_ERRORS.PARSE_ERROR,
  ERR_INVALID_REQUEST: RPC_ERRORS.INVALID_REQUEST,
  ERR_METHOD_NOT_FOUND: RPC_ERRORS.METHOD_NOT_FOUND,
  ERR_INVALID_PARAMS: RPC_ERRORS.INVALID_PARAMS,
  ERR_ENCODING: RPC_ERRORS.INVALID_PARAMS,
  ERR_INVALID_ARGUMENT: RPC_ERRORS.INVALID_PARAMS,
  ERR_QUEUE_FULL: RPC_ERRORS.QUEUE_FULL,
  ERR_MESSAGE_TOO_LARGE: RPC_ERRORS.MESSAGE_TOO_LARGE,
  ERR_UNAVAILABLE: RPC_ERRORS.UNAVAILABLE,
  ERR_HANDSHAKE_REQUIRED: RPC_ERRORS.HANDSHAKE_REQUIRED,
  ERR_HANDSHAKE_DONE: RPC_ERRORS.HANDSHAKE_REQUIRED,
  ERR_HOST_FAULT: RPC_ERRORS.HOST_FAULT,
  ERR_AUTH_REQUIRED: RPC_ERRORS.UNAUTHORIZED,
  ERR_AUTH_MODE: RPC_ERRORS.UNAUTHORIZED,
  ERR_BAD_SIGNATURE: RPC_ERRORS.UNAUTHORIZED,
  ERR_BAD_PAYLOAD: RPC_ERRORS.UNAUTHORIZED,
  ERR_WRONG_VM: RPC_ERRORS.UNAUTHORIZED,
  ERR_REPLAYED: RPC_ERRORS.UNAUTHORIZED,
  ERR_NOT_HOST: RPC_ERRORS.NOT_HOST,
}

function rpcError(code: number, err: LibVMSError, seq?: number, receipt?: Receipt): RPCErrorObject {
  const data: NonNullable<RPCErrorObject['data']> =
    seq === undefined ? { name: err.name, code: err.code } : { name: err.name, code: err.code, seq }
  if (receipt) data.receipt = receipt
  return { code, message: err.message, data }
}

/** How an error, the edge's own or from the VM side, is reported to the client. */
function toRPCError(err: unknown): RPCErrorObject {
  if (err instanceof CallError) return rpcError(RPC_ERRORS.CALL_FAILED, err, err.seq, err.receipt)
  // A VM closed or not deployed: to the client, the VM is not served here now.
  if (err instanceof StateError) return toRPCError(new RPCEdgeError('ERR_UNAVAILABLE', err.message))
  if (err instanceof LibVMSError) return rpcError(RPC_NUMBERS[err.code] ?? RPC_ERRORS.INTERNAL_ERROR, err)
  return toRPCError(new RPCEdgeError('ERR_INTERNAL', 'the server failed to run the call'))
}

export class RPCConnection {
  /** Debug mode: the user id the client gave. Production mode: the client's public key (hex). */
  private user: string | null = null
  /** Production mode: the nonce every call on this connection must be signed with. */
  private nonce: string | null = null
  private handshaken = false
  /** The client asked for receipts (and the backend gives them). */
  private receipts = false
  private closed = false
  /** This connection's calls queued or running: while there are any, it is not idle. */
  private inFlight = 0
  /** When (performance.now()) it last shook hands, sent a call or was answered one. */
  private lastActive = 0
  /** The handshake deadline until the handshake, then the idle check. */
  private timer: NodeJS.Timeout | null = null
  /** Production mode: its signed calls refused by the caller check so far (see maxBadSignatures). */
  private badSignedCalls = 0
  /** Closed for too many of them: frames still arriving are dropped unread. */
  private struckOut = false
  /** Production mode: the counter of the last call of this connection that was queued. */
  private lastCounter = 0
  /** Frames handled in this turn of the event loop (see FRAMES_PER_TURN). */
  private framesThisTurn = 0

  /** `handshakeLeftMs`: how long it has left to shake hands (the server's clock started when the client connected). */
  constructor(
    private readonly ws: MessageSocket,
    private readonly mount: Mount,
    private readonly limits: ServerLimits,
    handshakeLeftMs: number = limits.handshakeTimeoutMs,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary))
    ws.on('close', () => {
      this.closed = true
      if (this.timer) clearTimeout(this.timer)
      this.timer = null
    })
    this.timer = setTimeout(() => this.handshakeOverdue(), Math.max(0, handshakeLeftMs))
    this.timer.unref()
    ws.on('error', () => {
      // 'close' follows; a broken socket only means the answers of its calls go nowhere.
    })
  }

  /**
   * How long it has been idle (ms): shaken hands, no call of it queued or running, none sent or
   * answered since. Null while it is not idle (or not shaken hands yet, or closed).
   */
  idleMs(): number | null {
    if (this.closed || !this.handshaken || this.inFlight > 0) return null
    return performance.now() - this.lastActive
  }

  private handshakeOverdue(): void {
    this.timer = null
    if (this.handshaken || this.closed) return
    void this.close(
      CLOSE_CODES.POLICY,
      closeReason(
        `no ${HANDSHAKE_METHOD} within ${this.limits.handshakeTimeoutMs} ms of connecting (handshakeTimeoutMs, --handshake-timeout)`,
      ),
    )
  }

  /** Checks idleness when the idle time could have run out; closes the connection if it has. */
  private checkIdle(): void {
    this.timer = null
    if (this.closed) return
    const limit = this.limits.idleTimeoutMs
    const idle = this.idleMs()
    if (idle !== null && idle >= limit) {
      void this.close(
        CLOSE_CODES.GOING_AWAY,
        closeReason(`idle for ${limit} ms: no call in flight, sent or answered (idleTimeoutMs, --idle-timeout)`),
      )
      return
    }
    this.timer = setTimeout(() => this.checkIdle(), idle === null ? limit : limit - idle)
    this.timer.unref()
  }

  /** Counts a frame against this turn's FRAMES_PER_TURN; at the limit, stops reading until the next turn. */
  private takeTurn(): void {
    if (this.framesThisTurn++ === 0) {
      setImmediate(() => {
        if (this.framesThisTurn > FRAMES_PER_TURN && !this.closed) this.ws.resume?.()
        this.framesThisTurn = 0
      })
    }
    if (this.framesThisTurn === FRAMES_PER_TURN + 1) this.ws.pause?.()
  }

  async close(code: number, reason: string): Promise<void> {
    if (this.closed) return
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve())
      this.ws.close(code, reason)
      // A peer that never answers the close frame is cut off.
      setTimeout(() => {
        this.ws.terminate()
        resolve()
      }, 2000).unref()
    })
  }

  private send(text: string): void {
    if (!this.closed) this.ws.send(text)
  }

  /** Answers request `id` with `err` (toRPCError); a notification gets no answer. */
  private sendError(id: RequestId | CallId, err: unknown): void {
    if (id !== NOTIFICATION) this.send(JSON.stringify({ jsonrpc: '2.0', id, error: toRPCError(err) }))
  }

  private onMessage(data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    if (this.struckOut) return
    this.takeTurn()
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
    if (bytes.length > this.limits.maxMessageBytes) {
      this.sendError(
        null,
        new RPCEdgeError(
          'ERR_MESSAGE_TOO_LARGE',
          `the request is ${bytes.length} bytes, over this server's limit of ${this.limits.maxMessageBytes} (maxMessageBytes)`,
        ),
      )
      return
    }
    if (isBinary) {
      this.sendError(
        null,
        new RPCEdgeError(
          'ERR_INVALID_REQUEST',
          `binary frames are not accepted: send JSON-RPC 2.0 as text (to replicate the VM's cores, open the WebSocket with the subprotocol ${REPLICATION_PROTOCOL})`,
        ),
      )
      return
    }
    let request: unknown
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
      request = JSON.parse(text)
    } catch {
      this.sendError(null, new RPCEdgeError('ERR_PARSE', 'the frame is not valid UTF-8 JSON'))
      return
    }
    this.onRequest(request)
  }

  private onRequest(request: unknown): void {
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      const why = Array.isArray(request)
        ? 'batch requests are not supported: send one request per frame'
        : 'a request must be a JSON object'
      this.sendError(null, new RPCEdgeError('ERR_INVALID_REQUEST', why))
      return
    }
    const { jsonrpc, id, method, params, clientNonce } = request as Record<string, unknown>
    if (!Object.hasOwn(request, 'id') && jsonrpc === '2.0' && typeof method === 'string') {
      // A notification: run like a call, never answered. A handshake has an answer to give, and a
      // connection that has not shaken hands has no caller yet: those are dropped.
      if (method !== HANDSHAKE_METHOD && this.handshaken) this.onCall(NOTIFICATION, method, params, clientNonce)
      return
    }
    if (!isRequestId(id)) {
      this.sendError(
        null,
        new RPCEdgeError('ERR_INVALID_REQUEST', 'a request needs an id: a number, or a string of at most 256 characters'),
      )
      return
    }
    if (jsonrpc !== '2.0' || typeof method !== 'string') {
      this.sendError(id, new RPCEdgeError('ERR_INVALID_REQUEST', 'a request needs jsonrpc: "2.0" and a method name'))
      return
    }
    if (method === HANDSHAKE_METHOD) {
      this.onHandshake(id, params)
      return
    }
    if (!this.handshaken) {
      this.sendError(id, new RPCEdgeError('ERR_HANDSHAKE_REQUIRED', `call ${HANDSHAKE_METHOD} first`))
      return
    }
    this.onCall(id, method, params, clientNonce)
  }

  private onHandshake(id: number | string, params: unknown): void {
    if (this.handshaken) {
      this.sendError(id, new RPCEdgeError('ERR_HANDSHAKE_DONE', 'this connection has already shaken hands'))
      return
    }
    const given = params !== null && typeof params === 'object' && !Array.isArray(params) ? (params as Record<string, unknown>) : {}
    const backend = this.mount.backend
    const { user, publicKey } = given
    if (backend.auth === 'production') {
      if (user !== undefined && user !== null) {
        this.sendError(
          id,
          new AuthError('ERR_AUTH_MODE', 'this VM runs in production mode: callers are public keys; connect with {keyPair}, not {user}'),
        )
        return
      }
      if (publicKey !== undefined && publicKey !== null && (typeof publicKey !== 'string' || !PUBLIC_KEY.test(publicKey))) {
        this.sendError(id, new RPCEdgeError('ERR_INVALID_PARAMS', 'publicKey must be an Ed25519 public key as 64 lowercase hex digits'))
        return
      }
      this.user = typeof publicKey === 'string' ? publicKey : null
      this.nonce = randomBytes(16).toString('hex')
    } else {
      if (publicKey !== undefined && publicKey !== null) {
        this.sendError(
          id,
          new AuthError(
            'ERR_AUTH_MODE',
            'this VM runs in debug mode: callers are not authenticated and calls are not signed; connect with {user}',
          ),
        )
        return
      }
      if (user !== undefined && user !== null && (typeof user !== 'string' || user.length === 0 || user.length > MAX_USER_ID_LENGTH)) {
        this.sendError(
          id,
          new RPCEdgeError('ERR_INVALID_PARAMS', `user must be a non-empty string of at most ${MAX_USER_ID_LENGTH} characters`),
        )
        return
      }
      this.user = typeof user === 'string' ? user : null
    }
    this.handshaken = true
    this.lastActive = performance.now()
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    if (this.limits.idleTimeoutMs > 0) {
      this.timer = setTimeout(() => this.checkIdle(), this.limits.idleTimeoutMs)
      this.timer.unref()
    }
    this.receipts = given.receipts === true && typeof backend.executeCallWithReceipt === 'function'
    const info: BackendInfo = {
      methods: backend.methods,
      callLogUrl: backend.callLog.url,
      filesArchiveUrl: backend.filesArchive.url,
      title: backend.title,
      auth: backend.auth,
    }
    if (backend.logSchema !== undefined) info.schema = backend.logSchema
    const code = backend.codeVersion
    if (code) info.code = { hash: code.hash, seq: code.seq }
    const bundle = backend.bundle
    if (bundle) info.bundle = { entry: bundle.entry, bundler: bundle.bundler }
    const versions = backend.codeVersions
    if (versions && versions.length > 1) info.codeHistory = versions.map((v) => ({ hash: v.hash, seq: v.seq }))
    if (this.nonce) info.nonce = this.nonce
    if (backend.replica) info.replica = backend.replica()
    const send = () => this.send(JSON.stringify({ jsonrpc: '2.0', id, result: info }))
    // A client pinning a code version asks for the receipt of its entry (the client waits for this answer before calling).
    if (given.codeReceipt === true && backend.codeReceipt) {
      backend.codeReceipt().then(
        (receipt) => {
          info.codeReceipt = receipt
          send()
        },
        () => send(),
      )
      return
    }
    send()
  }

  /** `clientNonce`: the request's own, beside its params (debug mode; checked by the VM's admission). */
  private onCall(id: CallId, method: string, params: unknown, clientNonce: unknown): void {
    const backend = this.mount.backend
    if (backend.replica) {
      this.sendError(
        id,
        new RPCEdgeError(
          'ERR_NOT_HOST',
          `this is a seeder's copy of the VM, not its host: it serves the call log and files to auditors (nodevms verify) and runs no calls; call ${JSON.stringify(method)} on the VM's host`,
        ),
      )
      return
    }
    if (!backend.methods.includes(method)) {
      this.sendError(
        id,
        new MethodNotFoundError(method, `the VM has no callable method ${JSON.stringify(method)}; the handshake lists them`),
      )
      return
    }
    // Before the call is parsed and its signature checked: a caller over its share costs little.
    const maxQueued = this.limits.maxQueuedCalls
    const room = backend.queueRoom?.(this, maxQueued)
    if (room ? !room.fits : this.mount.inFlight >= maxQueued) {
      const message =
        room && !room.fits
          ? room.message
          : `the VM has ${this.mount.inFlight} calls waiting, its limit (maxQueuedCalls, --max-queued-calls); the call was not run, try again later`
      this.sendError(id, new QueueFullError(message))
      return
    }
    // Production mode: the signed call is parsed here, once; its arguments are the payload's.
    let signed: ParsedSignedCall | undefined
    let sent: TaggedValue[]
    if (this.nonce) {
      const checked = this.signedCall(method, params)
      if (checked instanceof AuthError) {
        this.sendError(id, checked)
        if (BAD_SIGNED_CALL.has(checked.code)) this.noteBadSignedCall()
        return
      }
      signed = checked
      sent = checked.payload.args
    } else if (params !== undefined && !Array.isArray(params)) {
      this.sendError(id, new RPCEdgeError('ERR_INVALID_PARAMS', 'params must be an array of arguments'))
      return
    } else {
      sent = (params ?? []) as TaggedValue[]
    }
    if (clientNonce !== undefined && (typeof clientNonce !== 'string' || !CLIENT_NONCE.test(clientNonce))) {
      this.sendError(
        id,
        new RPCEdgeError(
          'ERR_INVALID_PARAMS',
          'clientNonce must be 32 to 64 lowercase hex digits: a random value chosen for this call (or left out)',
        ),
      )
      return
    }
    if (this.mount.closing) {
      this.sendError(
        id,
        new RPCEdgeError(
          'ERR_UNAVAILABLE',
          'the VM is no longer served here (the server is closing or it was unmounted); the call was not run',
        ),
      )
      return
    }
    // The arguments, once through the codec: the VM logs them and its sandbox decodes them as they are.
    let args: EncodedArgs
    try {
      args = taggedArgs(sent)
    } catch (err) {
      this.sendError(id, err instanceof EncodingError ? err : new RPCEdgeError('ERR_INVALID_PARAMS', 'the arguments could not be decoded'))
      return
    }
    // The signature is checked last, once nothing cheaper refuses the call (see checkSignature).
    const badSignature = signed && this.checkSignature(signed)
    if (badSignature) {
      this.sendError(id, badSignature)
      this.noteBadSignedCall()
      return
    }
    this.mount.callStarted()
    this.inFlight++
    this.lastActive = performance.now()
    const call: BackendCall = { methodName: method, userId: this.user, edge: signed ? { args, signed } : { args } }
    if (room) {
      call.lane = this
      call.maxQueued = maxQueued
    }
    let admitted = false
    if (signed) {
      call.onAdmitted = () => {
        admitted = true
      }
    }
    if (clientNonce !== undefined) call.clientNonce = clientNonce
    const answered =
      this.receipts && backend.executeCallWithReceipt
        ? backend.executeCallWithReceipt(call)
        : backend.executeCall(call).then((result) => ({ result, receipt: undefined }))
    answered
      .then(
        ({ result, receipt }) => {
          if (id === NOTIFICATION) return
          let encoded: string | undefined
          try {
            encoded = encodeValue(result, 'the result')
          } catch (err) {
            this.sendError(id, err)
            return
          }
          const withReceipt = receipt ? `,"receipt":${JSON.stringify(receipt)}` : ''
          this.send(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${encoded ?? 'null'}${withReceipt}}`)
        },
        (err) => this.sendError(id, err),
      )
      .finally(() => {
        this.inFlight--
        this.lastActive = performance.now()
        this.mount.callEnded()
      })
    if (signed) {
      // Its signature held: the call was queued (its counter is spent), or the VM's admission refused it.
      if (admitted) this.lastCounter = signed.payload.counter
      else this.noteBadSignedCall()
    }
  }

  /**
   * Production mode, the last check at the edge: the signature must verify with this connection's
   * key (the VM takes the outcome and does not verify it again), and its counter must be above those
   * of the calls of this connection already queued. What fails here, and a signed call the VM's
   * admission refuses after it, counts against maxBadSignatures at once, before the next frame is
   * read: every signature check is then either a call queued, which its caller signed afresh, or one
   * of the connection's maxBadSignatures.
   */
  private checkSignature({ signed, payload }: ParsedSignedCall): AuthError | null {
    if (!signatureVerifies(signed, this.user as string)) {
      return new AuthError(
        'ERR_BAD_SIGNATURE',
        `the signature does not verify with the caller's key ${this.user}: the call was not signed by it`,
      )
    }
    if (payload.counter <= this.lastCounter) {
      return new AuthError(
        'ERR_REPLAYED',
        `this signed call (counter ${payload.counter}) is not new: a call with counter ${this.lastCounter} was already taken on this connection; a signed call runs at most once`,
      )
    }
    return null
  }

  /**
   * Production mode: takes note of a signed call refused by the caller check; a connection with
   * maxBadSignatures of them is closed (1008, with the reason), and what it still sends is dropped
   * unread. Each cost the host at most one signature check: that is the bound.
   */
  private noteBadSignedCall(): void {
    this.badSignedCalls++
    const limit = this.limits.maxBadSignatures
    if (limit === 0 || this.badSignedCalls < limit || this.struckOut) return
    this.struckOut = true
    void this.close(
      CLOSE_CODES.POLICY,
      closeReason(
        `${limit} signed calls failed the caller check (bad signature or payload): closed (maxBadSignatures, --max-bad-signatures)`,
      ),
    )
  }

  /**
   * Production mode, at the edge: parses the signed call, once (what the VM admits and logs travels
   * parsed from here). It must be signed with this connection's nonce, for this method (its signature
   * is checked last, by checkSignature). The VM checks the rest (the VM it was signed for, its
   * arguments, the client nonce, that its counter is new) before it queues the call.
   */
  private signedCall(method: string, params: unknown): ParsedSignedCall | AuthError {
    if (this.user === null) {
      return new AuthError('ERR_AUTH_REQUIRED', 'this VM runs in production mode: every call must be signed; connect with {keyPair}')
    }
    const { payload, signature } = (params ?? {}) as Record<string, unknown>
    if (
      params === null ||
      typeof params !== 'object' ||
      Array.isArray(params) ||
      typeof payload !== 'string' ||
      typeof signature !== 'string'
    ) {
      return new AuthError('ERR_AUTH_REQUIRED', 'in production mode params must be a signed call {payload, signature}')
    }
    let parsed: CallPayload
    try {
      parsed = parseCallPayload(payload)
    } catch (err) {
      return err instanceof AuthError ? err : new AuthError('ERR_BAD_PAYLOAD', (err as Error).message)
    }
    if (parsed.nonce !== this.nonce) {
      return new AuthError(
        'ERR_REPLAYED',
        "the call was signed for another connection (its nonce is not this connection's); sign each call on the connection that sends it",
      )
    }
    if (parsed.method !== method) {
      return new AuthError(
        'ERR_BAD_PAYLOAD',
        `the call was signed for method ${JSON.stringify(parsed.method)}, not ${JSON.stringify(method)}`,
      )
    }
    return { signed: { payload, signature }, payload: parsed }
  }
}

/** What the server knows about one mounted VM: its path, its backend, its connections and the calls in flight through it. */
export class Mount {
  readonly connections = new Set<RPCConnection>()
  /** Its replication sockets (terminated when the mount closes). */
  readonly replications = new Set<{ terminate(): void }>()
  inFlight = 0
  closing = false
  /** While published on the DHT: stops serving its cores to new swarm connections. */
  unpublish: (() => Promise<void>) | null = null
  private readonly drainWaiters = new Set<() => void>()

  constructor(
    readonly path: string,
    readonly backend: RPCBackend,
  ) {}

  callStarted(): void {
    this.inFlight++
  }

  callEnded(): void {
    this.inFlight--
    if (this.inFlight === 0) for (const wake of this.drainWaiters) wake()
  }

  /** Resolves when no call is in flight (or after `timeoutMs`); several callers may wait. */
  async drain(timeoutMs: number): Promise<void> {
    if (this.inFlight === 0) return
    await new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        this.drainWaiters.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, timeoutMs)
      this.drainWaiters.add(wake)
    })
  }
}
