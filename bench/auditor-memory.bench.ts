/**
 * Auditor memory: the peak RSS of `nodevms verify <dir>` (the built CLI, in a fresh child process each
 * run) on a log of maximum-size entries (15 MiB each: calls whose one argument is a string of just under
 * that), beside two logs measured in the same run: as many tiny calls of the same VM (same script, same
 * limits: 128 MiB of engine memory, a 15 MiB argument limit), the baseline; and a third as many huge
 * calls, to show the peak does not grow with the count. Each log is verified under a fixed V8 heap
 * (`--max-old-space-size=256`, the bound an auditor should hold to), under 96 MiB (as the tests run)
 * and under Node's default heap; rounds interleaved with the order alternating. Every figure is the
 * median of 3 rounds; the comparisons are per round. Reads of a log are sized in bytes
 * (docs/log-format.md, "Reading a log within a byte budget"), so the huge log should cost its auditor
 * a few entries' worth more than the tiny one, not its size.
 *
 * Run: npm run build && npx tsx bench/auditor-memory.bench.ts   (BENCH_SCALE=0.4 for a smoke run: 5 entries)
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { VM } from '../src/index.js'
import { MAX_ENTRY_BYTES } from '../src/ledger/log-entry.js'
import { children, withTimeout } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { figure, log, machine, readSizing, round3 } from './bench-stats.js'

const CLI = fileURLToPath(new URL('../dist/cli/nodevms.js', import.meta.url))
const PEAK = fileURLToPath(new URL('./peak-memory.cjs', import.meta.url))
const PROJECT_DIR = fileURLToPath(new URL('..', import.meta.url))
const ROUNDS = 3
const MiB = 1024 * 1024
/** The fixed heap an auditor runs under (`--max-old-space-size`), in MiB. */
const FIXED_HEAP_MB = 256
/** A smaller one, as test/huge-entries.test.ts runs its readers with. */
const SMALL_HEAP_MB = 96
/** A string that, as a call's only argument, makes an entry of just under MAX_ENTRY_BYTES. */
const MAX_ARG_CHARS = MAX_ENTRY_BYTES - 2048

interface Run {
  peakRssBytes: number
  heapUsedPeakBytes: number
  ms: number
}

/** A stopped VM in `dir` with `count` calls of `take(s)`, each with a string of `chars` characters. */
async function buildLog(dir: string, count: number, chars: number): Promise<{ bytes: number; largest: number }> {
  const vm = new VM('exports.take = (s) => s.length', { limits: { maxArgsBytes: 15 * MiB, memoryBytes: 128 * MiB }, checkpoints: false })
  await vm.deploy({ dir, title: 'auditor memory bench' })
  let bytes = 0
  let largest = 0
  try {
    for (let i = 0; i < count; i++) {
      const arg = String.fromCharCode(97 + (i % 26)).repeat(chars)
      const length = await vm.executeCall({ methodName: 'take', args: [arg] })
      if (length !== chars) throw new Error(`take returned ${String(length)}, not ${chars}`)
    }
    for await (const read of vm.callLog.read({ start: 1 })) {
      bytes += read.bytes
      largest = Math.max(largest, read.bytes)
    }
  } finally {
    await vm.close()
  }
  return { bytes, largest }
}

/** `node [--max-old-space-size] --require peak-memory.cjs nodevms verify <dir> --json` to completion: its peak memory. */
async function verifyIn(dir: string, calls: number, heapMb: number | null, label: string): Promise<Run> {
  const nodeArgs = [...(heapMb === null ? [] : [`--max-old-space-size=${heapMb}`]), '--require', PEAK]
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'verify', dir, '--json'], {
    cwd: PROJECT_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  const started = performance.now()
  try {
    const [code, signal] = await withTimeout(
      new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s]))),
      10 * 60_000,
      label,
    )
    const ms = performance.now() - started
    if (code !== 0) throw new Error(`${label} ended with ${code ?? signal}: ${stderr}`)
    const lines = stdout
      .trim()
      .split('\n')
      .filter((line) => line.trim() !== '')
    const peak = JSON.parse(lines.pop() ?? '') as { peakRssBytes: number; heapUsedPeakBytes: number }
    const report = JSON.parse(lines.pop() ?? '') as { verified: boolean; calls: number }
    if (!report.verified || report.calls !== calls) throw new Error(`${label} did not verify ${calls} calls: ${JSON.stringify(report)}`)
    return { ...peak, ms }
  } finally {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL')
    children.delete(child)
  }
}

