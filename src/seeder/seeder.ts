/**
 * A seeder keeps full, live replicas of VMs' call logs and files archives and serves them on the DHT,
 * so a VM's record stays available (and verifiable by URL alone) after its host goes offline. Its
 * copies are checked block by block against the hosts' signatures like any auditor's, and refuse
 * forks. One Corestore in `dir` holds every seeded VM; the list of seeded logs is kept in
 * `dir/seeded.json`, so a seeder restarted on its dir serves them again.
 *
 * A seeder follows its hosts for as long as it runs: a host that goes away and comes back (on the
 * same ws:// URL, or announced on the DHT again under a new DHT key) is dialled or looked up again
 * with a backoff (peering.ts, `follow`). With `listen()` it also serves auditors directly over
 * WebSocket, like a host: each VM at `/<call log key hex>` answers the RPC handshake (with no
 * callable methods, and how current the copy is: `replica`) and the replication subprotocol, through
 * the same RPCServer code a host uses.
 *
 * A host that rewrites history a copy holds (truncates its log and appends other entries: a new
 * fork) is not followed: the copy keeps what it received. When a peer says it is on another fork,
 * the seeder asks the hosts for their current history and, if it conflicts with the copy, keeps the
 * fork proof (fork-witness.ts) in `dir/forks/<call log key hex>.json`, emits 'fork', and reports it
 * in `replica.forked`; that host no longer counts as seen. A peer's word alone proves nothing: without
 * a proof nothing is reported as a fork ('fork-unproven' says why none could be made). Each seeded
 * log's fork record (its proof, the attempts to make one) is in replica-forks.ts. The files archive
 * follows only as far as the log records, so it stops with the log (archive-follower.ts).
 *
 * The Seeder orchestrates: it opens the copies, connects and follows their hosts (peering.ts), notes
 * when a host is seen, serves the copies, and hands fork claims and archive updates to those files.
 */
import { EventEmitter } from 'node:events'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import Corestore from 'corestore'
import type Hypercore from 'hypercore'
import Hyperdrive from 'hyperdrive'
import { StateError } from '../errors.js'
import { downloadAll } from '../ledger/download.js'
import { HostBook } from '../ledger/host-book.js'
import { keyToUrl, parseKeyUrl, toHex } from '../ledger/keys.js'
import type { LogEntry } from '../ledger/log-entry.js'
import type { SwarmOptions } from '../ledger/remote-source.js'
import { type Backoff, distrust, Peering, servesHistory, sourceConnected } from '../net/peering.js'
import { SwarmNetwork } from '../net/swarm.js'
import type { ReplicaInfo } from '../rpc/protocol.js'
import type { RPCBackend } from '../rpc/rpc-connection.js'
import { type ListenOptions, RPCServer } from '../rpc/rpc-server.js'
import { askLength, entryAt, followArchive, holdLength } from './archive-follower.js'
import { ForkRecord } from './replica-forks.js'

export interface SeederOptions {
  /** Where the replicas live (created if absent). */
  dir: string
  /** DHT options (bootstrap nodes, progress messages). A seeder always serves on the DHT. */
  swarm?: SwarmOptions
  /** How long to wait for peers when fetching a VM, in ms (default 60,000). */
  timeout?: number
  /** Where to look up the hosts of a VM seeded without `peers` (default HostBook.shared). */
  hosts?: HostBook
  /**
   * How soon a host that went away is dialled again (ws://) and looked up again (DHT): first after
   * `minMs` (default 1 s), doubling while it stays away, up to `maxMs` (default 10 s).
   */
  reconnect?: Partial<Backoff>
}

export interface SeededVM {
  callLogUrl: string
  filesArchiveUrl: string
  /** Entries of the call log held when seeding began. */
  length: number
  /** While the seeder listens (`listen()`): where auditors reach this VM's copy, ws://host:port/<call log key hex>. */
  rpcUrl?: string
}

export type { SeededFork, UnprovenFork } from './replica-forks.js'

const SEEDED_FILE = 'seeded.json'
const DEFAULT_TIMEOUT_MS = 60_000
const DEFAULT_RECONNECT: Backoff = { minMs: 1000, maxMs: 10_000 }

interface Seeded {
  info: SeededVM
  peerings: Peering[]
  stops: (() => void)[]
  /** Set once the copy is complete. */
  log: Hypercore<LogEntry> | null
  title: string
  auth: 'debug' | 'production'
  /** When the host was last seen (ms): a source on the copy's fork connected, or a new entry received. */
  lastSeen: number | null
  /** Whether the host rewrote history the copy holds: the proof, once made, and the attempts to make one. */
  forks: ForkRecord
  /** Resolves once a log session Hypercore closed (a conflict) is replaced. */
  reopened: Promise<void>
}

