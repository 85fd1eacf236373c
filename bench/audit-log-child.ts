/**
 * Child process of compare-builds.ts: builds one audit log (audit-logs.ts) with the build it runs on
 * and prints one JSON line, `{buildMs, calls}`.
 *
 * Run: node --import tsx bench/audit-log-child.ts <dir> <workload as JSON>
 *      (with bench/libvms-build.mjs preloaded and LIBVMS_BENCH_BUILD set, on another build)
 */
import { type AuditWorkload, buildAuditLog } from './audit-logs.js'

const [dir, workloadJson] = process.argv.slice(2)
if (!dir || !workloadJson) throw new Error('usage: audit-log-child.ts <dir> <workload as JSON>')
const workload = JSON.parse(workloadJson) as AuditWorkload
const buildMs = await buildAuditLog(dir, workload)
process.stdout.write(`${JSON.stringify({ buildMs, calls: workload.calls })}\n`)
