/**
 * Named errors with stable codes — every class and every code LibVMS has, in this one file. Every
 * failure a user can cause is one of these: `name` says what kind of failure it is, `code` is stable
 * across releases (match on it), `message` says what to do. docs/api.md ("Errors") lists them.
 *
 * The lowest layer: this file imports nothing of LibVMS (test/layers.test.ts holds it to that).
 */

/** The errors the files API raises inside a call (and DatArchive reads outside one): name → code. */
export const FILES_ERROR_CODES = {
  NotFound: 'ERR_NOT_FOUND',
  AlreadyExists: 'ERR_ALREADY_EXISTS',
  ParentNotFound: 'ERR_PARENT_NOT_FOUND',
  NotADirectory: 'ERR_NOT_A_DIRECTORY',
  IsADirectory: 'ERR_IS_A_DIRECTORY',
  NotAFile: 'ERR_NOT_A_FILE',
  DirectoryNotEmpty: 'ERR_DIRECTORY_NOT_EMPTY',
  InvalidPath: 'ERR_INVALID_PATH',
  InvalidEncoding: 'ERR_INVALID_ENCODING',
  StorageLimitExceeded: 'ERR_STORAGE_LIMIT',
} as const

/** The errors the sandbox and the host's System API raise inside a call: name → code. */
export const SANDBOX_ERROR_CODES = {
  ComputeLimitExceeded: 'ERR_COMPUTE_LIMIT',
  MemoryLimitExceeded: 'ERR_MEMORY_LIMIT',
  StackOverflow: 'ERR_STACK_OVERFLOW',
  TimerLimitExceeded: 'ERR_TIMER_LIMIT',
  CallNeverSettled: 'ERR_CALL_NEVER_SETTLED',
  EncodingError: 'ERR_ENCODING',
  ResultTooLarge: 'ERR_RESULT_TOO_LARGE',
  MethodNotFound: 'ERR_METHOD_NOT_FOUND',
  FileTooLarge: 'ERR_FILE_TOO_LARGE',
  OracleLimitExceeded: 'ERR_ORACLE_LIMIT',
  OracleMissing: 'ERR_ORACLE_MISSING',
  UnknownSystemCall: 'ERR_UNKNOWN_SYSTEM_CALL',
  CapacityExceeded: 'ERR_CAPACITY',
  VMNotFound: 'ERR_VM_NOT_FOUND',
} as const

/** Stable codes of the errors raised inside a call, by name (a script's own errors are ERR_CALL_FAILED). */
export const CALL_ERROR_CODES: Readonly<Record<string, CallErrorCode>> = { ...SANDBOX_ERROR_CODES, ...FILES_ERROR_CODES }

export type FilesErrorName = keyof typeof FILES_ERROR_CODES
type CallErrorCode =
  | (typeof FILES_ERROR_CODES)[FilesErrorName]
  | (typeof SANDBOX_ERROR_CODES)[keyof typeof SANDBOX_ERROR_CODES]
  | 'ERR_CALL_FAILED'

