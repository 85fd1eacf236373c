/**
 * Execution proofs: a portable file that shows a host's log lying about what its VM did. It holds
 * the log's first entries up to and including the first one that does not replay as logged, and a
 * receipt of that last entry — the log key's signature over a tree that holds all of them. Anyone
 * can check it offline with nothing but the file: check the signature, check that the entries are
 * the ones signed, replay them in a fresh VM and see the logged outcome differ.
 *
 * Replay rebuilds a VM's files from its log alone (every call re-runs from the init entry into a
 * fresh archive), so the proof carries no file contents: the signed entries are all that replay reads.
 * Or, when it is smaller, a proof starts at a checkpoint before the divergent entry: it then holds the
 * init entry, the snapshot whose digest that checkpoint states, the files archive's blocks up to the
 * state it records, the entries from it on, and Merkle nodes standing for the entries in between
 * (so the receipt's one signature still covers every entry given). Replay starts from the snapshot,
 * as a parallel audit's segment does: the log's own stated state, so a divergence after it is a lie
 * either way.
 *
 * A proof is hostile input to whoever checks it: its size is bounded, its replay runs under the
 * limits its init entry records (and the checker's ceilings), and every way it can fail to show a
 * lie is a verdict that does not hold, never an exception.
 */
import { DivergenceError, SnapshotUnreadable, StateError } from '../errors.js'
import { prefixBytes } from '../ledger/block-sizes.js'
import type { CallLog, ReadEntry } from '../ledger/call-log.js'
import { diffEntry } from '../ledger/entry-diff.js'
import type { DatArchive } from '../ledger/files-archive.js'
import { type CallEntry, decodeEntry, type InitEntry, type LogEntry } from '../ledger/log-entry.js'
import {
  createReceipt,
  entryBytesBefore,
  FRAUD_PROOF_TYPE,
  FRAUD_PROOF_VERSION,
  type ProofVerdict,
  type Receipt,
  standInNodes,
  type TreeNode,
  verifyLogPart,
} from '../ledger/receipts.js'
import { decodeSnapshot, encodeSnapshot, maxSnapshotBytes, snapshotMisfit, type VMSnapshot } from '../ledger/snapshot.js'
import { resolveLimits, type VMLimits } from '../sandbox/limits.js'
import { openReplay, type Replay, type ReplaySource, type ReplayStart } from '../vm/replay.js'
import { stateFormatFor } from '../vm/turn-runner.js'
import { counted } from '../wording.js'
import { archiveBlocks, newestStartBefore, type SnapshotSource } from './checkpoint-starts.js'

/** The most entry bytes an execution proof may hold (before base64). */
export const MAX_EXECUTION_PROOF_BYTES = 256 * 1024 * 1024

/** What each archive block of a proof's start counts for against MAX_EXECUTION_PROOF_BYTES, beside its bytes. */
export const ARCHIVE_BLOCK_CHARGE = 1024

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
  /** Entries 0 to seq - 1 (with `start`: start.seq to seq - 1), each block's bytes as stored, base64. */
  entries: string[]
  /** Where replay starts, when not from the init entry: a checkpoint before `seq`. */
  start?: ProofStart
  /** The receipt of entry `seq`: its block, and the log's signature over a tree holding all of them. */
  receipt: Receipt
}

/** An execution proof's start at a checkpoint: what a replay from there reads, and what stands for the rest. */
export interface ProofStart {
  /** The checkpoint's seq: its entry is the proof's first in `entries`. */
  seq: number
  /** Entry 0, the init entry, base64. */
  init: string
  /** Merkle nodes standing for entries 1 to seq - 1 (hash in hex). */
  nodes: { index: number; size: number; hash: string }[]
  /** The snapshot of the state after entry `seq` (a snapshot file, docs/log-format.md), base64. */
  snapshot: string
  /** The files archive's blocks up to the state entry `seq` records (metadata core, blobs core), base64. */
  archive: { db: string[]; blobs: string[] }
}

