/**
 * Connecting a local Corestore to the peers that hold one key: the hosts given as WebSocket RPC URLs
 * (their replication endpoint) and, when a swarm network is given, the peers the DHT finds. Both
 * kinds combine. Waiting on peers is bounded: without the DHT a silent host is an error after the
 * timeout; with it, silent connections are dropped and dialled again until the timeout.
 *
 * A peering that follows a core (a seeder's, `follow()`) keeps finding its source for as long as it
 * is open: a host's WebSocket that closes is dialled again, and while no peer holding the core is
 * connected the DHT is asked again, each with a backoff from `minMs` doubling up to `maxMs`.
 */

import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import type WebSocket from 'ws'
import { FetchError } from '../errors.js'
import { assertNoFork, onOtherFork } from '../ledger/download.js'
import { keyToUrl } from '../ledger/keys.js'
import { dialReplication } from './replication.js'
import type { SwarmNetwork } from './swarm.js'
import { sleep, within } from './waits.js'

/** How long one attempt to hear from a DHT peer lasts before the connections are dropped and redialled. */
const SWARM_ATTEMPT_MS = 5000
/** How long a DHT connection may carry nothing before a following peering drops it. */
const SILENT_CONNECTION_MS = 2000

/** How often a following peering tries again: first after `minMs`, doubling up to `maxMs`. */
export interface Backoff {
  minMs: number
  maxMs: number
}

/** How often a following peering looks for a peer on another fork of its core. */
const FORK_WATCH_MS = 500

/**
 * Whether a peer holding all of `core` this side holds (servesHistory) is connected on a connection
 * this side opened (a host it dialled, or found on the DHT: not an auditor or seeder that dialled in
 * to fetch from it). A peer on another fork (a host that rewrote the history this side holds), or one
 * whose data did not verify, never counts: it does not serve this history.
 */
export function sourceConnected(core: Hypercore): boolean {
  return core.length > 0 && core.peers.some((peer) => peer.stream.isInitiator && servesHistory(peer, core))
}

/** Peers whose data did not verify against the copy they sent it to (distrust). */
const distrusted = new WeakSet<object>()

/**
 * Marks `peer` as one that sent data that does not verify against this side's copy (e.g. entries
 * past it from a rewritten history that kept its fork number): it no longer counts as a source.
 */
export function distrust(peer: Hypercore['peers'][number]): void {
  distrusted.add(peer)
}

/**
 * Whether `peer` holds all of `core` this side holds, as far as this side can tell: on the same fork,
 * at least as long, and none of what it sent failed to verify.
 */
export function servesHistory(peer: Hypercore['peers'][number], core: Hypercore): boolean {
  return !onOtherFork(peer, core) && !distrusted.has(peer) && peer.remoteLength >= core.length
}

/** The fork a connected peer of `core` says it is on, when it is another than this copy's; else null. A claim, not a proof. */
export function otherForkOf(core: Hypercore): number | null {
  const peer = core.peers.find((p) => onOtherFork(p, core))
  return peer ? peer.remoteFork : null
}

export interface PeeringOptions {
  /** RPC URLs (ws://…) of hosts serving the key. */
  hosts: string[]
  /** The DHT, if enabled. */
  network: SwarmNetwork | null
  /** How long to wait for peers, in ms. */
  timeoutMs: number
}

export class Peering {
  /** The open WebSocket to each host, by URL (null while it is not connected). */
  private readonly sockets: Map<string, WebSocket | null>
  private readonly deadline: number
  private readonly timers = new Set<NodeJS.Timeout>()
  private following: Backoff | null = null
  private onHost: ((host: string, connected: boolean) => void) | null = null
  private closed = false

  private constructor(
    private readonly key: Buffer,
    private readonly store: Corestore,
    private readonly options: PeeringOptions,
    sockets: Map<string, WebSocket | null>,
  ) {
    this.sockets = sockets
    this.deadline = Date.now() + options.timeoutMs
  }

  get url(): string {
    return keyToUrl(this.key)
  }

  /** Dials the hosts and starts the DHT lookup. Fails if no host answers and there is no DHT to ask. */
  static async connect(store: Corestore, key: Buffer, options: PeeringOptions): Promise<Peering> {
    const url = keyToUrl(key)
    const doneFinding = store.findingPeers()
    const { network } = options
    const lookup = network ? network.lookup(key) : Promise.resolve()
    if (network) network.status(`looking up ${url} on the DHT`)
    const dialed = await Promise.allSettled(options.hosts.map((host) => dialReplication(host, store)))
    const sockets = new Map<string, WebSocket | null>()
    const failures: string[] = []
    for (const [i, result] of dialed.entries()) {
      sockets.set(options.hosts[i], result.status === 'fulfilled' ? result.value.ws : null)
      if (result.status === 'rejected') failures.push(`${options.hosts[i]}: ${(result.reason as Error).message}`)
    }
    if (failures.length === options.hosts.length && !network) {
      doneFinding()
      throw new FetchError('ERR_HOST_UNREACHABLE', `could not reach a host for ${url} (${failures.join('; ')})`)
    }
    if (failures.length > 0 && network) network.status(`could not reach ${failures.join('; ')}; relying on the DHT`)
    // Reads wait for the first round of lookups (bounded by the callers' timeouts), then for peers found.
    lookup.then(doneFinding, doneFinding)
    return new Peering(key, store, options, sockets)
  }

