/**
 * Execution proofs: a portable file that shows a host's log lying about what its VM did. It holds
 * the log's first entries up to and including the first one that does not replay as logged, and a
 * receipt of that last entry — the log key's signature over a tree that holds all of them. Anyone
 * can check it offline with nothing but the file: check the signature, check that the entries are
 * the ones signed, replay them in a fresh VM and see the logged outcome differ.
 *
 * Replay rebuilds a VM's files from its log alone (every call re-runs from the init entry into a
 * fresh archive), so the proof carries no file contents: the signed entries are all that replay reads.
 *
 * A proof is hostile input to whoever checks it: its size is bounded, its replay runs under the
 * limits its init entry records (and the checker's ceilings), and every way it can fail to show a
 * lie is a verdict that does not hold, never an exception.
 */
import { DivergenceError, StateError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { decodeEntry, type LogEntry } from '../ledger/log-entry.js'
import {
  createReceipt,
  FRAUD_PROOF_TYPE,
  FRAUD_PROOF_VERSION,
  type ProofVerdict,
  type Receipt,
  verifyLogPrefix,
} from '../ledger/receipts.js'
import type { VMLimits } from '../sandbox/limits.js'
import type { ReplaySource } from '../vm/replay.js'
import { VM } from '../vm/vm.js'
import { counted } from '../wording.js'
import { diffEntries } from './entry-diff.js'

/** The most entry bytes an execution proof may hold (before base64). */
export const MAX_EXECUTION_PROOF_BYTES = 256 * 1024 * 1024

/**
 * An execution proof: the log's entries 0 to `seq`, where entry `seq` is the first whose logged
 * outcome a replay does not reproduce. Portable JSON (docs/log-format.md).
 */
export interface ExecutionProof {
  type: typeof FRAUD_PROOF_TYPE
  version: typeof FRAUD_PROOF_VERSION
  kind: 'execution'
  /** The call log's key (hex). */
  log: string
  /** The seq of the entry that does not replay as logged. */
  seq: number
  /** Entries 0 to seq - 1, each block's bytes as stored, base64. */
  entries: string[]
  /** The receipt of entry `seq`: its block, and the log's signature over a tree holding all of them. */
  receipt: Receipt
}

export interface ProofCheckOptions {
  /** The most the replay accepts of each limit the log's init entry claims (see ReplayOptions.maxLimits). */
  maxLimits?: Partial<VMLimits>
}

/**
 * The execution proof of entry `seq` of `callLog` (the first entry an audit found divergent), and
 * the verdict of checking it as a stranger would. A proof whose verdict does not hold shows nothing:
 * the divergence was not in the log's entries (it was in the files archive, say), or the log replays.
 */
export async function proveDivergence(
  callLog: CallLog,
  seq: number,
  options: ProofCheckOptions = {},
): Promise<{ proof: ExecutionProof; verdict: ProofVerdict }> {
  await callLog.ready()
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= callLog.length) {
    throw new StateError(`the log has ${counted(callLog.length, 'entry', 'entries')}: there is no entry ${seq} to prove`)
  }
  const entries: string[] = []
  let bytes = 0
  for (let from = 0; from < seq; from += 256) {
    const count = Math.min(256, seq - from)
    const blocks = await Promise.all(Array.from({ length: count }, (_, i) => callLog.core.get(from + i, { valueEncoding: 'binary' })))
    for (const block of blocks as unknown as Buffer[]) {
      bytes += block.byteLength
      entries.push(block.toString('base64'))
    }
    if (bytes > MAX_EXECUTION_PROOF_BYTES) {
      throw new StateError(`entries 0 to ${seq} hold over ${MAX_EXECUTION_PROOF_BYTES} bytes: too many for an execution proof`)
    }
  }
  const receipt = await createReceipt(callLog, seq)
  const proof: ExecutionProof = {
    type: FRAUD_PROOF_TYPE,
    version: FRAUD_PROOF_VERSION,
    kind: 'execution',
    log: callLog.key,
    seq,
    entries,
    receipt,
  }
  return { proof, verdict: await checkExecutionProof(proof, options) }
}

