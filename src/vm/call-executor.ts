/**
 * CallExecutor: the one owner of the life of a VM's calls after admission — queue, one turn in the
 * sandbox, stage the entry with its file changes, store the group, answer. It alone decides which
 * calls are stored together and when a reply may leave: never before the call's entry is stored
 * (docs/log-format.md, "Crash consistency").
 *
 * Calls run one at a time: each caller's in the order they came, the callers taking turns (a fair
 * queue, call-queue.ts). Their file changes and entries are stored in one atomic write shared with
 * the calls that queued up behind them (group commit); once a caller's last queued call has run, its
 * group is stored before any caller gets a second turn in it, so a caller waiting on one call does
 * not wait for another caller's backlog. A group that only appends
 * to the log is stored while the next calls run; a group with file changes (a CommitGroup) is
 * waited for. Replay and reopen drive the same executor, a logged turn at a time (replay.ts): `rerun`
 * runs one on the archive as it is and keeps its changes (a rebuild); `recheck` runs it from a
 * checkout of the archive at the version the entry before it records and drops them (the VM's own
 * archive holds them already).
 *
 * The executor owns its position in the log — the seq the next call gets, the latest timestamp,
 * the archive state after the last turn — and no one else writes it: every turn it runs moves it
 * (the init turn puts it after entry 0, each call after its own), and `adopt` puts it after the
 * entry a snapshot is of.
 */
import type Hyperbee from 'hyperbee'
import type { CallAuthenticator } from '../auth/call-auth.js'
import { HostFaultError, LibVMSError, QueueFullError, StateError } from '../errors.js'
import { CommitGroup } from '../ledger/commit-group.js'
import type { FilesState } from '../ledger/files-archive.js'
import type { StorageUsage } from '../ledger/files-transaction.js'
import { FilesView } from '../ledger/files-view.js'
import { buildCallEntry, type CallEntry, type CallInput, type LogEntry, type RunOutcome } from '../ledger/log-entry.js'
import { codeHash } from '../ledger/log-hashes.js'
import { randomHexSource } from '../ledger/random-values.js'
import { entryHash, type HostState, stateDigestInSlices, type VMSnapshot } from '../ledger/snapshot.js'
import type { VMStorage } from '../ledger/vm-storage.js'
import type { EngineState } from '../sandbox/engine-state.js'
import type { AdmittedCall } from './admission.js'
import { CallQueue, type Lane, type QueueRoom } from './call-queue.js'
import type { Checkpointer } from './checkpoints.js'
import { type EngineSandbox, type TurnFiles, type TurnResult, type TurnRunner, usageAfter } from './turn-runner.js'

/** A call that was stored: its entry, its seq, and the log's length once its group was stored. */
export interface StoredCall {
  entry: CallEntry
  seq: number
  length: number
}

/** A live call, admitted (admission.ts) and waiting for its turn. */
interface QueuedCall {
  input: AdmittedCall
  resolve: (stored: StoredCall) => void
  reject: (err: unknown) => void
}

interface WaitingCall {
  entry: CallEntry
  seq: number
  /** At a checkpoint: the state captured after the call, written as a snapshot once the entry is stored. */
  checkpoint: CapturedState | null
  resolve: (stored: StoredCall) => void
  reject: (err: unknown) => void
}

/** The VM's state captured between turns: its engine's, the host's, their digest and its format. */
export interface CapturedState {
  engine: EngineState
  host: HostState
  state: string
  stateFormat: string
}

/** Puts a captured state's digest and format in a call's entry: its last two fields. */
export function stateEntry(entry: CallEntry, captured: Pick<CapturedState, 'state' | 'stateFormat'>): void {
  entry.stateFormat = captured.stateFormat
  entry.state = captured.state
}

/** What an upgrade's turn did (CallExecutor.upgradeTurn), for its entry. */
export interface UpgradeTurn {
  timestamp: number
  seed: string
  /** The version it replaced (or would have). */
  replaces: { hash: string; seq: number }
  loadCost: number
  outcome: RunOutcome & { ok: true }
  /** The archive state after it. */
  files: FilesState
}

/** What upgradeTurn resolves with: an UpgradeTurn whose hook may have failed. */
export type UpgradeTurnResult = Omit<UpgradeTurn, 'outcome'> & { outcome: RunOutcome }

/** Most calls stored in one group: bounds how long the first of them waits for its answer. */
const MAX_GROUP_CALLS = 256

