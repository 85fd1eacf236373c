/**
 * VM: a script, its sandbox, its call log and its files archive — the public face over deploy,
 * reopen and close. Each call is admitted here (admission.ts) and handed to the call executor
 * (call-executor.ts), which runs it, stores it and answers it.
 */
import { EventEmitter } from 'node:events'
import { rm } from 'node:fs/promises'
import type { Duplex } from 'node:stream'
import { debuglog } from 'node:util'
import type Corestore from 'corestore'
import { CallAuthenticator } from '../auth/call-auth.js'
import type { SignedCall } from '../auth/signed-call.js'
import { decodeValue, fromTagged } from '../codec/value-codec.js'
import {
  CallError,
  DirectoryError,
  DivergenceError,
  InvalidArgumentError,
  LogFormatError,
  MethodNotFoundError,
  QueueFullError,
  ScriptError,
  StateError,
  UpgradeError,
} from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { CURRENT_FILES_FORMAT, type FilesFormat, filesFormat } from '../ledger/drive-format.js'
import type { DatArchive, FilesState } from '../ledger/files-archive.js'
import {
  type AuthMode,
  buildInitEntry,
  buildUpgradeEntry,
  type InitEntry,
  LOG_SCHEMA,
  sameFiles,
  UPGRADE_SCHEMA,
  type UpgradeEntry,
} from '../ledger/log-entry.js'
import { codeHash } from '../ledger/log-hashes.js'
import { createReceipt, type Receipt } from '../ledger/receipts.js'
import { SnapshotStore } from '../ledger/snapshot-store.js'
import { VMStorage } from '../ledger/vm-storage.js'
import { CURRENT_COST_SCHEDULE } from '../sandbox/host-work.js'
import { recordedLimits, resolveLimits, type VMLimits } from '../sandbox/limits.js'
import type { ConsoleSink } from '../sandbox/sandbox.js'
import { type BundleInfo, bundleInfoOf, type ScriptBundle } from '../script/bundle.js'
import { inScriptSources } from '../script/source-map.js'
import { counted } from '../wording.js'
import { type AdmittedCall, CallAdmission, type EdgeCall, missingExports } from './admission.js'
import { CallExecutor, type StoredCall } from './call-executor.js'
import type { Lane, QueueRoom } from './call-queue.js'
import { Checkpointer, type CheckpointOptions, checkpointOptionsProblem, DEFAULT_CHECKPOINTS } from './checkpoints.js'
import { type CodeVersion, takesUpgrades } from './code-versions.js'
import { debugConsole } from './debug-console.js'
import { ENGINE_INFO } from './engine-info.js'
import { RebuildVM } from './rebuild.js'
import { openReplay, type ReplayAssertions, type ReplayOptions, type ReplaySource } from './replay.js'
import { restoreFromLog } from './restore.js'
import type { VMProvisioner } from './system-api.js'
import { type EngineSandbox, type RunnerOptions, TurnRunner } from './turn-runner.js'

export interface DeployOptions {
  /** The VM's data dir: a new or empty dir deploys the script; a VM's own dir resumes it. */
  dir: string
  /** The VM's title (first deploy only). */
  title?: string
  /**
   * Resuming: called as the VM's own log is re-run, with the calls done, their total (the calls after
   * the snapshot it starts from) and that snapshot's seq (0: none, the whole log is re-run).
   */
  onResume?: (done: number, total: number, fromSeq: number) => void
  /**
   * Resuming a VM that runs other code: upgrade it to this VM's code (vm.upgrade, with `limits` from
   * the options, if given) once it is restored. Without it, other code is refused (ERR_CODE_MISMATCH).
   * The 'upgrade' event says what the upgrade did.
   */
  upgrade?: boolean
  /**
   * Resuming: run whatever code the VM's log says it runs (its last upgrade's), whichever code this VM
   * object was made with (that code is only deployed into a new dir). For hosts that bring back VMs
   * they did not write: a factory's provisioned VMs.
   */
  asLogged?: boolean
}

/** How a deploy treats a VM that resumes with other code: refuse it, upgrade it, or run the logged code. */
type OtherCode = 'refuse' | 'upgrade' | 'as-logged'

/** vm.upgrade's options. */
export interface UpgradeOptions {
  /** Limits from the upgrade on: each one given replaces the VM's (those not given stay as they are). */
  limits?: Partial<VMLimits>
}

/** What an upgrade did (vm.upgrade's result, and the 'upgrade' event's). */
export interface UpgradeResult {
  /** The seq of its entry. */
  seq: number
  /** The code version it replaced, and the one the VM runs from here on. */
  from: CodeVersion
  to: CodeVersion
  /** What the new code's `upgrade` hook returned (undefined: it has none, or it returned nothing). */
  result: unknown
  /** Whether the new code has an `upgrade` hook (it ran). */
  hook: boolean
  /** Its cost in ticks: the load's and the hook's, its calls to the old code included. */
  cost: number
}