const AUTH_CODES = ['ERR_AUTH_REQUIRED', 'ERR_AUTH_MODE', 'ERR_BAD_SIGNATURE', 'ERR_BAD_PAYLOAD', 'ERR_WRONG_VM', 'ERR_REPLAYED'] as const
const KEY_FILE_CODES = [
  'ERR_KEY_FILE_EXISTS',
  'ERR_KEY_FILE_MISSING',
  'ERR_KEY_FILE_PERMISSIONS',
  'ERR_KEY_FILE_INVALID',
  'ERR_KEY_FILE_READ',
  'ERR_KEY_FILE_WRITE',
] as const
const DIRECTORY_CODES = [
  'ERR_DIR_NOT_LIBVMS',
  'ERR_DIR_NOT_EMPTY',
  'ERR_DIR_ROLE',
  'ERR_DIR_IN_USE',
  'ERR_DIR_NOT_WRITABLE',
  'ERR_CODE_MISMATCH',
  'ERR_AUTH_MISMATCH',
  'ERR_NO_CALL_LOG',
  'ERR_REPLAY_DIR_USED',
  // The process ran out of file descriptors opening a dir's store (RocksDB's EIO or EMFILE).
  'ERR_TOO_MANY_OPEN_FILES',
] as const
const FETCH_CODES = ['ERR_NO_HOST', 'ERR_HOST_UNREACHABLE', 'ERR_FETCH_TIMEOUT', 'ERR_FETCH_INCOMPLETE', 'ERR_FORKED'] as const
/** What an RPC server answers with at its edge, before a call reaches a VM (rpc-connection.ts). */
const RPC_EDGE_CODES = [
  'ERR_PARSE',
  'ERR_INVALID_REQUEST',
  'ERR_INVALID_PARAMS',
  'ERR_MESSAGE_TOO_LARGE',
  'ERR_QUEUE_FULL',
  'ERR_UNAVAILABLE',
  'ERR_HANDSHAKE_REQUIRED',
  'ERR_HANDSHAKE_DONE',
  'ERR_INTERNAL',
  'ERR_NOT_HOST',
] as const
/** Failures an RPC client sees on its own side. */
const RPC_CLIENT_CODES = [
  'ERR_BAD_RECEIPT',
  'ERR_CONNECT',
  'ERR_TIMEOUT',
  'ERR_TOO_MANY_CONNECTIONS',
  'ERR_CONNECTION_CLOSED',
  'ERR_RPC',
] as const
const OTHER_CODES = [
  'ERR_SCRIPT',
  'ERR_HOST_FAULT',
  'ERR_INVALID_ARGUMENT',
  'ERR_INVALID_STATE',
  'ERR_LOG_FORMAT',
  'ERR_ENGINE_MISMATCH',
  'ERR_LIMIT_CEILING',
  'ERR_DIVERGENCE',
  'ERR_USAGE',
  // An upgrade refused: nothing was appended, the old code keeps serving (vm.upgrade).
  'ERR_UPGRADE_FAILED',
  'ERR_UPGRADES_OFF',
  'ERR_UPGRADE_UNSUPPORTED',
  // An RPC client pinned to one code version got an answer from another.
  'ERR_CODE_CHANGED',
  // A server that cannot listen where it was told: a port in use, an address not of this machine.
  'ERR_LISTEN',
  // An error that crossed from a sandbox thread or a server with a code this version does not know.
  'ERR_UNKNOWN',
] as const

export type AuthErrorCode = (typeof AUTH_CODES)[number]
export type KeyFileErrorCode = (typeof KEY_FILE_CODES)[number]
export type DirectoryErrorCode = (typeof DIRECTORY_CODES)[number]
export type FetchErrorCode = (typeof FETCH_CODES)[number]
export type RPCEdgeErrorCode = (typeof RPC_EDGE_CODES)[number]

/** Every stable code. */
export type ErrorCode =
  | CallErrorCode
  | AuthErrorCode
  | KeyFileErrorCode
  | DirectoryErrorCode
  | FetchErrorCode
  | RPCEdgeErrorCode
  | (typeof RPC_CLIENT_CODES)[number]
  | (typeof OTHER_CODES)[number]

const KNOWN_CODES: ReadonlySet<string> = new Set<string>([
  ...Object.values(SANDBOX_ERROR_CODES),
  ...Object.values(FILES_ERROR_CODES),
  'ERR_CALL_FAILED',
  ...AUTH_CODES,
  ...KEY_FILE_CODES,
  ...DIRECTORY_CODES,
  ...FETCH_CODES,
  ...RPC_EDGE_CODES,
  ...RPC_CLIENT_CODES,
  ...OTHER_CODES,
])

/** Every stable code this version has, for matching at run time (`ERROR_CODES.includes(err.code)`). */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([...KNOWN_CODES] as ErrorCode[])

/** `code` if it is one this version knows (it came from a thread or a server), else ERR_UNKNOWN. */
export function knownCode(code: unknown): ErrorCode {
  return typeof code === 'string' && KNOWN_CODES.has(code) ? (code as ErrorCode) : 'ERR_UNKNOWN'
}

export class LibVMSError extends Error {
  readonly code: ErrorCode

  constructor(name: string, code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = name
    this.code = code
  }
}

/**
 * A call refused because the VM's queue is full (an RPC server's maxQueuedCalls), before it ran:
 * never logged. The queue is shared among callers: this goes to the caller holding the most calls
 * (call-queue.ts). Code ERR_QUEUE_FULL.
 */
export class QueueFullError extends LibVMSError {
  constructor(message: string) {
    super('QueueFull', 'ERR_QUEUE_FULL', message)
  }
}

/** A script that does not compile, throws at its top level, or lacks what it must export. */
export class ScriptError extends LibVMSError {
  readonly scriptErrorName: string
  /** The line the error points at: of the script, or (with `file`) of that source file of a bundled script. */
  readonly line: number | undefined
  /** A bundled script's source file the line is in (e.g. `src/app.ts`); undefined for the script itself. */
  readonly file: string | undefined

  constructor(scriptErrorName: string, message: string, line?: number, file?: string) {
    super('ScriptError', 'ERR_SCRIPT', line === undefined ? message : `${message} (${file ?? 'script'} line ${line})`)
    this.scriptErrorName = scriptErrorName
    this.line = line
    this.file = file
  }
}

