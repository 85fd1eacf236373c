/**
 * The client's connection to a host, as RPCClient uses it: a WebSocket given (ConnectOptions.WebSocket)
 * or found, or, for a hyper:// URL, a channel on a Hyperswarm connection. Node's come from
 * node-transport.ts (the `ws` package, as LibVMS has always connected, and Hyperswarm), loaded through
 * an import a browser bundle does not follow; elsewhere the runtime's own WebSocket is used.
 */
import { StateError } from '../errors.js'
import type { SwarmSetting } from '../ledger/remote-source.js'

/** Text as a socket hands it over: a string, or bytes that say what they hold (a Node Buffer). */
export interface SocketText {
  toString(): string
}

/** The events of a ClientSocket and their arguments. */
export interface SocketEvents {
  open: []
  message: [data: SocketText]
  close: [code: number, reason: SocketText]
  error: [err: Error]
  /** The server answered the upgrade with an HTTP status instead (Node: its status line and the start of its body). */
  refused: [status: string, why: string]
}

/** A connection as the client drives it: ws's WebSocket, a swarm channel, or a runtime's WebSocket wrapped. */
export interface ClientSocket {
  readonly readyState: number
  send(text: string, done?: (err?: Error) => void): void
  close(code?: number, reason?: string): void
  terminate(): void
  on<E extends keyof SocketEvents>(event: E, listener: (...args: SocketEvents[E]) => void): unknown
  once<E extends keyof SocketEvents>(event: E, listener: (...args: SocketEvents[E]) => void): unknown
}

/** A WebSocket as browsers (and Node 22, Deno, Bun) have it. */
export interface StandardWebSocket {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  // The event's type differs between runtimes (and ws): it is read as a StandardSocketEvent.
  // biome-ignore lint/suspicious/noExplicitAny: any runtime's event type
  addEventListener(type: string, listener: (event: any) => void, options?: { once?: boolean }): void
}

interface StandardSocketEvent {
  data?: unknown
  code?: number
  reason?: string
  message?: string
}

/** The class of a StandardWebSocket: `globalThis.WebSocket` in a browser. */
export type WebSocketClass = new (url: string) => StandardWebSocket

/** What node-transport.ts provides. */
export interface NodeTransport {
  /** A ws WebSocket to `url`. */
  openWebSocket(url: string): ClientSocket
  /** A channel to a host of the call log `url` (hyper://<key>) found on the DHT. */
  dialByKey(url: string, swarm: SwarmSetting): ClientSocket
}

/** Opens the connection to a URL the client has checked. */
export type SocketOpener = (url: string) => ClientSocket

// Held in a variable so that a bundle for browsers leaves the import alone (and Node's modules out).
const NODE_TRANSPORT = './node-transport.js'
let nodeTransport: Promise<NodeTransport> | null = null

function inNode(): boolean {
  return typeof (globalThis as { process?: { versions?: { node?: unknown } } }).process?.versions?.node === 'string'
}

/**
 * How this connection is opened: in Node, with ws (or by key, on the DHT), unless a WebSocket class
 * is given; elsewhere with the given or the runtime's WebSocket. Never throws for what it cannot do:
 * the opener does, once the client has checked its options.
 */
export async function socketOpener(byKey: boolean, options: { WebSocket?: WebSocketClass; swarm?: SwarmSetting }): Promise<SocketOpener> {
  const given = options.WebSocket
  let node: NodeTransport | null = null
  if (inNode() && (byKey || given === undefined)) {
    nodeTransport ??= import(NODE_TRANSPORT)
    node = await nodeTransport
  }
  if (byKey) {
    if (node) return (url) => node.dialByKey(url, options.swarm ?? true)
    return (url) => {
      throw new StateError(`connecting by key (${url}) needs Node and the DHT; connect to a host's ws:// or wss:// URL instead`)
    }
  }
  if (given !== undefined) return (url) => new StandardSocket(new given(url))
  if (node) return (url) => node.openWebSocket(url)
  const found = (globalThis as { WebSocket?: WebSocketClass }).WebSocket
  if (found) return (url) => new StandardSocket(new found(url))
  return () => {
    throw new StateError('this runtime has no WebSocket: give one, connect(url, {WebSocket})')
  }
}

/** A StandardWebSocket driven as a ClientSocket. */
class StandardSocket implements ClientSocket {
  constructor(private readonly socket: StandardWebSocket) {}

  get readyState(): number {
    return this.socket.readyState
  }

  send(text: string, done?: (err?: Error) => void): void {
    this.socket.send(text)
    done?.()
  }

  close(code?: number, reason?: string): void {
    this.socket.close(code, reason)
  }

  /** A standard WebSocket has no abrupt end: it is closed (its 'close' event follows). */
  terminate(): void {
    this.socket.close()
  }

  on<E extends keyof SocketEvents>(event: E, listener: (...args: SocketEvents[E]) => void): this {
    this.listen(event, listener, false)
    return this
  }

  once<E extends keyof SocketEvents>(event: E, listener: (...args: SocketEvents[E]) => void): this {
    this.listen(event, listener, true)
    return this
  }

  private listen<E extends keyof SocketEvents>(event: E, listener: (...args: SocketEvents[E]) => void, once: boolean): void {
    // A standard WebSocket does not say why a server refused it: that is an 'error', then a 'close'.
    if (event === 'refused') return
    const call = listener as (...args: unknown[]) => void
    this.socket.addEventListener(
      event,
      (e: StandardSocketEvent) => {
        if (event === 'message') call(String(e.data))
        else if (event === 'close') call(e.code ?? 1005, e.reason ?? '')
        else if (event === 'error') call(new Error(e.message ?? 'the WebSocket failed'))
        else call()
      },
      { once },
    )
  }
}
