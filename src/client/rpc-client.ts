/**
 * RPCClient: connects to one VM served by an RPCServer and calls its methods. After connect(), each
 * method the VM exports is a function on the client (`await client.foo()`); `call(name, ...args)`
 * reaches any of them, including names the client itself uses (connect, close, call, url,
 * backendInfo).
 */
import { callerIdOf, isKeyPair, type KeyPair } from '../auth/key-pair.js'
import { encodeCallPayload, signCallPayload } from '../auth/signed-call.js'
import { encodeValue, fromTagged, type TaggedValue } from '../codec/value-codec.js'
import { CALL_ERROR_CODES, InvalidArgumentError, knownCode, RPCError, StateError } from '../errors.js'
import { HostBook } from '../ledger/host-book.js'
import { parseKeyUrl, toHex } from '../ledger/keys.js'
import { type CallEntry, CLIENT_NONCE_SCHEMA } from '../ledger/log-entry.js'
import { randomHexSource } from '../ledger/random-values.js'
import { type ProvenEntry, RECEIPT_TYPE, RECEIPT_VERSION, type Receipt, verifyReceipt } from '../ledger/receipts.js'
import type { SwarmSetting } from '../ledger/remote-source.js'
import { type BackendInfo, HANDSHAKE_METHOD, RPC_ERRORS, type RPCResponse } from '../rpc/protocol.js'
import { ReceiptBook } from '../rpc/receipt-book.js'
import { type ClientSocket, type SocketText, socketOpener, type WebSocketClass } from './transport.js'

export interface ConnectOptions {
  /**
   * Debug mode: the caller id the VM sees as System.caller.id. Unauthenticated: the server takes
   * the client's word for it.
   */
  user?: string
  /**
   * Production mode: the caller's Ed25519 key pair (generateKeyPair / loadKeyPair). The VM sees the
   * public key (hex) as System.caller.id; every call is signed with the secret key, which never
   * leaves this process.
   */
  keyPair?: KeyPair
  /** How long connecting and the handshake may take, in ms (default 10,000; 60,000 by key, on the DHT). */
  timeout?: number
  /**
   * Connecting by key (`hyper://<call log key>`): the DHT options (`{bootstrap}`; default the
   * LIBVMS_BOOTSTRAP nodes, else Hyperswarm's public ones). Only a hyper:// URL joins the DHT.
   */
  swarm?: SwarmSetting
  /**
   * The WebSocket class to connect with, e.g. one a runtime or a test provides. By default, in Node the
   * `ws` package (which reads why a server refused the connection), elsewhere `globalThis.WebSocket`.
   */
  WebSocket?: WebSocketClass
  /**
   * Ask for a receipt with every answer and check it (default true): the log's signed proof that it
   * holds the call's entry — the call this client sent (its method, arguments, caller and the random
   * nonce it chose for this call alone), with the answer it got. An answer whose receipt does not
   * hold rejects with ERR_BAD_RECEIPT; one that contradicts a receipt already held from the same log
   * rejects with ERR_FORKED and carries the fork proof (`err.proof`). Checked receipts are kept in
   * `client.receipts` (the latest 10,000) and given to `onReceipt`.
   *
   * A ReceiptBook (`receipts: book`) keeps, per log, the latest receipt across connections (share one
   * book between clients, save it with `book.toJSON()`): a call sent after the book holds a receipt
   * signed at length L must be answered with an entry at seq L or later. Without one (true), the
   * client keeps its own book, for this connection.
   */
  receipts?: boolean | ReceiptBook
  /** Called with each checked receipt and the call it proves, e.g. to save them all. */
  onReceipt?: (receipt: Receipt, call: { method: string; seq: number }) => void
  /**
   * Pin a code version: the hash (hex SHA-256) of the code the VM must run (BackendInfo.code, or
   * `nodevms info`). Connecting fails if it runs other code, and once connected, an answer whose
   * receipt shows it was run by other code (the VM was upgraded) rejects with ERR_CODE_CHANGED.
   * Needs receipts (the default).
   */
  code?: string
  /**
   * The VM's call log (its hyper:// URL or key), when the client knows it: the host must serve that
   * log, or connect fails (ERR_BAD_RECEIPT). Without it, receipts bind answers to whatever log the
   * host at `url` names, so a host reached through someone else (no wss://) could be another VM.
   */
  callLog?: string
  /**
   * Where to note that this host serves the VM's call log and files archive (default
   * HostBook.shared): CallLog.fetch and DatArchive given the same book (`{hosts}`) then find it
   * with nothing but the URL.
   */
  hosts?: HostBook
}