/**
 * A call that failed inside the VM. It is logged: replay must reproduce the same name and message.
 * `name` is the script's error name (TypeError, Error, ...) or one of the sandbox's own
 * (ComputeLimitExceeded, MemoryLimitExceeded, ...).
 */
export class CallError extends LibVMSError {
  readonly seq: number | undefined
  // `receipt`, the log's signed receipt of the failed call's entry when one was asked for (RPC with
  // receipts), is declared beside the Receipt type, in ledger/receipts.ts: this file imports nothing above it.

  constructor(name: string, message: string, seq?: number) {
    super(name, CALL_ERROR_CODES[name] ?? 'ERR_CALL_FAILED', message)
    this.seq = seq
  }
}

/**
 * The host failed, not the call: the wall-clock watchdog fired, or the engine broke. Never logged as a
 * call result; the VM rebuilds its sandbox from the log and keeps serving.
 */
export class HostFaultError extends LibVMSError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('HostFaultError', 'ERR_HOST_FAULT', message, options)
  }
}

/** A value that cannot cross the VM boundary (functions, cycles, BigInt, NaN, ...). */
export class EncodingError extends LibVMSError {
  constructor(message: string) {
    super('EncodingError', 'ERR_ENCODING', message)
  }
}

/** Bad arguments given to the library by its user. */
export class InvalidArgumentError extends LibVMSError {
  constructor(message: string) {
    super('InvalidArgumentError', 'ERR_INVALID_ARGUMENT', message)
  }
}

/**
 * A method name that the VM does not export (or that may not be called, such as `init`). `message`:
 * where the caller finds the ones it has, said its way (an RPC server's edge points at the handshake).
 */
export class MethodNotFoundError extends LibVMSError {
  constructor(
    methodName: string,
    message = `The VM has no callable export named ${JSON.stringify(methodName)}; list vm.methods for the ones it has`,
  ) {
    super('MethodNotFound', 'ERR_METHOD_NOT_FOUND', message)
  }
}

/**
 * Production mode refused a call or a connection: it was not signed, its signature does not verify,
 * it was signed for another VM or connection, or it was sent before. Stable codes:
 * ERR_AUTH_REQUIRED, ERR_AUTH_MODE, ERR_BAD_SIGNATURE, ERR_BAD_PAYLOAD, ERR_WRONG_VM, ERR_REPLAYED.
 * A refused call never runs and is never logged.
 */
export class AuthError extends LibVMSError {
  constructor(code: AuthErrorCode, message: string) {
    super('AuthError', code, message)
  }
}

/** A key pair file that cannot be read, written or trusted. */
export class KeyFileError extends LibVMSError {
  constructor(code: KeyFileErrorCode, message: string, options?: { cause?: unknown }) {
    super('KeyFileError', code, message, options)
  }
}

/** deploy() on a dir that holds something other than a LibVMS VM, or a VM of other code. */
export class DirectoryError extends LibVMSError {
  constructor(code: DirectoryErrorCode, message: string) {
    super('DirectoryError', code, message)
  }
}

/** An operation on a VM, log or archive that is closed or not yet deployed. */
export class StateError extends LibVMSError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('StateError', 'ERR_INVALID_STATE', message, options)
  }
}

/** A call log that is malformed: unknown schema, missing init entry, undecodable entry. */
export class LogFormatError extends LibVMSError {
  readonly seq: number | undefined

  constructor(message: string, seq?: number) {
    super('LogFormatError', 'ERR_LOG_FORMAT', seq === undefined ? message : `entry ${seq}: ${message}`)
    this.seq = seq
  }
}

/**
 * An auditor refused to replay a log whose init entry claims limits above the auditor's ceiling
 * (ReplayOptions.maxLimits): the host would decide what the audit costs. Code ERR_LIMIT_CEILING.
 */
export class LimitCeilingError extends LibVMSError {
  readonly limit: string
  readonly logged: number
  readonly ceiling: number

  constructor(limit: string, logged: number, ceiling: number, option: string, entry = "the log's init entry") {
    super(
      'LimitCeilingError',
      'ERR_LIMIT_CEILING',
      `${entry} sets limits.${limit} to ${logged}, above this auditor's ceiling of ${ceiling}; ${entry === "the log's init entry" ? 'nothing was replayed' : 'the replay stopped there'} (raise the ceiling with ${option} if you accept an audit that costly)`,
    )
    this.limit = limit
    this.logged = logged
    this.ceiling = ceiling
  }
}

/** Who made a call, in a divergence's message. */
function describeCaller(caller: string | null | undefined): string {
  return caller ? `caller ${caller}` : 'an anonymous caller'
}

