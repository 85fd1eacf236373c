/**
 * Upgrade benchmark (issue 31): the time `vm.upgrade(newCode)` takes on a deployed VM, with a trivial
 * hook and with a hook that carries 10 MiB of state over, and the pause callers see while it runs,
 * beside a plain call and a first deploy of the same code measured in the same run.
 *
 *   npx tsx bench/upgrade.bench.ts                    (BENCH_SCALE=0.3 for a smoke run: fewer rounds)
 *   npx tsx bench/upgrade.bench.ts --profile          (also: where the 10 MiB upgrades' time goes)
 *
 * Two VMs, each on the main thread with the default limits (what a user gets without asking):
 *
 *   small  a counter in a closure; each new version's hook is `count = await previous.get()`.
 *   large  10,240 records of 1 KiB (10 MiB of strings, built by `init`, deterministic); each new
 *          version's hook asks the old code for their number, then pulls them in chunks of 900
 *          records (about 0.9 MiB, under the old code's limits.maxResultBytes of 1 MiB) through
 *          `previous.chunk(from, count)` and rebuilds the array. It needs no raised limit: the hook's
 *          cost stays far under the default computeTicks (reported: `cost_ticks`).
 *
 * Each version is the same script with its version number changed, so every upgrade is to new code
 * and every version can be upgraded from. Per VM: first deploys into fresh dirs (the baseline), plain
 * calls awaited one at a time (the baseline), then upgrades one after the other (v2, v3, ...), each
 * checked (the count, or the records and bytes carried). For `large`, also the fixed part: each of the
 * deploy-baseline VMs (10 MiB each) upgraded once to code whose hook carries only the record count.
 *
 * The pause: CALLERS callers, each awaiting one call at a time (`inc` on small: the answers must run
 * on with no gap or repeat across the upgrade; `record(i)` on large: checked against i), first
 * QUIET_CALLS calls each with no upgrade (the baseline), then an upgrade starts while they go on, and
 * AFTER_CALLS more calls each once it is done. Reported per round: the longest latency of a call that
 * overlapped the upgrade, beside the median and longest latency of the quiet calls; the figures are
 * medians over the rounds. A call made during an upgrade waits for it (vm.ts, submit), so the pause
 * is about the upgrade's own time.
 *
 * Prints one JSON object to stdout (progress to stderr), with the load average at the start and end.
 * Every loop is bounded in count and time; temp dirs are removed; a watchdog ends the run after 5 min.
 */
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { VM } from '../src/index.js'
import { startBenchRun } from './bench-run.js'
import { figure, log, machine, median, percentile, readSizing, round2, round3 } from './bench-stats.js'
import { profileSplit, startProfile } from './upgrade-profile.js'

const { scale, scaled } = readSizing()
const PROFILE = process.argv.includes('--profile')
/** Rounds of each measurement (deploys, upgrades, pause rounds). */
const ROUNDS = scaled(5, 3)
const PLAIN_CALLS = scaled(200, 50)
const CALLERS = 4
const QUIET_CALLS = scaled(40, 20)
const AFTER_CALLS = 10
/** The large VM's state: RECORDS records of RECORD_CHARS characters (10 MiB), pulled CHUNK records a call. */
const RECORDS = 10_240
const RECORD_CHARS = 1024
const CHUNK = 900
/** No single operation may take longer (a hung upgrade fails the bench rather than the watchdog). */
const OPERATION_LIMIT_MS = 60_000
/** A pause round's callers stop after this long, upgrade or not. */
const ROUND_LIMIT_MS = 60_000
const WATCHDOG_MS = 5 * 60_000

const run = await startBenchRun('libvms-bench-upgrade-', WATCHDOG_MS)

// ---- the scripts ----

/** The small VM's code, version `v`: a counter; from v2 on, its hook takes the old count. */
function smallCode(v: number): string {
  return `
const VERSION = ${v}
let count = 0
exports.inc = () => ++count
exports.get = () => count
exports.version = () => VERSION
exports.upgrade = async (previous) => { count = await previous.get() }
`
}

/**
 * The large VM's code, version `v`: RECORDS records built by init (record i: i in 8 digits, then
 * filler), readable one at a time (`record`) or CHUNK at a time, joined by newlines (`chunk`). Its hook
 * (`carry`: true) pulls every record from the old code and rebuilds the array; otherwise it keeps
 * only their number (the fixed part of an upgrade of a large VM).
 */
