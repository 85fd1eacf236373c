import { VMStorage } from '../dist/ledger/vm-storage.js'
const storage = await VMStorage.openExisting(process.argv[2])
const log = storage.callLog
const blocks = await Promise.all(Array.from({ length: 5 }, (_, i) => log.core.get(100 + i, { valueEncoding: 'binary' })))
for (const b of blocks) console.log(b.byteLength, b.buffer.byteLength, b.byteOffset)
await storage.close()