/** The host is seen now if a source of the copy's history is connected, unless a fork is proven or looked into. */
function noteIfSeen(entry: Seeded, log: Hypercore<LogEntry>): void {
  if (sourceConnected(log) && entry.forks.hostMayBeSeen) entry.lastSeen = Date.now()
}

async function readSeededList(dir: string): Promise<string[]> {
  try {
    const list = JSON.parse(await readFile(join(dir, SEEDED_FILE), 'utf8')) as unknown
    return Array.isArray(list) ? list.filter((u): u is string => typeof u === 'string') : []
  } catch {
    return []
  }
}

/**
 * Events: 'fork' (SeededFork: the host of a seeded log rewrote history the copy holds, and the fork
 * proof is kept; once per log, also for one proven before the dir was opened), 'fork-unproven'
 * (UnprovenFork: a peer said it is on another fork, and no proof could be made: nothing is reported
 * as a fork).
 */
export class Seeder extends EventEmitter {
  private readonly seeded = new Map<string, Seeded>()
  private server: RPCServer | null = null
  private closed = false

  private constructor(
    readonly dir: string,
    private readonly store: Corestore,
    private readonly network: SwarmNetwork,
    private readonly timeoutMs: number,
    private readonly hosts: HostBook,
    /** The dir's list of seeded call logs (SEEDED_FILE), read once when the seeder opens. */
    private readonly listed: Set<string>,
    private readonly backoff: Backoff,
    private readonly swarmOptions: SwarmOptions,
  ) {
    super()
  }

  static async open(options: SeederOptions): Promise<Seeder> {
    await mkdir(options.dir, { recursive: true })
    const store = new Corestore(join(options.dir, 'corestore'))
    await store.ready()
    const network = await SwarmNetwork.create(options.swarm ?? {})
    network.serve((socket) => store.replicate(socket))
    const timeoutMs = options.timeout ?? DEFAULT_TIMEOUT_MS
    const backoff = { ...DEFAULT_RECONNECT, ...options.reconnect }
    const listed = new Set(await readSeededList(options.dir))
    return new Seeder(options.dir, store, network, timeoutMs, options.hosts ?? HostBook.shared, listed, backoff, options.swarm ?? {})
  }

  /** The VMs seeded so far. */
  get vms(): SeededVM[] {
    return [...this.seeded.entries()].map(([hex, s]) => this.described(hex, s))
  }

  /** ws://host:port once listening, else null. */
  get url(): string | null {
    return this.server?.url ?? null
  }

  /**
   * Serves auditors over WebSocket too (host defaults to 127.0.0.1, port 0 picks one): every seeded
   * VM, now or later, at `/<call log key hex>` — the RPC handshake (no callable methods; calls are
   * refused with ERR_NOT_HOST; `replica` says how current the copy is) and replication of its cores
   * (subprotocol libvms-replication-1), so `verify ws://…` works from the seeder alone. Resolves with
   * the server's ws://host:port.
   */
  async listen(options: ListenOptions = {}): Promise<string> {
    if (this.closed) throw new StateError('the seeder is closed')
    if (this.server) throw new StateError('the seeder is already listening')
    const server = new RPCServer()
    for (const [hex, entry] of this.seeded) server.mount(`/${hex}`, this.backendOf(entry))
    this.server = server
    try {
      await server.listen(options)
    } catch (err) {
      this.server = null
      await server.close()
      throw err
    }
    return server.url as string
  }

  /**
   * How current the copy of `callLogUrl` is: its length, when its host was last seen (null: not since
   * the seeder started), and `forked` once the host was proven to have rewritten history the copy
   * holds (with the proof, when it is small enough for a handshake).
   */
  replicaOf(callLogUrl: string): ReplicaInfo {
    const entry = this.seeded.get(toHex(parseKeyUrl(callLogUrl)))
    if (!entry?.log) throw new StateError(`${callLogUrl} is not seeded here`)
    noteIfSeen(entry, entry.log)
    const info: ReplicaInfo = {
      length: entry.log.length,
      hostLastSeen: entry.lastSeen === null ? null : new Date(entry.lastSeen).toISOString(),
    }
    const forked = entry.forks.forked
    if (forked) info.forked = forked
    return info
  }

  private described(hex: string, entry: Seeded): SeededVM {
    const url = this.server?.url
    return url ? { ...entry.info, rpcUrl: `${url}/${hex}` } : { ...entry.info }
  }

