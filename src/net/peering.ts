/**
 * Connecting a local Corestore to the peers that hold one key: the hosts given as WebSocket RPC URLs
 * (their replication endpoint) and, when a swarm network is given, the peers the DHT finds. Both
 * kinds combine. Waiting on peers is bounded: without the DHT a silent host is an error after the
 * timeout; with it, silent connections are dropped and dialled again until the timeout.
 */

import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import type WebSocket from 'ws'
import { FetchError } from '../errors.js'
import { assertNoFork } from '../ledger/download.js'
import { keyToUrl } from '../ledger/keys.js'
import { dialReplication } from './replication.js'
import type { SwarmNetwork } from './swarm.js'

/** How long one attempt to hear from a DHT peer lasts before the connections are dropped and redialled. */
const SWARM_ATTEMPT_MS = 5000

export interface PeeringOptions {
  /** RPC URLs (ws://…) of hosts serving the key. */
  hosts: string[]
  /** The DHT, if enabled. */
  network: SwarmNetwork | null
  /** How long to wait for peers, in ms. */
  timeoutMs: number
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([promise, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)))])
  } finally {
    clearTimeout(timer)
  }
}

export class Peering {
  private readonly sockets: WebSocket[]
  private readonly deadline: number

  private constructor(
    private readonly key: Buffer,
    private readonly options: PeeringOptions,
    sockets: WebSocket[],
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
    const sockets: WebSocket[] = []
    const failures: string[] = []
    for (const [i, result] of dialed.entries()) {
      if (result.status === 'fulfilled') sockets.push(result.value.ws)
      else failures.push(`${options.hosts[i]}: ${(result.reason as Error).message}`)
    }
    if (sockets.length === 0 && !network) {
      doneFinding()
      throw new FetchError('ERR_HOST_UNREACHABLE', `could not reach a host for ${url} (${failures.join('; ')})`)
    }
    if (failures.length > 0 && network) network.status(`could not reach ${failures.join('; ')}; relying on the DHT`)
    // Reads wait for the first round of lookups (bounded by the callers' timeouts), then for peers found.
    lookup.then(doneFinding, doneFinding)
    return new Peering(key, options, sockets)
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
    for (const ws of this.sockets) ws.terminate()
  }
}
