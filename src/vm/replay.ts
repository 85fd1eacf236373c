/**
 * Re-running a log, as a stream. `openReplay` loads the logged script (or a snapshot of the state
 * after a checkpoint) and re-runs the init turn; `entries()` then re-runs every logged call in log
 * order and hands out each logged entry beside the one an honest host would have logged for it. The
 * reader decides what a difference means: an audit stops at the first (Verifier.verify, each
 * parallel-audit segment, the execution-proof checker), a VM reopening its own log refuses to open
 * (restore.ts), VM.fromCallLog reads to the end and adopts what the replay built.
 *
 * What the turns run on is an object handed to the replay — as hyperbee hands out a batch or a
 * checkout, never a mode flag (replay-target.ts): a Rebuild (rebuild.ts) writes a fresh archive as
 * the calls run (an audit; a RebuildVM also stores the replayed entries in a fresh log, for a VM to
 * adopt); a Checkout (restore.ts) reads the VM's own archive at each call's logged version and
 * writes nothing.
 *
 * Whatever the target, each logged call is first admitted by the rules of a live call
 * (admission.ts), its time must not go back, it must ask for every oracle value its entry
 * records, and where its entry states a state digest the replay computes one.
 */
import type { CheckedEntry } from '../auth/signature-checks.js'
import { DivergenceError, EngineMismatchError, LogFormatError, ScriptError, StateError } from '../errors.js'
import { filesFormat } from '../ledger/drive-format.js'
import type { ReplayEntry } from '../ledger/entry-diff.js'
import { parseKeyUrl, toHex } from '../ledger/keys.js'
import {
  buildCallEntry,
  buildInitEntry,
  buildUpgradeEntry,
  type CallEntry,
  decodeEntry,
  type InitEntry,
  UPGRADE_SCHEMA,
  type UpgradeEntry,
} from '../ledger/log-entry.js'
import { recordedLimits, resolveLimits } from '../sandbox/limits.js'
import { CallAdmission, checkOracleUsed, FACTORY_EXPORTS, missingExports } from './admission.js'
import { type CallExecutor, stateEntry, type UpgradeTurnResult } from './call-executor.js'
import { takesUpgrades, upgradeEntryAt } from './code-versions.js'
import { ENGINE_INFO } from './engine-info.js'
import { Rebuild } from './rebuild.js'
import type { ReplayAssertions, ReplayOptions, ReplaySource, ReplayStart, ReplayTarget } from './replay-target.js'

export type { ReplayEntry } from '../ledger/entry-diff.js'
export type { ReplayAssertions, ReplayOptions, ReplaySource, ReplayStart, ReplayTarget } from './replay-target.js'

/** openReplay's options: how to replay, what the log must be, and where to start. */
export interface OpenReplayOptions extends ReplayOptions, ReplayAssertions {
  /**
   * Start from a snapshot rather than from the script (an audit segment, an execution proof): only
   * the entries after it are replayed.
   */
  from?: ReplayStart
  /** @internal What the turns run on (default: a Rebuild with these options: a fresh archive, entries let go). */
  into?: ReplayTarget
}

/** A replay being read: the init entries, then every call re-run, then close. */
export interface Replay {
  /** The log's init entry, and the one its replay gave (null when the replay started from a snapshot). */
  readonly init: { logged: InitEntry; replayed: InitEntry | null }
  /**
   * Every entry re-run, in log order, beside the logged one: the init entry first (unless the replay
   * started from a snapshot), then each call up to `end` (and on, with `follow`). Read once. A
   * logged call no live VM would have run, whose time goes back, or that leaves an oracle value
   * unasked for ends it with a DivergenceError at its seq; any other difference is the reader's to
   * find (ledger/entry-diff.ts).
   */
  entries(): AsyncIterable<ReplayEntry>
  /** Lets go of what the replay holds (its sandbox, its storage, its temp dir). */
  close(): Promise<void>
}

/**
 * Opens a replay of `source`: reads its init entry, checks it against `options`' assertions, and
 * puts the target (`options.into`, by default a Rebuild into a fresh archive) in the state after
 * the init entry — the script loaded and its init re-run — or after `options.from`'s snapshot.
 */
export async function openReplay(source: ReplaySource, options: OpenReplayOptions = {}): Promise<Replay> {
  await source.ready()
  const end = Math.min(options.end ?? source.length, source.length)
  if (end === 0) throw new LogFormatError('the call log is empty: it has no init entry to replay')
  const init = (await source.get(0)) as InitEntry
  checkAssertions(source, init, options)
  const target = options.into ?? new Rebuild(options)
  try {
    const executor = await target.open(source, init)
    let replayed: InitEntry | null = null
    if (options.from) await startAt(source, target, executor, init, options.from)
    else replayed = await replayInit(init, target, executor)
    const checkpoints = init.schema >= 2
    return new LogReplay(source, target, executor, { logged: init, replayed }, { ...options, end, checkpoints })
  } catch (err) {
    await target.close().catch(() => {})
    throw err
  }
}

