/**
 * The call log's entries (schema 4; schema 1 to 3 logs are read as before). Entry 0 is the init
 * entry; every later entry is one call, or (schema 4) an upgrade of the VM's code. Schema 2 adds checkpoints: a call entry may state the VM's
 * state digest after it (`state`, snapshot.ts), which every replay then computes and compares.
 * Schema 3 adds the client's nonce: a call entry holds the random value its client chose for that
 * call (`clientNonce`; in production mode also inside the signed payload), so a receipt of the entry
 * answers that call and no other.
 * Schema 4 adds upgrades: an `upgrade` entry replaces the VM's code (and may change its limits) from
 * its seq on, its state carried over by the new code's `upgrade` hook; an init entry may say the VM
 * takes none (`upgrades: false`).
 * docs/log-format.md describes each field; keep the two in step.
 *
 * Entries read from someone else's log are untrusted input: `parseEntry` checks their shape before
 * anything uses them. The entries a VM writes are built here too, at the end (`buildInitEntry`,
 * `buildCallEntry`), field by field in a fixed order, beside the schema they follow.
 */

import { jsonDeeperThan, MAX_VALUE_DEPTH, type TaggedValue } from '../codec/value-codec.js'
import { LogFormatError } from '../errors.js'
import type { ExportInfo } from '../sandbox/engine-state.js'
import type { VMLimits } from '../sandbox/limits.js'
import type { CallOutcome } from '../sandbox/sandbox.js'

/** The schema new logs are written in. */
export const LOG_SCHEMA = 4
/** The schemas this LibVMS reads: 1 (before checkpoints), 2 (before client nonces), 3 (before upgrades) and 4. */
export const READABLE_SCHEMAS: readonly number[] = [1, 2, 3, 4]
/** The first schema whose call entries hold their client's nonce. */
export const CLIENT_NONCE_SCHEMA = 3
/** The first schema whose logs may hold upgrade entries (and whose scripts' `upgrade` export is a hook, not a method). */
export const UPGRADE_SCHEMA = 4
/** A client nonce: 16 to 32 random bytes, as lowercase hex. */
export const CLIENT_NONCE = /^[0-9a-f]{32,64}$/

export type AuthMode = 'debug' | 'production'

export interface EngineInfo {
  name: string
  variant: string
  version: string
  hyperdrive: string
  hyperbee: string
  libvms: string
}

/**
 * The state of an archive at one version, as recorded in each log entry. The tree hashes of the
 * metadata core (at `version` blocks) and of the blobs core (at `blobsLength` blocks) depend only on
 * the archive's content and history, not on its key, so an honest replay reproduces them exactly.
 */
export interface FilesState {
  version: number
  dbHash: string
  blobsLength: number
  blobsHash: string
}

/** Production mode: what the caller signed, as the exact text, and the signature (hex); auth/signed-call.ts reads it. */
export interface SignedCall {
  payload: string
  signature: string
}

export interface CallErrorInfo {
  name: string
  message: string
}

export interface InitEntry {
  type: 'init'
  schema: number
  engine: EngineInfo
  code: string
  title: string
  /** Hex key of the files archive the VM writes to. */
  filesArchiveKey: string
  /**
   * Schema 2: hex key of the Hyperdrive where the host publishes the VM's snapshots (`/<seq>.snapshot`),
   * for auditors to start audit segments from. Absent in schema 1 logs.
   */
  snapshotsKey?: string
  limits: VMLimits
  /**
   * The version of the cost schedule that charges the VM's host work (src/sandbox/host-work.ts).
   * Absent in logs written before schedules: schedule 0, which charges nothing.
   */
  costSchedule?: number
  /**
   * The files format: how the VM's archive stores folders (src/ledger/drive-format.ts). Absent in logs
   * written before formats: format 0, folders as blob-less `files\0` entries.
   */
  filesFormat?: number
  auth: AuthMode
  timestamp: number
  seed: string
  /** Names exported by the script, in export order. */
  exports: string[]
  /** Present (true) for a VM factory: its script has System.vms. */
  factory?: boolean
  /** Schema 4: present (false) for a VM deployed to take no upgrade: a log of it that holds one is a divergence. */
  upgrades?: false
  /** What `exports.init` returned, if the script has one and it returned something. */
  result?: TaggedValue
  files: FilesState
  cost: number
}

