/**
 * `nodevms verify <url | dir>`: fetches a VM's call log and files archive, replays every call and
 * prints a verdict. Exit codes: 0 verified, 1 a divergence (or a malformed log), 2 anything else.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Command } from 'commander'
import { Verifier, type VerifyReport } from '../audit/verifier.js'
import { DivergenceError, FetchError, LogFormatError, UsageError } from '../errors.js'
import { parseKeyUrl, toHex } from '../ledger/keys.js'
import { checkForkProof } from '../ledger/receipts.js'
import type { BackendInfo } from '../rpc/protocol.js'
import { counted } from '../wording.js'
import { type AuditFlags, addAuditOptions } from './audit-options.js'
import { err, errorJSON, out, Progress } from './output.js'
import { parsePositive } from './parse-options.js'
import { writeProof } from './receipt-commands.js'
import { addSwarmOptions, type SwarmFlags, swarmOf } from './swarm-options.js'
import { type OpenedTarget, openTarget, targetKind } from './targets.js'

interface VerifyCommandOptions extends SwarmFlags, AuditFlags {
  proof?: string
  json?: boolean
  follow?: boolean
  jobs?: number
  light?: boolean
}

export function registerVerify(program: Command): void {
  const command = program
    .command('verify')
    .description("replay every call of a VM's log and check the host's results and files")
    .argument('<target>', "the VM's RPC URL (ws://…), its call log URL (hyper://…), or a stopped VM's data dir")
    .option('--json', 'print the verdict as one JSON object')
    .option(
      '--proof <file>',
      "on a divergence in the log, write an execution proof here; from a seeder that proved its host rewrote history, the seeder's fork proof (nodevms check-proof checks either)",
    )
    .option('-f, --follow', 'keep verifying each new call as it lands, until Ctrl-C or a divergence')
    .option(
      '-j, --jobs <n>',
      'replay the log in n segments at once, cut at checkpoints whose snapshots hold (from the data dir, or published by the host)',
      parsePositive,
    )
    .option('--light', 'a weaker audit: replay only the calls after the newest checkpoint with a snapshot, from that snapshot')
  addAuditOptions(command, 'refuse').addHelpText(
    'after',
    '\nExit codes: 0 verified, 1 divergence found (or a malformed log), 2 usage, connection or fetch error, or a log above the --max-* ceilings.',
  )
  addSwarmOptions(command, 'also look the log and archive up').action(async (target: string, options: VerifyCommandOptions) =>
    runVerify(target, options),
  )
}

async function runVerify(target: string, options: VerifyCommandOptions): Promise<void> {
  const progress = new Progress('replaying')
  if (options.dir) await mkdir(resolve(options.dir), { recursive: true })
  if ((options.jobs ?? 1) > 1 && options.follow)
    throw new UsageError('--jobs and --follow do not go together: a followed log is verified as it grows, in one segment')
  if (options.light && options.follow) throw new UsageError('--light and --follow do not go together')
  const opened = await openTarget(target, {
    archive: true,
    snapshots: (options.jobs ?? 1) > 1 || !!options.light || !!options.proof,
    dir: options.dir,
    timeout: options.timeout,
    onStatus: (text) => progress.status(text),
    peers: options.peer,
    onNote: (text) => err.line(`note: ${text}`),
    swarm: swarmOf(options, (text) => progress.status(text)),
    onHandshake: (info) => refuseForkedCopy(target, info, options, progress),
  })
  const replayDir = await mkdtemp(join(options.dir ? resolve(options.dir) : tmpdir(), 'nodevms-replay-'))
  const stop = new AbortController()
  const onSignal = () => stop.abort()
  if (options.follow) {
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  }
  let report: VerifyReport
  try {
    report = await Verifier.verify(opened.callLog, opened.filesArchive, {
      dir: join(replayDir, 'replay'),
      follow: options.follow,
      signal: stop.signal,
      maxLimits: { computeTicks: options.maxTicks, memoryBytes: options.maxMemory },
      parallel: options.jobs,
      light: options.light,
      snapshots: opened.snapshots ?? undefined,
      onNotice: (text) => {
        progress.clear()
        err.line(`note: ${text}`)
      },
      onProgress: (done, total) => {
        if (options.follow && done >= total)
          progress.status(`following: ${counted(done - 1, 'call')} verified, waiting for more (Ctrl-C stops)`)
        else progress.update(done, total)
      },
    })
  } catch (error) {
    progress.clear()
    if (error instanceof DivergenceError || error instanceof LogFormatError) {
      const proof = options.proof && error instanceof DivergenceError ? await writeExecutionProof(opened, error, options) : undefined
      printFailure(opened.label, error, !!options.json, proof)
      process.exitCode = 1
      return
    }
    throw error
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await opened.close().catch(() => {})
    await rm(replayDir, { recursive: true, force: true })
  }
  progress.clear()
  const callLogUrl = opened.callLog.url
  const copy = copyOf(target, opened, report.entries)
  if (options.json) {
    out.json({
      verified: true,
      target: opened.label,
      callLogUrl,
      filesArchiveUrl: opened.filesArchive?.url ?? null,
      entries: report.entries,
      calls: report.calls,
      failedCalls: report.failedCalls,
      filesVersion: report.filesVersion,
      ...(report.segments ? { segments: report.segments } : {}),
      ...(report.lightFrom !== undefined ? { light: true, lightFrom: report.lightFrom } : {}),
      ...(copy ? { copy } : {}),
    })
    return
  }
  const failed = report.failedCalls > 0 ? ` (${report.failedCalls} failed inside the VM, as logged)` : ''
  const calls = counted(report.calls, 'call')
  if (report.lightFrom !== undefined) {
    out.line(
      `${out.paint('green', '✓')} light audit: verified the ${calls} after checkpoint ${report.lightFrom}${failed}; files at version ${report.filesVersion}${describeCopy(copy)}`,
    )
    out.line(`  weaker than a full audit: calls 1 to ${report.lightFrom} were not re-run; their state was taken as the log states it`)
  } else {
    const segments = report.segments && report.segments.length > 1 ? ` in ${report.segments.length} segments at once` : ''
    out.line(
      `${out.paint('green', '✓')} verified ${calls}${failed}${segments}; files at version ${report.filesVersion}${describeCopy(copy)}`,
    )
  }
  out.line(out.paint('dim', `  ${callLogUrl}`))
}

/**
 * A seeder whose handshake says it proved that the host rewrote history its copy holds: the verdict
 * is the fork (ERR_FORKED, as from the host itself), not a replay of the copy. The proof comes from
 * the seeder, so it is checked here first (it must prove a fork of this very log); a claim with no
 * proof that holds here (one too large for a handshake, or one that does not hold) is noted and the
 * copy verified as it is: a fork is only ever reported with its proof. `--proof <file>` writes it.
 */
