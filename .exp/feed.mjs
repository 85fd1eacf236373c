import { Worker } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { VMStorage } from '../dist/ledger/vm-storage.js'
import { decodeEntry } from '../dist/ledger/log-entry.js'
const storage = await VMStorage.openExisting(process.argv[2])
const log = storage.callLog
const w = new Worker(`const { parentPort } = require('node:worker_threads'); parentPort.on('message', () => {})`, { eval: true })
const e0 = performance.eventLoopUtilization()
const t = performance.now()
for (let seq = 1; seq < log.length; seq += 256) {
  const n = Math.min(256, log.length - seq)
  const blocks = await Promise.all(Array.from({ length: n }, (_, i) => log.core.get(seq + i, { valueEncoding: 'binary' })))
  w.postMessage({ t: 'blocks', blocks })
  let last = ''
  for (let i = 0; i < n; i++) { const e = decodeEntry(blocks[i], seq + i); const k = JSON.stringify(e.files); if (k !== last) last = k }
}
const elu = performance.eventLoopUtilization(e0)
const ms = performance.now() - t
console.log('entries', log.length - 1, 'wall ms', Math.round(ms), 'main active ms', Math.round(elu.active), 'µs/entry active', (elu.active * 1000 / (log.length - 1)).toFixed(2), 'wall µs/entry', (ms * 1000 / (log.length - 1)).toFixed(2))
await w.terminate(); await storage.close()