/** What a production-mode connection signs each call with. */
interface CallSigner {
  keyPair: KeyPair
  callLogKey: string
  nonce: string
  counter: number
}

interface PendingCall {
  resolve: (value: unknown) => void
  reject: (err: Error) => void
  /** A VM call: what its receipt must show it was. */
  sent?: SentCall
}

/** What a VM call's receipt must show it was. */
interface SentCall {
  method: string
  argsJson: string
  /** The signed payload (production mode). */
  payload?: string
  /** The random value this client chose for this call alone (hex). */
  clientNonce: string
  /** The signed length of the latest receipt of the log the book held when the call was sent: its entry comes after. */
  loggedFrom: number
}

/** What a connection that asked for receipts checks them against. */
interface ReceiptCheck {
  callLogKey: string
  caller: string | null
  /** The log's entries hold their clients' nonces (schema 3 and later, as the host says). */
  clientNonces: boolean
  lastSeq: number
  book: ReceiptBook
  onReceipt?: ConnectOptions['onReceipt']
  /** Pinned to a code version (ConnectOptions.code): the seq of the entry that set it; null: not pinned. */
  codeSeq: number | null
}

/** Why the handshake's receipt of the code entry does not prove that entry `info.code.seq` of its log holds code `hash`; null if it does. */
async function codeReceiptProblem(info: BackendInfo, hash: string): Promise<string | null> {
  if (info.codeReceipt === undefined) return 'it gave no receipt of the entry that set its code'
  let proven: ProvenEntry
  try {
    proven = verifyReceipt(info.codeReceipt)
  } catch (err) {
    return (err as Error).message
  }
  if (proven.log !== callLogKeyOf(info.callLogUrl)) return `the receipt is of log ${proven.log}, not this VM's`
  if (proven.seq !== info.code?.seq) return `the receipt is of entry ${proven.seq}, not ${info.code?.seq}`
  const entry = proven.entry
  if (entry.type !== 'init' && entry.type !== 'upgrade') return `entry ${proven.seq} sets no code (it is a ${entry.type} entry)`
  if ((await codeHashOf(entry.code)) !== hash) return `entry ${proven.seq} holds other code`
  return null
}

/** A code's version hash (ledger/log-hashes.ts, codeHash), with WebCrypto: SHA-256 (hex) of its text, as UTF-8. */
async function codeHashOf(code: string): Promise<string> {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(code)))
  return Array.from(digest, (byte) => byte.toString(16).padStart(2, '0')).join('')
}

function callLogKeyOf(url: unknown): string {
  try {
    return toHex(parseKeyUrl(url as string))
  } catch {
    return ''
  }
}

/** Receipts a client keeps (the latest ones; `onReceipt` sees every one). */
const KEPT_RECEIPTS = 10_000
/** A production-mode connection's nonce, as the handshake gives it. */
const CONNECTION_NONCE = /^[0-9a-f]{32,64}$/
/**
 * The codes only a failure inside the VM has (every one logged, so every one answered with its
 * receipt): a call's own error, and the sandbox and files errors the edge never answers with.
 */
const LOGGED_ONLY_CODES: ReadonlySet<string> = new Set(
  ['ERR_CALL_FAILED', ...Object.values(CALL_ERROR_CODES)].filter((code) => code !== 'ERR_METHOD_NOT_FOUND' && code !== 'ERR_ENCODING'),
)
/** A socket's readyState once closed (WebSocket.CLOSED; a ChannelSocket's too). */
const CLOSED = 3

const RESERVED = new Set(['connect', 'close', 'call', 'url', 'backendInfo', 'constructor', 'then'])

