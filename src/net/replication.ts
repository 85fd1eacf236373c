/**
 * Hypercore replication over the host's WebSocket port. An auditor opens a WebSocket to a VM's RPC
 * URL with the replication subprotocol, and both sides run Corestore's replication protocol over it:
 * every block the auditor receives is checked against the host's signature. Only cores the auditor
 * asks for by key are sent.
 */
import type { Duplex } from 'node:stream'
import type Corestore from 'corestore'
import WebSocket, { createWebSocketStream } from 'ws'

export const REPLICATION_PROTOCOL = 'libvms-replication-1'

/** Joins a replication stream to `ws` (either side); ends when either ends. */
export function pipeReplication(ws: WebSocket, stream: Duplex): Duplex {
  const socket = createWebSocketStream(ws)
  socket.on('error', () => stream.destroy())
  stream.on('error', () => socket.destroy())
  socket.pipe(stream).pipe(socket)
  return stream
}

/** Dials a host's replication endpoint; resolves once the WebSocket is open. */
export function dialReplication(rpcUrl: string, store: Corestore): Promise<{ ws: WebSocket; stream: Duplex }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(rpcUrl, REPLICATION_PROTOCOL, { perMessageDeflate: false })
    ws.once('open', () => resolve({ ws, stream: pipeReplication(ws, store.replicate(true) as unknown as Duplex) }))
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate()
      reject(new Error(`HTTP ${res.statusCode}`))
    })
    ws.once('error', (err) => reject(err))
  })
}
