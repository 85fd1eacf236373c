/**
 * Named errors with stable codes. Every failure a user can cause is one of these: `name` says what
 * kind of failure it is, `code` is stable across releases (match on it), `message` says what to do.
 */

export class LibVMSError extends Error {
  readonly code: string

  constructor(name: string, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = name
    this.code = code
  }
}

/** A script that does not compile, throws at its top level, or lacks what it must export. */
export class ScriptError extends LibVMSError {
  readonly scriptErrorName: string
  readonly line: number | undefined

  constructor(scriptErrorName: string, message: string, line?: number) {
    super('ScriptError', 'ERR_SCRIPT', line === undefined ? message : `${message} (script line ${line})`)
    this.scriptErrorName = scriptErrorName
    this.line = line
  }
}

/**
 * A call that failed inside the VM. It is logged: replay must reproduce the same name and message.
 * `name` is the script's error name (TypeError, Error, ...) or one of the sandbox's own
 * (ComputeLimitExceeded, MemoryLimitExceeded, ...).
 */
export class CallError extends LibVMSError {
  readonly seq: number | undefined

  constructor(name: string, message: string, seq?: number) {
    super(name, CALL_ERROR_CODES[name] ?? 'ERR_CALL_FAILED', message)
    this.seq = seq
  }
}

/** Stable codes of the errors the sandbox itself raises inside a call. */
export const CALL_ERROR_CODES: Record<string, string> = {
  ComputeLimitExceeded: 'ERR_COMPUTE_LIMIT',
  MemoryLimitExceeded: 'ERR_MEMORY_LIMIT',
  StackOverflow: 'ERR_STACK_OVERFLOW',
  TimerLimitExceeded: 'ERR_TIMER_LIMIT',
  CallNeverSettled: 'ERR_CALL_NEVER_SETTLED',
  EncodingError: 'ERR_ENCODING',
  ResultTooLarge: 'ERR_RESULT_TOO_LARGE',
  MethodNotFound: 'ERR_METHOD_NOT_FOUND',
  NotFound: 'ERR_NOT_FOUND',
  AlreadyExists: 'ERR_ALREADY_EXISTS',
  ParentNotFound: 'ERR_PARENT_NOT_FOUND',
  NotADirectory: 'ERR_NOT_A_DIRECTORY',
  IsADirectory: 'ERR_IS_A_DIRECTORY',
  NotAFile: 'ERR_NOT_A_FILE',
  DirectoryNotEmpty: 'ERR_DIRECTORY_NOT_EMPTY',
  InvalidPath: 'ERR_INVALID_PATH',
  InvalidEncoding: 'ERR_INVALID_ENCODING',
  FileTooLarge: 'ERR_FILE_TOO_LARGE',
  StorageLimitExceeded: 'ERR_STORAGE_LIMIT',
  OracleLimitExceeded: 'ERR_ORACLE_LIMIT',
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

/** A method name that the VM does not export (or that may not be called, such as `init`). */
export class MethodNotFoundError extends LibVMSError {
  constructor(methodName: string) {
    super(
      'MethodNotFound',
      'ERR_METHOD_NOT_FOUND',
      `The VM has no callable export named ${JSON.stringify(methodName)}; list vm.exports for the ones it has`,
    )
  }
}

/**
 * Production mode refused a call or a connection: it was not signed, its signature does not verify,
 * it was signed for another VM or connection, or it was sent before. Stable codes:
 * ERR_AUTH_REQUIRED, ERR_AUTH_MODE, ERR_BAD_SIGNATURE, ERR_BAD_PAYLOAD, ERR_WRONG_VM, ERR_REPLAYED.
 * A refused call never runs and is never logged.
 */
export class AuthError extends LibVMSError {
  constructor(code: string, message: string) {
    super('AuthError', code, message)
  }
}

/** A key pair file that cannot be read, written or trusted. */
export class KeyFileError extends LibVMSError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super('KeyFileError', code, message, options)
  }
}

/** deploy() on a dir that holds something other than a LibVMS VM, or a VM of other code. */
export class DirectoryError extends LibVMSError {
  constructor(code: string, message: string) {
    super('DirectoryError', code, message)
  }
}

/** An operation on a VM, log or archive that is closed or not yet deployed. */
export class StateError extends LibVMSError {
  constructor(message: string) {
    super('StateError', 'ERR_INVALID_STATE', message)
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

  constructor(limit: string, logged: number, ceiling: number, option: string) {
    super(
      'LimitCeilingError',
      'ERR_LIMIT_CEILING',
      `the log's init entry sets limits.${limit} to ${logged}, above this auditor's ceiling of ${ceiling}; nothing was replayed (raise the ceiling with ${option} if you accept an audit that costly)`,
    )
    this.limit = limit
    this.logged = logged
    this.ceiling = ceiling
  }
}

/** Replay or comparison found that the host's record and an honest re-execution differ. */
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
}

/**
 * An error an RPC call ended with: the server's answer (its `name`, stable `code` and message, and
 * `seq` when the failed call was logged), or a client-side failure such as a timeout or a dropped
 * connection. `rpcCode` is the JSON-RPC error code.
 */
export class RPCError extends LibVMSError {
  readonly rpcCode: number
  readonly seq: number | undefined

  constructor(name: string, code: string, message: string, rpcCode: number, seq?: number) {
    super(name, code, message)
    this.rpcCode = rpcCode
    this.seq = seq
  }
}