export interface VMOptions {
  /** Resource limits for a new VM (a reopened VM keeps the limits its init entry records). */
  limits?: Partial<VMLimits>
  /**
   * Caller authentication, recorded in the init entry: 'debug' (default) takes user ids on trust;
   * 'production' makes caller ids public keys and requires every call with a caller to be signed.
   * A reopened VM keeps its recorded mode (asking for another one is refused).
   */
  auth?: AuthMode
  /**
   * Whether the VM may be upgraded (vm.upgrade): true by default. `false` is recorded in the init
   * entry: the VM refuses every upgrade, and a log of it that holds one is a divergence.
   */
  upgrades?: boolean
  /** Where the script's console.* output goes; by default to NODE_DEBUG=libvms. */
  console?: ConsoleSink
  /** Wall-clock watchdog of one call, host requests included, in ms (a host fault, never logged; default: the larger of 5 s and 10 ms per tick of computeTicks). */
  watchdogMs?: number
  /**
   * Run the script on a sandbox thread, so a call that computes for long holds up neither the host
   * (RPC, storage) nor VMs on other threads; each call then crosses threads (about 4× slower for
   * trivial calls). Default false, except for the VMs a factory provisions. See docs/api.md.
   */
  thread?: boolean
  /**
   * Checkpoints (docs/api.md): how often the VM states its state digest in its log and keeps a
   * snapshot of its state in its dir, so that reopening replays only the calls after the newest.
   * Default `{every: 1000, intervalMs: 300000, keep: 3, spread: 16}`; `false`: none (reopening replays the whole
   * log). A VM whose log predates checkpoints (schema 1) takes none.
   */
  checkpoints?: CheckpointOptions | false
  /**
   * @internal The files format of a new VM (drive-format.ts); default the current one. Only for
   * testing how archives of older formats are read and replayed: a reopened VM keeps its log's.
   */
  filesFormat?: FilesFormat
}

/** @internal What VMFactory adds to a VM: System.vms, and the exports its script must have. */
export interface FactoryHooks {
  provisioner: VMProvisioner
  requiredExports: string[]
}

export interface ExecuteCallRequest {
  methodName: string
  args?: unknown[]
  /**
   * The caller's id, as System.caller.id sees it; null or absent for an anonymous caller. In
   * production mode, the public key (hex) that signed the call.
   */
  userId?: string | null
  /** Production mode: the payload the caller signed for this call and its signature. */
  signed?: SignedCall
  /**
   * The value the caller chose at random for this call (32 to 64 lowercase hex digits), logged in
   * the call's entry (log schema 3): a receipt of the entry then answers this call and no other.
   * RPCClient sends one with every call; in a signed call it is the one the payload holds.
   */
  clientNonce?: string
  /**
   * @internal The queue lane the call waits in (call-queue.ts): calls of one lane run in the order
   * they were made, lanes take turns. Default: the caller's, `userId` (null: one lane for anonymous
   * calls); an RPC server gives each connection its own.
   */
  lane?: Lane
  /** @internal The VM's queue bound for this call (an RPC server's maxQueuedCalls): see CallExecutor.submit. */
  maxQueued?: number
  /**
   * @internal A call the RPC server parsed and checked at its edge (admission.ts, EdgeCall): its
   * arguments already in tagged form, its signed call parsed and verified with `userId`'s key.
   * Admission checks the rest, parsing nothing again; `args` and `signed` are then not read.
   */
  edge?: EdgeCall
  /** @internal Called once the call is admitted, as it is queued (not when it is refused). */
  onAdmitted?: () => void
}

const noticeLog = debuglog('libvms')

type VMState = 'new' | 'deploying' | 'ready' | 'closing' | 'closed'

export class VM extends EventEmitter {
  /** The code this VM object was made with: what a first deploy deploys (and an upgrade on deploy upgrades to). */
  private readonly givenCode: string
  private readonly options: VMOptions
  private state: VMState = 'new'
  private storage: VMStorage | null = null
  private executor: CallExecutor | null = null
  private initEntry: InitEntry | null = null
  private admission: CallAdmission | null = null
  private exportsObject: Record<string, unknown> = {}
  private ownedDir: string | null = null
  /** The receipt being made (receipts are made in log order). */
  private receiptsMade: Promise<unknown> = Promise.resolve()
  /** Every code version the VM ran, oldest first (read back from its log at deploy; each upgrade adds one). */
  private versions: CodeVersion[] = []
  /** The upgrade under way, if any: calls made meanwhile wait for it, then run on the code it leaves. */
  private upgrading: Promise<unknown> | null = null
  /** Calls waiting for the upgrade under way: counted against a queue bound (maxQueued) like queued calls. */
  private held = 0
  private readonly factoryHooks: FactoryHooks | null

  constructor(script: string | ScriptBundle, options: VMOptions = {}, factoryHooks: FactoryHooks | null = null) {
    super()
    this.factoryHooks = factoryHooks
    // A bundle (bundleScript) deploys its code.
    const code = typeof script === 'object' && script !== null && typeof script.code === 'string' ? script.code : script
    if (typeof code !== 'string') {
      throw new InvalidArgumentError('new VM(code): code must be a string of JavaScript, or a bundle from bundleScript()')
    }
    if (options.auth !== undefined && options.auth !== 'debug' && options.auth !== 'production') {
      throw new InvalidArgumentError(`auth must be 'debug' or 'production', got ${JSON.stringify(options.auth)}`)
    }
    const checkpointsProblem = checkpointOptionsProblem(options.checkpoints)
    if (checkpointsProblem) throw new InvalidArgumentError(checkpointsProblem)
    if (options.upgrades !== undefined && typeof options.upgrades !== 'boolean') {
      throw new InvalidArgumentError(`upgrades must be true or false, got ${JSON.stringify(options.upgrades)}`)
    }
    this.givenCode = code
    this.options = options
  }

