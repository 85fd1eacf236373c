/**
 * Proving that the host of a log rewrote history a copy holds. A peer's word that it is on another
 * fork proves nothing (any peer can say any fork number); a fork proof does: two receipts signed by
 * the log's key that no append-only log signs both of (receipts.ts). One receipt comes from the copy;
 * the other from the host's current history, read into a fresh Corestore in a temp dir (the copy's own
 * store holds the old fork and refuses the new one). That fresh copy follows a host onto a new fork
 * only on the host's signed word (Hypercore checks a fork's upgrade against the log's key), so a peer
 * without the key cannot make one.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Corestore from 'corestore'
import type Hypercore from 'hypercore'
import { keyToUrl } from '../ledger/keys.js'
import { compareReceipts, createCoreReceipt, type ForkProof, type Receipt, verifyReceipt } from '../ledger/receipts.js'
import { Peering } from '../net/peering.js'
import { SwarmNetwork, type SwarmOptions } from '../net/swarm.js'
import { sleep, within } from '../net/waits.js'

/** How long the hosts' ws:// endpoints get to show another fork; the DHT gets the whole timeout. */
const HOSTS_TIMEOUT_MS = 20_000
/** How often the fresh copy asks its peers for their newest length while it waits. */
const POLL_MS = 500
/** How many entries back a history on the same fork number is searched for one that differs. */
const MAX_SCAN = 4096

export interface ForkWitnessOptions {
  /** RPC URLs (ws://…) of the log's hosts. */
  hosts: string[]
  /** Also look the log up on the DHT (when the hosts show no other fork): its options, or null. */
  swarm: SwarmOptions | null
  /** How long to wait for peers, in ms. */
  timeoutMs: number
}

/** A fork, proven: the proof (the copy's receipt first, then the host's) and what it shows. */
export interface WitnessedFork {
  proof: ForkProof
  /** What the proof shows (checkForkProof's words). */
  what: string
  copyFork: number
  copyLength: number
  hostFork: number
  hostLength: number
}

/**
 * Makes a fork proof for `copy` (a copy of a log opened with allowFork: false, holding at least one
 * entry) against the history its hosts serve now: first its ws:// hosts, then, if they show none
 * that conflicts, the DHT. A conflicting history is one on another fork, or on the same fork number
 * with an entry that differs. Resolves with the proof, or with why none could be made (no host
 * answered in time, or the history it serves does not conflict with the copy's). Everything it opens (a
 * Corestore in a temp dir, its connections, a DHT node) is closed and removed before it resolves.
 */
export async function witnessFork(copy: Hypercore, options: ForkWitnessOptions): Promise<WitnessedFork | { why: string }> {
  if (copy.length === 0) return { why: 'the copy holds no entry to compare' }
  const whys: string[] = []
  if (options.hosts.length > 0) {
    const found = await fromFreshCopy(copy, options.hosts, null, Math.min(options.timeoutMs, HOSTS_TIMEOUT_MS))
    if (!('why' in found)) return found
    whys.push(`from ${options.hosts.join(', ')}: ${found.why}`)
  }
  if (options.swarm) {
    const found = await fromFreshCopy(copy, [], options.swarm, options.timeoutMs)
    if (!('why' in found)) return found
    whys.push(`from the DHT: ${found.why}`)
  }
  return { why: whys.join('; ') || 'no host or DHT to ask' }
}

async function fromFreshCopy(
  copy: Hypercore,
  hosts: string[],
  swarm: SwarmOptions | null,
  timeoutMs: number,
): Promise<WitnessedFork | { why: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'libvms-fork-'))
  const store = new Corestore(join(dir, 'corestore'))
  let network: SwarmNetwork | null = null
  let peering: Peering | null = null
  try {
    await store.ready()
    if (swarm) {
      network = await SwarmNetwork.create(swarm)
      const net = network
      net.serve((socket) => store.replicate(socket))
    }
    peering = await Peering.connect(store, copy.key, { hosts, network, timeoutMs })
    // allowFork (Hypercore's default): this copy takes the host's newest fork, once the host proves it.
    const fresh = store.get({ key: copy.key })
    await fresh.ready()
    const deadline = Date.now() + timeoutMs
    let why = `no peer sent ${keyToUrl(copy.key)} within ${timeoutMs} ms`
    let compared = ''
    while (Date.now() < deadline) {
      await Promise.race([fresh.update({ wait: true }).catch(() => false), sleep(POLL_MS)])
      const seen = `${fresh.fork}/${fresh.length}`
      if (fresh.length > 0 && seen !== compared) {
        compared = seen
        const found = await conflict(copy, fresh, Math.max(1000, deadline - Date.now()))
        if (!('why' in found)) return found
        why = found.why
      }
      await sleep(POLL_MS)
    }
    return { why }
  } catch (err) {
    return { why: (err as Error).message }
  } finally {
    peering?.close()
    await network?.destroy().catch(() => {})
    await store.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * The fork proof of `copy` against `fresh` (a fresh copy of the host's current history), or why there
 * is none. On two forks, entry min(lengths) - 1 of each: one entry signed on two forks. On the same
 * fork number (the key holder chooses it when it truncates), the last entry below both lengths that
 * differs (two different entries at one seq), looked for among the last MAX_SCAN entries.
 */
async function conflict(copy: Hypercore, fresh: Hypercore, timeoutMs: number): Promise<WitnessedFork | { why: string }> {
  const end = Math.min(copy.length, fresh.length)
  let seq = end - 1
  if (fresh.fork === copy.fork) {
    seq = -1
    for (let i = end - 1; i >= Math.max(0, end - MAX_SCAN); i--) {
      const mine = (await copy.get(i, { valueEncoding: 'binary' })) as unknown as Buffer
      const theirs = (await within(fresh.get(i, { valueEncoding: 'binary' }), timeoutMs)) as unknown as Buffer | 'timeout'
      if (theirs === 'timeout') return { why: `the host's entry ${i} (fork ${fresh.fork}) did not arrive within ${timeoutMs} ms` }
      if (!mine.equals(theirs)) {
        seq = i
        break
      }
    }
    if (seq < 0) {
      const scanned = end > MAX_SCAN ? `its last ${MAX_SCAN} entries below ${end}` : `its ${end} entries`
      return { why: `the peers serve this copy's fork ${copy.fork} (${fresh.length} entries), and ${scanned} are this copy's` }
    }
  }
  let hostReceipt: Receipt | null = null
  for (let tries = 0; !hostReceipt && tries < 3; tries++) {
    const made = await within(
      createCoreReceipt(fresh, seq).catch(() => null),
      timeoutMs,
    )
    hostReceipt = made === 'timeout' ? null : made
  }
  if (!hostReceipt) return { why: `the host's entry ${seq} (fork ${fresh.fork}) did not arrive, or its log kept changing` }
  const copyReceipt = await createCoreReceipt(copy, seq)
  const compared = compareReceipts(copyReceipt, hostReceipt)
  if (!compared.holds) return { why: `the host's history (fork ${fresh.fork}) does not conflict with this copy: ${compared.why}` }
  return {
    proof: compared.proof,
    what: compared.what,
    copyFork: verifyReceipt(copyReceipt).fork,
    copyLength: copyReceipt.length,
    hostFork: verifyReceipt(hostReceipt).fork,
    hostLength: hostReceipt.length,
  }
}
