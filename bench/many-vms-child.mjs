// One scenario of bench/many-vms.bench.ts, in a fresh process under `ulimit -n` (set by the parent):
// deploys `count` VMs one at a time — in a VMHost, or each with a store of its own — calls each once,
// measures RSS, closes them one at a time, and prints one JSON line of figures (ms, bytes).
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { VM, VMHost } from 'libvms'

const [dir, mode, countArg, threadArg] = process.argv.slice(2)
const count = Number(countArg)
const thread = threadArg === 'thread'
const CODE = 'let n = 0; exports.inc = async () => { n++; await System.files.writeFile("/n", String(n)); return n }'
const sorted = (values) => [...values].sort((a, b) => a - b)
const median = (values) => sorted(values)[values.length >> 1]
const p99 = (values) => sorted(values)[Math.min(values.length - 1, Math.ceil(values.length * 0.99) - 1)]

/** Runs `step` for each VM, timing each; the longest event-loop block over all of them too. */
async function timed(items, step) {
  const times = []
  const delay = monitorEventLoopDelay({ resolution: 2 })
  delay.enable()
  for (const item of items) {
    const started = performance.now()
    await step(item)
    times.push(performance.now() - started)
  }
  delay.disable()
  return { times, longestBlockMs: delay.max / 1e6 }
}

const host = mode === 'hosted' ? await VMHost.open(join(dir, 'host'), { memoryBudget: count * 64 * 2 ** 20 }) : null
const rssBefore = process.memoryUsage().rss
const vms = Array.from({ length: count }, () => new VM(CODE, { thread }))
let i = 0
const deploy = await timed(vms, (vm) => {
  const name = `vm${i++}`
  return host ? host.deploy(vm, { name }) : vm.deploy({ dir: join(dir, name) })
})
for (const vm of vms) await vm.executeCall({ methodName: 'inc' })
// Idle VMs, settled: what holding them costs.
await new Promise((resolve) => setTimeout(resolve, 500))
const rssPerVM = (process.memoryUsage().rss - rssBefore) / count
const fds = readdirSync('/proc/self/fd').length
const close = await timed(vms, (vm) => vm.close())
await host?.close()
const later = deploy.times.slice(Math.floor(count / 2))
console.log(
  JSON.stringify({
    mode,
    thread,
    vms: count,
    deployMedianMs: median(deploy.times),
    deployLaterMedianMs: median(later),
    deployP99Ms: p99(deploy.times),
    deployLongestBlockMs: deploy.longestBlockMs,
    closeMedianMs: median(close.times),
    closeP99Ms: p99(close.times),
    closeLongestBlockMs: close.longestBlockMs,
    rssPerIdleVMBytes: Math.round(rssPerVM),
    fdsOpen: fds,
  }),
)
