/**
 * Rebuild: what a replay of someone's log runs its turns on — a fresh archive, written as the calls
 * run (an audit; a RebuildVM also stores the replayed entries in a fresh log, for VM.fromCallLog to
 * adopt) — and the checks a log must pass before anything of it runs (checkReplayable).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CallAuthenticator } from '../auth/call-auth.js'
import { withSignatureChecks } from '../auth/signature-checks.js'
import {
  DirectoryError,
  DivergenceError,
  EngineMismatchError,
  InvalidArgumentError,
  LimitCeilingError,
  LogFormatError,
  StateError,
} from '../errors.js'
import type { ReadEntry } from '../ledger/call-log.js'
import { type FilesFormat, filesFormat } from '../ledger/drive-format.js'
import type { FilesState } from '../ledger/files-archive.js'
import {
  type CallEntry,
  type CallInput,
  type InitEntry,
  type LogEntry,
  type RunOutcome,
  sameFiles,
  type UpgradeEntry,
} from '../ledger/log-entry.js'
import { snapshotMisfit } from '../ledger/snapshot.js'
import { VMStorage } from '../ledger/vm-storage.js'
import { type CostSchedule, costSchedule } from '../sandbox/host-work.js'
import { limitAboveCeiling, resolveLimits, type VMLimits } from '../sandbox/limits.js'
import type { CallAdmission } from './admission.js'
import { CallExecutor, type ExecutorOptions, type UpgradeTurnResult } from './call-executor.js'
import { upgradeLimits } from './code-versions.js'
import { ENGINE_INFO } from './engine-info.js'
import type { LoggedCalls, ReplayOptions, ReplaySource, ReplayStart, ReplayTarget } from './replay-target.js'
import { TurnRunner } from './turn-runner.js'

function checkEngine(init: InitEntry, allow: boolean): void {
  const differences: string[] = []
  for (const key of ['name', 'variant', 'version', 'hyperdrive', 'hyperbee'] as const) {
    if (init.engine?.[key] !== ENGINE_INFO[key]) differences.push(`${key}: log ${String(init.engine?.[key])}, here ${ENGINE_INFO[key]}`)
  }
  if (differences.length > 0 && !allow) throw new EngineMismatchError(differences)
}

/**
 * What a replay needs of a log's init entry before anything runs: engine versions it can replay (or
 * `allowEngineMismatch`), a cost schedule and files format it knows, valid limits, none above the
 * auditor's ceilings (`maxLimits`). Throws the error a replay of it would.
 */
export function checkReplayable(
  init: InitEntry,
  options: Pick<ReplayOptions, 'allowEngineMismatch' | 'maxLimits'>,
): { schedule: CostSchedule; format: FilesFormat; limits: VMLimits } {
  checkEngine(init, !!options.allowEngineMismatch)
  const schedule = costSchedule(init.costSchedule)
  if (!schedule) {
    throw new LogFormatError(`the log's cost schedule ${init.costSchedule} is not known to this LibVMS; replay it with a newer one`, 0)
  }
  const format = filesFormat(init.filesFormat)
  if (format === null) {
    throw new LogFormatError(`the log's files format ${init.filesFormat} is not known to this LibVMS; replay it with a newer one`, 0)
  }
  let limits: VMLimits
  try {
    limits = resolveLimits(init.limits)
  } catch (err) {
    throw new LogFormatError(`the init entry's limits are invalid: ${(err as Error).message}`, 0)
  }
  const above = limitAboveCeiling(limits, options.maxLimits)
  if (above) throw new LimitCeilingError(above.limit, above.logged, above.ceiling, `{maxLimits: {${above.limit}}}`)
  return { schedule, format, limits }
}

/** Calls stored per atomic write while rebuilding, at most. */
const REBUILD_GROUP_CALLS = 512
/**
 * Bytes per atomic write while rebuilding, at most (at least one call): the replayed entries and the
 * file contents a group holds in memory until it is stored, counted as the logged entries' sizes and
 * the contents blocks the calls added (each at most HYPERBLOBS_BLOCK_BYTES).
 */
