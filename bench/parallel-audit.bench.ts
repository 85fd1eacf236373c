/**
 * Parallel audit: `nodevms verify <dir> --jobs 2` against `--jobs 1`, on two logs: 100,000 trivial
 * calls with a checkpoint every 1,000, and 5,000 calls that compute (4 ticks, about 0.8 ms each to
 * replay) with one every 200 (BENCH_SCALE scales the calls). Each audit runs in a fresh child process
 * (the built CLI, so its segment threads load compiled modules), rounds interleaved with the order
 * alternating; every figure the median of 3 rounds. Also measured in this process, for the projection
 * to more cores: what the main thread does per entry whatever the jobs (read the block, decode it),
 * beside what a whole audit costs per call.
 *
 * Target (issue 19): 2 jobs at least 1.7 times as fast as 1 on this 2-core machine.
 *
 * Run: npm run build && npx tsx bench/parallel-audit.bench.ts
 */
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CallLog } from '../src/index.js'
import { decodeEntry } from '../src/ledger/log-entry.js'
import { type AuditWorkload, auditWorkloads, buildAuditLog } from './audit-logs.js'
import { runChild } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { figure, log, readSizing, round2, round3 } from './bench-stats.js'

const CLI = fileURLToPath(new URL('../dist/cli/nodevms.js', import.meta.url))
const ROUNDS = 3

interface VerifyJSON {
  verified: boolean
  calls: number
  segments?: number[]
}

/** verify --jobs 1 and --jobs 2 on a log, in fresh processes, rounds interleaved. */
async function auditBoth(dir: string, w: AuditWorkload) {
  const timings: Record<1 | 2, number[]> = { 1: [], 2: [] }
  let segments: number[] | undefined
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
      if (!report.verified || report.calls !== w.calls) throw new Error(`verify --jobs ${jobs} did not verify ${w.calls} calls`)
      timings[jobs].push(ms)
      if (jobs === 2) segments = report.segments
      log(`${w.name} round ${round + 1}: --jobs ${jobs} ${Math.round(ms)} ms (segments ${JSON.stringify(report.segments ?? [0])})`)
    }
  }
  const one = figure(timings[1], 'ms')
  return {
    calls: w.calls,
    checkpointEvery: w.every,
    verifyJobs1: one,
    verifyJobs2: figure(timings[2], 'ms'),
    segmentsJobs2: segments ?? [0],
    speedup2Over1: {
      ...figure(
        timings[1].map((t, i) => t / timings[2][i]),
        'x',
        round3,
      ),
      target: { op: '>=', value: 1.7, of: 'value' },
    },
    wholeAuditUsPerCall: round2((one.value * 1000) / w.calls),
  }
}

/** The main thread's share per entry: read the block, decode it (as parallel-audit.ts feeds segments). */
async function readAndDecode(dir: string): Promise<number> {
  const { VMStorage } = await import('../src/ledger/vm-storage.js')
  const storage = await VMStorage.openExisting(dir)
  try {
    const log: CallLog = storage.callLog
    const started = performance.now()
    for await (const { start, blocks } of log.windows({ start: 1 })) {
      for (let i = 0; i < blocks.length; i++) decodeEntry(blocks[i], start + i)
    }
    return ((performance.now() - started) * 1000) / (log.length - 1)
  } finally {
    await storage.close()
  }
}

async function main(): Promise<void> {
  const { scale, scaled } = readSizing()
  const { trivial, compute } = auditWorkloads(scaled)
  const run = await startBenchRun('libvms-bench-parallel-audit-', 40 * 60_000)
  try {
    const figures: Record<string, unknown> = {}
    let readUs = 0
    for (const w of [trivial, compute]) {
      const dir = join(await run.freshDir(w.name), 'vm')
      log(`building a log of ${w.calls} ${w.name} calls (a checkpoint every ${w.every})`)
      const buildMs = await buildAuditLog(dir, w)
      figures[w.name] = { buildLogMs: Math.round(buildMs), ...(await auditBoth(dir, w)) }
      if (w === trivial) readUs = await readAndDecode(dir)
    }
    const trivialUs = (figures.trivial as { wholeAuditUsPerCall: number }).wholeAuditUsPerCall
    const result = {
      bench: 'parallel-audit',
      scale,
      cores: availableParallelism(),
      ...figures,
      // The part of an audit that does not divide among segments: the main thread's reading and decoding.
      mainThreadUsPerEntry: round2(readUs),
      // With n cores and n segments, for trivial calls: replay divides, the main thread's share does not.
      projectedSpeedupBoundTrivial: round2(trivialUs / readUs),
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
