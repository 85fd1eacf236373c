/**
 * Child process of rpc.bench.ts and production.bench.ts: a LibVMS server. Deploys a VM
 * (`let n = 0; exports.inc = () => ++n`) in debug mode, or in the auth mode given, into a fresh temp
 * dir, mounts it on an RPCServer at '/', listens on 127.0.0.1 (port 0) and prints one JSON line to
 * stdout: {url, pid, auth, callLogUrl, filesArchiveUrl, deployMs}.
 *
 * It ends on SIGTERM or SIGINT (server.close(), vm.close(), temp dir removed, exit 0), when its stdin
 * closes (the parent is gone), or after MAX_LIFETIME_MS at the latest.
 *
 * Run: node bench/rpc-server.mjs [parent-dir [auth]]   (after npm run build; the temp dir is made
 * inside parent-dir, default the OS temp dir; auth is 'debug' (the default) or 'production')
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RPCServer, VM } from 'libvms'

const CODE = 'let n = 0; exports.inc = () => ++n'
const MAX_LIFETIME_MS = 10 * 60_000
const AUTH = process.argv[3] ?? 'debug'
if (AUTH !== 'debug' && AUTH !== 'production') {
  process.stderr.write(`[rpc-server] auth must be 'debug' or 'production', got ${JSON.stringify(AUTH)}\n`)
  process.exit(2)
}

const dir = await mkdtemp(join(process.argv[2] ?? tmpdir(), 'libvms-bench-server-'))
let vm = null
let server = null
let stopping = null

function stop(reason) {
  stopping ??= (async () => {
    let code = 0
    try {
      await server?.close()
      await vm?.close()
    } catch (err) {
      process.stderr.write(`[rpc-server] closing after ${reason} failed: ${err?.stack ?? err}\n`)
      code = 1
    }
    await rm(dir, { recursive: true, force: true })
    process.exit(code)
  })()
  return stopping
}

process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
process.stdin.on('end', () => stop('stdin closed'))
process.stdin.on('error', () => stop('stdin error'))
process.stdin.resume()
setTimeout(() => stop('max lifetime'), MAX_LIFETIME_MS).unref()

try {
  const t0 = performance.now()
  vm = new VM(CODE, { auth: AUTH })
  await vm.deploy({ dir: join(dir, 'vm'), title: 'bench' })
  const deployMs = performance.now() - t0
  server = new RPCServer()
  server.mount('/', vm)
  await server.listen({ port: 0, host: '127.0.0.1' })
  process.stdout.write(
    `${JSON.stringify({ url: server.url, pid: process.pid, auth: vm.auth, callLogUrl: vm.callLog.url, filesArchiveUrl: vm.filesArchive.url, deployMs })}\n`,
  )
} catch (err) {
  process.stderr.write(`[rpc-server] failed to start: ${err?.stack ?? err}\n`)
  await stop('a start failure')
}
