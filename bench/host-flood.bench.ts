import { loadavg } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { VM } from '../src/index.js'
import { machineBusySeconds } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { type Figure, figureOf, log, machine, median, percentile, readSizing, round2 } from './bench-stats.js'

const ROUNDS = 3
const TARGET_P99_MS = 50
/** Files in the folder the readdir flood lists, written before its phase by calls of FILL_PER_CALL writes. */
const BIG_FOLDER_FILES = 500
const FILL_PER_CALL = 250

const SIBLING_CODE = 'exports.ping = () => 1'

/** The flooding VM: every flood export loops on host requests until its call's compute budget ends it. */
const FLOOD_CODE = `
exports.ping = () => 1
exports.fill = async (start, n) => {
  if (start === 0) await System.files.mkdir('/big')
  for (let i = start; i < start + n; i++) await System.files.writeFile('/big/f' + i, 'x')
  return (await System.files.readdir('/big')).length
}
exports.stat = async () => { for (;;) await System.files.stat('/') }
exports.writeSmall = async () => { for (let i = 0; ; i++) await System.files.writeFile('/w' + i, 'x') }
exports.readdirBig = async () => { for (;;) await System.files.readdir('/big') }
exports.write64KiB = async () => { for (let i = 0; ; i++) await System.files.writeFile('/r' + (i % 10), 'z'.repeat(1 << 16)) }
exports.parallel64x64KiB = async () => {
  for (;;) await Promise.all(Array.from({ length: 64 }, (_, i) => System.files.writeFile('/p' + i, 'z'.repeat(1 << 16))))
}
`

const FLOOD_KINDS = {
  stat: "for (;;) await System.files.stat('/')",
  writeSmall: "for (let i = 0; ; i++) await System.files.writeFile('/w' + i, 'x')",
  readdirBig: `for (;;) await System.files.readdir('/big')  (a folder of ${BIG_FOLDER_FILES} files)`,
  write64KiB: "for (let i = 0; ; i++) await System.files.writeFile('/r' + (i % 10), 'z'.repeat(1 << 16))",
  parallel64x64KiB: "for (;;) await Promise.all(64 × System.files.writeFile('/p' + i, 'z'.repeat(1 << 16)))",
} as const
type FloodKind = keyof typeof FLOOD_KINDS
const KIND_NAMES = Object.keys(FLOOD_KINDS) as FloodKind[]

// ---- sizes ----

const { scale: SCALE, scaled } = readSizing()

const SIZES = {
  /** Sibling calls sampled per phase (fewer if the phase's sampling time runs out first). */
  siblingCalls: scaled(400, 40, 10),
  /** Pause between two sibling calls, ms. */
  siblingPauseMs: 2,
  /** The longest a phase samples the sibling, ms. */
  samplingMaxMs: scaled(6000, 1500, 100),
  /** The flood runs this long before the sibling's sampling starts, ms. */
  floodLeadMs: 50,
  /** The most flood calls one phase makes. */
  maxFloodCallsPerPhase: 200,
  warmupSiblingCalls: scaled(200, 50, 10),
  bigFolderFiles: BIG_FOLDER_FILES,
}

// ---- helpers ----

/** This run: its temp root dir, watchdog and cleanup (run.end(), in main). */
const run = await startBenchRun('libvms-host-flood-', 8 * 60_000)

/** Every VM this run has open, closed in main's finally whatever happened. */
const openVms = new Set<VM>()

async function deployFresh(label: string, code: string, thread: boolean): Promise<VM> {
  const vm = new VM(code, thread ? { thread: true } : {})
  openVms.add(vm)
  await vm.deploy({ dir: join(await run.freshDir(label), 'vm'), title: label })
  return vm
}

async function closeVm(vm: VM): Promise<void> {
  openVms.delete(vm)
  await vm.close()
}

