/**
 * What a LibVMS VM script sees (docs/vm-api.md): `System`, the timers, `console`, and CommonJS's
 * `exports` and `module`. Use it with `/// <reference types="libvms/script" />` at the top of a
 * script, or `"types": ["libvms/script"]` in the tsconfig.json of a folder of scripts. It is a script
 * file, so its declarations are globals. A VM has no Node.js: leave `@types/node` (and the DOM lib)
 * out of the scripts' own tsconfig, or they would type APIs the VM does not have. They may still meet
 * in one program (a Node client importing the script's types): these declarations merge with theirs.
 */

/** `System.caller`: who made the call running now. */
interface LibVMSCaller {
  /** Debug mode: the user id given (not authenticated). Production mode: the caller's public key (64 hex digits). Null for calls the host made itself. */
  readonly id: string | null
}

/** What `System.files.stat` resolves: the times are those of the call that last wrote the entry (logged time). */
interface LibVMSStat {
  type: 'file' | 'directory'
  size: number
  mtime: Date
  ctime: Date
  isFile(): boolean
  isDirectory(): boolean
}

interface LibVMSFilesInfo {
  key: string
  url: string
  /** The archive version before this call. */
  version: number
  title: string
}

interface LibVMSHistoryRecord {
  type: 'put' | 'del'
  path: string
  version: number
}

type LibVMSEncoding = 'utf8' | 'binary' | 'base64' | 'hex'

/** `System.files`: the VM's files archive. A call's changes reach it only if the call returns normally. */
interface LibVMSFiles {
  getInfo(): Promise<LibVMSFilesInfo>
  /** Fails with `NotFound`. */
  stat(path: string): Promise<LibVMSStat>
  /** Fails with `NotFound`, `IsADirectory`, `InvalidEncoding`. */
  readFile(path: string, opts?: 'utf8' | 'base64' | 'hex' | { encoding?: 'utf8' | 'base64' | 'hex' }): Promise<string>
  readFile(path: string, opts: 'binary' | { encoding: 'binary' }): Promise<Uint8Array>
  readFile(path: string, opts?: LibVMSEncoding | { encoding?: LibVMSEncoding }): Promise<string | Uint8Array>
  /** Sorted names; with `recursive`, paths relative to `path`. Fails with `NotFound`, `NotADirectory`. */
  readdir(path: string, opts?: { recursive?: boolean }): Promise<string[]>
  /** Fails with `ParentNotFound`, `NotADirectory`, `IsADirectory`, `StorageLimitExceeded`. */
  writeFile(path: string, data: string | Uint8Array, opts?: LibVMSEncoding | { encoding?: LibVMSEncoding }): Promise<void>
  /** Fails with `AlreadyExists`, `ParentNotFound`. */
  mkdir(path: string): Promise<void>
  /** Fails with `NotFound`, `NotAFile`. */
  unlink(path: string): Promise<void>
  /** A non-empty directory only with `recursive`. Fails with `NotFound`, `NotADirectory`, `DirectoryNotEmpty`. */
  rmdir(path: string, opts?: { recursive?: boolean }): Promise<void>
  /** The archive's changes by earlier calls. */
  history(opts?: { start?: number; end?: number; reverse?: boolean }): Promise<LibVMSHistoryRecord[]>
}

interface LibVMSProvisionedVM {
  id: string
  rpcUrl: string
  callLogUrl: string
  filesArchiveUrl: string
}

/** `System.vms`: only in VM factory scripts (served with `--factory`, or a `VMFactory`); undefined elsewhere. */
interface LibVMSFactoryVMs {
  /** Fails with `ScriptError` for code that does not load, `CapacityExceeded` over a limit. */
  provisionVM(options: { code: string; title?: string }): Promise<LibVMSProvisionedVM>
  /** Fails with `VMNotFound`. */
  shutdownVM(id: string): Promise<void>
}

interface LibVMSSystem {
  readonly caller: LibVMSCaller
  readonly files: LibVMSFiles
  /** Only in a VM factory's script. */
  readonly vms?: LibVMSFactoryVMs
}

declare const System: LibVMSSystem

/** Virtual timers: they run within the call that set them; those pending when its result settles are cancelled. */
type LibVMSTimer = number
declare function setTimeout<A extends unknown[]>(fn: (...args: A) => void, delay?: number, ...args: A): LibVMSTimer
declare function setInterval<A extends unknown[]>(fn: (...args: A) => void, delay?: number, ...args: A): LibVMSTimer
declare function setImmediate<A extends unknown[]>(fn: (...args: A) => void, ...args: A): LibVMSTimer
declare function clearTimeout(id: LibVMSTimer | undefined): void
declare function clearInterval(id: LibVMSTimer | undefined): void
declare function clearImmediate(id: LibVMSTimer | undefined): void
declare function queueMicrotask(fn: () => void): void

/** Goes to the host's debug output, never into the log. (An interface, so that it merges with Node's or the DOM's.) */
interface Console {
  log(...values: unknown[]): void
  info(...values: unknown[]): void
  warn(...values: unknown[]): void
  error(...values: unknown[]): void
  debug(...values: unknown[]): void
}
declare var console: Console

/** CommonJS scripts: every function export but `init` is a method callers can call. */
interface NodeModule {
  // biome-ignore lint/suspicious/noExplicitAny: as Node's own declaration has it, so that the two merge
  exports: any
}
// biome-ignore lint/suspicious/noExplicitAny: as Node's own declaration has it, so that the two merge
declare var exports: any
declare var module: NodeModule
