/**
 * Production-mode benchmark: calls/s of VMs in production mode (callers are Ed25519 keys, every call
 * signed and its signature checked) beside the same VMs in debug mode (callers are user ids taken on
 * trust), measured in the same run, in interleaved rounds.
 *
 *   npm run build && npx tsx bench/production.bench.ts                   (full size)
 *   npm run build && BENCH_SCALE=0.05 npx tsx bench/production.bench.ts  (quick smoke run)
 *
 * Figures (each the median of 3 rounds; every round measures debug and production once, the order
 * alternating from round to round):
 *   vmCore64InFlight  in this process, a fresh VM (`inc`) per mode and round, 64 calls in flight via
 *                     executeCall. Production calls are signed before the timed section (signing is
 *                     the client's cost, reported on its own), so the figure is the VM's own cost,
 *                     signature checks included.
 *   rpc16Clients      16 RPCClients in this process, each awaiting one `inc` at a time, against
 *                     bench/rpc-server.mjs in a child process (a fresh server per mode and round);
 *                     production clients sign each call. CPU use of both processes is recorded.
 *   replayVerify      Verifier.verify(callLog, filesArchive) of the logs written by vmCore64InFlight
 *                     (the same number of calls in each mode), in this process; production replay
 *                     checks every signature.
 *
 * Prints one JSON object to stdout; progress goes to stderr. Every loop is bounded in count and
 * time, the temp dir is removed, every child is ended by its pid, and a watchdog ends the whole run
 * after 5 minutes.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { encodeCallPayload, type SignedCall, signCallPayload } from '../src/auth/signed-call.js'
import { callerIdOf, generateKeyPair, RPCClient, Verifier, VM } from '../src/index.js'
import { processCpuSeconds, type Started, startChild, stopChild, withTimeout } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { type Figure, figure, log, machine, median, readSizing, round2, round3 } from './bench-stats.js'

type Mode = 'debug' | 'production'

const ROUNDS = 3
const CONCURRENCY = 64
const CLIENTS = 16
const CODE = 'let n = 0; exports.inc = () => ++n'
const SERVER_SCRIPT = fileURLToPath(new URL('./rpc-server.mjs', import.meta.url))
/** Longest any one timed phase may take. */
const PHASE_TIMEOUT_MS = 60_000

// ---- sizes ----

const { scale: SCALE, scaled } = readSizing()

const SIZES = {
  vmCoreCalls: scaled(20_000, 500, CONCURRENCY),
  concurrency: CONCURRENCY,
  /** Callers of the in-process figure: call i is made by caller i % callers (its own key and nonce). */
  vmCoreCallers: CONCURRENCY,
  rpcCalls: scaled(20_000, 800, CLIENTS),
  clients: CLIENTS,
  warmupCalls: scaled(2000, 320, CLIENTS),
}

// ---- helpers ----

/**
 * This run: its temp root dir (run.rootDir, fresh subdirs from run.freshDir), a watchdog that gives up
 * (children ended, temp dir removed, exit 1) after 5 minutes, and the cleanup (run.end(), in main).
 */
const run = await startBenchRun('libvms-production-bench-', 5 * 60_000)

/** The modes in the order round `r` measures them: debug first in rounds 1 and 3, production first in round 2. */
const modesFor = (r: number): Mode[] => (r % 2 === 0 ? ['debug', 'production'] : ['production', 'debug'])

const fmtRate = (perSec: number): string => `${perSec.toFixed(0)} calls/s`

// ---- in process: 64 calls in flight ----

type Request = Parameters<VM['executeCall']>[0]

async function deployFresh(mode: Mode, label: string): Promise<VM> {
  const vm = new VM(CODE, { auth: mode })
  await vm.deploy({ dir: join(await run.freshDir(`${label}-${mode}`), 'vm'), title: `${label}-${mode}` })
  if (vm.auth !== mode) throw new Error(`the VM runs in ${vm.auth} mode, expected ${mode}`)
  return vm
}

/**
 * The requests for `n` calls of `inc` on `vm`, made by `callers` callers in turn (call i by caller
 * i % callers). Debug: user ids. Production: each caller has a key pair and a nonce, and signs its
 * calls with counters 1, 2, ... in the order they will be issued. Returns the seconds spent encoding
 * and signing payloads (0 in debug mode).
 */
