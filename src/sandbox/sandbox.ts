/**
 * Sandbox: one QuickJS instance running one VM script, deterministically.
 *
 * Each load, init or call is a *turn*: it starts with values the host takes from the log (timestamp,
 * random seed, caller id) and runs to completion before the next. The script's function runs, then
 * the turn's event loop: pending jobs first, then the script's host requests (System.*) one at a time
 * in request order, then virtual timers in virtual-time order, until the call's result has settled
 * and no host request is left. Timers still pending then are cancelled. Nothing runs between turns.
 *
 * Metering: each call of the engine's interrupt handler (every ~10,000 engine checkpoints) is a tick.
 * Host requests are charged in ticks too, by the log's cost schedule (host-work.ts), before the host
 * does their work. A turn whose ticks and host work pass `limits.computeTicks` is aborted with
 * ComputeLimitExceeded; replaying the same history from a fresh instance, as every replay does,
 * counts the same. A wall-clock watchdog measures the whole turn (checked by the same handler and
 * between host requests): its firing is a host fault (HostFaultError) that breaks the sandbox, which
 * its owner must rebuild from the log.
 *
 * Fairness: a turn serving a flood of host requests lets the event loop run every few milliseconds,
 * so other VMs, sockets and timers on this thread keep running.
 *
 * The sandbox knows nothing of logs, files or sockets: System.* operations reach the host through
 * the turn's `onRequest` handler.
 */
import { performance } from 'node:perf_hooks'
import { compileFunction } from 'node:vm'
import type { QuickJSContext, QuickJSDeferredPromise, QuickJSHandle, QuickJSRuntime, QuickJSWASMModule } from 'quickjs-emscripten-core'
import type { TaggedValue } from '../codec/value-codec.js'
import { decodeValue, encodeValue, jsonDeeperThan, MAX_VALUE_DEPTH } from '../codec/value-codec.js'
import { HostFaultError, HostWorkExceeded, ScriptError } from '../errors.js'
import { createEngineInstance, recycleMemory } from './engine.js'
import { captureSteps, type EngineState, type ExportInfo, writeMemorySteps } from './engine-state.js'
import { type CostSchedule, costSchedule, HostMeter, MILLITICKS } from './host-work.js'
import type { VMLimits } from './limits.js'
import { PRELUDE_SOURCE, UPGRADE_PRELUDE_SOURCE } from './prelude.js'
import { runInSlices, type Steps } from './slices.js'

/** Values a turn takes from the log. */
export interface TurnContext {
  /** Milliseconds since the epoch, UTC: what Date.now() returns inside the turn. */
  timestamp: number
  /** 32 hex digits seeding Math.random for the turn. */
  seed: string
  /** System.caller.id during the turn. */
  callerId: string | null
}

export type CallOutcome = { ok: true; value?: TaggedValue; cost: number } | { ok: false; error: TurnFailure; cost: number }

type TurnFailure = { name: string; message: string }
/** A load's failure also names the script's line, when known. */
type ScriptFailure = TurnFailure & { line?: number }

/**
 * Handles one System.* operation requested by the script. Throw a LibVMSError to reject it in the VM.
 * Charge the work on `meter` before doing it: the charge that passes the call's budget throws.
 */
export type HostRequestHandler = (op: string, args: unknown[], meter: HostMeter) => Promise<unknown>

export type ConsoleSink = (level: string, message: string) => void

/** ExportInfo is part of a sandbox's state between turns, defined with it (engine-state.ts). */
export type { ExportInfo }

export interface SandboxOptions {
  limits: VMLimits
  /** Sources of `(function (System, request) { ... })`, each run once to add APIs to System. */
  systemSources?: string[]
  console?: ConsoleSink
  /** Wall-clock limit of one turn, in ms (default: the larger of 5 s and 10 ms per tick of the budget). */
  watchdogMs?: number
  /** The log's cost schedule version (host-work.ts); absent: 0, the schedule that charges nothing. */
  costSchedule?: number
  /** The sandbox loads code from an upgrade entry: its prelude has the upgrade hook (runUpgradeHook). */
  upgradeHook?: boolean
}