async function refuseForkedCopy(target: string, info: BackendInfo, options: VerifyCommandOptions, progress: Progress): Promise<void> {
  const forked = info.replica?.forked
  if (!forked) return
  const claim = `the seeder says the host rewrote the history of ${info.callLogUrl} (host on fork ${forked.hostFork}, the copy on fork ${forked.copyFork})`
  const logKey = toHex(parseKeyUrl(info.callLogUrl))
  if (!forked.proof) {
    return noteUnchecked(
      claim,
      `its fork proof (${counted(forked.proofBytes, 'byte')}) is too large for a handshake: it is in the seeder's dir, forks/${logKey}.json`,
      progress,
    )
  }
  const verdict = checkForkProof(forked.proof)
  if (!verdict.holds) return noteUnchecked(claim, `its fork proof does not hold: ${verdict.why}`, progress)
  if (verdict.log !== logKey) return noteUnchecked(claim, `its fork proof is about log ${verdict.log}`, progress)
  let written = ' (--proof <file> writes the fork proof)'
  if (options.proof) {
    await writeProof(options.proof, forked.proof)
    written = `; fork proof written to ${options.proof} (nodevms check-proof checks it)`
  }
  const copy = `the seeder's copy (${counted(info.replica?.length ?? 0, 'entry', 'entries')}, fork ${forked.copyFork})`
  throw new FetchError(
    'ERR_FORKED',
    `the host rewrote the history of ${info.callLogUrl}: ${verdict.what}; ${copy} keeps the history it received, as the seeder at ${target} proved on ${forked.seenAt}${written}`,
  )
}

function noteUnchecked(claim: string, why: string, progress: Progress): void {
  progress.clear()
  err.line(`note: ${claim}, but ${why}; verifying its copy as it is`)
}