  /** The code the VM runs: the code it was made with until it is deployed, then its log's (an upgrade changes it). */
  get code(): string {
    return this.executor?.runner.code ?? this.givenCode
  }

  /** The version of the code the VM runs (its hash, and the seq of the entry that set it); null until deployed. */
  get codeVersion(): CodeVersion | null {
    const executor = this.executor
    if (!executor) return null
    // Every handshake asks: the newest of the versions kept, unless a deploy has not listed them yet.
    const newest = this.versions[this.versions.length - 1]
    if (newest?.seq === executor.codeVersionSeq) return newest
    return { hash: codeHash(executor.runner.code), seq: executor.codeVersionSeq }
  }

  /**
   * @internal The receipt of the entry that set the code the VM runs (made once per version): what a
   * client pinning a code version is given in the handshake.
   */
  codeReceipt(): Promise<Receipt> {
    const seq = this.requireExecutor().codeVersionSeq
    if (this.codeReceiptMade?.seq !== seq) {
      const made = { seq, receipt: createReceipt(this.callLog, seq) }
      // One that failed is made again when next asked for.
      made.receipt.catch(() => {
        if (this.codeReceiptMade === made) this.codeReceiptMade = null
      })
      this.codeReceiptMade = made
    }
    return this.codeReceiptMade.receipt
  }

  private codeReceiptMade: { seq: number; receipt: Promise<Receipt> } | null = null

  /**
   * @internal Set by a VMHost: reserves `bytes` of its memory budget for this VM in place of what it
   * holds (an upgrade that changes limits.memoryBytes), throwing CapacityError if they do not fit;
   * answers how to give them back (the upgrade was refused).
   */
  memoryGate: ((bytes: number) => () => void) | null = null

  /** Every code version the VM ran, oldest first: the init entry's, then each upgrade's (empty until deployed). */
  get codeVersions(): readonly CodeVersion[] {
    return this.versions
  }

  /** The bundle the code the VM runs was made from (its entry file and bundler), or null for a plain script. */
  get bundle(): BundleInfo | null {
    return bundleInfoOf(this.code)
  }

  /** Whether the VM may be upgraded: its log's schema has upgrades and its init entry does not turn them off. */
  get upgradable(): boolean {
    const init = this.initEntry
    return init ? init.schema >= UPGRADE_SCHEMA && takesUpgrades(init) : this.options.upgrades !== false
  }

  // ---- attributes ----

  /** One key per name the script exports: functions call the VM (as an anonymous caller). */
  get exports(): Record<string, unknown> {
    return this.exportsObject
  }

  /** The callable exports, minus `init` (which runs only at deploy). */
  get methods(): string[] {
    return this.admission?.methodNames ?? []
  }

  get callLog(): CallLog {
    return this.requireStorage().callLog
  }

  get filesArchive(): DatArchive {
    return this.requireStorage().filesArchive
  }

  get title(): string {
    return this.initEntry?.title ?? ''
  }

  /** The limits the VM runs under now (an upgrade may change them). */
  get limits(): VMLimits {
    return this.executor?.runner.limits ?? resolveLimits(this.options.limits)
  }

  get auth(): AuthMode {
    return this.initEntry?.auth ?? 'debug'
  }

  /** The schema of the VM's log (its init entry's; LOG_SCHEMA for a new VM): what its entries can hold. */
  get logSchema(): number {
    return this.initEntry?.schema ?? LOG_SCHEMA
  }

  get dir(): string | null {
    return this.storage?.dir ?? null
  }

  get closed(): boolean {
    return this.state === 'closed'
  }

  // ---- lifecycle ----

  /**
   * Deploys the VM into `dir`. A new or empty dir gets a new VM: the script is loaded, `init` runs,
   * and the init entry is logged. A dir that holds this VM already reopens it and restores its
   * in-memory state by replaying its own log.
   */
  async deploy({ dir, title = '', onResume, upgrade = false, asLogged = false }: DeployOptions): Promise<void> {
    await this.deployWith(dir, title, () => VMStorage.open(dir, 'vm'), onResume, false, otherCode(upgrade, asLogged))
  }

  /**
   * @internal Deploys into a namespace of a host's store (VMHost.deploy; a factory's provisioned
   * VMs): the host's dir is `hostDir`, and it keeps the store open.
   */
  async deployHosted(
    dir: string,
    title: string,
    store: Corestore,
    hostDir: string,
    namespace: string,
    { onResume, upgrade = false, asLogged = false }: Pick<DeployOptions, 'onResume' | 'upgrade' | 'asLogged'> = {},
  ): Promise<void> {
    // A host deploys many VMs: each takes a sandbox made ahead.
    const open = () => VMStorage.openHosted(dir, store, hostDir, namespace)
    await this.deployWith(dir, title, open, onResume, true, otherCode(upgrade, asLogged))
  }

  /** @internal The store the VM's cores live in (a factory shares it with the VMs it provisions). */
  get corestore(): Corestore {
    return this.requireStorage().store
  }

