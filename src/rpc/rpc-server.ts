/**
 * RPCServer: serves mounted VMs to RPCClients, JSON-RPC 2.0 over WebSocket, several VMs on one port
 * each at its own path. Every refused input (malformed, oversized, unknown method, over a limit) is
 * answered with an error at the edge: it never reaches a VM and never enters a log.
 */
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { type AddressInfo, isIPv6 } from 'node:net'
import type { Duplex } from 'node:stream'
import type { WebSocket, WebSocketServer } from 'ws'
import { InvalidArgumentError, ListenError, StateError } from '../errors.js'
import { parseKeyUrl } from '../ledger/keys.js'
import { answerReplication, loadWs, REPLICATION_PROTOCOL } from '../net/replication.js'
import { SwarmNetwork, type SwarmSetting, swarmOptionsOf } from '../net/swarm.js'
import { ChannelSocket } from '../net/swarm-rpc.js'
import { CLOSE_CODES, closeReason, type MessageSocket } from './protocol.js'
import { Mount, type RPCBackend, RPCConnection } from './rpc-connection.js'

export interface RPCServerOptions {
  /**
   * Open connections across all mounts (default 1000). When full, a new connection takes the place of
   * the RPC connection idle the longest, if one has been idle for handshakeTimeoutMs or more.
   */
  maxConnections?: number
  /**
   * Open WebSocket connections from one remote address (default 128; an IPv6 address counts by its
   * /64). Loopback addresses count like any other. Swarm channels are not counted here.
   */
  maxConnectionsPerAddress?: number
  /**
   * How long a connection has, from the TCP connection on, to upgrade to WebSocket and send
   * `rpc.handshake` (default 10 s); then it is closed (1008, with the reason). Swarm channels: from
   * the channel's opening. Replication connections have replicationHandshakeMs after the upgrade.
   */
  handshakeTimeoutMs?: number
  /**
   * How long an RPC connection may sit idle — shaken hands, no call of it queued or running, none
   * sent or answered since — before it is closed (1001, with the reason). Default 5 min; 0: never.
   * Frames refused at the edge do not count as calls. Replication connections are never idle-closed.
   */
  idleTimeoutMs?: number
  /**
   * Which web pages may connect, by the WebSocket's Origin header: `'*'` (any), or a list of origins
   * (`https://app.example`), which then applies to every mounted VM. By default (undefined) a page of
   * any origin may connect to a production-mode VM (it signs each call with its own key) and none to
   * a debug-mode VM (caller ids there are taken on trust). A connection without an Origin header
   * (Node clients, the CLI, swarm channels) is always allowed. Refused: HTTP 403 with the reason.
   */
  allowOrigins?: readonly string[] | '*'
  /** Largest request frame in bytes (default 4 MiB). */
  maxMessageBytes?: number
  /**
   * Calls waiting to run, per mounted VM (default 1000), shared among connections: each connection's
   * calls run in the order they came and connections take turns; when the queue is full, a call takes
   * the place of the newest waiting call of the connection holding the most (if it holds two more than
   * the caller's), which is refused with ERR_QUEUE_FULL; else the new call is refused. See docs/api.md,
   * "Fair queue".
   */
  maxQueuedCalls?: number
  /**
   * Production mode: how many of a connection's signed calls may fail the caller check (a signature
   * that does not verify; a payload for another VM, method, arguments or connection; a replayed
   * counter) before it is closed (1008, with the reason). Each costs the host at most one signature
   * check. Default 16; 0: no limit. See docs/api.md, "Bad signatures".
   */
  maxBadSignatures?: number
  /** How long close() waits for calls in flight to be answered (default 30 s). */
  closeTimeoutMs?: number
  /**
   * Also publish every mounted VM's call log and files archive on Hyperswarm (the DHT), from
   * listen() on: `true`, or `{bootstrap, onStatus}`. Off by default (see docs/api.md, Hyperswarm).
   */
  swarm?: SwarmSetting
  /**
   * How long a replication connection may stay silent after the host started it as the initiator
   * (default 10 s; the host waits a second for the client to start first); then it is closed with the
   * reason.
   */
  replicationHandshakeMs?: number
}

