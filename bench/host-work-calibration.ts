/**
 * Host-work calibration: how much host wall time each kind of System.files request costs, next to
 * what a compute tick costs on the same machine, so a cost schedule in ticks can be calibrated.
 *
 *   npx tsx bench/host-work-calibration.ts                  (full size)
 *   BENCH_SCALE=0.1 npx tsx bench/host-work-calibration.ts  (quick smoke run)
 *
 * Prints one JSON object to stdout; progress goes to stderr. Every figure is the median of 3 rounds;
 * each round deploys its own fresh VMs (in fresh dirs), so no round sees another's archive:
 *   core   compute (computeMsPerTick), the per-request base (stat of '/'), stat of a file, reads of a
 *          1 MiB and of a 1-byte file, the marshalling of large request arguments, recursive readdir.
 *   writes writes (1 MiB to 10 rotating paths, 64 KiB and 16-byte files to distinct paths), mkdir,
 *          unlink and recursive rmdir. Each is timed twice: once rolled back (the call throws after
 *          its requests, so nothing is committed: the requests alone) and once for real (requests
 *          and the commit at the end of the call); the difference is the commit.
 *   big    a folder of 10,000 files written by earlier calls: readdir of it, stat in the larger
 *          archive, history() of its ~10,000 changes.
 *
 * Each timed figure is a call's wall time (executeCall until it resolves, the store of its log entry
 * and of its file changes included) less the wall time of a no-op call on the same VM, divided by
 * the number of requests (or KiB, or entries). Per-KiB figures subtract the per-request base of the
 * same round. Beside every figure: its implied ticks at the nominal 1 ms per tick, the ticks it costs
 * at this machine's measured ms per tick, and the ticks the sandbox charged for it (the call's logged
 * cost, per unit: the VM's own compute, such as its side of the marshalling, plus whatever host
 * work the sandbox charges). A call's cost is a whole number of ticks, so a per-unit charge is exact
 * only to 1/units, and a difference of two (a per-KiB charge) can come out slightly negative.
 *
 * Every loop is bounded in count; temp dirs are removed; every VM is closed, so the process exits
 * by itself (a watchdog ends the run after 6 minutes).
 */
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { VM } from '../src/index.js'
import { startBenchRun } from './bench-run.js'
import { type Figure, figure, log, machine, median, readSizing } from './bench-stats.js'

const ROUNDS = 3
const KiB = 1024
const MiB = 1024 * KiB
const LIMITS = { computeTicks: 1_000_000_000, memoryBytes: 256 * MiB }

/** The VM script: every export runs a bounded loop of one kind of request. */
const CODE = `
function rollBack (requests) {
  const err = new Error('rolled back after ' + requests + ' requests')
  err.name = 'RolledBack'
  throw err
}
exports.noop = () => 0
exports.spin = (n) => {
  let x = 0
  for (let i = 0; i < n; i++) x = (x * 31 + i) % 1000003
  return x
}
exports.stat = async (path, n) => {
  for (let i = 0; i < n; i++) await System.files.stat(path)
  return n
}
exports.write = (path, size) => System.files.writeFile(path, 'x'.repeat(size))
exports.read = async (path, n, encoding) => {
  let total = 0
  for (let i = 0; i < n; i++) total += (await System.files.readFile(path, encoding)).length
  return total
}
exports.refusedWrite = async (size, n, bytes) => {
  const data = bytes ? new Uint8Array(size) : 'x'.repeat(size)
  let refused = 0
  for (let i = 0; i < n; i++) {
    try {
      await System.files.writeFile('/', data)
    } catch (err) {
      if (err.name === 'InvalidPath') refused++
    }
  }
  if (refused !== n) throw new Error('only ' + refused + ' of ' + n + ' writes to / were refused')
  return refused
}
exports.writeRotating = async (size, n, paths, rollback) => {
  const data = 'x'.repeat(size)
  for (let i = 0; i < n; i++) await System.files.writeFile('/w' + (i % paths), data)
  if (rollback) rollBack(n)
}
exports.writeFiles = async (dir, size, start, n, rollback) => {
  const data = 'x'.repeat(size)
  if (start === 0) await System.files.mkdir(dir)
  for (let i = start; i < start + n; i++) await System.files.writeFile(dir + '/f' + i, data)
  if (rollback) rollBack(n)
}
exports.mkdirs = async (dir, n, rollback) => {
  await System.files.mkdir(dir)
  for (let i = 0; i < n; i++) await System.files.mkdir(dir + '/d' + i)
  if (rollback) rollBack(n)
}
exports.unlinks = async (dir, n, rollback) => {
  for (let i = 0; i < n; i++) await System.files.unlink(dir + '/f' + i)
  if (rollback) rollBack(n)
}
exports.rmdir = async (path, rollback) => {
  await System.files.rmdir(path, { recursive: true })
  if (rollback) rollBack(1)
}
exports.tree = async (dirs, files) => {
  await System.files.mkdir('/t')
  for (let d = 0; d < dirs; d++) {
    await System.files.mkdir('/t/d' + d)
    for (let f = 0; f < files; f++) await System.files.writeFile('/t/d' + d + '/f' + f, 'x')
  }
}
exports.readdir = async (path, n, recursive) => {
  let total = 0
  for (let i = 0; i < n; i++) total += (await System.files.readdir(path, recursive ? { recursive: true } : undefined)).length
  return total
}
exports.history = async (n) => {
  let total = 0
  for (let i = 0; i < n; i++) total += (await System.files.history()).length
  return total
}
`

