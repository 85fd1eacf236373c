/**
 * Replay: rebuild a VM from a call log by re-executing every logged call, with the logged caller,
 * arguments, timestamp, seed and oracle values, into a fresh archive. The replay's own log then holds
 * what an honest host would have logged; Verifier compares the two.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CallAuthenticator } from '../auth/call-auth.js'
import { withSignatureChecks } from '../auth/signature-checks.js'
import { DirectoryError, DivergenceError, EngineMismatchError, LimitCeilingError, LogFormatError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { parseKeyUrl, toHex } from '../ledger/keys.js'
import type { CallEntry, InitEntry, LogEntry } from '../ledger/log-entry.js'
import { VMStorage } from '../ledger/vm-storage.js'
import { costSchedule } from '../sandbox/host-work.js'
import { limitAboveCeiling, resolveLimits, type VMLimits } from '../sandbox/limits.js'
import type { ConsoleSink } from '../sandbox/sandbox.js'
import { CallAdmission, FACTORY_EXPORTS, missingExports } from './call-admission.js'
import { buildCallEntry, buildInitEntry, CallRunner, callInputOf, checkOracleUsed, ENGINE_INFO } from './call-runner.js'
import { VM } from './vm.js'

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
}

/** Calls stored per atomic write while replaying. */
const REPLAY_GROUP_CALLS = 512

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

function checkAssertions(callLog: CallLog, init: InitEntry, assertions: ReplayAssertions): void {
  if (assertions.filesArchiveUrl !== undefined && toHex(parseKeyUrl(assertions.filesArchiveUrl)) !== init.filesArchiveKey) {
    throw new DivergenceError({
      message: `the log's init entry names files archive ${init.filesArchiveKey}, not the expected ${assertions.filesArchiveUrl}`,
      seq: 0,
      field: 'filesArchiveKey',
      expected: assertions.filesArchiveUrl,
      actual: `hyper://${init.filesArchiveKey}`,
    })
  }
  if (assertions.callLogUrl !== undefined && toHex(parseKeyUrl(assertions.callLogUrl)) !== callLog.key) {
    throw new DivergenceError({
      message: `this is call log ${callLog.url}, not the expected ${assertions.callLogUrl}`,
      field: 'callLogUrl',
      expected: assertions.callLogUrl,
      actual: callLog.url,
    })
  }
}

