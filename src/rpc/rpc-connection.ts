/**
 * One client connection to one mounted VM: decodes frames, checks them at the edge, runs calls and
 * sends the answers. A frame that is not a valid request is answered with an error and the
 * connection stays usable; nothing invalid reaches the VM.
 */
import type { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'
import { CallError, EncodingError, HostFaultError, InvalidArgumentError, LibVMSError, MethodNotFoundError, StateError } from '../errors.js'
import { encodeValue, fromTagged, type TaggedValue } from '../sandbox/value-codec.js'
import { type BackendInfo, HANDSHAKE_METHOD, RPC_ERRORS, type RPCErrorObject } from './protocol.js'
import type { Mount } from './rpc-server.js'

/** What the server needs of a mounted VM. */
export interface RPCBackend {
  readonly methods: string[]
  readonly title: string
  readonly auth: 'debug' | 'production'
  readonly callLog: { url: string }
  readonly filesArchive: { url: string }
  executeCall(request: { methodName: string; args: unknown[]; userId: string | null }): Promise<unknown>
  /** A replication stream of the VM's cores (its call log and files archive), for auditors. */
  replicate(isInitiator: boolean): Duplex
}

interface ServerLimits {
  readonly maxMessageBytes: number
  readonly maxQueuedCalls: number
}

const MAX_USER_ID_LENGTH = 1024

type RequestId = number | string | null

function isRequestId(id: unknown): id is number | string {
  return (typeof id === 'number' && Number.isFinite(id)) || (typeof id === 'string' && id.length <= 256)
}

function rpcError(code: number, name: string, stableCode: string, message: string, seq?: number): RPCErrorObject {
  return { code, message, data: seq === undefined ? { name, code: stableCode } : { name, code: stableCode, seq } }
}

/** The errors the edge answers with, by kind: JSON-RPC code, error name, stable code. */
const EDGE_ERRORS = {
  parse: [RPC_ERRORS.PARSE_ERROR, 'ParseError', 'ERR_PARSE'],
  invalidRequest: [RPC_ERRORS.INVALID_REQUEST, 'InvalidRequest', 'ERR_INVALID_REQUEST'],
  invalidParams: [RPC_ERRORS.INVALID_PARAMS, 'InvalidParams', 'ERR_INVALID_PARAMS'],
  methodNotFound: [RPC_ERRORS.METHOD_NOT_FOUND, 'MethodNotFound', 'ERR_METHOD_NOT_FOUND'],
  messageTooLarge: [RPC_ERRORS.MESSAGE_TOO_LARGE, 'MessageTooLarge', 'ERR_MESSAGE_TOO_LARGE'],
  queueFull: [RPC_ERRORS.QUEUE_FULL, 'QueueFull', 'ERR_QUEUE_FULL'],
  unavailable: [RPC_ERRORS.UNAVAILABLE, 'Unavailable', 'ERR_UNAVAILABLE'],
  handshakeRequired: [RPC_ERRORS.HANDSHAKE_REQUIRED, 'HandshakeRequired', 'ERR_HANDSHAKE_REQUIRED'],
  handshakeDone: [RPC_ERRORS.HANDSHAKE_REQUIRED, 'HandshakeRequired', 'ERR_HANDSHAKE_DONE'],
} as const

function refusal(kind: keyof typeof EDGE_ERRORS, message: string): RPCErrorObject {
  const [code, name, stableCode] = EDGE_ERRORS[kind]
  return rpcError(code, name, stableCode, message)
}

/** How an error from the VM side is reported to the client. */
function toRPCError(err: unknown): RPCErrorObject {
  if (err instanceof CallError) return rpcError(RPC_ERRORS.CALL_FAILED, err.name, err.code, err.message, err.seq)
  if (err instanceof MethodNotFoundError) return rpcError(RPC_ERRORS.METHOD_NOT_FOUND, err.name, err.code, err.message)
  if (err instanceof EncodingError || err instanceof InvalidArgumentError) {
    return rpcError(RPC_ERRORS.INVALID_PARAMS, err.name, err.code, err.message)
  }
  if (err instanceof StateError) return refusal('unavailable', err.message)
  if (err instanceof HostFaultError) return rpcError(RPC_ERRORS.HOST_FAULT, err.name, err.code, err.message)
  if (err instanceof LibVMSError) return rpcError(RPC_ERRORS.INTERNAL_ERROR, err.name, err.code, err.message)
  return rpcError(RPC_ERRORS.INTERNAL_ERROR, 'InternalError', 'ERR_INTERNAL', 'the server failed to run the call')
}

export class RPCConnection {
  private user: string | null = null
  private handshaken = false
  private closed = false

  constructor(
    private readonly ws: WebSocket,
    private readonly mount: Mount,
    private readonly limits: ServerLimits,
  ) {
    ws.on('message', (data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean) => this.onMessage(data, isBinary))
    ws.on('close', () => {
      this.closed = true
    })
    ws.on('error', () => {
      // 'close' follows; a broken socket only means the answers of its calls go nowhere.
    })
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

  private sendError(id: RequestId, error: RPCErrorObject): void {
    this.send(JSON.stringify({ jsonrpc: '2.0', id, error }))
  }

  private onMessage(data: Buffer | Buffer[] | ArrayBuffer, isBinary: boolean): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
    if (bytes.length > this.limits.maxMessageBytes) {
      this.sendError(
        null,
        refusal(
          'messageTooLarge',
          `the request is ${bytes.length} bytes, over this server's limit of ${this.limits.maxMessageBytes} (maxMessageBytes)`,
        ),
      )
      return
    }
    if (isBinary) {
      this.sendError(null, refusal('invalidRequest', 'binary frames are not accepted: send JSON-RPC 2.0 as text'))
      return
    }
    let request: unknown
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
      request = JSON.parse(text)
    } catch {
      this.sendError(null, refusal('parse', 'the frame is not valid UTF-8 JSON'))
      return
    }
    this.onRequest(request)
  }

  private onRequest(request: unknown): void {
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      const why = Array.isArray(request)
        ? 'batch requests are not supported: send one request per frame'
        : 'a request must be a JSON object'
      this.sendError(null, refusal('invalidRequest', why))
      return
    }
    const { jsonrpc, id, method, params } = request as Record<string, unknown>
    if (!isRequestId(id)) {
      this.sendError(null, refusal('invalidRequest', 'a request needs an id (a number or a short string); notifications are not supported'))
      return
    }
    if (jsonrpc !== '2.0' || typeof method !== 'string') {
      this.sendError(id, refusal('invalidRequest', 'a request needs jsonrpc: "2.0" and a method name'))
      return
    }
    if (method === HANDSHAKE_METHOD) {
      this.onHandshake(id, params)
      return
    }
    if (!this.handshaken) {
      this.sendError(id, refusal('handshakeRequired', `call ${HANDSHAKE_METHOD} first`))
      return
    }
    this.onCall(id, method, params)
  }

  private onHandshake(id: number | string, params: unknown): void {
    if (this.handshaken) {
      this.sendError(id, refusal('handshakeDone', 'this connection has already shaken hands'))
      return
    }
    const user = params !== null && typeof params === 'object' && !Array.isArray(params) ? (params as { user?: unknown }).user : undefined
    if (user !== undefined && user !== null && (typeof user !== 'string' || user.length === 0 || user.length > MAX_USER_ID_LENGTH)) {
      this.sendError(id, refusal('invalidParams', `user must be a non-empty string of at most ${MAX_USER_ID_LENGTH} characters`))
      return
    }
    this.user = typeof user === 'string' ? user : null
    this.handshaken = true
    const backend = this.mount.backend
    const info: BackendInfo = {
      methods: backend.methods,
      callLogUrl: backend.callLog.url,
      filesArchiveUrl: backend.filesArchive.url,
      title: backend.title,
      auth: backend.auth,
    }
    this.send(JSON.stringify({ jsonrpc: '2.0', id, result: info }))
  }

  private onCall(id: number | string, method: string, params: unknown): void {
    const backend = this.mount.backend
    if (!backend.methods.includes(method)) {
      this.sendError(id, refusal('methodNotFound', `the VM has no callable method ${JSON.stringify(method)}; the handshake lists them`))
      return
    }
    if (params !== undefined && !Array.isArray(params)) {
      this.sendError(id, refusal('invalidParams', 'params must be an array of arguments'))
      return
    }
    if (this.mount.closing) {
      this.sendError(
        id,
        refusal('unavailable', 'the VM is no longer served here (the server is closing or it was unmounted); the call was not run'),
      )
      return
    }
    if (this.mount.inFlight >= this.limits.maxQueuedCalls) {
      this.sendError(
        id,
        refusal(
          'queueFull',
          `the VM has ${this.mount.inFlight} calls waiting, its limit (maxQueuedCalls); the call was not run, try again later`,
        ),
      )
      return
    }
    let args: unknown[]
    try {
      args = ((params ?? []) as TaggedValue[]).map((a) => fromTagged(a))
    } catch {
      this.sendError(id, refusal('invalidParams', 'the arguments could not be decoded'))
      return
    }
    this.mount.callStarted()
    backend
      .executeCall({ methodName: method, args, userId: this.user })
      .then(
        (result) => {
          let encoded: string | undefined
          try {
            encoded = encodeValue(result, 'the result')
          } catch (err) {
            this.sendError(id, toRPCError(err))
            return
          }
          this.send(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${encoded ?? 'null'}}`)
        },
        (err) => this.sendError(id, toRPCError(err)),
      )
      .finally(() => this.mount.callEnded())
  }
}
