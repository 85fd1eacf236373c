/**
 * Keeping a seeder's copy of a files archive (its `db` core and its `blobs` core) no further ahead
 * than its copy of the call log: each time the log copy grows, the archive is fetched up to the files
 * state its newest entry records (version, blobsLength), and no further. The archive's cores take a
 * newer length only when asked (`holdLength`, `askLength`), because Hypercore keeps a signature of a
 * core's newest length only: an archive copy that took a length past what its log records could
 * never again be served as the log records it. So once the log copy stops (a forked host), the
 * archive stops with it.
 */
import type Hypercore from 'hypercore'
import { StateError } from '../errors.js'
import { downloadAll } from '../ledger/download.js'
import { keyToUrl } from '../ledger/keys.js'
import { decodeEntry, type LogEntry } from '../ledger/log-entry.js'
import type { Backoff } from '../net/peering.js'
import { within } from '../net/waits.js'

/** How long the archive waits for a newer length it asked for, and for blocks, before trying again later. */
const ARCHIVE_WAIT_MS = 15_000

/**
 * Entry `seq` of a seeded log, read as bytes and decoded as a reader of a log does (log-entry.ts):
 * bounded in size and depth before it is parsed. One entry at a time.
 */
export async function entryAt(log: Hypercore<LogEntry>, seq: number): Promise<LogEntry> {
  return decodeEntry((await log.get(seq, { valueEncoding: 'binary' })) as unknown as Buffer, seq)
}

/**
 * Keeps the archive's cores (`db`, `blobs`) as far as the log copy records, no further: each time the
 * log grows, the files state its newest entry records (version, blobsLength) is fetched, asking the
 * peers for a newer length only when the copy holds less than that (holdLength: the cores take none
 * unasked). A newer length is the host's current one, which may hold a call whose entry is still on
 * its way; but once the log stops (a forked host), the archive stops with it. When fetching fails (the
 * host went away), it is tried again with `backoff` until the archive has it. Returns what stops it.
 */
export function followArchive(log: Hypercore<LogEntry>, db: Hypercore, blobs: Hypercore | null, backoff: Backoff): () => void {
  let running = false
  let again = false
  let timer: NodeJS.Timeout | undefined
  let wait = backoff.minMs
  let stopped = false
  const lagging = async (): Promise<[Hypercore, number][]> => {
    const seq = log.length - 1
    const { files } = await entryAt(log, seq)
    const wanted: [Hypercore, number][] = [[db, files.version]]
    if (blobs) wanted.push([blobs, files.blobsLength])
    return wanted.filter(([core, needed]) => core.contiguousLength < needed)
  }
  const step = async (): Promise<void> => {
    if (running) {
      again = true
      return
    }
    running = true
    clearTimeout(timer)
    let behind = false
    try {
      do {
        again = false
        for (const [core, needed] of await lagging()) {
          if (stopped) return
          if (core.length < needed) await askLength(core, ARCHIVE_WAIT_MS)
          // Everything up to the length taken: an auditor of this copy is told that length.
          await downloadAll(core, keyToUrl(core.key), ARCHIVE_WAIT_MS, undefined, needed)
        }
      } while (again && !stopped)
      behind = !stopped && (await lagging()).length > 0
    } catch {
      behind = !stopped
    } finally {
      running = false
    }
    if (behind) {
      timer = setTimeout(() => void step(), wait)
      wait = Math.min(wait * 2, backoff.maxMs)
    } else wait = backoff.minMs
  }
  const onAppend = () => void step()
  log.on('append', onAppend)
  const stop = () => {
    stopped = true
    clearTimeout(timer)
    log.off('append', onAppend)
  }
  void step()
  return stop
}

/**
 * Stops `core` (an archive core of a seeder's copy) from taking a newer length whenever a peer offers
 * one: it learns one only when asked (askLength). Corestore opens every core with Hypercore's
 * eagerUpgrade on and has no option for it, so this sets the replicator's switch. Hypercore keeps a
 * signature of a core's newest length only: an archive copy that took a length past what its log
 * records could never again be served as the log records it.
 */
export function holdLength(core: Hypercore): void {
  const replicator = (core as unknown as { core?: { replicator?: { eagerUpgrade?: unknown } } }).core?.replicator
  if (!replicator || typeof replicator.eagerUpgrade !== 'boolean') {
    throw new StateError('this Hypercore has no eagerUpgrade switch: a seeder cannot keep its archive copy from running ahead of its log')
  }
  replicator.eagerUpgrade = false
}

/** Asks `core`'s peers for its newest length, waiting at most `ms`. */
export async function askLength(core: Hypercore, ms: number): Promise<void> {
  await within(
    core.update({ wait: true }).catch(() => false),
    ms,
  )
}
