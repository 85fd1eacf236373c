/**
 * Checkpoints: when a VM states its state digest in its log, and the snapshots it keeps beside it.
 * This file is where checkpoint code starts; the rest of it, by layer:
 *
 * - sandbox/engine-state.ts: a sandbox's state between turns as bytes (capture, adopt, state format).
 * - ledger/snapshot.ts: the state digest an entry states, the snapshot file, and the one rule for
 *   whether a snapshot fits an entry (`snapshotMisfit`), used by every reader below.
 * - ledger/snapshot-store.ts: where snapshots are kept (a VM's dir) and published (its snapshots drive).
 * - vm/call-executor.ts: captures the state at a checkpoint (`captureState`) and adopts a snapshot's
 *   (`adopt`); vm/replay.ts computes the digests a log states, and starts from snapshots.
 * - here: when a live VM takes a checkpoint (`Checkpointer.due`), writes its snapshot, and which one a
 *   reopen starts from (`newestUsable`; vm/restore.ts replays the calls after it).
 * - audit/checkpoint-starts.ts: which checkpoints an audit's segments and an execution proof start from.
 *
 * At a checkpoint the call executor captures the VM's state right after the call's turn, puts its
 * digest in the call's entry (`state`) and, once the entry is stored, has the Checkpointer write the
 * snapshot to the VM's dir. A clean close writes one more, of the last call (its entry states no
 * digest; the snapshot is tied to it by the entry's hash). Reopening starts from the newest snapshot
 * that holds (`newestUsable`) and replays only the calls after it.
 */
import type { CallLog } from '../ledger/call-log.js'
import type { DatArchive } from '../ledger/files-archive.js'
import { decodeEntry, type InitEntry } from '../ledger/log-entry.js'
import { encodeSnapshotInSlices, maxSnapshotBytes, snapshotMisfit, type VMSnapshot } from '../ledger/snapshot.js'
import { publishedPath, type SnapshotStore } from '../ledger/snapshot-store.js'
import { MAX_MEMORY_BYTES } from '../sandbox/engine.js'
import { counted } from '../wording.js'
import { snapshotExpectation } from './code-versions.js'

export interface CheckpointOptions {
  /** A checkpoint at least every this many calls (default 1000). */
  every?: number
  /** ... and at the first call after this many ms without one (default 300,000: five minutes). */
  intervalMs?: number
  /** The newest snapshots kept in the VM's dir (default 3). */
  keep?: number
  /** Older snapshots kept beside them, spread over the log, for audits to start segments at (default 16). */
  spread?: number
}

export const DEFAULT_CHECKPOINTS: Readonly<Required<CheckpointOptions>> = Object.freeze({
  every: 1000,
  intervalMs: 300_000,
  keep: 3,
  spread: 16,
})

/** Checks checkpoint options; an InvalidArgumentError message for the first bad one, or null. */
export function checkpointOptionsProblem(options: CheckpointOptions | false | undefined): string | null {
  if (options === undefined || options === false) return null
  if (options === null || typeof options !== 'object') return 'checkpoints must be an object ({every, intervalMs, keep, spread}) or false'
  for (const [key, value] of Object.entries(options)) {
    if (!Object.hasOwn(DEFAULT_CHECKPOINTS, key))
      return `unknown checkpoints option ${JSON.stringify(key)}; known: every, intervalMs, keep, spread`
    // Every option counts something that must happen at least once, but spread, which may be none.
    const least = key === 'spread' ? 0 : 1
    if (value !== undefined && !(Number.isSafeInteger(value) && (value as number) >= least)) {
      return `checkpoints.${key} must be ${least === 0 ? 'a non-negative' : 'a positive'} integer, got ${String(value)}`
    }
  }
  return null
}

export class Checkpointer {
  readonly every: number
  readonly intervalMs: number
  private lastAt = Date.now()
  private writing: Promise<void> = Promise.resolve()
  /** The seq of the newest snapshot written (or being written). */
  newestSeq = 0

