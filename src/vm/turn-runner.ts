/**
 * TurnRunner: runs one turn of a VM's script — its load, its init, or one call — in the sandbox,
 * with System.* bound to that turn. It is where a sandbox outcome and a files transaction meet; it
 * knows nothing of logs, groups or queues. The call executor (call-executor.ts) says which archive
 * state the turn reads and what becomes of its changes.
 */
import { decodeValue, encodeValue, type TaggedValue } from '../codec/value-codec.js'
import { HostFaultError } from '../errors.js'
import type { FilesFormat } from '../ledger/drive-format.js'
import type { FilesTransaction, StorageUsage } from '../ledger/files-transaction.js'
import type { FilesView } from '../ledger/files-view.js'
import { type CallInput, LOG_SCHEMA, type RunOutcome, UPGRADE_SCHEMA } from '../ledger/log-entry.js'
import { derivedSeed, initSeed } from '../ledger/log-hashes.js'
import { type EngineState, stateFormatOf } from '../sandbox/engine-state.js'
import { costSchedule, MILLITICKS } from '../sandbox/host-work.js'
import type { VMLimits } from '../sandbox/limits.js'
import { RemoteSandbox } from '../sandbox/remote-sandbox.js'
import { type ConsoleSink, type ExportInfo, type HostRequestHandler, Sandbox } from '../sandbox/sandbox.js'
import { takeSpareSandbox } from './sandbox-spares.js'
import {
  FACTORY_SYSTEM_SOURCE,
  FACTORY_UPGRADES_SOURCE,
  type FilesIdentity,
  type OracleRecord,
  OracleSession,
  SYSTEM_SOURCE,
  SystemHost,
  type VMProvisioner,
} from './system-api.js'

export interface RunnerOptions {
  code: string
  limits: VMLimits
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
  /** The log's files format (drive-format.ts): how the VM's folders are stored. */
  filesFormat: FilesFormat
  /** The code comes from an upgrade entry: its sandboxes have the upgrade hook (prelude.ts), and their state format says so. */
  upgraded?: boolean
  /** The schema of the VM's log (default: the current one): a factory's System API depends on it. */
  logSchema?: number
}

/** A sandbox on this thread, or on a sandbox thread: the same interface. */
export type EngineSandbox = Sandbox | RemoteSandbox

/** The archive a turn reads: the state it starts from, and how to open a view of it. */
export interface TurnFiles {
  /** The archive version the turn starts from (what System.files.getInfo reports). */
  version: number
  /** Opened on the turn's first System.files request (a turn that touches no file opens nothing). */
  openView: () => Promise<FilesView>
  /** What the archive holds at `version`, for the storage quotas. */
  usage: StorageUsage
}

/** What a turn did: its outcome, and its file changes (not yet stored anywhere). */
export interface TurnResult {
  outcome: RunOutcome
  changes: FilesTransaction | null
}

/**
 * The System API sources a VM's sandbox loads: a factory's has System.vms too, and from log schema 4
 * on System.vms.upgradeVM (older factories' sandboxes are built as they always were).
 */
function systemSourcesOf(factory: boolean, logSchema: number): string[] {
  if (!factory) return [SYSTEM_SOURCE]
  if (logSchema < UPGRADE_SCHEMA) return [SYSTEM_SOURCE, FACTORY_SYSTEM_SOURCE]
  return [SYSTEM_SOURCE, FACTORY_SYSTEM_SOURCE, FACTORY_UPGRADES_SOURCE]
}

/**
 * The state format of a VM's (or, `factory`, a VM factory's) sandboxes in this build, for a log of
 * `logSchema`; `upgraded`: of those that run code an upgrade entry loaded.
 */
export function stateFormatFor(factory: boolean, logSchema: number, upgraded = false): string {
  return stateFormatOf(systemSourcesOf(factory, logSchema), upgraded)
}

export class TurnRunner {
  readonly limits: VMLimits
  /** The state format of this runner's sandboxes (engine-state.ts): what its state digests can be compared with. */
  readonly stateFormat: string
  private sandbox: EngineSandbox | null = null

  constructor(private readonly options: RunnerOptions) {
    this.limits = options.limits
    this.stateFormat = stateFormatFor(!!options.factory, options.logSchema ?? LOG_SCHEMA, !!options.upgraded)
  }

  /** The code this runner loads. */
  get code(): string {
    return this.options.code
  }