export interface ProveOptions extends ProofCheckOptions {
  /** The host's snapshots and its files archive: the proof may then start at a checkpoint, when that is smaller. */
  snapshots?: SnapshotSource
  filesArchive?: DatArchive
  /** Lines about snapshots passed over. */
  onNotice?: (message: string) => void
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
  options: ProveOptions = {},
): Promise<{ proof: ExecutionProof; verdict: ProofVerdict }> {
  await callLog.ready()
  if (!Number.isSafeInteger(seq) || seq < 0 || seq >= callLog.length) {
    throw new StateError(`the log has ${counted(callLog.length, 'entry', 'entries')}: there is no entry ${seq} to prove`)
  }
  const receipt = await createReceipt(callLog, seq)
  const base = { type: FRAUD_PROOF_TYPE, version: FRAUD_PROOF_VERSION, kind: 'execution', log: callLog.key, seq, receipt } as const
  const startPart = await partFromCheckpoint(callLog, seq, receipt, options)
  if (startPart) {
    const fromCheckpoint: ExecutionProof = { ...base, ...startPart }
    const verdict = await checkExecutionProof(fromCheckpoint, options)
    if (verdict.holds) return { proof: fromCheckpoint, verdict }
  }
  const entries = (await blocksOf(callLog, 0, seq)).map((block) => block.toString('base64'))
  const proof: ExecutionProof = { ...base, entries }
  return { proof, verdict: await checkExecutionProof(proof, options) }
}

/**
 * Blocks [from, to) of the log as stored, at most MAX_EXECUTION_PROOF_BYTES in all: the range's size
 * is read from the log's tree first, so a range over the bound is refused before any of it is read.
 */
async function blocksOf(callLog: CallLog, from: number, to: number): Promise<Buffer[]> {
  const tooMany = () =>
    new StateError(`entries ${from} to ${to} hold over ${MAX_EXECUTION_PROOF_BYTES} bytes: too many for an execution proof`)
  const [before, upTo] = await Promise.all([prefixBytes(callLog.core, from), prefixBytes(callLog.core, to)])
  if (before !== null && upTo !== null && upTo - before > MAX_EXECUTION_PROOF_BYTES) throw tooMany()
  const blocks: Buffer[] = []
  let bytes = 0
  for await (const window of callLog.windows({ start: from, end: to })) {
    bytes += window.bytes
    if (bytes > MAX_EXECUTION_PROOF_BYTES) throw tooMany()
    blocks.push(...window.blocks)
  }
  return blocks
}

/**
 * The entries and start of a proof of entry `seq` from the newest checkpoint before it whose snapshot
 * holds, when the host's snapshots and archive are at hand and that proof is smaller than one of
 * every entry; else null.
 */
