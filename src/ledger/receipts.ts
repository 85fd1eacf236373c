/**
 * Receipts: a statement, signed by a call log's key, that an entry is at a seq of the log when the
 * log had a given length. It is Hypercore's own proof (a "fully remote" proof: the block, the
 * Merkle nodes from it to the roots of the tree at that length, and the log's signature of that
 * tree), so anyone with a stock Hypercore can check one, offline, with nothing but the receipt:
 * the key is the hash of the manifest the proof carries, and the manifest names the signer.
 *
 * A receipt is hostile input to whoever checks it: it is bounded in size and every failure is a
 * named error (ERR_BAD_RECEIPT) saying what does not hold.
 */
import c from 'compact-encoding'
import flat from 'flat-tree'
import type Hypercore from 'hypercore'
// Hypercore's proof helpers, as its own replication and push notifications use them: they need no storage.
import fullyRemoteProof from 'hypercore/lib/fully-remote-proof.js'
import merkleTree from 'hypercore/lib/merkle-tree.js'
import messages from 'hypercore/lib/messages.js'
import Verifier from 'hypercore/lib/verifier.js'
import crypto from 'hypercore-crypto'
import { ReceiptError } from '../errors.js'
import type { CallLog } from './call-log.js'
import { toHex } from './keys.js'
import { decodeEntry, type LogEntry } from './log-entry.js'

const { MerkleTree } = merkleTree

interface Manifest {
  version: number
  prologue: unknown
  signers: { publicKey: Buffer; namespace: Buffer }[]
}

export interface TreeNode {
  index: number
  size: number
  hash: Buffer
}

interface WireProof {
  fork: number
  block: { index: number; value: Buffer | null; nodes: TreeNode[] } | null
  hash: unknown
  seek: unknown
  upgrade: { start: number; length: number } | null
  manifest: Manifest | null
}

interface ProvenTree {
  length: number
  fork: number
  roots: TreeNode[]
  signature: Buffer | null
  signable(keyOrNamespace: Buffer): Buffer
}

export const RECEIPT_TYPE = 'libvms-receipt'
export const RECEIPT_VERSION = 1
/** The largest receipt proof accepted: an entry (at most 15 MiB) and its Merkle nodes. */
const MAX_PROOF_BYTES = 16 * 1024 * 1024

/** What a receipt says, as JSON: portable, and checkable by anyone. */
export interface Receipt {
  type: typeof RECEIPT_TYPE
  version: typeof RECEIPT_VERSION
  /** The call log's key (hex). */
  log: string
  /** The entry's seq. */
  seq: number
  /** The log's length the signature covers (the entry's group: every call of a group shares it). */
  length: number
  /** Hypercore's fully remote proof of block `seq` in the tree of `length` blocks, base64. */
  proof: string
}

declare module '../errors.js' {
  interface CallError {
    /** The log's signed receipt of the failed call's entry, when one was asked for (RPC with receipts). */
    receipt?: Receipt
  }
}

/** What a receipt proves, once checked. */
export interface ProvenEntry {
  log: string
  seq: number
  length: number
  /** The log's fork counter when it signed: Hypercore raises it on every truncation. */
  fork: number
  /** The hash (hex) of the tree of `length` blocks the log signed. */
  treeHash: string
  /** The entry's bytes, as stored. */
  bytes: Buffer
  entry: LogEntry
}

/**
 * The receipt of entry `seq` of `callLog`, signed at the log's `length` (by default its current one).
 * `entry`: the entry as it was appended, when the caller has it (its block is then not read back).
 */
export async function createReceipt(callLog: CallLog, seq: number, length = callLog.length, entry?: LogEntry): Promise<Receipt> {
  const core = callLog.core
  // The log's value encoding is JSON: a block is the entry's JSON text, byte for byte.
  const block = entry ? Buffer.from(JSON.stringify(entry)) : ((await core.get(seq, { valueEncoding: 'binary' })) as unknown as Buffer)
  // The calls just logged: their nodes are in memory. Anything else: Hypercore reads them from storage.
  const recent = length === core.length ? callLog.recentProof(seq, block) : null
  const proof = recent ?? (await fullyRemoteProof.proof(core, { index: seq, block, upgrade: { start: 0, length } }))
  return { type: RECEIPT_TYPE, version: RECEIPT_VERSION, log: callLog.key, seq, length, proof: proof.toString('base64') }
}