/** A value in a divergence's message: its JSON text, cut to 200 characters. */
function short(value: unknown): string {
  const s = value === undefined ? 'nothing' : JSON.stringify(value)
  return s.length > 200 ? `${s.slice(0, 200)}…` : s
}

/** `n entry` or `n entries`. */
function entries(n: number): string {
  return `${n} ${n === 1 ? 'entry' : 'entries'}`
}

/** A logged call, as a divergence names it. */
interface DivergentCall {
  method: string
  caller: string | null
}

/**
 * Replay or comparison found that the host's record and an honest re-execution differ. Each kind of
 * divergence has a named constructor (`DivergenceError.ENTRY(…)`, `.CLOCK(…)`, …), which says it the
 * same way wherever it is found.
 */
export class DivergenceError extends LibVMSError {
  readonly seq: number | undefined
  readonly method: string | undefined
  readonly caller: string | null | undefined
  readonly field: string | undefined
  readonly expected: unknown
  readonly actual: unknown
  readonly path: string | undefined

  constructor(details: {
    message: string
    seq?: number
    method?: string
    caller?: string | null
    field?: string
    expected?: unknown
    actual?: unknown
    path?: string
  }) {
    super('DivergenceError', 'ERR_DIVERGENCE', details.message)
    this.seq = details.seq
    this.method = details.method
    this.caller = details.caller
    this.field = details.field
    this.expected = details.expected
    this.actual = details.actual
    this.path = details.path
  }

  // ---- a logged entry and its replay ----

  /** Entry `seq` and its replay differ in `field` (the first that differs: ledger/entry-diff.ts). */
  static ENTRY(seq: number, call: DivergentCall, field: string, expected: unknown, actual: unknown, upgrade = false): DivergenceError {
    const what =
      seq === 0 ? 'the init entry' : upgrade ? `upgrade entry ${seq}` : `call ${seq} (${call.method} by ${describeCaller(call.caller)})`
    return new DivergenceError({
      message: `${what} diverges in ${field}: the log says ${short(expected)}, the replay gives ${short(actual)}`,
      seq,
      method: call.method,
      caller: call.caller,
      field,
      expected,
      actual,
    })
  }

  /** Call `seq` is dated before the entry ahead of it (`last`). */
  static CLOCK(seq: number, call: DivergentCall & { timestamp: number }, last: number): DivergenceError {
    return new DivergenceError({
      message: `call ${seq} (${call.method}) is dated ${call.timestamp}, before the entry ahead of it (${last}): a host's clock never goes back in its log`,
      seq,
      method: call.method,
      caller: call.caller,
      field: 'timestamp',
      expected: `at least ${last}`,
      actual: call.timestamp,
    })
  }

  /** Call `seq` breaks admission rule `rule` (vm/admission.ts): no live VM would have run it. */
  static INADMISSIBLE(seq: number, call: DivergentCall, rule: string, err: unknown): DivergenceError {
    return new DivergenceError({
      message: `call ${seq} (${call.method} by ${describeCaller(call.caller)}) is one no live VM would have run: ${(err as Error).message}`,
      seq,
      method: call.method,
      caller: call.caller,
      field: rule,
      expected: 'a call a live VM admits',
      actual: err instanceof LibVMSError ? err.code : String(err),
    })
  }

  /** Call `seq` fails the auth mode's caller check (auth/call-auth.ts) with `err`. */
  static CALLER_CHECK(seq: number, call: DivergentCall, mode: string, err: LibVMSError): DivergenceError {
    return new DivergenceError({
      message: `call ${seq} (${call.method} by ${describeCaller(call.caller)}) fails the ${mode}-mode caller check (${err.code}): ${err.message}`,
      seq,
      method: call.method,
      caller: call.caller,
      field: 'signed',
      expected: 'a call its caller signed for this VM, once',
      actual: err.code,
    })
  }

  /** Call `seq` records `unused` System.vms answers its replay never asked for. */
  static ORACLE_UNUSED(seq: number, call: DivergentCall, unused: number): DivergenceError {
    return new DivergenceError({
      message: `call ${seq} (${call.method}) records ${unused} System.vms answer(s) its replay never asked for: the host added oracle values to its log`,
      seq,
      method: call.method,
      caller: call.caller,
      field: 'oracle',
    })
  }

  /** The VM's own log does not replay (a reopen): `found` says where and how. */
  static OWN_LOG(found: DivergenceError): DivergenceError {
    return new DivergenceError({
      message: `the VM's own log does not replay: ${found.message}; its archive or log was changed outside the VM, or the script is nondeterministic`,
      seq: found.seq,
      method: found.method,
      caller: found.caller,
      field: found.field,
      expected: found.expected,
      actual: found.actual,
      path: found.path,
    })
  }