/** Writes the flooding VM's folder of BIG_FOLDER_FILES files, in calls that fit the budget. */
async function fillBigFolder(vm: VM): Promise<void> {
  let listed = 0
  for (let start = 0; start < BIG_FOLDER_FILES; start += FILL_PER_CALL) {
    listed = (await vm.executeCall({ methodName: 'fill', args: [start, Math.min(FILL_PER_CALL, BIG_FOLDER_FILES - start)] })) as number
  }
  if (listed !== BIG_FOLDER_FILES) throw new Error(`/big lists ${listed} entries, expected ${BIG_FOLDER_FILES}`)
}

/** One phase's measurements. */
interface Phase {
  latencies: number[]
  samplingMs: number
  /** Flood calls made (those still running when sampling ended included, awaited after it). */
  floodCalls: number
  floodCallMs: number[]
  /** How the flood calls ended: the error name, or 'ok'. */
  floodOutcomes: Record<string, number>
  loopDelayP99Ms: number
  loopDelayMaxMs: number
  /** CPU use over the sampling window, % of one core. */
  processCpuPct: number
  otherCpuPct: number | null
}

/**
 * Samples the sibling's `ping` latency (SIZES.siblingCalls awaited calls, SIZES.siblingPauseMs apart,
 * at most SIZES.samplingMaxMs), with `flood` (a VM and the method of a flood kind) running back to
 * back meanwhile, or alone.
 */
async function phase(sibling: VM, flood: { vm: VM; method: FloodKind } | null): Promise<Phase> {
  const floodCallMs: number[] = []
  const floodOutcomes: Record<string, number> = {}
  let stop = false
  const floodLoop = (async () => {
    if (!flood) return
    while (!stop && floodCallMs.length < SIZES.maxFloodCallsPerPhase) {
      const t0 = performance.now()
      let outcome = 'ok'
      try {
        await flood.vm.executeCall({ methodName: flood.method })
      } catch (err) {
        outcome = (err as Error).name
      }
      floodCallMs.push(performance.now() - t0)
      floodOutcomes[outcome] = (floodOutcomes[outcome] ?? 0) + 1
      // Anything but the budget ending the call means the flood is not measuring what it should.
      if (outcome !== 'ComputeLimitExceeded') break
    }
  })()
  try {
    if (flood) await sleep(SIZES.floodLeadMs)
    const histogram = monitorEventLoopDelay({ resolution: 1 })
    const busy0 = await machineBusySeconds()
    const cpu0 = process.cpuUsage()
    histogram.enable()
    const latencies: number[] = []
    const t0 = performance.now()
    while (latencies.length < SIZES.siblingCalls && performance.now() - t0 < SIZES.samplingMaxMs) {
      const s = performance.now()
      const r = await sibling.executeCall({ methodName: 'ping' })
      latencies.push(performance.now() - s)
      if (r !== 1) throw new Error(`ping returned ${String(r)}, expected 1`)
      await sleep(SIZES.siblingPauseMs)
    }
    const samplingMs = performance.now() - t0
    histogram.disable()
    const cpu = process.cpuUsage(cpu0)
    const busy1 = await machineBusySeconds()
    const processCpuSecs = (cpu.user + cpu.system) / 1e6
    stop = true
    await floodLoop
    if (flood && floodOutcomes.ComputeLimitExceeded !== floodCallMs.length) {
      throw new Error(`flood ${flood.method}: the calls ended ${JSON.stringify(floodOutcomes)}, expected all ComputeLimitExceeded`)
    }
    return {
      latencies,
      samplingMs,
      floodCalls: floodCallMs.length,
      floodCallMs,
      floodOutcomes,
      loopDelayP99Ms: histogram.percentile(99) / 1e6,
      loopDelayMaxMs: histogram.max / 1e6,
      processCpuPct: (100 * processCpuSecs) / (samplingMs / 1000),
      otherCpuPct: busy0 === null || busy1 === null ? null : Math.max(0, (100 * (busy1 - busy0 - processCpuSecs)) / (samplingMs / 1000)),
    }
  } finally {
    stop = true
    await floodLoop
  }
}

