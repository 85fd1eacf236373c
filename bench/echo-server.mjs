/**
 * Child process of rpc.bench.ts: the "bare echo" baseline. A plain `ws` WebSocketServer on 127.0.0.1
 * (port 0) that answers each JSON-RPC request {"jsonrpc":"2.0","id":N,...} with
 * {"jsonrpc":"2.0","id":N,"result":1}: the cost of WebSocket + JSON alone, no VM and no log.
 * Prints one JSON line to stdout: {url, pid}.
 *
 * It ends on SIGTERM or SIGINT (clients terminated, server closed, exit 0), when its stdin closes
 * (the parent is gone), or after MAX_LIFETIME_MS at the latest.
 *
 * Run: node bench/echo-server.mjs
 */
import { WebSocketServer } from 'ws'

const MAX_LIFETIME_MS = 10 * 60_000

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })

wss.on('connection', (ws) => {
  ws.on('message', (data) => {
    let id
    try {
      id = JSON.parse(data.toString()).id
    } catch {
      return
    }
    ws.send(`{"jsonrpc":"2.0","id":${JSON.stringify(id ?? null)},"result":1}`)
  })
  ws.on('error', () => {})
})

wss.on('listening', () => {
  const { port } = wss.address()
  process.stdout.write(`${JSON.stringify({ url: `ws://127.0.0.1:${port}`, pid: process.pid })}\n`)
})

let stopped = false
function stop() {
  if (stopped) return
  stopped = true
  for (const ws of wss.clients) ws.terminate()
  wss.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}

process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.stdin.on('end', stop)
process.stdin.on('error', stop)
process.stdin.resume()
setTimeout(stop, MAX_LIFETIME_MS).unref()
