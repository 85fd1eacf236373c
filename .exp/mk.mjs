import { VM } from '../dist/index.js'
const dir = process.argv[2]
const vm = new VM(`let n = 0; exports.increment = (k) => (n += k)`, { checkpoints: { every: 1000 } })
await vm.deploy({ dir })
const N = Number(process.argv[3] ?? 20000)
for (let i = 0; i < N; i += 256) await Promise.all(Array.from({ length: Math.min(256, N - i) }, (_, j) => vm.executeCall({ methodName: 'increment', args: [i + j] })))
await vm.close()