/**
 * The receipt of block `seq` of any copy of a log (`core`: a replica, or a copy fetched to read a
 * host's new fork), signed at the length the copy holds a signature for: its current one. The copy
 * must hold the block, or get it from its peers.
 */
export async function createCoreReceipt(core: Hypercore, seq: number): Promise<Receipt> {
  const length = core.length
  const block = (await core.get(seq, { valueEncoding: 'binary' })) as unknown as Buffer
  const proof = await fullyRemoteProof.proof(core, { index: seq, block, upgrade: { start: 0, length } })
  // The signature is the one of the copy's current tree: a copy that grew meanwhile is asked again.
  if (core.length !== length) throw new ReceiptError(`the copy of log ${toHex(core.key)} changed while its receipt was made`)
  return { type: RECEIPT_TYPE, version: RECEIPT_VERSION, log: toHex(core.key), seq, length, proof: proof.toString('base64') }
}

/**
 * Checks a receipt with nothing but itself: its proof must be a valid Hypercore proof of block
 * `seq` in a tree of `length` blocks, signed by the key named `log`. Returns the proven entry;
 * throws ReceiptError (ERR_BAD_RECEIPT) saying what does not hold.
 */
export function verifyReceipt(receipt: unknown): ProvenEntry {
  return openReceipt(receipt).proven
}

/** A checked receipt, with the Merkle nodes that prove it: the block's path and the signed roots. */
interface OpenedReceipt {
  proven: ProvenEntry
  path: TreeNode[]
  roots: TreeNode[]
}

function openReceipt(receipt: unknown): OpenedReceipt {
  const r = receipt as Partial<Receipt> | null
  if (r === null || typeof r !== 'object' || r.type !== RECEIPT_TYPE) throw new ReceiptError('it is not a LibVMS receipt')
  if (r.version !== RECEIPT_VERSION) throw new ReceiptError(`receipt version ${String(r.version)} is not one this LibVMS reads`)
  if (typeof r.log !== 'string' || !/^[0-9a-f]{64}$/.test(r.log)) throw new ReceiptError('its log key is not 64 hex digits')
  if (!isIndex(r.seq) || !isIndex(r.length) || r.seq >= r.length) throw new ReceiptError('its seq and length are not a position in a log')
  if (typeof r.proof !== 'string' || r.proof.length > (MAX_PROOF_BYTES * 4) / 3 + 4)
    throw new ReceiptError('its proof is missing or too large')
  const buffer = Buffer.from(r.proof, 'base64')
  // One receipt, one text: no junk characters, no other alphabet, no padding left off.
  if (buffer.toString('base64') !== r.proof) throw new ReceiptError('its proof is not in canonical base64')
  let proof: WireProof
  let tree: ProvenTree
  let key: Buffer
  try {
    const state = { buffer, start: 0, end: buffer.byteLength }
    const discoveryKey = c.fixed32.decode(state)
    proof = messages.wire.data.decode(state) as WireProof
    if (state.start !== state.end) throw new Error(`${state.end - state.start} bytes follow the proof`)
    const manifest = proof.manifest
    if (manifest?.signers.length !== 1) throw new Error('the proof carries no single-signer manifest')
    key = Verifier.manifestHash(manifest)
    if (!crypto.discoveryKey(key).equals(discoveryKey)) throw new Error('the proof is for another log')
    // A session that knows nothing: every node must come from the proof itself.
    const blank = { fork: 0, roots: [], length: 0, signature: null, ancestors: 0, byteLength: 0, prologue: manifest.prologue }
    tree = MerkleTree.verifyFullyRemote(blank, proof) as ProvenTree
  } catch (err) {
    throw new ReceiptError(`its proof does not decode or verify: ${(err as Error).message}`)
  }
  if (toHex(key) !== r.log) throw new ReceiptError(`its proof is signed for log ${toHex(key)}, not ${r.log}`)
  if (!proof.block || proof.block.index !== r.seq || !proof.block.value) throw new ReceiptError(`its proof is not of entry ${r.seq}`)
  if (proof.hash || proof.seek) throw new ReceiptError('its proof holds more than a block and its tree')
  // Hypercore's fully remote verification checks the signed roots, not that the block is under one
  // of them: the block's own path is rebuilt here, and must end at a signed root.
  if (!blockIsUnderRoot(proof.block.index, proof.block.value, proof.block.nodes, tree.roots)) {
    throw new ReceiptError(`its entry ${r.seq} is not in the tree the log signed`)
  }
  if (!proof.upgrade || tree.length !== r.length) throw new ReceiptError(`its proof is not of a log of length ${r.length}`)
  if (!proof.manifest || !signatureHolds(tree, key, proof.manifest))
    throw new ReceiptError(`the log's key did not sign a tree of length ${r.length} holding this entry`)
  let entry: LogEntry
  try {
    entry = decodeEntry(proof.block.value, r.seq)
  } catch (err) {
    throw new ReceiptError(`the proven entry is not a log entry: ${(err as Error).message}`)
  }
  const proven = {
    log: r.log,
    seq: r.seq,
    length: r.length,
    fork: tree.fork,
    treeHash: toHex(crypto.tree(tree.roots)),
    bytes: proof.block.value,
    entry,
  }
  return { proven, path: proof.block.nodes, roots: tree.roots }
}

