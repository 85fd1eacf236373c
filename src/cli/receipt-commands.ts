/**
 * `nodevms check-receipt <receipt-file> <target>`: does the log still hold what a receipt says it
 * held? `nodevms check-proof <proof-file>`: does a fraud proof show its log's host dishonest? The
 * second uses no network: the file is all it needs (an execution proof is replayed in a temp dir).
 */
import { readFile, stat, writeFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { MAX_EXECUTION_PROOF_BYTES } from '../audit/execution-proof.js'
import { Verifier } from '../audit/verifier.js'
import { UsageError } from '../errors.js'
import { FRAUD_PROOF_TYPE, type Receipt } from '../ledger/receipts.js'
import { parseCount, parseTimeout } from './parse-options.js'
import { openTarget } from './targets.js'

/** The most a receipt or proof file may hold: an execution proof's entries, in base64, and their JSON. */
const MAX_FILE_BYTES = Math.ceil((MAX_EXECUTION_PROOF_BYTES * 4) / 3) + 64 * 1024 * 1024

/** The JSON in `file`, or a UsageError saying why it cannot be read. */
export async function readJSON(file: string, what: string): Promise<unknown> {
  let text: string
  try {
    const { size } = await stat(file)
    if (size > MAX_FILE_BYTES) throw new Error(`it is ${size} bytes, more than any ${what} holds (${MAX_FILE_BYTES})`)
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read the ${what} ${file}: ${(err as Error).message}`)
  }
  try {
    return JSON.parse(text)
  } catch {
    throw new UsageError(`${file} is not a ${what}: it is not JSON`)
  }
}

export function registerReceiptCommands(program: Command): void {
  program
    .command('check-receipt')
    .description("check a call's receipt against the VM's log as it is now")
    .argument('<receipt-file>', 'a receipt (nodevms call --receipt writes one)')
    .argument('<target>', "the VM's RPC URL, its call log's hyper:// URL, or a stopped VM's data dir")
    .option('--proof <file>', 'when the log no longer holds the receipt, write the fork proof here')
    .option('--timeout <ms>', 'how long a host may take to answer', parseTimeout)
    .option('--json', 'print the verdict as JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 the log holds the receipt, 1 it does not (a fork proof is written with --proof), 2 cannot tell yet (the copy is behind) or anything else.',
    )
    .action(async (receiptFile: string, target: string, options: { proof?: string; timeout?: number; json?: boolean }) => {
      const receipt = (await readJSON(receiptFile, 'receipt')) as Receipt
      const opened = await openTarget(target, { archive: false, timeout: options.timeout })
      try {
        const checked = await Verifier.checkReceipt(opened.callLog, receipt)
        if (checked.holds) {
          print(options.json, checked, `holds: entry ${checked.seq} is in ${opened.label}, as signed at length ${checked.length}`)
          return
        }
        if (checked.holds === null) {
          print(options.json, checked, `cannot tell yet: ${checked.why}`)
          process.exitCode = 2
          return
        }
        if (options.proof && checked.proof) await writeProof(options.proof, checked.proof)
        const proofNote = checked.proof
          ? options.proof
            ? `; fork proof written to ${options.proof}`
            : '; --proof <file> writes the fork proof'
          : ''
        print(options.json, checked, `does not hold: ${checked.why}${proofNote}`)
        process.exitCode = 1
      } finally {
        await opened.close()
      }
    })

  program
    .command('check-proof')
    .description('check a fraud proof, offline: does it show the host of its log dishonest?')
    .argument('<proof-file>', 'a fork proof (nodevms check-receipt --proof writes one) or an execution proof (nodevms verify --proof)')
    .option('--json', 'print the verdict as JSON')
    .option('--max-ticks <n>', "refuse to replay an execution proof whose log's calls may each use more compute ticks", parseCount)
    .option('--max-memory <bytes>', "refuse to replay an execution proof whose log's VM has more memory", parseCount)
    .addHelpText('after', '\nExit codes: 0 the proof holds, 1 it does not (forged, altered or inconclusive), 2 the file is not a proof.')
    .action(async (proofFile: string, options: { json?: boolean; maxTicks?: number; maxMemory?: number }) => {
      const proof = await readJSON(proofFile, 'fraud proof')
      if ((proof as { type?: unknown } | null)?.type !== FRAUD_PROOF_TYPE) throw new UsageError(`${proofFile} is not a LibVMS fraud proof`)
      const verdict = await Verifier.checkProof(proof, { maxLimits: { computeTicks: options.maxTicks, memoryBytes: options.maxMemory } })
      print(options.json, verdict, verdict.holds ? `holds: ${verdict.what}` : `does not hold: ${verdict.why}`)
      if (!verdict.holds) process.exitCode = 1
    })
}

/** Writes a proof file: JSON, one field per line (an execution proof's entries one per line too). */
export async function writeProof(file: string, proof: unknown): Promise<void> {
  await writeFile(file, `${JSON.stringify(proof, null, 1)}\n`)
}

function print(json: boolean | undefined, verdict: unknown, line: string): void {
  process.stdout.write(json ? `${JSON.stringify(verdict)}\n` : `${line}\n`)
}
