/**
 * The server the RPC fuzz tests run against (the VMs' script, its methods, its size limits) and the
 * WebSocket connections ("sessions") the fuzzer sends its frames on, with the state the oracle reads.
 */
import WebSocket from 'ws'

export const MAX_MESSAGE_BYTES = 64 * 1024
/** ws's maxPayload as RPCServer sets it: a frame above this closes the connection (1009). */
export const CLOSE_ABOVE = MAX_MESSAGE_BYTES * 2 + 65536

export const SCRIPT = `
let n = 0
exports.init = () => {}
exports.echo = (...args) => args
exports.count = () => ++n
`
export const METHODS = ['echo', 'count']
export const HANDSHAKE = 'rpc.handshake'

// ---- connections ----

export type Mode = 'debug' | 'production'

export interface Session {
  mode: Mode
  ws: WebSocket
  messages: { text: string; binary: boolean }[]
  closed: { code: number; reason: string } | null
  handshaken: boolean
  /** Production mode: the public key this connection shook hands with. */
  publicKey: string | null
  nonce: string | null
  counter: number
  /** Production mode: the params of the last honestly signed call sent on this connection, and its counter. */
  lastSigned: string | null
  lastCounter: number
  wake: (() => void) | null
}

export async function waitFor(session: Session, done: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (!done()) {
    const left = until - Date.now()
    if (left <= 0) return false
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left)
      session.wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    session.wake = null
  }
  return true
}

export async function openSession(url: string, mode: Mode, sockets: Set<WebSocket>): Promise<Session> {
  const ws = new WebSocket(url, { perMessageDeflate: false })
  sockets.add(ws)
  const session: Session = {
    mode,
    ws,
    messages: [],
    closed: null,
    handshaken: false,
    publicKey: null,
    nonce: null,
    counter: 0,
    lastSigned: null,
    lastCounter: 0,
    wake: null,
  }
  ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
    session.messages.push({ text: data.toString(), binary: isBinary })
    session.wake?.()
  })
  ws.on('close', (code: number, reason: Buffer) => {
    session.closed = { code, reason: reason.toString() }
    sockets.delete(ws)
    session.wake?.()
  })
  ws.on('error', () => {
    // 'close' follows (e.g. writing the rest of an oversized frame after the server closed).
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`connecting to ${url} took more than 5 s`)), 5000)
    ws.once('open', () => {
      clearTimeout(timer)
      resolve()
    })
    ws.once('close', (code: number) => {
      clearTimeout(timer)
      reject(new Error(`${url} closed the connection (${code}) before it opened`))
    })
  })
  return session
}