// ---- sizes ----

const { scale: SCALE, scaled } = readSizing()

const SIZES = {
  spinIterations: scaled(10_000_000, 500_000, 100_000),
  statRequests: scaled(3000, 200, 100),
  bigReadBytes: MiB,
  bigReads: scaled(100, 10, 10),
  bigBinaryReads: scaled(3, 2),
  smallReads: scaled(2000, 200, 100),
  argsBytes: MiB,
  argsRequests: scaled(50, 10, 10),
  argsBinaryRequests: scaled(3, 2),
  smallArgsRequests: scaled(2000, 200, 100),
  bigWriteBytes: MiB,
  bigWrites: scaled(50, 10, 10),
  bigWritePaths: 10,
  mediumWriteBytes: 64 * KiB,
  mediumWrites: scaled(200, 20, 10),
  smallWriteBytes: 16,
  /** Also the files of the folder rmdir removes. */
  smallWrites: scaled(5000, 200, 100),
  mkdirs: scaled(1000, 100, 100),
  unlinks: scaled(1000, 100, 100),
  treeDirs: 10,
  treeFilesPerDir: scaled(100, 10, 10),
  treeReaddirs: 3,
  bigFolderFiles: scaled(10_000, 500, 100),
  bigFolderCalls: 4,
  bigFolderReaddirs: 1,
  historyReads: 3,
}

// ---- helpers ----

/** This run: its temp root (fresh subdirs from run.freshDir), a 6-minute watchdog, and the cleanup (run.end(), in main). */
const run = await startBenchRun('libvms-host-work-', 6 * 60_000)

/** One timed call: its wall time and the ticks its log entry charged. */
interface Timed {
  ms: number
  ticks: number
}

/** One round's figure: wall µs per unit, and the ticks charged per unit. */
interface Sample {
  us: number
  ticks: number
}

/** A fresh VM in a fresh dir, with `overheadMs`: the median wall time of 5 no-op calls on it. */
async function deployFresh(label: string): Promise<{ vm: VM; overheadMs: number }> {
  const vm = new VM(CODE, { limits: LIMITS })
  await vm.deploy({ dir: join(await run.freshDir(label), 'vm'), title: label })
  const noops: number[] = []
  for (let i = 0; i < 5; i++) noops.push((await timedCall(vm, 'noop', [])).ms)
  return { vm, overheadMs: median(noops) }
}

/**
 * Runs one call; resolves with its wall time and logged cost. A call made with `rollback` must end
 * with the script's RolledBack error (its changes are dropped, its entry is logged).
 */
