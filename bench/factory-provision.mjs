/**
 * Child process of factory.bench.ts: deploys a VM factory (examples/scripts/factory.js) in a temp dir,
 * provisions N VMs one after another, idles, and prints one JSON line with provisioning times and RSS.
 * Run: node --expose-gc bench/factory-provision.mjs [N]   (after npm run build)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { VMFactory } from 'libvms'

const N = Number(process.argv[2] ?? 200)
const gc = globalThis.gc ?? (() => {})
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const root = await mkdtemp(join(tmpdir(), 'libvms-bench-factory-'))
const script = await readFile(new URL('../examples/scripts/factory.js', import.meta.url), 'utf8')
const factory = new VMFactory(script, { maxVMs: N })
try {
  await factory.deploy({ dir: join(root, 'factory'), title: 'bench factory' })
  const times = []
  let rssAfterFirst = 0
  for (let i = 0; i < N; i++) {
    const t0 = performance.now()
    await factory.provisionVM({ code: 'let n = 0; exports.inc = () => ++n', title: `vm ${i}` })
    times.push(performance.now() - t0)
    if (i === 0) {
      gc()
      await sleep(200)
      rssAfterFirst = process.memoryUsage().rss
    }
  }
  gc()
  await sleep(500)
  const rssAfterAll = process.memoryUsage().rss
  times.sort((a, b) => a - b)
  const round = (x) => Math.round(x * 100) / 100
  process.stdout.write(
    `${JSON.stringify({
      provisionMedianMs: round(times[Math.floor(N / 2)]),
      provisionP99Ms: round(times[Math.floor(N * 0.99)]),
      rssAfterFirstMB: round(rssAfterFirst / 1e6),
      rssAfterAllMB: round(rssAfterAll / 1e6),
      rssPerIdleVmMB: round((rssAfterAll - rssAfterFirst) / (N - 1) / 1e6),
    })}\n`,
  )
} finally {
  await factory.close()
  await rm(root, { recursive: true, force: true })
}
