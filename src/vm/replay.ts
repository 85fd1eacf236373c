/**
 * Re-running a log: one loop over its entries (`replayEntries`), used two ways.
 *
 * - Replay (`replayCallLog`, for VM.fromCallLog and audits): every logged call is re-executed, with
 *   the logged caller, arguments, timestamp, seed and oracle values, into a fresh archive. The
 *   replay's own log then holds what an honest host would have logged; Verifier compares the two.
 * - Restore (`restoreFromLog`, for a VM reopening its own log, or rebuilding after a host fault):
 *   every call is re-run against a checkout of the archive at its logged version, its changes
 *   dropped (the archive holds them already), and its outcome checked against the log.
 *
 * Either way each logged call is first admitted by the rules of a live call (logged-calls.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CallAuthenticator } from '../auth/call-auth.js'
import { withSignatureChecks } from '../auth/signature-checks.js'
import { DirectoryError, DivergenceError, EngineMismatchError, InvalidArgumentError, LimitCeilingError, LogFormatError } from '../errors.js'
import type { CallLog, ReadEntry } from '../ledger/call-log.js'
import { type FilesFormat, filesFormat } from '../ledger/drive-format.js'
import { diffEntry } from '../ledger/entry-diff.js'
import { parseKeyUrl, toHex } from '../ledger/keys.js'
import { type CallEntry, type InitEntry, type LogEntry, sameFiles } from '../ledger/log-entry.js'
import { snapshotMisfit, type VMSnapshot } from '../ledger/snapshot.js'
import { VMStorage } from '../ledger/vm-storage.js'
import { type CostSchedule, costSchedule } from '../sandbox/host-work.js'
import { limitAboveCeiling, resolveLimits, type VMLimits } from '../sandbox/limits.js'
import type { ConsoleSink } from '../sandbox/sandbox.js'
import { CallExecutor, stateEntry } from './call-executor.js'
import {
  buildCallEntry,
  buildInitEntry,
  CallAdmission,
  callInputOf,
  checkOracleUsed,
  ENGINE_INFO,
  FACTORY_EXPORTS,
  missingExports,
} from './logged-calls.js'
import { type EngineSandbox, TurnRunner } from './turn-runner.js'

export interface ReplayAssertions {
  /** The files archive the log must name in its init entry. */
  filesArchiveUrl?: string
  /** The call log the replay must be reading. */
  callLogUrl?: string
}

export interface ReplayOptions {
  /** Where the replay keeps its log and archive; a temp dir (removed on close) if absent. */
  dir?: string
  /** Replay only entries below this seq (default: the log's length when replay starts). */
  end?: number
  /**
   * Keep going: after `end`, replay entries as they are appended to the log (a fetched log follows
   * its host) until `signal` aborts; the replay then resolves as usual. Without `signal` it only
   * ends when an entry fails.
   */
  follow?: boolean
  /** Stops following (see `follow`). */
  signal?: AbortSignal
  /** Called after each entry is re-executed, with the logged and the replayed entry; may throw to stop. */
  onEntry?: (seq: number, logged: LogEntry, replayed: LogEntry) => void | Promise<void>
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
  /**
   * Compare and drop each replayed entry rather than store it (an audit: `onEntry` sees every one,
   * the replay's own log stays empty, its archive is still written). The result cannot take calls.
   */
  dropEntries?: boolean
  /**
   * Start from a snapshot rather than from the script (an audit segment, audit/parallel-audit.ts): only
   * the entries after it are replayed, and the replay's own log holds only those.
   */
  from?: ReplayStart
}

/**
 * What a replay reads of a log: a CallLog, or any other copy of its signed entries (an execution
 * proof holds the ones it needs, audit/execution-proof.ts).
 */
export type ReplaySource = Pick<CallLog, 'key' | 'url' | 'length' | 'ready' | 'get' | 'read' | 'waitForLength'> & {
  /** Entry `seq` as stored (a snapshot names its entry by their hash). */
  block(seq: number): Promise<Uint8Array>
}