export interface ListenOptions {
  port?: number
  /** Defaults to 127.0.0.1: serving beyond this machine is a decision to make explicitly. */
  host?: string
}

/**
 * How long the host waits for a replicating client to speak first before it starts as the initiator
 * itself (the client then being a responder). A client that initiates sends its first frame as soon
 * as the socket opens.
 */
const REPLICATION_ROLE_WAIT_MS = 1000

/** One connection's place in the server's counts; released once, on close or when evicted. */
interface Slot {
  /** The remote address it counts against (null: a swarm channel, counted only in the total). */
  readonly address: string | null
  released: boolean
}

/** What the per-address cap counts a remote address as: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64). */
export function addressKey(address: string | undefined): string {
  if (!address) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]
  if (!isIPv6(address)) return address
  // Expand '::' to get the first four groups.
  const [head, tail] = address.split('%')[0].toLowerCase().split('::')
  const left = head ? head.split(':') : []
  const right = tail === undefined ? [] : tail ? tail.split(':') : []
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`
}

/** An origin as browsers send it (`scheme://host[:port]`, lowercase, default port left out), or 'null'. */
function normalizeOrigin(origin: string): string | null {
  if (origin === 'null') return 'null'
  try {
    const parsed = new URL(origin)
    return parsed.origin === 'null' ? null : parsed.origin
  } catch {
    return null
  }
}

/**
 * Resolves after the event loop has polled its sockets once more: two check phases, with a poll phase
 * between them, so data already received on them has been read and handled.
 */
async function framesRead(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/**
 * ws closes a connection whose frame it cannot read — one over its read limit (1009), or one that
 * breaks the WebSocket protocol (1002) — with a code and no reason. Every close this server makes
 * says why, so those get a reason too.
 */
function explainCloses(ws: WebSocket, readLimitBytes: number): void {
  const close = ws.close.bind(ws)
  ws.close = (code?: number, reason?: string | Buffer) => {
    if (reason === undefined && code === CLOSE_CODES.TOO_BIG) {
      reason = `a frame was over ${readLimitBytes} bytes, the most this server reads (maxMessageBytes is the request limit)`
    } else if (reason === undefined && code === CLOSE_CODES.PROTOCOL_ERROR) {
      reason = 'a frame broke the WebSocket protocol'
    }
    close(code, reason)
  }
}

/** `/a/b/` → `/a/b`; the root stays `/`. */
function normalizeMountPath(path: string): string {
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new InvalidArgumentError(`A mount path must start with /, got ${JSON.stringify(path)}`)
  }
  const trimmed = path.replace(/\/+$/, '')
  return trimmed === '' ? '/' : trimmed
}

/** Why a server cannot listen at `host`:`port`, said so the user knows what to change. */
function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  const why: Record<string, string> = {
    EADDRINUSE: `port ${port} on ${host} is in use: give another port (0 picks a free one)`,
    EACCES: `port ${port} on ${host} needs privileges this process lacks: give a port above 1023`,
    EADDRNOTAVAIL: `${host} is not an address of this machine: give one it has (127.0.0.1 by default)`,
    ENOTFOUND: `${host} does not resolve to an address: give an IP address or a name this machine resolves`,
    EAI_AGAIN: `${host} could not be resolved: give an IP address`,
  }
  const message = err.code ? why[err.code] : undefined
  return message ? new ListenError(message, { cause: err }) : err
}