type PendingRequest = { op: string; argsJson: string; deferred: QuickJSDeferredPromise }

/** The watchdog of a turn under `limits`, unless one is given (SandboxOptions.watchdogMs). */
export function defaultWatchdogMs(limits: Pick<VMLimits, 'computeTicks'>): number {
  return Math.max(5000, 10 * limits.computeTicks)
}
/** A turn serving host requests gives the event loop a turn when it has held it this long. */
const YIELD_AFTER_MS = 2
/** Jobs run while purging what an aborted turn left queued, before the sandbox gives up on itself. */
const MAX_PURGE_JOBS = 1_000_000

/**
 * Where the script's own text fails to parse as a function body, by Node's parser (it only parses:
 * nothing runs), with the line clamped to the script's last line that has any text; null if it parses
 * there (then the engine's own message stands).
 */
function syntaxErrorOf(code: string): ScriptFailure | null {
  try {
    compileFunction(code, ['exports', 'module', 'require', 'System'], { filename: 'vm-script' })
    return null
  } catch (err) {
    const { message, stack } = err as Error
    const at = /^vm-script:(\d+)$/m.exec(String(stack))
    const lines = code.split('\n')
    let last = lines.length
    while (last > 1 && lines[last - 1].trim() === '') last--
    return {
      name: 'SyntaxError',
      message: message === 'Unexpected end of input' ? 'unexpected end of the script: something opened is not closed' : message,
      line: at ? Math.min(Number(at[1]), last) : last,
    }
  }
}

export class Sandbox {
  private consoleSink: ConsoleSink = () => {}
  readonly limits: VMLimits
  // Set by setUpSteps, which create() runs to its end before it hands the sandbox out.
  private runtime!: QuickJSRuntime
  private ctx!: QuickJSContext
  private driver!: QuickJSHandle
  private readonly fns: Record<string, QuickJSHandle> = {}
  private readonly watchdogMs: number
  readonly schedule: CostSchedule
  private requests: PendingRequest[] = []
  private ticks = 0
  /** Host work charged in this turn, in milliticks. */
  private hostWork = 0
  /** A turn ended with host requests unanswered: the driver's request queue is reset before the next. */
  private requestsLeft = false
  /** A request is being served (it has left the queue, its answer has not reached the VM). */
  private serving = false
  private budget = Number.POSITIVE_INFINITY
  private deadline = Number.POSITIVE_INFINITY
  private interrupted: 'budget' | 'watchdog' | 'purge' | null = null
  private exportList: ExportInfo[] = []
  private brokenBy: Error | null = null
  /** Turns started (a sandbox that adopted a state counts as having run). */
  private turnsRun = 0
  /** A turn is under way (it may be waiting on the host). */
  private inTurn = false
  /** The engine's memory is being read or written between turns, in slices (holdingMemory). */
  private holding = false
  private disposed = false

  private constructor(
    private readonly module: QuickJSWASMModule,
    private readonly memory: WebAssembly.Memory,
    options: SandboxOptions,
  ) {
    this.limits = options.limits
    this.watchdogMs = options.watchdogMs ?? defaultWatchdogMs(this.limits)
    const schedule = costSchedule(options.costSchedule)
    if (!schedule) throw new HostFaultError(`cost schedule ${options.costSchedule} is not known to this LibVMS`)
    this.schedule = schedule
  }

  /**
   * A fresh engine instance with the prelude (and the System API sources) loaded. Its setup runs in
   * slices (slices.ts): a runtime, a context, the prelude, the System API, each a step; the bytes they
   * leave in the engine's memory are the same whenever the steps run.
   */
  static async create(options: SandboxOptions): Promise<Sandbox> {
    const engine = await createEngineInstance(options.limits.memoryBytes)
    const sandbox = new Sandbox(engine.module, engine.memory, options)
    await runInSlices(sandbox.setUpSteps(options))
    return sandbox
  }