/** Calls stored per atomic write while replaying, at most. */
const REPLAY_GROUP_CALLS = 512
/**
 * Bytes per atomic write while replaying, at most (at least one call): the replayed entries and the
 * file contents a group holds in memory until it is stored, counted as the logged entries' sizes and
 * the contents blocks the calls added (each at most HYPERBLOBS_BLOCK_BYTES).
 */
const REPLAY_GROUP_BYTES = 8 * 1024 * 1024
/** The most bytes Hyperblobs puts in one contents block (its default block size, which Hyperdrive uses). */
const HYPERBLOBS_BLOCK_BYTES = 64 * 1024

function checkEngine(init: InitEntry, allow: boolean): void {
  const differences: string[] = []
  for (const key of ['name', 'variant', 'version', 'hyperdrive', 'hyperbee'] as const) {
    if (init.engine?.[key] !== ENGINE_INFO[key]) differences.push(`${key}: log ${String(init.engine?.[key])}, here ${ENGINE_INFO[key]}`)
  }
  if (differences.length > 0 && !allow) throw new EngineMismatchError(differences)
}

/** The fields of a logged engine record that an engine writes, in the order it writes them. */
function engineRecordOf(logged: InitEntry['engine']): InitEntry['engine'] {
  const record = {} as Record<string, unknown>
  for (const key of Object.keys(ENGINE_INFO))
    if (Object.hasOwn(logged, key)) record[key] = (logged as unknown as Record<string, unknown>)[key]
  return record as unknown as InitEntry['engine']
}