function checkAssertions(source: ReplaySource, init: InitEntry, assertions: ReplayAssertions): void {
  if (assertions.filesArchiveUrl !== undefined && toHex(parseKeyUrl(assertions.filesArchiveUrl)) !== init.filesArchiveKey) {
    throw DivergenceError.WRONG_ARCHIVE(init.filesArchiveKey, assertions.filesArchiveUrl)
  }
  if (assertions.callLogUrl !== undefined && toHex(parseKeyUrl(assertions.callLogUrl)) !== source.key) {
    throw DivergenceError.WRONG_LOG(source.url, assertions.callLogUrl)
  }
}

/** The fields of a logged engine record that an engine writes, in the order it writes them. */
function engineRecordOf(logged: InitEntry['engine']): InitEntry['engine'] {
  const record = {} as Record<string, unknown>
  for (const key of Object.keys(ENGINE_INFO))
    if (Object.hasOwn(logged, key)) record[key] = (logged as unknown as Record<string, unknown>)[key]
  return record as unknown as InitEntry['engine']
}

/**
 * Has the executor run the init entry's code: a VM restoring its own log after an upgrade (its runner
 * is the upgraded code's) starts again from it.
 */
function useInitCode(executor: CallExecutor, init: InitEntry): void {
  if (executor.runner.upgraded || executor.runner.code !== init.code) {
    executor.useCode(executor.runner.withCode(init.code, resolveLimits(init.limits), false), 0)
  }
}

/** Loads the logged script and re-runs its init: the init entry an honest host would have logged. */
async function replayInit(init: InitEntry, target: ReplayTarget, executor: CallExecutor): Promise<InitEntry> {
  useInitCode(executor, init)
  const runner = executor.runner
  let loadCost: number
  try {
    loadCost = await runner.load(init.timestamp, init.seed, target.prepared)
  } catch (err) {
    throw DivergenceError.SCRIPT_LOAD(err)
  }
  const missing = init.factory ? missingExports(runner.exports, FACTORY_EXPORTS) : []
  if (missing.length > 0) throw DivergenceError.NOT_A_FACTORY(missing)
  const { outcome, files } = await target.init(init)
  if (!outcome.ok) throw DivergenceError.INIT_FAILS(outcome.error, init.result)
  const costSchedule = init.costSchedule ?? 0
  const replayed = buildInitEntry({
    // The replay runs the logged engine's record, not its own, so equal engines compare equal; only
    // the fields an engine record has are copied, so a record with added fields is a divergence.
    engine: engineRecordOf(init.engine),
    costSchedule,
    filesFormat: filesFormat(init.filesFormat) ?? 0,
    limits: recordedLimits(runner.limits, costSchedule > 0),
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
    upgrades: init.upgrades,
    files,
  })
  // ... and its schema (one this LibVMS reads: parseEntry checked it).
  replayed.schema = init.schema
  await target.keep(replayed, 0)
  await target.flush()
  return replayed
}

/**
 * Puts the target and its executor in the state after entry `from.snapshot.seq`: its code (the
 * init entry's, or the upgrade's its host state names), its archive, its sandbox, its counters.
 */
async function startAt(
  source: ReplaySource,
  target: ReplayTarget,
  executor: CallExecutor,
  init: InitEntry,
  from: ReplayStart,
): Promise<void> {
  const { seq } = from.snapshot
  const codeSeq = from.snapshot.host.code ?? 0
  let prepared = target.prepared
  if (codeSeq > 0) {
    const code = await upgradeEntryAt(source, codeSeq)
    executor.useCode(executor.runner.withCode(code.code, target.upgradeLimits(codeSeq, code), true), codeSeq)
    // A sandbox made ahead is of the init entry's code: not the one this state was taken in.
    prepared?.then((sandbox) => sandbox.dispose()).catch(() => {})
    prepared = undefined
  } else {
    useInitCode(executor, init)
  }
  const block = await source.block(seq)
  const entry = decodeEntry(block, seq)
  await target.begin(from, entry, block)
  await executor.adopt(from.snapshot, entry.timestamp, prepared)
}

/** The replay of one log, read through `entries()`. */
class LogReplay implements Replay {
  private read = false
  /** Admits logged calls by the exports and limits of the code that runs (an upgrade replaces it). */
  private admission: CallAdmission

  constructor(
    private readonly source: ReplaySource,
    private readonly target: ReplayTarget,
    private readonly executor: CallExecutor,
    readonly init: { logged: InitEntry; replayed: InitEntry | null },
    private readonly options: Pick<OpenReplayOptions, 'follow' | 'signal'> & {
      end: number
      /** A schema 2 log: an entry that states a state digest gets one computed here, compared with it. */
      checkpoints: boolean
    },
  ) {
    const runner = executor.runner
    this.admission = new CallAdmission(runner.exports, runner.limits, executor.authenticator, !!init.logged.factory)
  }