const REBUILD_GROUP_BYTES = 8 * 1024 * 1024
/** The most bytes Hyperblobs puts in one contents block (its default block size, which Hyperdrive uses). */
const HYPERBLOBS_BLOCK_BYTES = 64 * 1024

/** What a rebuild made: its storage (a fresh log and archive) and the executor that holds them. */
export interface Rebuilt {
  storage: VMStorage
  executor: CallExecutor
  /** The temp dir it made for them (null: the one it was given). */
  ownedDir: string | null
}

/**
 * A fresh archive for a replay of someone's log, in a dir of its own (a temp dir, removed on close,
 * unless `dir` is given): each call re-runs on the archive as the calls before it left it, and its
 * changes are stored in groups bounded in calls and bytes. The replayed entries are handed to the
 * reader and let go (an audit: only the archive is needed, since later calls read it). A log whose
 * engine, cost schedule, files format or limits this replay cannot take is refused at `open`.
 */
export class Rebuild implements ReplayTarget {
  readonly keepsOtherStateFormats: boolean
  protected made: Rebuilt | null = null
  /** The calls kept since the last flush, their bytes (see REBUILD_GROUP_BYTES), and the contents blocks the archive had then. */
  private readonly group = { calls: 0, bytes: 0, blobsLength: 0 }

  constructor(private readonly options: ReplayOptions & Pick<ExecutorOptions, 'recover'> = {}) {
    this.keepsOtherStateFormats = !!options.allowEngineMismatch
  }

  protected parts(): Rebuilt {
    if (!this.made) throw new StateError('the rebuild is not open, or was handed over')
    return this.made
  }

  async open(source: ReplaySource, init: InitEntry): Promise<CallExecutor> {
    const { schedule, format, limits } = checkReplayable(init, this.options)
    const ownedDir = this.options.dir ? null : await mkdtemp(join(tmpdir(), 'libvms-replay-'))
    const dir = this.options.dir ?? (ownedDir as string)
    const storage = await VMStorage.open(dir, 'replay').catch(async (err) => {
      if (ownedDir) await rm(ownedDir, { recursive: true, force: true })
      throw err
    })
    if (!storage.fresh) {
      await storage.close()
      throw new DirectoryError('ERR_REPLAY_DIR_USED', `${dir} already holds a replay; give the replay a new or empty dir`)
    }
    const runner = new TurnRunner({
      code: init.code,
      limits,
      identity: { key: init.filesArchiveKey, title: init.title },
      console: this.options.console,
      watchdogMs: this.options.watchdogMs,
      thread: this.options.thread,
      // A factory's System.vms answers come from the log: a replay never provisions anything.
      factory: !!init.factory,
      logSchema: init.schema,
      costSchedule: schedule.version,
      filesFormat: format,
    })
    const authenticator = new CallAuthenticator(init.auth, source.key, init.schema)
    const executor = new CallExecutor(runner, storage, authenticator, { recover: this.options.recover })
    this.made = { storage, executor, ownedDir }
    return executor
  }