const mb = (bytes: number): number => Math.round((bytes / MiB) * 10) / 10

/** A log the bench verifies: how many calls, with arguments of how many characters. */
interface BenchLog {
  calls: number
  chars: number
  dir: string
  bytes: number
  largest: number
}

/** The figures of one log's runs under one heap. */
function figuresOf(runs: Run[]) {
  return {
    peakRssMiB: figure(
      runs.map((r) => mb(r.peakRssBytes)),
      'MiB',
    ),
    heapUsedPeakSampledMiB: figure(
      runs.map((r) => mb(r.heapUsedPeakBytes)),
      'MiB',
    ),
    verifyMs: figure(
      runs.map((r) => r.ms),
      'ms',
    ),
  }
}

/** Per round, `a`'s peak RSS over `b`'s: as a ratio, and the difference. */
function comparison(a: Run[], b: Run[]) {
  return {
    peakRssRatio: figure(
      a.map((r, i) => r.peakRssBytes / b[i].peakRssBytes),
      'x',
      round3,
    ),
    peakRssAboveMiB: figure(
      a.map((r, i) => mb(r.peakRssBytes - b[i].peakRssBytes)),
      'MiB',
    ),
  }
}

async function main(): Promise<void> {
  const { scale, scaled } = readSizing()
  const calls = scaled(12, 4)
  const run = await startBenchRun('libvms-bench-auditor-memory-', 40 * 60_000)
  try {
    // The huge log, a third as many entries of the same size (the peak should not grow with the
    // count), and the baseline: as many calls as the huge log, of one-character arguments.
    const logs: Record<'huge' | 'hugeThird' | 'tiny', BenchLog> = {
      huge: { calls, chars: MAX_ARG_CHARS, dir: '', bytes: 0, largest: 0 },
      hugeThird: { calls: Math.max(1, Math.round(calls / 3)), chars: MAX_ARG_CHARS, dir: '', bytes: 0, largest: 0 },
      tiny: { calls, chars: 1, dir: '', bytes: 0, largest: 0 },
    }
    for (const [name, l] of Object.entries(logs)) {
      l.dir = join(await run.freshDir(name), 'vm')
      log(`building ${name}: ${l.calls} calls with ${l.chars}-character arguments`)
      Object.assign(l, await buildLog(l.dir, l.calls, l.chars))
    }
    const heaps: { name: string; mb: number | null }[] = [
      { name: `heap${FIXED_HEAP_MB}`, mb: FIXED_HEAP_MB },
      { name: `heap${SMALL_HEAP_MB}`, mb: SMALL_HEAP_MB },
      { name: 'defaultHeap', mb: null },
    ]
    const names = Object.keys(logs) as (keyof typeof logs)[]
    const runs: Record<string, Record<keyof typeof logs, Run[]>> = {}
    for (const heap of heaps) runs[heap.name] = { huge: [], hugeThird: [], tiny: [] }
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? names : [...names].reverse()
      for (const heap of heaps) {
        for (const name of order) {
          const label = `verify ${name} (${heap.name}) round ${round + 1}`
          const r = await verifyIn(logs[name].dir, logs[name].calls, heap.mb, label)
          runs[heap.name][name].push(r)
          log(`${label}: peak RSS ${mb(r.peakRssBytes)} MiB, heap used (sampled) ${mb(r.heapUsedPeakBytes)} MiB, ${Math.round(r.ms)} ms`)
        }
      }
    }
    const figures: Record<string, unknown> = {}
    for (const heap of heaps) {
      const { huge, hugeThird, tiny } = runs[heap.name]
      figures[heap.name] = {
        heapLimitMiB: heap.mb,
        hugeEntries: figuresOf(huge),
        hugeEntriesThirdAsMany: figuresOf(hugeThird),
        baselineTinyEntries: figuresOf(tiny),
        hugeToBaseline: comparison(huge, tiny),
        hugeToThirdAsMany: comparison(huge, hugeThird),
      }
    }
    const result = {
      bench: 'auditor-memory',
      ...machine(),
      scale,
      calls,
      callsThirdAsMany: logs.hugeThird.calls,
      // The call entries' bytes: in all, and the largest (Hypercore stores at most MAX_ENTRY_BYTES).
      hugeCallEntriesMiB: mb(logs.huge.bytes),
      hugeLargestEntryBytes: logs.huge.largest,
      maxEntryBytes: MAX_ENTRY_BYTES,
      tinyCallEntriesKiB: Math.round(logs.tiny.bytes / 1024),
      ...figures,
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
