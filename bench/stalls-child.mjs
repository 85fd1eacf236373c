/**
 * Child process of stalls.bench.ts: runs one sequence of VM operations in a fresh process and reports,
 * for each phase, the longest event-loop block during it (monitorEventLoopDelay at 1 ms resolution,
 * a histogram of its own per phase: max and p99 of the delay) beside the phase's wall time.
 *
 *   node bench/stalls-child.mjs <root> host <heapMiB> [main|thread]     (after npm run build)
 *   node bench/stalls-child.mjs <root> reopen <heapMiB> [main|thread]
 *
 * `host` (a fresh process, nothing deployed before): idle, first_deploy (into <root>/a), setup (the
 * heap grown to <heapMiB> MiB, untimed as a phase of interest), plain_calls, first_checkpoint (the call
 * the first checkpoint falls on, and its snapshot's write), more plain calls, later_checkpoint, close
 * (a clean close: it writes a snapshot of the last call), later_deploy (a new VM in <root>/b, the
 * process's second deploy), reopen (<root>/a again, from its snapshot, in this process), close_both.
 * `reopen` (a fresh process, on the dir `host` left): idle, reopen_first (the process's first deploy is
 * a reopen from a snapshot), plain_calls, close.
 *
 * Beside that probe, a 1 ms interval measures each gap between its ticks, in wall time and in the main
 * thread's time on a CPU (/proc/self/task/<pid>/schedstat): on a loaded machine a gap may be the
 * thread waiting for a CPU; its on-CPU part is what the process's own work held the loop.
 *
 * Prints one JSON line: {phases: {<name>: {maxMs, p99Ms, samples, maxGapMs, maxGapCpuMs, wallMs}},
 * results, longGaps}. It
 * imports the built package (`libvms`, from dist/) and exits when its stdin ends (the parent is gone).
 */
