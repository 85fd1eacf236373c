/**
 * Block sizes without reading blocks: a Hypercore's Merkle tree stores, beside the blocks, a leaf node
 * per block holding its byte length, and each parent node the sum of its children's. So a reader can
 * size what it is about to read (call-log.ts reads entries within a byte budget) and what a stretch of
 * a core holds (an audit refuses to start a segment from an archive too big to hand over) before a
 * single block is in memory. The sizes are the signed tree's: a host cannot state one and send another.
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

/** The sizes of tree nodes `indexes` of `core`, read in one batch; null for one not on this machine. */
async function nodeSizes(core: Hypercore<unknown>, indexes: number[]): Promise<(number | null)[]> {
  const rx = (core as unknown as { state: SessionState }).state.storage.read()
  const nodes = indexes.map((index) => rx.getTreeNode(index))
  rx.tryFlush()
  return (await Promise.all(nodes)).map((node) => node?.size ?? null)
}

/** The blocks a tree node stands for. */
function blocksUnder(index: number): number {
  const [left, right] = flat.spans(index)
  return (right - left) / 2 + 1
}

/** The largest whole subtrees that cover blocks [from, to), in order (at most two per level). */
function subtreesOf(from: number, to: number): number[] {
  const nodes: number[] = []
  for (let at = from; at < to; ) {
    let depth = 0
    while (at % 2 ** (depth + 1) === 0 && at + 2 ** (depth + 1) <= to) depth++
    nodes.push(flat.index(depth, at / 2 ** depth))
    at += 2 ** depth
  }
  return nodes
}

/**
 * How many blocks from `from` on (below `end`, at most `maxBlocks`) fit in `budget` bytes; at least
 * one, whatever its size. Read from the tree, biggest subtrees first: a window of small blocks costs a
 * few node reads, not one per block, and a subtree that does not fit is looked into. A block whose size
 * this machine does not hold (a sparse copy) ends the window, or is the window on its own.
 */
export async function blocksWithin(
  core: Hypercore<unknown>,
  from: number,
  end: number,
  budget: number,
  maxBlocks: number,
): Promise<number> {
  let count = 0
  let bytes = 0
  let nodes = subtreesOf(from, Math.min(end, from + maxBlocks))
  while (nodes.length > 0) {
    const sizes = await nodeSizes(core, nodes)
    let i = 0
    for (; i < nodes.length; i++) {
      const size = sizes[i]
      const leaf = nodes[i] % 2 === 0
      if (size === null || (bytes + size > budget && !(count === 0 && leaf))) break
      bytes += size
      count += blocksUnder(nodes[i])
    }
    if (i === nodes.length) break
    // The window ends inside nodes[i] (or before it, a block).
    const children = flat.children(nodes[i])
    if (!children) return Math.max(count, 1)
    nodes = children
  }
  return Math.max(count, 1)
}

/**
 * The bytes blocks [0, length) of `core` hold in all: the sum of the tree's full roots at that length
 * (a few nodes, whatever the length); null if one is not on this machine.
 */
export async function prefixBytes(core: Hypercore<unknown>, length: number): Promise<number | null> {
  if (length <= 0) return 0
  let bytes = 0
  for (const size of await nodeSizes(core, flat.fullRoots(2 * length))) {
    if (size === null) return null
    bytes += size
  }
  return bytes
}