  constructor(
    readonly store: SnapshotStore,
    options: CheckpointOptions,
    /** Where lines about snapshots go (skipped, failed to write). */
    private readonly notice: (message: string) => void,
    /** The seq of the last checkpoint; at first, that of the last entry of the log as it is opened. */
    private lastSeq = 0,
    /**
     * Where snapshots are published for auditors (VMStorage.snapshots), if the log names one: a drive
     * that may still be opening (a first deploy opens it while the script loads).
     */
    private readonly published: Promise<DatArchive | null> = Promise.resolve(null),
  ) {
    this.every = options.every ?? DEFAULT_CHECKPOINTS.every
    this.intervalMs = options.intervalMs ?? DEFAULT_CHECKPOINTS.intervalMs
  }

  /** How many calls past the newest snapshot make a clean close write one: 1/16 of `every` (63 by default). */
  get closeSnapshotAfter(): number {
    return Math.max(1, Math.ceil(this.every / 16))
  }

  /** Whether call `seq` is a checkpoint; if it is, the next one is counted from it. */
  due(seq: number): boolean {
    const now = Date.now()
    if (seq - this.lastSeq < this.every && !(now - this.lastAt >= this.intervalMs && seq > this.lastSeq)) return false
    this.lastSeq = seq
    this.lastAt = now
    return true
  }

  /**
   * Writes a snapshot after the ones before it — to the dir, then to the published drive, each
   * removing what retention lets go of; a failure is a notice, never a call's failure.
   */
  save(snapshot: VMSnapshot): void {
    this.newestSeq = Math.max(this.newestSeq, snapshot.seq)
    this.writing = this.writing
      .then(async () => {
        const file = await encodeSnapshotInSlices(snapshot)
        const removed = await this.store.write(snapshot.seq, file)
        const drive = (await this.published)?.drive
        if (!drive) return
        await drive.put(publishedPath(snapshot.seq), Buffer.from(file.buffer, file.byteOffset, file.byteLength))
        for (const seq of removed) {
          const path = publishedPath(seq)
          // Its blocks are freed here; a copy an auditor already fetched keeps them.
          await drive.clear(path).catch(() => {})
          await drive.del(path)
        }
      })
      .catch((err) => this.notice(`the snapshot of seq ${snapshot.seq} was not written: ${(err as Error).message}`))
  }

  /** Resolves when every snapshot asked for is written (or has failed). */
  written(): Promise<void> {
    return this.writing
  }

  /**
   * The newest snapshot in the store that belongs to this log and fits this VM, checked: readable and
   * whole, its content hashing to its state, its entry the log's entry at its seq, and that entry's
   * stated digest (if it states one) its own. Each one passed over is a notice saying why.
   */
  async newestUsable(log: CallLog, init: InitEntry): Promise<VMSnapshot | null> {
    const seqs = await this.store.seqs()
    for (const seq of seqs) {
      const snapshot = await this.usable(seq, log, init)
      if (typeof snapshot !== 'string') {
        this.newestSeq = seq
        return snapshot
      }
      this.notice(`snapshot of seq ${seq} skipped: ${snapshot}; ${fallbackOf(seqs, seq)}`)
    }
    return null
  }

  /**
   * The snapshot of `seq` if it fits the log's entry there and this VM, under the code its host state
   * names (snapshotMisfit, snapshotExpectation), or why not.
   */
  private async usable(seq: number, log: CallLog, init: InitEntry): Promise<VMSnapshot | string> {
    if (seq <= 0 || seq >= log.length) return `the log has ${counted(log.length, 'entry', 'entries')}: it is not of this log as it is now`
    // The VM's own dir: read up to the largest memory a VM has (its code, and so its limits, may have changed).
    const snapshot = await this.store.read(seq, maxSnapshotBytes(MAX_MEMORY_BYTES)).catch((err) => (err as Error).message)
    if (typeof snapshot === 'string') return snapshot
    const expected = await snapshotExpectation(log, init, snapshot, null)
    if (typeof expected === 'string') return expected
    const block = await log.block(seq)
    return snapshotMisfit(snapshot, { seq, entry: decodeEntry(block, seq), block, ...expected }) ?? snapshot
  }
}

function fallbackOf(seqs: number[], seq: number): string {
  const older = seqs.filter((s) => s < seq && s > 0)
  return older.length > 0 ? `trying the one of seq ${older[0]}` : 'replaying the whole log'
}
