/**
 * `--compute-ticks`, `--memory-bytes`, …: one flag per VM limit (sandbox/limits.ts, vm-api.md's table),
 * named after it in kebab case. Limits are recorded in the init entry at first deploy; a VM that
 * reopens keeps its recorded ones, so a flag that differs from them is reported, never applied quietly.
 */
import type { Command } from 'commander'
import { InvalidArgumentError, UsageError } from '../errors.js'
import { DEFAULT_LIMITS, limitAboveCeiling, resolveLimits, type VMLimits } from '../sandbox/limits.js'
import { parseBytes, parsePositive } from './parse-options.js'

type LimitName = keyof VMLimits

/** `computeTicks` → `compute-ticks`. */
function flagOf(name: LimitName): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)
}

/** A limit counted in bytes takes a size (`64MiB`); the others a whole number. */
function inBytes(name: LimitName): boolean {
  return name.endsWith('Bytes')
}

const DESCRIPTIONS: Record<LimitName, string> = {
  computeTicks: 'compute budget of one call, in ticks (one ≈ 1 ms)',
  memoryBytes: "the VM's whole memory (a multiple of 64 KiB, at least 16MiB)",
  stackBytes: 'the script stack (8KiB to 128KiB)',
  maxTimers: 'timers one call may create',
  maxResultBytes: 'largest result of one call',
  maxArgsBytes: 'largest arguments of one call',
  maxArchiveBytes: 'storage quota: the sum of the files sizes',
  maxArchiveEntries: 'storage quota: files and folders',
  maxFileBytes: 'storage quota: the largest file',
}

/** A limit's value as the flag takes it: a size in the largest binary unit that divides it exactly (`128KiB`). */
function shown(name: LimitName, value: number): string {
  if (!inBytes(name)) return String(value)
  for (const [unit, size] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (value % size === 0) return `${value / size}${unit}`
  }
  return String(value)
}

/** The flags of `nodevms verify` that raise an auditor's ceiling for a limit. */
const VERIFY_CEILING_FLAGS: Partial<Record<LimitName, string>> = { computeTicks: '--max-ticks', memoryBytes: '--max-memory' }

/** Adds a flag for each VM limit; they apply at first deploy. */
export function addLimitOptions(command: Command): Command {
  for (const name of Object.keys(DEFAULT_LIMITS) as LimitName[]) {
    const placeholder = inBytes(name) ? '<bytes>' : '<n>'
    command.option(
      `--${flagOf(name)} ${placeholder}`,
      `${DESCRIPTIONS[name]} (default ${shown(name, DEFAULT_LIMITS[name])}; first deploy only)`,
      inBytes(name) ? parseBytes : parsePositive,
    )
  }
  return command
}

/**
 * The limits given by flags (commander's camelCase keys match the limits' names), or undefined for
 * none. A value the VM would refuse is a UsageError naming the flag; a value above what auditors
 * replay by default gets a note (`onNote`) saying which verify flag lets them.
 */
export function limitsOf(options: Partial<Record<LimitName, number>>, onNote: (text: string) => void): Partial<VMLimits> | undefined {
  const given: Partial<VMLimits> = {}
  for (const name of Object.keys(DEFAULT_LIMITS) as LimitName[]) {
    if (options[name] !== undefined) given[name] = options[name]
  }
  if (Object.keys(given).length === 0) return undefined
  let limits: VMLimits
  try {
    limits = resolveLimits(given)
  } catch (error) {
    if (!(error instanceof InvalidArgumentError)) throw error
    throw new UsageError(error.message.replace(/limits\.(\w+)/g, (_, name: LimitName) => `--${flagOf(name)}`))
  }
  const above = limitAboveCeiling(limits)
  if (above) {
    const raise = VERIFY_CEILING_FLAGS[above.limit]
    onNote(
      `--${flagOf(above.limit)} ${shown(above.limit, above.logged)} is above what auditors replay by default (${shown(above.limit, above.ceiling)}): ` +
        (raise
          ? `they must raise their ceiling (nodevms verify ${raise} ${above.logged})`
          : "they must raise their ceiling (the library's maxLimits)"),
    )
  }
  return given
}

/** For a VM that reopened: a line per flag whose value its log does not record (the log's wins). */
export function ignoredLimits(given: Partial<VMLimits> | undefined, recorded: VMLimits): string[] {
  const lines: string[] = []
  for (const [name, value] of Object.entries(given ?? {}) as [LimitName, number][]) {
    if (recorded[name] !== value) {
      lines.push(
        `--${flagOf(name)} ${shown(name, value)} is not applied: this VM's limits were fixed at its first deploy (its log records ${shown(name, recorded[name])})`,
      )
    }
  }
  return lines
}
