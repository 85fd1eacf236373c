#!/usr/bin/env node
/**
 * The `nodevms` command: serve, call, inspect and audit VMs. Each command lives in its own module;
 * this one wires them up, and turns errors into one line on stderr and an exit code:
 * 0 success, 1 the thing checked failed (a divergence, a call that failed in the VM), 2 anything
 * else (usage, connection, fetch). docs/cli.md documents every command and its output.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import { DivergenceError, LogFormatError } from '../errors.js'
// Fetching logs and archives from hosts (log, verify) needs the network layer registered.
import '../net/remote-cores.js'
import { RPC_ERRORS } from '../rpc/protocol.js'
import { registerCall } from './call-command.js'
import { registerExec } from './exec-command.js'
import { registerExplore } from './explore-command.js'
import { registerInfo } from './info-command.js'
import { registerKeygen } from './keygen-command.js'
import { registerLog } from './log-command.js'
import { reportError } from './output.js'
import { registerReceiptCommands } from './receipt-commands.js'
import { registerRepl } from './repl-command.js'
import { registerSeed } from './seed-command.js'
import { registerVerify } from './verify-command.js'

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

function exitCodeOf(error: unknown): number {
  if (error instanceof DivergenceError || error instanceof LogFormatError) return 1
  if ((error as { rpcCode?: number }).rpcCode === RPC_ERRORS.CALL_FAILED) return 1
  return 2
}

/** What to do about errors whose library message speaks of API options rather than command-line flags. */
const HINTS: Record<string, string> = {
  ERR_AUTH_REQUIRED: 'this VM is in production mode: call with --key <file> (nodevms keygen makes one)',
  ERR_AUTH_MODE: "use --user for a debug-mode VM and --key for a production-mode one (nodevms info shows the VM's mode)",
  ERR_DIR_IN_USE: 'stop the nodevms exec serving it, or give its ws:// URL instead',
  ERR_LISTEN: 'choose where with --port (0 picks a free one) and --host',
  ERR_DIR_NOT_WRITABLE: 'choose the data dir with --dir',
}

/** A commander error message ("error: missing required argument 'x'\n") as one of ours. */
function usageLine(text: string): string {
  const [first, ...rest] = text.trimEnd().split('\n')
  const message = first.replace(/^error: /, '').replace(/ is invalid\. /, ' is invalid: ')
  return `${[`✗ UsageError: ${message} [ERR_USAGE]`, ...rest].join('\n')}\n`
}

/** Library phrasing that names API options, in the command line's words. */
const CLI_WORDS: [RegExp, string][] = [
  [/connect with \{keyPair\}, not \{user\}/g, 'use --key <file>, not --user'],
  [/connect with \{keyPair\}/g, 'use --key <file>'],
  [/connect with \{user\}/g, 'use --user <id>, not --key'],
  [/create one with generateKeyPair\(\) and saveKeyPair\(\) \(or nodevms keygen\)/g, 'create one with nodevms keygen'],
  [/list vm\.methods for the ones it has/g, 'nodevms info lists the ones it has'],
  [/the handshake lists them/g, 'nodevms info lists them'],
  [/pass \{overwrite: true\} to replace it/g, 'give --force to replace it'],
  [
    /give deploy an empty or new directory, or the dir of an existing VM/g,
    'give --dir an empty or new directory, or the dir of an existing VM',
  ],
  [/\(deploy\(\{dir, upgrade: true\}\); nodevms exec --upgrade\)/g, '(nodevms exec <script> --dir <dir> --upgrade)'],
  [/\{maxLimits: \{computeTicks\}\}/g, '--max-ticks <n>'],
  [/\{maxLimits: \{memoryBytes\}\}/g, '--max-memory <bytes>'],
  [/\{maxLimits: \{\w+\}\}/g, "the library's maxLimits (nodevms verify raises only --max-ticks and --max-memory)"],
  [/, or pass \{allowEngineMismatch: true\} to try anyway/g, ' (nodevms verify of this LibVMS version cannot audit it)'],
  [
    /connect an RPCClient to the VM first \(recording into the same \{hosts\} book\), pass \{peers: \['ws:\/\/host:port\/path'\]\}, or look it up on the DHT with \{swarm: true\}/g,
    'give its ws:// URL instead, or look it up on the DHT with --swarm',
  ],
]

/** `error`, its message in the command line's words (a copy, when any are changed). */
function inCLIWords(error: unknown): unknown {
  const e = error as { message?: unknown }
  if (typeof e?.message !== 'string') return error
  let message = e.message
  for (const [pattern, words] of CLI_WORDS) message = message.replace(pattern, words)
  if (message === e.message) return error
  return Object.assign(Object.create(Object.getPrototypeOf(error)) as Error, error, {
    message,
    name: (error as Error).name,
    stack: (error as Error).stack,
  })
}

function buildProgram(): Command {
  const program = new Command()
    .name('nodevms')
    .description('Run, call, inspect and audit LibVMS VMs: auditable JavaScript services.')
    .version(version(), '-V, --version')
    .option('--debug', 'print stack traces with errors')
    .showHelpAfterError('(add --help for usage)')
    // Commander's own errors in the one format: ✗ UsageError: <message> [ERR_USAGE]
    .configureOutput({ outputError: (text, write) => write(usageLine(text)) })
    .exitOverride()
  for (const register of [
    registerExec,
    registerCall,
    registerRepl,
    registerVerify,
    registerLog,
    registerExplore,
    registerInfo,
    registerKeygen,
    registerSeed,
    registerReceiptCommands,
  ]) {
    register(program)
  }
  for (const command of program.commands) command.exitOverride()
  return program
}

async function main(): Promise<void> {
  const program = buildProgram()
  try {
    await program.parseAsync(process.argv)
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; usage errors were already printed by commander.
      process.exitCode = error.exitCode === 0 ? 0 : 2
      return
    }
    reportError(inCLIWords(error), process.argv.includes('--debug'), HINTS[(error as { code?: string }).code ?? ''])
    process.exitCode = exitCodeOf(error)
  }
}

// main() reports errors itself; this is for a failure in that reporting.
main().catch((error) => {
  reportError(error, true)
  process.exit(2)
})
