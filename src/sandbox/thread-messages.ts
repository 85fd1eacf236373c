/**
 * The messages between a VM's host (the main thread) and the sandbox thread that runs its script,
 * and how errors cross between them. Everything here is structured-clonable.
 */
import { HostFaultError, knownCode, LibVMSError, ScriptError } from '../errors.js'
import type { EngineState } from './engine-state.js'
import type { ExportInfo, SandboxOptions, TurnContext } from './sandbox.js'

/** Host → thread. `id` numbers a request the thread answers with a Reply of the same id. */
export type ToThread =
  | { t: 'create'; id: number; sid: number; options: Omit<SandboxOptions, 'console'>; console: boolean }
  /** A fresh sandbox takes a captured state (Sandbox.adoptState). */
  | { t: 'adopt'; id: number; sid: number; state: EngineState }
  /** The sandbox's state between turns (Sandbox.captureState). */
  | { t: 'capture'; id: number; sid: number }
  | { t: 'load'; id: number; sid: number; code: string; turn: TurnContext }
  /** A call of export `method`; with `previousJson`, the upgrade hook (Sandbox.runUpgradeHook) instead. */
  | { t: 'call'; id: number; sid: number; method: string; argsJson: string; turn: TurnContext; previousJson?: string }
  | { t: 'dispose'; sid: number }
  /** The answer to a System.* request the thread made for a call (`rid`), and the host work it charged. */
  | { t: 'answer'; rid: number; value?: unknown; error?: CrossingError; charged: number }

/** Thread → host. */
export type FromThread =
  | { t: 'reply'; id: number; value?: unknown; error?: CrossingError }
  /** A System.* request made by the script during call `id`, with the call's cost schedule and what is left of its budget. */
  | { t: 'request'; id: number; rid: number; op: string; args: unknown[]; schedule: number; allowance: number }
  | { t: 'console'; sid: number; level: string; message: string }

export type LoadReply = { cost: number; exports: ExportInfo[] }

/** An error as it crosses threads: its class, and what it needs to be rebuilt. */
export interface CrossingError {
  kind: 'ScriptError' | 'HostFaultError' | 'LibVMSError' | 'Error'
  name: string
  code?: string
  message: string
  scriptErrorName?: string
  line?: number
}

export function toCrossing(err: unknown): CrossingError {
  if (err instanceof ScriptError) {
    const suffix = err.line === undefined ? '' : ` (script line ${err.line})`
    const message = suffix && err.message.endsWith(suffix) ? err.message.slice(0, -suffix.length) : err.message
    return { kind: 'ScriptError', name: err.name, message, scriptErrorName: err.scriptErrorName, line: err.line }
  }
  if (err instanceof HostFaultError) return { kind: 'HostFaultError', name: err.name, code: err.code, message: err.message }
  if (err instanceof LibVMSError) return { kind: 'LibVMSError', name: err.name, code: err.code, message: err.message }
  const e = err as { name?: unknown; message?: unknown }
  return {
    kind: 'Error',
    name: typeof e?.name === 'string' ? e.name : 'Error',
    message: typeof e?.message === 'string' ? e.message : String(err),
  }
}

export function fromCrossing(c: CrossingError): Error {
  switch (c.kind) {
    case 'ScriptError':
      return new ScriptError(c.scriptErrorName ?? 'Error', c.message, c.line)
    case 'HostFaultError':
      return new HostFaultError(c.message)
    case 'LibVMSError':
      return new LibVMSError(c.name, knownCode(c.code), c.message)
    default: {
      const err = new Error(c.message)
      err.name = c.name
      return err
    }
  }
}