async function timedCall(vm: VM, methodName: string, args: unknown[], rollback = false): Promise<Timed> {
  const t0 = performance.now()
  try {
    await vm.executeCall({ methodName, args })
    if (rollback) throw new Error(`${methodName} was expected to roll back, but it returned`)
  } catch (err) {
    if (!rollback || (err as Error).name !== 'RolledBack') throw err
  }
  const ms = performance.now() - t0
  const entry = await vm.callLog.get(vm.callLog.length - 1)
  return { ms, ticks: entry.cost }
}

/** `call` per unit, `units` of them, its VM's no-op overhead removed. */
function perUnit(call: Timed, units: number, overheadMs: number): Sample {
  return { us: (Math.max(0, call.ms - overheadMs) * 1000) / units, ticks: call.ticks / units }
}

/** (a - b) / divisor, for wall time and ticks alike. */
function marginal(a: Sample, b: Sample, divisor: number): Sample {
  return { us: (a.us - b.us) / divisor, ticks: (a.ticks - b.ticks) / divisor }
}

/** Three significant digits (ticks span many orders of magnitude). */
function sig3(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x
  return Number(x.toPrecision(3))
}

const fmt = (s: Sample, unit: string): string => `${s.us.toFixed(2)} ${unit} (${sig3(s.ticks)} ticks charged)`

// ---- rounds: each returns its samples ----

type Samples = Record<string, Sample>

/** Compute, the request base, stat, reads, argument marshalling and a recursive readdir, on one fresh VM. */
async function coreRound(tag: string): Promise<{ samples: Samples; computeMsPerTick: number; iterationsPerTick: number }> {
  const { vm, overheadMs } = await deployFresh('core')
  try {
    const s: Samples = {}
    const spin = await timedCall(vm, 'spin', [SIZES.spinIterations])
    const computeMsPerTick = Math.max(0, spin.ms - overheadMs) / spin.ticks
    const iterationsPerTick = SIZES.spinIterations / spin.ticks
    log(`${tag} computeMsPerTick ${computeMsPerTick.toFixed(4)} (${spin.ticks} ticks in ${spin.ms.toFixed(0)} ms)`)

    s.request = perUnit(await timedCall(vm, 'stat', ['/', SIZES.statRequests]), SIZES.statRequests, overheadMs)
    log(`${tag} requestUs ${fmt(s.request, 'µs')}`)

    await timedCall(vm, 'write', ['/small', 1])
    await timedCall(vm, 'write', ['/big', SIZES.bigReadBytes])
    s.statFile = perUnit(await timedCall(vm, 'stat', ['/small', SIZES.statRequests]), SIZES.statRequests, overheadMs)
    log(`${tag} statFileUs ${fmt(s.statFile, 'µs')}`)

    const bigKiB = SIZES.bigReadBytes / KiB
    await timedCall(vm, 'read', ['/big', 1, 'utf8']) // warm-up: the blob's blocks read once
    const bigRead = perUnit(await timedCall(vm, 'read', ['/big', SIZES.bigReads, 'utf8']), SIZES.bigReads, overheadMs)
    s.readFilePerKiB = marginal(bigRead, s.request, bigKiB)
    log(`${tag} readFileUsPerKiB ${fmt(s.readFilePerKiB, 'µs')}`)
    const binaryRead = perUnit(await timedCall(vm, 'read', ['/big', SIZES.bigBinaryReads, 'binary']), SIZES.bigBinaryReads, overheadMs)
    s.readFileBinaryPerKiB = marginal(binaryRead, s.request, bigKiB)
    log(`${tag} readFileBinaryUsPerKiB ${fmt(s.readFileBinaryPerKiB, 'µs')}`)
    s.readSmallFile = perUnit(await timedCall(vm, 'read', ['/small', SIZES.smallReads, 'utf8']), SIZES.smallReads, overheadMs)
    log(`${tag} readSmallFileUs ${fmt(s.readSmallFile, 'µs')}`)

    // writeFile('/', data) is refused right after the path check, whatever the data (a constant
    // error): what is left is moving the arguments out of the VM and decoding them on the host.
    const argsKiB = SIZES.argsBytes / KiB
    const refused = async (size: number, n: number, bytes: boolean): Promise<Sample> =>
      perUnit(await timedCall(vm, 'refusedWrite', [size, n, bytes]), n, overheadMs)
    s.refusedRequest = await refused(1, SIZES.smallArgsRequests, false)
    s.argsPerKiB = marginal(await refused(SIZES.argsBytes, SIZES.argsRequests, false), s.refusedRequest, argsKiB)
    log(`${tag} argsUsPerKiB ${fmt(s.argsPerKiB, 'µs')}`)
    const smallBytes = await refused(1, SIZES.smallArgsRequests, true)
    s.argsBinaryPerKiB = marginal(await refused(SIZES.argsBytes, SIZES.argsBinaryRequests, true), smallBytes, argsKiB)
    log(`${tag} argsBinaryUsPerKiB ${fmt(s.argsBinaryPerKiB, 'µs')}`)

    await timedCall(vm, 'tree', [SIZES.treeDirs, SIZES.treeFilesPerDir])
    const treeEntries = SIZES.treeDirs * (1 + SIZES.treeFilesPerDir)
    await timedCall(vm, 'readdir', ['/t', 1, true]) // warm-up
    const tree = await timedCall(vm, 'readdir', ['/t', SIZES.treeReaddirs, true])
    s.readdirRecursivePerEntry = perUnit(tree, SIZES.treeReaddirs * treeEntries, overheadMs)
    log(`${tag} readdirRecursiveUsPerEntry ${fmt(s.readdirRecursivePerEntry, 'µs')}`)
    return { samples: s, computeMsPerTick, iterationsPerTick }
  } finally {
    await vm.close()
  }
}

