import { Worker } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { VMStorage } from '../dist/ledger/vm-storage.js'
import { decodeEntry } from '../dist/ledger/log-entry.js'
const storage = await VMStorage.openExisting(process.argv[2])
const log = storage.callLog
await log.core.ready()
const w = new Worker(`const { parentPort } = require('node:worker_threads'); parentPort.on('message', () => {})`, { eval: true })
const e0 = performance.eventLoopUtilization()
const t = performance.now()
let batch = []
let last = ''
for await (const b of log.core.state.storage.createBlockStream({ gte: 1, lt: log.length })) {
  batch.push(b.value)
  const e = decodeEntry(b.value, b.index); const k = JSON.stringify(e.files); if (k !== last) last = k
  if (batch.length === 256) { w.postMessage({ t: 'blocks', blocks: batch }); batch = [] }
}
const elu = performance.eventLoopUtilization(e0)
const ms = performance.now() - t
console.log('stream: wall ms', Math.round(ms), 'main active ms', Math.round(elu.active), 'µs/entry active', (elu.active * 1000 / (log.length - 1)).toFixed(2))
await w.terminate(); await storage.close()