  private *setUpSteps(options: SandboxOptions): Steps<void> {
    const runtime = this.module.newRuntime()
    this.runtime = runtime
    runtime.setMaxStackSize(this.limits.stackBytes)
    runtime.setInterruptHandler(() => this.onInterrupt())
    yield
    const ctx = runtime.newContext()
    this.ctx = ctx
    yield
    if (options.console) this.consoleSink = options.console
    const hostRequest = ctx.newFunction('hostRequest', (opHandle, argsHandle) => {
      const deferred = ctx.newPromise()
      const request = { op: ctx.getString(opHandle), argsJson: ctx.getString(argsHandle), deferred }
      // Charged when made, before the host holds it: over budget, it is never served.
      if (this.chargeWork('request', request.argsJson.length)) this.requests.push(request)
      return deferred.handle
    })
    const hostConsole = ctx.newFunction('hostConsole', (levelHandle, messageHandle) => {
      this.consoleSink(ctx.getString(levelHandle), ctx.getString(messageHandle))
    })
    const prelude = options.upgradeHook ? UPGRADE_PRELUDE_SOURCE : PRELUDE_SOURCE
    const preludeFn = this.unwrap(ctx.evalCode(prelude, 'libvms-prelude.js'), 'prelude')
    yield
    this.driver = this.unwrap(ctx.callFunction(preludeFn, ctx.undefined, hostRequest, hostConsole), 'prelude')
    for (const handle of [preludeFn, hostRequest, hostConsole]) handle.dispose()
    for (const name of ['configure', 'load', 'exportNames', 'beginCall', 'isSettled', 'fireNextTimer', 'endTurn', 'resetRequests']) {
      this.fns[name] = ctx.getProp(this.driver, name)
    }
    if (options.upgradeHook) this.fns.beginUpgrade = ctx.getProp(this.driver, 'beginUpgrade')
    const parsedLimits = this.unwrap(ctx.evalCode(`(${JSON.stringify(this.limits)})`), 'limits')
    const maxInFlight = ctx.newNumber(this.schedule.maxInFlight)
    this.unwrap(ctx.callFunction(this.fns.configure, this.driver, parsedLimits, maxInFlight), 'configure').dispose()
    for (const handle of [parsedLimits, maxInFlight]) handle.dispose()
    for (const source of options.systemSources ?? []) {
      yield
      const systemFn = this.unwrap(ctx.evalCode(source, 'libvms-system.js'), 'system API')
      const system = ctx.getProp(this.driver, 'System')
      const request = ctx.getProp(this.driver, 'request')
      this.unwrap(ctx.callFunction(systemFn, ctx.undefined, system, request), 'system API').dispose()
      for (const handle of [systemFn, system, request]) handle.dispose()
    }
  }

  get exports(): ExportInfo[] {
    return this.exportList
  }

  /** Where the script's console lines go from now on (a sandbox made ahead gets its VM's here). */
  setConsole(sink: ConsoleSink | undefined): void {
    this.consoleSink = sink ?? (() => {})
  }

  /**
   * The sandbox's state between turns (engine-state.ts): what `adoptState` needs to build this
   * sandbox again. Throws HostFaultError on a broken or disposed sandbox (its state is not the log's).
   * Its memory is read in slices (slices.ts): no turn may start meanwhile.
   */
  async captureState(): Promise<EngineState> {
    this.assertUsable()
    const { pages, bytes } = await this.holdingMemory(captureSteps(this.memory))
    return { memoryBytes: this.memory.buffer.byteLength, pages, bytes, exports: this.exportList, requestsLeft: this.requestsLeft }
  }

