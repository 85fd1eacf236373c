/**
 * Hyperswarm (the HyperDHT): publishing cores under their discovery keys and finding the peers that
 * hold them. Nothing here runs unless a caller asks for it with swarm options: the public DHT's
 * bootstrap nodes are on the internet. Bootstrap nodes come from the options, else from the
 * LIBVMS_BOOTSTRAP environment variable ("host:port,host:port"), else Hyperswarm's public ones.
 *
 * DHT connections are unreliable at first on some networks (a connection may open and carry no
 * data): whoever waits on a peer does so with timeouts, and `redial()` drops silent connections so
 * the swarm dials again.
 */
import type { Duplex } from 'node:stream'
import crypto from 'hypercore-crypto'
import type Hyperswarm from 'hyperswarm'
import type { PeerDiscovery } from 'hyperswarm'
import { InvalidArgumentError } from '../errors.js'
import type { SwarmOptions, SwarmSetting } from '../ledger/remote-source.js'

export type { SwarmOptions, SwarmSetting }

export const BOOTSTRAP_ENV = 'LIBVMS_BOOTSTRAP'

export function swarmOptionsOf(setting: SwarmSetting | undefined): SwarmOptions | null {
  if (setting === undefined || setting === false) return null
  if (setting === true) return {}
  if (setting === null || typeof setting !== 'object') throw new InvalidArgumentError('swarm must be true, false or {bootstrap, onStatus}')
  return setting
}

/** Parses bootstrap nodes ("host:port", "[::1]:port"); undefined when none are configured. */
export function parseBootstrap(value: string[] | string | undefined): { host: string; port: number }[] | undefined {
  const list = (Array.isArray(value) ? value : (value ?? '').split(',')).map((s) => s.trim()).filter((s) => s.length > 0)
  if (list.length === 0) return undefined
  return list.map((entry) => {
    const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(entry)
    const port = match ? Number(match[2]) : Number.NaN
    if (!match || port < 1 || port > 65535) {
      throw new InvalidArgumentError(`bootstrap node ${JSON.stringify(entry)} is not host:port (e.g. 127.0.0.1:49737)`)
    }
    return { host: match[1], port }
  })
}

export function topicOf(key: Uint8Array): Buffer {
  return crypto.discoveryKey(key)
}

type Connection = Duplex & { remotePublicKey: Buffer }

export class SwarmNetwork {
  private readonly swarm: Hyperswarm
  private readonly replicators = new Set<(socket: Duplex) => void>()
  /**
   * Joined topics (hex) and how: a topic can be both announced and looked up (a seeder's), and
   * joining it again must not drop the other mode.
   */
  private readonly topics = new Map<string, { discovery: PeerDiscovery; client: boolean; server: boolean }>()
  private readonly onStatus: (message: string) => void
  /** When each open connection opened, until it first carries data (then it is no longer silent). */
  private readonly silentSince = new Map<Duplex, number>()
  private destroyed = false

  /**
   * Joins the DHT. Hyperswarm (and its native UDP stack) is loaded only here, so a process that never
   * asks for the DHT never loads it.
   */
  static async create(options: SwarmOptions = {}): Promise<SwarmNetwork> {
    const bootstrap = parseBootstrap(options.bootstrap ?? process.env[BOOTSTRAP_ENV])
    const { default: Swarm } = await import('hyperswarm')
    return new SwarmNetwork(new Swarm(bootstrap ? { bootstrap } : {}), options)
  }

  private constructor(swarm: Hyperswarm, options: SwarmOptions) {
    this.swarm = swarm
    this.onStatus = options.onStatus ?? (() => {})
    this.swarm.on('connection', (socket: Connection) => {
      socket.on('error', () => {
        // a dropped peer: the swarm dials again if it still wants it
      })
      for (const replicate of this.replicators) replicate(socket)
      // (Every connection is read by Hypercore's replication, which both ends start at once.)
      this.silentSince.set(socket, Date.now())
      socket.once('data', () => this.silentSince.delete(socket))
      socket.once('close', () => this.silentSince.delete(socket))
    })
  }

  get connections(): number {
    return this.swarm.connections.size
  }

  status(message: string): void {
    this.onStatus(message)
  }

  /** Runs `replicate` on every connection, open now or later; returns a function that stops it for later ones. */
  serve(replicate: (socket: Duplex) => void): () => void {
    this.replicators.add(replicate)
    for (const socket of this.swarm.connections) replicate(socket)
    return () => this.replicators.delete(replicate)
  }

  /** Joins `key`'s topic in the modes wanted, keeping the modes it was already joined in. */
  private join(key: Uint8Array, want: { client?: boolean; server?: boolean }): PeerDiscovery {
    const topic = topicOf(key)
    const known = this.topics.get(topic.toString('hex'))
    const client = !!(want.client || known?.client)
    const server = !!(want.server || known?.server)
    const discovery = this.swarm.join(topic, { client, server })
    this.topics.set(topic.toString('hex'), { discovery, client, server })
    return discovery
  }

  /** Announces that this peer serves `key` (a core's public key); resolves once the DHT holds the announcement. */
  async announce(key: Uint8Array): Promise<void> {
    await this.join(key, { server: true }).flushed()
  }

  /** Looks for peers that serve `key`; resolves once the first round of lookups and dials is done. */
  async lookup(key: Uint8Array): Promise<void> {
    this.join(key, { client: true })
    await this.swarm.flush()
  }

  async leave(key: Uint8Array): Promise<void> {
    const topic = topicOf(key)
    this.topics.delete(topic.toString('hex'))
    if (!this.destroyed) await this.swarm.leave(topic)
  }

  /** Asks the DHT again for the peers of `key`'s topic (a host that came back with a new DHT key), keeping the connections. */
  async refresh(key: Uint8Array): Promise<void> {
    const known = this.topics.get(topicOf(key).toString('hex'))
    if (!known || this.destroyed) return
    await known.discovery.refresh({ client: known.client, server: known.server })
  }

  /**
   * Drops the connections that opened at least `ms` ago and have carried nothing since (the swarm
   * dials their peers again); the others, busy with other cores, stay. Returns how many it dropped.
   */
  dropSilent(ms: number): number {
    const before = Date.now() - ms
    let dropped = 0
    for (const [socket, since] of this.silentSince) {
      if (since > before) continue
      this.silentSince.delete(socket)
      socket.destroy()
      dropped++
    }
    return dropped
  }

  /** Drops the open connections (the swarm dials again) and asks the DHT again for the topics looked up. */
  async redial(): Promise<void> {
    for (const socket of this.swarm.connections) socket.destroy()
    const lookedUp = [...this.topics.values()].filter((t) => t.client)
    await Promise.all(lookedUp.map((t) => t.discovery.refresh({ client: t.client, server: t.server })))
    await this.swarm.flush()
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    this.replicators.clear()
    await this.swarm.destroy()
  }
}