  private async deployWith(
    dir: string,
    title: string,
    openStorage: () => Promise<VMStorage>,
    onResume?: DeployOptions['onResume'],
    sandboxAhead = false,
    other: OtherCode = 'refuse',
  ): Promise<void> {
    if (this.state !== 'new') throw new StateError('deploy() can only be called once per VM object')
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('deploy({dir}): dir must be a path')
    if (typeof title !== 'string') throw new InvalidArgumentError('deploy({title}): title must be a string')
    const limits = resolveLimits(this.options.limits)
    this.state = 'deploying'
    let storage: VMStorage | null = null
    // Start the sandbox while storage opens; a reopened VM whose logged limits differ makes another.
    const prepared = TurnRunner.prepareSandbox(limits, this.runnerOptions(), sandboxAhead)
    prepared.catch(() => {})
    try {
      storage = await openStorage()
      if (storage.fresh) await this.firstDeploy(storage, title, limits, prepared)
      else await this.reopen(storage, limits, prepared, onResume, other)
      this.versions = await this.codeHistory()
    } catch (err) {
      this.executor?.runner.dispose()
      await this.executor?.close().catch(() => {})
      this.executor = null
      this.storage = null
      if (storage) {
        await storage.close().catch(() => {})
        // A first deploy that failed leaves nothing behind: no log, no marker.
        if (storage.fresh) await storage.discard()
      }
      this.state = 'new'
      throw inScriptSources(err, this.givenCode)
    }
    this.state = 'ready'
    this.emit('ready')
    if (this.pendingUpgrade) await this.upgradeOnDeploy()
  }

  /** Set by a reopen that found other code and was told to upgrade: done once the VM is ready. */
  private pendingUpgrade = false

  /** The upgrade a deploy was told to make ({upgrade: true}); if it is refused, the VM closes and the deploy throws. */
  private async upgradeOnDeploy(): Promise<void> {
    this.pendingUpgrade = false
    try {
      await this.upgrade(this.givenCode, { limits: this.options.limits })
    } catch (err) {
      await this.close().catch(() => {})
      throw inScriptSources(err, this.givenCode)
    }
  }

  private async firstDeploy(storage: VMStorage, title: string, limits: VMLimits, prepared: Promise<EngineSandbox>): Promise<void> {
    const identity = { key: storage.filesArchive.key, title }
    const runner = new TurnRunner({ ...this.runnerOptions(), code: this.givenCode, limits, identity })
    // Where its snapshots are published (named in the init entry, so whoever has the log finds
    // them): opened while the script loads.
    const snapshots = this.options.checkpoints === false ? null : storage.snapshots()
    snapshots?.catch(() => {})
    const authenticator = new CallAuthenticator(this.options.auth ?? 'debug', storage.callLog.key, LOG_SCHEMA)
    const executor = this.executorOf(runner, storage, snapshots && this.checkpointerOf(storage, snapshots, 0), authenticator)
    this.storage = storage
    const timestamp = Date.now()
    const seed = executor.newSeed()
    const loadCost = await runner.load(timestamp, seed, prepared)
    this.checkRequiredExports(runner)
    const outcome = await executor.init(timestamp, seed)
    if (!outcome.ok) {
      throw new ScriptError(outcome.error.name, `exports.init failed: ${outcome.error.name}: ${outcome.error.message}`)
    }
    const snapshotsKey = snapshots === null ? undefined : (await snapshots).key
    const init = buildInitEntry({
      engine: ENGINE_INFO,
      costSchedule: CURRENT_COST_SCHEDULE,
      filesFormat: this.options.filesFormat ?? CURRENT_FILES_FORMAT,
      code: this.givenCode,
      title,
      filesArchiveKey: storage.filesArchive.key,
      snapshotsKey,
      upgrades: this.options.upgrades,
      limits: recordedLimits(limits, CURRENT_COST_SCHEDULE > 0),
      auth: this.options.auth ?? 'debug',
      timestamp,
      seed,
      exports: runner.exports,
      outcome,
      loadCost,
      factory: !!this.factoryHooks,
      files: await executor.currentFiles(),
    })
    executor.stage(init)
    await executor.flush()
    this.attach(init)
  }

  private async reopen(
    storage: VMStorage,
    limits: VMLimits,
    prepared: Promise<EngineSandbox>,
    onResume?: DeployOptions['onResume'],
    other: OtherCode = 'refuse',
  ): Promise<void> {
    const log = storage.callLog
    const init = (await log.get(0)) as InitEntry
    if (!!init.factory !== !!this.factoryHooks) {
      throw new DirectoryError(
        'ERR_DIR_ROLE',
        `${storage.dir} holds a ${init.factory ? 'VM factory: deploy it with VMFactory' : 'VM, not a factory: deploy it with VM'}`,
      )
    }
    // A log that predates upgrades runs its init entry's code for ever; any other may have been upgraded since.
    if (init.schema < UPGRADE_SCHEMA && init.code !== this.givenCode && other !== 'as-logged') throw codeMismatch(storage.dir, false)
    if (this.options.auth !== undefined && this.options.auth !== init.auth) {
      throw new DirectoryError(
        'ERR_AUTH_MISMATCH',
        `${storage.dir} holds a VM deployed in ${init.auth} mode; a VM keeps its auth mode: deploy into a new dir for ${this.options.auth} mode`,
      )
    }
    const last = await log.get(log.length - 1)
    await discardUnloggedFiles(storage.filesArchive, last.files)
    // The VM keeps the cost schedule it was deployed with: its log replays the same way for ever.
    const schedule = init.costSchedule ?? 0
    // ... and the files format: its archive is read and written as its log says.
    const format = filesFormat(init.filesFormat)
    if (format === null) {
      throw new LogFormatError(`the log's files format ${init.filesFormat} is not known to this LibVMS; reopen it with a newer one`, 0)
    }
    const runner = new TurnRunner({
      ...this.runnerOptions(schedule, format, init.schema),
      code: init.code,
      limits: resolveLimits(init.limits),
      identity: { key: init.filesArchiveKey, title: init.title },
    })
    // A log that predates checkpoints (schema 1) takes none.
    const checkpointer =
      this.options.checkpoints === false || init.schema < 2
        ? null
        : this.checkpointerOf(storage, Promise.resolve(await this.publishedSnapshots(storage, init)), log.length - 1)
    const executor = this.executorOf(runner, storage, checkpointer, new CallAuthenticator(init.auth, log.key, init.schema))
    this.storage = storage
    // The sandbox made ahead fits if it was made as this log's are: its limits, cost schedule and System API.
    const sameLimits =
      JSON.stringify(init.limits) === JSON.stringify(limits) &&
      schedule === CURRENT_COST_SCHEDULE &&
      (!this.factoryHooks || init.schema >= UPGRADE_SCHEMA)
    if (!sameLimits) (await prepared).dispose()
    const snapshot = await checkpointer?.newestUsable(log, init)
    if (checkpointer && snapshot === null && log.length > 1) {
      this.notice(`no usable snapshot: replaying the whole log (${counted(log.length - 1, 'call')})`)
    }
    const restore = { prepared: sameLimits ? prepared : undefined, onProgress: onResume, snapshot }
    await restoreFromLog(executor, log, restore)
    if (executor.runner.code !== this.givenCode && other !== 'as-logged') {
      if (other === 'refuse') throw codeMismatch(storage.dir, init.upgrades !== false)
      this.pendingUpgrade = true
    }
    this.attach(init)
  }

