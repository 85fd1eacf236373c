/**
 * Which hosts serve which keys, as learned from RPC handshakes in this process: after
 * `client.connect(url)`, fetching the call log or files archive it advertised needs no other
 * argument.
 */
const hostsByKey = new Map<string, Set<string>>()

export function rememberHost(keyHex: string, rpcUrl: string): void {
  let hosts = hostsByKey.get(keyHex)
  if (!hosts) {
    hosts = new Set()
    hostsByKey.set(keyHex, hosts)
  }
  hosts.add(rpcUrl)
}

export function knownHosts(keyHex: string): string[] {
  return [...(hostsByKey.get(keyHex) ?? [])]
}
