/**
 * Verifier: compares what a host recorded with what an honest re-execution produces, and names the
 * first place they differ — the seq, method and caller of a call and the field that differs, or the
 * path of a file.
 */
import { DivergenceError, InvalidArgumentError, ReceiptError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { diffEntry } from '../ledger/entry-diff.js'
import type { DatArchive } from '../ledger/files-archive.js'
import { toHex } from '../ledger/keys.js'
import { type CallEntry, type LogEntry, sameFiles } from '../ledger/log-entry.js'
import {
  checkForkProof,
  compareReceipts,
  createReceipt,
  type ForkProof,
  type ProofVerdict,
  type Receipt,
  verifyReceipt,
} from '../ledger/receipts.js'
import type { VMLimits } from '../sandbox/limits.js'
import type { ConsoleSink } from '../sandbox/sandbox.js'
import { openReplay } from '../vm/replay.js'
import { counted } from '../wording.js'
import { checkNothingAfter, compareFiles } from './archive-compare.js'
import type { SnapshotSource } from './checkpoint-starts.js'
import { EntryChecks } from './entry-checks.js'
import { checkExecutionProof, type ProofCheckOptions, proveDivergence } from './execution-proof.js'
import { verifyInSegments } from './parallel-audit.js'

export interface VerifyOptions {
  /** Where the replay keeps its data; a temp dir removed afterwards if absent. */
  dir?: string
  /** Called after each entry is checked, with the entries checked and the log's length so far. */
  onProgress?: (done: number, total: number) => void
  /**
   * Keep verifying each new entry as the host appends it (a fetched log and archive follow their
   * host), until `signal` aborts; then resolve with the report. Rejects at the first divergence.
   */
  follow?: boolean
  /** Stops following (see `follow`). */
  signal?: AbortSignal
  /** Replay a log recorded with other engine versions. */
  allowEngineMismatch?: boolean
  /** The most of each limit the log may claim (see ReplayOptions.maxLimits). */
  maxLimits?: Partial<VMLimits>
  console?: ConsoleSink
  /**
   * Replay the log in this many segments at once, on threads (parallel-audit.ts): the log is cut at
   * checkpoints whose snapshots `snapshots` has. Needs the host's files archive; without usable
   * snapshots the audit runs whole, as with 1 (the default).
   */
  parallel?: number
  /** Where the host's snapshots are (a SnapshotStore on its data dir, say). */
  snapshots?: SnapshotSource
  /**
   * A light audit, weaker: replay only the calls after the newest checkpoint with a usable snapshot,
   * from that snapshot. It shows those calls right given the state the log states there, and nothing
   * about the calls before. Needs `snapshots` and the files archive.
   */
  light?: boolean
  /** Lines about snapshots passed over. */
  onNotice?: (message: string) => void
}

export interface VerifyReport {
  /** Entries checked, the init entry included. */
  entries: number
  /** Call entries among them. */
  calls: number
  /** Calls whose logged outcome is an error (they verify like any other). */
  failedCalls: number
  /** The archive version the last entry records. */
  filesVersion: number
  /** A segmented audit: the seq each segment started from (0: the script). */
  segments?: number[]
  /** A light audit: the checkpoint it started from; the calls up to it were not re-run. */
  lightFrom?: number
}

/** Compares two logs entry by entry; rejects with a DivergenceError at the first difference. */
async function compareLogs(expected: CallLog, actual: CallLog): Promise<void> {
  await Promise.all([expected.ready(), actual.ready()])
  // Byte-identical logs have the same Merkle tree hash, whatever their keys: nothing to walk.
  if (expected.length === actual.length) {
    const [a, b] = await Promise.all([expected.core.treeHash(expected.length), actual.core.treeHash(actual.length)])
    if (a.equals(b)) return
  }
  const common = Math.min(expected.length, actual.length)
  const theirs = actual.entries({ end: common })
  let seq = 0
  for await (const entry of expected.entries({ end: common })) {
    const next = await theirs.next()
    const divergence = diffEntry({ seq, logged: entry, replayed: next.value as LogEntry })
    if (divergence) throw divergence
    seq++
  }
  if (expected.length !== actual.length) throw DivergenceError.LENGTH(expected.length, actual.length)
}

/** Compares two archives' current files, then their histories; rejects naming the first differing path. */
async function compareArchives(expected: DatArchive, actual: DatArchive): Promise<void> {
  await Promise.all([expected.ready(), actual.ready()])
  const [se, sa] = await Promise.all([expected.state(), actual.state()])
  if (sameFiles(se, sa)) return
  await compareFiles(expected, actual)
  throw DivergenceError.HISTORY(se, sa)
}

/**
 * Replays `callLog` and checks it call by call, stopping at the first divergence. With the host's
 * `filesArchive`, also checks that the archive holds, at each logged version, exactly the state the
 * log records, and nothing after the last call.
 */
async function verify(callLog: CallLog, filesArchive: DatArchive | null, options: VerifyOptions = {}): Promise<VerifyReport> {
  const jobs = options.parallel ?? 1
  if (!Number.isSafeInteger(jobs) || jobs < 1) throw new InvalidArgumentError(`parallel must be a positive integer, got ${String(jobs)}`)
  if ((jobs > 1 || options.light) && !options.follow) {
    if (!options.snapshots || !filesArchive) {
      const missing = options.snapshots ? "the host's files archive" : "the host's snapshots (options.snapshots)"
      if (options.light) throw new InvalidArgumentError(`a light audit needs ${missing}`)
      options.onNotice?.(`auditing in one segment: a parallel audit needs ${missing}`)
    } else {
      return verifyInSegments(callLog, filesArchive, { ...options, jobs, snapshots: options.snapshots })
    }
  }
  await callLog.ready()
  if (filesArchive) await filesArchive.ready()
  const total = callLog.length
  const replay = await openReplay(callLog, {
    filesArchiveUrl: filesArchive?.url,
    dir: options.dir,
    end: total,
    follow: options.follow,
    signal: options.signal,
    allowEngineMismatch: options.allowEngineMismatch,
    maxLimits: options.maxLimits,
    console: options.console,
  })
  try {
    const checks = new EntryChecks(filesArchive)
    for await (const entry of replay.entries()) {
      await checks.check(entry)
      options.onProgress?.(entry.seq + 1, Math.max(total, callLog.length))
    }
    const { calls, failedCalls, lastFiles } = checks
    if (filesArchive && lastFiles) await checkNothingAfter(callLog, total - 1, lastFiles, filesArchive)
    return { entries: calls + 1, calls, failedCalls, filesVersion: lastFiles?.version ?? 0 }
  } finally {
    await replay.close()
  }
}

/**
 * Checks the link between a factory and a VM it provisioned: the factory's log must record a
 * provisioning that answered with this VM's call log, asked for with exactly the code and title the
 * VM's init entry holds. Rejects with a DivergenceError naming the factory call otherwise.
 */
async function compareProvisioned(factoryLog: CallLog, provisionedLog: CallLog): Promise<{ seq: number }> {
  await Promise.all([factoryLog.ready(), provisionedLog.ready()])
  const init = await provisionedLog.get(0)
  if (init.type !== 'init') throw DivergenceError.PROVISIONED_WITHOUT_INIT()
  let seq = 0
  for await (const entry of factoryLog.entries({ start: 1 })) {
    seq++
    const records = ((entry as CallEntry).oracle?.vms ?? []) as unknown as {
      op: string
      args?: { code?: unknown; title?: unknown }
      result?: { callLogUrl?: string }
    }[]
    for (const record of records) {
      if (record.op !== 'vms.provisionVM' || record.result?.callLogUrl !== provisionedLog.url) continue
      const asked = { code: record.args?.code, title: record.args?.title ?? '' }
      if (asked.code !== init.code)
        throw DivergenceError.PROVISIONED_OTHERWISE(seq, (entry as CallEntry).method, provisionedLog.url, 'code', asked.code, init.code)
      if (asked.title !== init.title)
        throw DivergenceError.PROVISIONED_OTHERWISE(seq, (entry as CallEntry).method, provisionedLog.url, 'title', asked.title, init.title)
      return { seq }
    }
  }
  throw DivergenceError.NOT_PROVISIONED(provisionedLog.url)
}

/** What checking a receipt against a log found: it holds, or the fork proof that it does not. */
export type ReceiptCheck =
  | { holds: true; seq: number; length: number }
  | { holds: false; why: string; proof: ForkProof | null }
  /** The copy of the log is behind the receipt (and not on another fork): it can neither confirm nor refute it yet. */
  | { holds: null; why: string }

/**
 * Checks a receipt (a client kept it) against the log as it is now: the log must still hold the
 * receipt's entry at its seq, and its signed state must continue the one the receipt was signed at.
 * If not, the answer carries a fork proof, a file anyone can check offline (checkForkProof), when
 * the log's own signatures make one; `proof` is null when the log holds too little to show it.
 * Throws ReceiptError if the receipt itself does not hold.
 */
async function checkReceipt(callLog: CallLog, receipt: Receipt): Promise<ReceiptCheck> {
  const told = verifyReceipt(receipt)
  await callLog.ready()
  if (told.log !== callLog.key) throw new ReceiptError(`it is a receipt of log ${told.log}, not of ${callLog.key}`)
  if (!callLog.writable) await callLog.update().catch(() => false)
  const length = callLog.length
  const forkProof = async (why: string): Promise<ReceiptCheck> => {
    if (length === 0) return { holds: false, why, proof: null }
    const now = await createReceipt(callLog, Math.min(told.seq, length - 1))
    const compared = compareReceipts(receipt, now)
    return { holds: false, why, proof: compared.holds ? compared.proof : null }
  }
  if (length <= told.seq) {
    // Shorter on the same fork: a copy that is behind. On another fork: the log was cut back.
    if (callLog.core.fork === told.fork) {
      return {
        holds: null,
        why: `this copy of the log has ${counted(length, 'entry', 'entries')}, not yet entry ${told.seq}: update it, or ask its host`,
      }
    }
    return forkProof(`the log has ${counted(length, 'entry', 'entries')} now; the receipt is of entry ${told.seq}`)
  }
  const stored = (await callLog.core.get(told.seq, { valueEncoding: 'binary' })) as unknown as Buffer
  if (!stored.equals(told.bytes)) return forkProof(`the log holds another entry at seq ${told.seq} than the receipt`)
  if (length >= told.length && toHex(await callLog.core.treeHash(told.length)) !== told.treeHash) {
    return forkProof(`the log's first ${counted(told.length, 'entry', 'entries')} are not the ones the receipt was signed with`)
  }
  if (callLog.core.fork > told.fork)
    return forkProof(`the log was truncated since it signed the receipt (fork ${told.fork}, now ${callLog.core.fork})`)
  return { holds: true, seq: told.seq, length: told.length }
}

/**
 * Checks a fraud proof offline, with nothing but the proof: a fork proof (two statements its log's
 * key signed that no append-only log signs) or an execution proof (signed entries that do not
 * replay as logged). Holds when it shows the log's host dishonest.
 */
async function checkProof(proof: unknown, options: ProofCheckOptions = {}): Promise<ProofVerdict> {
  const kind = (proof as { kind?: unknown } | null)?.kind
  return kind === 'execution' ? checkExecutionProof(proof, options) : checkForkProof(proof)
}

export const Verifier = {
  compareLogs,
  compareArchives,
  verify,
  compareProvisioned,
  checkReceipt,
  compareReceipts,
  checkProof,
  proveDivergence,
}
