/**
 * The seam between the ledger and the network: CallLog.fetch and a DatArchive opened by URL need
 * cores that live on another host. The ledger only states what it needs; net/ provides it (and
 * registers itself when the package is imported), so the ledger never depends on sockets.
 */
import type Corestore from 'corestore'
import type Hypercore from 'hypercore'
import type Hyperdrive from 'hyperdrive'
import { StateError } from '../errors.js'
import type { StallHandler } from './download.js'
import type { LogEntry } from './log-entry.js'

export interface RemoteOptions {
  /** RPC URLs of hosts serving the key (ws://host:port/path); by default, hosts an RPCClient connected to. */
  peers?: string[]
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

let source: RemoteSource | null = null

export function setRemoteSource(remote: RemoteSource): void {
  source = remote
}

export function remoteSource(): RemoteSource {
  if (!source) throw new StateError('fetching from other hosts needs the network layer: import it from the libvms package')
  return source
}