  // ---- the init entry ----

  /** The init entry names files archive `loggedKey` (hex), not the one expected. */
  static WRONG_ARCHIVE(loggedKey: string, expectedUrl: string): DivergenceError {
    return new DivergenceError({
      message: `the log's init entry names files archive ${loggedKey}, not the expected ${expectedUrl}`,
      seq: 0,
      field: 'filesArchiveKey',
      expected: expectedUrl,
      actual: `hyper://${loggedKey}`,
    })
  }

  /** The log being read is `url`, not the one expected. */
  static WRONG_LOG(url: string, expectedUrl: string): DivergenceError {
    return new DivergenceError({
      message: `this is call log ${url}, not the expected ${expectedUrl}`,
      field: 'callLogUrl',
      expected: expectedUrl,
      actual: url,
    })
  }

  /** The logged script does not load. */
  static SCRIPT_LOAD(err: unknown): DivergenceError {
    return new DivergenceError({
      message: `the logged script does not load: ${(err as Error).message}`,
      seq: 0,
      method: 'init',
      field: 'code',
    })
  }

  /** The init entry says the VM is a factory, but its script lacks the exports of one. */
  static NOT_A_FACTORY(missing: readonly string[]): DivergenceError {
    return new DivergenceError({
      message: `the log's init entry says it is a VM factory, but its script does not export ${missing.join(' and ')}: no factory deploys such a script`,
      seq: 0,
      method: 'init',
      field: 'factory',
    })
  }

  /** The logged init fails on replay with `error`; the log says it returned `logged`. */
  static INIT_FAILS(error: { name: string; message: string }, logged: unknown): DivergenceError {
    return new DivergenceError({
      message: `the logged init fails on replay: ${error.name}: ${error.message}`,
      seq: 0,
      method: 'init',
      field: 'result',
      expected: logged,
      actual: error,
    })
  }

  // ---- upgrade entries ----

  /** Entry `seq` is an upgrade in a log whose init entry says the VM takes none (`upgrades: false`). */
  static UPGRADE_FORBIDDEN(seq: number): DivergenceError {
    return new DivergenceError({
      message: `entry ${seq} upgrades the VM's code, but its init entry says it takes no upgrade (upgrades: false): the host changed an immutable VM's code`,
      seq,
      method: 'upgrade',
      field: 'type',
      expected: 'call',
      actual: 'upgrade',
    })
  }

  /** Entry `seq` is an upgrade in a log of `schema`, which predates upgrades. */
  static UPGRADE_IN_OLD_LOG(seq: number, schema: number): DivergenceError {
    return new DivergenceError({
      message: `entry ${seq} upgrades the VM's code, but the log is of schema ${schema}, which has no upgrades: no LibVMS wrote it`,
      seq,
      method: 'upgrade',
      field: 'type',
      expected: 'call',
      actual: 'upgrade',
    })
  }

  /** The code of upgrade entry `seq` does not load (or its hook fails) on replay: `err`, `logged` what the log says the hook returned. */
  static UPGRADE_FAILS(seq: number, field: 'code' | 'result', err: { name?: string; message: string }, logged?: unknown): DivergenceError {
    const what = field === 'code' ? 'does not load' : 'fails its upgrade hook'
    return new DivergenceError({
      message: `the code of upgrade ${seq} ${what} on replay: ${err.name ?? 'Error'}: ${err.message}`,
      seq,
      method: 'upgrade',
      field,
      expected: logged,
      actual: { name: err.name ?? 'Error', message: err.message },
    })
  }

  // ---- the log as a whole ----

  /** Two logs of `expected` and `actual` entries (the same up to the shorter one's length). */
  static LENGTH(expected: number, actual: number): DivergenceError {
    const common = Math.min(expected, actual)
    const longer = common === expected ? 'second' : 'first'
    return new DivergenceError({
      message: `the logs differ in length: the first has ${entries(expected)}, the second ${actual}; seq ${common} is only in the ${longer}`,
      seq: common,
      field: 'length',
      expected,
      actual,
    })
  }

  /** The provisioned log has no init entry. */
  static PROVISIONED_WITHOUT_INIT(): DivergenceError {
    return new DivergenceError({ message: 'the provisioned log has no init entry', seq: 0 })
  }

  /** Factory call `seq` provisioned `url` with another `field` (code or title) than its init entry holds. */
  static PROVISIONED_OTHERWISE(seq: number, method: string, url: string, field: string, asked: unknown, logged: unknown): DivergenceError {
    return new DivergenceError({
      message: `factory call ${seq} provisioned ${url} with other code or title than its init entry holds`,
      seq,
      method,
      field,
      expected: asked,
      actual: logged,
    })
  }

