/**
 * A seeder keeps full, live replicas of VMs' call logs and files archives and serves them on the DHT,
 * so a VM's record stays available (and verifiable by URL alone) after its host goes offline. Its
 * copies are checked block by block against the hosts' signatures like any auditor's, and refuse
 * forks. One Corestore in `dir` holds every seeded VM; the list of seeded logs is kept in
 * `dir/seeded.json`, so a seeder restarted on its dir serves them again.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import Corestore from 'corestore'
import type Hypercore from 'hypercore'
import Hyperdrive from 'hyperdrive'
import { StateError } from '../errors.js'
import { downloadAll } from '../ledger/download.js'
import { HostBook } from '../ledger/host-book.js'
import { keyToUrl, parseKeyUrl, toHex } from '../ledger/keys.js'
import { type LogEntry, parseEntry } from '../ledger/log-entry.js'
import type { SwarmOptions } from '../ledger/remote-source.js'
import { Peering } from './peering.js'
import { SwarmNetwork } from './swarm.js'

export interface SeederOptions {
  /** Where the replicas live (created if absent). */
  dir: string
  /** DHT options (bootstrap nodes, progress messages). A seeder always serves on the DHT. */
  swarm?: SwarmOptions
  /** How long to wait for peers when fetching a VM, in ms (default 60,000). */
  timeout?: number
  /** Where to look up the hosts of a VM seeded without `peers` (default HostBook.shared). */
  hosts?: HostBook
}

export interface SeededVM {
  callLogUrl: string
  filesArchiveUrl: string
  /** Entries of the call log held when seeding began. */
  length: number
}

const SEEDED_FILE = 'seeded.json'
const DEFAULT_TIMEOUT_MS = 60_000

interface Seeded {
  info: SeededVM
  peerings: Peering[]
  stops: (() => void)[]
}

async function readSeededList(dir: string): Promise<string[]> {
  try {
    const list = JSON.parse(await readFile(join(dir, SEEDED_FILE), 'utf8')) as unknown
    return Array.isArray(list) ? list.filter((u): u is string => typeof u === 'string') : []
  } catch {
    return []
  }
}

export class Seeder {
  private readonly seeded = new Map<string, Seeded>()
  private closed = false

  private constructor(
    readonly dir: string,
    private readonly store: Corestore,
    private readonly network: SwarmNetwork,
    private readonly timeoutMs: number,
    private readonly hosts: HostBook,
    /** The dir's list of seeded call logs (SEEDED_FILE), read once when the seeder opens. */
    private readonly listed: Set<string>,
  ) {}

  static async open(options: SeederOptions): Promise<Seeder> {
    await mkdir(options.dir, { recursive: true })
    const store = new Corestore(join(options.dir, 'corestore'))
    await store.ready()
    const network = await SwarmNetwork.create(options.swarm ?? {})
    network.serve((socket) => store.replicate(socket))
    const timeoutMs = options.timeout ?? DEFAULT_TIMEOUT_MS
    return new Seeder(options.dir, store, network, timeoutMs, options.hosts ?? HostBook.shared, new Set(await readSeededList(options.dir)))
  }

  /** The VMs seeded so far. */
  get vms(): SeededVM[] {
    return [...this.seeded.values()].map((s) => s.info)
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
    const existing = this.seeded.get(toHex(logKey))
    if (existing) return existing.info
    const entry: Seeded = { info: { callLogUrl: keyToUrl(logKey), filesArchiveUrl: '', length: 0 }, peerings: [], stops: [] }
    try {
      const log = this.store.get<LogEntry>({ key: logKey, valueEncoding: 'json', allowFork: false })
      await this.replicate(entry, log, logKey, options.peers)
      const init = parseEntry(await log.get(0), 0)
      if (init.type !== 'init') throw new StateError(`${callLogUrl} has no init entry`)
      const archiveKey = Buffer.from(init.filesArchiveKey, 'hex')
      // The archive must hold at least what the log's last entry records.
      const { files } = parseEntry(await log.get(log.length - 1), log.length - 1)
      const db = this.store.get({ key: archiveKey, allowFork: false })
      await this.replicate(entry, db, archiveKey, options.peers, files.version)
      // The blobs core (file contents) is named in the archive's header; it rides on the same connections.
      const blobsKey = db.manifest ? Hyperdrive.getContentKey(db, archiveKey) : null
      if (blobsKey) {
        await this.replicate(entry, this.store.get({ key: blobsKey, allowFork: false }), null, options.peers, files.blobsLength)
      }
      entry.info = { callLogUrl: keyToUrl(logKey), filesArchiveUrl: keyToUrl(archiveKey), length: log.length }
      await Promise.all([this.network.announce(logKey), this.network.announce(archiveKey)])
    } catch (err) {
      for (const peering of entry.peerings) peering.close()
      for (const stop of entry.stops) stop()
      throw err
    }
    this.seeded.set(toHex(logKey), entry)
    await this.remember(entry.info.callLogUrl)
    return entry.info
  }

  /**
   * Brings `core` up to date from its peers (unless a complete copy is already here: every block up to
   * `needed`, or up to its length if that is not known), then keeps it live: new blocks are fetched
   * as the host appends them. `key` null: the core rides on the connections of the previous ones (an
   * archive's blobs core).
   */
  private async replicate(entry: Seeded, core: Hypercore, key: Buffer | null, peers?: string[], needed?: number): Promise<void> {
    await core.ready()
    const complete = needed === undefined ? core.length > 0 && core.contiguousLength === core.length : core.contiguousLength >= needed
    if (key) {
      const peering = await Peering.connect(this.store, key, {
        hosts: peers ?? this.hosts.hostsOf(key),
        network: this.network,
        timeoutMs: this.timeoutMs,
      })
      entry.peerings.push(peering)
      if (!complete) await peering.learnLength(core)
    }
    const url = keyToUrl(core.key)
    if (!complete) {
      await downloadAll(core, url, Math.min(this.timeoutMs, 15_000), (stalledMs) =>
        (entry.peerings.at(-1) as Peering).onStall(url, stalledMs),
      )
    }
    const live = core.download({ start: 0, end: -1 })
    entry.stops.push(() => live.destroy())
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
    for (const entry of this.seeded.values()) {
      for (const peering of entry.peerings) peering.close()
      for (const stop of entry.stops) stop()
    }
    await this.network.destroy()
    await this.store.close()
  }
}