/** What an executor is built with, beside its sandbox, storage and caller check. */
export interface ExecutorOptions {
  /** Where live calls take checkpoints; none if absent (a schema 1 log, checkpoints turned off, a replay). */
  checkpointer?: Checkpointer | null
  /** Rebuilds the sandbox from the log after a host fault (vm.ts, with restore.ts). */
  recover?: (executor: CallExecutor) => Promise<void>
}

export class CallExecutor {
  /** The archive state after the last turn; null: read it from the archive when it is needed. */
  private files: FilesState | null = null
  /** What the archive holds after the last turn, for the storage quotas (counted turn by turn from init). */
  private usage: StorageUsage = { bytes: 0, entries: 0 }
  /** Calls' file changes not stored yet, and the entries that will be stored with them. */
  private group: CommitGroup | null = null
  private staged: LogEntry[] = []
  /** The write being stored, if any. */
  private inFlight: Promise<void> | null = null
  /** The seq the next call gets, and the latest timestamp in the log so far (time never goes back in a log). */
  private position = { nextSeq: 0, lastTimestamp: 0 }
  readonly newSeed = randomHexSource() // seeds of live calls, and of a first deploy's init
  private readonly queue = new CallQueue<QueuedCall>()
  /**
   * The lanes that had a turn in the group being gathered since a caller's last queued call ran in it
   * (null: none has yet). The group is stored before a lane gets a second turn after that.
   */
  private turnsAfterLastCall: Set<Lane> | null = null
  private running: Promise<void> | null = null
  /** Calls that ran and wait for their group to be stored before they are answered. */
  private waiting: WaitingCall[] = []
  /** The group being stored, if any. */
  private flushing: Promise<void> | null = null
  /** Set when storing failed: the in-memory state is then ahead of the log, and no more calls run. */
  failure: LibVMSError | null = null
  /** Where live calls take checkpoints; null: none. */
  readonly checkpointer: Checkpointer | null
  private readonly recover: (executor: CallExecutor) => Promise<void>
  /** The runner of the code the VM runs now (an upgrade replaces it). */
  private current: TurnRunner
  /** The seq of the entry whose code runs: 0, the init entry's, or an upgrade's. */
  private codeSeq = 0

  constructor(
    runner: TurnRunner,
    readonly storage: VMStorage,
    /**
     * The VM's caller check. Its signed-call counters are the VM's only set: the executor advances
     * their run marks as calls run and puts them in snapshots (CallCounters).
     */
    readonly authenticator: CallAuthenticator,
    options: ExecutorOptions = {},
  ) {
    this.checkpointer = options.checkpointer ?? null
    this.recover = options.recover ?? (async () => {})
    this.current = runner
  }

  /** The runner of the code the VM runs now. */
  get runner(): TurnRunner {
    return this.current
  }

  /** The seq of the entry whose code the VM runs now: 0 (the init entry) or an upgrade's. */
  get codeVersionSeq(): number {
    return this.codeSeq
  }

  /**
   * Runs `runner`'s code from entry `seq` on (an upgrade's, or 0) without a turn: for a replay that
   * starts from a snapshot taken under that code. The runner it replaces is disposed of.
   */
  useCode(runner: TurnRunner, seq: number): void {
    if (runner !== this.current) this.current.dispose()
    this.current = runner
    this.codeSeq = seq
  }

  /** The seq the next call gets (the log's length once every call run is stored). */
  get nextSeq(): number {
    return this.position.nextSeq
  }

  /** The latest timestamp in the log so far: no later call is dated before it. */
  get lastTimestamp(): number {
    return this.position.lastTimestamp
  }

  /** Moves the position after entry `seq`, dated `timestamp`. */
  private standAfter(seq: number, timestamp: number): void {
    this.position = { nextSeq: seq + 1, lastTimestamp: timestamp }
  }

  // ---- turns ----

  /** The init turn, on the empty archive (its changes join the commit group): the executor then stands after entry 0. */
  init(timestamp: number, seed: string): Promise<RunOutcome> {
    this.startAt(null)
    this.standAfter(0, timestamp)
    return this.applyTurn((files) => this.runner.runInit(timestamp, seed, files))
  }

  /** A logged init turn again, on an empty checkout (its changes are dropped): the executor then stands after entry 0, at `files`. */
  recheckInit(timestamp: number, seed: string, files: FilesState): Promise<RunOutcome> {
    this.startAt(files)
    this.standAfter(0, timestamp)
    return this.checkTurn(0, (turn) => this.runner.runInit(timestamp, seed, turn))
  }