  /** The factory's log records no provisioning of `url`. */
  static NOT_PROVISIONED(url: string): DivergenceError {
    return new DivergenceError({ message: `the factory's log records no provisioning of ${url}`, field: 'oracle' })
  }

  // ---- a files archive and the log ----

  /** The archive does not hold the state the log's last entry records (`logged`): its storage changed outside the VM (a reopen). */
  static ARCHIVE_LOST(logged: unknown, state: unknown): DivergenceError {
    return new DivergenceError({
      message: `the files archive does not match the last log entry (archive ${JSON.stringify(state)}, log ${JSON.stringify(logged)}): its storage was changed or lost outside the VM`,
      field: 'files',
      expected: logged,
      actual: state,
    })
  }

  /** The archive blocks a replay starts from (a checkpoint's, entry `seq`) are not the state that entry records. */
  static START_ARCHIVE(seq: number, method: string, recorded: unknown, state: unknown): DivergenceError {
    return new DivergenceError({
      message: `the files archive's blocks up to entry ${seq} are not the state that entry records`,
      seq,
      method,
      field: 'files',
      expected: recorded,
      actual: state,
    })
  }

  /** Entry `seq` records more of the archive than it has: files version `recorded` (or that many contents blocks) where it has `has`. */
  static ARCHIVE_SHORT(seq: number, part: 'version' | 'contents', recorded: number, has: number): DivergenceError {
    const what =
      part === 'version'
        ? `files version ${recorded}, but the archive only has ${has}`
        : `${recorded} blocks of file contents, but the archive only has ${has}: its contents were truncated`
    return new DivergenceError({ message: `entry ${seq} records ${what}`, seq, field: 'files', expected: recorded, actual: has })
  }

  /** The archive's state at the version entry `seq` records is not the one it records. */
  static REWRITTEN(seq: number, method: string, recorded: { version: number }, state: unknown): DivergenceError {
    return new DivergenceError({
      message: `the archive's state at version ${recorded.version} is not what entry ${seq} (${method}) records: the archive was rewritten`,
      seq,
      method,
      field: 'files',
      expected: recorded,
      actual: state,
    })
  }

  /** The archive changed after the last verified entry (`seq`) without a call: first at `path` (null: changed and undone). */
  static UNLOGGED_CHANGES(
    seq: number,
    method: string,
    path: string | null,
    version: number,
    recorded: { version: number },
  ): DivergenceError {
    const what = path === null ? 'a change made and undone' : `first at ${path}`
    return new DivergenceError({
      message: `the archive has changes after seq ${seq} (${method}) that no call made (${what}; archive version ${version}, the log records ${recorded.version})`,
      seq,
      method,
      path: path ?? undefined,
      field: 'files',
      expected: recorded,
      actual: version,
    })
  }

  /** Two archives with the same files and different histories (versions). */
  static HISTORY(expected: { version: number }, actual: { version: number }): DivergenceError {
    return new DivergenceError({
      message: `the archives hold the same files but different histories (version ${expected.version} vs ${actual.version}): a change was made and undone outside the VM`,
      field: 'files',
      expected,
      actual,
    })
  }

  /** Two archives differ at `path`: what each holds there (`expected`, `actual`), and those in words. */
  static PATH(path: string, expected: unknown, actual: unknown, words: { expected: string; actual: string }): DivergenceError {
    return new DivergenceError({
      message: `the archives differ at ${path}: the first has ${words.expected}, the second ${words.actual}`,
      path,
      field: 'files',
      expected,
      actual,
    })
  }

  /** Archive `url` has an entry at `path` whose contents (`blob` points at them) are not there, `why`. */
  static CONTENTS_MISSING(url: string, path: string, why: string, blob: unknown): DivergenceError {
    return new DivergenceError({
      message: `the archive ${url} has an entry at ${path} whose contents ${why}: the archive was edited outside the VM`,
      path,
      field: 'files',
      expected: 'contents the archive holds',
      actual: blob,
    })
  }

  /** Archive `url` holds an index that cannot be read, `why`. */
  static INDEX_UNREADABLE(url: string, why: string): DivergenceError {
    return new DivergenceError({
      message: `the archive ${url} holds an index that cannot be read (${why}): it was edited outside the VM`,
      field: 'files',
      expected: 'a Hyperdrive index',
      actual: why,
    })
  }

  /** A divergence made from its plain data (toJSON), as it crosses from a thread. */
  static fromJSON(json: Record<string, unknown>): DivergenceError {
    const given = (v: unknown) => (v === null ? undefined : v)
    return new DivergenceError({
      message: String(json.message),
      seq: given(json.seq) as number | undefined,
      method: given(json.method) as string | undefined,
      caller: json.caller as string | null | undefined,
      field: given(json.field) as string | undefined,
      expected: given(json.expected),
      actual: given(json.actual),
      path: given(json.path) as string | undefined,
    })
  }