function checkAssertions(callLog: ReplaySource, init: InitEntry, assertions: ReplayAssertions): void {
  if (assertions.filesArchiveUrl !== undefined && toHex(parseKeyUrl(assertions.filesArchiveUrl)) !== init.filesArchiveKey) {
    throw DivergenceError.WRONG_ARCHIVE(init.filesArchiveKey, assertions.filesArchiveUrl)
  }
  if (assertions.callLogUrl !== undefined && toHex(parseKeyUrl(assertions.callLogUrl)) !== callLog.key) {
    throw DivergenceError.WRONG_LOG(callLog.url, assertions.callLogUrl)
  }
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

/** What a replay built: its storage (the replayed log and archive) and the executor that holds them. */
export interface ReplayedVM {
  storage: VMStorage
  executor: CallExecutor
  init: InitEntry
  ownedDir: string | null
  authenticator: CallAuthenticator
}

export async function replayCallLog(
  callLog: ReplaySource,
  assertions: ReplayAssertions = {},
  options: ReplayOptions = {},
): Promise<ReplayedVM> {
  await callLog.ready()
  const end = Math.min(options.end ?? callLog.length, callLog.length)
  if (end === 0) throw new LogFormatError('the call log is empty: it has no init entry to replay')
  const init = (await callLog.get(0)) as InitEntry
  checkAssertions(callLog, init, assertions)
  const { schedule, format, limits } = checkReplayable(init, options)

  const ownedDir = options.dir ? null : await mkdtemp(join(tmpdir(), 'libvms-replay-'))
  const dir = options.dir ?? (ownedDir as string)
  const storage = await VMStorage.open(dir, 'replay')
  if (!storage.fresh) {
    await storage.close()
    throw new DirectoryError('ERR_REPLAY_DIR_USED', `${dir} already holds a replay; give the replay a new or empty dir`)
  }
  const runner = new TurnRunner({
    code: init.code,
    limits,
    identity: { key: init.filesArchiveKey, title: init.title },
    console: options.console,
    watchdogMs: options.watchdogMs,
    thread: options.thread,
    // A factory's System.vms answers come from the log: a replay never provisions anything.
    factory: !!init.factory,
    costSchedule: schedule.version,
    filesFormat: format,
  })
  const executor = new CallExecutor(runner, storage, { recover: (e) => restoreFromLog(e, storage.callLog, {}) })
  try {
    const authenticator = new CallAuthenticator(init.auth, callLog.key, init.schema)
    let start = 0
    let replayedInit = init
    if (options.from) {
      // A segment of an audit: the state after entry `from.snapshot.seq`, instead of every call before it.
      await startFromSnapshot(callLog, storage, executor, authenticator, options.from)
      start = options.from.snapshot.seq
    } else {
      replayedInit = await replayInit(init, runner, executor, { costSchedule: schedule.version, filesFormat: format, limits })
      if (!options.dropEntries) executor.stage(replayedInit)
      await executor.flush()
      await options.onEntry?.(0, init, replayedInit)
    }
    const loop: ReplayLoop = {
      mode: 'rebuild',
      admission: new CallAdmission(runner.exports, limits, authenticator, !!init.factory),
      checkpoints: init.schema >= 2,
      otherStateFormats: !!options.allowEngineMismatch,
      keepEntries: !options.dropEntries,
      seq: start,
      onEntry: options.onEntry,
    }
    const replayTo = async (until: number): Promise<void> => {
      const entries = callLog.read({ start: loop.seq + 1, end: until })
      // A production log's signatures are checked on another thread, a batch ahead of the replay.
      await replayEntries(executor, init.auth === 'production' ? withSignatureChecks(entries) : unchecked(entries), loop)
      await executor.flush()
    }
    await replayTo(end)
    if (options.follow) {
      for (;;) {
        await callLog.waitForLength(loop.seq + 2, { signal: options.signal })
        if (options.signal?.aborted) break
        await replayTo(callLog.length)
      }
    }
    return { storage, executor, init: replayedInit, ownedDir, authenticator }
  } catch (err) {
    runner.dispose()
    await executor.close().catch(() => {})
    await storage.close().catch(() => {})
    if (ownedDir) await rm(ownedDir, { recursive: true, force: true })
    throw err
  }
}

/** Loads the logged script and re-runs its init: the init entry an honest host would have logged. */
async function replayInit(
  init: InitEntry,
  runner: TurnRunner,
  executor: CallExecutor,
  recorded: { costSchedule: number; filesFormat: FilesFormat; limits: VMLimits },
): Promise<InitEntry> {
  let loadCost: number
  try {
    loadCost = await runner.load(init.timestamp, init.seed)
  } catch (err) {
    throw DivergenceError.SCRIPT_LOAD(err)
  }
  const missing = init.factory ? missingExports(runner.exports, FACTORY_EXPORTS) : []
  if (missing.length > 0) throw DivergenceError.NOT_A_FACTORY(missing)
  const outcome = await executor.init(init.timestamp, init.seed)
  if (!outcome.ok) throw DivergenceError.INIT_FAILS(outcome.error, init.result)
  const replayedInit = buildInitEntry({
    ...recorded,
    code: init.code,
    title: init.title,
    filesArchiveKey: init.filesArchiveKey,
    snapshotsKey: init.snapshotsKey,
    auth: init.auth,
    timestamp: init.timestamp,
    seed: init.seed,
    exports: runner.exports,
    outcome,
    loadCost,
    factory: !!init.factory,
    files: await executor.currentFiles(),
  })
  // The replay runs the logged engine's record, not its own, so equal engines compare equal; only
  // the fields an engine record has are copied, so a record with added fields is a divergence.
  replayedInit.engine = engineRecordOf(init.engine)
  // ... and its schema (one this LibVMS reads: parseEntry checked it).
  replayedInit.schema = init.schema
  return replayedInit
}

/** Where a replay starts from a snapshot (an audit segment): the snapshot, and the archive it goes with. */
export interface ReplayStart {
  /** A snapshot of the state after an entry that states its digest (checked against it here). */
  snapshot: VMSnapshot
  /**
   * The files archive's blocks up to the state that entry records: the metadata core's first
   * `files.version` blocks and the blobs core's first `files.blobsLength`, as stored.
   */
  archive: { db: Uint8Array[]; blobs: Uint8Array[] }
}

/**
 * Puts a fresh replay in the state after entry `start.snapshot.seq`: its archive gets the given
 * blocks (which must hash to the state the entry records), its sandbox and executor the snapshot's
 * state (which must be the digest the entry states) and `authenticator` the snapshot's signed counters.
 */
async function startFromSnapshot(
  callLog: ReplaySource,
  storage: VMStorage,
  executor: CallExecutor,
  authenticator: CallAuthenticator,
  start: ReplayStart,
): Promise<void> {
  const { snapshot } = start
  const block = await callLog.block(snapshot.seq)
  const entry = (await callLog.get(snapshot.seq)) as CallEntry
  const fit = { seq: snapshot.seq, entry, block, stateFormat: executor.runner.stateFormat, memoryBytes: executor.runner.limits.memoryBytes }
  if (snapshotMisfit(snapshot, { ...fit, checkpoint: true }) !== null) {
    throw new InvalidArgumentError(`the snapshot of seq ${snapshot.seq} is not of the state the log states there; start elsewhere`)
  }
  const drive = storage.filesArchive.drive
  if (start.archive.db.length > 0) {
    await drive.core.append(start.archive.db.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
    if (start.archive.blobs.length > 0) {
      const blobs = await drive.getBlobs()
      await blobs.core.append(start.archive.blobs.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)))
    }
  }
  const files = await storage.filesArchive.state()
  if (!sameFiles(files, entry.files)) throw DivergenceError.START_ARCHIVE(snapshot.seq, entry.method, entry.files, files)
  await executor.adopt(snapshot, entry.timestamp)
  authenticator.loadCounters(snapshot.host.counters)
}