  /** Host state as before the init turn: nothing stored, no signed call run; the archive at `files` (null: read it). */
  private startAt(files: FilesState | null): void {
    this.codeSeq = 0
    this.usage = { bytes: 0, entries: 0 }
    this.authenticator.counters.restartFrom([])
    this.files = files
  }

  /** A live call on the archive as it is; its changes join the commit group (stored with the next flush). */
  private apply(input: CallInput): Promise<RunOutcome> {
    return this.applyTurn((files) => this.runner.runTurn(input, files, true))
  }

  /**
   * Logged call `seq` again, on the archive as it is (a rebuild): its changes join the commit group.
   * The executor then stands after it. Resolves with its outcome and the archive state after it.
   */
  async rerun(seq: number, input: CallInput): Promise<{ outcome: RunOutcome; files: FilesState }> {
    const outcome = await this.applyTurn((files) => this.runner.runTurn(input, files, false))
    this.standAfter(seq, input.timestamp)
    return { outcome, files: await this.currentFiles() }
  }

  /**
   * Logged call `seq` again, from a checkout of the archive at the state the entry before it records
   * (the VM's own archive, which holds its changes already: they are dropped). The executor then
   * stands after it, at `after`, the archive state its entry records.
   */
  async recheck(seq: number, input: CallInput, after: FilesState): Promise<RunOutcome> {
    const version = (await this.currentFiles()).version
    const outcome = await this.checkTurn(version, (files) => this.runner.runTurn(input, files, false))
    this.files = after
    this.standAfter(seq, input.timestamp)
    return outcome
  }

  // ---- upgrades ----

  /**
   * The upgrade turn of entry `seq`: `next` (a successor of the runner) loads its code with the
   * entry's timestamp and seed, then its `upgrade` hook runs with the old code's exports. `files`:
   * where the hook's changes go — 'apply' (live, or a rebuild: they join the commit group) or the
   * archive state the logged entry records (a checkout: the hook reads the archive as it was, its
   * changes are dropped). A load that throws throws (ScriptError), and nothing changed; a hook that
   * fails resolves with its failed outcome and nothing changed, `next` disposed of. Otherwise `next`
   * is the VM's runner from here on, the old one disposed of, and the executor stands after `seq`.
   */
  async upgradeTurn(
    seq: number,
    next: TurnRunner,
    turn: { timestamp: number; seed: string },
    files: 'apply' | FilesState,
    /** Called once the code is loaded, before its hook runs; what it throws refuses the upgrade. */
    afterLoad?: () => Promise<void>,
  ): Promise<UpgradeTurnResult> {
    const { timestamp, seed } = turn
    let loadCost: number
    let outcome: RunOutcome
    try {
      loadCost = await next.load(timestamp, seed)
      await afterLoad?.()
      const hook = (turnFiles: TurnFiles) => next.runUpgrade(timestamp, seed, turnFiles, this.current)
      if (files === 'apply') outcome = await this.applyTurn(hook)
      else outcome = await this.checkTurn((await this.currentFiles()).version, hook)
    } catch (err) {
      next.dispose()
      throw err
    }
    const replaces = { hash: codeHash(this.current.code), seq: this.codeSeq }
    if (!outcome.ok) {
      next.dispose()
      return { timestamp, seed, loadCost, outcome, files: await this.currentFiles(), replaces }
    }
    if (files !== 'apply') this.files = files
    this.useCode(next, seq)
    this.standAfter(seq, timestamp)
    return { timestamp, seed, loadCost, outcome, files: await this.currentFiles(), replaces }
  }

