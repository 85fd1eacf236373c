/**
 * `nodevms exec <script>`: deploys a VM (or a VM factory) into a data dir and serves it over RPC at
 * `/` until Ctrl-C or SIGTERM. Restarting on the same dir resumes the VM where it stopped.
 */

import { createWriteStream } from 'node:fs'
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, extname, join, resolve } from 'node:path'
import type { Command } from 'commander'
import { UsageError } from '../errors.js'
import type { AuthMode } from '../ledger/log-entry.js'
import { RPCServer } from '../rpc/rpc-server.js'
import type { VMLimits } from '../sandbox/limits.js'
import { bundleScript, needsBundling } from '../script/bundle.js'
import { type DeployOptions, type LoggedCall, type UpgradeResult, VM, type VMOptions } from '../vm/vm.js'
import { VMFactory } from '../vm/vm-factory.js'
import { counted } from '../wording.js'
import { addLimitOptions, ignoredLimits, limitsOf } from './limit-options.js'
import { addListenOptions } from './listen-options.js'
import { err, out, Progress } from './output.js'
import {
  collectOrigins,
  parseAuth,
  parseBytes,
  parseCheckpoints,
  parseCount,
  parseIdleTimeout,
  parseLimitOrOff,
  parsePositive,
} from './parse-options.js'
import { addSwarmOptions, type SwarmFlags, swarmOf } from './swarm-options.js'
import { untilStopped } from './until-stopped.js'

/** How long exec waits for the DHT to confirm its announcement before it says where it serves. */
const ANNOUNCE_WAIT_MS = 60_000

interface ExecOptions extends SwarmFlags, Partial<VMLimits> {
  port: number
  host: string
  dir?: string
  title?: string
  auth?: AuthMode
  factory?: boolean
  maxVms?: number
  maxVmsPerCaller?: number
  memoryBudget?: number
  checkpoints?: { every: number } | false
  json?: boolean
  maxConnections?: number
  maxConnectionsPerAddress?: number
  handshakeTimeout?: number
  idleTimeout?: number
  maxQueuedCalls?: number
  maxBadSignatures?: number
  allowOrigin?: string[]
  accessLog?: string | true
  upgrade?: boolean
  dryRun?: boolean
}

export function registerExec(program: Command): void {
  const command = program
    .command('exec')
    .description('serve a VM script over RPC, logging every call (Ctrl-C stops it; run it again on the same dir to resume)')
    .argument('<script>', 'the VM script: a JavaScript file, or a TypeScript or module entry (bundled with what it imports)')
    .option('-d, --dir <dir>', "the VM's data dir (default: ./<script name>.vms)")
    .option('-t, --title <title>', 'the VM title (first deploy only)')
    .option('--auth <mode>', "'debug' (user ids taken on trust) or 'production' (callers sign every call); first deploy only", parseAuth)
    .option('--factory', 'serve the script as a VM factory (it provisions VMs with System.vms)')
    .option('--max-vms <n>', 'a factory: most VMs it runs at once', parseCount)
    .option('--max-vms-per-caller <n>', 'a factory: most VMs one caller may run at once (default: --max-vms)', parseCount)
    .option(
      '--memory-budget <bytes>',
      "a factory: most engine memory its VMs may reserve together, the sum of their memory limits (e.g. 8GiB; default: half the machine's memory)",
      parseBytes,
    )
    .option(
      '--checkpoints <n|off>',
      "state the VM's digest in its log and keep a snapshot every n calls (default 1000), so a restart replays only the calls after it; off: none",
      parseCheckpoints,
    )
    .option(
      '--upgrade',
      "if the dir holds a VM that runs other code, upgrade it to this script as it starts (its state handed over by the script's exports.upgrade hook); limit flags given apply from the upgrade on",
    )
    .option(
      '--dry-run',
      "with --upgrade: run the upgrade on a copy of the stopped VM's dir, say what it did, and exit (nothing is appended, nothing served)",
    )
    .option('--json', 'print where it serves as one JSON line (and the access log as JSON lines)')
    .option('--access-log [file]', 'print a line per call (seq, time, caller, method, duration, outcome) on stderr, or append it to file')
    .option('--max-connections <n>', 'most open connections at once (default 1000)', parsePositive)
    .option('--max-connections-per-address <n>', 'most open connections from one remote address (default 128)', parsePositive)
    .option('--handshake-timeout <ms>', 'time a connection has, from connecting, to send rpc.handshake (default 10000)', parsePositive)
    .option(
      '--idle-timeout <ms|off>',
      "close an RPC connection with no call in flight for this long (default 300000; 'off': never)",
      parseIdleTimeout,
    )
    .option(
      '--max-queued-calls <n>',
      'most calls in flight per VM (default 1000), shared among connections: when full, the connection holding the most gives way',
      parsePositive,
    )
    .option(
      '--max-bad-signatures <n|off>',
      "production mode: close a connection once this many of its signed calls fail the caller check (default 16; 'off': never)",
      parseLimitOrOff,
    )
    .option(
      '--allow-origin <origins|*>',
      "web page origins that may connect (repeatable or a comma list; '*': any). Default: any page to a production-mode VM, none to a debug-mode one",
      collectOrigins,
    )
  addLimitOptions(command)
  addListenOptions(command, 'the VM', 5555)
  addSwarmOptions(command, 'also publish its call log and files').action(async (script: string, options: ExecOptions) =>
    runExec(script, options),
  )
}