/**
 * A VM's methods as a client calls them: each takes the method's arguments and resolves with its
 * result. `API` describes the script's exports, e.g. `{ increment(by: number): number }`, or is the
 * script's own module: `RemoteMethods<typeof import('./app')>` (a TypeScript script, bundled).
 */
export type RemoteMethods<API> = {
  [K in keyof API as K extends NotCallable ? never : API[K] extends (...args: never[]) => unknown ? K : never]: API[K] extends (
    ...args: infer A
  ) => infer R
    ? (...args: A) => Promise<Awaited<R>>
    : never
}

/** Exports a caller can never call: `init` runs only at deploy. (Non-function exports are left out too.) */
type NotCallable = 'init'

/** The names of `T`'s own members, without its index signature. */
type KnownKeys<T> = keyof { [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K] }

/**
 * A typed client (`RPCClient.connect<API>`): the client's own members and the VM's methods as `API`
 * describes them, and nothing else, so a method the VM does not have (or `init`) does not compile.
 */
export type TypedRPCClient<API> = Pick<RPCClient, KnownKeys<RPCClient>> & RemoteMethods<API>

export class RPCClient {
  /**
   * One property per VM method, added by connect(): known only at run time, so untyped here
   * (`await client.increment()` compiles and resolves with `any`). For a typed client:
   * `RPCClient.connect<API>(url, options)`.
   */
  // biome-ignore lint/suspicious/noExplicitAny: the VM's methods are known only once connected
  [method: string]: any
  url: string | null = null
  private info: BackendInfo | null = null
  private ws: ClientSocket | null = null
  private nextId = 1
  private readonly pending = new Map<number, PendingCall>()
  private closedBy: RPCError | null = null
  private signer: CallSigner | null = null
  /** Checked receipts, the latest first kept last (at most 10,000; see ConnectOptions.onReceipt). */
  readonly receipts: Receipt[] = []
  private receiptCheck: ReceiptCheck | null = null
  /** The nonces this client chooses for its calls. */
  private readonly newClientNonce = randomHexSource()

  /**
   * What the VM's host said in the handshake: `{methods, callLogUrl, filesArchiveUrl, title, auth}`
   * (and `nonce` in production mode). A StateError before connect() has succeeded.
   */
  get backendInfo(): BackendInfo {
    if (!this.info) throw new StateError('the client is not connected yet: await client.connect(url) first')
    return this.info
  }

  /** A new client, connected: typed by `API` (the script's exports), e.g. `RPCClient.connect<CounterAPI>(url)`. */
  static async connect<API extends object = Record<string, (...args: unknown[]) => unknown>>(
    url: string,
    options: ConnectOptions = {},
  ): Promise<TypedRPCClient<API>> {
    const client = new RPCClient()
    await client.connect(url, options)
    return client as unknown as TypedRPCClient<API>
  }

