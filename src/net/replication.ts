/**
 * Hypercore replication over the host's WebSocket port. An auditor opens a WebSocket to a VM's RPC
 * URL with the replication subprotocol, and both sides run Corestore's replication protocol over it:
 * every block the auditor receives is checked against the host's signature. Only cores the auditor
 * asks for by key are sent. The auditor may take either side: the host takes the other.
 */
import type { Duplex } from 'node:stream'
import type Corestore from 'corestore'
import type WebSocket from 'ws'

export const REPLICATION_PROTOCOL = 'libvms-replication-1'

type WsModule = typeof import('ws')
let wsModule: WsModule | null = null

/** The ws package, loaded on first use: a process that only runs VMs never needs it (nor its memory). */
export async function loadWs(): Promise<WsModule> {
  wsModule ??= await import('ws')
  return wsModule
}

/** The ws package, once loadWs() has loaded it (every WebSocket here comes from it). */
function loadedWs(): WsModule {
  if (!wsModule) throw new Error('ws is not loaded yet: await loadWs() first')
  return wsModule
}

/** Joins a replication stream to `ws` (either side); ends when either ends. */
export function pipeReplication(ws: WebSocket, stream: Duplex): Duplex {
  const socket = loadedWs().createWebSocketStream(ws)
  socket.on('error', () => stream.destroy())
  stream.on('error', () => socket.destroy())
  socket.pipe(stream).pipe(socket)
  return stream
}

/**
 * The host's side of a replication connection, whichever side the client takes: a client that speaks
 * first (Corestore's `replicate(true)`) is answered as the responder; one still silent after
 * `roleWaitMs` is taken for a responder itself (`replicate(false)`), and the host starts as the
 * initiator. Frames that arrive while the host waits are kept for the stream it then starts.
 */
export function answerReplication(ws: WebSocket, replicate: (isInitiator: boolean) => Duplex, roleWaitMs: number): { stop(): void } {
  const socket = loadedWs().createWebSocketStream(ws)
  let stream: Duplex | null = null
  let stopped = false
  // From the start, not once a role is chosen: a frame that breaks the protocol (or is too large)
  // while the host waits makes the socket stream emit 'error', which unheard would end the process.
  socket.on('error', () => stream?.destroy())
  const start = (isInitiator: boolean) => {
    if (stream || stopped) return
    clearTimeout(wait)
    let started: Duplex
    try {
      started = replicate(isInitiator)
    } catch {
      // The VM's store is closing (say): nothing to replicate, and no exception out of a timer.
      socket.destroy()
      return
    }
    stream = started
    started.on('error', () => socket.destroy())
    socket.pipe(started).pipe(socket)
  }
  const wait = setTimeout(() => start(true), roleWaitMs)
  // ws hands each frame to the socket stream's listener first, so the frame is buffered for the stream started here.
  ws.once('message', () => start(false))
  return {
    stop() {
      stopped = true
      clearTimeout(wait)
      stream?.destroy()
      socket.destroy()
    },
  }
}

/** Dials a host's replication endpoint; resolves once the WebSocket is open. */
export async function dialReplication(rpcUrl: string, store: Corestore): Promise<{ ws: WebSocket; stream: Duplex }> {
  const { WebSocket } = await loadWs()
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
