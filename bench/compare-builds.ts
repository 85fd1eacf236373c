/**
 * Before/after in one run: the same bench programs on two builds of LibVMS, interleaved, and per
 * figure the base median, the head median, their ratio and whether the difference is beyond the noise.
 *
 *   npx tsx bench/compare-builds.ts --base <git-rev> [--head <git-rev or checkout dir>] [--rounds n]
 *   BENCH_SCALE=0.2 npx tsx bench/compare-builds.ts --base HEAD~3      (a smoke run)
 *
 * The base (and a head given as a revision) is checked out in a temporary git worktree and built there;
 * the head is by default this checkout, built in place (build-trees.ts). The bench programs are this
 * checkout's, whatever the builds: `bench/vm-core.bench.ts` (what `npm run bench` runs) with `libvms`
 * pointed at the build (libvms-build.mjs), and audits of logs written once by the base build
 * (audit-logs.ts), so that both builds audit the same bytes: with the build's CLI, `nodevms verify
 * <dir> --json` and `--jobs 2`, and `Verifier.verify` timed inside its process (verify-child.mjs). Every run is a fresh child process; in each round every program runs on both builds
 * back to back, base first in odd rounds and head first in even ones.
 *
 * Prints one JSON object to stdout (progress on stderr); the noise rule is in compare-stats.ts.
 * Bounded: a fixed number of children, each with a time limit, and a watchdog (--max-minutes, 60 by
 * default) that ends the children by pid, removes the worktrees and the temp dir, and exits 1.
 */
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type AuditWorkload, auditWorkloads } from './audit-logs.js'
import { killChildrenNow, runChild } from './bench-children.js'
import { type BenchRun, startBenchRun } from './bench-run.js'
import { argValue, log, machine, readScale, round2, sizesAt } from './bench-stats.js'
import { type Build, BuildTrees, cliOf, envFor, sameDist } from './build-trees.js'
import { type Better, betterFromUnit, compareFigure, type FigureComparison, falseAlarmChance } from './compare-stats.js'

const PROJECT_DIR = fileURLToPath(new URL('..', import.meta.url))
const CORE_BENCH = fileURLToPath(new URL('./vm-core.bench.ts', import.meta.url))
const AUDIT_LOG_CHILD = fileURLToPath(new URL('./audit-log-child.ts', import.meta.url))
const VERIFY_CHILD = fileURLToPath(new URL('./verify-child.mjs', import.meta.url))
const TSX = ['--import', 'tsx']

/** vm-core.bench.ts runs at this share of its full size (times BENCH_SCALE): about 40 s a run on this 2-core machine at a load of 4. */
const CORE_SCALE = 0.25
/** The audit logs are this share of parallel-audit.bench.ts's (times BENCH_SCALE): 20,000 trivial calls, 1,000 computing ones. */
const AUDIT_SCALE = 0.2
/** The figures of vm-core.bench.ts that measure the machine (raw Hypercore appends), not LibVMS. */
const CORE_CONTROLS = new Set(['rawAwaitedAppendsPerSec', 'rawBatchedAppendsPerSec'])
const CORE_TIME_LIMIT_MS = 10 * 60_000
const VERIFY_TIME_LIMIT_MS = 5 * 60_000
const LOG_BUILD_TIME_LIMIT_MS = 25 * 60_000

// ---- the command line ----

function usage(problem: string): never {
  process.stderr.write(
    `${problem}\nusage: npx tsx bench/compare-builds.ts --base <git-rev> [--head <git-rev or checkout dir>] [--rounds n] [--max-minutes m]\n`,
  )
  process.exit(2)
}

function intArg(name: string, fallback: number, min: number, max: number): number {
  const raw = argValue(name)
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min || n > max) usage(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  return n
}

const baseAsked = argValue('--base') ?? usage('--base <git-rev> is required: the build to compare against, e.g. --base main')
const headAsked = argValue('--head')
const ROUNDS = intArg('--rounds', 4, 2, 9)
const MAX_MINUTES = intArg('--max-minutes', 60, 1, 240)
const SCALE = readScale()

// ---- samples ----

interface Samples {
  unit: string
  better: Better
  control: boolean
  runs: Record<Build['label'], number[]>
}

const samples = new Map<string, Samples>()

function record(build: Build, name: string, value: number, unit: string, better = betterFromUnit(unit), control = false): void {
  let s = samples.get(name)
  if (!s) {
    s = { unit, better, control, runs: { base: [], head: [] } }
    samples.set(name, s)
  }
  s.runs[build.label].push(value)
}

// ---- the programs ----

interface CoreFigure {
  value: number
  unit: string
  ratio_to_baseline?: number
  latency_ms?: { p50: number; p99: number }
}

interface CoreReport {
  baseline: Record<string, CoreFigure>
  results: Record<string, CoreFigure>
}

/**
 * One run of vm-core.bench.ts on `build`: every figure, the ratios to the raw baselines, the
 * sequential latencies. `tmp` is its temp dir (TMPDIR), inside the run's, so nothing it makes
 * outlives the run even if it is ended before its own cleanup.
 */