  /** A seeded VM as an RPC server sees it: no methods; its cores are this seeder's replicas. */
  private backendOf(entry: Seeded): RPCBackend {
    const store = this.store
    return {
      methods: [],
      title: entry.title,
      auth: entry.auth,
      callLog: { url: entry.info.callLogUrl },
      filesArchive: { url: entry.info.filesArchiveUrl },
      // Never reached: the server refuses every call to a backend with `replica` (ERR_NOT_HOST).
      executeCall: () => Promise.reject(new StateError('a seeder runs no calls')),
      replicate: (isInitiatorOrStream) => store.replicate(isInitiatorOrStream) as unknown as Duplex,
      replica: () => this.replicaOf(entry.info.callLogUrl),
    }
  }

  /** Call log URLs this dir has seeded, as of when it was opened (seed them again to serve them). */
  get previouslySeeded(): string[] {
    return [...this.listed]
  }

  /**
   * Fetches the whole call log at `callLogUrl` and its files archive (from `peers`, or the hosts its
   * HostBook knows, and the DHT), keeps them up to date as the host appends, and announces them on
   * the DHT. Copies already complete in `dir` are announced at once and updated in the background.
   */
  async seed(callLogUrl: string, options: { peers?: string[] } = {}): Promise<SeededVM> {
    if (this.closed) throw new StateError('the seeder is closed')
    const logKey = parseKeyUrl(callLogUrl)
    const hex = toHex(logKey)
    const existing = this.seeded.get(hex)
    if (existing) return this.described(hex, existing)
    const hosts = options.peers ?? this.hosts.hostsOf(logKey)
    const entry: Seeded = {
      info: { callLogUrl: keyToUrl(logKey), filesArchiveUrl: '', length: 0 },
      peerings: [],
      stops: [],
      log: null,
      title: '',
      auth: 'debug',
      lastSeen: null,
      forks: new ForkRecord({
        dir: this.dir,
        callLogUrl: keyToUrl(logKey),
        // The DHT with the seeder's bootstrap nodes, without its progress messages (a temp node's lookups are no news).
        witness: { hosts, swarm: { bootstrap: this.swarmOptions.bootstrap }, timeoutMs: this.timeoutMs },
        closed: () => this.closed,
        events: this,
      }),
      reopened: Promise.resolve(),
    }
    try {
      const log = this.store.get<LogEntry>({ key: logKey, valueEncoding: 'json', allowFork: false })
      await log.ready()
      // A fork proven before: the copy stays where it was, and says so from the start.
      await entry.forks.readBack(log)
      await this.replicate(entry, log, {
        key: logKey,
        peers: hosts,
        onOtherFork: (fork) => entry.forks.suspect(entry, `says it is on fork ${fork}, not this copy's ${entry.log?.fork ?? log.fork}`),
      })
      const init = await entryAt(log, 0)
      if (init.type !== 'init') throw new StateError(`${callLogUrl} has no init entry`)
      entry.title = init.title
      entry.auth = init.auth
      const archiveKey = Buffer.from(init.filesArchiveKey, 'hex')
      // The archive must hold at least what the log's last entry records, and is not let run further.
      const { files } = await entryAt(log, log.length - 1)
      const db = this.store.get({ key: archiveKey, allowFork: false })
      await db.ready()
      holdLength(db)
      await this.replicate(entry, db, { key: archiveKey, peers: options.peers ?? this.hosts.hostsOf(archiveKey), needed: files.version })
      // The blobs core (file contents) is named in the archive's header; it rides on the same connections.
      const blobsKey = db.manifest ? Hyperdrive.getContentKey(db, archiveKey) : null
      const blobs = blobsKey ? this.store.get({ key: blobsKey, allowFork: false }) : null
      if (blobs) {
        await blobs.ready()
        holdLength(blobs)
        await this.replicate(entry, blobs, { key: null, needed: files.blobsLength })
      }
      entry.info = { callLogUrl: keyToUrl(logKey), filesArchiveUrl: keyToUrl(archiveKey), length: log.length }
      this.watchHost(entry, log)
      entry.stops.push(followArchive(log, db, blobs, this.backoff))
      await Promise.all([this.network.announce(logKey), this.network.announce(archiveKey)])
      if (this.closed) throw new StateError('the seeder closed while seeding')
    } catch (err) {
      for (const peering of entry.peerings) peering.close()
      for (const stop of entry.stops) stop()
      throw err
    }
    this.seeded.set(hex, entry)
    this.server?.mount(`/${hex}`, this.backendOf(entry))
    await this.remember(entry.info.callLogUrl)
    entry.forks.reportEarlier(entry)
    return this.described(hex, entry)
  }