  /** The divergence as plain data (for --json output, the explorer): every field, null when it does not apply. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      seq: this.seq ?? null,
      method: this.method ?? null,
      caller: this.caller ?? null,
      field: this.field ?? null,
      path: this.path ?? null,
      expected: this.expected ?? null,
      actual: this.actual ?? null,
    }
  }
}

/**
 * An error an RPC call ended with: the server's answer (its `name`, stable `code` and message, and
 * `seq` when the failed call was logged), or a client-side failure such as a timeout or a dropped
 * connection. `rpcCode` is the JSON-RPC error code.
 */
export class RPCError extends LibVMSError {
  readonly rpcCode: number
  readonly seq: number | undefined

  constructor(name: string, code: ErrorCode, message: string, rpcCode: number, seq?: number) {
    super(name, code, message)
    this.rpcCode = rpcCode
    this.seq = seq
  }
}

/** The names RPC clients see for what a server refuses at its edge, by code (a second handshake is named as a missing one). */
const RPC_EDGE_NAMES = {
  ERR_PARSE: 'ParseError',
  ERR_INVALID_REQUEST: 'InvalidRequest',
  ERR_INVALID_PARAMS: 'InvalidParams',
  ERR_MESSAGE_TOO_LARGE: 'MessageTooLarge',
  ERR_UNAVAILABLE: 'Unavailable',
  ERR_HANDSHAKE_REQUIRED: 'HandshakeRequired',
  ERR_HANDSHAKE_DONE: 'HandshakeRequired',
  ERR_INTERNAL: 'InternalError',
  ERR_NOT_HOST: 'NotHost',
} as const satisfies Record<Exclude<RPCEdgeErrorCode, 'ERR_QUEUE_FULL'>, string>

/**
 * What an RPC server refuses at its edge (rpc/rpc-connection.ts), before a call reaches a VM: a frame
 * that is not a request, a call before the handshake, a VM no longer served here, … Answered, never
 * thrown to a user (a client sees it as an RPCError with this name and code). A full queue is
 * QueueFullError, a bad caller AuthError.
 */
export class RPCEdgeError extends LibVMSError {
  constructor(code: keyof typeof RPC_EDGE_NAMES, message: string) {
    super(RPC_EDGE_NAMES[code], code, message)
  }
}

/** A files operation refused: a path that is not there, not a folder, over a quota, … (FILES_ERROR_CODES). */
export class FilesError extends LibVMSError {
  constructor(name: FilesErrorName, message: string) {
    super(name, FILES_ERROR_CODES[name], message)
  }
}

/** A log or archive could not be fetched from its hosts. */
export class FetchError extends LibVMSError {
  constructor(code: FetchErrorCode, message: string) {
    super('FetchError', code, message)
  }
}

/** What a host's memory budget holds: the sum of the `memoryBytes` limits of the VMs it runs. */
export interface CapacityFigures {
  /** The host's budget (bytes). */
  budgetBytes: number
  /** The sum of the memory limits of the VMs it runs (or is deploying). */
  reservedBytes: number
  /** The memory limit of the VM that did not fit. */
  askedBytes: number
}

/**
 * A deploy or provisioning past a host's memory budget (VMHost, VMFactory): the VMs it runs could
 * together take more memory than it has room for. `figures` says how much.
 */
export class CapacityError extends LibVMSError {
  readonly figures: CapacityFigures