  /**
   * Puts a fresh sandbox (no turn run yet) in a captured state. Built as the captured one was, its
   * handles point at the same objects (engine-state.ts), so with its memory it *is* that sandbox.
   */
  async adoptState(state: EngineState): Promise<void> {
    this.assertUsable()
    if (this.turnsRun > 0) throw new HostFaultError('only a fresh sandbox can take a captured state')
    if (state.memoryBytes !== this.memory.buffer.byteLength) {
      throw new HostFaultError(
        `the captured state is of a ${state.memoryBytes}-byte memory, this sandbox has ${this.memory.buffer.byteLength}`,
      )
    }
    // Counted as run from here: a second adoptState meanwhile is refused, as after.
    this.turnsRun = 1
    try {
      await this.holdingMemory(writeMemorySteps(this.memory, state))
    } catch (err) {
      throw this.breakWith(new HostFaultError(`the captured state does not fit this sandbox: ${(err as Error).message}`))
    }
    this.exportList = state.exports
    this.requestsLeft = state.requestsLeft
  }

  /**
   * Runs steps over the engine's memory in slices. Meanwhile no turn starts, and a dispose does not
   * hand the memory to the next instance; the steps stop at the first pause after a dispose.
   */
  private async holdingMemory<T>(steps: Steps<T>): Promise<T> {
    this.holding = true
    try {
      return await runInSlices(steps, () => {
        if (this.disposed) throw new HostFaultError('the sandbox was disposed while its memory was read or written')
      })
    } finally {
      this.holding = false
    }
  }

  /** Host requests the turn has made and the host holds, unanswered (at most schedule.maxInFlight). */
  get requestsHeld(): number {
    return this.requests.length + (this.serving ? 1 : 0)
  }

  /**
   * Runs the script's top level as a CommonJS module. Throws ScriptError (with the script's line) if it
   * does not compile, throws, or exceeds its limits.
   */
  async loadScript(code: string, turn: TurnContext): Promise<{ cost: number }> {
    this.assertUsable()
    const ctx = this.ctx
    this.turnsRun++
    // The wrapper keeps the script's own line numbers: its first line is the wrapper's first line.
    const compiled = ctx.evalCode(`(function (exports, module, require, System) {${code}\n})`, 'vm-script.js')
    if (compiled.error) {
      const info = compiled.error.consume((handle) => this.errorDetails(handle))
      // QuickJS parses the wrapped script: an error it finds at the wrapper's own closing `})` names a
      // token and a line the user never wrote. The same text parsed alone says where it really is.
      const own = info.name === 'SyntaxError' ? syntaxErrorOf(code) : null
      throw scriptError(own ?? info)
    }
    const scriptFn = compiled.value
    const outcome = await this.runTurn(
      async () => {
        const timestamp = ctx.newNumber(turn.timestamp)
        const seed = ctx.newString(turn.seed)
        try {
          return ctx.callFunction(this.fns.load, this.driver, scriptFn, timestamp, seed)
        } finally {
          timestamp.dispose()
          seed.dispose()
        }
      },
      async () => {
        throw new Error('the script asked the host for something while loading: System APIs are available only in calls and init')
      },
    )
    scriptFn.dispose()
    if (!outcome.ok) throw scriptError(outcome.error)
    const listed = this.driverCall('exportNames')
    if ('failure' in listed) throw scriptError(listed.failure)
    const names = JSON.parse(String(listed.value)) as [string, boolean, (string | null)?][]
    // A value export nested too deep to decode safely is listed like one that cannot be encoded.
    this.exportList = names.map(([name, callable, value]) =>
      callable ? { name, callable } : { name, callable, value: value == null || jsonDeeperThan(value) ? null : value },
    )
    return { cost: outcome.cost }
  }

  /**
   * Runs one call of an exported function with already-encoded arguments (tagged JSON of an array).
   * Resolves with the outcome; throws HostFaultError only when the host, not the call, failed.
   */
  runCall(method: string, argsJson: string, turn: TurnContext, onRequest: HostRequestHandler): Promise<CallOutcome> {
    return this.runEntry('beginCall', method, argsJson, turn, onRequest)
  }