export class RPCServer extends EventEmitter {
  readonly maxConnections: number
  readonly maxMessageBytes: number
  readonly maxQueuedCalls: number
  readonly closeTimeoutMs: number
  readonly replicationHandshakeMs: number
  readonly maxConnectionsPerAddress: number
  readonly handshakeTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly maxBadSignatures: number
  /** '*', the allowed origins (normalized), or null: the default (production-mode VMs only). */
  readonly allowOrigins: '*' | ReadonlySet<string> | null
  private readonly perAddress = new Map<string, number>()
  /** RPC connections and their slots (those are what a full server may evict). */
  private readonly slots = new Map<RPCConnection, Slot>()
  /** TCP connections not upgraded yet: destroyed at the handshake deadline; when each was accepted. */
  private readonly pending = new WeakMap<Duplex, { acceptedAt: number; timer: NodeJS.Timeout }>()
  private readonly mounts = new Map<string, Mount>()
  /** Paths a VM will be mounted at soon, and what to answer meanwhile (reserve()). */
  private readonly reserved = new Map<string, string>()
  /** Paths whose VM is gone for good (retire): the reason, answered with HTTP 410. */
  private readonly retired = new Map<string, string>()
  /** Made by listen() (the ws package is loaded only by a process that serves). */
  private wss: WebSocketServer | null = null
  private http: Server | null = null
  private connectionCount = 0
  private closing = false
  private readonly swarmOptions: ReturnType<typeof swarmOptionsOf>
  private network: SwarmNetwork | null = null
  private readonly announcements = new Set<Promise<void>>()

  constructor(options: RPCServerOptions = {}) {
    super()
    this.maxConnections = options.maxConnections ?? 1000
    this.maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024
    this.closeTimeoutMs = options.closeTimeoutMs ?? 30_000
    this.replicationHandshakeMs = options.replicationHandshakeMs ?? 10_000
    const positive = (name: string, value: number | undefined, fallback: number, zero = false): number => {
      if (value === undefined) return fallback
      if (typeof value !== 'number' || Number.isNaN(value) || value < (zero ? 0 : 1)) {
        throw new InvalidArgumentError(`RPCServer({${name}}) must be a number of at least ${zero ? 0 : 1}, got ${String(value)}`)
      }
      return value
    }
    this.maxConnectionsPerAddress = positive('maxConnectionsPerAddress', options.maxConnectionsPerAddress, 128)
    this.handshakeTimeoutMs = positive('handshakeTimeoutMs', options.handshakeTimeoutMs, 10_000)
    this.idleTimeoutMs = positive('idleTimeoutMs', options.idleTimeoutMs, 300_000, true)
    this.maxQueuedCalls = positive('maxQueuedCalls', options.maxQueuedCalls, 1000)
    this.maxBadSignatures = positive('maxBadSignatures', options.maxBadSignatures, 16, true)
    const origins = options.allowOrigins
    if (origins === undefined) this.allowOrigins = null
    else if (origins === '*' || (Array.isArray(origins) && origins.includes('*'))) this.allowOrigins = '*'
    else if (Array.isArray(origins)) {
      this.allowOrigins = new Set(
        origins.map((origin) => {
          const normalized = typeof origin === 'string' ? normalizeOrigin(origin) : null
          if (normalized === null) {
            throw new InvalidArgumentError(
              `RPCServer({allowOrigins}): ${JSON.stringify(origin)} is not an origin: give scheme://host[:port] (e.g. https://app.example), 'null', or '*' alone`,
            )
          }
          return normalized
        }),
      )
    } else {
      throw new InvalidArgumentError("RPCServer({allowOrigins}) must be '*' or an array of origins")
    }
    this.swarmOptions = swarmOptionsOf(options.swarm)
  }

  /**
   * Until a VM is mounted at `path`, answers connections to it with HTTP 503 and `reason` (e.g. that
   * the VM there is resuming), rather than 404; call again to change the reason.
   */
  reserve(path: string, reason: string): void {
    this.reserved.set(normalizeMountPath(path), reason)
  }

  /**
   * Says that the VM once served at `path` is gone for good (a factory's VM shut down): connections
   * to it are answered HTTP 410 Gone with `reason` (where it is still audited), rather than 404.
   */
  retire(path: string, reason: string): void {
    this.retired.set(normalizeMountPath(path), reason)
  }

