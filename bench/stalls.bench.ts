/**
 * Event-loop stalls: the longest time the event loop is held during a checkpoint (the first in a fresh
 * process, and a later one), a first deploy, a later deploy, a reopen of an existing dir and a close,
 * beside the same probe while the process idles and while it runs plain calls. The target (issue 29):
 * no checkpoint, close or deploy holds the event loop more than 50 ms.
 *
 *   npm run build && npx tsx bench/stalls.bench.ts                 (3 rounds)
 *   npm run build && npx tsx bench/stalls.bench.ts --rounds 5
 *   npm run build && npx tsx bench/stalls.bench.ts --cpu-prof /tmp/prof   (profiles every child)
 *
 * Every sequence runs in a fresh child process (bench/stalls-child.mjs, on the built package), so the
 * first checkpoint and the first deploy really are the process's first. Three VMs: `small` (a counter),
 * `large` (a VM that keeps about 32 MiB of strings in its heap, of its 64 MiB memory, so a checkpoint
 * copies and hashes that much) and `large_thread` (the same on a sandbox thread: its state crosses
 * threads at each checkpoint and reopen). Per round and VM: a `host` child (first deploy, plain
 * calls, first and later checkpoint, close, a later deploy, a reopen in the same process), then a
 * `reopen` child on the dir it left (the process's first deploy is a reopen from a snapshot).
 *
 * The probe: monitorEventLoopDelay at 1 ms resolution, one histogram per phase (max: the longest block
 * seen; p99), and a 1 ms interval whose gaps are measured in wall time and in the main thread's time
 * on a CPU (schedstat): on a loaded machine a block's wall time includes the thread waiting for a CPU,
 * its CPU time is the process's own work. Each figure is the median of the rounds, with the worst
 * round beside it. With --cpu-prof the children's long gaps (20 ms or more) are listed with the time
 * they ended on the profile's clock, to find what ran. Prints one JSON object to stdout; progress goes to stderr. Bounded: a
 * fixed number of children, each with a time limit; a watchdog ends the run after 6 minutes.
 */
import { existsSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startChild, stopChild, withTimeout } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { argValue, log, machine, median, round2 } from './bench-stats.js'

const CHILD = fileURLToPath(new URL('./stalls-child.mjs', import.meta.url))
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url))
const TARGET_MS = 50
/** The VMs measured: the MiB of heap they keep, and whether their script runs on a sandbox thread. */
const CONFIGS = {
  small: { heapMiB: 0, thread: false },
  large: { heapMiB: 32, thread: false },
  large_thread: { heapMiB: 32, thread: true },
} as const
/** Phases that are the operations under test; the others are baselines or setup. */
const OPERATIONS = [
  'first_deploy',
  'first_checkpoint',
  'later_checkpoint',
  'close',
  'later_deploy',
  'reopen',
  'close_both',
  'reopen_first',
  'reopen_close',
]
const BASELINES = ['idle', 'plain_calls', 'reopen_idle', 'reopen_plain_calls']
const CHILD_LIMIT_MS = 90_000

const ROUNDS = Number(argValue('--rounds') ?? 3)
if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 20) throw new Error('--rounds must be an integer in [1, 20]')
const CPU_PROF_ARG = argValue('--cpu-prof')
const CPU_PROF_DIR = CPU_PROF_ARG === undefined ? undefined : resolvePath(CPU_PROF_ARG)

const run = await startBenchRun('libvms-bench-stalls-', 6 * 60_000)

interface PhaseFigures {
  maxMs: number
  p99Ms: number
  samples: number
  maxGapMs: number
  /** null where /proc has no schedstat. */
  maxGapCpuMs: number | null
  wallMs: number
}
interface ChildReport {
  phases: Record<string, PhaseFigures>
  results: Record<string, unknown>
  longGaps: unknown[]
}

/** With --cpu-prof: each child's long gaps, to be matched with its profile. */
const longGaps: unknown[] = []

/** Runs one child to its JSON line and its exit. */
async function runChild(root: string, mode: 'host' | 'reopen', config: (typeof CONFIGS)[keyof typeof CONFIGS]): Promise<ChildReport> {
  const nodeArgs = CPU_PROF_DIR ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF_DIR] : []
  const where = config.thread ? 'thread' : 'main'
  const args = [root, mode, String(config.heapMiB), where]
  const started = await startChild<ChildReport>(CHILD, args, `stalls child (${mode}, ${config.heapMiB} MiB, ${where})`, {
    readyTimeoutMs: CHILD_LIMIT_MS,
    nodeArgs,
  })
  const { child } = started
  try {
    if (child.exitCode === null && child.signalCode === null) {
      await withTimeout(new Promise((done) => child.once('exit', done)), 15_000, `the stalls child's exit`)
    }
    if (child.exitCode !== 0) throw new Error(`the stalls child (${mode}) exited with ${child.exitCode ?? child.signalCode}`)
  } finally {
    await stopChild(child, 2000)
  }
  return started.info
}

/** The rounds' phases side by side: per phase, the median and the worst round of each figure. */
function summarize(reports: Record<string, PhaseFigures>[]): Record<string, unknown> {
  const names = [...new Set(reports.flatMap((r) => Object.keys(r)))]
  return Object.fromEntries(
    names.map((name) => {
      const rows = reports.map((r) => r[name]).filter((x) => x !== undefined)
      const pick = (key: keyof PhaseFigures) => {
        const values = rows.map((r) => r[key])
        if (values.some((v) => v === null)) return null
        const numbers = values as number[]
        return { median: round2(median(numbers)), worst: round2(Math.max(...numbers)), runs: numbers.map(round2) }
      }
      return [
        name,
        {
          max_ms: pick('maxMs'),
          p99_ms: pick('p99Ms'),
          longest_gap_ms: pick('maxGapMs'),
          longest_gap_cpu_ms: pick('maxGapCpuMs'),
          wall_ms: pick('wallMs'),
          samples: pick('samples'),
        },
      ]
    }),
  )
}

