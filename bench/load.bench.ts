/**
 * Load benchmark (not a timed test): 100 RPCClients × 1,000 calls each against one VM, then against 10
 * VMs served by one server, checked afterwards against the server's call logs (zero lost or duplicated
 * calls), with latency p50/p99/max, throughput and the server's peak RSS, beside a plain `ws` echo
 * server driven by the same generator in the same run.
 *
 *   npm run build && npx tsx bench/load.bench.ts                   (full size: 100,000 calls per scenario)
 *   npm run build && BENCH_SCALE=0.05 npx tsx bench/load.bench.ts  (quick smoke run)
 *
 * Processes (all on 127.0.0.1, all started and ended by this process, by pid):
 *   bench/rpc-server.mjs <dir> debug <vms>  a fresh LibVMS server per scenario: <vms> VMs at /vm0 ..,
 *                                           each with `exports.hit = (i) => [System.caller.id, i]`;
 *                                           on a `scan` line on its stdin it reads its VMs' call logs
 *                                           and prints how often each (caller, i) appears
 *   bench/echo-server.mjs                   the baseline: answers every JSON-RPC request with result 1
 * The load generator runs in this process: CLIENTS RPCClients, client k connected as user `c<k>` (to
 * /vm<k % vms> in the 10-VM scenario), each making its calls `hit(0)`, `hit(1)`, .. one at a time,
 * awaiting each. Every answer must be [`c<k>`, i]; afterwards every VM's log must hold each (caller, i)
 * of the clients mounted on it exactly once, and nothing else but the init entry and the warm-up calls.
 *
 * Runs, in this order: a shorter untimed one against the echo server (warms up the generator and the
 * echo server), echo baseline, one VM, echo baseline, ten VMs (each LibVMS scenario is compared with
 * the baseline measured just before it). One run each: latency percentiles are over all calls of the
 * run. The server's peak RSS is its VmHWM (/proc/<pid>/status) at the end of the load, beside its RSS
 * before the load and the highest VmRSS sampled every RSS_SAMPLE_MS. CPU use of the server (all its
 * threads, and its main thread alone) and of this process (the generator) is recorded to show which
 * one bounds throughput: at full size the generator uses about a third of a core against LibVMS, so
 * one process drives the 100 clients without being the bottleneck.
 *
 * Prints one JSON object to stdout; progress goes to stderr. Exits with code 1 if any call was lost,
 * duplicated, failed or answered wrongly. Every loop is bounded in count and time, the temp dir is
 * removed, every child is ended by its pid, and a watchdog ends the whole run after 8 minutes.
 */
import { readFile } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { RPCClient } from '../src/index.js'
import { machineBusySeconds, processCpuSeconds, type Started, startChild, stopChild, withTimeout } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { log, machine, percentile, readSizing, round2, round3 } from './bench-stats.js'

const CLIENTS = 100
const MANY_VMS = 10
const SCRIPTS = {
  server: fileURLToPath(new URL('./rpc-server.mjs', import.meta.url)),
  echo: fileURLToPath(new URL('./echo-server.mjs', import.meta.url)),
}
/** Longest the calls of one load phase may take (no call is issued after it). */
const PHASE_TIMEOUT_MS = 150_000
/** Longest the server may take to scan its logs. */
const SCAN_TIMEOUT_MS = 120_000
const RSS_SAMPLE_MS = 250

// ---- sizes ----

const { scale: SCALE, scaled } = readSizing()

const SIZES = {
  clients: CLIENTS,
  callsPerClient: scaled(1000, 20),
  /** Calls of `inc` per client before the measured calls (logged too; the check expects them). */
  warmupCallsPerClient: scaled(50, 5),
  /** Calls per client of the untimed first run against the echo server (warms up the generator and the echo server). */
  generatorWarmupCallsPerClient: scaled(200, 10),
  manyVMs: MANY_VMS,
}
const CALLS = SIZES.clients * SIZES.callsPerClient