  /** @internal Makes a deployed (or replayed) VM ready for calls, by the code it runs now (again after an upgrade). */
  attach(init: InitEntry): void {
    this.initEntry = init
    const executor = this.requireExecutor()
    this.admission = new CallAdmission(executor.runner.exports, executor.runner.limits, executor.authenticator, !!init.factory)
    const exportsObject: Record<string, unknown> = {}
    for (const e of executor.runner.exports) {
      if (!e.callable) exportsObject[e.name] = decodeValue(e.value ?? 'null')
      else if (!this.admission.methodNames.includes(e.name))
        exportsObject[e.name] = async () => Promise.reject(new MethodNotFoundError(e.name))
      else exportsObject[e.name] = (...args: unknown[]) => this.executeCall({ methodName: e.name, args })
    }
    this.exportsObject = exportsObject
  }

  /**
   * Upgrades the VM's code (log schema 4): `code` (or a bundle's) is loaded and, if it exports
   * `upgrade`, `exports.upgrade(previous)` runs once — `previous` holding the old code's exports, each
   * function an async call into the old code — to carry the state over; then an upgrade entry is
   * appended, and every call after it runs on the new code. Calls made before it run on the old code
   * first; calls made meanwhile wait for it. Limits given replace the VM's from here on.
   *
   * Refused with UpgradeError, nothing appended and the old code serving on, if the new code does not
   * load, throws at its top level, or its hook throws or runs out of a limit (ERR_UPGRADE_FAILED), if
   * the VM was deployed with `upgrades: false` (ERR_UPGRADES_OFF), or if its log predates upgrades
   * (ERR_UPGRADE_UNSUPPORTED).
   */
  upgrade(code: string | ScriptBundle, options: UpgradeOptions = {}): Promise<UpgradeResult> {
    const run = async (): Promise<UpgradeResult> => {
      await previous
      return this.upgradeNow(code, options)
    }
    const previous = this.upgrading
    const upgrading = run()
    const settled = upgrading.catch(() => {})
    this.upgrading = settled
    settled.then(() => {
      if (this.upgrading === settled) this.upgrading = null
    })
    return upgrading
  }

  private async upgradeNow(script: string | ScriptBundle, options: UpgradeOptions): Promise<UpgradeResult> {
    const code = typeof script === 'object' && script !== null && typeof script.code === 'string' ? script.code : script
    if (typeof code !== 'string')
      throw new InvalidArgumentError('vm.upgrade(code): code must be a string of JavaScript, or a bundle from bundleScript()')
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('vm.upgrade(code, options): options must be an object')
    if (this.state !== 'ready')
      throw new StateError(this.state === 'closed' || this.state === 'closing' ? 'the VM is closed' : 'the VM is not deployed yet')
    const init = this.initEntry as InitEntry
    const executor = this.requireExecutor()
    if (init.schema < UPGRADE_SCHEMA) {
      throw new UpgradeError(
        'ERR_UPGRADE_UNSUPPORTED',
        `the VM's log is of schema ${init.schema}, which predates upgrades: deploy the new code as a new VM (its state carried over by calls)`,
      )
    }
    if (!takesUpgrades(init)) {
      throw new UpgradeError(
        'ERR_UPGRADES_OFF',
        'the VM was deployed with upgrades: false; its code never changes (deploy the new code as a new VM)',
      )
    }
    const limits = resolveLimits({ ...executor.runner.limits, ...options.limits })
    const schedule = init.costSchedule ?? 0
    const next = executor.runner.withCode(code, limits, true)
    // A hosted VM's new memory is reserved in its host's budget first (CapacityError if it does not fit), given back if refused.
    const undoReserve = limits.memoryBytes !== executor.runner.limits.memoryBytes ? this.memoryGate?.(limits.memoryBytes) : undefined
    let done: Awaited<ReturnType<CallExecutor['upgradeLive']>>
    try {
      done = await executor.upgradeLive(
        next,
        () => this.checkRequiredExports(next),
        (turn) =>
          buildUpgradeEntry({
            replaces: turn.replaces,
            code,
            limits: recordedLimits(limits, schedule > 0),
            timestamp: turn.timestamp,
            seed: turn.seed,
            exports: next.exports,
            outcome: turn.outcome,
            loadCost: turn.loadCost,
            files: turn.files,
          }),
      )
    } catch (err) {
      undoReserve?.()
      if (err instanceof ScriptError) {
        const failure = inScriptSources(err, code) as ScriptError
        throw new UpgradeError('ERR_UPGRADE_FAILED', `the new code does not load: ${failure.message}; the VM runs its old code`, {
          name: failure.scriptErrorName ?? failure.name,
          message: failure.message,
        })
      }
      throw err
    }
    if ('failed' in done) {
      undoReserve?.()
      const { error } = done.failed
      throw new UpgradeError(
        'ERR_UPGRADE_FAILED',
        `the new code's upgrade hook failed: ${error.name}: ${error.message}; nothing was logged, the VM runs its old code`,
        error,
      )
    }
    const entry = done.entry as UpgradeEntry
    this.attach(init)
    const result: UpgradeResult = {
      seq: done.seq,
      from: entry.replaces,
      to: { hash: codeHash(code), seq: done.seq },
      result: entry.result === undefined ? undefined : fromTagged(entry.result),
      hook: next.hasUpgradeHook,
      cost: entry.cost,
    }
    this.versions = [...this.versions, result.to]
    this.emit('upgrade', result)
    return result
  }

