import { VM } from '../dist/index.js'
const dir = process.argv[2]
const vm = new VM(`exports.work = (k) => { let x = 0; for (let i = 0; i < 20000; i++) x = (x + i * k) % 1000003; return x }`, { checkpoints: { every: 200 } })
await vm.deploy({ dir })
const N = Number(process.argv[3] ?? 5000)
for (let i = 0; i < N; i += 64) await Promise.all(Array.from({ length: Math.min(64, N - i) }, (_, j) => vm.executeCall({ methodName: 'work', args: [i + j] })))
await vm.close()
