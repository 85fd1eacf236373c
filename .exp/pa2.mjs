import { join } from 'node:path'
import { VM, Verifier } from '../dist/index.js'
import { SnapshotStore } from '../dist/ledger/snapshot-store.js'
import { VMStorage } from '../dist/ledger/vm-storage.js'
const dir = process.argv[2]
const jobs = Number(process.argv[3])
const storage = await VMStorage.openExisting(dir)
const c0 = process.cpuUsage(); const t = performance.now()
const r = await Verifier.verify(storage.callLog, storage.filesArchive, { parallel: jobs, snapshots: new SnapshotStore(dir) })
const c = process.cpuUsage(c0); console.log(jobs, Math.round(performance.now() - t), 'cpu ms', Math.round((c.user + c.system) / 1000), r.segments)
await storage.close()
