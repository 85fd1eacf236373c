/**
 * The client's connections in Node (client/transport.ts loads this module there, and only there): a
 * WebSocket from the `ws` package, which says why a server refused the upgrade, and a channel to a
 * VM's host found on the DHT by its call log's key.
 */
import WebSocket from 'ws'
import { parseKeyUrl } from '../ledger/keys.js'
import type { SwarmSetting } from '../ledger/remote-source.js'
import { swarmOptionsOf } from '../net/swarm.js'
import { ChannelSocket } from '../net/swarm-rpc.js'
import type { ClientSocket } from './transport.js'

/** What is read of a refusing server's reason, and how long it is waited for. */
const MAX_REFUSAL_CHARS = 512
const REFUSAL_WAIT_MS = 2000

export function openWebSocket(url: string): ClientSocket {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  ws.once('unexpected-response', (_req, res) => {
    // The server's few words on why (a LibVMS host says what is mounted, or that a VM is resuming).
    const chunks: Buffer[] = []
    let length = 0
    let timer: NodeJS.Timeout | undefined
    const refuse = () => {
      clearTimeout(timer)
      const why = Buffer.concat(chunks).toString('utf8').trim().slice(0, MAX_REFUSAL_CHARS)
      ws.emit('refused', `HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim(), why)
      res.destroy()
    }
    timer = setTimeout(refuse, REFUSAL_WAIT_MS)
    res.on('data', (chunk: Buffer) => {
      if (length < MAX_REFUSAL_CHARS) chunks.push(chunk)
      length += chunk.length
    })
    res.once('end', refuse)
    res.once('error', refuse)
  })
  return ws as unknown as ClientSocket
}

export function dialByKey(url: string, swarm: SwarmSetting): ClientSocket {
  return ChannelSocket.dial(parseKeyUrl(url), swarmOptionsOf(swarm) ?? {}) as unknown as ClientSocket
}