function prepareRequests(vm: VM, mode: Mode, n: number, callers: number): { requests: Request[]; signSecs: number } {
  if (mode === 'debug') {
    return { requests: Array.from({ length: n }, (_, i) => ({ methodName: 'inc', userId: `user-${i % callers}` })), signSecs: 0 }
  }
  const keys = Array.from({ length: callers }, () => {
    const keyPair = generateKeyPair()
    return { keyPair, id: callerIdOf(keyPair), nonce: randomBytes(16).toString('hex') }
  })
  const callLog = vm.callLog.key
  const signed = new Array<SignedCall>(n)
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const key = keys[i % callers]
    const payload = encodeCallPayload({
      callLog,
      method: 'inc',
      argsJson: '[]',
      nonce: key.nonce,
      counter: Math.floor(i / callers) + 1,
      clientNonce: randomBytes(16).toString('hex'),
    })
    signed[i] = signCallPayload(payload, key.keyPair.secretKey)
  }
  const signSecs = (performance.now() - t0) / 1000
  return { requests: signed.map((s, i) => ({ methodName: 'inc', userId: keys[i % callers].id, signed: s })), signSecs }
}

/**
 * Issues `requests` in order, keeping `concurrency` in flight; bounded by PHASE_TIMEOUT_MS (no call is
 * issued after the deadline). Resolves with the seconds taken and the highest result (inc's counter).
 */
async function pooledCalls(vm: VM, requests: Request[], concurrency: number, label: string): Promise<{ secs: number; highest: number }> {
  const total = requests.length
  const deadline = performance.now() + PHASE_TIMEOUT_MS
  let issued = 0
  let highest = 0
  const worker = async (): Promise<void> => {
    while (issued < total && performance.now() < deadline) {
      const r = (await vm.executeCall(requests[issued++])) as number
      if (r > highest) highest = r
    }
  }
  const t0 = performance.now()
  await withTimeout(Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker)), PHASE_TIMEOUT_MS + 5000, label)
  const secs = (performance.now() - t0) / 1000
  if (issued < total) throw new Error(`${label}: only ${issued} of ${total} calls were issued within ${PHASE_TIMEOUT_MS} ms`)
  return { secs, highest }
}

interface CoreRun {
  perSec: number
  /** Client-side cost of building and signing one call's payload, µs (production only). */
  signUsPerCall: number | null
  /** The VM, still open: its log holds the init entry and the calls (for replayVerify). */
  vm: VM
}

/** A fresh VM in `mode`, `n` calls of `inc` with 64 in flight. The VM is left open (closed by the caller). */
async function coreRun(mode: Mode, n: number, label: string): Promise<CoreRun> {
  const vm = await deployFresh(mode, label)
  try {
    const { requests, signSecs } = prepareRequests(vm, mode, n, SIZES.vmCoreCallers)
    const { secs, highest } = await pooledCalls(vm, requests, CONCURRENCY, `${n} ${mode} calls in flight`)
    if (highest !== n) throw new Error(`after ${n} ${mode} calls inc reached ${highest}: calls were lost or doubled`)
    if (vm.callLog.length !== n + 1) throw new Error(`the ${mode} log has ${vm.callLog.length} entries, expected ${n + 1}`)
    return { perSec: n / secs, signUsPerCall: mode === 'production' ? (signSecs * 1e6) / n : null, vm }
  } catch (err) {
    await vm.close()
    throw err
  }
}

/** Times Verifier.verify of `vm`'s log and archive; resolves with calls verified per second. */
async function replayVerify(vm: VM, calls: number, mode: Mode): Promise<number> {
  const dir = await run.freshDir(`verify-${mode}`)
  const t0 = performance.now()
  const report = await withTimeout(Verifier.verify(vm.callLog, vm.filesArchive, { dir }), PHASE_TIMEOUT_MS, `verifying the ${mode} log`)
  const secs = (performance.now() - t0) / 1000
  if (report.calls !== calls || report.failedCalls !== 0) {
    throw new Error(`verifying the ${mode} log: ${report.calls} calls (${report.failedCalls} failed), expected ${calls} calls, none failed`)
  }
  return calls / secs
}

// ---- over RPC: a server child, 16 clients here ----

interface ServerInfo {
  url: string
  pid: number
  auth: Mode
  deployMs: number
}

interface Throughput {
  perSec: number
  /** CPU used by this (load generator) process and by the server, as % of one core over the run. */
  clientCpuPct: number
  serverCpuPct: number | null
}

