/**
 * Parallel audit: `nodevms verify <dir> --jobs 2` against `--jobs 1` on a VM of 100,000 calls with a
 * checkpoint every 1,000 (BENCH_SCALE scales the calls), each audit in a fresh child process (the
 * built CLI, so its segment threads load compiled modules), rounds interleaved with the order
 * alternating; every figure the median of 3 rounds. Also measured in this process, for the projection
 * to more cores: what the main thread does per entry whatever the jobs (read the block, decode it,
 * route it), beside what replay costs per entry.
 *
 * Target (issue 19): 2 jobs at least 1.7 times as fast as 1 on this 2-core machine.
 *
 * Run: npm run build && npx tsx bench/parallel-audit.bench.ts
 */
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type CallLog, VM } from '../src/index.js'
import { decodeEntry } from '../src/ledger/log-entry.js'
import { runChild } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { figure, log, readSizing, round2, round3 } from './bench-stats.js'

const CLI = fileURLToPath(new URL('../dist/cli/nodevms.js', import.meta.url))
const SCRIPT = `
let n = 0
const seen = []
exports.increment = (k) => { n += k; seen.push(n % 977); if (seen.length > 100) seen.shift(); return n }
`
const ROUNDS = 3
const IN_FLIGHT = 256

interface VerifyJSON {
  verified: boolean
  calls: number
  segments?: number[]
}

async function buildLog(dir: string, calls: number): Promise<number> {
  const started = performance.now()
  const vm = new VM(SCRIPT, { checkpoints: { every: 1000 } })
  await vm.deploy({ dir, title: 'parallel audit bench' })
  const deadline = Date.now() + 20 * 60_000
  for (let done = 0; done < calls && Date.now() < deadline; done += IN_FLIGHT) {
    const batch = Math.min(IN_FLIGHT, calls - done)
    await Promise.all(Array.from({ length: batch }, (_, i) => vm.executeCall({ methodName: 'increment', args: [done + i] })))
    if (done % 20_000 < IN_FLIGHT) log(`built ${done + batch}/${calls} calls`)
  }
  await vm.close()
  return performance.now() - started
}

/** The main thread's share per entry: read the block, decode it (as parallel-audit.ts feeds segments). */
async function readAndDecode(dir: string): Promise<number> {
  const { VMStorage } = await import('../src/ledger/vm-storage.js')
  const storage = await VMStorage.openExisting(dir)
  try {
    const log: CallLog = storage.callLog
    const started = performance.now()
    for (let seq = 1; seq < log.length; seq += 256) {
      const count = Math.min(256, log.length - seq)
      const blocks = await Promise.all(Array.from({ length: count }, (_, i) => log.core.get(seq + i, { valueEncoding: 'binary' })))
      for (let i = 0; i < blocks.length; i++) decodeEntry(blocks[i] as unknown as Buffer, seq + i)
    }
    return ((performance.now() - started) * 1000) / (log.length - 1)
  } finally {
    await storage.close()
  }
}

async function main(): Promise<void> {
  const { scale, scaled } = readSizing()
  const calls = scaled(100_000, 4_000, 1000)
  const run = await startBenchRun('libvms-bench-parallel-audit-', 40 * 60_000)
  try {
    const dir = join(await run.freshDir('vm'), 'vm')
    log(`building a log of ${calls} calls (a checkpoint every 1000)`)
    const buildMs = await buildLog(dir, calls)
    const timings: Record<1 | 2, number[]> = { 1: [], 2: [] }
    const segments: Record<1 | 2, number[] | undefined> = { 1: undefined, 2: undefined }
    for (let round = 0; round < ROUNDS; round++) {
      const order: (1 | 2)[] = round % 2 === 0 ? [1, 2] : [2, 1]
      for (const jobs of order) {
        const started = performance.now()
        const report = await runChild<VerifyJSON>(
          CLI,
          ['verify', dir, '--jobs', String(jobs), '--json'],
          `verify --jobs ${jobs}`,
          15 * 60_000,
        )
        const ms = performance.now() - started
        if (!report.verified || report.calls !== calls) throw new Error(`verify --jobs ${jobs} did not verify ${calls} calls`)
        timings[jobs].push(ms)
        segments[jobs] = report.segments
        log(`round ${round + 1}: --jobs ${jobs} ${Math.round(ms)} ms (segments ${JSON.stringify(report.segments ?? [0])})`)
      }
    }
    const one = figure(timings[1], 'ms')
    const two = figure(timings[2], 'ms')
    const speedups = timings[1].map((t, i) => t / timings[2][i])
    const readUs = await readAndDecode(dir)
    const replayUsPerCall = (one.value * 1000) / calls
    const result = {
      bench: 'parallel-audit',
      scale,
      cores: availableParallelism(),
      calls,
      checkpointEvery: 1000,
      buildLogMs: Math.round(buildMs),
      verifyJobs1: one,
      verifyJobs2: two,
      segmentsJobs2: segments[2] ?? [0],
      speedup2Over1: { ...figure(speedups, 'x', round3), target: { op: '>=', value: 1.7, of: 'value' } },
      // The part of an audit that does not divide among segments: the main thread's reading and decoding.
      mainThreadUsPerEntry: round2(readUs),
      wholeAuditUsPerCall: round2(replayUsPerCall),
      // With n cores and n segments: replay divides, the main thread's share and the threads' start do not.
      projectedSpeedupBound: round2(replayUsPerCall / readUs),
    }
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
  } finally {
    await run.end()
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
