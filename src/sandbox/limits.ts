/**
 * Per-VM resource limits. Every limit that can change a call's outcome is recorded in the init entry,
 * so a replay runs under the same limits. The watchdog is not: its firing is a host fault, never a result.
 */
import { InvalidArgumentError } from '../errors.js'
import { isValidMemorySize, MIN_MEMORY_BYTES } from './engine.js'

export interface VMLimits {
  /** Compute budget of one call, in engine interrupt ticks (one tick ≈ 10,000 engine checkpoints, ≈ 1 ms). */
  computeTicks: number
  /** Size of the VM's whole WebAssembly memory; a multiple of 64 KiB, at least 16 MiB. */
  memoryBytes: number
  /** QuickJS stack limit. At most 128 KiB: deeper stacks can overflow the host's stack. */
  stackBytes: number
  /** Timers one call may create. */
  maxTimers: number
  /** Largest encoded result of one call. */
  maxResultBytes: number
  /** Largest encoded arguments of one call. */
  maxArgsBytes: number
  /** Storage quota: bytes of file contents the archive may hold (the sum of its files' sizes). */
  maxArchiveBytes: number
  /** Storage quota: files and folders the archive may hold. */
  maxArchiveEntries: number
  /** Storage quota: the largest single file. */
  maxFileBytes: number
}

/** The storage quotas: limits of cost schedule 1 on, absent from (and not applied to) older logs. */
export const STORAGE_QUOTAS = ['maxArchiveBytes', 'maxArchiveEntries', 'maxFileBytes'] as const

export const DEFAULT_LIMITS: Readonly<VMLimits> = Object.freeze({
  computeTicks: 1000,
  memoryBytes: 64 * 1024 * 1024,
  stackBytes: 128 * 1024,
  maxTimers: 10_000,
  maxResultBytes: 1024 * 1024,
  maxArgsBytes: 1024 * 1024,
  maxArchiveBytes: 1024 * 1024 * 1024,
  maxArchiveEntries: 100_000,
  maxFileBytes: 64 * 1024 * 1024,
})

const MAX_STACK_BYTES = 128 * 1024
/** Below this the prelude barely loads and any call overflows (measured: 2 KiB does, 4 KiB runs a trivial call). */
const MIN_STACK_BYTES = 8 * 1024

/** Fills in defaults and refuses values that would make the sandbox unsafe. */
export function resolveLimits(given: Partial<VMLimits> | undefined): VMLimits {
  const limits: VMLimits = { ...DEFAULT_LIMITS }
  for (const [key, value] of Object.entries(given ?? {})) {
    if (!Object.hasOwn(DEFAULT_LIMITS, key)) {
      throw new InvalidArgumentError(`Unknown limit ${JSON.stringify(key)}; known limits: ${Object.keys(DEFAULT_LIMITS).join(', ')}`)
    }
    if (value === undefined) continue
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new InvalidArgumentError(`limits.${key} must be a positive integer, got ${String(value)}`)
    }
    limits[key as keyof VMLimits] = value
  }
  if (!isValidMemorySize(limits.memoryBytes)) {
    throw new InvalidArgumentError(
      `limits.memoryBytes must be a multiple of 65536 between ${MIN_MEMORY_BYTES} and 2147483648, got ${limits.memoryBytes}`,
    )
  }
  if (limits.stackBytes > MAX_STACK_BYTES) {
    throw new InvalidArgumentError(`limits.stackBytes must be at most ${MAX_STACK_BYTES} (a deeper stack can overflow the host's)`)
  }
  if (limits.stackBytes < MIN_STACK_BYTES) {
    throw new InvalidArgumentError(`limits.stackBytes must be at least ${MIN_STACK_BYTES} (less cannot run the VM's own setup and a call)`)
  }
  return limits
}

/**
 * The most an auditor replays by default (ReplayOptions.maxLimits): generous — a hundred times the
 * default compute budget, eight times the default memory — but finite, so a log cannot make an audit
 * cost what its auditor never agreed to.
 */
export const DEFAULT_AUDIT_CEILING: Readonly<VMLimits> = Object.freeze({
  computeTicks: 100 * DEFAULT_LIMITS.computeTicks,
  memoryBytes: 512 * 1024 * 1024,
  stackBytes: MAX_STACK_BYTES,
  maxTimers: 100 * DEFAULT_LIMITS.maxTimers,
  maxResultBytes: 64 * 1024 * 1024,
  maxArgsBytes: 64 * 1024 * 1024,
  maxArchiveBytes: 64 * 1024 * 1024 * 1024,
  maxArchiveEntries: 10_000_000,
  maxFileBytes: 1024 * 1024 * 1024,
})

/**
 * The limits an init entry records: all of them, or (for a log of cost schedule 0, which predates
 * storage quotas) all but the quotas.
 */
export function recordedLimits(limits: VMLimits, quotas: boolean): VMLimits {
  if (quotas) return limits
  const recorded: Partial<VMLimits> = { ...limits }
  for (const key of STORAGE_QUOTAS) delete recorded[key]
  return recorded as VMLimits
}

/** The first limit in `limits` above `ceiling` (defaults filled from DEFAULT_AUDIT_CEILING), or null. */
export function limitAboveCeiling(
  limits: VMLimits,
  ceiling: Partial<VMLimits> = {},
): { limit: keyof VMLimits; logged: number; ceiling: number } | null {
  for (const key of Object.keys(DEFAULT_AUDIT_CEILING) as (keyof VMLimits)[]) {
    const max = ceiling[key] ?? DEFAULT_AUDIT_CEILING[key]
    if (limits[key] > max) return { limit: key, logged: limits[key], ceiling: max }
  }
  return null
}
