/**
 * VM factory benchmark: provisioning time and RSS per idle provisioned VM. Prints one JSON object
 * (progress on stderr). Each round runs in a fresh child process (so RSS figures start clean):
 * deploy a factory, provision N VMs one after another through the factory script (a logged call each),
 * then idle and read RSS. Figures are medians of 3 rounds. BENCH_SCALE scales N (default 200).
 *
 * Run: npm run build && npx tsx bench/factory.bench.ts
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { log, machine, median, readScale } from './bench-stats.js'

const SCALE = readScale()
const VMS = Math.max(5, Math.round(200 * SCALE))
const ROUNDS = 3
const CHILD = fileURLToPath(new URL('./factory-provision.mjs', import.meta.url))

interface Round {
  provisionMedianMs: number
  provisionP99Ms: number
  rssAfterFirstMB: number
  rssAfterAllMB: number
  rssPerIdleVmMB: number
}

async function main(): Promise<void> {
  const rounds: Round[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', CHILD, String(VMS)], { timeout: 300_000 })
    const round = JSON.parse(stdout) as Round
    log(`round ${r + 1}/${ROUNDS}: ${JSON.stringify(round)}`)
    rounds.push(round)
  }
  const pick = (k: keyof Round) => rounds.map((x) => x[k])
  const provisionMs = median(pick('provisionMedianMs'))
  const perVm = median(pick('rssPerIdleVmMB'))
  const result = {
    ...machine(),
    bench_scale: SCALE,
    vms: VMS,
    baseline: {
      rssAfterFirstVmMB: { value: median(pick('rssAfterFirstMB')), unit: 'MB', median_of: ROUNDS, runs: pick('rssAfterFirstMB') },
    },
    results: {
      provisionMs: {
        value: provisionMs,
        unit: 'ms',
        median_of: ROUNDS,
        runs: pick('provisionMedianMs'),
        p99_runs: pick('provisionP99Ms'),
        target: { op: '<=', value: 70 },
        meets_target: provisionMs <= 70,
        timed: 'factory.provisionVM({code, title}): a logged factory call deploying a new VM, per VM, median over the round',
      },
      rssPerIdleVmMB: {
        value: perVm,
        unit: 'MB',
        median_of: ROUNDS,
        runs: pick('rssPerIdleVmMB'),
        target: { op: '<=', value: 2 },
        meets_target: perVm <= 2,
        timed: `(RSS with ${VMS} idle provisioned VMs − RSS after the first) / (${VMS} − 1), after GC and 500 ms idle`,
      },
    },
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
