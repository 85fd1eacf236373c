/**
 * Core VM benchmark: call throughput and latency, replay + verification speed, deploy time and idle
 * memory, each next to a raw-Hypercore baseline measured in the same run.
 *
 *   npm run bench                                   (builds, then runs this on the built package)
 *   npx tsx bench/vm-core.bench.ts                  (full size; build first: it imports libvms, dist/)
 *   BENCH_SCALE=0.1 npx tsx bench/vm-core.bench.ts  (quick smoke run)
 *
 * Prints one JSON object to stdout; progress goes to stderr. Every figure is the median of 3 runs.
 * The runs are taken in rounds (round r measures everything once), so slow drift of the machine
 * affects baselines and LibVMS figures alike.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import Corestore from 'corestore'
import { type CallEntry, Verifier, VM } from 'libvms'
import { startBenchRun } from './bench-run.js'
import { type Figure, figure, log, machine, median, percentile, readSizing, round2, type Target } from './bench-stats.js'

const execFileAsync = promisify(execFile)

const ROUNDS = 3
const CONCURRENCY = 64
const CODE = "let n = 0; exports.inc = () => ++n; exports.write = (i) => System.files.writeFile('/f' + (i % 500), 'hello ' + i)"
/** The 2017 original's awaited file-writing calls relative to its own raw awaited appends: 864/s against 4,931/s. */
const ORIGINAL_WRITING_RATIO = 0.175
const PROJECT_DIR = fileURLToPath(new URL('..', import.meta.url))
const RSS_SCRIPT = fileURLToPath(new URL('./idle-vm-rss.mjs', import.meta.url))

// ---- sizes ----

const { scale: SCALE, scaled } = readSizing()

const SIZES = {
  rawAwaitedAppends: scaled(2000, 50),
  rawBatchedAppends: scaled(20_000, 500, 100),
  rawBatchSize: 100,
  sequentialCalls: scaled(2000, 50),
  sequentialWritingCalls: scaled(1000, 50),
  concurrentTrivialCalls: scaled(20_000, 500),
  concurrentWritingCalls: scaled(2000, 100),
  concurrency: CONCURRENCY,
  warmupCalls: scaled(500, 100),
}

// ---- helpers ----

/** This run: its temp root dir (run.rootDir, fresh subdirs from run.freshDir), watchdog and cleanup (run.end(), in main). */
const run = await startBenchRun('libvms-bench-')

async function deployFresh(label: string): Promise<VM> {
  const vm = new VM(CODE)
  await vm.deploy({ dir: join(await run.freshDir(label), 'vm'), title: label })
  return vm
}

/** Keeps `concurrency` calls in flight until `total` calls have been made; resolves with the seconds taken. */
async function pooledCalls(vm: VM, total: number, concurrency: number, request: (i: number) => Parameters<VM['executeCall']>[0]) {
  let issued = 0
  const worker = async (): Promise<void> => {
    while (issued < total) {
      const i = issued++
      await vm.executeCall(request(i))
    }
  }
  const t0 = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
  return (performance.now() - t0) / 1000
}

// ---- measurements (each returns one run's figure) ----

/** Appends `entry` (a logged call, as JSON) `n` times, awaiting each append: the cost an awaited call cannot avoid. */
async function rawAwaitedAppends(n: number, entry: CallEntry): Promise<number> {
  const store = new Corestore(await run.freshDir('raw-awaited'))
  try {
    const core = store.get<CallEntry>({ name: 'x', valueEncoding: 'json' })
    await core.ready()
    const t0 = performance.now()
    for (let i = 0; i < n; i++) await core.append(entry)
    const secs = (performance.now() - t0) / 1000
    if (core.length !== n) throw new Error(`raw core has ${core.length} entries, expected ${n}`)
    await core.close()
    return n / secs
  } finally {
    await store.close()
  }
}

async function rawBatchedAppends(n: number, batchSize: number, entry: CallEntry): Promise<number> {
  const store = new Corestore(await run.freshDir('raw-batched'))
  try {
    const core = store.get<CallEntry>({ name: 'x', valueEncoding: 'json' })
    await core.ready()
    const batch = Array.from({ length: batchSize }, () => entry)
    const t0 = performance.now()
    for (let done = 0; done < n; done += batchSize) await core.append(batch)
    const secs = (performance.now() - t0) / 1000
    if (core.length !== n) throw new Error(`raw core has ${core.length} entries, expected ${n}`)
    await core.close()
    return n / secs
  } finally {
    await store.close()
  }
}

