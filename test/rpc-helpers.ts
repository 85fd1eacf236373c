/** Helpers for tests that talk to an RPCServer: servers and clients closed when the test ends, raw sockets. */
import assert from 'node:assert/strict'
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

/** How long a test waits for something the server does on its own (a bound, not a measurement). */
export const BOUND_MS = 20_000

/** `promise`, or a rejection naming `what` if it has not settled within BOUND_MS. */
export async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${BOUND_MS} ms`)), BOUND_MS)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

export interface Closed {
  code: number
  reason: string
}

export interface Raw {
  ws: WebSocket
  opened: Promise<void>
  closed: Promise<Closed>
  /** Sends a request and resolves with the answer of that id (never, if it gets none). */
  request: (id: number, method: string, params?: unknown) => Promise<Record<string, unknown>>
}

/** A raw WebSocket (an `origin` header if given) that answers requests by id; terminated when the test ends. */
export function rawWs(t: TestContext, url: string, origin?: string): Raw {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...(origin ? { origin } : {}) })
  t.after(() => ws.terminate())
  ws.on('error', () => {})
  const answers = new Map<unknown, (m: Record<string, unknown>) => void>()
  ws.on('message', (data: WebSocket.RawData) => {
    const message = JSON.parse(data.toString()) as Record<string, unknown>
    answers.get(message.id)?.(message)
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => {
        body += chunk
      })
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, body })))
    })
  })
  opened.catch(() => {})
  const closed = new Promise<Closed>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  const request = (id: number, method: string, params?: unknown) =>
    new Promise<Record<string, unknown>>((resolve) => {
      answers.set(id, resolve)
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }))
    })
  return { ws, opened, closed, request }
}

/**
 * A raw WebSocket that has shaken hands: debug mode as `user` (a string), or with the handshake's
 * params (an object); `info` is the handshake's answer.
 */
export async function handshaken(
  t: TestContext,
  url: string,
  params: string | Record<string, unknown>,
): Promise<Raw & { info: Record<string, unknown> }> {
  const raw = rawWs(t, url)
  await raw.opened
  const answer = await raw.request(0, 'rpc.handshake', typeof params === 'string' ? { user: params } : params)
  assert.ok(answer.result, `handshake answered: ${JSON.stringify(answer)}`)
  return { ...raw, info: answer.result as Record<string, unknown> }
}