/**
 * Checks that `blocks` (entry seq → its bytes) are entries of the log a receipt of entry `seq` was
 * signed in, and with `elided` (Merkle nodes standing for the entries not given) make up all of
 * entries 0 to seq - 1: every Merkle node left of the receipt's path (the left siblings on the way
 * up, and the roots before the path's root) must be rebuilt from them exactly. With the receipt's
 * own entry, that proves the given entries under one signature. An elided node may not stand for
 * entry 0 or for a given entry, so each given entry is hashed into the signed tree. Returns the
 * receipt's proven entry; throws ReceiptError saying what does not hold.
 */
export function verifyLogPart(receipt: unknown, blocks: Map<number, Buffer>, elided: TreeNode[] = []): ProvenEntry {
  const { proven, path, roots } = openReceipt(receipt)
  for (const seq of blocks.keys()) {
    if (!isIndex(seq) || seq >= proven.seq) throw new ReceiptError(`entry ${seq} is not one before the receipt's entry ${proven.seq}`)
  }
  if (elided.length > MAX_ELIDED_NODES) throw new ReceiptError(`more than ${MAX_ELIDED_NODES} Merkle nodes stand for entries not given`)
  const standIns = new Map<number, TreeNode>()
  const given = [...blocks.keys()].sort((x, y) => x - y)
  /** Whether a given entry lies in [start, end). */
  const givenIn = (start: number, end: number): boolean => {
    let low = 0
    let high = given.length
    while (low < high) {
      const mid = (low + high) >>> 1
      if (given[mid] < start) low = mid + 1
      else high = mid
    }
    return low < given.length && given[low] < end
  }
  for (const node of elided) {
    if (!isTreeNode(node)) throw new ReceiptError('a Merkle node standing for entries is not {index, size, hash}')
    const [start, end] = spanOf(node.index)
    if (start === 0 || end > proven.seq || givenIn(start, end)) {
      throw new ReceiptError(`Merkle node ${node.index} stands for entries that must be given`)
    }
    standIns.set(node.index, node)
  }
  const rebuild = (index: number): TreeNode => {
    const standIn = standIns.get(index)
    if (standIn) return standIn
    const [start] = spanOf(index)
    const depth = flat.depth(index)
    if (depth === 0) {
      const block = blocks.get(start)
      if (!block) throw new ReceiptError(`entry ${start} is neither given nor stood for`)
      return { index, size: block.byteLength, hash: crypto.data(block) }
    }
    const [leftChild, rightChild] = flat.children(index) as [number, number] // depth > 0: never null
    const left = rebuild(leftChild)
    const right = rebuild(rightChild)
    return { index, size: left.size + right.size, hash: crypto.parent(left, right) }
  }
  let covered = 0
  for (const node of [...path, ...roots]) {
    const [start, end] = spanOf(node.index)
    if (end > proven.seq) continue // right of the path: the receipt's own nodes
    const built = rebuild(node.index)
    if (built.size !== node.size || !built.hash.equals(node.hash)) {
      throw new ReceiptError(`entries ${start} to ${end - 1} are not the ones the log signed`)
    }
    covered += end - start
  }
  // Left siblings and left roots tile the entries before the path: all of them, each once.
  if (covered !== proven.seq) throw new ReceiptError(`the receipt's tree covers ${covered} entries before entry ${proven.seq}`)
  return proven
}