function describe(p: Phase): string {
  const flood = p.floodCalls > 0 ? `, ${p.floodCalls} flood calls of median ${median(p.floodCallMs).toFixed(0)} ms` : ''
  return (
    `p50 ${percentile(p.latencies, 50).toFixed(2)} ms, p99 ${percentile(p.latencies, 99).toFixed(2)} ms, ` +
    `max ${Math.max(...p.latencies).toFixed(1)} ms (${p.latencies.length} calls in ${(p.samplingMs / 1000).toFixed(1)} s)${flood}; ` +
    `loop delay p99 ${p.loopDelayP99Ms.toFixed(1)} ms, max ${p.loopDelayMaxMs.toFixed(1)} ms; ` +
    `cpu ${p.processCpuPct.toFixed(0)}% (others ${p.otherCpuPct?.toFixed(0) ?? '?'}%)`
  )
}

// ---- results ----

type Config = 'baseline' | 'flood_main_thread' | 'flood_sandbox_thread'
const FLOOD_CONFIGS = ['flood_main_thread', 'flood_sandbox_thread'] as const

/** What one phase kind (a config's flood kind, or the baseline) reports: each figure over the rounds. */
function summarize(phases: Phase[], withFlood: boolean): Record<string, unknown> {
  const p99 = figureOf(phases, (p) => percentile(p.latencies, 99), 'ms')
  return {
    sibling_latency_ms: {
      p50: figureOf(phases, (p) => percentile(p.latencies, 50), 'ms'),
      p99,
      max: figureOf(phases, (p) => Math.max(...p.latencies), 'ms'),
      calls: phases.map((p) => p.latencies.length),
      [`calls_over_${TARGET_P99_MS}ms`]: phases.map((p) => overTarget(p.latencies)),
      sampling_s: phases.map((p) => round2(p.samplingMs / 1000)),
    },
    ...(withFlood
      ? {
          flood_calls: figureOf(phases, (p) => p.floodCalls, 'calls'),
          flood_call_ms: figureOf(phases, (p) => median(p.floodCallMs), 'ms'),
          flood_outcomes: mergeCounts(phases.map((p) => p.floodOutcomes)),
        }
      : {}),
    event_loop_delay_ms: {
      p99: figureOf(phases, (p) => p.loopDelayP99Ms, 'ms'),
      max: figureOf(phases, (p) => p.loopDelayMaxMs, 'ms'),
    },
    cpu_pct: {
      process: figureOf(phases, (p) => p.processCpuPct, '% of one core'),
      other_processes: phases.every((p) => p.otherCpuPct !== null)
        ? figureOf(phases, (p) => p.otherCpuPct as number, '% of one core')
        : null,
    },
    ...(withFlood ? { meets_target: p99.value < TARGET_P99_MS } : {}),
  }
}

const overTarget = (latencies: number[]): number => latencies.filter((ms) => ms >= TARGET_P99_MS).length

function mergeCounts(counts: Record<string, number>[]): Record<string, number> {
  const merged: Record<string, number> = {}
  for (const c of counts) for (const [k, v] of Object.entries(c)) merged[k] = (merged[k] ?? 0) + v
  return merged
}

/** A flood config over every kind: the round's samples of all kinds pooled (the mix), per round. */
function summarizeMix(rounds: Phase[][]): Record<string, unknown> {
  const pooled = rounds.map((phases) => phases.flatMap((p) => p.latencies))
  const p99: Figure = figureOf(pooled, (l) => percentile(l, 99), 'ms')
  return {
    sibling_latency_ms: {
      p50: figureOf(pooled, (l) => percentile(l, 50), 'ms'),
      p99,
      calls: pooled.map((l) => l.length),
      [`calls_over_${TARGET_P99_MS}ms`]: pooled.map(overTarget),
    },
    flood_calls: figureOf(rounds, (phases) => phases.reduce((n, p) => n + p.floodCalls, 0), 'calls'),
    meets_target: p99.value < TARGET_P99_MS,
  }
}

// ---- main ----

