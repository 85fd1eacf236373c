/**
 * Block sizes without reading blocks: a Hypercore's Merkle tree stores, beside each block, a leaf
 * node holding the block's byte length, and each parent node the sum of its children. So a reader can
 * size what it is about to read (call-log.ts reads entries within a byte budget) and what a stretch
 * of a core holds (an audit refuses to start a segment from an archive too big to hand over) before
 * a single block is in memory. The sizes are the signed tree's: a host cannot state one and send another.
 */
import flat from 'flat-tree'
import type Hypercore from 'hypercore'

interface TreeNodeReader {
  getTreeNode(index: number): Promise<{ size: number } | null>
  tryFlush(): void
}

/** Hypercore's session state: its storage reads tree nodes in batches (one storage round trip). */
interface SessionState {
  storage: { read(): TreeNodeReader }
}

function treeReader(core: Hypercore<unknown>): TreeNodeReader {
  return (core as unknown as { state: SessionState }).state.storage.read()
}

/**
 * The byte lengths of blocks [start, end) of `core`, from the leaves of its tree, read in one batch;
 * null for a block whose leaf is not on this machine (a sparse copy that never fetched it).
 */
export async function blockSizes(core: Hypercore<unknown>, start: number, end: number): Promise<(number | null)[]> {
  if (end <= start) return []
  const rx = treeReader(core)
  const leaves = Array.from({ length: end - start }, (_, i) => rx.getTreeNode(2 * (start + i)))
  rx.tryFlush()
  return (await Promise.all(leaves)).map((node) => node?.size ?? null)
}

/**
 * The bytes blocks [0, length) of `core` hold in all: the sum of the tree's full roots at that length
 * (a few nodes, whatever the length); null if one is not on this machine.
 */
export async function prefixBytes(core: Hypercore<unknown>, length: number): Promise<number | null> {
  if (length <= 0) return 0
  const rx = treeReader(core)
  const roots = flat.fullRoots(2 * length).map((index) => rx.getTreeNode(index))
  rx.tryFlush()
  let bytes = 0
  for (const node of await Promise.all(roots)) {
    if (!node) return null
    bytes += node.size
  }
  return bytes
}