/** The bytes of the entries before a receipt's entry (the sizes of the Merkle nodes left of its path). */
export function entryBytesBefore(receipt: Receipt): number {
  const { proven, path, roots } = openReceipt(receipt)
  return [...path, ...roots].filter((node) => spanOf(node.index)[1] <= proven.seq).reduce((sum, node) => sum + node.size, 0)
}

/** Most Merkle nodes an execution proof may give in place of entries (a tiling takes about 2 per level). */
const MAX_ELIDED_NODES = 256

/**
 * The Merkle nodes (read from the log's storage) that stand for its entries [from, to) in a receipt
 * of entry `seq` signed at `length`, as verifyLogPart rebuilds it: the largest subtrees inside that
 * range met on the way down from each node left of the receipt's path. `from` must be at least 1.
 */
export async function standInNodes(callLog: CallLog, seq: number, length: number, from: number, to: number): Promise<TreeNode[]> {
  const wanted: number[] = []
  const descend = (index: number): void => {
    const [start, end] = spanOf(index)
    if (end <= from || start >= to) return
    if (start >= from && end <= to) {
      wanted.push(index)
      return
    }
    for (const child of flat.children(index) ?? []) descend(child)
  }
  for (const index of leftNodesOf(seq, length)) descend(index)
  const state = (callLog.core as unknown as { state: unknown }).state
  return Promise.all(
    wanted.map(async (index) => {
      const node = await MerkleTree.get(state, index)
      if (!node) throw new ReceiptError(`the log holds no Merkle node ${index}`)
      return { index: node.index, size: node.size, hash: node.hash }
    }),
  )
}

/** The nodes left of block `seq`'s path in the tree of `length` blocks: left siblings, and the roots before. */
function leftNodesOf(seq: number, length: number): number[] {
  const roots = flat.fullRoots(2 * length)
  const left: number[] = []
  let index = 2 * seq
  while (!roots.includes(index)) {
    const sibling = flat.sibling(index)
    if (sibling < index) left.push(sibling)
    index = flat.parent(index)
  }
  for (const root of roots) if (root < index) left.push(root)
  return left
}

function isTreeNode(v: unknown): v is TreeNode {
  const n = v as TreeNode | null
  return n !== null && typeof n === 'object' && isIndex(n.index) && isIndex(n.size) && Buffer.isBuffer(n.hash) && n.hash.byteLength === 32
}

/** The blocks a flat-tree node spans: [start, end). */
function spanOf(index: number): [number, number] {
  const [first, last] = flat.spans(index)
  return [first / 2, last / 2 + 1]
}

/** Hypercore's signature check of a tree, as its own verifier makes it for one signer. */
function signatureHolds(tree: ProvenTree, key: Buffer, manifest: Manifest): boolean {
  const signer = manifest.signers[0]
  const signature = tree.signature
  if (!signature) return false
  if (manifest.version === 0) return crypto.verify(tree.signable(signer.namespace), signature, signer.publicKey)
  // Later manifests wrap the signature: [version 1, signer 0, 64 bytes of signature].
  if (signature.byteLength < 66 || signature[0] !== 1 || signature[1] !== 0) return false
  return crypto.verify(tree.signable(key), signature.subarray(2, 66), signer.publicKey)
}

/**
 * Whether the Merkle path from block `seq` (its bytes, then the sibling of each node on the way up)
 * ends at one of `roots`, by index, size and hash. Indices are Hypercore's flat-tree numbering (flat-tree).
 */