import { closeSync, openSync, readSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'

const [root, mode, heapArg, where = 'main'] = process.argv.slice(2)
const heapMiB = Number(heapArg ?? 0)
if (
  !root ||
  (mode !== 'host' && mode !== 'reopen') ||
  !Number.isSafeInteger(heapMiB) ||
  heapMiB < 0 ||
  heapMiB > 48 ||
  (where !== 'main' && where !== 'thread')
) {
  process.stderr.write('usage: node bench/stalls-child.mjs <root> <host|reopen> <heapMiB 0..48> [main|thread]\n')
  process.exit(2)
}
process.stdin.on('end', () => process.exit(3))
process.stdin.on('error', () => process.exit(3))
process.stdin.resume()

/** Checkpoint every this many calls: the first falls on seq EVERY, the next on seq 2 * EVERY. */
const EVERY = 20
const IDLE_MS = 300
/** How long a phase's probe keeps running after its work, to record a block at its very end. */
const SETTLE_MS = 5
/** How long a phase's histogram runs before its work starts (see phase). */
const PRIME_MS = 5
/** A VM with a heap to grow: `grow(mib)` adds about `mib` MiB of distinct strings to what it keeps. */
const CODE = `
let n = 0
const kept = []
exports.inc = () => ++n
exports.grow = (mib) => {
  for (let i = 0; i < mib * 16; i++) kept.push(String(kept.length).padEnd(64 * 1024, '.'))
  return kept.length
}
`
/** `thread`: the VM's script runs on a sandbox thread (its state crosses threads at a checkpoint and a reopen). */
const OPTIONS = { checkpoints: { every: EVERY, spread: 0 }, thread: where === 'thread' }

const { VM } = await import('libvms')

const phases = {}

/**
 * The main thread's time on a CPU so far and its time ready to run but waiting for one (ns), from
 * /proc (null where there is none; its resolution is the kernel's scheduler tick). A gap between the
 * probe's ticks is the event loop held, by work (on-CPU), by the machine running something else (a
 * loaded machine preempts the thread), or by a blocking call: the on-CPU part is the process's own work.
 */
const schedstat = (() => {
  try {
    return openSync(`/proc/self/task/${process.pid}/schedstat`, 'r')
  } catch {
    return null
  }
})()
const schedBuffer = Buffer.alloc(128)
function schedNs() {
  if (schedstat === null) return null
  const n = readSync(schedstat, schedBuffer, 0, schedBuffer.length, 0)
  const [onCpu, waiting] = schedBuffer.toString('latin1', 0, n).split(' ').map(Number)
  return { onCpu, waiting }
}

/**
 * The tick probe: a 1 ms interval. Per phase, the longest gap between two ticks (wall) and the most
 * main-thread CPU time spent within one gap; and every gap of 20 ms or more, with its phase, its CPU
 * time and the time the thread was ready but waiting for a CPU (the rest of a gap it was blocked, in
 * a system call or a page fault), and when it ended on the monotonic clock a CPU profile uses (µs):
 * with --cpu-prof, what ran during it.
 */
const gaps = {}
const longGaps = []
let current = 'start'
let lastTick = process.hrtime.bigint()
let lastSched = schedNs()
const ticker = setInterval(() => {
  const now = process.hrtime.bigint()
  const sched = schedNs()
  const ms = Number(now - lastTick) / 1e6
  const cpuMs = sched === null || lastSched === null ? null : (sched.onCpu - lastSched.onCpu) / 1e6
  const waitMs = sched === null || lastSched === null ? null : (sched.waiting - lastSched.waiting) / 1e6
  gaps[current] ??= { maxGapMs: 0, maxGapCpuMs: 0 }
  const g = gaps[current]
  g.maxGapMs = Math.max(g.maxGapMs, ms)
  if (cpuMs !== null) g.maxGapCpuMs = Math.max(g.maxGapCpuMs, cpuMs)
  if (ms >= 20 && longGaps.length < 500) {
    const figure = (x) => (x === null ? null : round1(x))
    longGaps.push({ phase: current, endUs: Number(now / 1000n), ms: round1(ms), cpuMs: figure(cpuMs), waitingMs: figure(waitMs) })
  }
  lastTick = now
  lastSched = sched
}, 1)
const round1 = (x) => Math.round(x * 10) / 10

/** Runs `work` as phase `name`, with an event-loop delay histogram of its own, and the tick probe's figures. */
async function phase(name, work) {
  current = name
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  // The histogram records a delay from its timer's second firing on: a block before that is missed.
  await sleep(PRIME_MS)
  const t0 = performance.now()
  try {
    return await work()
  } finally {
    const wallMs = performance.now() - t0
    // A block at the phase's very end is recorded when the probes next fire: let them.
    await sleep(SETTLE_MS)
    current = `after ${name}`
    h.disable()
    phases[name] = {
      maxMs: h.count > 0 ? h.max / 1e6 : 0,
      p99Ms: h.count > 0 ? h.percentile(99) / 1e6 : 0,
      samples: h.count,
      maxGapMs: gaps[name]?.maxGapMs ?? 0,
      maxGapCpuMs: schedstat === null ? null : (gaps[name]?.maxGapCpuMs ?? 0),
      wallMs,
    }
  }
}

/**
 * The checkpointer's pending snapshot writes: a checkpoint's snapshot is written after its call is
 * answered, so a phase that holds a checkpoint waits for them (an internal of the VM, read here only).
 */
async function snapshotsWritten(vm) {
  const written = vm.executor?.checkpointer?.written()
  if (!written) throw new Error('the VM has no checkpointer: the bench needs one')
  await written
}

async function calls(vm, count) {
  let last = null
  for (let i = 0; i < count; i++) last = await vm.executeCall({ methodName: 'inc' })
  return last
}

async function deploy(dir) {
  const vm = new VM(CODE, OPTIONS)
  const notices = []
  vm.on('notice', (m) => notices.push(m))
  let resumedFrom = null
  await vm.deploy({ dir, onResume: (_done, _total, fromSeq) => (resumedFrom ??= fromSeq) })
  return { vm, notices, resumedFrom: () => resumedFrom }
}

async function snapshotSeqs(dir) {
  const names = await readdir(join(dir, 'snapshots')).catch(() => [])
  return names.filter((n) => n.endsWith('.snapshot')).map((n) => Number.parseInt(n, 10))
}

const results = {}
const dirA = join(root, 'a')
const dirB = join(root, 'b')

await phase('idle', () => sleep(IDLE_MS))

if (mode === 'host') {
  const a = await phase('first_deploy', () => deploy(dirA))
  // seq 1.. : the grow calls (setup), then plain calls up to the one before the first checkpoint.
  const grows = heapMiB > 0 ? Math.ceil(heapMiB / 8) : 0
  await phase('setup', async () => {
    for (let i = 0; i < grows; i++) results.kept = await a.vm.executeCall({ methodName: 'grow', args: [Math.min(8, heapMiB - i * 8)] })
  })
  await phase('plain_calls', () => calls(a.vm, EVERY - 1 - grows))
  results.firstCheckpointAnswer = await phase('first_checkpoint', async () => {
    const answer = await calls(a.vm, 1)
    await snapshotsWritten(a.vm)
    return answer
  })
  await calls(a.vm, EVERY - 1)
  results.laterCheckpointAnswer = await phase('later_checkpoint', async () => {
    const answer = await calls(a.vm, 1)
    await snapshotsWritten(a.vm)
    return answer
  })
  await calls(a.vm, 3)
  await phase('close', () => a.vm.close())
  results.snapshotsAfterClose = await snapshotSeqs(dirA)
  const b = await phase('later_deploy', () => deploy(dirB))
  const again = await phase('reopen', () => deploy(dirA))
  results.reopenedFrom = again.resumedFrom()
  results.reopenAnswer = await again.vm.executeCall({ methodName: 'inc' })
  results.notices = [...a.notices, ...b.notices, ...again.notices]
  await phase('close_both', async () => {
    await b.vm.close()
    await again.vm.close()
  })
} else {
  const again = await phase('reopen_first', () => deploy(dirA))
  results.reopenedFrom = again.resumedFrom()
  results.reopenAnswer = await phase('plain_calls', () => calls(again.vm, EVERY - 1))
  results.notices = again.notices
  await phase('close', () => again.vm.close())
}

clearInterval(ticker)
process.stdout.write(`${JSON.stringify({ phases, results, longGaps })}\n`)
if (schedstat !== null) closeSync(schedstat)
process.stdin.destroy()