  /**
   * Runs the loaded code's `exports.upgrade(previous)` as a turn (only in a sandbox made with
   * `upgradeHook`): `previous` holds the old code's exports as `previousJson` lists them (ExportInfo
   * as [name, callable, value]); calling one of its functions is an `upgrade.previous` host request.
   */
  runUpgradeHook(previousJson: string, turn: TurnContext, onRequest: HostRequestHandler): Promise<CallOutcome> {
    if (!this.fns.beginUpgrade) return Promise.reject(new HostFaultError('this sandbox has no upgrade hook: make it with upgradeHook'))
    return this.runEntry('beginUpgrade', previousJson, '[]', turn, onRequest)
  }

  /** A turn begun by driver function `entry` (beginCall, beginUpgrade) with its first argument and the call's. */
  private async runEntry(
    entry: 'beginCall' | 'beginUpgrade',
    first: string,
    argsJson: string,
    turn: TurnContext,
    onRequest: HostRequestHandler,
  ): Promise<CallOutcome> {
    this.assertUsable()
    const ctx = this.ctx
    return this.runTurn(async () => {
      const handles = [
        ctx.newString(first),
        ctx.newString(argsJson),
        turn.callerId === null ? ctx.null : ctx.newString(turn.callerId),
        ctx.newNumber(turn.timestamp),
        ctx.newString(turn.seed),
      ]
      try {
        return ctx.callFunction(this.fns[entry], this.driver, ...handles)
      } finally {
        for (const h of handles) if (h !== ctx.null) h.dispose()
      }
    }, onRequest)
  }

  /**
   * Releases the sandbox. Its engine instance is dropped whole rather than freed object by object:
   * nothing outlives it, and a runtime freed with live objects aborts in QuickJS. Its memory goes to
   * the next instance (cleared first), unless a turn, or a capture, is still under way on it.
   */
  dispose(): void {
    if (!this.disposed && !this.inTurn && !this.holding) recycleMemory(this.memory)
    this.disposed = true
    this.requests = []
  }

  // ---- the turn's event loop ----