  /** Serves `vm` at `path` (before or after listen). */
  mount(path: string, vm: RPCBackend): void {
    const normalized = normalizeMountPath(path)
    if (this.mounts.has(normalized)) throw new InvalidArgumentError(`${normalized} is already mounted; unmount it first`)
    this.reserved.delete(normalized)
    this.retired.delete(normalized)
    const mount = new Mount(normalized, vm)
    this.mounts.set(normalized, mount)
    if (this.network) this.publish(mount, this.network)
  }

  /**
   * With the swarm option: resolves once every mounted VM's cores are announced on the DHT (they
   * are found by URL from then on). Rejects if an announcement failed.
   */
  async announced(): Promise<void> {
    while (this.announcements.size > 0) await Promise.all([...this.announcements])
  }

  /** Serves the mount's cores to swarm peers and announces its call log and files archive. */
  private publish(mount: Mount, network: SwarmNetwork): void {
    const backend = mount.backend
    const keys = [parseKeyUrl(backend.callLog.url), parseKeyUrl(backend.filesArchive.url)]
    const callLogKey = keys[0]
    const stopServing = network.serve((socket) => {
      backend.replicate(socket)
      // The same connection carries RPC: a channel for this VM, answered like a WebSocket connection.
      ChannelSocket.answer(socket, callLogKey, (channel) => {
        if (this.closing || mount.closing) channel.close(CLOSE_CODES.GOING_AWAY, 'the VM is no longer served here')
        else this.accept(channel, mount)
      })
    })
    mount.unpublish = async () => {
      stopServing()
      await Promise.all(keys.map((key) => network.leave(key)))
    }
    const announcing = Promise.all(keys.map((key) => network.announce(key))).then(() => {})
    this.announcements.add(announcing)
    announcing.then(
      () => this.announcements.delete(announcing),
      () => {},
    )
  }

  /** Stops serving `path`: calls in flight are answered, then its connections close. */
  async unmount(path: string): Promise<void> {
    const normalized = normalizeMountPath(path)
    const mount = this.mounts.get(normalized)
    if (!mount) return
    this.mounts.delete(normalized)
    await this.closeMount(mount, `${normalized} was unmounted`)
  }

  get port(): number | null {
    const address = this.http?.address()
    return address && typeof address === 'object' ? (address as AddressInfo).port : null
  }

  /** ws://host:port, once listening. */
  get url(): string | null {
    const address = this.http?.address() as AddressInfo | null | undefined
    if (!address || typeof address !== 'object') return null
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
    return `ws://${host}:${address.port}`
  }

