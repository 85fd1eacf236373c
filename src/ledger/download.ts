/**
 * Downloading whole cores from their hosts, with progress-based timeouts: a download fails when no
 * block arrives for a while, not after a fixed total time (a big log takes as long as it takes).
 */
import type Hypercore from 'hypercore'
import { FetchError } from '../errors.js'

/** Fetching from other hosts failed: no host known or reachable, a timeout, an incomplete copy. */

/**
 * What to do when a download has had no new block for a while (`stalledMs` so far): true to keep
 * waiting (e.g. after dialling the peers again), false to fail.
 */
export type StallHandler = (stalledMs: number) => Promise<boolean>

/**
 * Downloads blocks [0, length) of `core`, `length` at least `atLeast` (a length known from elsewhere,
 * e.g. the log's record of an archive, before the core itself has heard of it); fails if no block
 * arrives for `stallMs` (unless `onStall` says wait on).
 */
export async function downloadAll(core: Hypercore, url: string, stallMs: number, onStall?: StallHandler, atLeast = 0): Promise<void> {
  const length = Math.max(core.length, atLeast)
  if (length === 0 || core.contiguousLength >= length) return
  const download = core.download({ start: 0, end: length })
  let last = core.contiguousLength
  let lastProgress = Date.now()
  let watch: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_, reject) => {
    watch = setInterval(async () => {
      if (core.contiguousLength !== last) {
        last = core.contiguousLength
        lastProgress = Date.now()
        return
      }
      const stalledMs = Date.now() - lastProgress
      if (onStall && (await onStall(stalledMs).catch(() => false))) return
      download.destroy()
      reject(new FetchError('ERR_FETCH_TIMEOUT', `downloading ${url} stalled at block ${last} of ${length} for ${stalledMs} ms`))
    }, stallMs)
  })
  try {
    await Promise.race([download.done(), stalled])
  } finally {
    clearInterval(watch)
  }
  if (core.contiguousLength < length) {
    throw new FetchError('ERR_FETCH_INCOMPLETE', `${url}: only ${core.contiguousLength} of ${length} blocks arrived`)
  }
}

/**
 * Whether `peer` says it is on another fork of `core` than this copy (once it has said anything:
 * before its first message a peer reads as fork 0). Only a claim: a peer without the log's key can
 * say any fork number. A fork is shown only by a fork proof (receipts.ts), two statements the key signed.
 */
export function onOtherFork(peer: Hypercore['peers'][number], core: Hypercore): boolean {
  return peer.remoteSynced !== false && typeof peer.remoteFork === 'number' && peer.remoteFork !== core.fork
}

/**
 * A host that truncates and rewrites a core it already served starts a new fork. A copy opened with
 * allowFork: false does not follow it; this reports it, so a rewritten history is never silently
 * accepted (the copy keeps the old history as evidence).
 */
export function assertNoFork(core: Hypercore, url: string): void {
  const forked = core.peers.find((peer) => onOtherFork(peer, core))
  if (forked) {
    throw new FetchError(
      'ERR_FORKED',
      `the host rewrote the history of ${url} (its fork ${forked.remoteFork}, this copy's ${core.fork}): it truncated entries it had already published; this copy keeps the history it received`,
    )
  }
}
