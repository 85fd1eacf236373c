/** `nodevms log <url | dir>`: a VM's call log, one entry per line, human-readable or as JSON lines. */
import type { Command } from 'commander'
import { clippedJSON, clippedList } from '../codec/clipped-json.js'
import type { CallLog } from '../ledger/call-log.js'
import type { LogEntry } from '../ledger/log-entry.js'
import { codeHash } from '../ledger/log-hashes.js'
import { bundleInfoOf } from '../script/bundle.js'
import { err, out } from './output.js'
import { parseCount, parseTimeout } from './parse-options.js'
import { addSwarmOptions, type SwarmFlags, swarmOf } from './swarm-options.js'
import { openTarget } from './targets.js'

interface LogOptions extends SwarmFlags {
  json?: boolean
  follow?: boolean
  from?: number
  timeout?: number
}

export function registerLog(program: Command): void {
  const command = program
    .command('log')
    .description("print a VM's call log: seq, time, caller, method(args) → result or error, files version")
    .argument('<target>', "the VM's RPC URL (ws://…), its call log URL (hyper://…), or a stopped VM's data dir")
    .option('--json', 'one JSON object per line: {"seq": n, ...the entry as stored} (see docs/log-format.md)')
    .option('-f, --follow', 'keep printing entries as they are appended, until Ctrl-C')
    .option('--from <seq>', 'start at this seq (default 0)', parseCount)
    .option('--timeout <ms>', 'how long a host may take to answer', parseTimeout)
  addSwarmOptions(command, 'also look the log up').action(async (target: string, options: LogOptions) => {
    // Ctrl-C ends --follow cleanly; the handlers are in place before anything is printed.
    const stop = new AbortController()
    const onSignal = () => stop.abort()
    if (options.follow) {
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
    }
    const swarm = swarmOf(options, (text) => err.note(text))
    const opened = await openTarget(target, { archive: false, timeout: options.timeout, swarm })
    try {
      const print = (seq: number, entry: LogEntry) => out.line(options.json ? JSON.stringify({ seq, ...entry }) : formatEntry(seq, entry))
      let next = await printRange(opened.callLog, options.from ?? 0, opened.callLog.length, print)
      while (options.follow && !stop.signal.aborted) {
        await opened.callLog.waitForLength(next + 1, { signal: stop.signal })
        next = await printRange(opened.callLog, next, opened.callLog.length, print)
      }
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      await opened.close()
    }
  })
}

async function printRange(callLog: CallLog, start: number, end: number, print: (seq: number, e: LogEntry) => void): Promise<number> {
  let seq = start
  if (start >= end) return start
  for await (const entry of callLog.entries({ start, end })) print(seq++, entry)
  return seq
}

const ISO = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '')

function describeCaller(caller: string | null): string {
  if (caller === null) return out.paint('dim', '(anonymous)')
  return /^[0-9a-f]{64}$/.test(caller) ? `${caller.slice(0, 12)}…` : caller
}

/** One entry as a line: `#seq  time  caller  method(args) → result  files vN`. */
export function formatEntry(seq: number, entry: LogEntry): string {
  const head = `${out.paint('dim', `#${seq}`)}  ${ISO(entry.timestamp)}`
  const files = out.paint('dim', `files v${entry.files.version}`)
  if (entry.type === 'init') {
    const factory = entry.factory ? ' factory' : ''
    const bundle = bundleInfoOf(entry.code)
    const code = bundle ? `; code bundled from ${bundle.entry} by ${bundle.bundler}` : ''
    return `${head}  init${factory} ${JSON.stringify(entry.title)} (${entry.auth} mode; exports ${entry.exports.join(', ') || 'nothing'}${code})  ${files}`
  }
  if (entry.type === 'upgrade') {
    const bundle = bundleInfoOf(entry.code)
    const code = bundle ? `; bundled from ${bundle.entry} by ${bundle.bundler}` : ''
    const result = entry.result === undefined ? '' : ` → ${clippedJSON(entry.result, CLIP)}`
    return `${head}  ${out.paint('bold', 'upgrade')} to code ${codeHash(entry.code).slice(0, 16)} (replaces ${entry.replaces.hash.slice(0, 16)} of #${entry.replaces.seq}; exports ${entry.exports.join(', ') || 'nothing'}${code})${result}  ${files}`
  }
  // Values as logged (tagged JSON), cut: only what is shown of each is ever written, however big.
  const args = clippedList(entry.args, CLIP)
  const outcome = entry.error
    ? out.paint('red', `✗ ${clip(`${entry.error.name}: ${entry.error.message}`)}`)
    : entry.result === undefined
      ? out.paint('dim', 'undefined')
      : clippedJSON(entry.result, CLIP)
  const signed = entry.signed ? out.paint('dim', ' (signed)') : ''
  return `${head}  ${describeCaller(entry.caller)}${signed}  ${out.paint('bold', clip(entry.method))}(${args}) → ${outcome}  ${files}`
}

/** Characters of a value a line shows. */
const CLIP = 200

function clip(text: string): string {
  return text.length > CLIP ? `${text.slice(0, CLIP)}…` : text
}