export interface CallEntry {
  type: 'call'
  caller: string | null
  /** Production mode: the payload the caller signed and its signature (see signed-call.ts). */
  signed?: SignedCall
  /**
   * Schema 3: the nonce the client chose for this call (hex), when it sent one; in a signed call, the
   * one its payload holds. A client takes this entry as the answer to its call only if it holds its nonce.
   */
  clientNonce?: string
  method: string
  args: TaggedValue[]
  timestamp: number
  seed: string
  /**
   * Schema 4, once the VM was upgraded: the seq of the upgrade entry whose code ran the call (absent:
   * the init entry's). A receipt of the entry so proves which code answered.
   */
  codeSeq?: number
  /** Nondeterministic values the host supplied during the call, read back from here on replay. */
  oracle?: Record<string, TaggedValue>
  result?: TaggedValue
  error?: CallErrorInfo
  files: FilesState
  cost: number
  /** Schema 2, at a checkpoint: the state format the digest is of (engine-state.ts, stateFormatOf). */
  stateFormat?: string
  /** Schema 2, at a checkpoint: the VM's state digest after this call (snapshot.ts, stateDigest). */
  state?: string
}

/**
 * Schema 4: the VM's code replaced from this entry on. The new code was loaded (its top level run
 * with this entry's timestamp and seed) and its `upgrade` hook, if it exports one, ran once with the
 * old code's exports to hand the state over; `result` is what the hook returned, `files` the archive
 * after it, `cost` the load's and the hook's (the calls it made to the old code included).
 */
export interface UpgradeEntry {
  type: 'upgrade'
  /** The code version it replaces: its code's hash and the seq of the entry that set it (0: the init entry). */
  replaces: { hash: string; seq: number }
  code: string
  /** The limits from this entry on (all of them, as an init entry records them). */
  limits: VMLimits
  timestamp: number
  seed: string
  /** Names exported by the new code, in export order. */
  exports: string[]
  result?: TaggedValue
  files: FilesState
  cost: number
}

export type LogEntry = InitEntry | CallEntry | UpgradeEntry

/** The entries that set the VM's code: the init entry, and each upgrade. */
export type CodeEntry = InitEntry | UpgradeEntry

/**
 * Whether two files states are the same state: the same four fields (whatever else either holds, in
 * whatever order). The one comparison of archive states, wherever they come from: a log entry, a
 * snapshot, an archive.
 */
export function sameFiles(a: FilesState | null | undefined, b: FilesState | null | undefined): boolean {
  if (!a || !b) return false
  return a.version === b.version && a.dbHash === b.dbHash && a.blobsLength === b.blobsLength && a.blobsHash === b.blobsHash
}

const HEX32 = /^[0-9a-f]{32}$/
const HEX64 = /^[0-9a-f]{64}$/
const HEX16 = /^[0-9a-f]{16}$/

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function checkFiles(v: unknown, seq: number): void {
  if (
    !isObject(v) ||
    !isCount(v.version) ||
    !isCount(v.blobsLength) ||
    typeof v.dbHash !== 'string' ||
    !HEX64.test(v.dbHash) ||
    typeof v.blobsHash !== 'string' ||
    !HEX64.test(v.blobsHash)
  ) {
    throw new LogFormatError('files must be {version, dbHash, blobsLength, blobsHash}', seq)
  }
}

function checkTurn(e: Record<string, unknown>, seq: number): void {
  if (!isCount(e.timestamp)) throw new LogFormatError('timestamp must be a non-negative integer', seq)
  if (typeof e.seed !== 'string' || !HEX32.test(e.seed)) throw new LogFormatError('seed must be 32 hex digits', seq)
  if (!isCount(e.cost)) throw new LogFormatError('cost must be a non-negative integer', seq)
  checkFiles(e.files, seq)
}

