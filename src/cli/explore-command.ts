/**
 * `nodevms explore <target>`: serves a page on 127.0.0.1 that shows a VM's call log and files archive
 * (as of any call), follows the log as it grows, and audits it in the browser (src/explorer/). Runs
 * until SIGINT or SIGTERM.
 */
import { spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import { ListenError } from '../errors.js'
import { ExplorerServer } from '../explorer/explorer-server.js'
import type { DatArchive } from '../ledger/files-archive.js'
import { type AuditFlags, addAuditOptions } from './audit-options.js'
import { addListenOptions, type ListenFlags } from './listen-options.js'
import { err, out } from './output.js'
import { addSwarmOptions, type SwarmFlags, swarmOf } from './swarm-options.js'
import { openTarget } from './targets.js'
import { untilStopped } from './until-stopped.js'

interface ExploreOptions extends SwarmFlags, AuditFlags, ListenFlags {
  json?: boolean
  open?: boolean
}

export function registerExplore(program: Command): void {
  const command = program
    .command('explore')
    .description("browse a VM's call log and files in a local web page, and audit it there")
    .argument('<target>', "the VM's RPC URL (ws://…), its call log URL (hyper://…), or a stopped VM's data dir")
    .option('--json', 'print where the page is as one JSON line: {"url", "target", "callLogUrl"}')
    .option('--open', 'also try to open the page in a browser (xdg-open; nothing happens without one)')
  addListenOptions(command, 'the page', 0)
  addAuditOptions(command, "the page's audit refuses")
  addSwarmOptions(command, 'also look the log and archive up').action(async (target: string, options: ExploreOptions) =>
    runExplore(target, options),
  )
}

async function runExplore(target: string, options: ExploreOptions): Promise<void> {
  if (options.dir) await mkdir(resolve(options.dir), { recursive: true })
  const opened = await openTarget(target, {
    archive: true,
    dir: options.dir,
    timeout: options.timeout,
    onStatus: (text) => err.note(text),
    peers: options.peer,
    onNote: (text) => err.line(`note: ${text}`),
    swarm: swarmOf(options, (text) => err.note(text)),
  })
  const explorer = new ExplorerServer({
    callLog: opened.callLog,
    filesArchive: opened.filesArchive as DatArchive,
    label: opened.label,
    maxLimits: { computeTicks: options.maxTicks, memoryBytes: options.maxMemory },
    onHostNote: (text) => err.line(text),
  })
  let url: string
  try {
    url = await explorer.listen(options.port ?? 0, options.host ?? '127.0.0.1').catch((error: NodeJS.ErrnoException) => {
      throw new ListenError(`cannot listen on ${options.host}:${options.port}: ${error.message}`)
    })
  } catch (error) {
    await explorer.close().catch(() => {})
    await opened.close().catch(() => {})
    throw error
  }
  // Signals are handled before anyone is told where the page is: a SIGTERM right after is a clean stop.
  const stopped = untilStopped(async (signal) => {
    err.note(`${signal}: closing`)
    await explorer.close()
    await opened.close()
  })
  if (options.json) out.json({ url, target: opened.label, callLogUrl: opened.callLog.url })
  else {
    out.line(`${out.paint('green', '✓')} exploring ${opened.label}`)
    out.line(`  page      ${url}`)
    out.line(`  call log  ${opened.callLog.url}`)
    out.line(out.paint('dim', '  Ctrl-C stops it'))
  }
  if (options.open) openInBrowser(url)
  await stopped
}

/** Tries xdg-open; a machine without it (or without a browser) is not an error. */
function openInBrowser(url: string): void {
  try {
    const child = spawn('xdg-open', [url], { stdio: 'ignore', detached: true })
    child.on('error', () => err.note('could not open a browser (no xdg-open): open the URL above yourself'))
    child.unref()
  } catch {
    // nothing to open it with
  }
}
