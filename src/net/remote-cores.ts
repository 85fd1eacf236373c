/**
 * Local copies of cores that live on other hosts: the auditor's side of replication. A copy is a
 * Corestore (in the given dir, or a temp dir removed on close) connected to every host known to
 * serve the key (`peers`, or those its HostBook knows) and, when asked for, to the peers the DHT finds for it. Auditor copies refuse forks: a host that truncates and rewrites a log it already
 * served is reported, not silently followed.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Corestore from 'corestore'
import type Hypercore from 'hypercore'
import Hyperdrive from 'hyperdrive'
import { FetchError } from '../errors.js'
import { downloadAll, type StallHandler } from '../ledger/download.js'
import { HostBook } from '../ledger/host-book.js'
import { keyToUrl } from '../ledger/keys.js'
import type { LogEntry } from '../ledger/log-entry.js'
import { provideRemoteSource, type RemoteHandle, type RemoteOptions, type RemoteSource } from '../ledger/remote-source.js'
import { type Backoff, Peering } from './peering.js'
import { SwarmNetwork, swarmOptionsOf } from './swarm.js'

const DEFAULT_TIMEOUT_MS = 15_000
const DEFAULT_SWARM_TIMEOUT_MS = 60_000

interface Copy {
  store: Corestore
  peering: Peering
  timeoutMs: number
  close(): Promise<void>
}

/** The copy each fetched core or drive came with (to follow its hosts later: followHosts). */
const copies = new WeakMap<object, { copy: Copy; core: Hypercore }>()

export interface HostFollowing {
  /** A host's WebSocket closed (false), or it was dialled again (true). */
  onHost?: (host: string, connected: boolean) => void
  /** A connected peer says it is on another fork than the copy's (a claim: see peering.ts). */
  onOtherFork?: (fork: number) => void
}

/**
 * Keeps a fetched copy (a CallLog's core, a DatArchive's drive, as fetched here) connected to its
 * hosts until it is closed: a host that goes away is dialled again with `backoff` (Peering.follow).
 * False if `value` was not fetched here (a VM's own log or archive: nothing to follow).
 */
export function followHosts(value: object, backoff: Backoff, following: HostFollowing = {}): boolean {
  const fetched = copies.get(value)
  if (!fetched) return false
  fetched.copy.peering.follow(fetched.core, backoff, following.onOtherFork, following.onHost)
  return true
}

/** A fresh Corestore for a copy of `key`, connected to the known hosts and, if asked for, the DHT. */
async function openCopy(key: Buffer, options: RemoteOptions): Promise<Copy> {
  const url = keyToUrl(key)
  const swarm = swarmOptionsOf(options.swarm)
  const hosts = options.peers ?? (options.hosts ?? HostBook.shared).hostsOf(key)
  if (hosts.length === 0 && !swarm) {
    throw new FetchError(
      'ERR_NO_HOST',
      `no host is known for ${url}: connect an RPCClient to the VM first (recording into the same {hosts} book), pass {peers: ['ws://host:port/path']}, or look it up on the DHT with {swarm: true}`,
    )
  }
  const timeoutMs = options.timeout ?? (swarm ? DEFAULT_SWARM_TIMEOUT_MS : DEFAULT_TIMEOUT_MS)
  const ownedDir = options.dir ? null : await mkdtemp(join(tmpdir(), 'libvms-copy-'))
  const store = new Corestore(join(options.dir ?? (ownedDir as string), 'corestore'))
  await store.ready()
  const network = swarm ? await SwarmNetwork.create(swarm) : null
  network?.serve((socket) => store.replicate(socket))
  let peering: Peering | null = null
  const close = async () => {
    peering?.close()
    await network?.destroy()
    await store.close()
    if (ownedDir) await rm(ownedDir, { recursive: true, force: true })
  }
  try {
    peering = await Peering.connect(store, key, { hosts, network, timeoutMs })
  } catch (err) {
    await close()
    throw err
  }
  return { store, peering, timeoutMs, close }
}

/** The download stall policy of a copy: redial on the DHT while it may. */
function stallHandler(copy: Copy, what: string): StallHandler {
  return (stalledMs) => copy.peering.onStall(what, stalledMs)
}

const remoteCores: RemoteSource = {
  async fetchLog(key: Buffer, options: RemoteOptions): Promise<RemoteHandle<Hypercore<LogEntry>>> {
    const url = keyToUrl(key)
    const copy = await openCopy(key, options)
    try {
      const core = copy.store.get<LogEntry>({ key, valueEncoding: 'json', allowFork: false })
      await core.ready()
      await copy.peering.learnLength(core, url)
      if (core.length === 0) throw new FetchError('ERR_FETCH_TIMEOUT', `no host sent ${url}: the hosts do not have it`)
      const onStall = stallHandler(copy, url)
      await downloadAll(core, url, Math.min(copy.timeoutMs, DEFAULT_TIMEOUT_MS), onStall)
      copies.set(core, { copy, core })
      return { value: core, store: copy.store, close: copy.close, onStall }
    } catch (err) {
      await copy.close()
      throw err
    }
  },

  async openArchive(key: Buffer, options: RemoteOptions): Promise<RemoteHandle<Hyperdrive>> {
    const url = keyToUrl(key)
    const copy = await openCopy(key, options)
    try {
      const db = copy.store.get({ key, allowFork: false })
      await db.ready()
      await copy.peering.learnLength(db, url)
      // Open the blobs core first too, so it also refuses forks (Hyperdrive opens it by key later).
      const blobsKey = db.manifest ? Hyperdrive.getContentKey(db, key) : null
      if (blobsKey) await copy.store.get({ key: blobsKey, allowFork: false }).ready()
      const drive = new Hyperdrive(copy.store, key)
      await drive.ready()
      copies.set(drive, { copy, core: db })
      return { value: drive, store: copy.store, close: copy.close, onStall: stallHandler(copy, url) }
    } catch (err) {
      await copy.close()
      throw err
    }
  },
}

provideRemoteSource(remoteCores)
