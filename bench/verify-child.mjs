/**
 * Child process of compare-builds.ts: a whole-log audit timed inside the process, without its start
 * and imports: `Verifier.verify(await CallLog.open(dir), null)`, every entry replayed and compared
 * (the files archive is not checked). Prints one JSON line, `{verifyMs, calls}`. Gives up after
 * MAX_LIFETIME_MS.
 *
 * It imports the built package (`libvms`): this checkout's dist/, or the build libvms-build.mjs
 * points it at.
 *
 * Run: node bench/verify-child.mjs <vm-dir>
 */
import { CallLog, Verifier } from 'libvms'

const MAX_LIFETIME_MS = 5 * 60_000
setTimeout(() => {
  process.stderr.write('[verify-child] gave up: over the time limit\n')
  process.exit(1)
}, MAX_LIFETIME_MS).unref()

const [dir] = process.argv.slice(2)
if (!dir) throw new Error('usage: verify-child.mjs <vm-dir>')
const callLog = await CallLog.open(dir)
try {
  const started = performance.now()
  const report = await Verifier.verify(callLog, null)
  const verifyMs = performance.now() - started
  process.stdout.write(`${JSON.stringify({ verifyMs, calls: report.calls })}\n`)
} finally {
  await callLog.close()
}