async function partFromCheckpoint(
  callLog: CallLog,
  seq: number,
  receipt: Receipt,
  options: ProveOptions,
): Promise<Pick<ExecutionProof, 'entries' | 'start'> | null> {
  if (!options.snapshots || !options.filesArchive) return null
  const [initBlock] = await blocksOf(callLog, 0, 1)
  const init = decodeEntry(initBlock, 0) as InitEntry
  const memoryBytes = init.limits?.memoryBytes
  if (init.schema < 2 || !Number.isSafeInteger(memoryBytes)) return null
  const notice = options.onNotice ?? (() => {})
  const start = await newestStartBefore(
    {
      callLog,
      archive: options.filesArchive,
      source: options.snapshots,
      memoryBytes,
      stateFormat: stateFormatFor(!!init.factory, init.schema),
      notice,
    },
    seq,
  )
  if (!start) return null
  await options.filesArchive.ready()
  const archive = await archiveBlocks(options.filesArchive, start.snapshot.files)
  const snapshot = encodeSnapshot(start.snapshot)
  const entries = await blocksOf(callLog, start.seq, seq)
  const startBytes = snapshot.byteLength + [...archive.db, ...archive.blobs, ...entries].reduce((sum, block) => sum + block.byteLength, 0)
  if (startBytes >= entryBytesBefore(receipt)) return null
  const nodes = await standInNodes(callLog, seq, receipt.length, 1, start.seq)
  return {
    entries: entries.map((block) => block.toString('base64')),
    start: {
      seq: start.seq,
      init: initBlock.toString('base64'),
      nodes: nodes.map((node) => ({ index: node.index, size: node.size, hash: node.hash.toString('hex') })),
      snapshot: snapshot.toString('base64'),
      archive: { db: archive.db.map((b) => b.toString('base64')), blobs: archive.blobs.map((b) => b.toString('base64')) },
    },
  }
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
  const seq = p.seq as number
  if (!Number.isSafeInteger(seq) || seq < 0) return { holds: false, why: 'its seq is not that of an entry' }
  const start = p.start === undefined ? null : startShape(p.start, seq)
  if (start === false)
    return { holds: false, why: 'its start is not a checkpoint before its seq with an init entry, nodes, a snapshot and an archive' }
  const first = start ? start.seq : 0
  if (!Array.isArray(p.entries) || p.entries.length !== seq - first) {
    return { holds: false, why: `an execution proof holds the entries from ${first} to ${seq - 1}, and only those` }
  }
  let decoded: DecodedParts
  let from: ReplayStart | undefined
  let last: Buffer
  try {
    decoded = decodeProofParts(p.entries, first, start)
    const proven = verifyLogPart(p.receipt, decoded.blocks, decoded.nodes)
    if (proven.log !== p.log || proven.seq !== seq)
      return { holds: false, why: 'its receipt is of another log or entry than the proof names' }
    last = proven.bytes
    if (start) from = startOf(start.seq, decoded)
  } catch (err) {
    return { holds: false, why: (err as Error).message }
  }
  const log = p.log as string
  decoded.blocks.set(seq, last)
  let replay: Replay | null = null
  try {
    replay = await openReplay(new ProvenLog(log, decoded.blocks, seq + 1), { maxLimits: options.maxLimits, from })
    for await (const entry of replay.entries()) {
      const divergence = diffEntry(entry)
      if (divergence) throw divergence
    }
  } catch (err) {
    // Only a divergence shows a lie. A log this LibVMS cannot read or run (another engine, a newer
    // format, limits above the ceilings, a host fault here) shows nothing either way.
    // From a checkpoint, only a call after it: one at it means the start itself does not hold.
    if (err instanceof DivergenceError && err.seq !== undefined && (start === null || err.seq > start.seq))
      return { holds: true, log, what: `log ${log}: ${err.message}`, seq: err.seq }
    return { holds: false, why: `inconclusive here: ${(err as Error).message}` }
  } finally {
    await replay?.close().catch(() => {}) // a verdict stands whatever closing its temp replay says
  }
  return { holds: false, why: `its ${counted(decoded.blocks.size, 'entry', 'entries')} replay as logged: it shows no divergence` }
}

/** A proof's start, if it has the shape of one (a checkpoint after the init entry and before `seq`). */
function startShape(v: unknown, seq: number): ProofStart | false {
  const s = v as Partial<ProofStart> | null
  const strings = (a: unknown) => Array.isArray(a) && a.every((x) => typeof x === 'string')
  const ok =
    s !== null &&
    typeof s === 'object' &&
    Number.isSafeInteger(s.seq) &&
    (s.seq as number) >= 1 &&
    (s.seq as number) < seq &&
    typeof s.init === 'string' &&
    typeof s.snapshot === 'string' &&
    Array.isArray(s.nodes) &&
    s.archive !== null &&
    typeof s.archive === 'object' &&
    strings(s.archive.db) &&
    strings(s.archive.blobs)
  return ok ? (s as ProofStart) : false
}

/** What a proof carries, decoded: its entries by seq, and its start's stand-in nodes, snapshot file and archive blocks. */
interface DecodedParts {
  blocks: Map<number, Buffer>
  nodes: TreeNode[]
  snapshot: Buffer | null
  archive: { db: Buffer[]; blobs: Buffer[] }
}

/** A proof's entries (from seq `first`) and its start's parts, decoded within the size bound. */
function decodeProofParts(entries: unknown[], first: number, start: ProofStart | null): DecodedParts {
  const budget = { bytes: 0 }
  const blocks = new Map<number, Buffer>()
  if (start) blocks.set(0, base64Block(start.init, 'its init entry', budget))
  for (const [i, text] of entries.entries()) blocks.set(first + i, base64Block(text, `entry ${first + i}`, budget))
  const nodes = (start?.nodes ?? []).map((node) => {
    const n = node as { index?: unknown; size?: unknown; hash?: unknown } | null
    if (n === null || typeof n !== 'object' || typeof n.hash !== 'string' || !/^[0-9a-f]{64}$/.test(n.hash)) {
      throw new Error('a Merkle node of its start is not {index, size, hash: 64 hex digits}')
    }
    return { index: n.index, size: n.size, hash: Buffer.from(n.hash, 'hex') } as TreeNode
  })
  const archiveBlock = (text: string) => {
    // Each block costs the replay far more than its bytes (Hypercore's tree, its storage): an
    // archive of a million empty blocks in a few MB of proof would take GBs and minutes to write.
    budget.bytes += ARCHIVE_BLOCK_CHARGE
    return base64Block(text, 'an archive block', budget)
  }
  return {
    blocks,
    nodes,
    snapshot: start ? base64Block(start.snapshot, 'its snapshot', budget) : null,
    archive: { db: start?.archive.db.map(archiveBlock) ?? [], blobs: start?.archive.blobs.map(archiveBlock) ?? [] },
  }
}