/** The largest log entry: Hypercore refuses to append a block over 15 MiB, so no honest log holds one. */
export const MAX_ENTRY_BYTES = 15 * 1024 * 1024

/**
 * Nesting an entry may have around its values (a factory's oracle records sit a few levels down);
 * the values themselves are bounded by MAX_VALUE_DEPTH.
 */
const ENTRY_FRAME_DEPTH = 8

/**
 * Decodes one block of a call log: bounded in size and depth before it is parsed, then checked for
 * shape. Every failure is a LogFormatError naming the seq.
 */
export function decodeEntry(block: Uint8Array, seq: number): LogEntry {
  if (block.byteLength > MAX_ENTRY_BYTES) {
    throw new LogFormatError(`the entry is ${block.byteLength} bytes, over the ${MAX_ENTRY_BYTES} a log entry may have`, seq)
  }
  const text = Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString('utf8')
  if (jsonDeeperThan(text, MAX_VALUE_DEPTH + ENTRY_FRAME_DEPTH)) {
    throw new LogFormatError(
      `the entry is nested deeper than ${MAX_VALUE_DEPTH + ENTRY_FRAME_DEPTH} levels; no VM logs values that deep`,
      seq,
    )
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new LogFormatError(`the entry is not JSON: ${(err as Error).message}`, seq)
  }
  return parseEntry(raw, seq)
}

