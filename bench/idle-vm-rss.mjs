/**
 * Child process of vm-core.bench.ts: deploys one VM into a temp dir, makes 10 calls, idles for
 * 500 ms and prints one JSON line to stdout: {rssBytes, deployMs, heapUsedBytes, externalBytes}.
 * deployMs is the time of `new VM(code)` + `deploy()`, the first deploy in this process.
 *
 * With `--no-vm` it deploys nothing (same imports, same idle wait): the process's own baseline RSS.
 *
 * It imports the built package (`libvms`, from dist/) and runs on plain node, as a user's process would.
 *
 * Run: node bench/idle-vm-rss.mjs [--no-vm]   (after npm run build)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { VM } from 'libvms'

const CODE = "let n = 0; exports.inc = () => ++n; exports.write = (i) => System.files.writeFile('/f' + (i % 500), 'hello ' + i)"
const IDLE_MS = 500
const CALLS = 10

async function main() {
  const withVm = !process.argv.includes('--no-vm')
  const root = await mkdtemp(join(tmpdir(), 'libvms-bench-rss-'))
  let vm = null
  try {
    let deployMs = null
    if (withVm) {
      const t0 = performance.now()
      vm = new VM(CODE)
      await vm.deploy({ dir: join(root, 'vm'), title: 'rss' })
      deployMs = performance.now() - t0
      for (let i = 0; i < CALLS; i++) {
        const r = await vm.executeCall({ methodName: 'inc' })
        if (r !== i + 1) throw new Error(`inc returned ${String(r)}, expected ${i + 1}`)
      }
    }
    await sleep(IDLE_MS)
    const mem = process.memoryUsage()
    process.stdout.write(
      `${JSON.stringify({ rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, externalBytes: mem.external, arrayBuffersBytes: mem.arrayBuffers, deployMs })}\n`,
    )
  } finally {
    await vm?.close()
    await rm(root, { recursive: true, force: true })
  }
}

await main()