  /**
   * The VM's code versions, oldest first: the init entry's, then each upgrade's (read back from the
   * current one, each upgrade entry naming the version it replaced).
   */
  async codeHistory(): Promise<CodeVersion[]> {
    const executor = this.requireExecutor()
    return codeHistoryOf(this.callLog, { hash: codeHash(executor.runner.code), seq: executor.codeVersionSeq })
  }

  /**
   * Rebuilds a VM by re-executing every call in `callLog` into a fresh log and archive (a replay into
   * a RebuildVM, replay.ts), then adopts what the replay built: the VM goes on taking calls from
   * there. `assertions` are values the log must hold, such as the files archive URL a host advertised.
   */
  static async fromCallLog(callLog: ReplaySource, assertions?: ReplayAssertions, options: ReplayOptions = {}): Promise<VM> {
    // After a host fault, a rebuilt VM rebuilds its sandbox from its own (rebuilt) log, as any VM does.
    const into = new RebuildVM({ ...options, recover: (executor) => restoreFromLog(executor, executor.storage.callLog, {}) })
    const { filesArchiveUrl, callLogUrl } = assertions ?? {}
    const replay = await openReplay(callLog, { ...options, filesArchiveUrl, callLogUrl, into })
    try {
      for await (const _entry of replay.entries()) {
        // Read to the end: the rebuild stores each entry as it is replayed.
      }
    } catch (err) {
      await replay.close()
      throw err
    }
    const built = into.handOver()
    const vm = new VM(replay.init.logged.code, { console: options.console, watchdogMs: options.watchdogMs })
    vm.storage = built.storage
    vm.executor = built.executor
    vm.ownedDir = built.ownedDir
    vm.attach(replay.init.replayed ?? replay.init.logged)
    vm.versions = await vm.codeHistory()
    vm.state = 'ready'
    return vm
  }