  /**
   * From now until close, keeps `core` (this peering's key) connected to its source: a host whose
   * WebSocket closed (or never opened) is dialled again, and while no peer holding the core is
   * connected (sourceConnected) the DHT is asked again for its topic. Waits back off from
   * `backoff.minMs`, doubling up to `backoff.maxMs`, and start again from `minMs` once connected.
   * `onOtherFork`: called (every FORK_WATCH_MS while it lasts) with the fork a connected peer says
   * it is on, when that is not the core's: only a claim, for the caller to check (a fork proof).
   * `onHost`: called with false when a host's WebSocket closes, and with true when one is dialled again.
   */
  follow(
    core: Hypercore,
    backoff: Backoff,
    onOtherFork?: (fork: number) => void,
    onHost?: (host: string, connected: boolean) => void,
  ): void {
    if (this.following || this.closed) return
    this.following = backoff
    this.onHost = onHost ?? null
    for (const [host, ws] of this.sockets) {
      if (ws && ws.readyState === ws.OPEN) this.watchSocket(host, ws, backoff.minMs)
      else this.redial(host, backoff.minMs)
    }
    if (onOtherFork) {
      const watch = () =>
        this.later(FORK_WATCH_MS, () => {
          const fork = core.closing ? null : otherForkOf(core)
          if (fork !== null) onOtherFork(fork)
          watch()
        })
      watch()
    }
    const { network } = this.options
    if (!network) return
    const check = (wait: number) => {
      this.later(wait, async () => {
        if (sourceConnected(core)) return check(backoff.minMs)
        // A DHT connection can open and carry nothing until it times out (about 13 s): one that has
        // been silent for a while is dropped, so the swarm dials the peer again.
        network.dropSilent(SILENT_CONNECTION_MS)
        // A lookup that hangs must not stop the loop: it is waited on for at most maxMs.
        await within(
          network.refresh(this.key).catch(() => {}),
          backoff.maxMs,
        )
        check(Math.min(wait * 2, backoff.maxMs))
      })
    }
    check(backoff.minMs)
  }

  /** Runs `fn` after `ms` unless the peering closes first. */
  private later(ms: number, fn: () => unknown): void {
    if (this.closed) return
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (!this.closed) fn()
    }, ms)
    this.timers.add(timer)
  }

  /**
   * A following peering's socket to `host`, opened after waiting `wait` ms: when it closes, dial
   * again — soon if it had stayed open for a while, else after twice as long (a host that keeps
   * closing at once is not dialled in a tight loop).
   */
  private watchSocket(host: string, ws: WebSocket, wait: number): void {
    const backoff = this.following as Backoff
    const opened = Date.now()
    ws.on('error', () => {
      // 'close' follows
    })
    ws.once('close', () => {
      if (this.sockets.get(host) === ws) this.sockets.set(host, null)
      if (!this.closed) this.onHost?.(host, false)
      const lasted = Date.now() - opened >= backoff.maxMs
      this.redial(host, lasted ? backoff.minMs : Math.min(wait * 2, backoff.maxMs))
    })
  }

  /** Dials `host` after `wait` ms; on failure, again after twice as long (at most maxMs). */
  private redial(host: string, wait: number): void {
    const backoff = this.following as Backoff
    this.later(wait, async () => {
      try {
        const { ws } = await dialReplication(host, this.store)
        if (this.closed) {
          ws.terminate()
          return
        }
        this.sockets.set(host, ws)
        this.watchSocket(host, ws, wait)
        this.onHost?.(host, true)
      } catch {
        this.redial(host, Math.min(wait * 2, backoff.maxMs))
      }
    })
  }

  /**
   * Waits until a peer holding `core` has answered (so `core.length` is what the peers have). With
   * the DHT, redials silent connections until the timeout; rejects with ERR_FETCH_TIMEOUT after it.
   */
  async learnLength(core: Hypercore, url = this.url): Promise<void> {
    const { network } = this.options
    const started = Date.now()
    for (;;) {
      const left = this.deadline - Date.now()
      if (left <= 0) break
      const answered = await within(core.update({ wait: true }), network ? Math.min(left, SWARM_ATTEMPT_MS) : left)
      assertNoFork(core, url)
      if (core.length > 0 || (answered !== 'timeout' && core.peers.length > 0)) return
      if (!network) {
        if (answered !== 'timeout') return // the hosts answered: they do not have it
        break
      }
      const secs = Math.round((Date.now() - started) / 1000)
      network.status(`no peer has sent ${url} yet (${secs} s, ${network.connections} connections); asking the DHT again`)
      await sleep(Math.min(1000, Math.max(0, this.deadline - Date.now())))
      await network.redial()
    }
    throw new FetchError('ERR_FETCH_TIMEOUT', `no peer sent ${url} within ${this.options.timeoutMs} ms`)
  }

  /**
   * A download of `what` has stalled for `stalledMs`. With the DHT, until the timeout: drop the
   * connections, dial again, keep going (true). Otherwise false: the download fails.
   */
  async onStall(what: string, stalledMs: number): Promise<boolean> {
    const { network } = this.options
    if (!network || stalledMs >= this.options.timeoutMs) return false
    network.status(`no data for ${what} for ${Math.round(stalledMs / 1000)} s; dialling the peers again`)
    await network.redial()
    return true
  }

  close(): void {
    this.closed = true
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    for (const ws of this.sockets.values()) ws?.terminate()
  }
}