/** Checks the shape of an entry read from a log; throws LogFormatError naming the seq and the field. */
export function parseEntry(raw: unknown, seq: number): LogEntry {
  if (!isObject(raw))
    throw new LogFormatError(`the entry is ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}, not a JSON object`, seq)
  if (seq === 0) {
    if (raw.type !== 'init') throw new LogFormatError('entry 0 must be the init entry', seq)
    if (!READABLE_SCHEMAS.includes(raw.schema as number)) {
      throw new LogFormatError(
        `log schema ${String(raw.schema)} is not supported (this LibVMS reads schemas ${READABLE_SCHEMAS.join(' and ')}); read it with a newer LibVMS`,
        seq,
      )
    }
    if (typeof raw.code !== 'string') throw new LogFormatError('code must be a string', seq)
    if (typeof raw.title !== 'string') throw new LogFormatError('title must be a string', seq)
    if (typeof raw.filesArchiveKey !== 'string' || !HEX64.test(raw.filesArchiveKey)) {
      throw new LogFormatError('filesArchiveKey must be 64 hex digits', seq)
    }
    if (raw.snapshotsKey !== undefined && (typeof raw.snapshotsKey !== 'string' || !HEX64.test(raw.snapshotsKey))) {
      throw new LogFormatError('snapshotsKey must be 64 hex digits when present', seq)
    }
    if (!isObject(raw.engine)) throw new LogFormatError('engine must be an object', seq)
    if (!isObject(raw.limits)) throw new LogFormatError('limits must be an object', seq)
    if (raw.costSchedule !== undefined && !(isCount(raw.costSchedule) && raw.costSchedule > 0)) {
      throw new LogFormatError('costSchedule must be a positive integer when present', seq)
    }
    if (raw.filesFormat !== undefined && !(isCount(raw.filesFormat) && raw.filesFormat > 0)) {
      throw new LogFormatError('filesFormat must be a positive integer when present', seq)
    }
    if (raw.auth !== 'debug' && raw.auth !== 'production') throw new LogFormatError("auth must be 'debug' or 'production'", seq)
    if (!Array.isArray(raw.exports) || !raw.exports.every((n) => typeof n === 'string')) {
      throw new LogFormatError('exports must be a list of names', seq)
    }
    if (raw.factory !== undefined && raw.factory !== true) throw new LogFormatError('factory must be true when present', seq)
    if (raw.upgrades !== undefined && (raw.upgrades !== false || (raw.schema as number) < UPGRADE_SCHEMA)) {
      throw new LogFormatError(`upgrades must be false when present, and only in a log of schema ${UPGRADE_SCHEMA} or later`, seq)
    }
    checkTurn(raw, seq)
    return raw as unknown as InitEntry
  }
  if (raw.type === 'upgrade') {
    const replaces = raw.replaces
    if (
      !isObject(replaces) ||
      typeof replaces.hash !== 'string' ||
      !HEX64.test(replaces.hash) ||
      !isCount(replaces.seq) ||
      replaces.seq >= seq
    ) {
      throw new LogFormatError('replaces must be {hash, seq}: the replaced code version, set by an entry before this one', seq)
    }
    if (typeof raw.code !== 'string') throw new LogFormatError('code must be a string', seq)
    if (!isObject(raw.limits)) throw new LogFormatError('limits must be an object', seq)
    if (!Array.isArray(raw.exports) || !raw.exports.every((n) => typeof n === 'string')) {
      throw new LogFormatError('exports must be a list of names', seq)
    }
    checkTurn(raw, seq)
    return raw as unknown as UpgradeEntry
  }
  if (raw.type !== 'call') throw new LogFormatError(`expected a call or upgrade entry, found type ${JSON.stringify(raw.type)}`, seq)
  if (raw.caller !== null && typeof raw.caller !== 'string') throw new LogFormatError('caller must be a string or null', seq)
  if (typeof raw.method !== 'string') throw new LogFormatError('method must be a string', seq)
  if (!Array.isArray(raw.args)) throw new LogFormatError('args must be an array', seq)
  if (raw.error !== undefined && (!isObject(raw.error) || typeof raw.error.name !== 'string' || typeof raw.error.message !== 'string')) {
    throw new LogFormatError('error must be {name, message}', seq)
  }
  if (
    raw.signed !== undefined &&
    (!isObject(raw.signed) || typeof raw.signed.payload !== 'string' || typeof raw.signed.signature !== 'string')
  ) {
    throw new LogFormatError('signed must be {payload, signature}', seq)
  }
  if (raw.clientNonce !== undefined && (typeof raw.clientNonce !== 'string' || !CLIENT_NONCE.test(raw.clientNonce))) {
    throw new LogFormatError('clientNonce must be 32 to 64 lowercase hex digits when present', seq)
  }
  if (raw.codeSeq !== undefined && !(isCount(raw.codeSeq) && raw.codeSeq > 0 && raw.codeSeq < seq)) {
    throw new LogFormatError('codeSeq must be the seq of an entry before this one when present', seq)
  }
  if (raw.oracle !== undefined && !isObject(raw.oracle)) throw new LogFormatError('oracle must be an object', seq)
  if (raw.state !== undefined && (typeof raw.state !== 'string' || !HEX64.test(raw.state))) {
    throw new LogFormatError('state must be 64 hex digits (a state digest) when present', seq)
  }
  if (
    (raw.stateFormat === undefined) !== (raw.state === undefined) ||
    (raw.stateFormat !== undefined && (typeof raw.stateFormat !== 'string' || !HEX16.test(raw.stateFormat)))
  ) {
    throw new LogFormatError('a checkpoint has both stateFormat (16 hex digits) and state', seq)
  }
  checkTurn(raw, seq)
  return raw as unknown as CallEntry
}

// ---- Building entries: what a VM writes, live and on replay ----

/** A call's inputs, as they are (or will be) logged, and its arguments' text (what the sandbox decodes). */
export type CallInput = Pick<CallEntry, 'caller' | 'signed' | 'clientNonce' | 'method' | 'args' | 'timestamp' | 'seed' | 'oracle'> & {
  /** JSON.stringify(args): written once, where the arguments arrived (codec/value-codec.ts, EncodedArgs). */
  argsJson: string
}

/**
 * A call's outcome, and the oracle values it recorded if it ran live. On replay, `oracleUnused`
 * counts the recorded answers the call never asked for (vm/admission.ts, checkOracleUsed).
 */
export type RunOutcome = CallOutcome & { oracle?: Record<string, TaggedValue>; oracleUnused?: number }

/**
 * The init entry of a deploy (or of its replay). `engine`: the build that ran it (vm/engine-info.ts);
 * `limits`: as recorded (sandbox/limits.ts, recordedLimits).
 */
