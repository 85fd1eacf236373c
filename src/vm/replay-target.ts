/**
 * What a replay (replay.ts) reads and what it runs on: the log it re-runs (a ReplaySource), where it
 * may start (a ReplayStart), and the target its turns run on (a ReplayTarget) — a Rebuild into a
 * fresh archive (rebuild.ts) or a Checkout of a VM's own archive (restore.ts).
 */
import type { CheckedEntry } from '../auth/signature-checks.js'
import type { CallLog, ReadEntry } from '../ledger/call-log.js'
import type { FilesState } from '../ledger/files-archive.js'
import type { CallEntry, CallInput, InitEntry, LogEntry, RunOutcome, UpgradeEntry } from '../ledger/log-entry.js'
import type { VMSnapshot } from '../ledger/snapshot.js'
import type { VMLimits } from '../sandbox/limits.js'
import type { ConsoleSink } from '../sandbox/sandbox.js'
import type { CallAdmission } from './admission.js'
import type { CallExecutor, UpgradeTurnResult } from './call-executor.js'
import type { EngineSandbox, TurnRunner } from './turn-runner.js'

export interface ReplayAssertions {
  /** The files archive the log must name in its init entry. */
  filesArchiveUrl?: string
  /** The call log the replay must be reading. */
  callLogUrl?: string
}

/** How a log is replayed into a fresh archive: VM.fromCallLog's options, and openReplay's. */
export interface ReplayOptions {
  /** Where the replay keeps its archive (and log); a temp dir (removed on close) if absent. */
  dir?: string
  /** Replay only entries below this seq (default: the log's length when replay starts). */
  end?: number
  /**
   * Keep going: after `end`, replay entries as they are appended to the log (a fetched log follows
   * its host) until `signal` aborts; the replay then ends as usual. Without `signal` it only ends
   * when an entry fails.
   */
  follow?: boolean
  /** Stops following (see `follow`). */
  signal?: AbortSignal
  /** Replay a log recorded with other engine versions (results may then differ). */
  allowEngineMismatch?: boolean
  /**
   * The most this replay accepts of each limit the log's init entry claims (defaults:
   * DEFAULT_AUDIT_CEILING). A log above it is refused with LimitCeilingError before anything runs.
   */
  maxLimits?: Partial<VMLimits>
  console?: ConsoleSink
  watchdogMs?: number
  /** Run the script on a sandbox thread (default false: a replay is usually alone in its process). */
  thread?: boolean
}

/**
 * What a replay reads of a log: a CallLog, or any other copy of its signed entries (an audit
 * segment's share of them, audit/segment-thread.ts; an execution proof's, audit/execution-proof.ts).
 */
export type ReplaySource = Pick<CallLog, 'key' | 'url' | 'length' | 'ready' | 'get' | 'read' | 'waitForLength'> & {
  /** Entry `seq` as stored (a snapshot names its entry by their hash). */
  block(seq: number): Promise<Uint8Array>
}

/** Where a replay starts from a snapshot: the snapshot, and (into a fresh archive) the archive it goes with. */
export interface ReplayStart {
  /** A snapshot of the state after an entry that states its digest (checked against it). */
  snapshot: VMSnapshot
  /**
   * The files archive's blocks up to the state that entry records — the metadata core's first
   * `files.version` blocks and the blobs core's first `files.blobsLength`, as stored — for a replay
   * into a fresh archive (a VM's own archive holds them).
   */
  archive?: { db: Uint8Array[]; blobs: Uint8Array[] }
}

/** Logged calls as read (each with its block's size), each with the outcome of its signature check when one was made ahead. */
export type LoggedCalls = AsyncIterable<CheckedEntry>

/**
 * What a replay's turns run on, and what becomes of them: a Rebuild (rebuild.ts) or a Checkout
 * (restore.ts). The replay calls these in this order: open, then begin (from a snapshot) or init,
 * then for each call admit, run, keep; flush after each stretch; close at the end.
 */
export interface ReplayTarget {
  /** A sandbox made ahead, for the load or the snapshot's restore. */
  readonly prepared?: Promise<EngineSandbox>
  /** Whether a state digest of another state format is kept as logged (else the replay stops with EngineMismatchError). */
  readonly keepsOtherStateFormats: boolean
  /** Makes ready for the log of init entry `init`; resolves with the executor the replay drives. */
  open(source: ReplaySource, init: InitEntry): Promise<CallExecutor>
  /** Puts the archive in the state entry `from.snapshot.seq` records, before the snapshot is adopted. */
  begin(from: ReplayStart, entry: LogEntry, block: Uint8Array): Promise<void>
  /** Runs the logged init turn again (the script is loaded): its outcome and the archive state after it. */
  init(init: InitEntry): Promise<{ outcome: RunOutcome; files: FilesState }>
  /** The logged calls, each with its signature's check if the target has them checked ahead (the reads themselves if not). */
  checked(reads: AsyncIterable<ReadEntry>, init: InitEntry): LoggedCalls
  /** Admits logged call `seq` as a live VM would have (`signatureValid`: its signature's check, made ahead): its inputs. */
  admit(admission: CallAdmission, seq: number, logged: CallEntry, signatureValid: boolean | undefined): CallInput
  /** Runs logged call `seq` again: its outcome and the archive state its entry is to record. */
  run(seq: number, input: CallInput, logged: CallEntry): Promise<{ outcome: RunOutcome; files: FilesState }>
  /** The limits logged upgrade `seq` sets, checked (a Rebuild: against the auditor's ceiling). */
  upgradeLimits(seq: number, logged: UpgradeEntry): VMLimits
  /**
   * Runs logged upgrade `seq` again with `next`, the runner of its code (CallExecutor.upgradeTurn):
   * the load's cost, the hook's outcome, and the archive state its entry is to record.
   */
  upgrade(seq: number, next: TurnRunner, logged: UpgradeEntry): Promise<UpgradeTurnResult>
  /** Takes a replayed entry (`bytes`: the logged one's size). */
  keep(entry: LogEntry, bytes: number): Promise<void>
  /** Stores what it keeps. */
  flush(): Promise<void>
  close(): Promise<void>
}