  async connect(url: string, options: ConnectOptions = {}): Promise<void> {
    const byKey = typeof url === 'string' && /^hyper:\/\//i.test(url)
    // Found before the check below, so that no await comes between it and `this.ws = ws`.
    const open = await socketOpener(byKey, options)
    if (this.ws) throw new StateError('this client is already connected; make a new RPCClient for another connection')
    if (typeof url !== 'string' || !(byKey || /^wss?:\/\//.test(url))) {
      throw new InvalidArgumentError(
        `connect(url): expected a ws:// or wss:// URL, or a VM's call log URL (hyper://<key>, found on the DHT), got ${JSON.stringify(url)}`,
      )
    }
    if (options.user !== undefined && (typeof options.user !== 'string' || options.user.length === 0)) {
      throw new InvalidArgumentError('connect(url, {user}): user must be a non-empty string')
    }
    if (options.keyPair !== undefined && !isKeyPair(options.keyPair)) {
      throw new InvalidArgumentError(
        'connect(url, {keyPair}): keyPair must be an Ed25519 {publicKey, secretKey}, e.g. from generateKeyPair()',
      )
    }
    if (options.user !== undefined && options.keyPair !== undefined) {
      throw new InvalidArgumentError('connect(url, {user, keyPair}): give user (debug mode) or keyPair (production mode), not both')
    }
    if (options.hosts !== undefined && !(options.hosts instanceof HostBook)) {
      throw new InvalidArgumentError('connect(url, {hosts}): hosts must be a HostBook (new HostBook())')
    }
    if (options.receipts !== undefined && typeof options.receipts !== 'boolean' && !(options.receipts instanceof ReceiptBook)) {
      throw new InvalidArgumentError('connect(url, {receipts}): receipts must be true, false or a ReceiptBook (new ReceiptBook())')
    }
    if (options.WebSocket !== undefined && typeof options.WebSocket !== 'function') {
      throw new InvalidArgumentError('connect(url, {WebSocket}): WebSocket must be a WebSocket class, e.g. globalThis.WebSocket')
    }
    // By key: the host is looked up on the DHT and RPC runs over a Hyperswarm connection (swarm-rpc.ts).
    const timeoutMs = options.timeout ?? (byKey ? 60_000 : 10_000)
    const ws = open(url)
    this.ws = ws
    this.url = url
    this.closedBy = null
    this.signer = null
    this.receiptCheck = null
    ws.on('message', (data) => this.onMessage(data))
    ws.on('close', (code, reason) => this.onClose(code, reason.toString()))
    ws.on('error', () => {
      // 'close' follows with the reason.
    })
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      await Promise.race([
        (async () => {
          await new Promise<void>((resolve, reject) => {
            ws.once('open', () => resolve())
            // The server's few words on why (a LibVMS host says what is mounted, or that a VM is resuming).
            ws.once('refused', (status, why) =>
              reject(new RPCError('ConnectError', 'ERR_CONNECT', `${url} refused the connection: ${status}${why ? `: ${why}` : ''}`, 0)),
            )
            ws.once('close', (code, reason) => reject(this.closeError(code, reason.toString())))
            ws.once('error', (err) => reject(new RPCError('ConnectError', 'ERR_CONNECT', `could not connect to ${url}: ${err.message}`, 0)))
          })
          const wantReceipts = options.receipts !== false
          const publicKey = options.keyPair ? callerIdOf(options.keyPair) : null
          const hello: Record<string, unknown> = publicKey ? { publicKey } : options.user === undefined ? {} : { user: options.user }
          if (wantReceipts) hello.receipts = true
          if (options.code !== undefined) hello.codeReceipt = true
          const info = (await this.call(HANDSHAKE_METHOD, hello)) as BackendInfo
          this.info = info
          // Reached by key, the key is the pin: the peer that answered must serve that very log.
          const pinned = options.callLog ?? (byKey ? url : undefined)
          if (pinned !== undefined && callLogKeyOf(pinned) !== callLogKeyOf(info.callLogUrl)) {
            throw new RPCError(
              'ReceiptError',
              'ERR_BAD_RECEIPT',
              `${url} serves call log ${info.callLogUrl}, not the expected ${pinned}`,
              0,
            )
          }
          if (options.code !== undefined) {
            if (!wantReceipts) throw new InvalidArgumentError('connect: pinning a code version ({code}) needs receipts; leave receipts on')
            const runs = info.code
            if (!runs || runs.hash !== options.code) {
              throw new RPCError(
                'CodeChangedError',
                'ERR_CODE_CHANGED',
                `${url} runs code ${runs ? `${runs.hash} (since entry ${runs.seq})` : 'of a version it does not say'}, not the pinned ${options.code}`,
                0,
              )
            }
            // The host's word for which entry set that code is checked: the log's receipt of it holds the code.
            const why = await codeReceiptProblem(info, options.code)
            if (why) throw new RPCError('ReceiptError', 'ERR_BAD_RECEIPT', `${url} does not prove the code it says it runs: ${why}`, 0)
          }
          if (wantReceipts) {
            this.receiptCheck = {
              // A host that advertises no call log gives no receipt that can hold.
              callLogKey: callLogKeyOf(info.callLogUrl),
              caller: publicKey ?? options.user ?? null,
              // A host that does not say (before schema 3) logs no nonces: entries that hold one must still hold this call's.
              clientNonces: typeof info.schema === 'number' && info.schema >= CLIENT_NONCE_SCHEMA,
              lastSeq: 0,
              book: options.receipts instanceof ReceiptBook ? options.receipts : new ReceiptBook(),
              onReceipt: options.onReceipt,
              codeSeq: options.code !== undefined ? (info.code?.seq ?? 0) : null,
            }
          }
          if (options.keyPair) {
            // A key pair means every call is signed: a host that gives no connection nonce to sign with
            // would have the client send unsigned calls, and take unsigned (or old signed) entries as answers.
            if (info.auth !== 'production' || typeof info.nonce !== 'string' || !CONNECTION_NONCE.test(info.nonce)) {
              throw new RPCError(
                'AuthError',
                'ERR_AUTH_MODE',
                `${url} did not answer as a production-mode VM (auth ${JSON.stringify(info.auth)}, ${typeof info.nonce === 'string' ? 'a malformed' : 'no'} connection nonce): a client with a key pair signs every call, and calls only such a VM`,
                0,
              )
            }
            const callLogKey = toHex(parseKeyUrl(info.callLogUrl))
            this.signer = { keyPair: options.keyPair, callLogKey, nonce: info.nonce, counter: 0 }
          }
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const what = byKey
              ? `no host of ${url} answered on the DHT within ${timeoutMs} ms (is it served with --swarm, and are the bootstrap nodes right?)`
              : `connecting to ${url} took more than ${timeoutMs} ms`
            reject(new RPCError('TimeoutError', 'ERR_TIMEOUT', what, 0))
          }, timeoutMs)
        }),
      ])
    } catch (err) {
      ws.terminate()
      this.ws = null
      throw err
    } finally {
      clearTimeout(timer)
    }
    // Note the host of the advertised cores: CallLog.fetch(url) and new DatArchive(url) find it there.
    // (Reached by key, the host has no RPC URL to note: fetch its cores with {swarm} too.)
    const hosts = options.hosts ?? HostBook.shared
    for (const coreUrl of byKey ? [] : [this.info?.callLogUrl, this.info?.filesArchiveUrl]) {
      try {
        if (typeof coreUrl === 'string') hosts.add(coreUrl, url)
      } catch {
        // a backend that advertises no core URL serves nothing to replicate
      }
    }
    // A method named like anything the client has (its own fields included) is reached through call() only.
    for (const method of this.info?.methods ?? []) {
      if (typeof method !== 'string' || RESERVED.has(method) || method in this) continue
      this[method] = (...args: unknown[]) => this.call(method, ...args)
    }
  }

  /** Calls `method` on the VM; resolves with its result, rejects with an RPCError. */
  call(method: string, ...args: unknown[]): Promise<unknown> {
    const ws = this.ws
    if (!ws || this.closedBy) return Promise.reject(this.closedBy ?? new StateError('the client is not connected'))
    let params: string | undefined
    let sent: SentCall | undefined
    // Debug mode: the call's nonce travels beside it (in production mode, inside what it signs).
    let beside = ''
    try {
      params = method === HANDSHAKE_METHOD ? JSON.stringify(args[0]) : encodeValue(args, 'the argument list')
      if (method !== HANDSHAKE_METHOD) {
        const check = this.receiptCheck
        sent = {
          method,
          argsJson: params ?? '[]',
          clientNonce: this.newClientNonce(),
          loggedFrom: check ? check.book.lengthOf(check.callLogKey) : 0,
        }
        beside = `,"clientNonce":"${sent.clientNonce}"`
      }
      const signer = this.signer
      if (signer && sent) {
        signer.counter++
        const payload = encodeCallPayload({
          callLog: signer.callLogKey,
          method,
          argsJson: sent.argsJson,
          nonce: signer.nonce,
          counter: signer.counter,
          clientNonce: sent.clientNonce,
        })
        params = JSON.stringify(signCallPayload(payload, signer.keyPair.secretKey))
        sent.payload = payload
        beside = ''
      }
    } catch (err) {
      return Promise.reject(err)
    }
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, sent })
      // A send can only fail on a closing socket: its 'close' event rejects the call with the reason.
      ws.send(`{"jsonrpc":"2.0","id":${id},"method":${JSON.stringify(method)},"params":${params ?? '[]'}${beside}}`, () => {})
    })
  }

  /** Closes the connection; calls still waiting fail with ERR_CONNECTION_CLOSED. */
  async close(): Promise<void> {
    const ws = this.ws
    if (!ws) return
    if (ws.readyState === CLOSED) return
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve())
      ws.close(1000, 'client closed')
      const timer: { unref?(): void } = setTimeout(() => {
        ws.terminate()
        resolve()
      }, 2000)
      timer.unref?.()
    })
  }

  private onMessage(data: SocketText): void {
    let response: RPCResponse
    try {
      response = JSON.parse(data.toString()) as RPCResponse
    } catch {
      return // not ours to answer: a server speaking something else
    }
    if (response === null || typeof response !== 'object' || typeof response.id !== 'number') {
      // Not an answer, or an error the server could not tie to a request (e.g. a frame it could not parse).
      return
    }
    const call = this.pending.get(response.id)
    if (!call) return
    this.pending.delete(response.id)
    try {
      this.settle(call, response)
    } catch (err) {
      // Whatever the answer holds, it settles its own call and nothing else.
      call.reject(new RPCError('RPCError', 'ERR_RPC', `the answer to a call could not be read: ${(err as Error).message}`, 0))
    }
  }

  /** Settles a call with its answer: checked against its receipt when the connection asked for receipts. */
  private settle(call: PendingCall, response: RPCResponse): void {
    if (call.sent && this.receiptCheck) {
      const checked = this.checkReceipt(call.sent, response)
      if (checked instanceof RPCError) {
        call.reject(checked)
        return
      }
      if (checked) {
        // The answer is what the log holds, taken from the proven entry rather than the wire.
        const { entry, seq } = checked
        if (entry.error) {
          const { name, message } = entry.error
          call.reject(new RPCError(name, CALL_ERROR_CODES[name] ?? 'ERR_CALL_FAILED', message, RPC_ERRORS.CALL_FAILED, seq))
          return
        }
        try {
          // A method that returned nothing logged no result: undefined, as the VM returned.
          call.resolve(fromTagged(entry.result, 'the result'))
        } catch (err) {
          call.reject(err as Error)
        }
        return
      }
    }
    if (response.error) {
      const { code, message, data: details } = response.error
      call.reject(
        new RPCError(
          details?.name ?? 'RPCError',
          details?.code === undefined ? 'ERR_RPC' : knownCode(details.code),
          message,
          code,
          details?.seq,
        ),
      )
    } else {
      try {
        call.resolve(fromTagged(response.result as TaggedValue, 'the result'))
      } catch (err) {
        call.reject(err as Error)
      }
    }
  }

  /**
   * The receipt of a logged call must prove the call this client sent, answered as it was answered;
   * an answer the log does not hold is refused (ERR_BAD_RECEIPT), and one that contradicts a receipt
   * the book holds of the same log is a fork (ERR_FORKED, with the proof). Refusals of the edge (no
   * seq: the call was never logged) carry none.
   */
  private checkReceipt(sent: SentCall, response: RPCResponse): RPCError | { entry: CallEntry; seq: number } | null {
    const check = this.receiptCheck
    if (!check) return null
    const receipt = response.error ? response.error.data?.receipt : response.receipt
    const bad = (why: string) =>
      new RPCError('ReceiptError', 'ERR_BAD_RECEIPT', `the answer to ${sent.method} is not what the log holds: ${why}`, 0)
    // A refusal at the edge was never logged, so it has no receipt; a failure inside the VM always does,
    // and so does an error whose code only a failure inside the VM has.
    if (response.error && receipt === undefined) {
      const { code, data } = response.error
      const saysLogged = data?.seq !== undefined || code === RPC_ERRORS.CALL_FAILED || LOGGED_ONLY_CODES.has(data?.code as string)
      return saysLogged ? bad('the host sent no receipt of a failure it says was logged') : null
    }
    if (receipt === undefined) return bad('the host sent no receipt')
    let proven: ProvenEntry
    try {
      proven = verifyReceipt(receipt)
    } catch (err) {
      return bad((err as Error).message)
    }
    const entry = proven.entry as CallEntry
    if (proven.log !== check.callLogKey) return bad(`the receipt is of log ${proven.log}, not this VM's ${check.callLogKey}`)
    // Kept as the fields a receipt has, whatever else the host sent along.
    const kept: Receipt = {
      type: RECEIPT_TYPE,
      version: RECEIPT_VERSION,
      log: proven.log,
      seq: proven.seq,
      length: proven.length,
      proof: (receipt as Receipt).proof,
    }
    const forkProof = check.book.note(kept, proven)
    if (forkProof) {
      const err = new RPCError(
        'ReceiptError',
        'ERR_FORKED',
        `the answer to ${sent.method} is signed by log ${proven.log} in a history that contradicts a receipt this client already holds from it: the host rewrote its log (err.proof is the fork proof; nodevms check-proof checks it)`,
        0,
      )
      return Object.assign(err, { proof: forkProof })
    }
    if (entry.type !== 'call' || entry.method !== sent.method) return bad(`entry ${proven.seq} is not a call to ${sent.method}`)
    if (JSON.stringify(entry.args) !== sent.argsJson) return bad(`entry ${proven.seq} holds other arguments`)
    if (entry.caller !== check.caller) return bad(`entry ${proven.seq} is a call by ${JSON.stringify(entry.caller)}`)
    if (sent.payload !== undefined && entry.signed?.payload !== sent.payload)
      return bad(`entry ${proven.seq} is not the call this client signed`)
    if (sent.payload === undefined && entry.signed !== undefined)
      return bad(`entry ${proven.seq} is a signed call; this client signed none`)
    // The nonce this client chose for this call: an older entry of the same call cannot hold it.
    if (entry.clientNonce !== sent.clientNonce && (check.clientNonces || entry.clientNonce !== undefined))
      return bad(`entry ${proven.seq} does not hold this call's client nonce: it is the entry of another call, not the answer to this one`)
    if (proven.seq < sent.loggedFrom) {
      return bad(
        `entry ${proven.seq} is older than this call: a receipt of ${sent.loggedFrom} entries of this log was held when it was sent`,
      )
    }
    if (response.error) {
      const { message, data } = response.error
      if (!entry.error || entry.error.name !== data?.name || entry.error.message !== message || data?.seq !== proven.seq) {
        return bad(`entry ${proven.seq} does not record this failure`)
      }
    } else if (entry.error || JSON.stringify(entry.result ?? null) !== JSON.stringify(response.result ?? null)) {
      return bad(`entry ${proven.seq} records another result`)
    }
    // One connection's calls are logged, and answered, in the order it sent them: a seq never repeats.
    if (proven.seq <= check.lastSeq) return bad(`entry ${proven.seq} was already the answer to an earlier call`)
    check.lastSeq = proven.seq
    if (this.receipts.length >= KEPT_RECEIPTS) this.receipts.shift()
    this.receipts.push(kept)
    check.onReceipt?.(kept, { method: sent.method, seq: proven.seq })
    // Pinned: the entry names the code that ran it (none: the init entry's). Its receipt is kept: it
    // proves the VM ran other code.
    if (check.codeSeq !== null && (entry.codeSeq ?? 0) !== check.codeSeq) {
      return new RPCError(
        'CodeChangedError',
        'ERR_CODE_CHANGED',
        `the answer to ${sent.method} was run by the code of entry ${entry.codeSeq ?? 0}, not the pinned version (entry ${check.codeSeq}): the VM was upgraded (its receipt is in client.receipts)`,
        0,
      )
    }
    return { entry, seq: proven.seq }
  }

  private closeError(code: number, reason: string): RPCError {
    if (code === 1013)
      return new RPCError(
        'TooManyConnections',
        'ERR_TOO_MANY_CONNECTIONS',
        `${this.url} refused the connection: ${reason}`,
        RPC_ERRORS.UNAVAILABLE,
      )
    const why = reason ? `${reason} (code ${code})` : `code ${code}`
    return new RPCError(
      'ConnectionClosed',
      'ERR_CONNECTION_CLOSED',
      `the connection to ${this.url} closed: ${why}; a call that was waiting may or may not have run — its entry is in the call log if it did`,
      0,
    )
  }

  private onClose(code: number, reason: string): void {
    const err = this.closeError(code, reason)
    this.closedBy = err
    for (const call of this.pending.values()) call.reject(err)
    this.pending.clear()
  }
}