  /**
   * A live upgrade, between calls: calls queued before it run (on the old code) and are stored
   * first; then `next` loads and its hook runs (upgradeTurn), and `entryOf` builds the entry, which
   * is stored alone. The caller holds new calls back meanwhile (vm.ts). A load that throws, or a hook
   * that fails, leaves the VM as it was — the old code's state put back as it was before the hook
   * called it — and appends nothing: resolves with the failure, or throws the load's error.
   */
  async upgradeLive(
    next: TurnRunner,
    /** Checks the loaded code before its hook runs (a factory's exports); what it throws refuses the upgrade. */
    checkLoaded: () => void,
    entryOf: (result: UpgradeTurn & { seq: number }) => LogEntry,
  ): Promise<{ seq: number; entry: LogEntry } | { failed: RunOutcome & { ok: false } }> {
    while (this.running || this.flushing) {
      await this.running
      await this.flushing
    }
    if (this.failure) throw new StateError(`the VM stopped after a storage failure (${this.failure.message}); reopen it`)
    const seq = this.nextSeq
    const turn = { timestamp: this.takeTimestamp(), seed: this.newSeed() }
    // The hook's calls to the old code change its state: it is put back if the upgrade fails.
    const old = this.current
    let before: EngineState | null = null
    let result: UpgradeTurnResult
    try {
      result = await this.upgradeTurn(seq, next, turn, 'apply', async () => {
        checkLoaded()
        if (next.hasUpgradeHook) before = await old.captureState()
      })
    } catch (err) {
      if (before) await old.restore(before).catch((restoring) => this.fail(restoring as Error))
      throw err
    }
    const { outcome } = result
    if (!outcome.ok) {
      if (before) await old.restore(before)
      return { failed: outcome }
    }
    const entry = entryOf({ ...result, seq, outcome })
    this.stage(entry)
    try {
      await this.flush()
    } catch (err) {
      this.fail(err as Error)
      throw new StateError(`the upgrade could not be logged: ${(err as Error).message}; reopen the VM`)
    }
    return { seq, entry }
  }

  private async applyTurn(run: (files: TurnFiles) => Promise<TurnResult>): Promise<RunOutcome> {
    const archive = this.storage.filesArchive
    const drive = archive.drive
    // Reads go through the commit group when one is open (it holds changes not stored yet). If
    // something else wrote to the cores, the group is stale and the archive state is read again.
    if (this.group && !this.group.isCurrent()) {
      await this.close()
      this.files = null
    }
    if (!this.group && this.files) {
      const blobs = await drive.getBlobs()
      if (drive.core.length !== this.files.version || blobs.core.length !== this.files.blobsLength) this.files = null
    }
    const group = this.group
    const openView = async (): Promise<FilesView> => {
      // A log append may still be in flight from the calls before: files wait for it (the commit
      // group must not open beside it), calls that touch no file do not.
      if (this.inFlight) await this.inFlight
      return group ? group.view() : archive.view()
    }
    const result = await run({ version: (await this.currentFiles()).version, openView, usage: this.usage })
    if (result.outcome.ok && result.changes?.changed) {
      const target = group ?? (await this.openGroup())
      await result.changes.commit(target.target())
      this.files = await target.state()
    }
    this.usage = usageAfter(this.usage, result)
    return result.outcome
  }

  private async checkTurn(version: number, run: (files: TurnFiles) => Promise<TurnResult>): Promise<RunOutcome> {
    const drive = this.storage.filesArchive.drive
    let checkout: Hyperbee | null = null
    const openView = async (): Promise<FilesView> => {
      if (version === 0) return new FilesView(null)
      checkout = drive.db.checkout(version)
      return new FilesView({ bee: checkout, blobs: () => drive.getBlobs() })
    }
    try {
      const result = await run({ version, openView, usage: this.usage })
      this.usage = usageAfter(this.usage, result)
      return result.outcome
    } finally {
      if (checkout) await (checkout as Hyperbee).close()
    }
  }

  /** The VM's state now, between turns (the state after the last turn run). */
  async captureState(): Promise<CapturedState> {
    const engine = await this.runner.captureState()
    const host: HostState = { usage: { ...this.usage }, counters: this.authenticator.counters.list() }
    if (this.codeSeq > 0) host.code = this.codeSeq
    const stateFormat = this.runner.stateFormat
    return { engine, host, state: await stateDigestInSlices(engine, host, stateFormat), stateFormat }
  }

  /**
   * Takes a snapshot's state — the sandbox's (in the `prepared` sandbox, if given), the host's (its
   * signed counters included) and the archive state its entry records — in place of the turns up to
   * its entry, dated `timestamp`: the executor then stands after that entry.
   */
  async adopt(snapshot: VMSnapshot, timestamp: number, prepared?: Promise<EngineSandbox>): Promise<void> {
    await this.runner.restore(snapshot.engine, prepared)
    this.usage = { ...snapshot.host.usage }
    this.authenticator.counters.restartFrom(snapshot.host.counters)
    this.codeSeq = snapshot.host.code ?? 0
    const { version, dbHash, blobsLength, blobsHash } = snapshot.files
    this.files = { version, dbHash, blobsLength, blobsHash }
    this.standAfter(snapshot.seq, timestamp)
  }

