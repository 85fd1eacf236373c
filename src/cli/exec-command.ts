/**
 * `nodevms exec <script>`: deploys a VM (or a VM factory) into a data dir and serves it over RPC at
 * `/` until Ctrl-C or SIGTERM. Restarting on the same dir resumes the VM where it stopped.
 */
import { readFile } from 'node:fs/promises'
import { basename, extname, resolve } from 'node:path'
import type { Command } from 'commander'
import type { AuthMode } from '../ledger/log-entry.js'
import { RPCServer } from '../rpc/rpc-server.js'
import { VM } from '../vm/vm.js'
import { VMFactory } from '../vm/vm-factory.js'
import { err, out, UsageError } from './output.js'
import { parseAuth, parseCount, parsePort } from './parse-options.js'

interface ExecOptions {
  port: number
  host: string
  dir?: string
  title?: string
  auth?: AuthMode
  factory?: boolean
  maxVms?: number
  json?: boolean
}

export function registerExec(program: Command): void {
  program
    .command('exec')
    .description('serve a VM script over RPC, logging every call (Ctrl-C stops it; run it again on the same dir to resume)')
    .argument('<script>', 'the VM script (a JavaScript file)')
    .option('-p, --port <port>', 'port to listen on (0 picks a free one)', parsePort, 5555)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('-d, --dir <dir>', "the VM's data dir (default: ./<script name>.vms)")
    .option('-t, --title <title>', 'the VM title (first deploy only)')
    .option('--auth <mode>', "'debug' (user ids taken on trust) or 'production' (callers sign every call); first deploy only", parseAuth)
    .option('--factory', 'serve the script as a VM factory (it provisions VMs with System.vms)')
    .option('--max-vms <n>', 'a factory: most VMs it runs at once', parseCount)
    .option('--json', 'print where it serves as one JSON line')
    .action(async (script: string, options: ExecOptions) => runExec(script, options))
}

async function runExec(script: string, options: ExecOptions): Promise<void> {
  if (options.maxVms !== undefined && !options.factory) throw new UsageError('--max-vms applies to factories: add --factory')
  let code: string
  try {
    code = await readFile(script, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read the script ${script}: ${(error as Error).message}`)
  }
  const dir = resolve(options.dir ?? `${basename(script, extname(script))}.vms`)
  const vmOptions = options.auth ? { auth: options.auth } : {}
  const vm = options.factory ? new VMFactory(code, { ...vmOptions, maxVMs: options.maxVms }) : new VM(code, vmOptions)
  err.note(`deploying ${script} into ${dir}`)
  await vm.deploy({ dir, title: options.title })
  const server = new RPCServer()
  server.mount('/', vm)
  if (vm instanceof VMFactory) vm.setRPCServer(server)
  try {
    await server.listen({ port: options.port, host: options.host })
  } catch (error) {
    await vm.close()
    throw error
  }
  const where = {
    rpcUrl: `${server.url}/`,
    callLogUrl: vm.callLog.url,
    filesArchiveUrl: vm.filesArchive.url,
    dir,
    title: vm.title,
    auth: vm.auth,
    factory: vm instanceof VMFactory,
    calls: vm.callLog.length - 1,
    pid: process.pid,
  }
  if (options.json) {
    out.json(where)
  } else {
    out.line(
      `${out.paint('green', '✓')} serving ${out.paint('bold', basename(script))}${where.factory ? ' (a VM factory)' : ''} in ${where.auth} mode`,
    )
    out.line(`  RPC       ${where.rpcUrl}`)
    out.line(`  call log  ${where.callLogUrl}  (${where.calls} calls so far)`)
    out.line(`  files     ${where.filesArchiveUrl}`)
    out.line(`  data      ${where.dir}`)
    out.line(out.paint('dim', '  Ctrl-C stops it'))
  }
  await untilStopped(async (signal) => {
    err.note(`${signal}: answering calls in flight, then closing`)
    await server.close()
    await vm.close()
  })
}

/**
 * Waits for SIGINT or SIGTERM, then runs `stop` (calls in flight are answered, storage closed) and
 * exits 0. A second signal while stopping exits at once (storage is crash-safe either way).
 */
function untilStopped(stop: (signal: string) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        err.line(`${signal} again: exiting without waiting`)
        process.exit(130)
      }
      stopping = true
      stop(signal).then(() => {
        process.off('SIGINT', onSignal)
        process.off('SIGTERM', onSignal)
        resolve()
      }, reject)
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