  /**
   * Stops taking calls; calls queued but not started are refused, the running one finishes and is
   * logged, then storage closes.
   */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return
    if (this.state === 'new') {
      this.state = 'closed'
      this.emit('close')
      return
    }
    this.state = 'closing'
    await this.executor?.drain('the VM closed before this call started; it was not run')
    await this.snapshotOnClose()
    await this.closeDependents()
    this.executor?.runner.dispose()
    await this.executor?.close()
    await this.storage?.close()
    if (this.ownedDir) await rm(this.ownedDir, { recursive: true, force: true })
    this.state = 'closed'
    this.emit('close')
  }

  /**
   * A clean close keeps a snapshot of the last call, when the newest is older: the next deploy then
   * replays nothing. A hosted VM (VMHost) keeps one only when the newest is at least
   * `closeSnapshotAfter` calls older (1/16 of `every`): fewer are cheaper to replay at its next
   * deploy than a snapshot is to write now, with a host closing a thousand VMs at once.
   * Its entry states no digest; the snapshot is tied to it by the entry's hash.
   */
  private async snapshotOnClose(): Promise<void> {
    const executor = this.executor
    const checkpointer = executor?.checkpointer
    if (!executor || !checkpointer || executor.failure) return
    // The state is of the last call this VM ran; an entry appended to its log behind its back is not.
    const seq = executor.nextSeq - 1
    try {
      const after = this.storage?.hostedIn ? checkpointer.closeSnapshotAfter : 1
      if (seq - checkpointer.newestSeq >= after && this.callLog.length === executor.nextSeq) {
        const entry = await this.callLog.get(seq)
        // A snapshot is of the state after a call (an upgrade's is after the next call's).
        if (entry.type === 'call') executor.saveSnapshot(seq, entry, await executor.captureState())
      }
      await checkpointer.written()
    } catch (err) {
      this.notice(`the snapshot of seq ${seq} was not written at close: ${(err as Error).message}`)
    }
  }

  /**
   * A line about the VM's snapshots (one skipped, one that failed to write): to the 'notice' event's
   * listeners, or else to NODE_DEBUG=libvms.
   */
  private notice(message: string): void {
    if (this.listenerCount('notice') > 0) this.emit('notice', message)
    else noticeLog('%s', message)
  }

  /** Where this VM's checkpoints go: its dir, and `published`, the drive its log names for publishing them (if any). */
  private checkpointerOf(storage: VMStorage, published: Promise<DatArchive | null>, lastSeq: number): Checkpointer {
    const options = this.options.checkpoints || {}
    const store = new SnapshotStore(storage.dir, options.keep ?? DEFAULT_CHECKPOINTS.keep, options.spread ?? DEFAULT_CHECKPOINTS.spread)
    return new Checkpointer(store, options, (message) => this.notice(message), lastSeq, published)
  }

  /** The drive a reopened VM's log names for publishing its snapshots (opened, so that it is served with the log), if it names one this store holds. */
  private async publishedSnapshots(storage: VMStorage, init: InitEntry): Promise<DatArchive | null> {
    if (init.snapshotsKey === undefined) return null
    const published = await storage.snapshots()
    if (published.key === init.snapshotsKey) return published
    this.notice(`the snapshots drive of this store is not the one the log names (${init.snapshotsKey}): snapshots are kept in the dir only`)
    return null
  }

  /** @internal Closes what depends on this VM's storage, after its last call and before the storage. */
  protected async closeDependents(): Promise<void> {}

  /**
   * A replication stream of the VM's call log and files archive (Hypercore's protocol): what the
   * RPC server serves to auditors. Peers get only the cores they ask for by key.
   */
  replicate(isInitiatorOrStream: boolean | Duplex): Duplex {
    return this.requireStorage().store.replicate(isInitiatorOrStream) as unknown as Duplex
  }

  // ---- calls ----

  /**
   * Runs one call. Resolves with the result once the call's entry is in the log; rejects with a
   * CallError (logged, with its seq) if the script threw or ran out of a limit, or with an error that
   * left no trace if the request itself was bad (unknown method, unencodable args).
   */
  executeCall(request: ExecuteCallRequest): Promise<unknown> {
    try {
      return this.submit(request).then(answerOf)
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * @internal Runs one call like executeCall, and answers with the call's receipt (receipts.ts): the
   * log's signed proof that it holds the call's entry. A logged failure is a CallError carrying it.
   */
  async executeCallWithReceipt(request: ExecuteCallRequest): Promise<{ result: unknown; receipt: Receipt }> {
    const stored = await this.submit(request)
    // Made at once, handed out in log order, so answers leave in the order their calls were logged:
    // a client can then refuse any receipt whose seq is not past the last one it took (a replay).
    const making = createReceipt(this.callLog, stored.seq, this.callLog.length, stored.entry)
    making.catch(() => {}) // observed below, in its turn
    const made = this.receiptsMade.catch(() => {}).then(() => making)
    this.receiptsMade = made
    const receipt = await made
    try {
      return { result: answerOf(stored), receipt }
    } catch (err) {
      ;(err as CallError).receipt = receipt
      throw err
    }
  }

  private submit(request: ExecuteCallRequest): Promise<StoredCall> {
    // Calls made during an upgrade wait for it, then are admitted by the code it leaves; a bounded
    // queue (an RPC server's maxQueuedCalls) holds no more of them than it would queue.
    if (this.upgrading) {
      if (request.maxQueued !== undefined && this.held >= request.maxQueued) {
        return Promise.reject(new QueueFullError(heldFull(this.held, request.maxQueued)))
      }
      this.held++
      return this.upgrading.then(() => {
        this.held--
        return this.submit(request)
      })
    }
    if (this.state !== 'ready') {
      throw new StateError(this.state === 'new' || this.state === 'deploying' ? 'the VM is not deployed yet' : 'the VM is closed')
    }
    const executor = this.requireExecutor()
    if (executor.failure) throw new StateError(`the VM stopped after a storage failure (${executor.failure.message}); reopen it`)
    const admitted = this.checkCall(request)
    request.onAdmitted?.()
    const started = performance.now()
    const stored = executor.submit(admitted, request.lane !== undefined ? request.lane : admitted.caller, request.maxQueued)
    if (this.listenerCount('call') > 0) {
      stored.then(
        (call) => this.emit('call', loggedCallOf(call, performance.now() - started)),
        () => {},
      )
    }
    return stored
  }

  /**
   * @internal Whether a call in `lane` would fit the VM's queue bounded at `maxQueued` waiting calls,
   * now: what executeCall with that lane and bound would do, checked before the call is admitted.
   */
  queueRoom(lane: Lane, maxQueued: number): QueueRoom {
    if (this.state !== 'ready' || !this.executor) return { fits: true, giveWay: null }
    if (this.upgrading)
      return this.held < maxQueued ? { fits: true, giveWay: null } : { fits: false, message: heldFull(this.held, maxQueued) }
    return this.executor.room(lane, maxQueued)
  }

  private checkCall(request: ExecuteCallRequest): AdmittedCall {
    if (request === null || typeof request !== 'object')
      throw new InvalidArgumentError('executeCall({methodName, args, userId, signed}) takes an object')
    if (!this.admission) throw new StateError('the VM is not deployed yet')
    return this.admission.admitLive(request)
  }

  /** What every runner of this VM shares; `costSchedule` is the log's (new deploys: the current one). */
  private runnerOptions(
    costSchedule = CURRENT_COST_SCHEDULE,
    filesFormat: FilesFormat = this.options.filesFormat ?? CURRENT_FILES_FORMAT,
    logSchema = LOG_SCHEMA,
  ): Omit<RunnerOptions, 'limits' | 'identity' | 'code'> {
    return {
      costSchedule,
      filesFormat,
      logSchema,
      console: this.options.console ?? debugConsole(this),
      watchdogMs: this.options.watchdogMs,
      factory: !!this.factoryHooks,
      provisioner: this.factoryHooks?.provisioner ?? null,
      thread: this.options.thread ?? false,
    }
  }

  /** The executor of this VM's calls; after a host fault it rebuilds the sandbox from the VM's own log. */
  private executorOf(
    runner: TurnRunner,
    storage: VMStorage,
    checkpointer: Checkpointer | null,
    authenticator: CallAuthenticator,
  ): CallExecutor {
    this.executor = new CallExecutor(runner, storage, authenticator, {
      checkpointer,
      recover: async (executor) => {
        await checkpointer?.written()
        const snapshot = await checkpointer?.newestUsable(storage.callLog, (await storage.callLog.get(0)) as InitEntry)
        await restoreFromLog(executor, storage.callLog, { snapshot })
      },
    })
    return this.executor
  }

  private requireExecutor(): CallExecutor {
    if (!this.executor) throw new StateError('the VM is not deployed yet; await vm.deploy({dir}) first')
    return this.executor
  }

  /** A factory's code (at deploy, and at each upgrade) must have the exports a factory calls. */
  private checkRequiredExports(runner: TurnRunner): void {
    const missing = missingExports(runner.exports, this.factoryHooks?.requiredExports ?? [])
    if (missing.length > 0) {
      throw new ScriptError('TypeError', `a VM factory script must export ${missing.join(' and ')}; it does not`)
    }
  }

  private requireStorage(): VMStorage {
    if (!this.storage) throw new StateError('the VM is not deployed yet; await vm.deploy({dir}) first')
    return this.storage
  }
}

function otherCode(upgrade: boolean, asLogged: boolean): OtherCode {
  if (upgrade && asLogged)
    throw new InvalidArgumentError('deploy({upgrade, asLogged}): give one of them: upgrade to this code, or run the logged code')
  return upgrade ? 'upgrade' : asLogged ? 'as-logged' : 'refuse'
}

/** Refusing to reopen a VM with code other than its own; `upgradable`: the message says how to upgrade it. */
function codeMismatch(dir: string, upgradable: boolean): DirectoryError {
  const how = upgradable
    ? "deploy this script into a new dir, use the VM's own code, or upgrade the VM to it (deploy({dir, upgrade: true}); nodevms exec --upgrade)"
    : 'deploy this script into a new dir, or use the original code'
  return new DirectoryError('ERR_CODE_MISMATCH', `${dir} holds a VM that runs different code; ${how}`)
}

/** The code versions of a log, oldest first, walked back from `current` through each upgrade entry's `replaces`. */
async function codeHistoryOf(log: CallLog, current: CodeVersion): Promise<CodeVersion[]> {
  const versions: CodeVersion[] = [current]
  for (let at = current; at.seq > 0; ) {
    const entry = await log.get(at.seq)
    if (entry.type !== 'upgrade') break
    at = { hash: entry.replaces.hash, seq: entry.replaces.seq }
    versions.unshift(at)
  }
  return versions
}

/** What a stored call answers: its result, or the CallError of its logged failure (with its seq). */
function answerOf(stored: StoredCall): unknown {
  const { entry, seq } = stored
  if (entry.error) throw new CallError(entry.error.name, entry.error.message, seq)
  return fromTagged(entry.result)
}

/**
 * Reopen rule: the archive must hold exactly the state the last entry records. Calls store files and
 * entries atomically, so anything past it was written outside the VM; it is discarded so that the VM
 * and its log agree again. Less than the log records is a damaged or rewritten archive: refused.
 */
async function discardUnloggedFiles(archive: DatArchive, logged: FilesState): Promise<void> {
  const drive = archive.drive
  const blobs = await drive.getBlobs()
  if (drive.core.length > logged.version) await drive.core.truncate(logged.version)
  if (blobs.core.length > logged.blobsLength) await blobs.core.truncate(logged.blobsLength)
  const state = await archive.state()
  if (!sameFiles(state, logged)) throw DivergenceError.ARCHIVE_LOST(logged, state)
}

/** What `vm.on('call', …)` hands on for each call, once its entry is stored (an access log's line). */
export interface LoggedCall {
  seq: number
  /** The call's logged time (ms since the epoch). */
  timestamp: number
  caller: string | null
  method: string
  /** From admission to the entry stored, queueing included (ms). */
  ms: number
  /** The logged error's name, for a call that failed inside the VM. */
  error?: string
}

function loggedCallOf(call: StoredCall, ms: number): LoggedCall {
  const { entry } = call
  const logged: LoggedCall = { seq: call.seq, timestamp: entry.timestamp, caller: entry.caller ?? null, method: entry.method, ms }
  if (entry.error) logged.error = entry.error.name
  return logged
}

/** Why a call made during an upgrade is refused: as many wait for it as the queue takes. */
function heldFull(held: number, maxQueued: number): string {
  return `the VM is being upgraded and ${held} calls wait for it, at most ${maxQueued} (maxQueuedCalls, --max-queued-calls): the call was not run, try again later`
}