/** Says, on stderr, what an upgrade did (or, `dryRun`, would do): the old and new code versions, the hook's outcome, its cost. */
function reportUpgrade(result: UpgradeResult, json: boolean, dryRun: boolean): void {
  if (json) {
    err.line(JSON.stringify({ [dryRun ? 'wouldUpgrade' : 'upgraded']: result }))
    return
  }
  const hook = result.hook
    ? `its upgrade hook returned ${result.result === undefined ? 'nothing' : clip(JSON.stringify(result.result))}`
    : 'it has no upgrade hook: no state was handed over (files carry on)'
  const verb = dryRun ? 'would upgrade (dry run: nothing appended)' : 'upgraded'
  err.line(
    `${verb}: code ${result.from.hash.slice(0, 16)} (from entry ${result.from.seq}) → ${result.to.hash.slice(0, 16)} at entry ${result.seq}; ${hook}; ${counted(result.cost, 'tick')}`,
  )
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

/**
 * --upgrade --dry-run: the upgrade on a copy of the VM's dir (which must hold a stopped VM), reported
 * by the 'upgrade' event or the refusal it throws; the copy is removed, nothing is served.
 */
async function dryRunUpgrade(vm: VM, dir: string): Promise<void> {
  const copy = await mkdtemp(join(tmpdir(), 'nodevms-dry-run-'))
  try {
    try {
      await cp(dir, join(copy, 'vm'), { recursive: true, errorOnExist: true })
    } catch (error) {
      throw new UsageError(`cannot copy ${dir} for a dry run: ${(error as Error).message}`)
    }
    // The store's device file ties it to where it was made; the copy is a store of its own, in a temp dir.
    await rm(join(copy, 'vm', 'corestore', 'CORESTORE'), { force: true })
    err.note(`dry run: upgrading a copy of ${dir}`)
    let upgraded = false
    vm.once('upgrade', () => {
      upgraded = true
    })
    await vm.deploy({ dir: join(copy, 'vm'), upgrade: true })
    if (!upgraded) err.note('dry run: the VM already runs this code; there is nothing to upgrade')
    await vm.close()
  } finally {
    await vm.close().catch(() => {})
    await rm(copy, { recursive: true, force: true })
  }
}

/** Says, on stderr, that a VM is resuming (re-running its log): a line, a progress bar, the time it took. */
function resumeReporter(json: boolean, server: RPCServer): NonNullable<DeployOptions['onResume']> {
  const progress = new Progress('resuming')
  const started = performance.now()
  return (done, total, fromSeq) => {
    const after = fromSeq > 0 ? ` after its snapshot of seq ${fromSeq}` : ''
    // Callers that connect meanwhile are told so (HTTP 503), with how far it got.
    server.reserve('/', `the VM is resuming: ${done} of ${counted(total, 'call')} replayed; try again shortly`)
    if (done === 0) {
      if (json) err.line(JSON.stringify({ resuming: { calls: total, snapshot: fromSeq } }))
      else err.line(`resuming: replaying ${counted(total, 'call')} of its log${after}`)
    }
    progress.update(done, total)
    if (done < total) return
    progress.clear()
    const ms = Math.round(performance.now() - started)
    if (json) err.line(JSON.stringify({ resumed: { calls: total, snapshot: fromSeq, ms } }))
    else err.line(`resumed: ${counted(total, 'call')} replayed${after} in ${ms} ms`)
  }
}

async function runExec(script: string, options: ExecOptions): Promise<void> {
  for (const [flag, value] of [
    ['--max-vms', options.maxVms],
    ['--max-vms-per-caller', options.maxVmsPerCaller],
    ['--memory-budget', options.memoryBudget],
  ] as const) {
    if (value !== undefined && !options.factory) throw new UsageError(`${flag} applies to factories: add --factory`)
  }
  let code: string
  try {
    code = await readFile(script, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read the script ${script}: ${(error as Error).message}`)
  }
  // TypeScript, ES modules and scripts that import: bundled into the one script that is deployed and logged.
  if (await needsBundling(script, code)) {
    const bundle = await bundleScript(script)
    code = bundle.code
    err.note(`bundled ${bundle.entry} with ${bundle.bundler} (${(Buffer.byteLength(code) / 1024).toFixed(1)} KiB)`)
  }
  if (!options.factory && /\bSystem\.vms\b/.test(code)) {
    err.line(`note: ${script} uses System.vms, which only a VM factory has: serve it with --factory`)
  }
  const dir = resolve(options.dir ?? `${basename(script, extname(script))}.vms`)
  if (options.dryRun && !options.upgrade) throw new UsageError('--dry-run tries an upgrade: give --upgrade too')
  const limits = limitsOf(options, (text) => err.line(`note: ${text}`))
  const vmOptions: VMOptions = { checkpoints: options.checkpoints ?? {}, limits }
  if (options.auth) vmOptions.auth = options.auth
  const vm = options.factory
    ? new VMFactory(code, {
        ...vmOptions,
        maxVMs: options.maxVms,
        maxVMsPerCaller: options.maxVmsPerCaller,
        memoryBudget: options.memoryBudget,
      })
    : new VM(code, vmOptions)
  vm.on('upgrade', (result: UpgradeResult) => reportUpgrade(result, !!options.json, !!options.dryRun))
  if (options.dryRun) return dryRunUpgrade(vm, dir)
  const swarm = swarmOf(options, (text) => err.note(text))
  const server = new RPCServer({
    swarm,
    maxConnections: options.maxConnections,
    maxConnectionsPerAddress: options.maxConnectionsPerAddress,
    handshakeTimeoutMs: options.handshakeTimeout,
    idleTimeoutMs: options.idleTimeout,
    maxQueuedCalls: options.maxQueuedCalls,
    maxBadSignatures: options.maxBadSignatures,
    allowOrigins: options.allowOrigin,
  })
  // Listening comes first: a port in use or an address this machine lacks leaves no data dir behind.
  await server.listen({ port: options.port, host: options.host })
  try {
    vm.on('notice', (text: string) => err.note(text))
    err.note(`deploying ${script} into ${dir}`)
    server.reserve('/', 'the VM is starting; try again shortly')
    await vm.deploy({ dir, title: options.title, onResume: resumeReporter(!!options.json, server), upgrade: !!options.upgrade })
    for (const line of ignoredLimits(limits, vm.limits)) err.line(`note: ${line}`)
    server.mount('/', vm)
    if (vm instanceof VMFactory) vm.setRPCServer(server)
    if (swarm) {
      err.note('announcing on the DHT')
      const timer = new Promise<false>((resolve) => setTimeout(() => resolve(false), ANNOUNCE_WAIT_MS).unref())
      if (!(await Promise.race([server.announced().then(() => true), timer]))) {
        err.line(`the DHT has not confirmed the announcement within ${ANNOUNCE_WAIT_MS / 1000} s; serving anyway (it keeps trying)`)
      }
    }
  } catch (error) {
    await server.close()
    await vm.close()
    throw error
  }
  const accessLog = options.accessLog ? openAccessLog(options.accessLog, !!options.json) : null
  if (accessLog) vm.on('call', accessLog.write)
  // Signals are handled before anyone is told where it serves: a SIGTERM right after is a clean stop.
  const stopped = untilStopped(async (signal) => {
    err.note(`${signal}: answering calls in flight, then closing`)
    await server.close()
    await vm.close()
    await accessLog?.close()
  })
  const where = {
    rpcUrl: `${server.url}/`,
    callLogUrl: vm.callLog.url,
    filesArchiveUrl: vm.filesArchive.url,
    dir,
    title: vm.title,
    auth: vm.auth,
    factory: vm instanceof VMFactory,
    calls: vm.callLog.length - 1,
    swarm: !!swarm,
    pid: process.pid,
  }
  if (options.json) {
    out.json(where)
  } else {
    out.line(
      `${out.paint('green', '✓')} serving ${out.paint('bold', basename(script))}${where.factory ? ' (a VM factory)' : ''} in ${where.auth} mode`,
    )
    out.line(`  RPC       ${where.rpcUrl}`)
    out.line(`  call log  ${where.callLogUrl}  (${counted(where.calls, 'call')} so far)`)
    out.line(`  files     ${where.filesArchiveUrl}`)
    out.line(`  data      ${where.dir}`)
    if (swarm) out.line('  DHT       announced: the URLs above are found by key (nodevms verify hyper://… --swarm)')
    out.line(out.paint('dim', '  Ctrl-C stops it'))
  }
  await stopped
}

/**
 * `--access-log [file]`: a line per logged call, on stderr or appended to `file`:
 * `#12 2026-12-07T16:32:33.626Z alice increment 3.1 ms ok` (`✗ TypeError` for a failed call), or with
 * --json `{"seq":12,"time":"…","caller":"alice","method":"increment","ms":3.1,"ok":true}`.
 */
function openAccessLog(to: string | true, json: boolean): { write: (call: LoggedCall) => void; close: () => Promise<void> } {
  const stream = to === true ? null : createWriteStream(resolve(to), { flags: 'a' })
  stream?.on('error', (error) => err.line(`note: the access log ${to} cannot be written: ${error.message}`))
  const write = (call: LoggedCall) => {
    const time = new Date(call.timestamp).toISOString()
    const ms = Math.round(call.ms * 10) / 10
    const line = json
      ? JSON.stringify({
          seq: call.seq,
          time,
          caller: call.caller,
          method: call.method,
          ms,
          ok: !call.error,
          ...(call.error ? { error: call.error } : {}),
        })
      : `#${call.seq} ${time} ${call.caller ?? '(anonymous)'} ${call.method} ${ms} ms ${call.error ? `✗ ${call.error}` : 'ok'}`
    if (stream) stream.write(`${line}\n`)
    else err.line(line)
  }
  const close = () => new Promise<void>((done) => (stream ? stream.end(done) : done()))
  return { write, close }
}