  constructor(message: string, figures: CapacityFigures) {
    super('CapacityExceeded', 'ERR_CAPACITY', message)
    this.figures = figures
  }
}

/** A System.vms request a factory's host refused: over its capacity, an unknown VM, bad arguments. */
export class FactoryError extends LibVMSError {
  constructor(name: 'CapacityExceeded' | 'VMNotFound' | 'TypeError', message: string) {
    // A provisioning request of the wrong type is a TypeError, as a built-in's would be.
    super(name, name === 'TypeError' ? 'ERR_INVALID_ARGUMENT' : SANDBOX_ERROR_CODES[name], message)
  }
}

/** A replay asked System.vms something the log does not answer (the log was not made by this script). */
export class OracleMissingError extends LibVMSError {
  constructor(message: string) {
    super('OracleMissing', 'ERR_ORACLE_MISSING', message)
  }
}

/** A factory call recorded more System.vms values than one entry may hold. */
export class OracleLimitError extends LibVMSError {
  constructor(message: string) {
    super('OracleLimitExceeded', 'ERR_ORACLE_LIMIT', message)
  }
}

/** A System request the host has no operation for. */
export class UnknownSystemCallError extends LibVMSError {
  constructor(op: string) {
    super('UnknownSystemCall', 'ERR_UNKNOWN_SYSTEM_CALL', `System has no operation ${op}`)
  }
}

/** A log recorded with other engine versions than this replay's. */
export class EngineMismatchError extends LibVMSError {
  constructor(differences: string[]) {
    super(
      'EngineMismatchError',
      'ERR_ENGINE_MISMATCH',
      `the log was recorded with other engine versions (${differences.join('; ')}); replay with the same versions, or pass {allowEngineMismatch: true} to try anyway`,
    )
  }
}

/**
 * An upgrade refused (vm.upgrade): nothing was appended and the old code keeps serving. `code`:
 * ERR_UPGRADE_FAILED (the new code does not load, throws at its top level, or its `upgrade` hook
 * throws or runs out of a limit), ERR_UPGRADES_OFF (the VM was deployed with `upgrades: false`),
 * ERR_UPGRADE_UNSUPPORTED (its log predates upgrades).
 */
export class UpgradeError extends LibVMSError {
  /** What the new code threw, when it loaded or its hook ran (its name and message). */
  readonly reason: { name: string; message: string } | undefined

  constructor(
    code: 'ERR_UPGRADE_FAILED' | 'ERR_UPGRADES_OFF' | 'ERR_UPGRADE_UNSUPPORTED',
    message: string,
    reason?: { name: string; message: string },
  ) {
    super('UpgradeError', code, message)
    this.reason = reason
  }
}

/** A command line the nodevms CLI cannot run as given. */
export class UsageError extends LibVMSError {
  constructor(message: string) {
    super('UsageError', 'ERR_USAGE', message)
  }
}

/** A server that cannot listen where it was told: a port in use, an address this machine lacks. */
export class ListenError extends LibVMSError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ListenError', 'ERR_LISTEN', message, options)
  }
}

/** A receipt that does not prove what it claims: not a receipt, not signed by its log, not of its entry. */
export class ReceiptError extends LibVMSError {
  constructor(why: string) {
    super('ReceiptError', 'ERR_BAD_RECEIPT', `the receipt does not hold: ${why}`)
  }
}

// ---- Signals inside LibVMS: each is caught where it is answered and turned into one of the errors
// above (or an HTTP answer), so none reaches a user as it is; they carry no code.

/**
 * Thrown by a host-work meter (sandbox/host-work.ts) when a charge passes the call's allowance: the
 * call is over its budget. The sandbox ends the call as ComputeLimitExceeded.
 */
export class HostWorkExceeded extends Error {
  constructor() {
    super('the call used more than its compute budget (limits.computeTicks) on host work')
    this.name = 'HostWorkExceeded'
  }
}

/**
 * Why a snapshot file was not used (ledger/snapshot.ts, snapshot-store.ts): torn, damaged, not one,
 * or not the one expected. Whoever reads it skips the snapshot, or names it in its verdict.
 */
export class SnapshotUnreadable extends Error {
  override name = 'SnapshotUnreadable'
}

/** A request the explorer (explorer/) refuses, with the HTTP status it answers and why. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/**
 * An error of the storage underneath (Hypercore, Hyperbee, Hyperdrive, the file system) as a LibVMS
 * error with a code, `what` naming what was being done ("reading entry 3 of hyper://…"): a timeout
 * is ERR_FETCH_TIMEOUT, a closed or read-only core ERR_INVALID_STATE, anything else with a code
 * ERR_INVALID_STATE with the original as `cause`. LibVMS errors, and errors without a code (a bug
 * here, not a state of the storage), pass as they are.
 */
export function storageError(err: unknown, what: string): unknown {
  if (err instanceof LibVMSError || !(err instanceof Error)) return err
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string') {
    // RocksDB's own errors carry no code: "RocksDB session is closed" when a read races a close.
    return /session is closed/i.test(err.message) ? new StateError(`${what}: it was closed`, { cause: err }) : err
  }
  switch (code) {
    case 'REQUEST_TIMEOUT':
      return new FetchError('ERR_FETCH_TIMEOUT', `${what}: no host sent it in time; is a host of it online?`)
    case 'SESSION_CLOSED':
    case 'REQUEST_CANCELLED':
      return new StateError(`${what}: it was closed`, { cause: err })
    case 'SESSION_NOT_WRITABLE':
      return new StateError(`${what}: this is a read-only copy (only the host that holds its key writes to it)`, { cause: err })
    default:
      return new StateError(`${what}: ${err.message}`, { cause: err })
  }
}
