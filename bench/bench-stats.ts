/** Helpers shared by the benchmarks: the BENCH_SCALE setting, progress output and statistics. */
import { availableParallelism } from 'node:os'

/** BENCH_SCALE from the environment: 1 by default, 0.1 for a quick smoke run. */
export function readScale(): number {
  const raw = process.env.BENCH_SCALE
  if (raw === undefined || raw === '') return 1
  const scale = Number(raw)
  if (!Number.isFinite(scale) || scale <= 0 || scale > 10) {
    throw new Error(`BENCH_SCALE must be a number in (0, 10], got ${JSON.stringify(raw)}`)
  }
  return scale
}

/**
 * BENCH_SCALE (readScale) and `scaled(base, min, multipleOf)`: a size of `base` at full scale, scaled,
 * rounded to a multiple of `multipleOf` and at least `min`.
 */
export function readSizing(): { scale: number; scaled: Scaled } {
  const scale = readScale()
  return { scale, scaled: sizesAt(scale) }
}

/** `scaled(base, min, multipleOf)`: a size of `base` at full scale, scaled, rounded to a multiple of `multipleOf`, at least `min`. */
export type Scaled = (base: number, min: number, multipleOf?: number) => number

/** The `scaled` of readSizing at a given scale. */
export function sizesAt(scale: number): Scaled {
  return (base, min, multipleOf = 1) => Math.max(min, Math.round((base * scale) / multipleOf) * multipleOf)
}

/** Progress goes to stderr; stdout carries only the JSON result. */
export const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`)
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
}

/** Nearest-rank percentile. */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b)
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)))
  return s[rank - 1]
}

export const round2 = (x: number): number => Math.round(x * 100) / 100
export const round3 = (x: number): number => Math.round(x * 1000) / 1000

/** A benchmark target: on the figure itself, or on its ratio to the baseline measured beside it. */
export interface Target {
  op: '>=' | '<='
  value: number
  of: 'value' | 'ratio_to_baseline'
}

/** A figure: the median of its runs, with the runs. */
export interface Figure {
  value: number
  unit: string
  median_of: number
  runs: number[]
}

export function figure(runs: number[], unit: string, digits: (x: number) => number = round2): Figure {
  return { value: digits(median(runs)), unit, median_of: runs.length, runs: runs.map(digits) }
}

/** The figure of one value of each row (`pick`), such as each round's. */
export function figureOf<T>(rows: T[], pick: (row: T) => number, unit: string): Figure {
  return figure(rows.map(pick), unit)
}

/** The machine a benchmark ran on, as each one's JSON starts: the Node version and the cores it may use. */
export function machine(): { node: string; cpus: number } {
  return { node: process.version, cpus: availableParallelism() }
}

/** The value after `name` on the command line (`--rounds 3`), or undefined if `name` is absent. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name)
  if (i === -1) return undefined
  const value = process.argv[i + 1]
  if (value === undefined || value.startsWith('--')) throw new Error(`${name} needs a value`)
  return value
}