  /**
   * Notes when the host is seen: a new entry arrives, or a source of the log disconnects (it was there
   * until now); not once a fork is proven, nor while a claim of one is looked into. Looks into what
   * a rewritten history shows: newer entries that do not verify against the copy, and Hypercore's own
   * conflict check (two trees the key signed that do not extend one another, under one fork number),
   * which freezes the copy and closes its sessions: the copy is then read through a new session.
   */
  private watchHost(entry: Seeded, log: Hypercore<LogEntry>): void {
    entry.log = log
    noteIfSeen(entry, log)
    const onAppend = () => {
      entry.lastSeen = Date.now()
    }
    const onPeerRemove = (peer: Hypercore['peers'][number]) => {
      // A peer on another fork (or whose entries did not verify) did not serve this history: it was not the host this copy follows.
      if (peer.stream.isInitiator && servesHistory(peer, log) && log.length > 0 && entry.forks.hostMayBeSeen) entry.lastSeen = Date.now()
    }
    // Entries past the copy that do not verify against it: a history rewritten under the same fork
    // number (the key holder picks the number), or a peer sending junk. Either way, not a source.
    const onInvalid = (_err: unknown, _req: unknown, _res: unknown, from: Hypercore['peers'][number] | undefined) => {
      if (!from) return
      distrust(from)
      entry.forks.suspect(entry, `sent entries past this copy's ${log.length} that do not verify against it`)
    }
    const onConflict = () => {
      let reopened: () => void = () => {}
      entry.reopened = new Promise((resolve) => (reopened = resolve))
      log.once('close', () => {
        if (this.closed) return reopened()
        const again = this.store.get<LogEntry>({ key: log.key, valueEncoding: 'json', allowFork: false })
        again.ready().then(
          () => {
            if (this.closed) return reopened()
            for (const stop of detach) stop()
            this.watchHost(entry, again)
            reopened()
            entry.forks.suspect(
              entry,
              'holds a history that conflicts with this copy under the same fork number (Hypercore found two trees the key signed that do not extend one another)',
            )
          },
          () => reopened(),
        )
      })
    }
    log.on('append', onAppend)
    log.on('peer-remove', onPeerRemove)
    log.on('verification-error', onInvalid)
    log.on('conflict', onConflict)
    const detach = [
      () => log.off('append', onAppend),
      () => log.off('peer-remove', onPeerRemove),
      () => log.off('verification-error', onInvalid),
      () => log.off('conflict', onConflict),
    ]
    entry.stops.push(() => {
      for (const stop of detach) stop()
    })
  }

  /**
   * Brings `core` up to date from its peers (unless a complete copy is already here: every block up to
   * `needed`, or up to its length if that is not known). The log (no `needed`) is then kept live: new
   * entries are fetched as the host appends them; an archive core (`needed`: what the log records of
   * it) goes no further here (followArchive). `key` null: the core rides on the connections of the
   * previous ones (an archive's blobs core). `onOtherFork`: called while a peer says it is on another
   * fork of the core.
   */
  private async replicate(
    entry: Seeded,
    core: Hypercore,
    options: { key: Buffer | null; peers?: string[]; needed?: number; onOtherFork?: (fork: number) => void },
  ): Promise<void> {
    const { key, needed } = options
    await core.ready()
    const complete = needed === undefined ? core.length > 0 && core.contiguousLength === core.length : core.contiguousLength >= needed
    if (key) {
      const peering = await Peering.connect(this.store, key, {
        hosts: options.peers ?? this.hosts.hostsOf(key),
        network: this.network,
        timeoutMs: this.timeoutMs,
      })
      entry.peerings.push(peering)
      if (!complete) await peering.learnLength(core)
    }
    const url = keyToUrl(core.key)
    if (!complete) {
      // A blobs core may not know its length yet (and takes none unasked: holdLength): ask for it.
      if (needed !== undefined && core.length < needed) await askLength(core, this.timeoutMs)
      await downloadAll(
        core,
        url,
        Math.min(this.timeoutMs, 15_000),
        (stalledMs) => (entry.peerings.at(-1) as Peering).onStall(url, stalledMs),
        needed,
      )
    }
    if (needed === undefined) {
      const live = core.download({ start: 0, end: -1 })
      entry.stops.push(() => live.destroy())
    }
    // From here on, a host that goes away is dialled and looked up again (the blobs core rides on the archive's peering).
    if (key) (entry.peerings.at(-1) as Peering).follow(core, this.backoff, options.onOtherFork)
  }

  /** Adds `callLogUrl` to the dir's list of seeded logs (written only when it is new). */
  private async remember(callLogUrl: string): Promise<void> {
    if (this.listed.has(callLogUrl)) return
    this.listed.add(callLogUrl)
    const tmp = join(this.dir, `${SEEDED_FILE}.tmp`)
    await writeFile(tmp, `${JSON.stringify([...this.listed], null, 2)}\n`)
    await rename(tmp, join(this.dir, SEEDED_FILE))
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.server?.close()
    this.server = null
    for (const entry of this.seeded.values()) {
      for (const peering of entry.peerings) peering.close()
      for (const stop of entry.stops) stop()
    }
    await this.network.destroy()
    await this.store.close()
  }
}