/** `count` RPCClients on `url`: debug clients give a user id, production clients a key pair each. */
async function openClients(url: string, mode: Mode, count: number): Promise<RPCClient[]> {
  const clients: RPCClient[] = []
  try {
    for (let i = 0; i < count; i++) {
      const client = new RPCClient()
      clients.push(client)
      await withTimeout(
        client.connect(url, mode === 'debug' ? { user: `user-${i}` } : { keyPair: generateKeyPair() }),
        10_000,
        `connecting client ${i} to ${url}`,
      )
      if (client.backendInfo?.auth !== mode)
        throw new Error(`the server at ${url} runs in ${client.backendInfo?.auth} mode, expected ${mode}`)
    }
    return clients
  } catch (err) {
    await closeClients(clients)
    throw err
  }
}

async function closeClients(clients: RPCClient[]): Promise<void> {
  await withTimeout(Promise.all(clients.map((c) => c.close())), 10_000, 'closing the clients')
}

/** Each client awaits one `inc` at a time until `total` calls have been made across all of them. */
async function clientsRun(clients: RPCClient[], total: number, serverPid: number, label: string): Promise<Throughput> {
  const deadline = performance.now() + PHASE_TIMEOUT_MS
  let issued = 0
  const worker = async (client: RPCClient): Promise<void> => {
    while (issued < total && performance.now() < deadline) {
      issued++
      await client.call('inc')
    }
  }
  const serverCpu0 = await processCpuSeconds(serverPid)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await withTimeout(Promise.all(clients.map(worker)), PHASE_TIMEOUT_MS + 5000, label)
  const secs = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const serverCpu1 = await processCpuSeconds(serverPid)
  if (issued < total) throw new Error(`${label}: only ${issued} of ${total} calls were made within ${PHASE_TIMEOUT_MS} ms`)
  return {
    perSec: total / secs,
    clientCpuPct: ((cpu.user + cpu.system) / 1e6 / secs) * 100,
    serverCpuPct: serverCpu0 === null || serverCpu1 === null ? null : ((serverCpu1 - serverCpu0) / secs) * 100,
  }
}

/** A fresh server child in `mode`: warm-up calls, then SIZES.rpcCalls timed calls from 16 clients, then a counter check. */
async function rpcRun(mode: Mode, tag: string): Promise<Throughput> {
  const server: Started<ServerInfo> = await startChild<ServerInfo>(SERVER_SCRIPT, [run.rootDir, mode], `the ${mode} server`)
  try {
    const url = `${server.info.url}/`
    if (server.info.auth !== mode) throw new Error(`the server child runs in ${server.info.auth} mode, expected ${mode}`)
    log(`${tag} ${mode} server pid ${server.pid} at ${url} (deploy ${server.info.deployMs.toFixed(1)} ms); warming up`)
    const clients = await openClients(url, mode, CLIENTS)
    let result: Throughput
    try {
      await clientsRun(clients, SIZES.warmupCalls, server.pid, `${SIZES.warmupCalls} ${mode} warm-up calls`)
      result = await clientsRun(clients, SIZES.rpcCalls, server.pid, `${SIZES.rpcCalls} ${mode} calls from ${CLIENTS} clients`)
    } finally {
      await closeClients(clients)
    }
    const [checker] = await openClients(url, mode, 1)
    try {
      const expected = SIZES.warmupCalls + SIZES.rpcCalls + 1
      const n = await withTimeout(checker.call('inc'), 10_000, 'the counter check')
      if (n !== expected) throw new Error(`inc returned ${String(n)}, expected ${expected}: calls were lost or doubled`)
    } finally {
      await closeClients([checker])
    }
    return result
  } finally {
    await stopChild(server.child)
  }
}

// ---- results ----

interface Pair {
  unit: string
  debug: Figure
  production: Figure
  /** median(production) / median(debug). */
  ratio_production_to_debug: number
  /** production / debug within each round. */
  ratio_runs: number[]
  [extra: string]: unknown
}

function pair(debugRuns: number[], productionRuns: number[], unit: string, extra: Record<string, unknown> = {}): Pair {
  return {
    unit,
    debug: figure(debugRuns, unit),
    production: figure(productionRuns, unit),
    ratio_production_to_debug: round3(median(productionRuns) / median(debugRuns)),
    ratio_runs: productionRuns.map((p, i) => round3(p / debugRuns[i])),
    ...extra,
  }
}

/** µs per call of each mode (1e6 / median rate) and what production adds. */
function usPerCall(debugRuns: number[], productionRuns: number[]): { debug: number; production: number; production_extra: number } {
  const d = 1e6 / median(debugRuns)
  const p = 1e6 / median(productionRuns)
  return { debug: round2(d), production: round2(p), production_extra: round2(p - d) }
}