/**
 * Writes, mkdir, unlink and rmdir on one fresh VM, each rolled back once (requests only), then made
 * for real (requests and commit). `base` is the request base of the same round.
 */
async function writesRound(tag: string, base: Sample): Promise<Samples> {
  const { vm, overheadMs } = await deployFresh('writes')
  try {
    const s: Samples = {}
    /** Times `method` rolled back, then for real: the request-only, total and commit-only samples per unit. */
    const split = async (name: string, method: string, args: unknown[], units: number): Promise<void> => {
      const requests = perUnit(await timedCall(vm, method, [...args, true], true), units, overheadMs)
      const total = perUnit(await timedCall(vm, method, [...args, false]), units, overheadMs)
      s[name] = total
      s[`${name}Requests`] = requests
      s[`${name}Commit`] = marginal(total, requests, 1)
      log(`${tag} ${name} ${fmt(total, 'µs')}; requests alone ${fmt(requests, 'µs')}`)
    }

    await split('writeSmallFile', 'writeFiles', ['/s', SIZES.smallWriteBytes, 0, SIZES.smallWrites], SIZES.smallWrites)
    // rmdir of the folder just written: its files and the folder itself.
    await split('rmdirRecursivePerEntry', 'rmdir', ['/s'], SIZES.smallWrites + 1)

    await split('writeMedium', 'writeFiles', ['/m', SIZES.mediumWriteBytes, 0, SIZES.mediumWrites], SIZES.mediumWrites)
    const mediumKiB = SIZES.mediumWriteBytes / KiB
    for (const part of ['', 'Requests', 'Commit']) {
      s[`writeMediumPerKiB${part}`] = marginal(s[`writeMedium${part}`], s[`writeSmallFile${part}`], mediumKiB)
    }

    const bigKiB = SIZES.bigWriteBytes / KiB
    await split('writeBig', 'writeRotating', [SIZES.bigWriteBytes, SIZES.bigWrites, SIZES.bigWritePaths], SIZES.bigWrites)
    s.writeBigPerKiB = marginal(s.writeBig, base, bigKiB)
    s.writeBigPerKiBRequests = marginal(s.writeBigRequests, base, bigKiB)
    // Only the last write to each of the rotating paths is committed.
    const committedKiB = (SIZES.bigWritePaths * SIZES.bigWriteBytes) / KiB
    s.writeBigCommitPerCommittedKiB = marginal(s.writeBigCommit, { us: 0, ticks: 0 }, committedKiB / SIZES.bigWrites)

    await split('mkdir', 'mkdirs', ['/d', SIZES.mkdirs], SIZES.mkdirs)

    await timedCall(vm, 'writeFiles', ['/u', SIZES.smallWriteBytes, 0, SIZES.unlinks, false])
    await split('unlink', 'unlinks', ['/u', SIZES.unlinks], SIZES.unlinks)
    return s
  } finally {
    await vm.close()
  }
}