  async *entries(): AsyncGenerator<ReplayEntry> {
    if (this.read) throw new StateError('a replay is read once; open another to read it again')
    this.read = true
    if (this.init.replayed) yield { seq: 0, logged: this.init.logged, replayed: this.init.replayed }
    const { follow, signal } = this.options
    for (let until = this.options.end; ; until = this.source.length) {
      // The calls from the executor's position on, each re-run in a function of its own.
      const reads = this.source.read({ start: this.executor.nextSeq, end: until })
      for await (const read of this.target.checked(reads, this.init.logged)) {
        yield await (read.entry.type === 'upgrade' ? this.upgrade(read) : this.call(read))
      }
      await this.target.flush()
      if (!follow) return
      await this.source.waitForLength(this.executor.nextSeq + 1, { signal })
      if (signal?.aborted) return
    }
  }

  /**
   * Re-runs one logged call: admit, check the clock, run, check the oracle values it used, state its
   * digest where the log states one, and hand the entry to the target. In a function of its own, so
   * that nothing of an entry outlives its turn here.
   */
  private async call(read: CheckedEntry): Promise<ReplayEntry> {
    const { seq, signatureValid } = read
    const logged = read.entry as CallEntry
    const executor = this.executor
    const input = this.target.admit(this.admission, seq, logged, signatureValid)
    if (!(logged.timestamp >= executor.lastTimestamp)) throw DivergenceError.CLOCK(seq, logged, executor.lastTimestamp)
    const { outcome, files } = await this.target.run(seq, input, logged)
    checkOracleUsed(seq, logged, outcome)
    const replayed = buildCallEntry(input, outcome, files, executor.codeVersionSeq)
    await this.stateAsLogged(seq, logged, replayed)
    await this.target.keep(replayed, read.bytes)
    return { seq, logged, replayed }
  }

  /**
   * Re-runs one logged upgrade: it must be one the log's init entry allows, not dated back, under
   * limits the target accepts; its code must load and its hook succeed as they did. The code then
   * runs the calls after it, admitted by its exports and limits.
   */
  private async upgrade(read: CheckedEntry): Promise<ReplayEntry> {
    const { seq } = read
    const logged = read.entry as UpgradeEntry
    const init = this.init.logged
    const executor = this.executor
    if (init.schema < UPGRADE_SCHEMA) throw DivergenceError.UPGRADE_IN_OLD_LOG(seq, init.schema)
    if (!takesUpgrades(init)) throw DivergenceError.UPGRADE_FORBIDDEN(seq)
    if (!(logged.timestamp >= executor.lastTimestamp)) {
      throw DivergenceError.CLOCK(seq, { method: 'upgrade', caller: null, timestamp: logged.timestamp }, executor.lastTimestamp)
    }
    const next = executor.runner.withCode(logged.code, this.target.upgradeLimits(seq, logged), true)
    let ran: UpgradeTurnResult
    try {
      ran = await this.target.upgrade(seq, next, logged)
    } catch (err) {
      if (err instanceof ScriptError) throw DivergenceError.UPGRADE_FAILS(seq, 'code', err)
      throw err
    }
    // `replaces`: the version the executor ran before it, as the replay computes it (a lie in the log differs).
    const { loadCost, outcome, files, replaces } = ran
    if (!outcome.ok) throw DivergenceError.UPGRADE_FAILS(seq, 'result', outcome.error, logged.result)
    const missing = init.factory ? missingExports(next.exports, FACTORY_EXPORTS) : []
    if (missing.length > 0) {
      throw DivergenceError.UPGRADE_FAILS(seq, 'code', {
        name: 'TypeError',
        message: `a VM factory's code must export ${missing.join(' and ')}`,
      })
    }
    const costSchedule = init.costSchedule ?? 0
    const replayed = buildUpgradeEntry({
      replaces,
      code: logged.code,
      limits: recordedLimits(next.limits, costSchedule > 0),
      timestamp: logged.timestamp,
      seed: logged.seed,
      exports: next.exports,
      outcome,
      loadCost,
      files,
    })
    this.admission = new CallAdmission(next.exports, next.limits, executor.authenticator, !!init.factory)
    await this.target.keep(replayed, read.bytes)
    return { seq, logged, replayed }
  }

  /**
   * Where a logged entry states a state digest, the replayed one gets the replay's own — when the
   * log's digest is of this build's state format. One of another format (another LibVMS build)
   * cannot be compared: a target that keeps other formats (the VM's own log; an audit told to try
   * anyway) keeps the logged one; any other stops with EngineMismatchError, which is not a verdict
   * on the host.
   */
  private async stateAsLogged(seq: number, logged: CallEntry, replayed: CallEntry): Promise<void> {
    if (!this.options.checkpoints || logged.state === undefined) return
    const ours = this.executor.runner.stateFormat
    if (logged.stateFormat === ours) {
      stateEntry(replayed, await this.executor.captureState())
      return
    }
    if (this.target.keepsOtherStateFormats) {
      stateEntry(replayed, { stateFormat: logged.stateFormat as string, state: logged.state })
      return
    }
    throw new EngineMismatchError([`the state digest at seq ${seq} is of state format ${logged.stateFormat}, this LibVMS computes ${ours}`])
  }

  close(): Promise<void> {
    return this.target.close()
  }
}