  /** Writes the archive's blocks up to the snapshot's entry (they must hash to the state it records), once the snapshot fits it. */
  async begin(from: ReplayStart, entry: LogEntry, block: Uint8Array): Promise<void> {
    const { storage, executor } = this.parts()
    const { snapshot } = from
    const { stateFormat, limits } = executor.runner
    const fit = { seq: snapshot.seq, entry, block, stateFormat, memoryBytes: limits.memoryBytes, checkpoint: true }
    if (snapshotMisfit(snapshot, fit) !== null || entry.type !== 'call') {
      throw new InvalidArgumentError(`the snapshot of seq ${snapshot.seq} is not of the state the log states there; start elsewhere`)
    }
    if (!from.archive) {
      throw new InvalidArgumentError(
        `a replay into a fresh archive from seq ${snapshot.seq} needs the archive's blocks up to it (from.archive)`,
      )
    }
    const drive = storage.filesArchive.drive
    if (from.archive.db.length > 0) {
      await drive.core.append(from.archive.db.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
      if (from.archive.blobs.length > 0) {
        const blobs = await drive.getBlobs()
        await blobs.core.append(from.archive.blobs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
      }
    }
    const files = await storage.filesArchive.state()
    if (!sameFiles(files, entry.files)) throw DivergenceError.START_ARCHIVE(snapshot.seq, entry.method, entry.files, files)
    this.group.blobsLength = files.blobsLength
  }

  async init(init: InitEntry): Promise<{ outcome: RunOutcome; files: FilesState }> {
    const { executor } = this.parts()
    const outcome = await executor.init(init.timestamp, init.seed)
    return { outcome, files: await executor.currentFiles() }
  }

  /** A production log's signatures are checked on another thread, a batch ahead of the replay. */
  checked(reads: AsyncIterable<ReadEntry>, init: InitEntry): LoggedCalls {
    return init.auth === 'production' ? withSignatureChecks(reads) : reads
  }

  /** Every signature is checked: it is someone else's log. */
  admit(admission: CallAdmission, seq: number, logged: CallEntry, signatureValid: boolean | undefined): CallInput {
    return admission.admitLogged(seq, logged, { signatureValid })
  }

  run(seq: number, input: CallInput): Promise<{ outcome: RunOutcome; files: FilesState }> {
    return this.parts().executor.rerun(seq, input)
  }

  /** Checked against the auditor's ceiling, as the init entry's are. */
  upgradeLimits(seq: number, logged: UpgradeEntry): VMLimits {
    return upgradeLimits(seq, logged, this.options.maxLimits ?? {})
  }

  upgrade(seq: number, next: TurnRunner, logged: UpgradeEntry): Promise<UpgradeTurnResult> {
    return this.parts().executor.upgradeTurn(seq, next, logged, 'apply')
  }

  async keep(entry: LogEntry, bytes: number): Promise<void> {
    this.store(entry)
    // What the group holds: the replayed entries (about as big as the logged ones) and the contents
    // blocks its calls added.
    const group = this.group
    group.calls++
    group.bytes += bytes + Math.max(0, entry.files.blobsLength - group.blobsLength) * HYPERBLOBS_BLOCK_BYTES
    group.blobsLength = entry.files.blobsLength
    if (group.calls >= REBUILD_GROUP_CALLS || group.bytes >= REBUILD_GROUP_BYTES) await this.flush()
  }

  /** What becomes of a replayed entry beside the archive: nothing here (the reader has it). */
  protected store(_entry: LogEntry): void {}

  flush(): Promise<void> {
    this.group.calls = 0
    this.group.bytes = 0
    return this.parts().executor.flush()
  }

  async close(): Promise<void> {
    const made = this.made
    this.made = null
    if (!made) return
    made.executor.runner.dispose()
    await made.executor.close().catch(() => {})
    await made.storage.close().catch(() => {})
    if (made.ownedDir) await rm(made.ownedDir, { recursive: true, force: true })
  }
}

/**
 * A Rebuild that also stores every replayed entry in a fresh log beside the archive, with its call's
 * changes: what an honest host would hold. Once read to the end, `handOver` gives it to a VM to adopt
 * (VM.fromCallLog). It replays a whole log: a VM's log starts at its init entry.
 */
export class RebuildVM extends Rebuild {
  protected override store(entry: LogEntry): void {
    this.parts().executor.stage(entry)
  }

  override async begin(from: ReplayStart): Promise<void> {
    throw new InvalidArgumentError(`a VM is rebuilt from its whole log, not from the snapshot of seq ${from.snapshot.seq}`)
  }

  /** What the rebuild made, for a VM to adopt: closing the rebuild lets go of none of it after this. */
  handOver(): Rebuilt {
    const made = this.parts()
    this.made = null
    return made
  }
}