/** A folder of many files written by several calls, then readdir of it, stat and history, on one fresh VM. */
async function bigFolderRound(tag: string): Promise<{ samples: Samples; setupUsPerFile: number[]; historyRecords: number }> {
  const { vm, overheadMs } = await deployFresh('big')
  try {
    const s: Samples = {}
    const perCall = SIZES.bigFolderFiles / SIZES.bigFolderCalls
    const setupUsPerFile: number[] = []
    for (let c = 0; c < SIZES.bigFolderCalls; c++) {
      const call = await timedCall(vm, 'writeFiles', ['/d', SIZES.smallWriteBytes, c * perCall, perCall, false])
      setupUsPerFile.push(perUnit(call, perCall, overheadMs).us)
    }
    log(
      `${tag} setup: ${SIZES.bigFolderFiles} files in ${SIZES.bigFolderCalls} calls, µs per file ${setupUsPerFile.map((x) => x.toFixed(0)).join(', ')}`,
    )

    const readdir = await timedCall(vm, 'readdir', ['/d', SIZES.bigFolderReaddirs, false])
    s.readdirPerEntry = perUnit(readdir, SIZES.bigFolderReaddirs * SIZES.bigFolderFiles, overheadMs)
    log(`${tag} readdirUsPerEntry ${fmt(s.readdirPerEntry, 'µs')}`)

    s.statFileBigArchive = perUnit(await timedCall(vm, 'stat', ['/d/f1', SIZES.statRequests]), SIZES.statRequests, overheadMs)
    log(`${tag} statFileBigArchiveUs ${fmt(s.statFileBigArchive, 'µs')}`)

    // The folder's mkdir and one put per file (none of these calls deleted anything).
    const historyRecords = SIZES.bigFolderFiles + 1
    const history = await timedCall(vm, 'history', [SIZES.historyReads])
    s.historyPerRecord = perUnit(history, SIZES.historyReads * historyRecords, overheadMs)
    log(`${tag} historyUsPerRecord ${fmt(s.historyPerRecord, 'µs')}`)
    return { samples: s, setupUsPerFile, historyRecords }
  } finally {
    await vm.close()
  }
}

/** Untimed: tiers up the engine's compiled code and warms the storage paths before round 1. */
async function warmUp(): Promise<void> {
  const { vm } = await deployFresh('warmup')
  try {
    await timedCall(vm, 'spin', [SIZES.spinIterations / 2])
    await timedCall(vm, 'stat', ['/', 1000])
    await timedCall(vm, 'writeFiles', ['/w', 16, 0, 500, false])
    await timedCall(vm, 'read', ['/w/f1', 500, 'utf8'])
    await timedCall(vm, 'readdir', ['/w', 2, true])
    await timedCall(vm, 'refusedWrite', [64 * KiB, 20, false])
    await timedCall(vm, 'rmdir', ['/w', false])
  } finally {
    await vm.close()
  }
}

// ---- results ----

interface HostFigure extends Figure {
  /** Ticks at the nominal 1 ms per tick. */
  ticks_at_1ms_per_tick: number
  /** Ticks at this machine's measured compute rate (computeMsPerTick). */
  ticks_at_machine_rate: number
  /** Ticks the sandbox charged per unit (the logged cost), median of the rounds. */
  charged_ticks: number
  /**
   * ticks_at_machine_rate - charged_ticks: time no tick pays for — host work, and VM time the tick
   * meter counts at a lower rate than the compute loop (see the binary figures).
   */
  uncharged_ticks: number
  [extra: string]: unknown
}