  /** Writes the snapshot of a call stored with the state captured after it. */
  saveSnapshot(seq: number, entry: CallEntry, captured: CapturedState): void {
    this.checkpointer?.save({
      seq,
      entryHash: entryHash(Buffer.from(JSON.stringify(entry))),
      state: captured.state,
      stateFormat: captured.stateFormat,
      files: entry.files,
      engine: captured.engine,
      host: captured.host,
    })
  }

  /** The archive state to log after a turn (it includes the current group's changes). */
  async currentFiles(): Promise<FilesState> {
    if (!this.files) this.files = await this.storage.filesArchive.state()
    return this.files
  }

  // ---- storing ----

  /** Holds `entry` until the next flush, which stores it with the files changes of its call. */
  stage(entry: LogEntry): void {
    this.staged.push(entry)
  }

  /**
   * Stores every staged entry and the file changes of their calls in one atomic write. If it fails,
   * none of it is stored: the in-memory state is then ahead of the log, and the VM must stop using
   * it (reopen restores it from the log). `onStored`: called once they are in storage (call-log.ts).
   */
  flush(onStored?: () => void): Promise<void> {
    const entries = this.staged
    this.staged = []
    const group = this.group
    const previous = this.inFlight
    const write = (async () => {
      if (previous) await previous // writes are stored in the order they were made
      if (entries.length === 0 && !group?.hasChanges) return
      if (group?.hasChanges) {
        const noted = this.storage.callLog.noteAppend(entries)
        await group.commit(entries)
        noted()
        return
      }
      // No file changed: a plain append is the cheapest write. The commit group's log session would
      // fall behind it, so the group (open, without changes) is closed; the next writing call opens one.
      if (group) {
        if (this.group === group) this.group = null
        await group.close()
      }
      await this.storage.callLog.append(entries, onStored)
    })()
    this.inFlight = write
    write.then(
      () => {
        if (this.inFlight === write) this.inFlight = null
      },
      () => {},
    )
    return write
  }

  /** The commit group, opened when a call first has file changes to store. */
  private async openGroup(): Promise<CommitGroup> {
    if (!this.group) this.group = await CommitGroup.open(this.storage.filesArchive, this.storage.callLog, this.storage.store.storage)
    return this.group
  }

  /** Closes the commit group (after a flush: changes not stored are dropped). */
  async close(): Promise<void> {
    const group = this.group
    this.group = null
    await group?.close()
  }

  // ---- live calls ----

  /**
   * Queues an admitted call in `lane` (its caller's; see call-queue.ts); resolves once its entry is
   * stored (a logged failure resolves too). `maxQueued`: the queue's bound for this call (an RPC
   * server's maxQueuedCalls): at it, the call takes the place of the newest queued call of the lane
   * holding the most (which is refused with QueueFullError), or is refused itself (see `room`).
   */
  submit(input: AdmittedCall, lane: Lane, maxQueued?: number): Promise<StoredCall> {
    if (this.failure) return Promise.reject(new StateError(`the VM stopped after a storage failure (${this.failure.message}); reopen it`))
    if (maxQueued !== undefined) {
      const room = this.queue.room(lane, maxQueued)
      if (!room.fits) return Promise.reject(new QueueFullError(room.message))
      if (room.giveWay !== null) this.queue.withdrawNewest(room.giveWay)?.reject(new QueueFullError(room.message))
    }
    return new Promise((resolve, reject) => {
      this.queue.push(lane, { input, resolve, reject })
      this.running ??= this.runQueue()
    })
  }

  /** Whether a call of `lane` fits the queue bounded at `maxQueued` waiting calls, now (what submit would do). */
  room(lane: Lane, maxQueued: number): QueueRoom {
    return this.queue.room(lane, maxQueued)
  }

  /** Refuses the calls queued but not started; resolves when the running ones are stored and answered. */
  async drain(reason: string): Promise<void> {
    for (const call of this.queue.takeAll()) call.reject(new StateError(reason))
    await this.running
    await this.flushing
  }

  /**
   * Whether the group being gathered may take the next queued call: it holds fewer than
   * MAX_GROUP_CALLS, and the next caller has not had a turn in it since a caller's last queued call ran.
   */
  private groupTakesNext(): boolean {
    if (this.waiting.length >= MAX_GROUP_CALLS) return false
    return this.turnsAfterLastCall === null || !this.turnsAfterLastCall.has(this.queue.nextLane())
  }

