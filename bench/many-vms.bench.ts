/**
 * Many VMs in one process: deploy and close times, the longest event-loop block during each, RSS per
 * idle VM and descriptors held, for 1,000 VMs in a VMHost (on sandbox threads, as a factory runs
 * them, and on the main thread), beside the baseline of VMs with a store of their own (as many as fit
 * under the limit: 100) — each scenario in a fresh child process under `ulimit -n 1024`, run after
 * the others on the same machine. Prints one JSON object. `BENCH_SCALE=0.1`: a smoke run.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startBenchRun } from './bench-run.js'
import { log, readSizing } from './bench-stats.js'

const CHILD = fileURLToPath(new URL('./many-vms-child.mjs', import.meta.url))
const { scaled } = readSizing()
const run = await startBenchRun('libvms-many-vms-', 15 * 60_000)

/** One scenario in a child under `ulimit -n 1024`; its JSON line. */
function scenario(dir: string, mode: 'hosted' | 'own', count: number, thread: boolean): Promise<Record<string, unknown>> {
  log(
    `${count} VMs, ${mode === 'hosted' ? 'in a VMHost' : 'each with its own store'}, ${thread ? 'on sandbox threads' : 'on the main thread'}`,
  )
  return new Promise((resolve, reject) => {
    const args = [CHILD, dir, mode, String(count), thread ? 'thread' : 'main'].map((a) => `"${a}"`).join(' ')
    const child = spawn('sh', ['-c', `ulimit -n 1024 && exec "${process.execPath}" ${args}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    let stdout = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 10 * 60_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(JSON.parse(stdout))
      else reject(new Error(`the ${mode} scenario exited with ${code}`))
    })
  })
}

try {
  const own = await scenario(await run.freshDir('own'), 'own', scaled(100, 10), false)
  const hostedThreads = await scenario(await run.freshDir('hosted'), 'hosted', scaled(1000, 50), true)
  const hostedMain = await scenario(await run.freshDir('hosted-main'), 'hosted', scaled(1000, 50), false)
  const ratio = (a: unknown, b: unknown) => Number(((a as number) / (b as number)).toFixed(3))
  console.log(
    JSON.stringify(
      {
        ownStore: own,
        hostedOnThreads: hostedThreads,
        hostedOnMainThread: hostedMain,
        ratios: {
          deployLaterHostedToOwn: ratio(hostedThreads.deployLaterMedianMs, own.deployLaterMedianMs),
          closeHostedToOwn: ratio(hostedThreads.closeMedianMs, own.closeMedianMs),
        },
        targets: { deployLaterMedianMs: 15, closeMedianMs: 20, longestBlockMs: 50 },
      },
      null,
      2,
    ),
  )
} finally {
  await run.end()
}
