/**
 * libvms/client: the client, one codebase for Node and browsers. RPCClient (calls, receipts, pinning a
 * log or a code version), Ed25519 key pairs for production mode, and the offline receipt checks. Its
 * import graph holds no Node built-in (test/client-graph.test.ts): Node's connections (ws, the DHT) are
 * loaded only in Node (transport.ts). The main entry, libvms, exports the same RPCClient.
 */

export type { KeyPair } from '../auth/key-pair.js'
export { callerIdOf, exportKeyPair, generateKeyPair, importKeyPair } from '../auth/key-pair.js'
export type { ErrorCode } from '../errors.js'
export {
  EncodingError,
  InvalidArgumentError,
  LibVMSError,
  ReceiptError,
  RPCError,
  StateError,
} from '../errors.js'
export type { CoreName } from '../ledger/host-book.js'
export { HostBook } from '../ledger/host-book.js'
export type { CallEntry, InitEntry, LogEntry, UpgradeEntry } from '../ledger/log-entry.js'
export type { ForkProof, ProofVerdict, ProvenEntry, Receipt } from '../ledger/receipts.js'
// checkProof: a fork proof (an execution proof needs the sandbox: Verifier.checkProof of libvms, in Node).
export { checkForkProof as checkProof, compareReceipts, verifyReceipt } from '../ledger/receipts.js'
export type { SwarmOptions, SwarmSetting } from '../ledger/remote-source.js'
export type { BackendInfo } from '../rpc/protocol.js'
export { RPC_ERRORS } from '../rpc/protocol.js'
export { ReceiptBook, type ReceiptBookJSON } from '../rpc/receipt-book.js'
export type { ConnectOptions, RemoteMethods, TypedRPCClient } from './rpc-client.js'
export { RPCClient } from './rpc-client.js'
export type { StandardWebSocket, WebSocketClass } from './transport.js'
