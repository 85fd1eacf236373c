/**
 * The Merkle nodes of a host's recent appends, kept in memory so that the receipts of the calls just
 * logged are built without reading their nodes back from storage. A receipt built here is byte for
 * byte the proof Hypercore would build (hypercore/lib/fully-remote-proof.js): the block's path up to
 * its root, the other roots, the log's signature of the tree and its manifest.
 *
 * Hypercore's tree: block i is leaf node 2i; a parent hashes its two children; the tree of L blocks
 * has one root per full subtree (flat-tree numbering, see receipts.ts). Appending blocks joins each
 * new leaf with the left neighbours already there, so every node a recent block's path needs was
 * either a root when the block was appended or was made by an append since: that is all this keeps,
 * for the last GENERATIONS appends. The roots it computes must equal the log's own after every
 * append; if they ever do not (an append this did not see, a truncation), it starts over, and until
 * it has seen an append again receipts are built by Hypercore as before.
 */
import { createRequire } from 'node:module'
import c from 'compact-encoding'
import flat from 'flat-tree'
import type Hypercore from 'hypercore'
import crypto from 'hypercore-crypto'

const require = createRequire(import.meta.url)
const messages = require('hypercore/lib/messages.js') as { wire: { data: Encoding } }

interface Encoding {
  preencode(state: EncodeState, value: unknown): void
  encode(state: EncodeState, value: unknown): void
}

interface EncodeState {
  buffer: Buffer | null
  start: number
  end: number
}

export interface TreeNode {
  index: number
  size: number
  hash: Buffer
}

/** What Hypercore's session state holds of the tree (hypercore/lib/session-state.js). */
interface CoreState {
  roots: TreeNode[]
  length: number
  fork: number
  signature: Buffer | null
}

interface CoreInternals {
  state: CoreState
  discoveryKey: Buffer
  core: { header: { manifest: unknown } }
}

/** Appends whose nodes are kept: receipts are made as soon as their calls are logged. */
const GENERATIONS = 64

export class RecentTree {
  private readonly nodes = new Map<number, { node: TreeNode; generation: number }>()
  private generation = 0
  /** The length and fork the nodes describe; -1: none yet. */
  private length = -1
  private fork = -1

  constructor(private readonly core: Hypercore) {}

  /** The log's roots before an append, to pass to `appended` once it succeeded. */
  rootsNow(): { length: number; fork: number; roots: TreeNode[] } {
    const state = (this.core as unknown as CoreInternals).state
    return { length: state.length, fork: state.fork, roots: state.roots.slice() }
  }

  /** Takes note of `blocks`, appended to the tree that `before` describes. */
  appended(before: { length: number; fork: number; roots: TreeNode[] }, blocks: Buffer[]): void {
    const generation = ++this.generation
    if (before.length !== this.length || before.fork !== this.fork) this.nodes.clear()
    for (const root of before.roots) this.nodes.set(root.index, { node: root, generation })
    for (let i = 0; i < blocks.length; i++) {
      let node: TreeNode = { index: 2 * (before.length + i), size: blocks[i].byteLength, hash: crypto.data(blocks[i]) }
      this.nodes.set(node.index, { node, generation })
      for (let sibling = this.nodes.get(flat.sibling(node.index)); sibling && sibling.node.index < node.index; ) {
        const left = sibling.node
        node = { index: flat.parent(node.index), size: left.size + node.size, hash: crypto.parent(left, node) }
        this.nodes.set(node.index, { node, generation })
        sibling = this.nodes.get(flat.sibling(node.index))
      }
    }
    for (const [index, kept] of this.nodes) if (kept.generation <= generation - GENERATIONS) this.nodes.delete(index)
    // The roots computed must be the log's own; anything else means an append this did not see.
    const state = (this.core as unknown as CoreInternals).state
    const length = before.length + blocks.length
    const roots = flat.fullRoots(2 * length).map((index) => this.nodes.get(index)?.node)
    const same =
      state.length === length &&
      state.fork === before.fork &&
      roots.length === state.roots.length &&
      roots.every((root, i) => root?.hash.equals(state.roots[i].hash))
    if (same) {
      this.length = length
      this.fork = before.fork
    } else {
      this.nodes.clear()
      this.length = -1
    }
  }

  /**
   * Hypercore's fully remote proof of block `seq` (its bytes `block`) in the log as it is now, built
   * from memory; null if the nodes are not here (then Hypercore builds it from storage).
   */
  proof(seq: number, block: Buffer): Buffer | null {
    const internals = this.core as unknown as CoreInternals
    const state = internals.state
    if (state.length !== this.length || state.fork !== this.fork || seq >= this.length || !state.signature) return null
    const roots = flat.fullRoots(2 * this.length)
    const path: TreeNode[] = []
    let index = 2 * seq
    while (!roots.includes(index)) {
      const sibling = this.nodes.get(flat.sibling(index))
      if (!sibling) return null
      path.push(sibling.node)
      index = flat.parent(index)
    }
    const proof = {
      request: 0,
      fork: state.fork,
      block: { index: seq, value: block, nodes: path },
      hash: null,
      seek: null,
      upgrade: {
        start: 0,
        length: this.length,
        nodes: state.roots.filter((root) => root.index !== index),
        additionalNodes: [],
        signature: state.signature,
      },
      manifest: internals.core.header.manifest,
    }
    const encoding: EncodeState = { buffer: null, start: 0, end: 0 }
    c.fixed32.preencode(encoding, internals.discoveryKey)
    messages.wire.data.preencode(encoding, proof)
    encoding.buffer = Buffer.allocUnsafe(encoding.end)
    c.fixed32.encode(encoding, internals.discoveryKey)
    messages.wire.data.encode(encoding, proof)
    return encoding.buffer
  }
}
