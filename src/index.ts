/**
 * libvms: cryptographically auditable VM services. The public API, and nothing else.
 */

export type { SnapshotSource } from './audit/checkpoint-starts.js'
export type { ExecutionProof, ProofCheckOptions, ProofStart, ProveOptions } from './audit/execution-proof.js'
export type { ReceiptCheck, VerifyOptions, VerifyReport } from './audit/verifier.js'
export { Verifier } from './audit/verifier.js'
export { loadKeyPair, saveKeyPair } from './auth/key-file.js'
export type { KeyPair } from './auth/key-pair.js'
export { callerIdOf, exportKeyPair, generateKeyPair, importKeyPair } from './auth/key-pair.js'
export type { CallPayload, SignedCall } from './auth/signed-call.js'
export type { ConnectOptions, RemoteMethods, TypedRPCClient, WebSocketClass } from './client/index.js'
export { RPCClient } from './client/index.js'
export type { CapacityFigures, ErrorCode } from './errors.js'
export {
  AuthError,
  CallError,
  CapacityError,
  DirectoryError,
  DivergenceError,
  EncodingError,
  EngineMismatchError,
  ERROR_CODES,
  FactoryError,
  FetchError,
  FilesError,
  HostFaultError,
  InvalidArgumentError,
  KeyFileError,
  LibVMSError,
  LimitCeilingError,
  ListenError,
  LogFormatError,
  MethodNotFoundError,
  QueueFullError,
  ReceiptError,
  RPCError,
  ScriptError,
  StateError,
  UpgradeError,
} from './errors.js'
export { CallLog } from './ledger/call-log.js'
export type { FilesState, HistoryRecord } from './ledger/files-archive.js'
export { DatArchive } from './ledger/files-archive.js'
export type { CoreName } from './ledger/host-book.js'
export { HostBook } from './ledger/host-book.js'
export type { AuthMode, CallEntry, InitEntry, LogEntry, UpgradeEntry } from './ledger/log-entry.js'
export { LOG_SCHEMA } from './ledger/log-entry.js'
export { codeHash } from './ledger/log-hashes.js'
export type { ForkProof, ProofVerdict, Receipt } from './ledger/receipts.js'
export type { RemoteOptions, SwarmOptions, SwarmSetting } from './ledger/remote-source.js'
export type { VMSnapshot } from './ledger/snapshot.js'
export { PublishedSnapshots, SnapshotStore } from './ledger/snapshot-store.js'
export type { BackendInfo, ReplicaInfo } from './rpc/protocol.js'
export { RPC_ERRORS } from './rpc/protocol.js'
export { ReceiptBook, type ReceiptBookJSON } from './rpc/receipt-book.js'
export type { RPCBackend } from './rpc/rpc-connection.js'
export type { ListenOptions, RPCServerOptions } from './rpc/rpc-server.js'
export { RPCServer } from './rpc/rpc-server.js'
export type { VMLimits } from './sandbox/limits.js'
export { DEFAULT_AUDIT_CEILING, DEFAULT_LIMITS } from './sandbox/limits.js'
export type { BundleInfo, BundleOptions, ScriptBundle } from './script/bundle.js'
export { bundleInfoOf, bundleScript } from './script/bundle.js'
export type { SeededFork, SeededVM, SeederOptions, UnprovenFork } from './seeder/seeder.js'
export { Seeder } from './seeder/seeder.js'
export type { CheckpointOptions } from './vm/checkpoints.js'
export type { CodeVersion } from './vm/code-versions.js'
export type { OpenReplayOptions, Replay, ReplayAssertions, ReplayEntry, ReplayOptions, ReplaySource, ReplayStart } from './vm/replay.js'
export { openReplay } from './vm/replay.js'
export type { DeployOptions, ExecuteCallRequest, LoggedCall, UpgradeOptions, UpgradeResult, VMOptions } from './vm/vm.js'

// The network layer provides itself to the ledger, once (CallLog.fetch, DatArchive by URL; see ledger/remote-source.ts).
import './net/remote-cores.js'

export { VM } from './vm/vm.js'
export type { FactoryServer, ProvisionedVMInfo, VMFactoryOptions } from './vm/vm-factory.js'
export { VMFactory } from './vm/vm-factory.js'
export type { HostedDeployOptions, VMHostOptions } from './vm/vm-host.js'
export { VMHost } from './vm/vm-host.js'