/** `n` calls of `method` (inc, or write(i)), each awaited before the next is made. */
async function sequentialCalls(n: number, method: 'inc' | 'write'): Promise<{ perSec: number; p50: number; p99: number }> {
  const vm = await deployFresh(`sequential-${method}`)
  try {
    const latencies = new Array<number>(n)
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const s = performance.now()
      const r = await vm.executeCall(method === 'inc' ? { methodName: 'inc' } : { methodName: 'write', args: [i] })
      latencies[i] = performance.now() - s
      if (method === 'inc' && r !== i + 1) throw new Error(`inc returned ${String(r)}, expected ${i + 1}`)
    }
    const secs = (performance.now() - t0) / 1000
    return { perSec: n / secs, p50: percentile(latencies, 50), p99: percentile(latencies, 99) }
  } finally {
    await vm.close()
  }
}

/** Runs `n` pooled calls on a fresh VM; returns the rate and the VM (still open, its log holds n calls). */
async function concurrentCalls(n: number, method: 'inc' | 'write'): Promise<{ perSec: number; vm: VM }> {
  const vm = await deployFresh(`concurrent-${method}`)
  try {
    const request = method === 'inc' ? () => ({ methodName: 'inc' }) : (i: number) => ({ methodName: 'write', args: [i] })
    const secs = await pooledCalls(vm, n, CONCURRENCY, request)
    if (vm.callLog.length !== n + 1) throw new Error(`the log has ${vm.callLog.length} entries, expected ${n + 1}`)
    return { perSec: n / secs, vm }
  } catch (err) {
    await vm.close()
    throw err
  }
}

/** Times replay + log comparison of `vm`'s log; returns calls per second. Closes the replay. */
async function replayAndCompare(vm: VM): Promise<number> {
  const calls = vm.callLog.length - 1
  const t0 = performance.now()
  const replay = await VM.fromCallLog(vm.callLog)
  try {
    await Verifier.compareLogs(vm.callLog, replay.callLog)
    const secs = (performance.now() - t0) / 1000
    return calls / secs
  } finally {
    await replay.close()
  }
}

async function laterDeploy(): Promise<number> {
  const dir = join(await run.freshDir('deploy'), 'vm')
  const t0 = performance.now()
  const vm = new VM(CODE)
  await vm.deploy({ dir, title: 'deploy' })
  const ms = performance.now() - t0
  await vm.close()
  return ms
}

interface ChildReport {
  rssBytes: number
  heapUsedBytes: number
  externalBytes: number
  arrayBuffersBytes: number
  deployMs: number | null
}

async function childRun(args: string[]): Promise<ChildReport> {
  const { stdout } = await execFileAsync(process.execPath, [RSS_SCRIPT, ...args], {
    cwd: PROJECT_DIR,
    timeout: 60_000,
  })
  const line = stdout.trim().split('\n').pop() ?? ''
  return JSON.parse(line) as ChildReport
}

// ---- results ----

interface Result extends Figure {
  target: Target
  ratio_to_baseline?: number
  baseline?: string
  meets_target: boolean
  [extra: string]: unknown
}

function result(
  runs: number[],
  unit: string,
  target: Target,
  baseline?: { name: string; value: number },
  extra: Record<string, unknown> = {},
): Result {
  const f = figure(runs, unit)
  const value = median(runs)
  const ratio = baseline ? value / baseline.value : undefined
  const checked = target.of === 'ratio_to_baseline' ? (ratio ?? Number.NaN) : value
  const meets = target.op === '>=' ? checked >= target.value : checked <= target.value
  return {
    ...f,
    target,
    ...(baseline ? { baseline: baseline.name, ratio_to_baseline: Math.round((ratio as number) * 1000) / 1000 } : {}),
    meets_target: meets,
    ...extra,
  }
}

// ---- main ----