  private async runTurn(
    start: () => Promise<ReturnType<QuickJSContext['callFunction']>>,
    onRequest: HostRequestHandler,
  ): Promise<CallOutcome> {
    this.turnsRun++
    this.inTurn = true
    this.ticks = 0
    this.hostWork = 0
    this.budget = this.limits.computeTicks
    this.interrupted = null
    this.requests = []
    this.deadline = performance.now() + this.watchdogMs
    try {
      if (this.requestsLeft) {
        // The last turn was aborted with requests queued in the driver: it starts this one empty.
        const reset = this.driverCall('resetRequests')
        if ('failure' in reset) return this.abortTurn(reset.failure)
        this.requestsLeft = false
      }
      let heldSince = performance.now()
      const started = await start()
      if (started.error) return this.abortTurn(this.failureOf(started.error))
      // The driver says whether the call settled at once; after anything else runs, ask again.
      let settled: boolean | null = started.value.consume((handle) => this.ctx.dump(handle)) === true
      for (;;) {
        // What ran last (the call, a request, a timer's charge, shareLoop) may have interrupted the turn.
        if (this.interrupted) return this.abortTurn(this.budgetFailure())
        if (this.runtime.hasPendingJob()) {
          const jobFailure = this.drainJobs()
          if (jobFailure) return this.abortTurn(jobFailure)
          settled = null
        }
        const request = this.requests.shift()
        if (request) {
          // Schedule 0 charges nothing for host work, so its watchdog times each slice between requests
          // (as it did when those logs were written); from schedule 1 on it times the whole turn.
          if (this.schedule.version === 0) this.deadline = performance.now() + this.watchdogMs
          await this.serveRequest(request, onRequest)
          // A flood of requests answered from caches never lets the event loop turn by itself.
          heldSince = await this.shareLoop(heldSince)
          settled = null
          continue
        }
        if (settled === null) {
          const asked = this.driverCall('isSettled')
          if ('failure' in asked) return this.abortTurn(asked.failure)
          settled = asked.value === true
        }
        if (settled) break
        const fired = this.driverCall('fireNextTimer')
        if ('failure' in fired) return this.abortTurn(fired.failure)
        if (fired.value !== true) break
        // Driving a timer is host work too: charged, and the event loop gets its turns.
        this.chargeWork('timer')
        heldSince = await this.shareLoop(heldSince)
        settled = null
      }
      const ended = this.driverCall('endTurn', this.limits.maxResultBytes)
      if ('failure' in ended) return this.abortTurn(ended.failure)
      const endedJson = String(ended.value)
      // The outcome wraps the result in one object: the result itself may nest MAX_VALUE_DEPTH levels.
      if (jsonDeeperThan(endedJson, MAX_VALUE_DEPTH + 1)) return { ok: false, error: RESULT_TOO_DEEP, cost: this.cost }
      const outcome = JSON.parse(endedJson) as { ok: boolean; value?: TaggedValue; error?: { name: string; message: string } }
      return outcome.ok
        ? { ok: true, value: outcome.value, cost: this.cost }
        : { ok: false, error: boundedError(normalizeError(outcome.error ?? { name: 'Error', message: '' })), cost: this.cost }
    } catch (err) {
      if (err instanceof HostFaultError) throw err
      throw this.breakWith(err)
    } finally {
      this.deadline = Number.POSITIVE_INFINITY
      this.inTurn = false
    }
  }

  /** Runs pending jobs until none is left; the failure that aborts the turn, if any. */
  private drainJobs(): TurnFailure | null {
    while (this.runtime.hasPendingJob()) {
      const result = this.runtime.executePendingJobs()
      if (result.error) {
        // Promise jobs turn exceptions into rejections; what escapes a job is an abort or memory exhaustion.
        const failure = this.failureOf(result.error)
        if (this.interrupted || failure.name === 'MemoryLimitExceeded') return failure
      }
      // An async function interrupted mid-job may report the abort as its own rejection: the turn is over all the same.
      if (this.interrupted) return this.budgetFailure()
    }
    return null
  }

  private async serveRequest(request: PendingRequest, onRequest: HostRequestHandler): Promise<void> {
    let reply: string
    const meter = new HostMeter(this.schedule, this.allowance)
    this.serving = true
    try {
      const args = decodeValue(request.argsJson, `the arguments of System.${request.op}`) as unknown[]
      const value = await onRequest(request.op, args, meter)
      reply = encodeValue({ v: value }, `the reply to System.${request.op}`) ?? '{}'
    } catch (err) {
      const e = err as Error
      if (e instanceof HostFaultError) throw e
      if (e instanceof HostWorkExceeded || meter.exceeded) {
        // Over budget: the request is never answered and the turn ends with ComputeLimitExceeded.
        this.interrupted = 'budget'
        return
      }
      reply = JSON.stringify({ e: { name: e?.name ?? 'Error', message: e?.message ?? String(err) } })
    } finally {
      this.serving = false
      this.hostWork += meter.charged
    }
    if (!this.disposed) this.ctx.newString(reply).consume((handle) => request.deferred.resolve(handle))
  }

