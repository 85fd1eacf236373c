/**
 * The seam between the ledger and the network: CallLog.fetch and a DatArchive opened by URL need
 * cores that live on another host. The ledger only states what it needs (RemoteSource); net/
 * provides it, so the ledger never depends on sockets.
 *
 * net/remote-cores.ts provides it once, when the package is imported, and it cannot be replaced
 * afterwards: this is a link between layers made at load time, not state. Passing the source in
 * instead is not open to the public API: `CallLog.fetch(url)` must work with nothing but the URL
 * (the source document's audit example), CallLog and DatArchive are ledger classes (a VM's own log
 * and archive are instances of them too), and the ledger may not import net/ to name a default.
 * What does differ between two hosts or auditors in one process — which hosts serve which keys — is
 * not here but in the HostBook each passes (`{hosts}`).
 */
import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import type Hyperdrive from 'hyperdrive'
import { StateError } from '../errors.js'
import type { StallHandler } from './download.js'
import type { HostBook } from './host-book.js'
import type { LogEntry } from './log-entry.js'

export interface RemoteOptions {
  /** RPC URLs of hosts serving the key (ws://host:port/path); by default, the hosts `hosts` knows for it. */
  peers?: string[]
  /** Where to look the key's hosts up when `peers` is absent: the book RPCClients recorded into (default HostBook.shared). */
  hosts?: HostBook
  /** Where to keep the copy; a temp dir removed on close if absent. */
  dir?: string
  /** How long to wait for a host to answer, in ms (default 15,000; 60,000 when the DHT is used). */
  timeout?: number
  /**
   * Also look the key up on the DHT (Hyperswarm): `true`, or `{bootstrap, onStatus}`. Off by
   * default; peers found there and known hosts combine. See docs/api.md (Hyperswarm).
   */
  swarm?: SwarmSetting
}

export interface SwarmOptions {
  /** DHT bootstrap nodes, as "host:port" (or one comma-separated string); default LIBVMS_BOOTSTRAP. */
  bootstrap?: string[] | string
  /** Progress messages while looking for peers. */
  onStatus?: (message: string) => void
}

/** `true` for the defaults, options, or off (false / absent). */
export type SwarmSetting = boolean | SwarmOptions

/** Cores fetched from remote hosts, and a way to let go of them (connections, store, temp dir). */
export interface RemoteHandle<T> {
  value: T
  store: Corestore
  close(): Promise<void>
  /** Downloads of the value's cores consult this when they stall (see download.ts). */
  onStall?: StallHandler
}

export interface RemoteSource {
  /** A local copy of the call log with this key, every block downloaded and verified. */
  fetchLog(key: Buffer, options: RemoteOptions): Promise<RemoteHandle<Hypercore<LogEntry>>>
  /** A files archive with this key, replicating from its hosts (download() fetches everything). */
  openArchive(key: Buffer, options: RemoteOptions): Promise<RemoteHandle<Hyperdrive>>
}

/** Set once, by net/remote-cores.ts as it loads (see above). */
let source: RemoteSource | null = null

export function provideRemoteSource(remote: RemoteSource): void {
  if (source) throw new StateError('the network layer is already provided: it is set once, when the package loads')
  source = remote
}

export function remoteSource(): RemoteSource {
  if (!source) throw new StateError('fetching from other hosts needs the network layer: import it from the libvms package')
  return source
}