function hostFigure(samples: Sample[], unit: string, msPerTick: number, extra: Record<string, unknown> = {}): HostFigure {
  const f = figure(
    samples.map((x) => x.us),
    unit,
    sig3,
  )
  const us = median(samples.map((x) => x.us))
  const charged = median(samples.map((x) => x.ticks))
  const machine = us / 1000 / msPerTick
  return {
    ...f,
    ticks_at_1ms_per_tick: sig3(us / 1000),
    ticks_at_machine_rate: sig3(machine),
    charged_ticks: sig3(charged),
    uncharged_ticks: sig3(machine - charged),
    ...extra,
  }
}

// ---- main ----

async function main(): Promise<void> {
  log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)}, temp dir ${run.rootDir}`)
  const started = performance.now()
  const loadBefore = loadavg()[0]
  try {
    await warmUp()
    log(`warmed up in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    const rounds: Samples[] = []
    const compute: number[] = []
    const iterations: number[] = []
    const setups: number[][] = []
    let historyRecords = 0
    for (let r = 0; r < ROUNDS; r++) {
      const tag = `round ${r + 1}/${ROUNDS}`
      const core = await coreRound(tag)
      compute.push(core.computeMsPerTick)
      iterations.push(core.iterationsPerTick)
      const writes = await writesRound(tag, core.samples.request)
      const big = await bigFolderRound(tag)
      setups.push(big.setupUsPerFile)
      historyRecords = big.historyRecords
      rounds.push({ ...core.samples, ...writes, ...big.samples })
      log(`${tag} done at ${((performance.now() - started) / 1000).toFixed(1)} s`)
    }

    const msPerTick = median(compute)
    const fig = (name: string, unit: string, extra: Record<string, unknown> = {}): HostFigure =>
      hostFigure(
        rounds.map((s) => s[name]),
        unit,
        msPerTick,
        extra,
      )
    /** A figure that has a rolled-back (requests only) and a commit part beside its total. */
    const splitFig = (name: string, unit: string, extra: Record<string, unknown> = {}): HostFigure => ({
      ...fig(name, unit, extra),
      requests_only: fig(`${name}Requests`, unit),
      commit_only: fig(`${name}Commit`, unit),
    })

    const figures = {
      requestUs: fig('request', 'µs/request', {
        requests: SIZES.statRequests,
        timed: "stat('/'): answered without a lookup; the round trip out of the VM and back",
      }),
      refusedRequestUs: fig('refusedRequest', 'µs/request', {
        requests: SIZES.smallArgsRequests,
        timed: "writeFile('/', 'x'), refused by the host at once (an error reply)",
      }),
      statFileUs: fig('statFile', 'µs/request', { requests: SIZES.statRequests, timed: 'stat of an existing file, small archive' }),
      statFileBigArchiveUs: fig('statFileBigArchive', 'µs/request', {
        requests: SIZES.statRequests,
        timed: `stat of an existing file in an archive of ${SIZES.bigFolderFiles} files`,
      }),
      readFileUsPerKiB: fig('readFilePerKiB', 'µs/KiB', {
        file_bytes: SIZES.bigReadBytes,
        reads: SIZES.bigReads,
        timed: "readFile(path, 'utf8') of a 1 MiB file, less requestUs, per KiB",
      }),
      readFileBinaryUsPerKiB: fig('readFileBinaryPerKiB', 'µs/KiB', {
        file_bytes: SIZES.bigReadBytes,
        reads: SIZES.bigBinaryReads,
        timed:
          "readFile(path, 'binary'): the VM decodes the base64 reply in script code, charged as compute but at fewer ticks per ms than the compute loop",
      }),
      readSmallFileUs: fig('readSmallFile', 'µs/request', { requests: SIZES.smallReads, timed: 'readFile of a 1-byte file' }),
      argsUsPerKiB: fig('argsPerKiB', 'µs/KiB', {
        args_bytes: SIZES.argsBytes,
        requests: SIZES.argsRequests,
        timed: "writeFile('/', a 1 MiB string), refused at once, less refusedRequestUs, per KiB of argument",
      }),
      argsBinaryUsPerKiB: fig('argsBinaryPerKiB', 'µs/KiB', {
        args_bytes: SIZES.argsBytes,
        requests: SIZES.argsBinaryRequests,
        timed:
          'the same with a 1 MiB Uint8Array (less a 1-byte one); the VM base64-encodes it in script code (string building: few ticks per ms)',
      }),
      writeBigUsPerKiB: {
        ...fig('writeBigPerKiB', 'µs/KiB', {
          write_bytes: SIZES.bigWriteBytes,
          writes: SIZES.bigWrites,
          paths: SIZES.bigWritePaths,
          timed: '1 MiB writeFile calls to 10 rotating paths in one call, commit included, less requestUs, per KiB written',
        }),
        requests_only: fig('writeBigPerKiBRequests', 'µs/KiB'),
        commit_per_committed_kib: fig('writeBigCommitPerCommittedKiB', 'µs/KiB', {
          timed: 'the commit (the last write of each path, 10 MiB) per KiB committed',
        }),
      },
      writeMediumFileUs: splitFig('writeMedium', 'µs/file', {
        file_bytes: SIZES.mediumWriteBytes,
        files: SIZES.mediumWrites,
        timed: '64 KiB files to distinct paths in one call, commit included',
      }),
      writeMediumUsPerKiB: splitFig('writeMediumPerKiB', 'µs/KiB', {
        timed: 'writeMediumFileUs less writeSmallFileUs, per KiB beyond the small file',
      }),
      writeSmallFileUs: splitFig('writeSmallFile', 'µs/file', {
        file_bytes: SIZES.smallWriteBytes,
        files: SIZES.smallWrites,
        timed: '16-byte files to distinct paths in one call (and its mkdir), commit included',
      }),
      readdirUsPerEntry: fig('readdirPerEntry', 'µs/entry', {
        entries: SIZES.bigFolderFiles,
        readdirs: SIZES.bigFolderReaddirs,
        timed: `readdir of a folder of ${SIZES.bigFolderFiles} files written by ${SIZES.bigFolderCalls} earlier calls`,
        setup_us_per_file_by_call: {
          runs: setups.map((calls) => calls.map(sig3)),
          note: 'each setup call writes the next quarter of the folder: a later call writes into a larger archive',
        },
      }),
      readdirRecursiveUsPerEntry: fig('readdirRecursivePerEntry', 'µs/entry', {
        entries: SIZES.treeDirs * (1 + SIZES.treeFilesPerDir),
        readdirs: SIZES.treeReaddirs,
        timed: `readdir('/t', {recursive: true}) of ${SIZES.treeDirs} folders of ${SIZES.treeFilesPerDir} files`,
      }),
      mkdirUs: splitFig('mkdir', 'µs/mkdir', {
        mkdirs: SIZES.mkdirs,
        timed: 'distinct mkdirs in one folder, in one call, commit included',
      }),
      unlinkUs: splitFig('unlink', 'µs/unlink', {
        unlinks: SIZES.unlinks,
        timed: 'unlink of files written by an earlier call, in one call, commit included',
      }),
      rmdirRecursiveUsPerEntry: splitFig('rmdirRecursivePerEntry', 'µs/entry', {
        entries: SIZES.smallWrites + 1,
        timed: `rmdir(path, {recursive: true}) of a folder of ${SIZES.smallWrites} files written by the call before, commit included`,
      }),
      historyUsPerRecord: fig('historyPerRecord', 'µs/record', {
        records: historyRecords,
        reads: SIZES.historyReads,
        timed: `history() of an archive of ${historyRecords} changes`,
      }),
    }

    const out = {
      ...machine(),
      bench_scale: SCALE,
      sizes: SIZES,
      computeMsPerTick: {
        ...figure(compute, 'ms/tick', sig3),
        iterations_per_tick: sig3(median(iterations)),
        timed: `a pure-compute loop of ${SIZES.spinIterations} iterations: the call's wall time / its logged cost`,
      },
      figures,
      run_seconds: Math.round((performance.now() - started) / 100) / 10,
      /** The 1-minute load average before and after the run: other work on the machine inflates every figure. */
      load_average: { before: sig3(loadBefore), after: sig3(loadavg()[0]) },
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    await run.end()
  }
}

await main()