/**
 * This run: its temp root dir, a watchdog that gives up (children ended, temp dir removed, exit 1)
 * after 8 minutes, and the cleanup (run.end(), in main).
 */
const run = await startBenchRun('libvms-load-bench-', 8 * 60_000)

// ---- /proc ----

/** Fields of /proc/<pid>/status in MiB (VmRSS, VmHWM), null where there is none. */
async function memoryMiB(pid: number): Promise<{ rss: number; hwm: number } | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
    return { rss: kib('VmRSS') / 1024, hwm: kib('VmHWM') / 1024 }
  } catch {
    return null
  }
}

/** Samples a process's VmRSS every RSS_SAMPLE_MS until stopped; resolves with the highest, MiB. */
function sampleRss(pid: number): { stop(): Promise<number | null> } {
  let highest: number | null = null
  let running = true
  const loop = (async () => {
    while (running) {
      const m = await memoryMiB(pid)
      if (m && (highest === null || m.rss > highest)) highest = m.rss
      await new Promise((resolve) => setTimeout(resolve, RSS_SAMPLE_MS))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return highest
    },
  }
}

// ---- the load generator ----

interface Target {
  label: string
  pid: number
  /** URL client k connects to. */
  urlOf(k: number): string
  /** Whether answers are checked (the echo server answers 1 to everything). */
  libvms: boolean
}

interface LoadRun {
  calls: number
  completed: number
  clientErrors: number
  firstError: string | null
  wrongResults: number
  wallMs: number
  perSec: number
  latency: { p50: number; p99: number; max: number; mean: number }
  generatorCpuPct: number
  serverCpuPct: number | null
  /** CPU of the server's main (JavaScript) thread alone: near 100% means it is saturated. */
  serverMainThreadCpuPct: number | null
  /** CPU the whole machine was busy with (out of 100% per core), and the part neither process used. */
  machineBusyCpuPct: number | null
  otherProcessesCpuPct: number | null
  serverRssBeforeMiB: number | null
  serverRssAfterMiB: number | null
  serverRssSampledMaxMiB: number | null
  serverPeakRssMiB: number | null
}

const userOf = (k: number): string => `c${k}`

/**
 * Connects CLIENTS RPCClients, warms up (SIZES.warmupCallsPerClient `inc` each), then every client
 * makes `perClient` calls `hit(i)`, awaiting each, all clients at once; closes them.
 */
async function load(target: Target, perClient: number): Promise<LoadRun> {
  const clients = await withTimeout(
    Promise.all(
      Array.from({ length: CLIENTS }, async (_, k) => {
        const client = new RPCClient()
        // Receipts are checked against LibVMS, as by default; the echo server has no log to prove.
        await client.connect(target.urlOf(k), { user: userOf(k), receipts: target.libvms })
        return client
      }),
    ),
    30_000,
    `connecting ${CLIENTS} clients to ${target.label}`,
  )
  try {
    await withTimeout(
      Promise.all(
        clients.map(async (client) => {
          for (let i = 0; i < SIZES.warmupCallsPerClient; i++) await client.call('inc')
        }),
      ),
      PHASE_TIMEOUT_MS,
      `warming up ${target.label}`,
    )

    const latencies = clients.map(() => new Float64Array(perClient))
    const done = clients.map(() => 0)
    let clientErrors = 0
    let wrongResults = 0
    let firstError: string | null = null
    const deadline = performance.now() + PHASE_TIMEOUT_MS
    const worker = async (client: RPCClient, k: number): Promise<void> => {
      const user = userOf(k)
      const lat = latencies[k]
      for (let i = 0; i < perClient && performance.now() < deadline; i++) {
        const s = performance.now()
        try {
          const r = await client.call('hit', i)
          lat[i] = performance.now() - s
          if (target.libvms && !(Array.isArray(r) && r.length === 2 && r[0] === user && r[1] === i)) wrongResults++
        } catch (err) {
          lat[i] = performance.now() - s
          clientErrors++
          firstError ??= `client ${user}, hit(${i}): ${(err as Error).message}`
        }
        done[k] = i + 1
      }
    }

    const before = await memoryMiB(target.pid)
    const sampler = sampleRss(target.pid)
    const serverCpu0 = await processCpuSeconds(target.pid)
    const serverMain0 = await processCpuSeconds(target.pid, target.pid)
    const machine0 = await machineBusySeconds()
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    let sampledMax: number | null = null
    try {
      await withTimeout(Promise.all(clients.map(worker)), PHASE_TIMEOUT_MS + 10_000, `${CLIENTS} x ${perClient} calls to ${target.label}`)
    } finally {
      sampledMax = await sampler.stop()
    }
    const wallMs = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    const serverCpu1 = await processCpuSeconds(target.pid)
    const serverMain1 = await processCpuSeconds(target.pid, target.pid)
    const machine1 = await machineBusySeconds()
    const after = await memoryMiB(target.pid)

    const completed = done.reduce((a, b) => a + b, 0)
    const all: number[] = []
    for (let k = 0; k < clients.length; k++) for (let i = 0; i < done[k]; i++) all.push(latencies[k][i])
    const secs = wallMs / 1000
    const generatorCpuPct = ((cpu.user + cpu.system) / 1e6 / secs) * 100
    const serverCpuPct = serverCpu0 === null || serverCpu1 === null ? null : ((serverCpu1 - serverCpu0) / secs) * 100
    const machineBusyPct = machine0 === null || machine1 === null ? null : ((machine1 - machine0) / secs) * 100
    return {
      calls: CLIENTS * perClient,
      completed,
      clientErrors,
      firstError,
      wrongResults,
      wallMs,
      perSec: completed / secs,
      latency: {
        p50: percentile(all, 50),
        p99: percentile(all, 99),
        max: percentile(all, 100),
        mean: all.reduce((a, b) => a + b, 0) / all.length,
      },
      generatorCpuPct,
      serverCpuPct,
      serverMainThreadCpuPct: serverMain0 === null || serverMain1 === null ? null : ((serverMain1 - serverMain0) / secs) * 100,
      machineBusyCpuPct: machineBusyPct,
      otherProcessesCpuPct:
        machineBusyPct === null || serverCpuPct === null ? null : Math.max(0, machineBusyPct - serverCpuPct - generatorCpuPct),
      serverRssBeforeMiB: before?.rss ?? null,
      serverRssAfterMiB: after?.rss ?? null,
      serverRssSampledMaxMiB: sampledMax,
      serverPeakRssMiB: after?.hwm ?? null,
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()))
  }
}