/**
 * Where the verified copy came from, when not from the VM's writer: a seeder (its handshake says so,
 * with when it last saw the host) or the DHT's peers (hosts or seeders: which is not known). Null (and
 * no `copy` in --json) for the host itself (ws:// without `replica`) and a VM's own data dir.
 */
interface CopyReport {
  from: 'seeder' | 'peers'
  /** Entries of the copy that was verified. */
  entries: number
  /** A seeder's: when it last saw the host (ISO 8601), null when not since it started or not known. */
  hostLastSeen: string | null
}

function copyOf(target: string, opened: OpenedTarget, entries: number): CopyReport | null {
  const replica = opened.info?.replica
  if (replica) return { from: 'seeder', entries, hostLastSeen: replica.hostLastSeen ?? null }
  if (targetKind(target) === 'hyper') return { from: 'peers', entries, hostLastSeen: null }
  return null
}

function describeCopy(copy: CopyReport | null): string {
  if (!copy) return ''
  const entries = counted(copy.entries, 'entry', 'entries')
  if (copy.from === 'peers') return ` (a copy from the DHT's peers: ${entries}; the host may have more)`
  const seen = copy.hostLastSeen ? `host last seen ${copy.hostLastSeen}` : 'host not seen since the seeder started'
  return ` (a seeder's copy: ${entries}, ${seen})`
}

/** What `--proof` did: the proof written (its size), or why the divergence makes none. */
type ProofOutcome = { file: string; bytes: number; entries: number; fromCheckpoint: number | null } | { file: null; why: string }

async function writeExecutionProof(
  opened: OpenedTarget,
  divergence: DivergenceError,
  options: VerifyCommandOptions,
): Promise<ProofOutcome> {
  if (divergence.seq === undefined) return { file: null, why: 'the divergence is not at an entry of the log' }
  const maxLimits = { computeTicks: options.maxTicks, memoryBytes: options.maxMemory }
  const { proof, verdict } = await Verifier.proveDivergence(opened.callLog, divergence.seq, {
    maxLimits,
    snapshots: opened.snapshots ?? undefined,
    filesArchive: opened.filesArchive ?? undefined,
  })
  // The log's entries alone must show it: a divergence of the archive from the log does not.
  if (!verdict.holds) return { file: null, why: `the log's entries alone do not show it (${verdict.why})` }
  const file = options.proof as string
  await writeProof(file, proof)
  // Entries given: those from the start, the receipt's own, and (from a checkpoint) the init entry.
  const entries = proof.entries.length + 1 + (proof.start ? 1 : 0)
  return { file, bytes: (await stat(file)).size, entries, fromCheckpoint: proof.start?.seq ?? null }
}

function printFailure(label: string, error: DivergenceError | LogFormatError, json: boolean, proof?: ProofOutcome): void {
  if (json) {
    out.json({ verified: false, target: label, divergence: errorJSON(error), ...(proof ? { proof } : {}) })
    return
  }
  out.line(`${out.paint('red', '✗')} ${error instanceof DivergenceError ? 'divergence' : 'malformed log'}: ${error.message}`)
  if (error instanceof DivergenceError) {
    const d = error
    const rows: [string, unknown][] = [
      ['seq', d.seq],
      ['method', d.method],
      ['caller', d.caller],
      ['field', d.field],
      ['path', d.path],
    ]
    for (const [name, value] of rows) if (value !== undefined && value !== null) out.line(`  ${name.padEnd(9)}${String(value)}`)
    if (d.expected !== undefined || d.actual !== undefined) {
      out.line(`  ${'log says'.padEnd(9)}${short(d.expected)}`)
      out.line(`  ${'replay'.padEnd(9)}${short(d.actual)}`)
    }
  }
  if (proof?.file)
    out.line(
      `  execution proof written to ${proof.file} (${counted(proof.bytes, 'byte')}, ${counted(proof.entries, 'entry', 'entries')}${proof.fromCheckpoint === null ? '' : `, from the snapshot of checkpoint ${proof.fromCheckpoint}`})`,
    )
  else if (proof && proof.file === null) out.line(`  no execution proof: ${proof.why}`)
}

function short(value: unknown): string {
  const text = value === undefined ? 'nothing' : JSON.stringify(value)
  return text.length > 300 ? `${text.slice(0, 300)}…` : text
}
