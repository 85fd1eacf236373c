/**
 * Child process of rpc.bench.ts, production.bench.ts and load.bench.ts: a LibVMS server. Deploys a VM
 * (`let n = 0; exports.inc = () => ++n`) in debug mode, or in the auth mode given, into a fresh temp
 * dir, mounts it on an RPCServer at '/', listens on 127.0.0.1 (port 0) and prints one JSON line to
 * stdout: {url, pid, auth, callLogUrl, filesArchiveUrl, deployMs}.
 *
 * With a VM count N (load.bench.ts), it deploys N VMs instead, mounted at /vm0 .. /vm<N-1>, whose
 * script also has `exports.hit = (i) => [System.caller.id, i]` (every call tells who made it and
 * which one it was); the JSON line then also has `paths` (the mount paths, in order), and
 * callLogUrl/filesArchiveUrl are those of /vm0. A line `scan` on its stdin then makes it read every
 * VM's call log and print one JSON line: {vms: [{path, length, init, methods, counts, malformed,
 * wrongResults}], afterGC, maxRssKiB, scanMs} (afterGC: {rss, heapUsed, external, arrayBuffers} in
 * bytes after a full garbage collection, before the scan), where counts[caller][i] is how many `hit(i)` entries by that
 * caller the log holds (methods: entries per method; malformed: `hit` entries whose argument is not
 * a count below 1e6; wrongResults: `hit` entries whose logged result is not [caller, i]).
 *
 * It ends on SIGTERM or SIGINT (server.close(), VMs closed, temp dir removed, exit 0), when its stdin
 * closes (the parent is gone), or after MAX_LIFETIME_MS at the latest.
 *
 * Run: node bench/rpc-server.mjs [parent-dir [auth [vms]]]   (after npm run build; the temp dir is
 * made inside parent-dir, default the OS temp dir; auth is 'debug' (the default) or 'production';
 * vms, when given, a count from 1 to 100)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { RPCServer, VM } from 'libvms'

const CODE = 'let n = 0; exports.inc = () => ++n'
const LOAD_CODE = `${CODE}; exports.hit = (i) => [System.caller.id, i]`
const MAX_LIFETIME_MS = 10 * 60_000
/** Highest `hit` argument the scan counts (higher ones are malformed). */
const MAX_HIT = 1e6
const AUTH = process.argv[3] ?? 'debug'
if (AUTH !== 'debug' && AUTH !== 'production') {
  process.stderr.write(`[rpc-server] auth must be 'debug' or 'production', got ${JSON.stringify(AUTH)}\n`)
  process.exit(2)
}
const VMS = process.argv[4] === undefined ? null : Number(process.argv[4])
if (VMS !== null && !(Number.isInteger(VMS) && VMS >= 1 && VMS <= 100)) {
  process.stderr.write(`[rpc-server] vms must be a count from 1 to 100, got ${JSON.stringify(process.argv[4])}\n`)
  process.exit(2)
}

const dir = await mkdtemp(join(process.argv[2] ?? tmpdir(), 'libvms-bench-server-'))
/** The mounted VMs: {path, vm}. */
const mounts = []
let server = null
let stopping = null
/** The start (deploys, listen): stop() waits for it, so nothing is closed or removed mid-deploy. */
let starting = null

function stop(reason) {
  stopping ??= (async () => {
    let code = 0
    const startTimeout = new Promise((resolve) => setTimeout(resolve, 30_000).unref())
    await Promise.race([starting?.catch(() => {}), startTimeout])
    try {
      await server?.close()
      for (const { vm } of mounts) await vm.close()
    } catch (err) {
      process.stderr.write(`[rpc-server] closing after ${reason} failed: ${err?.stack ?? err}\n`)
      code = 1
    }
    await rm(dir, { recursive: true, force: true })
    process.exit(code)
  })()
  return stopping
}

/** A full garbage collection, for the memory figures of the scan (the gc function, exposed at run time). */
function collectGarbage() {
  setFlagsFromString('--expose-gc')
  runInNewContext('gc')()
}

/** Reads every mounted VM's call log (see the header for what it reports). */
async function scan() {
  collectGarbage()
  const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage()
  const afterGC = { rss, heapUsed, external, arrayBuffers }
  const t0 = performance.now()
  const vms = []
  for (const { path, vm } of mounts) {
    const report = { path, length: vm.callLog.length, init: 0, methods: {}, counts: {}, malformed: 0, wrongResults: 0 }
    for await (const entry of vm.callLog.entries()) {
      if (entry.type !== 'call') {
        report.init++
        continue
      }
      report.methods[entry.method] = (report.methods[entry.method] ?? 0) + 1
      if (entry.method !== 'hit') continue
      const i = entry.args[0]
      if (entry.args.length !== 1 || !Number.isInteger(i) || i < 0 || i >= MAX_HIT) {
        report.malformed++
        continue
      }
      const key = String(entry.caller)
      report.counts[key] ??= []
      const counts = report.counts[key]
      while (counts.length <= i) counts.push(0)
      counts[i]++
      const r = entry.result
      if (!Array.isArray(r) || r.length !== 2 || r[0] !== entry.caller || r[1] !== i) report.wrongResults++
    }
    vms.push(report)
  }
  return { vms, afterGC, maxRssKiB: process.resourceUsage().maxRSS, scanMs: performance.now() - t0 }
}

process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
process.stdin.on('end', () => stop('stdin closed'))
process.stdin.on('error', () => stop('stdin error'))
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'scan') return
  scan().then(
    (report) => process.stdout.write(`${JSON.stringify(report)}\n`),
    (err) => process.stdout.write(`${JSON.stringify({ error: String(err?.stack ?? err) })}\n`),
  )
})
setTimeout(() => stop('max lifetime'), MAX_LIFETIME_MS).unref()

async function start() {
  const t0 = performance.now()
  const names = VMS === null ? ['vm'] : Array.from({ length: VMS }, (_, k) => `vm${k}`)
  const paths = VMS === null ? ['/'] : names.map((name) => `/${name}`)
  for (const [k, name] of names.entries()) {
    const vm = new VM(VMS === null ? CODE : LOAD_CODE, { auth: AUTH })
    mounts.push({ path: paths[k], vm })
    await vm.deploy({ dir: join(dir, name), title: 'bench' })
  }
  const deployMs = performance.now() - t0
  server = new RPCServer()
  for (const { path, vm } of mounts) server.mount(path, vm)
  await server.listen({ port: 0, host: '127.0.0.1' })
  const [{ vm }] = mounts
  const info = {
    url: server.url,
    pid: process.pid,
    auth: vm.auth,
    callLogUrl: vm.callLog.url,
    filesArchiveUrl: vm.filesArchive.url,
    deployMs,
  }
  if (stopping) return
  process.stdout.write(`${JSON.stringify(VMS === null ? info : { ...info, paths })}\n`)
}

starting = start()
starting.catch((err) => {
  process.stderr.write(`[rpc-server] failed to start: ${err?.stack ?? err}\n`)
  stop('a start failure')
})