const fmtRun = (r: LoadRun): string =>
  `${r.completed}/${r.calls} calls in ${(r.wallMs / 1000).toFixed(1)} s, ${r.perSec.toFixed(0)} calls/s, ` +
  `p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, max ${r.latency.max.toFixed(1)} ms; ` +
  `generator CPU ${r.generatorCpuPct.toFixed(0)}%, server CPU ${r.serverCpuPct?.toFixed(0) ?? '?'}% (main thread ${r.serverMainThreadCpuPct?.toFixed(0) ?? '?'}%), ` +
  `other processes ${r.otherProcessesCpuPct?.toFixed(0) ?? '?'}%, ` +
  `server RSS ${r.serverRssBeforeMiB?.toFixed(0) ?? '?'} -> ${r.serverRssAfterMiB?.toFixed(0) ?? '?'} MiB (peak ${r.serverPeakRssMiB?.toFixed(0) ?? '?'})` +
  (r.clientErrors + r.wrongResults > 0 ? `; ${r.clientErrors} errors (${r.firstError}), ${r.wrongResults} wrong results` : '')

// ---- the LibVMS server and its logs ----

interface ServerInfo {
  url: string
  pid: number
  paths: string[]
  deployMs: number
}

/** What the server's `scan` prints for one VM (see rpc-server.mjs). */
interface VMScan {
  path: string
  length: number
  init: number
  methods: Record<string, number>
  counts: Record<string, number[]>
  malformed: number
  wrongResults: number
}