  /**
   * A runner of the same VM for other code, under `limits` (not loaded yet): the code an upgrade
   * loads (`upgraded`), or the init entry's again (a replay from the start).
   */
  withCode(code: string, limits: VMLimits, upgraded: boolean): TurnRunner {
    return new TurnRunner({ ...this.options, code, limits, upgraded })
  }

  /** Whether the code is of an upgrade entry (its sandboxes have the upgrade hook). */
  get upgraded(): boolean {
    return !!this.options.upgraded
  }

  /** Whether the loaded code exports an `upgrade` hook (and runs in a sandbox that can call it). */
  get hasUpgradeHook(): boolean {
    return this.upgraded && this.exports.some((e) => e.name === 'upgrade' && e.callable)
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
    options: {
      console?: ConsoleSink
      watchdogMs?: number
      factory?: boolean
      thread?: boolean
      costSchedule: number
      upgraded?: boolean
      logSchema?: number
    },
    /** Take a sandbox made ahead (sandbox-spares.ts): for processes that deploy many VMs. */
    ahead = false,
  ): Promise<EngineSandbox> {
    const { watchdogMs, costSchedule, thread = false, factory = false, upgraded = false, logSchema = LOG_SCHEMA } = options
    const systemSources = systemSourcesOf(factory, logSchema)
    const sandboxOptions = { limits, systemSources, watchdogMs, costSchedule, upgradeHook: upgraded }
    const create = (console: ConsoleSink | undefined) =>
      thread ? RemoteSandbox.create({ ...sandboxOptions, console }) : Sandbox.create({ ...sandboxOptions, console })
    if (!ahead) return create(options.console)
    const kind = JSON.stringify({ limits, watchdogMs, costSchedule, thread, factory, upgraded, logSchema: factory ? logSchema : 0 })
    // Made with a console (so that a thread forwards its lines), then given this VM's.
    return takeSpareSandbox<EngineSandbox>(kind, () => create(() => {})).then((sandbox) => {
      sandbox.setConsole(options.console)
      return sandbox
    })
  }

  /** A fresh sandbox (or the `prepared` one) with the script loaded by the logged load turn. Throws ScriptError. */
  async load(timestamp: number, seed: string, prepared?: Promise<EngineSandbox>): Promise<number> {
    const turn = { timestamp, seed, callerId: null }
    return (await this.replaceSandbox(prepared, (sandbox) => sandbox.loadScript(this.options.code, turn))).cost
  }

  /**
   * A fresh sandbox (or the `prepared` one) in a captured state (a snapshot's), instead of the load
   * and the turns that led to it.
   */
  async restore(state: EngineState, prepared?: Promise<EngineSandbox>): Promise<void> {
    await this.replaceSandbox(prepared, (sandbox) => sandbox.adoptState(state))
  }

  /** Disposes of the sandbox and takes a fresh one (or the `prepared` one), set up by `setUp`; none if that fails. */
  private async replaceSandbox<T>(
    prepared: Promise<EngineSandbox> | undefined,
    setUp: (sandbox: EngineSandbox) => Promise<T> | T,
  ): Promise<T> {
    this.sandbox?.dispose()
    const sandbox = await (prepared ?? TurnRunner.prepareSandbox(this.limits, this.options))
    this.sandbox = sandbox
    try {
      return await setUp(sandbox)
    } catch (err) {
      sandbox.dispose()
      this.sandbox = null
      throw err
    }
  }

  /** The sandbox's state between turns (engine-state.ts). */
  async captureState(): Promise<EngineState> {
    if (!this.sandbox) throw new HostFaultError('the VM has no loaded sandbox')
    return this.sandbox.captureState()
  }

  /** Runs `exports.init` (if the script has one) as the deploy's init turn. */
  runInit(timestamp: number, seed: string, files: TurnFiles): Promise<TurnResult> {
    if (!this.hasInit) return Promise.resolve({ outcome: { ok: true, cost: 0 }, changes: null })
    // `oracle` given (empty): System.vms answers nothing during init, on the host as on replay.
    const input: CallInput = { caller: null, method: 'init', args: [], argsJson: '[]', timestamp, seed: initSeed(seed), oracle: {} }
    return this.runTurn(input, files, false)
  }