async function main(): Promise<void> {
  const loadBefore = loadavg()
  log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)}, temp dir ${run.rootDir}, load average ${loadBefore.map(round2).join(' ')}`)
  const t0 = performance.now()
  const phases: Record<Config, Record<string, Phase[]>> = { baseline: { none: [] }, flood_main_thread: {}, flood_sandbox_thread: {} }
  for (const config of FLOOD_CONFIGS) for (const kind of KIND_NAMES) phases[config][kind] = []
  try {
    // Warm-up: the engine, both sandbox kinds and one short flood of each kind, untimed.
    const warmSibling = await deployFresh('warm-sibling', SIBLING_CODE, false)
    for (let i = 0; i < SIZES.warmupSiblingCalls; i++) await warmSibling.executeCall({ methodName: 'ping' })
    for (const thread of [false, true]) {
      const warmFlood = await deployFresh(`warm-flood-${thread ? 'thread' : 'main'}`, FLOOD_CODE, thread)
      await fillBigFolder(warmFlood)
      for (const kind of KIND_NAMES) {
        await warmFlood.executeCall({ methodName: kind }).catch((err: Error) => {
          if (err.name !== 'ComputeLimitExceeded') throw err
        })
      }
      await closeVm(warmFlood)
    }
    await closeVm(warmSibling)
    log(`warmed up in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    for (let r = 0; r < ROUNDS; r++) {
      const tag = `round ${r + 1}/${ROUNDS}`
      const sibling = await deployFresh(`sibling-r${r}`, SIBLING_CODE, false)
      // Alternate the order, so drift of the machine over a round does not favour one configuration.
      const order: Config[] = r % 2 === 0 ? ['baseline', ...FLOOD_CONFIGS] : [...[...FLOOD_CONFIGS].reverse(), 'baseline']
      for (const config of order) {
        if (config === 'baseline') {
          const p = await phase(sibling, null)
          phases.baseline.none.push(p)
          log(`${tag} baseline: ${describe(p)}`)
          continue
        }
        const floodVm = await deployFresh(`flood-${config}-r${r}`, FLOOD_CODE, config === 'flood_sandbox_thread')
        try {
          await fillBigFolder(floodVm)
          for (const kind of KIND_NAMES) {
            const p = await phase(sibling, { vm: floodVm, method: kind })
            phases[config][kind].push(p)
            log(`${tag} ${config} ${kind}: ${describe(p)}`)
          }
        } finally {
          await closeVm(floodVm)
        }
      }
      await closeVm(sibling)
    }

    const results: Record<string, unknown> = { baseline: summarize(phases.baseline.none, false) }
    for (const config of FLOOD_CONFIGS) {
      const perKind = Object.fromEntries(KIND_NAMES.map((kind) => [kind, summarize(phases[config][kind], true)]))
      const p99PerKind = Object.fromEntries(
        KIND_NAMES.map((kind) => [kind, round2(median(phases[config][kind].map((p) => percentile(p.latencies, 99))))]),
      )
      const rounds = Array.from({ length: ROUNDS }, (_, r) => KIND_NAMES.map((kind) => phases[config][kind][r]))
      results[config] = { sibling_p99_ms_per_kind: p99PerKind, mix: summarizeMix(rounds), per_kind: perKind }
    }
    const out = {
      ...machine(),
      bench_scale: SCALE,
      sizes: SIZES,
      target: { sibling_p99_ms_while_flooding: { op: '<', value: TARGET_P99_MS } },
      flood_kinds: FLOOD_KINDS,
      timed:
        "the sibling's awaited executeCall({ methodName: 'ping' }), one at a time, " +
        `${SIZES.siblingPauseMs} ms apart; the flooding VM's calls run back to back meanwhile`,
      load_average: { before: loadBefore.map(round2), after: loadavg().map(round2) },
      wall_s: round2((performance.now() - t0) / 1000),
      results,
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    for (const vm of [...openVms]) await closeVm(vm).catch(() => {})
    await run.end()
  }
}

await main()