async function main(): Promise<void> {
  log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)}, temp dir ${run.rootDir}`)
  try {
    // The first deploy in this process (cold engine), for information; the reported first-deploy
    // figure comes from 3 fresh child processes below.
    const t0 = performance.now()
    const warm = new VM(CODE)
    await warm.deploy({ dir: join(await run.freshDir('warmup'), 'vm'), title: 'warmup' })
    const inProcessFirstDeployMs = performance.now() - t0
    log(`first deploy in this process: ${inProcessFirstDeployMs.toFixed(1)} ms; warming up`)
    for (let i = 0; i < SIZES.warmupCalls; i++) await warm.executeCall({ methodName: 'inc' })
    await pooledCalls(warm, SIZES.warmupCalls, CONCURRENCY, () => ({ methodName: 'inc' }))
    await pooledCalls(warm, Math.ceil(SIZES.warmupCalls / 5), CONCURRENCY, (i) => ({ methodName: 'write', args: [i] }))
    await replayAndCompare(warm)
    // The raw baselines append what a VM logs for one `inc`: the same entry, as JSON.
    const rawEntry = (await warm.callLog.get(SIZES.warmupCalls)) as CallEntry
    if (rawEntry.method !== 'inc') throw new Error(`entry ${SIZES.warmupCalls} is a call of ${rawEntry.method}, expected inc`)
    await warm.close()

    const runs = {
      rawAwaited: [] as number[],
      rawBatched: [] as number[],
      seq: [] as number[],
      seqP50: [] as number[],
      seqP99: [] as number[],
      seqWriting: [] as number[],
      seqWritingP50: [] as number[],
      concTrivial: [] as number[],
      concWriting: [] as number[],
      replayTrivial: [] as number[],
      replayWriting: [] as number[],
      laterDeploy: [] as number[],
    }

    for (let r = 0; r < ROUNDS; r++) {
      const tag = `round ${r + 1}/${ROUNDS}`
      runs.rawAwaited.push(await rawAwaitedAppends(SIZES.rawAwaitedAppends, rawEntry))
      log(`${tag} rawAwaitedAppendsPerSec ${runs.rawAwaited.at(-1)?.toFixed(0)}`)
      runs.rawBatched.push(await rawBatchedAppends(SIZES.rawBatchedAppends, SIZES.rawBatchSize, rawEntry))
      log(`${tag} rawBatchedAppendsPerSec ${runs.rawBatched.at(-1)?.toFixed(0)}`)

      const seq = await sequentialCalls(SIZES.sequentialCalls, 'inc')
      runs.seq.push(seq.perSec)
      runs.seqP50.push(seq.p50)
      runs.seqP99.push(seq.p99)
      log(`${tag} sequentialCallsPerSec ${seq.perSec.toFixed(0)} (p50 ${seq.p50.toFixed(3)} ms, p99 ${seq.p99.toFixed(3)} ms)`)
      const seqWriting = await sequentialCalls(SIZES.sequentialWritingCalls, 'write')
      runs.seqWriting.push(seqWriting.perSec)
      runs.seqWritingP50.push(seqWriting.p50)
      log(`${tag} sequentialWritingCallsPerSec ${seqWriting.perSec.toFixed(0)} (p50 ${seqWriting.p50.toFixed(3)} ms)`)

      // Calls with 64 in flight, then a replay of the log they made: trivial calls, then writing ones.
      const kinds = [
        { calls: SIZES.concurrentTrivialCalls, method: 'inc', name: 'Trivial', conc: runs.concTrivial, replay: runs.replayTrivial },
        { calls: SIZES.concurrentWritingCalls, method: 'write', name: 'Writing', conc: runs.concWriting, replay: runs.replayWriting },
      ] as const
      for (const kind of kinds) {
        const measured = await concurrentCalls(kind.calls, kind.method)
        try {
          kind.conc.push(measured.perSec)
          log(`${tag} concurrent${kind.name}CallsPerSec ${measured.perSec.toFixed(0)}`)
          kind.replay.push(await replayAndCompare(measured.vm))
          log(`${tag} replay${kind.name}CallsPerSec ${kind.replay.at(-1)?.toFixed(0)}`)
        } finally {
          await measured.vm.close()
        }
      }

      runs.laterDeploy.push(await laterDeploy())
      log(`${tag} laterDeployMs ${runs.laterDeploy.at(-1)?.toFixed(1)}`)
    }

    // Child processes, one at a time: 3 with a VM (first deploy in a fresh process + idle RSS), 3 without.
    const vmChildren: ChildReport[] = []
    const bareChildren: ChildReport[] = []
    for (let r = 0; r < ROUNDS; r++) {
      vmChildren.push(await childRun([]))
      bareChildren.push(await childRun(['--no-vm']))
      const c = vmChildren[r]
      log(
        `child ${r + 1}/${ROUNDS}: firstDeployMs ${c.deployMs?.toFixed(1)}, idle VM RSS ${(c.rssBytes / 2 ** 20).toFixed(1)} MB, without VM ${(bareChildren[r].rssBytes / 2 ** 20).toFixed(1)} MB`,
      )
    }
    const mb = (b: number): number => b / 2 ** 20

    const baseline = {
      rawAwaitedAppendsPerSec: {
        ...figure(runs.rawAwaited, 'appends/s'),
        entries: SIZES.rawAwaitedAppends,
        entry_bytes: Buffer.byteLength(JSON.stringify(rawEntry)),
        note: "the entry a VM logs for one inc, appended to a fresh Corestore's core, each append awaited",
      },
      rawBatchedAppendsPerSec: {
        ...figure(runs.rawBatched, 'appends/s'),
        entries: SIZES.rawBatchedAppends,
        batch_size: SIZES.rawBatchSize,
      },
      idleProcessRssMB: {
        ...figure(
          bareChildren.map((c) => mb(c.rssBytes)),
          'MB',
        ),
        note: 'the same child script with --no-vm: node + libvms (dist) imported, no VM deployed',
      },
    }
    const rawAwaited = { name: 'rawAwaitedAppendsPerSec', value: median(runs.rawAwaited) }
    const rawBatched = { name: 'rawBatchedAppendsPerSec', value: median(runs.rawBatched) }

    const results = {
      sequentialCallsPerSec: result(runs.seq, 'calls/s', { op: '>=', value: 0.9, of: 'ratio_to_baseline' }, rawAwaited, {
        calls: SIZES.sequentialCalls,
        latency_ms: {
          p50: Math.round(median(runs.seqP50) * 1000) / 1000,
          p99: Math.round(median(runs.seqP99) * 1000) / 1000,
          p50_runs: runs.seqP50.map((x) => Math.round(x * 1000) / 1000),
          p99_runs: runs.seqP99.map((x) => Math.round(x * 1000) / 1000),
        },
      }),
      sequentialWritingCallsPerSec: result(
        runs.seqWriting,
        'calls/s',
        { op: '>=', value: ORIGINAL_WRITING_RATIO, of: 'ratio_to_baseline' },
        rawAwaited,
        { calls: SIZES.sequentialWritingCalls, latency_p50_ms: Math.round(median(runs.seqWritingP50) * 1000) / 1000 },
      ),
      concurrentTrivialCallsPerSec: result(runs.concTrivial, 'calls/s', { op: '>=', value: 15_000, of: 'value' }, rawBatched, {
        calls: SIZES.concurrentTrivialCalls,
        concurrency: CONCURRENCY,
      }),
      concurrentWritingCallsPerSec: result(runs.concWriting, 'calls/s', { op: '>=', value: 2000, of: 'value' }, undefined, {
        calls: SIZES.concurrentWritingCalls,
        concurrency: CONCURRENCY,
      }),
      replayTrivialCallsPerSec: result(runs.replayTrivial, 'calls/s', { op: '>=', value: 25_000, of: 'value' }, undefined, {
        calls: SIZES.concurrentTrivialCalls,
        timed: 'VM.fromCallLog + Verifier.compareLogs',
      }),
      replayWritingCallsPerSec: result(runs.replayWriting, 'calls/s', { op: '>=', value: 3500, of: 'value' }, undefined, {
        calls: SIZES.concurrentWritingCalls,
        timed: 'VM.fromCallLog + Verifier.compareLogs',
      }),
      firstDeployMs: result(
        vmChildren.map((c) => c.deployMs ?? Number.NaN),
        'ms',
        { op: '<=', value: 50, of: 'value' },
        undefined,
        {
          timed: 'new VM(code) + deploy() into a fresh dir, the first deploy in a fresh process (3 child processes)',
          in_main_process_ms: round2(inProcessFirstDeployMs),
        },
      ),
      laterDeployMs: result(runs.laterDeploy, 'ms', { op: '<=', value: 15, of: 'value' }, undefined, {
        timed: 'new VM(code) + deploy() into a fresh dir, after other VMs were deployed in this process',
      }),
      idleVmRssMB: result(
        vmChildren.map((c) => mb(c.rssBytes)),
        'MB',
        { op: '<=', value: 75, of: 'value' },
        undefined,
        {
          timed: 'child process (plain node on dist/): deploy 1 VM, 10 calls, idle 500 ms, process.memoryUsage().rss',
          heap_used_mb: round2(median(vmChildren.map((c) => mb(c.heapUsedBytes)))),
          external_mb: round2(median(vmChildren.map((c) => mb(c.externalBytes)))),
          rss_without_vm_mb: baseline.idleProcessRssMB.value,
        },
      ),
    }

    const out = { ...machine(), bench_scale: SCALE, sizes: SIZES, baseline, results }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    await run.end()
  }
}

await main()