  /**
   * Runs queued calls one at a time and stores them in groups: calls that queue up while one runs,
   * or while a group is being stored, go into the next group. A group that is a plain log append is
   * stored while the next calls run; a commit group (files changed) is waited for. Ends when no call
   * is queued and every call that ran is in a group being stored (or stored).
   */
  private async runQueue(): Promise<void> {
    try {
      for (;;) {
        const next = this.queue.take()
        if (next) {
          this.turnsAfterLastCall?.add(next.lane)
          await this.runOne(next.call)
          // The caller has nothing more queued: it waits on this call, so the group is stored soon.
          if (this.queue.queuedIn(next.lane) === 0) this.turnsAfterLastCall ??= new Set()
          if (this.queue.length > 0 && this.groupTakesNext()) continue
        }
        if (this.waiting.length === 0 && this.queue.length === 0) break
        if (this.waiting.length === 0) continue
        // Only a plain append (no commit group open) may be stored while the next calls run.
        if (this.flushing) {
          if (this.group === null && this.queue.length > 0 && this.groupTakesNext()) continue
          await this.flushing
        }
        const overlap = this.group === null
        const flushing = this.flushGroup().finally(() => {
          if (this.flushing === flushing) this.flushing = null
        })
        this.flushing = flushing
        if (!overlap) await flushing
      }
    } finally {
      this.running = null
    }
  }

  private async runOne(call: QueuedCall): Promise<void> {
    if (this.failure) {
      call.reject(new StateError('the VM is not able to run calls'))
      return
    }
    const input: CallInput = { ...call.input, timestamp: this.takeTimestamp(), seed: this.newSeed() }
    const seq = this.nextSeq
    let entry: CallEntry
    try {
      entry = buildCallEntry(input, await this.apply(input), await this.currentFiles(), this.codeSeq)
      if (call.input.signedPayload) this.authenticator.counters.noteRun(call.input.signedPayload)
    } catch (err) {
      if (err instanceof HostFaultError) await this.recoverFromFault()
      else this.fail(err as Error)
      call.reject(err)
      return
    }
    let checkpoint: CapturedState | null = null
    if (this.checkpointer?.due(seq)) {
      try {
        checkpoint = await this.captureState()
      } catch (err) {
        // The turn's changes are in the commit group already: the VM must stop rather than store
        // them with a later call's entry (a reopen restores it from the log).
        this.fail(err as Error)
        call.reject(
          new StateError(`the VM stopped: its state could not be captured at a checkpoint (${(err as Error).message}); reopen it`),
        )
        return
      }
      stateEntry(entry, checkpoint)
    }
    this.stage(entry)
    this.standAfter(seq, input.timestamp)
    this.waiting.push({ entry, seq, checkpoint, resolve: call.resolve, reject: call.reject })
  }

  /** Stores the staged calls (files and entries in one atomic write), then answers them. */
  private async flushGroup(): Promise<void> {
    const waiting = this.waiting.splice(0)
    this.turnsAfterLastCall = null
    if (this.failure) {
      // After a storage failure the commit group may hold part of a failed call's changes: nothing
      // more is stored, so no file change ever reaches storage without its entry.
      for (const p of waiting)
        p.reject(new StateError(`the VM stopped after a storage failure (${this.failure.message}); this call was not logged`))
      return
    }
    // Answered once the entries are stored, maybe before the write ends (a failure after still stops the VM).
    const answer = () => {
      for (const p of waiting.splice(0)) {
        p.resolve({ entry: p.entry, seq: p.seq, length: this.storage.callLog.length })
        if (p.checkpoint) this.saveSnapshot(p.seq, p.entry, p.checkpoint)
      }
    }
    try {
      await this.flush(answer)
    } catch (err) {
      this.fail(err as Error)
      for (const p of waiting) p.reject(new StateError(`the call could not be logged: ${(err as Error).message}`))
      return
    }
    answer()
  }

  /** After a host fault the sandbox is rebuilt from the log (the faulted call was never logged). */
  private async recoverFromFault(): Promise<void> {
    if (this.flushing) await this.flushing
    await this.flushGroup()
    if (this.failure) return
    try {
      await this.recover(this)
    } catch (err) {
      this.fail(err as Error)
    }
  }

  private fail(err: Error): void {
    this.failure ??= err instanceof LibVMSError ? err : new HostFaultError(err.message, { cause: err })
  }

  /** The host's time now, never earlier than the last timestamp in the log. */
  private takeTimestamp(): number {
    return Math.max(this.position.lastTimestamp, Date.now())
  }
}
