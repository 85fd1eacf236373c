import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { VM, Verifier } from '../dist/index.js'
import { SnapshotStore } from '../dist/ledger/snapshot-store.js'
const dir = join(await mkdtemp(join(tmpdir(), 'pa-')), 'vm')
const vm = new VM(`let n = 0; exports.increment = (k) => (n += k)`, { checkpoints: { every: 1000 } })
await vm.deploy({ dir })
const N = Number(process.argv[2] ?? 20000)
for (let i = 0; i < N; i += 256) await Promise.all(Array.from({ length: Math.min(256, N - i) }, (_, j) => vm.executeCall({ methodName: 'increment', args: [i + j] })))
await new Promise((r) => setTimeout(r, 300))
const snapshots = new SnapshotStore(dir)
for (const jobs of [1, 2, 1, 2]) {
  const t = performance.now()
  const r = await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: jobs, snapshots })
  console.log(jobs, Math.round(performance.now() - t), r.segments)
}
await vm.close()
