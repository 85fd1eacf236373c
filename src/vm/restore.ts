/**
 * Restore: a VM reopening its own log (or rebuilding its sandbox after a host fault) puts its
 * in-memory state back by replaying that log (replay.ts) on a Checkout of its own archive: each call
 * re-runs from a checkout of the archive at the version the entry before it records, its changes
 * dropped (the archive holds them already), and every replayed entry must be the logged one. It
 * starts from the script, or from the newest snapshot that holds (vm/checkpoints.ts, newestUsable).
 */
import { DivergenceError } from '../errors.js'
import type { CallLog, ReadEntry } from '../ledger/call-log.js'
import { diffEntry } from '../ledger/entry-diff.js'
import type { FilesState } from '../ledger/files-archive.js'
import type { CallEntry, CallInput, InitEntry, RunOutcome, UpgradeEntry } from '../ledger/log-entry.js'
import type { VMSnapshot } from '../ledger/snapshot.js'
import type { VMLimits } from '../sandbox/limits.js'
import type { CallAdmission } from './admission.js'
import type { CallExecutor, UpgradeTurnResult } from './call-executor.js'
import { upgradeLimits } from './code-versions.js'
import { openReplay } from './replay.js'
import type { LoggedCalls, ReplayTarget } from './replay-target.js'
import type { EngineSandbox, TurnRunner } from './turn-runner.js'

/**
 * The VM's own archive, read at each logged version: a replay's turns run on checkouts of it and
 * write nothing. Its log was the VM's own as it wrote it: signatures are not checked again (each
 * signed call is only noted, so it cannot be admitted a second time), and state digests of another
 * build's format are kept as logged.
 */
export class Checkout implements ReplayTarget {
  readonly keepsOtherStateFormats = true

  constructor(
    private readonly executor: CallExecutor,
    readonly prepared?: Promise<EngineSandbox>,
  ) {}

  async open(): Promise<CallExecutor> {
    return this.executor
  }

  /** The archive holds the state the snapshot's entry records already (Checkpointer.newestUsable chose a snapshot that fits it). */
  async begin(): Promise<void> {}

  async init(init: InitEntry): Promise<{ outcome: RunOutcome; files: FilesState }> {
    return { outcome: await this.executor.recheckInit(init.timestamp, init.seed, init.files), files: init.files }
  }

  /** Nothing is checked ahead: signatures are not checked again in the VM's own log. */
  checked(reads: AsyncIterable<ReadEntry>): LoggedCalls {
    return reads
  }

  admit(admission: CallAdmission, seq: number, logged: CallEntry): CallInput {
    return admission.admitLogged(seq, logged, { checkAuth: false })
  }

  async run(seq: number, input: CallInput, logged: CallEntry): Promise<{ outcome: RunOutcome; files: FilesState }> {
    return { outcome: await this.executor.recheck(seq, input, logged.files), files: logged.files }
  }

  /** The VM's own log: its limits were checked as it wrote them. */
  upgradeLimits(seq: number, logged: UpgradeEntry): VMLimits {
    return upgradeLimits(seq, logged, null)
  }

  /** Loads the upgrade's code and runs its hook on a checkout of the archive as the entry before it records (its changes dropped). */
  upgrade(seq: number, next: TurnRunner, logged: UpgradeEntry): Promise<UpgradeTurnResult> {
    return this.executor.upgradeTurn(seq, next, logged, logged.files)
  }

  async keep(): Promise<void> {}

  async flush(): Promise<void> {}

  /** The executor and its storage are the VM's: nothing to let go of. */
  async close(): Promise<void> {}
}

/**
 * Restores an executor's in-memory state from its own log: load, init and every call re-run against
 * checkouts of the archive, each checked against the logged entry — or, given a snapshot (checked by
 * Checkpointer.newestUsable), its state and only the calls after it. The executor's authenticator
 * takes note of every signed call, so none can be admitted again. A log that does not replay as logged is a
 * DivergenceError naming the seq and the field (DivergenceError.OWN_LOG).
 */
export async function restoreFromLog(
  executor: CallExecutor,
  log: CallLog,
  options: {
    prepared?: Promise<EngineSandbox>
    /** Called after each call is re-run, with the calls done, their total and the snapshot's seq (0: none). */
    onProgress?: (done: number, total: number, fromSeq: number) => void
    snapshot?: VMSnapshot | null
  },
): Promise<void> {
  const length = log.length
  const snapshot = options.snapshot ?? null
  const from = snapshot?.seq ?? 0
  const total = length - 1 - from
  try {
    const into = new Checkout(executor, options.prepared)
    const replay = await openReplay(log, { into, end: length, from: snapshot ? { snapshot } : undefined })
    try {
      options.onProgress?.(0, total, from)
      for await (const entry of replay.entries()) {
        const divergence = diffEntry(entry)
        if (divergence) throw divergence
        if (entry.seq > from) options.onProgress?.(entry.seq - from, total, from)
      }
    } finally {
      await replay.close()
    }
  } catch (err) {
    throw err instanceof DivergenceError ? DivergenceError.OWN_LOG(err) : err
  }
}