export function buildInitEntry(
  fields: Pick<InitEntry, 'engine' | 'code' | 'title' | 'filesArchiveKey' | 'limits' | 'auth' | 'timestamp' | 'seed' | 'files'> & {
    costSchedule: number
    filesFormat: number
    exports: ExportInfo[]
    outcome: CallOutcome & { ok: true }
    loadCost: number
    factory?: boolean
    snapshotsKey?: string
    /** false: the VM takes no upgrade (recorded from schema 4 on). */
    upgrades?: boolean
  },
): InitEntry {
  const entry: InitEntry = {
    type: 'init',
    schema: LOG_SCHEMA,
    engine: fields.engine,
    code: fields.code,
    title: fields.title,
    filesArchiveKey: fields.filesArchiveKey,
    ...(fields.snapshotsKey !== undefined ? { snapshotsKey: fields.snapshotsKey } : {}),
    limits: fields.limits,
    ...(fields.costSchedule > 0 ? { costSchedule: fields.costSchedule } : {}),
    ...(fields.filesFormat > 0 ? { filesFormat: fields.filesFormat } : {}),
    auth: fields.auth,
    timestamp: fields.timestamp,
    seed: fields.seed,
    exports: fields.exports.map((e) => e.name),
    ...(fields.factory ? { factory: true } : {}),
    ...(fields.upgrades === false ? { upgrades: false as const } : {}),
    files: fields.files,
    cost: fields.loadCost + fields.outcome.cost,
  }
  if (fields.outcome.value !== undefined) entry.result = fields.outcome.value
  return entry
}

/** The entry of an upgrade (or of its replay): the new code loaded, its hook's outcome, the archive after it. */
export function buildUpgradeEntry(
  fields: Pick<UpgradeEntry, 'replaces' | 'code' | 'limits' | 'timestamp' | 'seed' | 'files'> & {
    exports: ExportInfo[]
    outcome: CallOutcome & { ok: true }
    loadCost: number
  },
): UpgradeEntry {
  const entry: UpgradeEntry = {
    type: 'upgrade',
    replaces: { hash: fields.replaces.hash, seq: fields.replaces.seq },
    code: fields.code,
    limits: fields.limits,
    timestamp: fields.timestamp,
    seed: fields.seed,
    exports: fields.exports.map((e) => e.name),
    files: fields.files,
    cost: fields.loadCost + fields.outcome.cost,
  }
  if (fields.outcome.value !== undefined) entry.result = fields.outcome.value
  return entry
}

/**
 * The entry of a call that ran: its inputs, its outcome and the archive state after it; `codeSeq`:
 * the seq of the entry whose code ran it (0, the init entry's, is not written).
 */
export function buildCallEntry(input: CallInput, outcome: RunOutcome, files: FilesState, codeSeq = 0): CallEntry {
  const oracle = input.oracle ?? outcome.oracle
  // Fields in a fixed order: entries are compared as JSON text.
  return {
    type: 'call',
    caller: input.caller,
    ...(input.signed ? { signed: input.signed } : {}),
    ...(input.clientNonce !== undefined ? { clientNonce: input.clientNonce } : {}),
    method: input.method,
    args: input.args,
    timestamp: input.timestamp,
    seed: input.seed,
    ...(codeSeq > 0 ? { codeSeq } : {}),
    ...(oracle ? { oracle } : {}),
    ...(outcome.ok && outcome.value !== undefined ? { result: outcome.value } : {}),
    ...(outcome.ok ? {} : { error: outcome.error }),
    files,
    cost: outcome.cost,
  }
}

/** The inputs of a logged call entry, for replay; `argsJson`: JSON.stringify(entry.args), written already. */
export function callInputOf(
  { caller, signed, clientNonce, method, args, timestamp, seed, oracle }: CallEntry,
  argsJson: string,
): CallInput {
  return {
    caller,
    method,
    args,
    argsJson,
    timestamp,
    seed,
    ...(signed && { signed }),
    ...(clientNonce !== undefined && { clientNonce }),
    ...(oracle && { oracle }),
  }
}