/**
 * Checks an execution proof offline: are its entries the ones the log's key signed, and does a replay
 * of them diverge from what they log? Holds only then; every other finding is a verdict that does not
 * hold, saying why (forged, altered, or inconclusive here, such as a log of another engine version).
 */
export async function checkExecutionProof(proof: unknown, options: ProofCheckOptions = {}): Promise<ProofVerdict> {
  const p = proof as Partial<ExecutionProof> | null
  if (p === null || typeof p !== 'object' || p.type !== FRAUD_PROOF_TYPE || p.kind !== 'execution') {
    return { holds: false, why: 'it is not a LibVMS execution proof' }
  }
  if (p.version !== FRAUD_PROOF_VERSION) return { holds: false, why: `proof version ${String(p.version)} is not one this LibVMS reads` }
  if (!Array.isArray(p.entries) || !Number.isSafeInteger(p.seq) || p.entries.length !== p.seq) {
    return { holds: false, why: 'an execution proof holds the entries before its seq, and only those' }
  }
  const blocks: Buffer[] = []
  let bytes = 0
  for (const text of p.entries) {
    const block = typeof text === 'string' ? Buffer.from(text, 'base64') : null
    if (block === null || block.toString('base64') !== text) return { holds: false, why: `entry ${blocks.length} is not canonical base64` }
    bytes += block.byteLength
    if (bytes > MAX_EXECUTION_PROOF_BYTES) return { holds: false, why: `its entries hold over ${MAX_EXECUTION_PROOF_BYTES} bytes` }
    blocks.push(block)
  }
  let last: Buffer
  try {
    const proven = verifyLogPrefix(p.receipt, blocks)
    if (proven.log !== p.log || proven.seq !== p.seq)
      return { holds: false, why: 'its receipt is of another log or entry than the proof names' }
    last = proven.bytes
  } catch (err) {
    return { holds: false, why: (err as Error).message }
  }
  const log = p.log as string
  let vm: VM | null = null
  try {
    vm = await VM.fromCallLog(
      new ProvenLog(log, [...blocks, last]),
      {},
      {
        maxLimits: options.maxLimits,
        onEntry: (seq, logged, replayed) => {
          const divergence = diffEntries(seq, logged, replayed)
          if (divergence) throw divergence
        },
      },
    )
  } catch (err) {
    // Only a divergence shows a lie. A log this LibVMS cannot read or run (another engine, a newer
    // format, limits above the ceilings, a host fault here) shows nothing either way.
    if (err instanceof DivergenceError && err.seq !== undefined)
      return { holds: true, log, what: `log ${log}: ${err.message}`, seq: err.seq }
    return { holds: false, why: `inconclusive here: ${(err as Error).message}` }
  } finally {
    await vm?.close()
  }
  return { holds: false, why: `its ${blocks.length + 1} entries replay as logged: it shows no divergence` }
}

/** The signed entries of a proof, read as a log. */
class ProvenLog implements ReplaySource {
  readonly url: string

  constructor(
    readonly key: string,
    private readonly blocks: Buffer[],
  ) {
    this.url = `hyper://${key}`
  }

  get length(): number {
    return this.blocks.length
  }

  async ready(): Promise<void> {}

  async get(seq: number): Promise<LogEntry> {
    if (!(seq >= 0 && seq < this.blocks.length)) throw new StateError(`the proof holds no entry ${seq}`)
    return decodeEntry(this.blocks[seq], seq)
  }

  async *entries(opts: { start?: number; end?: number } = {}): AsyncGenerator<LogEntry> {
    const end = Math.min(this.blocks.length, opts.end ?? this.blocks.length)
    for (let seq = Math.max(0, opts.start ?? 0); seq < end; seq++) yield decodeEntry(this.blocks[seq], seq)
  }

  async waitForLength(): Promise<void> {
    throw new StateError("an execution proof's log does not grow: it cannot be followed")
  }
}
