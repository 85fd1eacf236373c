/**
 * Child process of reopen.bench.ts: reopens the VM in <dir> (`new VM(code, options).deploy({dir})` on
 * the dir of an existing VM), prints one JSON line to stdout once deploy() has resolved, closes the VM
 * and exits. The line:
 *
 *   {importMs, deployMs, readyMs, resume: {fromSeq, total, done, reports}, logLength, notices, rssBytes,
 *    heapUsedBytes, callResult}
 *
 * importMs: `await import('libvms')` (module loading); deployMs: `new VM(code, options)` + `deploy()`;
 * readyMs: from this process's start (performance's time origin) to deploy() resolved. resume is what
 * onResume reported first: the snapshot's seq the reopen started from (0: none) and the calls it
 * re-ran after it; done is the last count it reported (total once the replay is through) and
 * reports counts the onResume calls. notices are the VM's 'notice' lines (snapshots
 * skipped). With `--call`, one `increment` is made after the timed part and its result is callResult
 * (a check that the state was restored; it appends to the log).
 *
 * `snapshots` reopens with the default checkpoints ({every: 1000}); `no-snapshots` with
 * `checkpoints: false`, which replays the whole log. A clean close with snapshots keeps one of the
 * last call when the newest is older (the parent puts back what it moved aside).
 *
 * It exits when its stdin ends (the parent is gone). It imports the built package (`libvms`, from
 * dist/) and runs on plain node, as a user's process would.
 *
 * Run: node bench/reopen-child.mjs <dir> <snapshots|no-snapshots> [--call]   (after npm run build)
 */
const [dir, mode] = process.argv.slice(2)
if (!dir || (mode !== 'snapshots' && mode !== 'no-snapshots')) {
  process.stderr.write('usage: node bench/reopen-child.mjs <dir> <snapshots|no-snapshots> [--call]\n')
  process.exit(2)
}
const call = process.argv.includes('--call')

process.stdin.on('end', () => process.exit(3))
process.stdin.on('error', () => process.exit(3))
process.stdin.resume()

const CODE = 'let n = 0; exports.increment = () => ++n'

const tImport = performance.now()
const { VM } = await import('libvms')
const importMs = performance.now() - tImport

const notices = []
let resume = null
let reports = 0
let lastDone = 0
const tDeploy = performance.now()
const vm = new VM(CODE, mode === 'snapshots' ? { checkpoints: { every: 1000 } } : { checkpoints: false })
vm.on('notice', (message) => notices.push(message))
await vm.deploy({
  dir,
  onResume: (done, total, fromSeq) => {
    reports++
    lastDone = done
    resume ??= { fromSeq, total }
  },
})
const readyMs = performance.now()
const deployMs = readyMs - tDeploy
try {
  const mem = process.memoryUsage()
  const callResult = call ? await vm.executeCall({ methodName: 'increment' }) : null
  const line = {
    importMs,
    deployMs,
    readyMs,
    resume: resume && { ...resume, done: lastDone, reports },
    logLength: vm.callLog.length,
    notices,
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    callResult,
  }
  process.stdout.write(`${JSON.stringify(line)}\n`)
} finally {
  await vm.close()
  process.stdin.destroy()
}