/**
 * Restores an executor's in-memory state from its own log: load, init and every call re-run against
 * checkouts of the archive, each checked against the logged outcome — or, given a snapshot (checked by
 * Checkpointer.newestUsable), its state and only the calls after it. `authenticator` takes note of
 * every signed call, so none can be admitted again; signatures themselves are not checked again (it
 * is the VM's own log).
 */
export async function restoreFromLog(
  executor: CallExecutor,
  log: CallLog,
  options: {
    prepared?: Promise<EngineSandbox>
    authenticator?: CallAuthenticator
    /** Called after each call is re-run, with the calls done, their total and the snapshot's seq (0: none). */
    onProgress?: (done: number, total: number, fromSeq: number) => void
    snapshot?: VMSnapshot | null
  },
): Promise<void> {
  const runner = executor.runner
  const length = log.length
  const init = (await log.get(0)) as InitEntry
  const authenticator = options.authenticator ?? new CallAuthenticator(init.auth, log.key, init.schema)
  const snapshot = options.snapshot ?? null
  const from = snapshot?.seq ?? 0
  if (snapshot) {
    await executor.adopt(snapshot, (await log.get(snapshot.seq)).timestamp, options.prepared)
    authenticator.loadCounters(snapshot.host.counters)
  } else {
    await runner.load(init.timestamp, init.seed, options.prepared)
    const initOutcome = await executor.recheckInit(init.timestamp, init.seed, init.files)
    if (!initOutcome.ok) throw DivergenceError.INIT_FAILS(initOutcome.error, init.result)
  }
  const loop: ReplayLoop = {
    mode: 'check',
    admission: new CallAdmission(runner.exports, runner.limits, authenticator, !!init.factory),
    checkpoints: init.schema >= 2,
    keepEntries: false,
    seq: from,
    onProgress: options.onProgress && ((seq) => options.onProgress?.(seq - from, length - 1 - from, from)),
  }
  options.onProgress?.(0, length - 1 - from, from)
  await replayEntries(executor, unchecked(log.read({ start: loop.seq + 1, end: length })), loop)
}

/** Where a replay loop is in its log, and what it does with each entry. */
interface ReplayLoop {
  /** `rebuild`: re-execute into the executor's own archive and log. `check`: re-run in place against the log. */
  mode: 'rebuild' | 'check'
  admission: CallAdmission
  /** A schema 2 log: an entry that states a state digest gets one computed here, compared with it. */
  checkpoints: boolean
  /** Keep (not compare) digests of another state format rather than stop (allowEngineMismatch). */
  otherStateFormats?: boolean
  /** Rebuild: store the replayed entries in the replay's own log (not: compare and drop them). */
  keepEntries: boolean
  /** The seq of the last entry replayed. */
  seq: number
  onEntry?: ReplayOptions['onEntry']
  /** Check mode: called after each call with its seq. */
  onProgress?: (seq: number) => void
}