// ---- main ----

async function main(): Promise<void> {
  log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)}, temp dir ${run.rootDir}`)
  try {
    // Warm-up in this process: both modes, calls and verification.
    for (const mode of ['debug', 'production'] as const) {
      const warm = await coreRun(mode, SIZES.warmupCalls, 'warmup')
      try {
        await replayVerify(warm.vm, SIZES.warmupCalls, mode)
      } finally {
        await warm.vm.close()
      }
    }
    log('warmed up')

    const runs = {
      core: { debug: [] as number[], production: [] as number[] },
      signUs: [] as number[],
      verify: { debug: [] as number[], production: [] as number[] },
      rpc: { debug: [] as Throughput[], production: [] as Throughput[] },
    }

    for (let r = 0; r < ROUNDS; r++) {
      const tag = `round ${r + 1}/${ROUNDS}`
      for (const mode of modesFor(r)) {
        const core = await coreRun(mode, SIZES.vmCoreCalls, `core-r${r}`)
        try {
          runs.core[mode].push(core.perSec)
          if (core.signUsPerCall !== null) runs.signUs.push(core.signUsPerCall)
          const signing = core.signUsPerCall === null ? '' : ` (signing beforehand: ${core.signUsPerCall.toFixed(1)} µs/call)`
          log(`${tag} vmCore64InFlight ${mode}: ${fmtRate(core.perSec)}${signing}`)
          const verified = await replayVerify(core.vm, SIZES.vmCoreCalls, mode)
          runs.verify[mode].push(verified)
          log(`${tag} replayVerify ${mode}: ${fmtRate(verified)}`)
        } finally {
          await core.vm.close()
        }
      }
      for (const mode of modesFor(r)) {
        const t = await rpcRun(mode, tag)
        runs.rpc[mode].push(t)
        log(
          `${tag} rpc16Clients ${mode}: ${fmtRate(t.perSec)} (generator CPU ${t.clientCpuPct.toFixed(0)}%, server CPU ${t.serverCpuPct?.toFixed(0) ?? '?'}%)`,
        )
      }
    }

    const rpcRates = (mode: Mode): number[] => runs.rpc[mode].map((t) => t.perSec)
    const cpu = (mode: Mode) => ({
      generator_cpu_pct: figure(
        runs.rpc[mode].map((t) => t.clientCpuPct),
        '% of one core',
      ),
      server_cpu_pct: figure(
        runs.rpc[mode].map((t) => t.serverCpuPct ?? Number.NaN),
        '% of one core',
      ),
    })

    const results = {
      vmCore64InFlight: pair(runs.core.debug, runs.core.production, 'calls/s', {
        calls: SIZES.vmCoreCalls,
        concurrency: CONCURRENCY,
        callers: SIZES.vmCoreCallers,
        timed:
          'in this process, a fresh VM per mode and round: executeCall of inc with 64 in flight; debug calls carry a user id, production calls a caller key and a payload signed before the timed section',
        vm_us_per_call: usPerCall(runs.core.debug, runs.core.production),
        client_signing_us_per_call: {
          ...figure(runs.signUs, 'µs', round3),
          timed: 'encodeCallPayload + signCallPayload (Ed25519) for each call, before the timed section, in this process',
        },
      }),
      rpc16Clients: pair(rpcRates('debug'), rpcRates('production'), 'calls/s', {
        calls: SIZES.rpcCalls,
        clients: CLIENTS,
        warmup_calls: SIZES.warmupCalls,
        generator: `RPCClient x${CLIENTS} in the bench process, each awaiting one inc at a time (debug: {user}, production: {keyPair}, signing every call); server: bench/rpc-server.mjs in a child process, a fresh one per mode and round`,
        cpu: { debug: cpu('debug'), production: cpu('production') },
        us_per_call: usPerCall(rpcRates('debug'), rpcRates('production')),
      }),
      replayVerify: pair(runs.verify.debug, runs.verify.production, 'calls/s', {
        calls: SIZES.vmCoreCalls,
        log_entries: SIZES.vmCoreCalls + 1,
        timed:
          'Verifier.verify(vm.callLog, vm.filesArchive) of the logs vmCore64InFlight wrote (the same calls in each mode), in this process; production replay checks every signature',
        us_per_call: usPerCall(runs.verify.debug, runs.verify.production),
      }),
    }

    const out = { ...machine(), bench_scale: SCALE, sizes: SIZES, results }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    await run.end()
  }
}

await main()