interface Scan {
  vms: VMScan[]
  /** The server's memory after a full GC, before the scan, bytes. */
  afterGC: { rss: number; heapUsed: number; external: number; arrayBuffers: number }
  maxRssKiB: number
  scanMs: number
  error?: string
}

/** Asks the server to scan its call logs; resolves with its answer (the next line on its stdout). */
async function scanLogs(server: Started<ServerInfo>): Promise<Scan> {
  const { child } = server
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  try {
    const answer = new Promise<Scan>((resolve, reject) => {
      lines.once('line', (line) => {
        try {
          resolve(JSON.parse(line) as Scan)
        } catch {
          reject(new Error(`the server answered the scan with ${JSON.stringify(line.slice(0, 200))}, not JSON`))
        }
      })
      child.once('exit', (code, signal) => reject(new Error(`the server exited (${code ?? signal}) during the scan`)))
    })
    child.stdin?.write('scan\n')
    const scan = await withTimeout(answer, SCAN_TIMEOUT_MS, 'scanning the call logs')
    if (scan.error) throw new Error(`the server's scan failed: ${scan.error}`)
    return scan
  } finally {
    lines.close()
  }
}

interface LogCheck {
  /** (caller, i) pairs the clients made that no log holds. */
  lost: number
  /** Extra copies of (caller, i) pairs beyond the first. */
  duplicated: number
  /** `hit` entries no client of that VM made: an unknown caller, i out of range, or malformed. */
  unexpected: number
  /** `hit` entries whose logged result is not [caller, i]. */
  wrongLoggedResults: number
  /** Entries other than the init entry, the warm-up `inc` calls and the `hit` calls, or a log shorter/longer than its scan. */
  otherEntries: number
  logEntries: number
}

/** Checks every VM's scan: each (caller, i) of the clients mounted on it exactly once, nothing else. */
function checkLogs(scan: Scan, paths: string[], perClient: number): LogCheck {
  const check: LogCheck = { lost: 0, duplicated: 0, unexpected: 0, wrongLoggedResults: 0, otherEntries: 0, logEntries: 0 }
  if (scan.vms.length !== paths.length) throw new Error(`the server scanned ${scan.vms.length} VMs, expected ${paths.length}`)
  for (const [j, vm] of scan.vms.entries()) {
    if (vm.path !== paths[j]) throw new Error(`scan ${j} is of ${vm.path}, expected ${paths[j]}`)
    const users = new Set(
      Array.from({ length: CLIENTS }, (_, k) => k)
        .filter((k) => k % paths.length === j)
        .map(userOf),
    )
    for (const user of users) {
      const counts = vm.counts[user] ?? []
      for (let i = 0; i < perClient; i++) {
        const n = counts[i] ?? 0
        if (n === 0) check.lost++
        else check.duplicated += n - 1
      }
      for (let i = perClient; i < counts.length; i++) check.unexpected += counts[i]
    }
    for (const [caller, counts] of Object.entries(vm.counts)) {
      if (!users.has(caller)) check.unexpected += counts.reduce((a, b) => a + b, 0)
    }
    check.unexpected += vm.malformed
    check.wrongLoggedResults += vm.wrongResults
    const { hit = 0, inc = 0, ...others } = vm.methods
    const warmup = users.size * SIZES.warmupCallsPerClient
    check.otherEntries += Math.abs(inc - warmup) + Object.values(others).reduce((a, b) => a + b, 0) + Math.abs(vm.init - 1)
    check.otherEntries += Math.abs(vm.length - (vm.init + inc + hit + Object.values(others).reduce((a, b) => a + b, 0)))
    check.logEntries += vm.length
  }
  return check
}

// ---- scenarios ----

interface ScenarioReport {
  run: LoadRun
  check: LogCheck
  deployMs: number
  scanMs: number
  serverMaxRssAfterScanMiB: number
  serverAfterGC: Scan['afterGC']
}