  /**
   * Runs the loaded code's `exports.upgrade(previous)` (if it has one) as an upgrade's turn, dated
   * `timestamp`, its seeds derived from `seed`. Each call it makes through `previous` runs the old
   * code's export in `previous`'s sandbox, as an anonymous caller, on the same files transaction,
   * under the old limits; its cost joins the hook's, which the new limits' computeTicks bounds.
   * System.vms answers nothing here, live or on replay (as in init).
   */
  async runUpgrade(timestamp: number, seed: string, files: TurnFiles, previous: TurnRunner): Promise<TurnResult> {
    const sandbox = this.sandbox
    const old = previous.sandbox
    if (!sandbox || !old) throw new HostFaultError('an upgrade needs both the old code and the new one loaded')
    if (!this.hasUpgradeHook) return { outcome: { ok: true, cost: 0 }, changes: null }
    const system = this.systemHost(files, timestamp, this.options.factory ? new OracleSession(null, [], null) : null)
    let calls = 0
    const onRequest: HostRequestHandler = async (op, args, meter) => {
      if (op !== 'upgrade.previous') return system.handle(op, args, meter)
      const [method, callArgs] = args as [string, unknown[]]
      const turn = { timestamp, seed: derivedSeed(seed, `previous:${calls++}`), callerId: null }
      const argsJson = encodeValue(callArgs, `the arguments of previous.${method}`) ?? '[]'
      const outcome = await old.runCall(String(method), argsJson, turn, system.handle)
      // The old code's work is the hook's: it counts against the hook's budget, and so does carrying
      // its answer across (charged as a file read of its size).
      meter.absorb(outcome.cost * MILLITICKS)
      if (!outcome.ok) throw Object.assign(new Error(outcome.error.message), { name: outcome.error.name })
      if (outcome.value === undefined) return undefined
      const answer = JSON.stringify(outcome.value)
      meter.charge('readKiB', answer.length)
      return decodeValue(answer)
    }
    const previousJson = JSON.stringify(previous.exports.map((e) => [e.name, e.callable, e.value ?? null]))
    const turn = { timestamp, seed: derivedSeed(seed, 'upgrade'), callerId: null }
    const outcome = await sandbox.runUpgradeHook(previousJson, turn, onRequest)
    return { outcome, changes: system.transaction }
  }

  /** The host side of a turn's System requests, over `files`. */
  private systemHost(files: TurnFiles, timestamp: number, oracle: OracleSession | null): SystemHost {
    const quotas = costSchedule(this.options.costSchedule)?.quotas ? { quota: this.limits, usage: files.usage } : null
    const openView = async () => (await files.openView()).withFormat(this.options.filesFormat)
    return new SystemHost(this.options.identity, files.version, timestamp, openView, oracle, quotas)
  }

  /**
   * Runs one call. `live`: System.vms asks the provisioner and the outcome carries what it answered;
   * otherwise the answers come from `input.oracle` (the log), and `oracleUnused` counts any left over.
   */
  async runTurn(input: CallInput, files: TurnFiles, live: boolean): Promise<TurnResult> {
    const sandbox = this.sandbox
    if (!sandbox) throw new HostFaultError('the VM has no loaded sandbox')
    const asksHost = live && !!this.options.provisioner && input.oracle === undefined
    const recorded = (input.oracle?.vms ?? []) as unknown as OracleRecord[]
    const oracle = this.options.factory
      ? new OracleSession(asksHost ? (this.options.provisioner ?? null) : null, asksHost ? null : recorded, input.caller)
      : null
    const system = this.systemHost(files, input.timestamp, oracle)
    const turn = { timestamp: input.timestamp, seed: input.seed, callerId: input.caller }
    const outcome: RunOutcome = await sandbox.runCall(input.method, input.argsJson, turn, system.handle)
    const changes = system.transaction
    if (asksHost && oracle && oracle.records.length > 0) {
      return { outcome: { ...outcome, oracle: { vms: oracle.records as unknown as TaggedValue } }, changes }
    }
    if (oracle && oracle.unused > 0) return { outcome: { ...outcome, oracleUnused: oracle.unused }, changes }
    return { outcome, changes }
  }

  dispose(): void {
    this.sandbox?.dispose()
    this.sandbox = null
  }
}

/** The usage after a turn's changes (when the turn succeeded, its changes are kept). */
export function usageAfter(usage: StorageUsage, result: TurnResult): StorageUsage {
  const changes = result.changes
  if (!result.outcome.ok || !changes?.changed) return usage
  return { bytes: usage.bytes + changes.usageChange.bytes, entries: usage.entries + changes.usageChange.entries }
}