  /** Listens (127.0.0.1 and a free port by default); resolves with where: `{url, port}`. */
  async listen(portOrOptions: number | ListenOptions = {}): Promise<{ url: string; port: number }> {
    if (this.http) throw new StateError('the server is already listening')
    const options = typeof portOrOptions === 'number' ? { port: portOrOptions } : portOrOptions
    const { WebSocketServer } = await loadWs()
    // ws closes a connection whose frame exceeds maxPayload; frames up to about twice the limit are read
    // and refused with a JSON-RPC error instead, so a client learns the limit and stays connected.
    // UTF-8 is checked per frame by the connection, which answers a bad one instead of dropping the socket.
    this.wss ??= new WebSocketServer({
      noServer: true,
      maxPayload: this.maxMessageBytes * 2 + 65536,
      perMessageDeflate: false,
      skipUTF8Validation: true,
    })
    const http = createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' })
      res.end('LibVMS serves VMs over WebSocket: connect with RPCClient (ws://…)\n')
    })
    // The handshake deadline starts with the TCP connection: one that never upgrades (never sends a
    // byte, or trickles its headers) is destroyed at it; an upgraded one has what is left of it.
    http.on('connection', (socket: Duplex) => {
      const timer = setTimeout(() => {
        this.pending.delete(socket)
        socket.destroy()
      }, this.handshakeTimeoutMs)
      timer.unref()
      this.pending.set(socket, { acceptedAt: performance.now(), timer })
      socket.once('close', () => clearTimeout(timer))
    })
    http.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head))
    const host = options.host ?? '127.0.0.1'
    const port = options.port ?? 0
    await new Promise<void>((resolve, reject) => {
      http.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, host, port)))
      http.listen(port, host, () => {
        http.removeAllListeners('error')
        resolve()
      })
    })
    this.http = http
    if (this.swarmOptions) {
      const network = await SwarmNetwork.create(this.swarmOptions)
      this.network = network
      for (const mount of this.mounts.values()) this.publish(mount, network)
    }
    return { url: this.url as string, port: this.port as number }
  }

  /**
   * Stops taking connections and calls; calls in flight are answered (and logged) before their
   * connections close. Mounted VMs are not closed: they belong to the caller.
   */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    await Promise.all([...this.mounts.values()].map((m) => this.closeMount(m, 'the server is closing')))
    this.mounts.clear()
    const http = this.http
    this.http = null
    if (http) await new Promise<void>((resolve) => http.close(() => resolve()))
    this.wss?.close()
    await this.network?.destroy()
    this.network = null
  }

  private async closeMount(mount: Mount, reason: string): Promise<void> {
    mount.closing = true
    await mount.unpublish?.().catch(() => {})
    await mount.drain(this.closeTimeoutMs)
    // Frames that arrived meanwhile are read before the close frame goes out: each call among them is
    // refused (ERR_UNAVAILABLE, never run) rather than left to the client as ERR_CONNECTION_CLOSED.
    await framesRead()
    await Promise.all([...mount.connections].map((c) => c.close(CLOSE_CODES.GOING_AWAY, reason)))
    for (const ws of mount.replications) ws.terminate()
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    let path: string
    try {
      path = normalizeMountPath(new URL(req.url ?? '/', 'http://localhost').pathname)
    } catch {
      path = ''
    }
    const pending = this.pending.get(socket)
    if (pending) {
      clearTimeout(pending.timer)
      this.pending.delete(socket)
    }
    const handshakeLeftMs = pending ? pending.acceptedAt + this.handshakeTimeoutMs - performance.now() : this.handshakeTimeoutMs
    const mount = this.mounts.get(path)
    if (this.closing || !mount || mount.closing) {
      const pending = !this.closing && !mount ? this.reserved.get(path) : undefined
      const gone = !this.closing && !mount && pending === undefined ? this.retired.get(path) : undefined
      const status = this.closing || pending !== undefined ? '503 Service Unavailable' : gone !== undefined ? '410 Gone' : '404 Not Found'
      const body = this.closing ? 'the server is closing\n' : `${pending ?? gone ?? `no VM is mounted at ${path || req.url}`}\n`
      socket.end(
        `HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      )
      return
    }
    const origin = req.headers.origin
    const refused = origin === undefined ? null : this.originRefusal(origin, mount)
    if (refused !== null) {
      const body = `${refused}\n`
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      )
      return
    }
    const wss = this.wss as WebSocketServer // made by listen(), which is what hears upgrades
    const address = addressKey(req.socket.remoteAddress)
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      explainCloses(ws, wss.options.maxPayload ?? 0)
      const admitted = this.admit(address)
      if (typeof admitted === 'string') {
        ws.close(CLOSE_CODES.TRY_AGAIN_LATER, admitted)
        return
      }
      if (ws.protocol === REPLICATION_PROTOCOL) {
        // An auditor replicating the VM's cores over the same port, as either side (answerReplication).
        const replication = answerReplication(ws, (isInitiator) => mount.backend.replicate(isInitiator), REPLICATION_ROLE_WAIT_MS)
        mount.replications.add(ws)
        // A connection on which nothing at all arrives, even after the host started, is not replicating.
        const silent = setTimeout(() => {
          ws.close(
            CLOSE_CODES.POLICY,
            // (A close reason holds at most 123 bytes.)
            `replication: nothing received in ${REPLICATION_ROLE_WAIT_MS + this.replicationHandshakeMs} ms; is the client a Corestore replicating?`,
          )
        }, REPLICATION_ROLE_WAIT_MS + this.replicationHandshakeMs)
        ws.once('message', () => clearTimeout(silent))
        ws.once('close', () => {
          clearTimeout(silent)
          this.release(admitted)
          mount.replications.delete(ws)
          replication.stop()
        })
        return
      }
      this.accept(ws as unknown as MessageSocket, mount, admitted, handshakeLeftMs)
    })
  }

  /** Why a page of `origin` may not connect to `mount`, or null if it may. */
  private originRefusal(origin: string, mount: Mount): string | null {
    if (this.allowOrigins === '*') return null
    const normalized = normalizeOrigin(origin) ?? origin
    const shown = JSON.stringify(origin.slice(0, 200))
    if (this.allowOrigins === null) {
      if (mount.backend.auth === 'production') return null
      return `a web page (origin ${shown}) may not connect to this debug-mode VM: its caller ids are taken on trust, so any page could call it as anyone. To allow the page: RPCServer({allowOrigins: [${shown}]}), nodevms exec --allow-origin ${normalized}`
    }
    if (this.allowOrigins.has(normalized)) return null
    return `a web page (origin ${shown}) may not connect: this server takes pages of the origins it lists only (allowOrigins, nodevms exec --allow-origin); add ${normalized} to allow it`
  }

  /**
   * Takes a connection slot for `address` (null: a swarm channel), or says why not (a close reason
   * naming the limit and its option). When the server is full, the RPC connection idle the longest
   * makes room if it has been idle for at least handshakeTimeoutMs.
   */
  private admit(address: string | null): Slot | string {
    if (address !== null && (this.perAddress.get(address) ?? 0) >= this.maxConnectionsPerAddress) {
      return closeReason(
        `too many connections from one address: at most ${this.maxConnectionsPerAddress} (maxConnectionsPerAddress, --max-connections-per-address)`,
      )
    }
    if (this.connectionCount >= this.maxConnections && !this.evictIdle()) {
      return closeReason(`too many connections: this server takes at most ${this.maxConnections} (maxConnections, --max-connections)`)
    }
    this.connectionCount++
    if (address !== null) this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1)
    return { address, released: false }
  }

  private release(slot: Slot): void {
    if (slot.released) return
    slot.released = true
    this.connectionCount--
    if (slot.address === null) return
    const left = (this.perAddress.get(slot.address) ?? 1) - 1
    if (left > 0) this.perAddress.set(slot.address, left)
    else this.perAddress.delete(slot.address)
  }

  /** Closes the RPC connection idle the longest, if it has been idle for handshakeTimeoutMs or more; says whether it did. */
  private evictIdle(): boolean {
    let oldest: RPCConnection | null = null
    let oldestIdle = this.handshakeTimeoutMs
    for (const connection of this.slots.keys()) {
      const idle = connection.idleMs()
      if (idle !== null && idle >= oldestIdle) {
        oldest = connection
        oldestIdle = idle
      }
    }
    const slot = oldest && this.slots.get(oldest)
    if (!oldest || !slot) return false
    this.slots.delete(oldest)
    this.release(slot)
    void oldest.close(
      CLOSE_CODES.GOING_AWAY,
      closeReason(
        `idle for ${Math.round(oldestIdle)} ms while the server was full: closed to make room (maxConnections, --max-connections)`,
      ),
    )
    return true
  }

  /**
   * An RPC connection to `mount`, over a WebSocket (admitted already: its `slot`) or a swarm channel
   * (admitted here, with the whole handshake deadline from now).
   */
  private accept(socket: MessageSocket, mount: Mount, slot?: Slot, handshakeLeftMs = this.handshakeTimeoutMs): void {
    if (!slot) {
      const admitted = this.admit(null)
      if (typeof admitted === 'string') {
        socket.close(CLOSE_CODES.TRY_AGAIN_LATER, admitted)
        return
      }
      slot = admitted
    }
    const taken = slot
    const connection = new RPCConnection(socket, mount, this, handshakeLeftMs)
    mount.connections.add(connection)
    this.slots.set(connection, taken)
    socket.once('close', () => {
      this.release(taken)
      this.slots.delete(connection)
      mount.connections.delete(connection)
    })
  }
}