  /**
   * Ends an aborted turn with `failure`. Jobs the turn left queued are purged with the interrupt held
   * on, so each is cut short at its next tick and none runs in a later turn. The next turn resets the
   * driver's per-turn state, so nothing needs to be allocated in the VM here (its memory may be full).
   */
  private abortTurn(failure: TurnFailure): CallOutcome {
    const cost = this.cost
    // The driver may still count requests in flight or waiting; schedule 0 has no such count.
    if (this.schedule.maxInFlight > 0) this.requestsLeft = true
    this.interrupted = 'purge'
    let purged = 0
    while (this.runtime.hasPendingJob()) {
      const result = this.runtime.executePendingJobs(1)
      if (result.error) result.error.dispose()
      if (++purged > MAX_PURGE_JOBS) {
        throw this.breakWith(new HostFaultError('an aborted call left more queued jobs than the sandbox can purge'))
      }
    }
    this.requests = []
    this.interrupted = null
    this.budget = Number.POSITIVE_INFINITY
    return { ok: false, error: failure, cost }
  }

  /**
   * What an exception that escaped the driver means. The watchdog is a host fault; the compute budget,
   * memory exhaustion and anything else raised inside the VM (a script that broke the globals the
   * driver uses) are deterministic and become the call's logged error.
   */
  private failureOf(errorHandle: QuickJSHandle): TurnFailure {
    let dumped: unknown
    try {
      dumped = this.ctx.dump(errorHandle)
    } catch {
      dumped = null // describing the error needs VM memory too: there is none left
    } finally {
      errorHandle.dispose()
    }
    if (this.interrupted) return this.budgetFailure()
    if (dumped === null || typeof dumped !== 'object') return MEMORY_EXHAUSTED
    const raw = dumped as { name?: unknown; message?: unknown }
    return normalizeError({ name: 'InternalError', message: `the VM runtime failed: ${String(raw.name)}: ${String(raw.message)}` }, raw)
  }

  private budgetFailure(): TurnFailure {
    if (this.interrupted === 'watchdog') {
      throw this.breakWith(new HostFaultError(`the call ran for more than ${this.watchdogMs} ms (watchdog); it was not logged`))
    }
    return {
      name: 'ComputeLimitExceeded',
      message: `the call used more than its compute budget of ${this.limits.computeTicks} ticks (limits.computeTicks)`,
    }
  }

  /** Calls a driver function (which may run script code); its dumped value, or the turn's failure. */
  private driverCall(name: string, arg?: number): { value: unknown } | { failure: TurnFailure } {
    const args = arg === undefined ? [] : [this.ctx.newNumber(arg)]
    const r = this.ctx.callFunction(this.fns[name], this.driver, args)
    for (const handle of args) handle.dispose()
    if (r.error) return { failure: this.failureOf(r.error) }
    const value = r.value.consume((handle) => this.ctx.dump(handle))
    if (this.interrupted) return { failure: this.budgetFailure() }
    return { value }
  }

  // ---- small helpers ----

  /** The turn's cost so far: its compute ticks and its host work, rounded up to whole ticks. */
  private get cost(): number {
    return this.ticks + Math.ceil(this.hostWork / MILLITICKS)
  }

  /** Milliticks of the budget the turn has left. */
  private get allowance(): number {
    return this.budget * MILLITICKS - (this.ticks * MILLITICKS + this.hostWork)
  }

  /**
   * Gives the event loop a turn if the turn has held it for YIELD_AFTER_MS since `heldSince`, and
   * checks the watchdog (not on an interrupted turn: it is over). Returns when the turn took the loop back.
   */
  private async shareLoop(heldSince: number): Promise<number> {
    const now = performance.now()
    if (this.interrupted || now - heldSince <= YIELD_AFTER_MS) return heldSince
    if (now > this.deadline) {
      this.interrupted = 'watchdog'
      return now
    }
    await new Promise<void>((resolve) => setImmediate(resolve))
    return performance.now()
  }

  /** Charges host work the sandbox does itself; false (and the turn over budget) if that passes the budget. */
  private chargeWork(kind: 'request' | 'timer', argsChars = 0): boolean {
    const meter = new HostMeter(this.schedule, this.allowance)
    try {
      meter.charge(kind)
      meter.charge('argsKiB', argsChars)
      return true
    } catch {
      this.interrupted = 'budget'
      return false
    } finally {
      this.hostWork += meter.charged
    }
  }