/** A fresh server with `vms` VMs, CLIENTS clients spread evenly over them, then the log check. */
async function libvmsScenario(tag: string, vms: number): Promise<ScenarioReport> {
  const server = await startChild<ServerInfo>(SCRIPTS.server, [run.rootDir, 'debug', String(vms)], `the LibVMS server (${vms} VMs)`)
  try {
    const { url, paths, deployMs } = server.info
    log(`${tag}: server pid ${server.pid} at ${url}, ${paths.length} VMs deployed in ${deployMs.toFixed(0)} ms`)
    const r = await load(
      { label: `${vms} VMs`, pid: server.pid, urlOf: (k) => `${url}${paths[k % paths.length]}`, libvms: true },
      SIZES.callsPerClient,
    )
    log(`${tag}: ${fmtRun(r)}`)
    const scan = await scanLogs(server)
    const check = checkLogs(scan, paths, SIZES.callsPerClient)
    const heapMiB = scan.afterGC.heapUsed / 2 ** 20
    log(
      `${tag}: server heap after a full GC ${heapMiB.toFixed(0)} MiB; logs scanned in ${scan.scanMs.toFixed(0)} ms: ${check.logEntries} entries, lost ${check.lost}, duplicated ${check.duplicated}, ` +
        `unexpected ${check.unexpected}, wrong logged results ${check.wrongLoggedResults}, other entries ${check.otherEntries}`,
    )
    return { run: r, check, deployMs, scanMs: scan.scanMs, serverMaxRssAfterScanMiB: scan.maxRssKiB / 1024, serverAfterGC: scan.afterGC }
  } finally {
    await stopChild(server.child)
  }
}

async function echoBaseline(tag: string, echo: Started<{ url: string; pid: number }>, perClient = SIZES.callsPerClient): Promise<LoadRun> {
  const r = await load({ label: 'the echo server', pid: echo.pid, urlOf: () => echo.info.url, libvms: false }, perClient)
  log(`${tag}: echo: ${fmtRun(r)}`)
  return r
}

/** True if the run and its log check show no lost, duplicated, failed or wrong call. */
const clean = (s: ScenarioReport): boolean =>
  s.run.completed === s.run.calls &&
  s.run.clientErrors === 0 &&
  s.run.wrongResults === 0 &&
  s.check.lost === 0 &&
  s.check.duplicated === 0 &&
  s.check.unexpected === 0 &&
  s.check.wrongLoggedResults === 0 &&
  s.check.otherEntries === 0

/** round2, keeping null (a figure /proc could not give). */
const orNull2 = (x: number | null): number | null => (x === null ? null : round2(x))

function latencyOf(r: LoadRun): Record<string, number> {
  return { p50: round3(r.latency.p50), p99: round3(r.latency.p99), max: round3(r.latency.max), mean: round3(r.latency.mean) }
}

function baselineReport(r: LoadRun, serverPeakRssMiB: number | null): Record<string, unknown> {
  return {
    calls: r.completed,
    throughput_calls_per_sec: round2(r.perSec),
    latency_ms: latencyOf(r),
    wall_ms: round2(r.wallMs),
    server_cpu_pct: orNull2(r.serverCpuPct),
    server_main_thread_cpu_pct: orNull2(r.serverMainThreadCpuPct),
    machine_busy_cpu_pct: orNull2(r.machineBusyCpuPct),
    other_processes_cpu_pct: orNull2(r.otherProcessesCpuPct),
    generator_cpu_pct: round2(r.generatorCpuPct),
    server_peak_rss_mib: orNull2(serverPeakRssMiB),
    note: 'bench/echo-server.mjs (plain ws + JSON.parse, answers result 1), the same generator (RPCClient x100, one call at a time)',
  }
}