function blockIsUnderRoot(seq: number, block: Buffer, siblings: TreeNode[], roots: TreeNode[]): boolean {
  // A path is at most as long as a tree of 2^53 blocks is deep.
  if (!Array.isArray(siblings) || siblings.length > 64) return false
  let node: TreeNode = { index: 2 * seq, size: block.byteLength, hash: crypto.data(block) }
  for (const sibling of siblings) {
    if (sibling.index !== flat.sibling(node.index)) return false
    node = { index: flat.parent(node.index), size: node.size + sibling.size, hash: crypto.parent(node, sibling) }
  }
  return roots.some((root) => root.index === node.index && root.size === node.size && root.hash.equals(node.hash))
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

// ---- fraud proofs ----

export const FRAUD_PROOF_TYPE = 'libvms-fraud-proof'
export const FRAUD_PROOF_VERSION = 1

/**
 * A fork proof: two receipts signed by one log's key that an append-only log cannot both have
 * signed — two different entries at one seq, or a later statement on a higher fork (the log was
 * truncated after it signed the first). Portable JSON: checkable by anyone with nothing but it.
 */
export interface ForkProof {
  type: typeof FRAUD_PROOF_TYPE
  version: typeof FRAUD_PROOF_VERSION
  kind: 'fork'
  /** What the host said first (e.g. the receipt a client kept), and what its log says now. */
  receipts: [Receipt, Receipt]
}

/** What checking a fraud proof found. */
export type ProofVerdict =
  /** `seq`: the entry an execution proof shows does not replay as logged. */
  { holds: true; log: string; what: string; seq?: number } | { holds: false; why: string }

/**
 * Compares two receipts of one log, e.g. kept by two clients: if no append-only log can have signed
 * both, the fork proof they make (portable, checkable with checkForkProof); else why they agree.
 */
export function compareReceipts(
  first: Receipt,
  second: Receipt,
): (ProofVerdict & { holds: true; proof: ForkProof }) | { holds: false; why: string } {
  const proof: ForkProof = { type: FRAUD_PROOF_TYPE, version: FRAUD_PROOF_VERSION, kind: 'fork', receipts: [first, second] }
  const verdict = checkForkProof(proof)
  return verdict.holds ? { ...verdict, proof } : verdict
}

/** Checks a fork proof offline: does it show the log's key signed two statements no honest log signs? */
export function checkForkProof(proof: unknown): ProofVerdict {
  const p = proof as Partial<ForkProof> | null
  if (p === null || typeof p !== 'object' || p.type !== FRAUD_PROOF_TYPE || p.kind !== 'fork' || !Array.isArray(p.receipts)) {
    return { holds: false, why: 'it is not a LibVMS fork proof' }
  }
  if (p.version !== FRAUD_PROOF_VERSION) return { holds: false, why: `proof version ${String(p.version)} is not one this LibVMS reads` }
  if (p.receipts.length !== 2) return { holds: false, why: 'a fork proof holds two receipts' }
  let first: ProvenEntry
  let second: ProvenEntry
  try {
    first = verifyReceipt(p.receipts[0])
    second = verifyReceipt(p.receipts[1])
  } catch (err) {
    return { holds: false, why: (err as Error).message }
  }
  if (first.log !== second.log) return { holds: false, why: 'its receipts are of two different logs' }
  if (first.seq === second.seq && !first.bytes.equals(second.bytes)) {
    return { holds: true, log: first.log, what: `log ${first.log} signed two different entries at seq ${first.seq}` }
  }
  if (first.fork !== second.fork) {
    // Hypercore raises the fork counter only when a log is truncated; an append-only log never is.
    const [earlier, later] = first.fork < second.fork ? [first, second] : [second, first]
    return {
      holds: true,
      log: first.log,
      what: `log ${first.log} was truncated after it signed ${earlier.length} entries (fork ${earlier.fork}, later fork ${later.fork})`,
    }
  }
  if (first.length === second.length && first.treeHash !== second.treeHash) {
    return { holds: true, log: first.log, what: `log ${first.log} signed two different trees of ${first.length} entries` }
  }
  return { holds: false, why: 'its receipts are consistent: one log can have signed both' }
}