export async function replayCallLog(callLog: CallLog, assertions: ReplayAssertions = {}, options: ReplayOptions = {}): Promise<VM> {
  await callLog.ready()
  const end = Math.min(options.end ?? callLog.length, callLog.length)
  if (end === 0) throw new LogFormatError('the call log is empty: it has no init entry to replay')
  const init = (await callLog.get(0)) as InitEntry
  checkAssertions(callLog, init, assertions)
  checkEngine(init, !!options.allowEngineMismatch)
  const schedule = costSchedule(init.costSchedule)
  if (!schedule) {
    throw new LogFormatError(`the log's cost schedule ${init.costSchedule} is not known to this LibVMS; replay it with a newer one`, 0)
  }
  let limits: InitEntry['limits']
  try {
    limits = resolveLimits(init.limits)
  } catch (err) {
    throw new LogFormatError(`the init entry's limits are invalid: ${(err as Error).message}`, 0)
  }
  const above = limitAboveCeiling(limits, options.maxLimits)
  if (above) throw new LimitCeilingError(above.limit, above.logged, above.ceiling, `{maxLimits: {${above.limit}}}`)

  const ownedDir = options.dir ? null : await mkdtemp(join(tmpdir(), 'libvms-replay-'))
  const dir = options.dir ?? (ownedDir as string)
  const storage = await VMStorage.open(dir, 'replay')
  if (!storage.fresh) {
    await storage.close()
    throw new DirectoryError('ERR_REPLAY_DIR_USED', `${dir} already holds a replay; give the replay a new or empty dir`)
  }
  const runner = new CallRunner({
    code: init.code,
    limits,
    storage,
    identity: { key: init.filesArchiveKey, title: init.title },
    console: options.console,
    watchdogMs: options.watchdogMs,
    thread: options.thread,
    // A factory's System.vms answers come from the log: a replay never provisions anything.
    factory: !!init.factory,
    costSchedule: schedule.version,
  })
  try {
    let loadCost: number
    try {
      loadCost = await runner.load(init.timestamp, init.seed)
    } catch (err) {
      throw new DivergenceError({
        message: `the logged script does not load: ${(err as Error).message}`,
        seq: 0,
        method: 'init',
        field: 'code',
      })
    }
    const missing = init.factory ? missingExports(runner.exports, FACTORY_EXPORTS) : []
    if (missing.length > 0) {
      throw new DivergenceError({
        message: `the log's init entry says it is a VM factory, but its script does not export ${missing.join(' and ')}: no factory deploys such a script`,
        seq: 0,
        method: 'init',
        field: 'factory',
      })
    }
    const outcome = await runner.runInit(init.timestamp, init.seed, 'apply')
    if (!outcome.ok) {
      throw new DivergenceError({
        message: `the logged init fails on replay: ${outcome.error.name}: ${outcome.error.message}`,
        seq: 0,
        method: 'init',
        field: 'result',
        expected: init.result,
        actual: outcome.error,
      })
    }
    const replayedInit = buildInitEntry({
      costSchedule: schedule.version,
      code: init.code,
      title: init.title,
      filesArchiveKey: init.filesArchiveKey,
      limits,
      auth: init.auth,
      timestamp: init.timestamp,
      seed: init.seed,
      exports: runner.exports,
      outcome,
      loadCost,
      factory: !!init.factory,
      files: await runner.currentFiles(),
    })
    // The replay runs the logged engine's record, not its own, so equal engines compare equal; only
    // the fields an engine record has are copied, so a record with added fields is a divergence.
    replayedInit.engine = engineRecordOf(init.engine)
    runner.stage(replayedInit)
    await runner.flush()
    await options.onEntry?.(0, init, replayedInit)

    let seq = 0
    let lastTimestamp = init.timestamp
    // Every logged call must be one a live VM would admit: an exported method, arguments within the
    // limits, and the caller check of the log's auth mode (signatures in production).
    const authenticator = new CallAuthenticator(init.auth, callLog.key)
    const admission = new CallAdmission(runner.exports, limits, authenticator, !!init.factory)
    const replayOne = async (logged: CallEntry, signatureValid?: boolean): Promise<void> => {
      seq++
      admission.admitLogged(seq, logged, { signatureValid })
      if (!(logged.timestamp >= lastTimestamp)) {
        throw new DivergenceError({
          message: `call ${seq} (${logged.method}) is dated ${logged.timestamp}, before the entry ahead of it (${lastTimestamp}): a host's clock never goes back in its log`,
          seq,
          method: logged.method,
          caller: logged.caller,
          field: 'timestamp',
          expected: `at least ${lastTimestamp}`,
          actual: logged.timestamp,
        })
      }
      lastTimestamp = logged.timestamp
      const input = callInputOf(logged)
      const result = await runner.runCall(input, 'apply')
      checkOracleUsed(seq, logged, result)
      const replayed = buildCallEntry(input, result, await runner.currentFiles())
      runner.stage(replayed)
      if (runner.stagedCount >= REPLAY_GROUP_CALLS) await runner.flush()
      await options.onEntry?.(seq, logged, replayed)
    }
    const replayTo = async (until: number): Promise<void> => {
      const entries = callLog.entries({ start: seq + 1, end: until })
      if (init.auth === 'production') {
        // A production log's signatures are checked on another thread, a batch ahead of the replay.
        for await (const [logged, signatureValid] of withSignatureChecks(entries)) await replayOne(logged, signatureValid)
      } else {
        for await (const logged of entries) await replayOne(logged as CallEntry)
      }
      await runner.flush()
    }
    await replayTo(end)
    if (options.follow) {
      for (;;) {
        await callLog.waitForLength(seq + 2, { signal: options.signal })
        if (options.signal?.aborted) break
        await replayTo(callLog.length)
      }
    }
    return VM.attached(
      init.code,
      { console: options.console, watchdogMs: options.watchdogMs },
      { storage, runner, init: replayedInit, lastTimestamp, ownedDir, authenticator },
    )
  } catch (err) {
    runner.dispose()
    await runner.close().catch(() => {})
    await storage.close().catch(() => {})
    if (ownedDir) await rm(ownedDir, { recursive: true, force: true })
    throw err
  }
}