async function runCore(build: Build, tmp: string): Promise<void> {
  const report = await runChild<CoreReport>(CORE_BENCH, [], `vm-core on ${build.label}`, CORE_TIME_LIMIT_MS, {
    nodeArgs: TSX,
    env: envFor(build, { BENCH_SCALE: String(CORE_SCALE * SCALE), TMPDIR: tmp }),
  })
  for (const [name, f] of Object.entries(report.baseline))
    record(build, `core.${name}`, f.value, f.unit, undefined, CORE_CONTROLS.has(name))
  for (const [name, f] of Object.entries(report.results)) {
    record(build, `core.${name}`, f.value, f.unit)
    if (f.ratio_to_baseline !== undefined) record(build, `core.${name}.ratio_to_baseline`, f.ratio_to_baseline, 'x')
    if (f.latency_ms) {
      record(build, `core.${name}.latency_p50_ms`, f.latency_ms.p50, 'ms')
      record(build, `core.${name}.latency_p99_ms`, f.latency_ms.p99, 'ms')
    }
  }
}

interface AuditLog {
  workload: AuditWorkload
  dir: string
  buildMs: number
}

interface VerifyReport {
  verified: boolean
  calls: number
  segments?: number[]
}

/** `nodevms verify <dir> --json` (with `--jobs`) of the build's CLI, in a fresh process; resolves with its wall time. */
async function timeVerify(build: Build, audited: AuditLog, jobs: number, tmp: string): Promise<{ ms: number; segments: number[] }> {
  const args = ['verify', audited.dir, '--json', ...(jobs > 1 ? ['--jobs', String(jobs)] : [])]
  const label = `verify ${audited.workload.name} --jobs ${jobs} on ${build.label}`
  const started = performance.now()
  const report = await runChild<VerifyReport>(cliOf(build), args, label, VERIFY_TIME_LIMIT_MS, { env: { ...process.env, TMPDIR: tmp } })
  const ms = performance.now() - started
  if (!report.verified || report.calls !== audited.workload.calls) {
    throw new Error(`${label} did not verify the ${audited.workload.calls} calls: ${JSON.stringify(report)}`)
  }
  return { ms, segments: report.segments ?? [0] }
}

/** The seqs `--jobs 2` started its segments at, per log (as the last run found them). */
const segmentsSeen: Record<string, number[]> = {}

/** A whole-log verify (jobs 1) or a parallel audit (jobs 2) of `audited` with the build's CLI: its wall time. */
async function audit(build: Build, audited: AuditLog, jobs: number, tmp: string): Promise<void> {
  const { ms, segments } = await timeVerify(build, audited, jobs, tmp)
  record(build, `audit.${audited.workload.name}${jobs > 1 ? `Jobs${jobs}` : 'Whole'}Ms`, ms, 'ms')
  if (jobs > 1) segmentsSeen[audited.workload.name] = segments
}

/** `Verifier.verify` of `audited`'s log in a fresh process on the build (verify-child.mjs), timed inside it: the work per entry. */
async function auditInProcess(build: Build, audited: AuditLog, tmp: string): Promise<void> {
  const label = `Verifier.verify of ${audited.workload.name} on ${build.label}`
  const report = await runChild<{ verifyMs: number; calls: number }>(VERIFY_CHILD, [audited.dir], label, VERIFY_TIME_LIMIT_MS, {
    env: envFor(build, { TMPDIR: tmp }),
  })
  if (report.calls !== audited.workload.calls) throw new Error(`${label} verified ${report.calls} calls, not ${audited.workload.calls}`)
  record(build, `audit.${audited.workload.name}VerifierUsPerCall`, (report.verifyMs * 1000) / report.calls, 'us/call')
}

// ---- main ----

