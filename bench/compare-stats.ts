/**
 * The comparison of one figure measured on two builds (compare-builds.ts): each build's runs (one a
 * round, the rounds interleaved), their medians, the ratio head / base, and whether the difference is
 * beyond the noise.
 *
 * The noise rule is the rounds' spread: a difference is beyond the noise when the two builds' runs do
 * not overlap at all (every head run better than every base run, or every one worse). If both builds
 * were the same, the runs of each would be a random half of one pool, and they would fall apart that
 * way by chance with probability 2 / C(2n, n) for n rounds each: 10% for 3 rounds, 2.9% for 4, 0.8%
 * for 5 (`falseAlarmChance`). A figure's `spread` ((max − min) / median of each build's runs) says how
 * noisy it was.
 */
import { median, round3 } from './bench-stats.js'

/** Which way a figure gets better. */
export type Better = 'higher' | 'lower'

export type Verdict = 'within noise' | 'better' | 'worse'

export interface BuildRuns {
  median: number
  runs: number[]
  /** (max − min) / median of the runs. */
  spread: number
}

export interface FigureComparison {
  unit: string
  better: Better
  base: BuildRuns
  head: BuildRuns
  /** head median / base median. */
  ratio: number
  beyond_noise: boolean
  verdict: Verdict
  /** A figure that measures the machine, not LibVMS (the same code on both builds): it should be within noise. */
  control?: true
}

/** Which way a figure gets better, from its unit: rates (`…/s`) and speedups (`x`) up, times and sizes down. */
export function betterFromUnit(unit: string): Better {
  return unit.endsWith('/s') || unit === 'x' ? 'higher' : 'lower'
}

/** The chance that n runs of each of two identical builds fall apart with no overlap: 2 / C(2n, n). */
export function falseAlarmChance(rounds: number): number {
  let binomial = 1
  for (let k = 1; k <= rounds; k++) binomial = (binomial * (rounds + k)) / k
  return round3(2 / binomial)
}

function buildRuns(runs: number[]): BuildRuns {
  const m = median(runs)
  return { median: round3(m), runs: runs.map(round3), spread: round3((Math.max(...runs) - Math.min(...runs)) / m) }
}

/** Compares the runs of one figure on the base and the head build (runs that are not numbers are left out). */
export function compareFigure(baseRuns: number[], headRuns: number[], unit: string, better: Better, control = false): FigureComparison {
  const base = baseRuns.filter(Number.isFinite)
  const head = headRuns.filter(Number.isFinite)
  if (base.length === 0 || head.length === 0) throw new Error(`a figure in ${unit} has no runs on one of the builds`)
  const headAbove = Math.min(...head) > Math.max(...base)
  const headBelow = Math.max(...head) < Math.min(...base)
  const beyond = headAbove || headBelow
  const headBetter = better === 'higher' ? headAbove : headBelow
  return {
    unit,
    better,
    base: buildRuns(base),
    head: buildRuns(head),
    ratio: round3(median(head) / median(base)),
    beyond_noise: beyond,
    verdict: !beyond ? 'within noise' : headBetter ? 'better' : 'worse',
    ...(control ? { control: true as const } : {}),
  }
}
