/**
 * The log entries a VM writes, built from what its turns did: the init entry of a deploy and one call
 * entry per call, field by field in a fixed order (entries are compared as JSON text). Also the
 * inputs of a call as they are logged, and the seeds of new calls.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import type { TaggedValue } from '../codec/value-codec.js'
import { DivergenceError } from '../errors.js'
import type { FilesState } from '../ledger/files-archive.js'
import type { CallEntry, EngineInfo, InitEntry } from '../ledger/log-entry.js'
import { LOG_SCHEMA } from '../ledger/log-entry.js'
import { ENGINE_NAME, ENGINE_VARIANT, ENGINE_VERSION } from '../sandbox/engine.js'
import { recordedLimits } from '../sandbox/limits.js'
import type { CallOutcome, ExportInfo } from '../sandbox/sandbox.js'

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

/**
 * A call's outcome, and the oracle values it recorded if it ran live. On replay, `oracleUnused`
 * counts the recorded answers the call never asked for (see {@link checkOracleUsed}).
 */
export type RunOutcome = CallOutcome & { oracle?: Record<string, TaggedValue>; oracleUnused?: number }

/** Seeds for new calls, from a pool of one's own (an executor's) refilled 256 at a time: ~0.2 µs a seed, randomBytes ~3. */
export function seedSource(): () => string {
  let [pool, offset] = [Buffer.alloc(0), 0]
  return () => {
    if (offset + 16 > pool.length) [pool, offset] = [randomBytes(16 * 256), 0]
    offset += 16
    return pool.toString('hex', offset - 16, offset)
  }
}

/** The init turn's seed, derived from the logged one so top level and init draw different numbers. */
export function initSeed(seed: string): string {
  return createHash('sha256').update(`${seed}:init`).digest('hex').slice(0, 32)
}

export function buildInitEntry(
  fields: Pick<InitEntry, 'code' | 'title' | 'filesArchiveKey' | 'limits' | 'auth' | 'timestamp' | 'seed' | 'files'> & {
    costSchedule: number
    filesFormat: number
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
    ...(fields.filesFormat > 0 ? { filesFormat: fields.filesFormat } : {}),
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
