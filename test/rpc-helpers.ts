/** Helpers for tests that talk to an RPCServer: servers and clients closed when the test ends, raw sockets. */
import type { TestContext } from 'node:test'
import WebSocket from 'ws'
import { type ConnectOptions, RPCClient, RPCServer, type RPCServerOptions, type VM } from '../src/index.js'

/** A server on 127.0.0.1 with `vms` mounted; closed (after its clients) when the test ends. */
export async function serve(t: TestContext, mounts: Record<string, VM>, options: RPCServerOptions = {}): Promise<RPCServer> {
  const server = new RPCServer(options)
  for (const [path, vm] of Object.entries(mounts)) server.mount(path, vm)
  await server.listen(0)
  t.after(() => server.close())
  return server
}

export async function connect(t: TestContext, url: string, user?: string | ConnectOptions): Promise<RPCClient> {
  const client = new RPCClient()
  await client.connect(url, user === undefined ? {} : typeof user === 'string' ? { user } : user)
  t.after(() => client.close())
  return client
}

/** A raw WebSocket that has shaken hands, for sending frames RPCClient never would. */
export async function rawSocket(t: TestContext, url: string): Promise<{ ws: WebSocket; next: () => Promise<Record<string, unknown>> }> {
  const ws = new WebSocket(url)
  t.after(() => ws.terminate())
  const queue: Record<string, unknown>[] = []
  const waiters: ((m: Record<string, unknown>) => void)[] = []
  ws.on('message', (data: WebSocket.RawData) => {
    const message = JSON.parse(data.toString()) as Record<string, unknown>
    const waiter = waiters.shift()
    if (waiter) waiter(message)
    else queue.push(message)
  })
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  const next = () => {
    const queued = queue.shift()
    return queued ? Promise.resolve(queued) : new Promise<Record<string, unknown>>((resolve) => waiters.push(resolve))
  }
  return { ws, next }
}
