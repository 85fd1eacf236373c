/**
 * Merkle tree hashes of Hypercores at their current length. `core.treeHash()` reads the root nodes
 * back from storage every time; the session already holds them in memory, so hashing those is the
 * same value without the read. Falls back to `treeHash()` when the in-memory roots are not at hand.
 */
import type Hypercore from 'hypercore'
import crypto from 'hypercore-crypto'

interface SessionState {
  length?: number
  roots?: unknown[]
}

export async function currentTreeHash(core: Hypercore): Promise<Buffer> {
  const state = (core as unknown as { state?: SessionState }).state
  if (state && Array.isArray(state.roots) && state.length === core.length && core.length > 0) {
    return crypto.tree(state.roots)
  }
  return core.treeHash(core.length)
}
