/**
 * HostBook: which hosts serve which cores — the RPC URLs (ws://host:port/path) of hosts known to
 * replicate a call log or files archive, by the core's key. An RPCClient adds the host it connected
 * to for the cores its handshake advertised; CallLog.fetch, a DatArchive opened by URL and a Seeder
 * look hosts up here when not given `peers`. Each takes the book to use (`{hosts}`); by default,
 * `HostBook.shared`.
 *
 * `HostBook.shared` is the only data the package keeps for the whole process, and it is there on
 * purpose: the source document's audit example fetches with nothing but the URL the client was
 * given (`CallLog.fetch(client.backendInfo.callLogUrl)`), so what a connect learned must be found by
 * a fetch that is handed no object. Code that serves or audits for several parties in one process
 * gives each its own book, and then none sees the hosts another learned.
 */
import { parseKeyUrl, toHex } from './keys.js'

/** A core, as its key or as a URL naming it (hyper://, dat:// or the bare hex key). */
export type CoreName = Uint8Array | string

function hexOf(core: CoreName): string {
  return typeof core === 'string' ? toHex(parseKeyUrl(core)) : toHex(core)
}

export class HostBook {
  /** The book RPCClient, CallLog.fetch, DatArchive and Seeder use when given none. */
  static readonly shared = new HostBook()

  private readonly hostsByKey = new Map<string, Set<string>>()

  /** Notes that the host at `rpcUrl` serves `core`. */
  add(core: CoreName, rpcUrl: string): void {
    const key = hexOf(core)
    let hosts = this.hostsByKey.get(key)
    if (!hosts) {
      hosts = new Set()
      this.hostsByKey.set(key, hosts)
    }
    hosts.add(rpcUrl)
  }

  /** The RPC URLs of the hosts known to serve `core`, in the order they were added. */
  hostsOf(core: CoreName): string[] {
    return [...(this.hostsByKey.get(hexOf(core)) ?? [])]
  }

  /** Forgets every host of `core`, or with no argument everything. */
  forget(core?: CoreName): void {
    if (core === undefined) this.hostsByKey.clear()
    else this.hostsByKey.delete(hexOf(core))
  }
}