function largeCode(v: number, carry = true): string {
  const hook = carry
    ? `exports.upgrade = async (previous) => {
  const total = await previous.count()
  let bytes = 0
  let calls = 0
  for (let from = 0; from < total; from += ${CHUNK}) {
    const text = await previous.chunk(from, ${CHUNK})
    bytes += text.length
    calls++
    for (const record of text.split('\\n')) records.push(record)
  }
  if (records.length !== total) throw new Error('carried ' + records.length + ' records of ' + total)
  return { records: records.length, bytes, calls }
}`
    : `let carriedCount = 0
exports.upgrade = async (previous) => { carriedCount = await previous.count(); return { records: carriedCount } }`
  return `
const VERSION = ${v}
const records = []
exports.init = () => {
  const filler = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(${Math.ceil(RECORD_CHARS / 36) + 1})
  for (let i = 0; i < ${RECORDS}; i++) records.push(String(i).padStart(8, '0') + filler.slice(i % 36, i % 36 + ${RECORD_CHARS - 8}))
}
exports.count = () => records.length
exports.record = (i) => records[i]
exports.chunk = (from, count) => records.slice(from, from + count).join('\\n')
exports.version = () => VERSION
${hook}
`
}

// ---- helpers ----

async function bounded<T>(what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${OPERATION_LIMIT_MS / 1000} s`)), OPERATION_LIMIT_MS)
  })
  try {
    return await Promise.race([work, limit])
  } finally {
    clearTimeout(timer)
  }
}

async function timed<T>(what: string, work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now()
  const value = await bounded(what, work())
  return { ms: performance.now() - t0, value }
}

async function deployed(code: string, label: string): Promise<{ vm: VM; ms: number }> {
  const dir = await run.freshDir(label)
  const vm = new VM(code)
  const { ms } = await timed(`deploying ${label}`, () => vm.deploy({ dir: join(dir, 'vm'), title: label }))
  return { vm, ms }
}

/** What a scenario calls, and how it checks each answer. */
interface Workload {
  /** The arguments of a caller's next call, and the check of its answer. */
  nextCall(): { method: string; args: unknown[]; check: (answer: unknown) => void }
}

function smallWorkload(start: number): Workload & { issued(): number } {
  let issued = 0
  const answers = new Set<number>()
  return {
    issued: () => issued,
    nextCall() {
      issued++
      return {
        method: 'inc',
        args: [],
        check(answer) {
          // Each inc answers a count past `start`, once: none repeated across the upgrade (the
          // round's end checks none was lost).
          if (typeof answer !== 'number' || answer <= start || answers.has(answer)) {
            throw new Error(`inc answered ${String(answer)} (after ${start}, answers so far ${answers.size})`)
          }
          answers.add(answer)
        },
      }
    },
  }
}

function largeWorkload(): Workload {
  let i = 0
  return {
    nextCall() {
      const index = (i++ * 7919) % RECORDS
      return {
        method: 'record',
        args: [index],
        check(answer) {
          if (typeof answer !== 'string' || answer.length !== RECORD_CHARS || !answer.startsWith(String(index).padStart(8, '0'))) {
            throw new Error(`record(${index}) answered ${String(answer).slice(0, 40)}`)
          }
        },
      }
    },
  }
}

async function plainCalls(vm: VM, workload: Workload): Promise<number[]> {
  const ms: number[] = []
  for (let n = 0; n < PLAIN_CALLS; n++) {
    const { method, args, check } = workload.nextCall()
    const t0 = performance.now()
    check(await bounded('a plain call', vm.executeCall({ methodName: method, args })))
    ms.push(performance.now() - t0)
  }
  return ms
}

interface PauseRound {
  upgrade_ms: number
  /** The longest latency of a call that overlapped the upgrade (started before it ended, ended after it started). */
  pause_ms: number
  /** Calls that overlapped the upgrade. */
  calls_during: number
  quiet_median_ms: number
  quiet_max_ms: number
  after_median_ms: number
  calls: number
}

/**
 * One pause round: CALLERS callers each make QUIET_CALLS calls, then `upgrade()` starts while they go
 * on; once it is done, each makes AFTER_CALLS more. Bounded by ROUND_LIMIT_MS.
 */
async function pauseRound(vm: VM, workload: Workload, upgrade: () => Promise<unknown>): Promise<PauseRound> {
  const calls: { start: number; end: number; phase: 'quiet' | 'upgrade' | 'after' }[] = []
  const t0 = performance.now()
  let quietDone = 0
  let startUpgrade: () => void = () => {}
  const quietOver = new Promise<void>((resolve) => (startUpgrade = resolve))
  let upgradeWindow: { start: number; end: number } | null = null
  const callerDone = async (): Promise<void> => {
    let mine = 0
    let afterLeft = AFTER_CALLS
    for (let guard = 0; guard < QUIET_CALLS + AFTER_CALLS + 100_000; guard++) {
      if (performance.now() - t0 > ROUND_LIMIT_MS) throw new Error(`a pause round took more than ${ROUND_LIMIT_MS / 1000} s`)
      const phase = mine < QUIET_CALLS ? 'quiet' : upgradeWindow !== null && upgradeWindow.end >= 0 ? 'after' : 'upgrade'
      if (phase === 'after' && afterLeft-- <= 0) return
      const { method, args, check } = workload.nextCall()
      const start = performance.now()
      check(await bounded('a call', vm.executeCall({ methodName: method, args })))
      calls.push({ start, end: performance.now(), phase })
      if (++mine === QUIET_CALLS && ++quietDone === CALLERS) startUpgrade()
      // Between the quiet calls and the upgrade's start, callers go on (their calls overlap it or not).
      if (mine >= QUIET_CALLS && upgradeWindow === null) await quietOver
    }
    throw new Error('a caller made more calls than its bound')
  }
  const callers = Array.from({ length: CALLERS }, callerDone)
  await quietOver
  upgradeWindow = { start: performance.now(), end: -1 }
  await bounded('an upgrade under calls', upgrade())
  upgradeWindow.end = performance.now()
  await Promise.all(callers)
  const window = upgradeWindow
  const quiet = calls.filter((c) => c.phase === 'quiet').map((c) => c.end - c.start)
  const overlapping = calls.filter((c) => c.start <= window.end && c.end >= window.start).map((c) => c.end - c.start)
  const after = calls.filter((c) => c.phase === 'after').map((c) => c.end - c.start)
  return {
    upgrade_ms: round2(window.end - window.start),
    pause_ms: round2(Math.max(0, ...overlapping)),
    calls_during: overlapping.length,
    quiet_median_ms: round2(median(quiet)),
    quiet_max_ms: round2(Math.max(...quiet)),
    after_median_ms: round2(median(after)),
    calls: calls.length,
  }
}

function pauseFigures(rounds: PauseRound[]) {
  const pause = figure(
    rounds.map((r) => r.pause_ms),
    'ms',
  )
  const quietMedian = figure(
    rounds.map((r) => r.quiet_median_ms),
    'ms',
  )
  return {
    pause_ms: pause,
    quiet_call_median_ms: quietMedian,
    quiet_call_max_ms: figure(
      rounds.map((r) => r.quiet_max_ms),
      'ms',
    ),
    pause_to_quiet_median: round2(pause.value / quietMedian.value),
    upgrade_under_calls_ms: figure(
      rounds.map((r) => r.upgrade_ms),
      'ms',
    ),
    rounds,
  }
}

const ratio = (a: { value: number }, b: { value: number }): number => round2(a.value / b.value)

/** Many call latencies, summed up (their median, p99 and max) rather than listed. */
function latencies(ms: number[]) {
  return { value: round3(median(ms)), unit: 'ms', median_of: ms.length, p99: round3(percentile(ms, 99)), max: round3(Math.max(...ms)) }
}

// ---- scenario A: a trivial hook ----

async function smallScenario() {
  log('small: first deploys')
  const deploys: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const { vm, ms } = await deployed(smallCode(1), 'small-deploy')
    deploys.push(ms)
    await vm.close()
  }
  const { vm } = await deployed(smallCode(1), 'small')
  try {
    const workload = smallWorkload(0)
    log('small: plain calls')
    const plain = await plainCalls(vm, workload)
    let version = 1
    log('small: upgrades')
    const upgrades: number[] = []
    const costs: number[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const before = (await vm.executeCall({ methodName: 'get' })) as number
      const { ms, value } = await timed('an upgrade', () => vm.upgrade(smallCode(++version)))
      if (!value.hook) throw new Error('the small upgrade ran no hook')
      const after = await vm.executeCall({ methodName: 'get' })
      if (after !== before) throw new Error(`the count was ${before} before the upgrade, ${String(after)} after`)
      upgrades.push(ms)
      costs.push(value.cost)
    }
    log('small: pause rounds')
    const rounds: PauseRound[] = []
    for (let r = 0; r < ROUNDS; r++) {
      const start = (await vm.executeCall({ methodName: 'get' })) as number
      const round = smallWorkload(start)
      rounds.push(await pauseRound(vm, round, () => vm.upgrade(smallCode(++version))))
      const end = await vm.executeCall({ methodName: 'get' })
      if (end !== start + round.issued()) throw new Error(`the count is ${String(end)} after ${round.issued()} incs from ${start}`)
    }
    const upgrade = figure(upgrades, 'ms')
    const deploy = figure(deploys, 'ms')
    const call = latencies(plain)
    return {
      first_deploy_ms: deploy,
      plain_call_ms: call,
      upgrade_ms: upgrade,
      cost_ticks: figure(costs, 'ticks'),
      upgrade_to_first_deploy: ratio(upgrade, deploy),
      upgrade_to_plain_call: ratio(upgrade, call),
      pause: pauseFigures(rounds),
    }
  } finally {
    await vm.close()
  }
}

// ---- scenario B: a hook carrying 10 MiB ----

async function largeScenario() {
  log('large: first deploys, each upgraded once with a hook that carries only the record count')
  const deploys: number[] = []
  const fixed: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const { vm, ms } = await deployed(largeCode(1), 'large-deploy')
    try {
      deploys.push(ms)
      const { ms: upgradeMs, value } = await timed('an upgrade', () => vm.upgrade(largeCode(2, false)))
      if ((value.result as { records: number }).records !== RECORDS)
        throw new Error(`the count hook carried ${JSON.stringify(value.result)}`)
      fixed.push(upgradeMs)
    } finally {
      await vm.close()
    }
  }
  const { vm } = await deployed(largeCode(1), 'large')
  try {
    const workload = largeWorkload()
    log('large: plain calls')
    const plain = await plainCalls(vm, workload)
    let version = 1
    log('large: upgrades carrying 10 MiB')
    const upgrades: number[] = []
    const costs: number[] = []
    let carried: { records: number; bytes: number; calls: number } | null = null
    const profile = PROFILE ? await startProfile() : null
    for (let r = 0; r < ROUNDS; r++) {
      const { ms, value } = await timed('an upgrade', () => vm.upgrade(largeCode(++version)))
      carried = value.result as { records: number; bytes: number; calls: number }
      if (carried.records !== RECORDS) throw new Error(`the upgrade carried ${JSON.stringify(carried)}`)
      upgrades.push(ms)
      costs.push(value.cost)
      log(`  upgrade ${r + 1}/${ROUNDS}: ${ms.toFixed(0)} ms, ${value.cost} ticks`)
    }
    const split = profile ? profileSplit(await profile.stop()) : undefined
    log('large: pause rounds')
    const rounds: PauseRound[] = []
    for (let r = 0; r < ROUNDS; r++) {
      rounds.push(await pauseRound(vm, workload, () => vm.upgrade(largeCode(++version))))
    }
    const upgrade = figure(upgrades, 'ms')
    const deploy = figure(deploys, 'ms')
    const call = latencies(plain)
    const fixedPart = figure(fixed, 'ms')
    return {
      state: { records: RECORDS, record_chars: RECORD_CHARS, chunk_records: CHUNK, ...carried },
      limits: 'defaults (computeTicks 1000, maxResultBytes 1 MiB, memoryBytes 64 MiB): the hook pulls the state in chunks under 1 MiB',
      first_deploy_ms: deploy,
      plain_call_ms: call,
      upgrade_ms: upgrade,
      cost_ticks: figure(costs, 'ticks'),
      upgrade_count_only_hook_ms: fixedPart,
      upgrade_to_first_deploy: ratio(upgrade, deploy),
      upgrade_to_plain_call: ratio(upgrade, call),
      carrying_share_ms: round2(upgrade.value - fixedPart.value),
      pause: pauseFigures(rounds),
      ...(split ? { profile_split_of_upgrades: split } : {}),
    }
  } finally {
    await vm.close()
  }
}

// ---- the run ----

try {
  const loadBefore = loadavg().map(round2)
  const t0 = performance.now()
  // The process's first deploy compiles the engine: untimed in the figures, reported on its own.
  const warmUp = await deployed(smallCode(0), 'warm-up')
  await warmUp.vm.close()
  const small = await smallScenario()
  const large = await largeScenario()
  const result = {
    bench: 'upgrade',
    ...machine(),
    scale,
    rounds: ROUNDS,
    callers: CALLERS,
    load_average: { before: loadBefore, after: loadavg().map(round2) },
    thread: false,
    process_first_deploy_ms: round2(warmUp.ms),
    small_trivial_hook: small,
    large_10mib_hook: large,
    summary: {
      trivial_upgrade_ms: small.upgrade_ms.value,
      trivial_pause_ms: small.pause.pause_ms.value,
      trivial_quiet_call_ms: small.pause.quiet_call_median_ms.value,
      carry_10mib_upgrade_ms: large.upgrade_ms.value,
      carry_10mib_pause_ms: large.pause.pause_ms.value,
      carry_10mib_quiet_call_ms: large.pause.quiet_call_median_ms.value,
      carry_10mib_cost_ticks: large.cost_ticks.value,
    },
    wall_s: round2((performance.now() - t0) / 1000),
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
} finally {
  await run.end()
}