  private onInterrupt(): boolean {
    this.ticks++
    if (this.interrupted) return true
    if (this.allowance < 0) this.interrupted = 'budget'
    else if (performance.now() > this.deadline) this.interrupted = 'watchdog'
    return this.interrupted !== null
  }

  private assertUsable(): void {
    if (this.disposed) throw new HostFaultError('the sandbox is disposed')
    if (this.brokenBy) throw new HostFaultError('the sandbox is broken and must be rebuilt from the log', { cause: this.brokenBy })
    if (this.holding) throw new HostFaultError('the sandbox is busy: its state is being captured or restored')
  }

  private breakWith(err: unknown): HostFaultError {
    const fault =
      err instanceof HostFaultError ? err : new HostFaultError(`the VM engine failed: ${(err as Error)?.message ?? err}`, { cause: err })
    this.brokenBy = fault
    return fault
  }

  private unwrap(result: ReturnType<QuickJSContext['evalCode']>, what: string): QuickJSHandle {
    if (result.error) {
      const info = result.error.consume((handle) => this.ctx.dump(handle))
      throw new HostFaultError(`the sandbox failed to set up its ${what}: ${JSON.stringify(info)}`)
    }
    return result.value
  }

  private errorDetails(handle: QuickJSHandle): ScriptFailure {
    const d = this.ctx.dump(handle) as { name?: string; message?: string; lineNumber?: number; stack?: string } | string
    if (typeof d !== 'object' || d === null) return { name: 'Error', message: String(d) }
    const fromStack = typeof d.stack === 'string' ? /vm-script\.js:(\d+)/.exec(d.stack) : null
    const line = d.lineNumber === undefined && fromStack ? Number(fromStack[1]) : d.lineNumber
    return { name: String(d.name ?? 'Error'), message: String(d.message ?? ''), line }
  }
}

const MEMORY_EXHAUSTED: TurnFailure = { name: 'MemoryLimitExceeded', message: 'the VM ran out of memory (limits.memoryBytes)' }
const RESULT_TOO_DEEP: TurnFailure = {
  name: 'EncodingError',
  message: `the result is nested deeper than ${MAX_VALUE_DEPTH} levels, the most a value may have; flatten it`,
}
const STACK_EXHAUSTED: TurnFailure = {
  name: 'StackOverflow',
  message: 'the VM ran out of stack (limits.stackBytes); is there unbounded recursion?',
}

/** What a load that failed throws. */
function scriptError({ name, message, line }: ScriptFailure): ScriptError {
  return new ScriptError(name, `${name}: ${message}`, line)
}

/** The longest error name and message a call's outcome keeps (the rest is cut, the same way on every host). */
export const MAX_ERROR_NAME_CHARS = 256
export const MAX_ERROR_MESSAGE_CHARS = 16 * 1024

/** An error cut to the lengths a log entry keeps: a script's error message cannot outgrow its entry. */
function boundedError(error: TurnFailure): TurnFailure {
  const cut = (text: string, max: number) =>
    text.length > max ? `${text.slice(0, max)}… (${text.length - max} more characters cut)` : text
  // Other fields (a load error's line) are kept as they are.
  return { ...error, name: cut(error.name, MAX_ERROR_NAME_CHARS), message: cut(error.message, MAX_ERROR_MESSAGE_CHARS) }
}

/**
 * Engine-internal errors get the sandbox's stable names; other errors pass through unchanged.
 * `raw` is the engine's own error when `error` is a wrapped description of it.
 */
function normalizeError(error: TurnFailure, raw: { name?: unknown; message?: unknown } = error): TurnFailure {
  if (raw.name === 'InternalError') {
    if (raw.message === 'out of memory') return MEMORY_EXHAUSTED
    if (raw.message === 'stack overflow') return STACK_EXHAUSTED
  }
  return error
}