function base64Block(text: unknown, what: string, budget: { bytes: number }): Buffer {
  const block = typeof text === 'string' ? Buffer.from(text, 'base64') : null
  if (block === null || block.toString('base64') !== text) throw new Error(`${what} is not canonical base64`)
  budget.bytes += block.byteLength
  if (budget.bytes > MAX_EXECUTION_PROOF_BYTES) throw new Error(`it holds over ${MAX_EXECUTION_PROOF_BYTES} bytes`)
  return block
}

/**
 * Where a proof's replay starts: its snapshot, which must be of its checkpoint and of the memory the
 * init entry gives the VM (the replay then checks it is the state the checkpoint states), and its
 * archive blocks (the replay checks they are the files state the checkpoint records).
 */
function startOf(seq: number, parts: DecodedParts): ReplayStart {
  const { blocks, archive } = parts
  const init = decodeEntry(blocks.get(0) as Buffer, 0) as InitEntry
  if (init.type !== 'init') throw new Error('its entry 0 is not an init entry')
  const memoryBytes = resolveLimits(init.limits).memoryBytes
  const file = parts.snapshot as Buffer
  if (file.byteLength > maxSnapshotBytes(memoryBytes))
    throw new Error(`its snapshot is larger than a VM of ${memoryBytes} bytes of memory makes`)
  let snapshot: VMSnapshot
  try {
    snapshot = decodeSnapshot(file)
  } catch (err) {
    if (err instanceof SnapshotUnreadable) throw new Error(`its snapshot does not hold: ${err.message}`)
    throw err
  }
  const block = blocks.get(seq) as Buffer
  const fit = {
    seq,
    entry: decodeEntry(block, seq),
    block,
    stateFormat: stateFormatFor(!!init.factory, init.schema),
    memoryBytes,
    checkpoint: true,
  }
  const misfit = snapshotMisfit(snapshot, fit)
  if (misfit !== null) throw new Error(`its snapshot does not fit entry ${seq} of this VM: ${misfit}`)
  // As many blocks as the checkpoint records, checked before any is written into the replay's archive.
  const files = (fit.entry as Partial<CallEntry>).files
  if (files?.version !== archive.db.length || files?.blobsLength !== archive.blobs.length) {
    throw new Error(`its archive is not the ${files?.version} metadata and ${files?.blobsLength} blobs blocks entry ${seq} records`)
  }
  return { snapshot, archive }
}

/** The signed entries of a proof, read as a log (of `length` entries, some of which a proof may leave out). */
class ProvenLog implements ReplaySource {
  readonly url: string

  constructor(
    readonly key: string,
    private readonly blocks: Map<number, Buffer>,
    readonly length: number,
  ) {
    this.url = `hyper://${key}`
  }

  async ready(): Promise<void> {}

  async block(seq: number): Promise<Buffer> {
    return this.blockAt(seq)
  }

  private blockAt(seq: number): Buffer {
    const block = this.blocks.get(seq)
    if (!block) throw new StateError(`the proof holds no entry ${seq}`)
    return block
  }

  async get(seq: number): Promise<LogEntry> {
    return decodeEntry(this.blockAt(seq), seq)
  }

  async *read(opts: { start?: number; end?: number } = {}): AsyncGenerator<ReadEntry> {
    const end = Math.min(this.length, opts.end ?? this.length)
    for (let seq = Math.max(0, opts.start ?? 0); seq < end; seq++) {
      const block = this.blockAt(seq)
      yield { seq, entry: decodeEntry(block, seq), bytes: block.byteLength }
    }
  }

  async waitForLength(): Promise<void> {
    throw new StateError("an execution proof's log does not grow: it cannot be followed")
  }
}
