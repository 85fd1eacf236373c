/**
 * The wire protocol between RPCClient and RPCServer: JSON-RPC 2.0 over WebSocket text frames.
 *
 * A connection starts with `rpc.handshake` (params: {user?} in debug mode, {publicKey?} in
 * production mode), answered with the backend's info ({methods, callLogUrl, filesArchiveUrl, title,
 * auth, schema}, plus in production mode the connection's `nonce`); every later request calls one of
 * `methods`. In debug mode its params are the array of arguments, and the request may carry the
 * call's client nonce beside them (`clientNonce`, a member of the request object: 32 to 64 hex
 * digits the client chose at random for this call); in production mode params are the signed call
 * {payload, signature}, the payload holding the arguments and the client nonce (auth/signed-call.ts).
 * A log of schema 3 or later logs the nonce in the call's entry. Arguments and results use LibVMS's tagged JSON (byte
 * arrays as {"$bytes": base64}). Errors carry a numeric JSON-RPC code and, in `data`, the LibVMS
 * error name, its stable string code and (for logged call failures) the call's seq.
 *
 * Receipts: a client that sends `receipts: true` in the handshake gets, with every answer of a
 * logged call, the log's receipt of its entry (`receipt` beside `result`, or `error.data.receipt`):
 * a Hypercore proof, signed by the log's key, that the log holds the entry. The answers of one
 * connection's logged calls leave in log order (increasing seq), so a client refuses a receipt whose
 * seq is not past the last it took, and one whose entry does not hold the nonce it chose for the call.
 * Clients that do not ask get plain JSON-RPC.
 */

import type { Receipt } from '../ledger/receipts.js'

export const HANDSHAKE_METHOD = 'rpc.handshake'

/** JSON-RPC 2.0 error codes: the standard ones and LibVMS's server errors. */
export const RPC_ERRORS = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  /** The call ran and failed inside the VM; it is logged (data.seq). */
  CALL_FAILED: -32000,
  /** The VM's queue is full: the call was not run. */
  QUEUE_FULL: -32001,
  /** The request was larger than the server takes. */
  MESSAGE_TOO_LARGE: -32002,
  /** The server, or this VM's mount, is closing: the call was not run. */
  UNAVAILABLE: -32003,
  /** A request before the handshake, or a second handshake. */
  HANDSHAKE_REQUIRED: -32004,
  /** The host failed (not the call): nothing was logged. */
  HOST_FAULT: -32005,
  /** Production mode refused the call (unsigned, bad signature, replayed, for another VM): not run. */
  UNAUTHORIZED: -32006,
  /** A seeder's copy of the VM, not its host: it serves the log and files and runs no calls. */
  NOT_HOST: -32007,
} as const

/** WebSocket close codes the server uses, with reasons that name the limit. */
export const CLOSE_CODES = {
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  POLICY: 1008,
  TOO_BIG: 1009,
  TRY_AGAIN_LATER: 1013,
} as const

/** The most bytes a WebSocket close reason holds (RFC 6455: a control frame's 125, less the code). */
export const MAX_CLOSE_REASON_BYTES = 123

/** `text` cut to what a close frame holds (ws throws on a longer reason), at a character boundary. */
export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= MAX_CLOSE_REASON_BYTES) return text
  let cut = text.slice(0, MAX_CLOSE_REASON_BYTES)
  // '…' takes 3 bytes.
  while (Buffer.byteLength(cut) > MAX_CLOSE_REASON_BYTES - 3) cut = cut.slice(0, -1)
  return `${cut}…`
}

export interface BackendInfo {
  methods: string[]
  callLogUrl: string
  filesArchiveUrl: string
  title: string
  auth: 'debug' | 'production'
  /**
   * The schema of the VM's call log (absent from hosts before schema 3): from 3 on, every call entry
   * holds the nonce its client chose for it, and a client requires its receipts to show it.
   */
  schema?: number
  /**
   * The code version the VM runs (log schema 4): its code's hash (SHA-256, hex) and the seq of the
   * entry that set it (0: the init entry, else an upgrade). Each call entry after an upgrade names
   * that seq (`codeSeq`), so a receipt proves which version answered; a client can pin one
   * (ConnectOptions.code).
   */
  code?: { hash: string; seq: number }
  /** Present when the code the VM runs is a bundle (bundleScript, `nodevms exec app.ts`): its entry file and the bundler. */
  bundle?: { entry: string; bundler: string }
  /** Present once the VM was upgraded: every code version it ran, oldest first (the init entry's, then each upgrade's). */
  codeHistory?: { hash: string; seq: number }[]
  /**
   * Asked for in the handshake (`codeReceipt: true`, as a client pinning a code version does): the
   * receipt of the entry that set the code (`code.seq`), which holds the code itself — proof, signed
   * by the log, that the version is that code.
   */
  codeReceipt?: Receipt
  /**
   * Production mode: this connection's nonce (hex), which every call signed on it includes. Fresh per
   * connection, so a signed call captured from one connection is refused on any other.
   */
  nonce?: string
  /**
   * A seeder's copy, not the host: how current it is. `length` is the entries the copy holds;
   * `hostLastSeen` (ISO 8601) the last time the seeder had a live connection to a peer holding its
   * whole copy of the log, or received a new entry — null when not since the seeder started.
   */
  replica?: ReplicaInfo
}

export interface ReplicaInfo {
  length: number
  hostLastSeen: string | null
  /**
   * Present once the seeder has proven that the host rewrote history this copy holds: the copy keeps
   * the history it received and stops following the host (`hostLastSeen` stays at the last time the
   * host served that history). `hostFork`/`copyFork`: the fork numbers of the two histories;
   * `seenAt` (ISO 8601): when the seeder proved it; `what`: what the proof shows, as the seeder words
   * it; `proofBytes`: the size of the proof's JSON. `proof`: the fork proof itself (two receipts
   * signed by the log's key: anyone checks it with checkForkProof, offline, and must, since it comes
   * from the seeder), or null when it is over 1 MiB (receipts hold whole entries): it is then only in
   * the seeder's dir.
   */
  forked?: {
    hostFork: number
    copyFork: number
    seenAt: string
    what: string
    proofBytes: number
    proof: import('../ledger/receipts.js').ForkProof | null
  }
}

export interface RPCErrorObject {
  code: number
  message: string
  /** `receipt`: the log's receipt of a logged failure, for a client that asked for receipts. */
  data?: { name: string; code: string; seq?: number; receipt?: Receipt }
}

export interface RPCResponse {
  jsonrpc: '2.0'
  id: number | string | null
  result?: unknown
  error?: RPCErrorObject
  /** The log's receipt of the call's entry (src/ledger/receipts.ts), for a client that asked for receipts. */
  receipt?: Receipt
}

/**
 * What an RPC connection runs over: a WebSocket, or a Protomux channel on a Hyperswarm connection
 * (net/swarm-rpc.ts, ChannelSocket), which has the same face.
 */
export interface MessageSocket {
  readonly readyState: number
  send(text: string, done?: (err?: Error) => void): void
  close(code?: number, reason?: string): void
  terminate(): void
  /** Stops reading from the connection until resume() (a WebSocket has them; a swarm channel does not). */
  pause?(): void
  resume?(): void
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this
  on(event: 'open', listener: () => void): this
  on(event: 'error', listener: (err: Error) => void): this
  once(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): this
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this
  once(event: 'open', listener: () => void): this
  once(event: 'error', listener: (err: Error) => void): this
}