async function measureConfig(label: keyof typeof CONFIGS): Promise<Record<string, unknown>> {
  const config = CONFIGS[label]
  const rounds: Record<string, PhaseFigures>[] = []
  const checks: Record<string, unknown>[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const root = await run.freshDir(`${label}-${r}`)
    const host = await runChild(root, 'host', config)
    const reopen = await runChild(root, 'reopen', config)
    const phases: Record<string, PhaseFigures> = { ...host.phases }
    for (const [name, figures] of Object.entries(reopen.phases)) phases[name.startsWith('reopen') ? name : `reopen_${name}`] = figures
    rounds.push(phases)
    checks.push({ host: host.results, reopen: reopen.results })
    if (CPU_PROF_DIR) longGaps.push({ label, round: r, host: host.longGaps, reopen: reopen.longGaps })
    const figures = (n: string) => `${n} ${phases[n].maxMs.toFixed(1)}/${phases[n].maxGapCpuMs?.toFixed(1) ?? '-'}`
    const line = [...OPERATIONS, ...BASELINES]
      .filter((n) => phases[n])
      .map(figures)
      .join(', ')
    log(`${label}, round ${r + 1}/${ROUNDS}: longest block (ms, wall/cpu): ${line}`)
  }
  type Stat = { median: number; worst: number } | null
  const summary = summarize(rounds) as Record<string, { max_ms: Stat; longest_gap_cpu_ms: Stat }>
  const present = (names: string[]) => names.filter((n) => summary[n])
  const worstOf = (names: string[], key: 'max_ms' | 'longest_gap_cpu_ms') => {
    const stats = present(names).map((n) => summary[n][key])
    return stats.some((x) => x === null) ? null : round2(Math.max(...stats.map((x) => (x as { worst: number }).worst)))
  }
  const side = (key: 'max_ms' | 'longest_gap_cpu_ms') => ({
    operations: Object.fromEntries(present(OPERATIONS).map((n) => [n, summary[n][key]])),
    baselines: Object.fromEntries(present(BASELINES).map((n) => [n, summary[n][key]])),
    worst_operation: worstOf(OPERATIONS, key),
    worst_baseline: worstOf(BASELINES, key),
  })
  const worstCpu = worstOf(OPERATIONS, 'longest_gap_cpu_ms')
  const worstWall = worstOf(OPERATIONS, 'max_ms') as number
  return {
    heap_mib: config.heapMiB,
    sandbox_thread: config.thread,
    longest_block_ms: side('max_ms'),
    longest_block_cpu_ms: side('longest_gap_cpu_ms'),
    target: { op: '<=', value: TARGET_MS, of: 'the longest block of any operation, in every round' },
    meets_target: worstWall <= TARGET_MS,
    meets_target_on_cpu: worstCpu === null ? null : worstCpu <= TARGET_MS,
    phases: summary,
    checks,
  }
}

async function main(): Promise<void> {
  if (!existsSync(DIST)) throw new Error('dist/ is missing: run npm run build first (the children import the built package)')
  log(`${ROUNDS} rounds, temp dir ${run.rootDir}${CPU_PROF_DIR ? `, CPU profiles in ${CPU_PROF_DIR}` : ''}`)
  try {
    const vms: Record<string, unknown> = {}
    for (const label of Object.keys(CONFIGS) as (keyof typeof CONFIGS)[]) vms[label] = await measureConfig(label)
    const out = {
      ...machine(),
      rounds: ROUNDS,
      probe: {
        max_ms:
          'perf_hooks.monitorEventLoopDelay({resolution: 1}), one histogram per phase: its max (the longest block), p99_ms its 99th percentile',
        longest_gap_ms: 'the longest gap between two ticks of a 1 ms setInterval in the phase',
        longest_gap_cpu_ms:
          "the most main-thread CPU time (/proc/self/task/<pid>/schedstat) within one such gap: the process's own work, without the time a loaded machine kept the thread waiting for a CPU",
      },
      checkpoints: { every: 20, spread: 0 },
      phases: {
        idle: 'baseline: the fresh process idles 300 ms (after its imports)',
        first_deploy: 'new VM + deploy() into a fresh dir: the first in the process (engine compile, first storage)',
        plain_calls: 'baseline: trivial calls awaited one at a time, no checkpoint among them',
        first_checkpoint: "the call the process's first checkpoint falls on, and its snapshot's write",
        later_checkpoint: 'the next checkpoint of the same VM, and its snapshot write',
        close: 'vm.close() after 3 calls past a checkpoint: a snapshot of the last call, then storage closes',
        later_deploy: 'a new VM deployed into a fresh dir, the second deploy of the process',
        reopen: 'the closed VM deployed again on its dir, in the same process (from its snapshot)',
        close_both: 'closing the two VMs of later_deploy and reopen',
        reopen_first: 'a fresh process whose first deploy is a reopen of that dir (from its snapshot)',
        reopen_close: 'closing it after 19 calls (a snapshot of the last call, then storage)',
      },
      vms,
      ...(CPU_PROF_DIR ? { long_gaps: longGaps } : {}),
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    await run.end()
  }
}

await main()