async function main(): Promise<void> {
  const started = performance.now()
  const loadAtStart = loadavg().map(round2)
  const run = await startBenchRun('libvms-compare-builds-', MAX_MINUTES * 60_000, () => trees.abandonSync())
  const trees = new BuildTrees(PROJECT_DIR, run.rootDir)
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: ending the children, removing the worktrees and ${run.rootDir}`)
    killChildrenNow()
    trees.abandonSync()
    void run.end().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    // Both builds at once (tsc is mostly one core's work); neither is measured.
    const [base, head] = await allDone([trees.prepare('base', baseAsked), trees.prepare('head', headAsked)])
    log(`base ${base.commit.slice(0, 12)} "${base.subject}", head ${head.commit.slice(0, 12)} "${head.subject}"`)

    // The children's temp dir (TMPDIR): inside the run's, removed with it whatever happens to them.
    const tmp = await run.freshDir('tmp')
    const { trivial, compute } = auditWorkloads(sizesAt(AUDIT_SCALE * SCALE))
    const logs = await writeAuditLogs(base, [{ ...compute, name: 'oneCall', calls: 1 }, trivial, compute], run, tmp)
    const [tiny, trivialLog, computeLog] = logs

    const programs: { name: string; on: (build: Build) => Promise<void> }[] = [
      { name: 'vm-core', on: (b) => runCore(b, tmp) },
      { name: 'verify a 1-call log', on: (b) => audit(b, tiny, 1, tmp) },
      { name: `verify ${trivial.calls} trivial calls`, on: (b) => audit(b, trivialLog, 1, tmp) },
      { name: `verify ${trivial.calls} trivial calls --jobs 2`, on: (b) => audit(b, trivialLog, 2, tmp) },
      { name: `Verifier.verify of ${trivial.calls} trivial calls`, on: (b) => auditInProcess(b, trivialLog, tmp) },
      { name: `verify ${compute.calls} computing calls`, on: (b) => audit(b, computeLog, 1, tmp) },
      { name: `verify ${compute.calls} computing calls --jobs 2`, on: (b) => audit(b, computeLog, 2, tmp) },
      { name: `Verifier.verify of ${compute.calls} computing calls`, on: (b) => auditInProcess(b, computeLog, tmp) },
    ]
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [base, head] : [head, base]
      for (const program of programs) {
        for (const build of order) {
          const t0 = performance.now()
          await program.on(build)
          log(`round ${round + 1}/${ROUNDS}: ${program.name} on ${build.label} (${Math.round(performance.now() - t0)} ms)`)
        }
      }
    }

    const figures: Record<string, FigureComparison> = {}
    for (const [name, s] of samples) figures[name] = compareFigure(s.runs.base, s.runs.head, s.unit, s.better, s.control)
    const result = {
      bench: 'compare-builds',
      ...machine(),
      load_average: { start: loadAtStart, end: loadavg().map(round2) },
      bench_scale: SCALE,
      rounds: ROUNDS,
      order: 'each program on both builds back to back, base first in odd rounds, head first in even ones; every run a fresh process',
      base: describe(base),
      head: describe(head),
      // The same dist/ byte for byte: an A/A run, where every difference is noise.
      same_build: await sameDist(base, head),
      sizes: {
        core: { bench: 'bench/vm-core.bench.ts', BENCH_SCALE: CORE_SCALE * SCALE },
        audit: Object.fromEntries(
          logs.map((l) => [l.workload.name, { calls: l.workload.calls, checkpointEvery: l.workload.every, writtenMs: l.buildMs }]),
        ),
        jobs2Segments: segmentsSeen,
      },
      noise: {
        rule: 'beyond the noise when the runs do not overlap: every head run better, or every one worse, than every base run',
        false_alarm_chance_per_figure: falseAlarmChance(ROUNDS),
        ratio: 'head median / base median',
      },
      figures,
      summary: summarize(figures),
      wall_ms: Math.round(performance.now() - started),
    }
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    try {
      await trees.removeAll()
    } finally {
      await run.end()
    }
  }
}

/** Writes each workload's log with the base build, each in a child process (audit-log-child.ts), one after the other. */
async function writeAuditLogs(base: Build, workloads: AuditWorkload[], run: BenchRun, tmp: string): Promise<AuditLog[]> {
  const logs: AuditLog[] = []
  for (const workload of workloads) {
    const dir = join(await run.freshDir(workload.name), 'vm')
    log(`writing the ${workload.name} log (${workload.calls} calls) with the base build`)
    const label = `writing the ${workload.name} log`
    const env = envFor(base, { TMPDIR: tmp })
    const { buildMs } = await runChild<{ buildMs: number }>(
      AUDIT_LOG_CHILD,
      [dir, JSON.stringify(workload)],
      label,
      LOG_BUILD_TIME_LIMIT_MS,
      {
        nodeArgs: TSX,
        env,
      },
    )
    logs.push({ workload, dir, buildMs: Math.round(buildMs) })
  }
  return logs
}

/** The verdict over every figure but the controls, the figures beyond the noise either way (name → ratio), and the controls that are. */
function summarize(figures: Record<string, FigureComparison>) {
  const entries = Object.entries(figures)
  const named = (keep: (f: FigureComparison) => boolean) =>
    Object.fromEntries(entries.filter(([, f]) => keep(f)).map(([name, f]) => [name, f.ratio]))
  const worse = named((f) => !f.control && f.verdict === 'worse')
  const libvmsFigures = entries.filter(([, f]) => !f.control)
  const worseCount = Object.keys(worse).length
  return {
    verdict: worseCount === 0 ? 'no figure worse than noise' : `${worseCount} figure(s) worse beyond the noise`,
    worse,
    better: named((f) => !f.control && f.verdict === 'better'),
    within_noise: libvmsFigures.filter(([, f]) => f.verdict === 'within noise').length,
    controls_beyond_noise: named((f) => f.control === true && f.beyond_noise),
    // How many figures would come out beyond the noise by chance alone were both builds the same.
    expected_false_alarms: round2(falseAlarmChance(ROUNDS) * libvmsFigures.length),
  }
}

/** Promise.all that waits for every promise to settle before it rejects with the first failure (so none is left running). */
async function allDone<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises)
  const failed = settled.find((s) => s.status === 'rejected')
  if (failed) throw failed.reason
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value)
}

function describe(b: Build) {
  return {
    asked: b.asked,
    commit: b.commit,
    subject: b.subject,
    tree: b.temporary ? '(temporary worktree)' : b.tree,
    uncommitted: b.uncommitted,
    build_ms: b.buildMs,
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
