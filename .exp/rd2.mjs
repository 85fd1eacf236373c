import { VMStorage } from '../dist/ledger/vm-storage.js'
import { decodeEntry } from '../dist/ledger/log-entry.js'
const storage = await VMStorage.openExisting('/tmp/pa-vm')
const log = storage.callLog
await log.core.ready()
for (let r = 0; r < 3; r++) {
const t = performance.now(); const c0 = process.cpuUsage(); let k = 0; let first
for await (const b of log.core.state.storage.createBlockStream({ gte: 1, lt: log.length })) { if (!first) first = b; if (process.argv[2]) decodeEntry(b.value, b.index); k++ }
const c = process.cpuUsage(c0); console.log('blockstream', Math.round(performance.now() - t), 'cpu', Math.round((c.user + c.system) / 1000), k, Object.keys(first))
}
await storage.close()