function scenarioReport(vms: number, s: ScenarioReport, echo: LoadRun): Record<string, unknown> {
  const r = s.run
  return {
    vms,
    clients: CLIENTS,
    clients_per_vm: CLIENTS / vms,
    calls_per_client: SIZES.callsPerClient,
    calls: r.calls,
    completed: r.completed,
    lost: s.check.lost,
    duplicated: s.check.duplicated,
    unexpected_log_entries: s.check.unexpected,
    wrong_logged_results: s.check.wrongLoggedResults,
    other_log_entries: s.check.otherEntries,
    client_errors: r.clientErrors,
    client_wrong_results: r.wrongResults,
    ...(r.firstError ? { first_error: r.firstError } : {}),
    log_entries: s.check.logEntries,
    ok: clean(s),
    throughput_calls_per_sec: round2(r.perSec),
    latency_ms: latencyOf(r),
    wall_ms: round2(r.wallMs),
    server_peak_rss_mib: orNull2(r.serverPeakRssMiB),
    server_rss_mib: {
      before_load: orNull2(r.serverRssBeforeMiB),
      sampled_max: orNull2(r.serverRssSampledMaxMiB),
      after_load: orNull2(r.serverRssAfterMiB),
      max_after_scan: round2(s.serverMaxRssAfterScanMiB),
    },
    server_after_load_and_gc_mib: {
      rss: round2(s.serverAfterGC.rss / 2 ** 20),
      heap_used: round2(s.serverAfterGC.heapUsed / 2 ** 20),
      external: round2(s.serverAfterGC.external / 2 ** 20),
      array_buffers: round2(s.serverAfterGC.arrayBuffers / 2 ** 20),
    },
    server_cpu_pct: orNull2(r.serverCpuPct),
    server_main_thread_cpu_pct: orNull2(r.serverMainThreadCpuPct),
    machine_busy_cpu_pct: orNull2(r.machineBusyCpuPct),
    other_processes_cpu_pct: orNull2(r.otherProcessesCpuPct),
    generator_cpu_pct: round2(r.generatorCpuPct),
    deploy_ms: round2(s.deployMs),
    log_scan_ms: round2(s.scanMs),
    baseline: baselineReport(echo, echo.serverPeakRssMiB),
    ratio_to_baseline: {
      throughput: round3(r.perSec / echo.perSec),
      p50: round3(r.latency.p50 / echo.latency.p50),
      p99: round3(r.latency.p99 / echo.latency.p99),
      max: round3(r.latency.max / echo.latency.max),
    },
  }
}

// ---- main ----

async function main(): Promise<boolean> {
  log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)} (${CALLS} calls per scenario), temp dir ${run.rootDir}`)
  let echo: Started<{ url: string; pid: number }> | null = null
  try {
    echo = await startChild<{ url: string; pid: number }>(SCRIPTS.echo, [], 'the echo server')
    log(`echo server pid ${echo.pid} at ${echo.info.url}`)
    await echoBaseline('generator warm-up (not reported)', echo, SIZES.generatorWarmupCallsPerClient)

    const echoA = await echoBaseline('one VM', echo)
    const oneVM = await libvmsScenario('one VM', 1)
    const echoB = await echoBaseline(`${MANY_VMS} VMs`, echo)
    const manyVMs = await libvmsScenario(`${MANY_VMS} VMs`, MANY_VMS)

    const ok = clean(oneVM) && clean(manyVMs)
    const out = {
      ...machine(),
      bench_scale: SCALE,
      sizes: { ...SIZES, callsPerScenario: CALLS },
      generator: `${CLIENTS} RPCClients in the bench process (one connection each, user c<k>), each awaiting one hit(i) at a time; ${SIZES.warmupCallsPerClient} inc calls each first (not timed)`,
      generator_max_rss_mib: round2(process.resourceUsage().maxRSS / 1024),
      ok,
      results: {
        oneVM: scenarioReport(1, oneVM, echoA),
        manyVMs: scenarioReport(MANY_VMS, manyVMs, echoB),
      },
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
    return ok
  } finally {
    if (echo) await stopChild(echo.child)
    await run.end()
  }
}

if (!(await main())) {
  log('FAILED: calls were lost, duplicated, failed or answered wrongly (see the JSON above)')
  process.exitCode = 1
}
