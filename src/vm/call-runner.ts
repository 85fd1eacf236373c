/**
 * CallRunner: runs a VM's script against its ledger, one turn at a time. It is the one place where a
 * sandbox outcome, a files transaction and a log entry meet, and it runs turns in two modes:
 *
 * - `apply`: the turn's file changes are committed to the archive (a live call, or a replay that
 *   rebuilds an archive) and the resulting entry is returned for the caller to append.
 * - `restore`: the turn reads the archive as it was before the logged call (a checkout), its changes
 *   are dropped, and its outcome must equal the logged one. This rebuilds the in-memory state of a
 *   VM whose archive already holds every logged change (reopen, or recovery after a host fault).
 */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import type Hyperbee from 'hyperbee'
import { CallAuthenticator } from '../auth/call-auth.js'
import type { TaggedValue } from '../codec/value-codec.js'
import { DivergenceError, HostFaultError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { CommitGroup } from '../ledger/commit-group.js'
import type { FilesState } from '../ledger/files-archive.js'
import type { StorageUsage } from '../ledger/files-transaction.js'
import { FilesView } from '../ledger/files-view.js'
import type { CallEntry, EngineInfo, InitEntry, LogEntry } from '../ledger/log-entry.js'
import { LOG_SCHEMA } from '../ledger/log-entry.js'
import type { VMStorage } from '../ledger/vm-storage.js'
import { ENGINE_NAME, ENGINE_VARIANT, ENGINE_VERSION } from '../sandbox/engine.js'
import { costSchedule } from '../sandbox/host-work.js'
import { recordedLimits, type VMLimits } from '../sandbox/limits.js'
import { RemoteSandbox } from '../sandbox/remote-sandbox.js'
import { type CallOutcome, type ConsoleSink, type ExportInfo, Sandbox, type TurnContext } from '../sandbox/sandbox.js'
import { CallAdmission } from './call-admission.js'
import {
  FACTORY_SYSTEM_SOURCE,
  type FilesIdentity,
  type OracleRecord,
  OracleSession,
  SYSTEM_SOURCE,
  SystemHost,
  type VMProvisioner,
} from './system-api.js'

const require = createRequire(import.meta.url)

export const ENGINE_INFO: EngineInfo = {
  name: ENGINE_NAME,
  variant: ENGINE_VARIANT,
  version: ENGINE_VERSION,
  hyperdrive: require('hyperdrive/package.json').version,
  hyperbee: require('hyperbee/package.json').version,
  libvms: require('../../package.json').version,
}

/** A call's inputs, as they are (or will be) logged. */
export type CallInput = Pick<CallEntry, 'caller' | 'signed' | 'method' | 'args' | 'timestamp' | 'seed' | 'oracle'>

export interface RunnerOptions {
  code: string
  limits: VMLimits
  storage: VMStorage
  identity: FilesIdentity
  console?: ConsoleSink
  watchdogMs?: number
  /** A factory script: System.vms exists. */
  factory?: boolean
  /** Who answers System.vms live; absent on replay and restore (answers come from the log). */
  provisioner?: VMProvisioner | null
  /** Run the script on a sandbox thread (remote-sandbox.ts) rather than on this thread. */
  thread?: boolean
  /** The log's cost schedule version (host-work.ts): what host work costs, and whether quotas apply. */
  costSchedule: number
}

/** A sandbox on this thread, or on a sandbox thread: the same interface. */
export type EngineSandbox = Sandbox | RemoteSandbox

/**
 * A call's outcome, and the oracle values it recorded if it ran live. On replay, `oracleUnused`
 * counts the recorded answers the call never asked for (see {@link checkOracleUsed}).
 */
export type RunOutcome = CallOutcome & { oracle?: Record<string, TaggedValue>; oracleUnused?: number }

// Seeds come from a pool refilled 256 at a time: one randomBytes call per call costs more than the call.
let seedPool = Buffer.alloc(0)
let seedOffset = 0

export function newSeed(): string {
  if (seedOffset + 16 > seedPool.length) {
    seedPool = randomBytes(16 * 256)
    seedOffset = 0
  }
  const seed = seedPool.toString('hex', seedOffset, seedOffset + 16)
  seedOffset += 16
  return seed
}

/** The init turn's seed, derived from the logged one so top level and init draw different numbers. */
function initSeed(seed: string): string {
  return createHash('sha256').update(`${seed}:init`).digest('hex').slice(0, 32)
}

export class CallRunner {
  readonly code: string
  readonly limits: VMLimits
  readonly storage: VMStorage
  readonly identity: FilesIdentity
  private sandbox: EngineSandbox | null = null
  private readonly options: RunnerOptions
  /** The archive state after the last turn run by this runner. */
  files: FilesState | null = null
  /** Calls' file changes not stored yet, and the entries that will be stored with them. */
  private group: CommitGroup | null = null
  private staged: LogEntry[] = []
  /** The flush being stored, if any. */
  private inFlight: Promise<void> | null = null
  /**
   * What the archive holds after the last turn, for the storage quotas: counted from the init turn
   * on, by every turn's changes (a replay and a reopen run every turn, so they count the same).
   */
  private usage: StorageUsage = { bytes: 0, entries: 0 }

  constructor(options: RunnerOptions) {
    this.options = options
    this.code = options.code
    this.limits = options.limits
    this.storage = options.storage
    this.identity = options.identity
  }

  get exports(): ExportInfo[] {
    return this.sandbox?.exports ?? []
  }

  get hasInit(): boolean {
    return this.exports.some((e) => e.name === 'init' && e.callable)
  }

  /**
   * A sandbox for a runner with these limits, started ahead of time: creating one takes about as long
   * as opening storage, and the two can overlap.
   */
  static prepareSandbox(
    limits: VMLimits,
    options: { console?: ConsoleSink; watchdogMs?: number; factory?: boolean; thread?: boolean; costSchedule: number },
  ): Promise<EngineSandbox> {
    const systemSources = options.factory ? [SYSTEM_SOURCE, FACTORY_SYSTEM_SOURCE] : [SYSTEM_SOURCE]
    const sandboxOptions = {
      limits,
      systemSources,
      console: options.console,
      watchdogMs: options.watchdogMs,
      costSchedule: options.costSchedule,
    }
    return options.thread ? RemoteSandbox.create(sandboxOptions) : Sandbox.create(sandboxOptions)
  }

  /** A fresh sandbox (or the `prepared` one) with the script loaded by the logged load turn. Throws ScriptError. */
  async load(timestamp: number, seed: string, prepared?: Promise<EngineSandbox>): Promise<number> {
    this.sandbox?.dispose()
    const sandbox = await (prepared ?? CallRunner.prepareSandbox(this.limits, this.options))
    this.sandbox = sandbox
    try {
      const { cost } = await sandbox.loadScript(this.code, { timestamp, seed, callerId: null })
      return cost
    } catch (err) {
      sandbox.dispose()
      this.sandbox = null
      throw err
    }
  }

  /**
   * Runs `exports.init` (if the script has one) as the deploy's init turn. In `apply` mode its file
   * changes are committed. Returns the outcome; the caller decides what a failed init means.
   */
  async runInit(timestamp: number, seed: string, mode: 'apply' | 'restore'): Promise<CallOutcome> {
    this.usage = { bytes: 0, entries: 0 }
    if (!this.hasInit) return { ok: true, cost: 0 }
    // `oracle` given (empty): System.vms answers nothing during init, on the host as on replay.
    const input: CallInput = { caller: null, method: 'init', args: [], timestamp, seed: initSeed(seed), oracle: {} }
    return this.runTurn(input, mode, 0)
  }

  /**
   * Runs one call. `apply` starts from the archive as it is (its changes included in the next flush);
   * `restore` starts from the archive as it was at `baseVersion` and drops its changes.
   */
  async runCall(input: CallInput, mode: 'apply' | 'restore', baseVersion = 0): Promise<RunOutcome> {
    return this.runTurn(input, mode, baseVersion)
  }

  private async runTurn(input: CallInput, mode: 'apply' | 'restore', restoreVersion: number): Promise<RunOutcome> {
    const sandbox = this.sandbox
    if (!sandbox) throw new HostFaultError('the VM has no loaded sandbox')
    const drive = this.storage.filesArchive.drive
    let checkout: Hyperbee | null = null
    // Reads go through the commit group when one is open (it holds changes not stored yet). If
    // something else wrote to the cores, the group is stale and the archive state is read again.
    if (mode === 'apply' && this.group && !this.group.isCurrent()) {
      await this.close()
      this.files = null
    }
    if (mode === 'apply' && !this.group && this.files) {
      const blobs = await drive.getBlobs()
      if (drive.core.length !== this.files.version || blobs.core.length !== this.files.blobsLength) this.files = null
    }
    const group = mode === 'apply' ? this.group : null
    const baseVersion = mode === 'apply' ? (await this.currentFiles()).version : restoreVersion
    const openView = async (): Promise<FilesView> => {
      if (mode === 'apply') {
        // A log append may still be in flight from the calls before: files wait for it (the commit
        // group must not open beside it), calls that touch no file do not.
        if (this.inFlight) await this.inFlight
        return group ? group.view() : this.storage.filesArchive.view()
      }
      if (baseVersion === 0) return new FilesView(null)
      checkout = drive.db.checkout(baseVersion)
      return new FilesView({ bee: checkout, blobs: () => drive.getBlobs() })
    }
    // System.vms: live only for a new call on the factory's own host; otherwise from the log.
    const live = mode === 'apply' && !!this.options.provisioner && input.oracle === undefined
    const recorded = (input.oracle?.vms ?? []) as unknown as OracleRecord[]
    const oracle = this.options.factory ? new OracleSession(live ? (this.options.provisioner ?? null) : null, live ? null : recorded) : null
    const quotas = costSchedule(this.options.costSchedule)?.quotas ? { quota: this.limits, usage: this.usage } : null
    const system = new SystemHost(this.identity, baseVersion, input.timestamp, openView, oracle, quotas)
    const turn: TurnContext = { timestamp: input.timestamp, seed: input.seed, callerId: input.caller }
    try {
      const outcome = await sandbox.runCall(input.method, JSON.stringify(input.args), turn, system.handle)
      const tx = system.transaction
      if (outcome.ok && tx?.changed) {
        this.usage = { bytes: this.usage.bytes + tx.usageChange.bytes, entries: this.usage.entries + tx.usageChange.entries }
      }
      if (mode === 'apply' && outcome.ok && tx?.changed) {
        const target = group ?? (await this.openGroup())
        await tx.commit(target.target())
        this.files = await target.state()
      }
      if (live && oracle && oracle.records.length > 0) {
        return { ...outcome, oracle: { vms: oracle.records as unknown as TaggedValue } }
      }
      if (oracle && oracle.unused > 0) return { ...outcome, oracleUnused: oracle.unused }
      return outcome
    } finally {
      if (checkout) await (checkout as Hyperbee).close()
    }
  }

  /** The archive state to log after a turn (it includes the current group's changes). */
  async currentFiles(): Promise<FilesState> {
    if (!this.files) this.files = await this.storage.filesArchive.state()
    return this.files
  }

  /** Holds `entry` until the next flush, which stores it with the files changes of its call. */
  stage(entry: LogEntry): void {
    this.staged.push(entry)
  }

  get stagedCount(): number {
    return this.staged.length
  }

  /**
   * Stores every staged entry and the file changes of their calls in one atomic write. If it fails,
   * none of it is stored: the runner's in-memory state is then ahead of the log, and the owner must
   * stop using it (reopen restores it from the log).
   */
  flush(): Promise<void> {
    const entries = this.staged
    this.staged = []
    const group = this.group
    const previous = this.inFlight
    const write = (async () => {
      if (previous) await previous // writes are stored in the order they were made
      if (entries.length === 0) return
      if (group?.hasChanges) {
        await group.commit(entries)
        return
      }
      // No file changed: a plain append is the cheapest write. The commit group's log session would
      // fall behind it, so the group (open, without changes) is closed; the next writing call opens one.
      if (group) {
        if (this.group === group) this.group = null
        await group.close()
      }
      await this.storage.callLog.append(entries)
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

  /**
   * True if the next calls may run while this flush is stored: no commit group is open, so the
   * flush is a plain log append and calls that touch files wait for it on their own.
   */
  get canRunDuringFlush(): boolean {
    return this.group === null
  }

  /** The commit group, opened when a call first has file changes to store. */
  private async openGroup(): Promise<CommitGroup> {
    if (!this.group) this.group = await CommitGroup.open(this.storage.filesArchive, this.storage.callLog, this.storage.store.storage)
    return this.group
  }

  /** Closes the commit group (call after a flush: changes not stored are dropped). */
  async close(): Promise<void> {
    const group = this.group
    this.group = null
    await group?.close()
  }

  dispose(): void {
    this.sandbox?.dispose()
    this.sandbox = null
    this.staged = []
  }
}

export function buildInitEntry(
  fields: Pick<InitEntry, 'code' | 'title' | 'filesArchiveKey' | 'limits' | 'auth' | 'timestamp' | 'seed' | 'files'> & {
    costSchedule: number
    exports: ExportInfo[]
    outcome: CallOutcome & { ok: true }
    loadCost: number
    factory?: boolean
  },
): InitEntry {
  const entry: InitEntry = {
    type: 'init',
    schema: LOG_SCHEMA,
    engine: ENGINE_INFO,
    code: fields.code,
    title: fields.title,
    filesArchiveKey: fields.filesArchiveKey,
    limits: recordedLimits(fields.limits, fields.costSchedule > 0),
    ...(fields.costSchedule > 0 ? { costSchedule: fields.costSchedule } : {}),
    auth: fields.auth,
    timestamp: fields.timestamp,
    seed: fields.seed,
    exports: fields.exports.map((e) => e.name),
    ...(fields.factory ? { factory: true } : {}),
    files: fields.files,
    cost: fields.loadCost + fields.outcome.cost,
  }
  if (fields.outcome.value !== undefined) entry.result = fields.outcome.value
  return entry
}

/**
 * A replayed call must ask for every answer its entry records: a host that adds System.vms answers
 * the script never asked for (say, a VM it claims the factory provisioned) forges the factory's
 * registry, so leftover records are a divergence at the call's seq.
 */
export function checkOracleUsed(seq: number, logged: CallEntry, outcome: RunOutcome): void {
  if (!outcome.oracleUnused) return
  throw new DivergenceError({
    message: `call ${seq} (${logged.method}) records ${outcome.oracleUnused} System.vms answer(s) its replay never asked for: the host added oracle values to its log`,
    seq,
    method: logged.method,
    caller: logged.caller,
    field: 'oracle',
  })
}

export function buildCallEntry(input: CallInput, outcome: RunOutcome, files: FilesState): CallEntry {
  // Fields are added in a fixed order: entries are compared as JSON text.
  const entry = { type: 'call', caller: input.caller } as CallEntry
  if (input.signed) entry.signed = input.signed
  entry.method = input.method
  entry.args = input.args
  entry.timestamp = input.timestamp
  entry.seed = input.seed
  const oracle = input.oracle ?? outcome.oracle
  if (oracle) entry.oracle = oracle
  if (outcome.ok) {
    if (outcome.value !== undefined) entry.result = outcome.value
  } else {
    entry.error = outcome.error
  }
  entry.files = files
  entry.cost = outcome.cost
  return entry
}

/** The inputs of a logged call entry, for replay. */
export function callInputOf(entry: CallEntry): CallInput {
  const input: CallInput = {
    caller: entry.caller,
    method: entry.method,
    args: entry.args,
    timestamp: entry.timestamp,
    seed: entry.seed,
  }
  if (entry.signed) input.signed = entry.signed
  if (entry.oracle) input.oracle = entry.oracle
  return input
}

/**
 * Restores a runner's in-memory state from its own log: load, init and every call re-run against
 * checkouts of the archive, each call admitted by the rules of a live call (call-admission.ts) and
 * its outcome checked against the logged one. `authenticator` takes note of every signed call, so none
 * can be admitted again; signatures themselves are not checked again (it is the VM's own log).
 */
export async function restoreFromLog(
  runner: CallRunner,
  log: CallLog,
  options: { prepared?: Promise<EngineSandbox>; authenticator?: CallAuthenticator },
): Promise<void> {
  const length = log.length
  const init = (await log.get(0)) as InitEntry
  await runner.load(init.timestamp, init.seed, options.prepared)
  const initOutcome = await runner.runInit(init.timestamp, init.seed, 'restore')
  if (!initOutcome.ok) {
    throw new DivergenceError({
      message: `the VM's own init no longer succeeds on restore: ${initOutcome.error.name}: ${initOutcome.error.message}`,
      seq: 0,
      method: 'init',
    })
  }
  const admission = new CallAdmission(
    runner.exports,
    runner.limits,
    options.authenticator ?? new CallAuthenticator(init.auth, log.key),
    !!init.factory,
  )
  let baseVersion = init.files.version
  let files = init.files
  let seq = 0
  for await (const entry of log.entries({ start: 1, end: length })) {
    seq++
    const logged = entry as CallEntry
    admission.admitLogged(seq, logged, { checkAuth: false })
    const outcome = await runner.runCall(callInputOf(logged), 'restore', baseVersion)
    checkOracleUsed(seq, logged, outcome)
    const restored = buildCallEntry(callInputOf(logged), outcome, logged.files)
    if (JSON.stringify(restored) !== JSON.stringify(logged)) {
      throw new DivergenceError({
        message: `the VM's own log does not replay at seq ${seq} (${logged.method}): its archive or log was changed outside the VM, or the script is nondeterministic`,
        seq,
        method: logged.method,
        caller: logged.caller,
        field: 'result',
        expected: logged.result ?? logged.error,
        actual: restored.result ?? restored.error,
      })
    }
    baseVersion = logged.files.version
    files = logged.files
  }
  runner.files = files
}
