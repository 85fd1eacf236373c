import { VMStorage } from '../dist/ledger/vm-storage.js'
import { decodeEntry } from '../dist/ledger/log-entry.js'
const storage = await VMStorage.openExisting('/tmp/pa-vm')
const log = storage.callLog
for (let r = 0; r < 2; r++) {
let t = performance.now(); let c0 = process.cpuUsage()
for (let seq = 1; seq < log.length; seq += 256) {
  const n = Math.min(256, log.length - seq)
  const blocks = await Promise.all(Array.from({ length: n }, (_, i) => log.core.get(seq + i, { valueEncoding: 'binary' })))
  for (let i = 0; i < n; i++) decodeEntry(blocks[i], seq + i)
}
let c = process.cpuUsage(c0); console.log('core.get', Math.round(performance.now() - t), 'cpu', Math.round((c.user + c.system) / 1000))
t = performance.now(); c0 = process.cpuUsage(); let k = 0
for await (const e of log.entries({ start: 1 })) k++
c = process.cpuUsage(c0); console.log('entries', Math.round(performance.now() - t), 'cpu', Math.round((c.user + c.system) / 1000), k)
}
await storage.close()