/**
 * Where a logged entry states a state digest, the replayed one gets the replay's own — when the log's
 * digest is of this build's state format. One of another format (another LibVMS build) cannot be
 * compared: the VM's own log (check) and an audit told to try anyway keep the logged one; any other
 * audit stops with EngineMismatchError, which is not a verdict on the host.
 */
async function stateAsLogged(executor: CallExecutor, loop: ReplayLoop, seq: number, logged: CallEntry, entry: CallEntry): Promise<void> {
  if (!loop.checkpoints || logged.state === undefined) return
  const ours = executor.runner.stateFormat
  if (logged.stateFormat === ours) {
    stateEntry(entry, await executor.captureState())
    return
  }
  if (loop.mode === 'check' || loop.otherStateFormats) {
    stateEntry(entry, { stateFormat: logged.stateFormat as string, state: logged.state })
    return
  }
  throw new EngineMismatchError([`the state digest at seq ${seq} is of state format ${logged.stateFormat}, this LibVMS computes ${ours}`])
}

/** Logged calls as read (each with its block's size), each with the outcome of its signature check when one was made ahead. */
type LoggedCalls = AsyncIterable<readonly [ReadEntry, boolean | undefined]>

async function* unchecked(entries: AsyncIterable<ReadEntry>): LoggedCalls {
  for await (const read of entries) yield [read, undefined] as const
}

/** What the replay's current commit group holds so far: bytes, and the contents blocks its files state records. */
interface ReplayGroup {
  calls: number
  bytes: number
  blobsLength: number
}

/**
 * The one loop that re-runs logged calls. Each call runs in a function of its own (replayCall), so
 * nothing of an entry outlives its turn: a loop body's variables could keep the last entry alive
 * while the next one is read and run.
 */
async function replayEntries(executor: CallExecutor, calls: LoggedCalls, loop: ReplayLoop): Promise<void> {
  const group: ReplayGroup = { calls: 0, bytes: 0, blobsLength: (await executor.currentFiles()).blobsLength }
  for await (const [read, signatureValid] of calls) await replayCall(executor, loop, group, read, signatureValid)
}

/**
 * Re-runs one logged call: admit, check the clock, run, compare or store. A rebuild stores the
 * replayed entries in groups bounded in calls and bytes.
 */
async function replayCall(
  executor: CallExecutor,
  loop: ReplayLoop,
  group: ReplayGroup,
  read: ReadEntry,
  signatureValid: boolean | undefined,
): Promise<void> {
  const logged = read.entry as CallEntry
  const seq = ++loop.seq
  const check = loop.mode === 'check'
  // A VM's own log (check) was signed when it was written; an audit (rebuild) checks every signature.
  loop.admission.admitLogged(seq, logged, check ? { checkAuth: false } : { signatureValid })
  if (!(logged.timestamp >= executor.lastTimestamp)) throw DivergenceError.CLOCK(seq, logged, executor.lastTimestamp)
  const input = callInputOf(logged)
  const { outcome, files } = check
    ? { outcome: await executor.recheck(seq, input, logged.files), files: logged.files }
    : await executor.rerun(seq, input)
  checkOracleUsed(seq, logged, outcome)
  const entry = buildCallEntry(input, outcome, files)
  executor.noteCall(entry)
  await stateAsLogged(executor, loop, seq, logged, entry)
  // An audit (rebuild) stores the replayed entry; the VM's own log (check) must match it as it is.
  if (!check) {
    if (loop.keepEntries) executor.stage(entry)
    // What the group holds: the replayed entries (about as big as the logged ones) and the contents
    // blocks its calls added.
    group.calls++
    group.bytes += read.bytes + Math.max(0, entry.files.blobsLength - group.blobsLength) * HYPERBLOBS_BLOCK_BYTES
    group.blobsLength = entry.files.blobsLength
    if (group.calls >= REPLAY_GROUP_CALLS || group.bytes >= REPLAY_GROUP_BYTES) {
      await executor.flush()
      group.calls = 0
      group.bytes = 0
    }
    await loop.onEntry?.(seq, logged, entry)
  } else {
    const divergence = diffEntry({ seq, logged, replayed: entry })
    if (divergence) throw DivergenceError.OWN_LOG(divergence)
  }
  loop.onProgress?.(seq)
}
