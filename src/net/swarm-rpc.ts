/**
 * JSON-RPC over Hyperswarm: a VM reachable by its call log's key alone, with no address or port.
 *
 * A host that publishes a VM on the DHT (RPCServer {swarm}) opens, on every swarm connection beside
 * Hypercore's replication, a Protomux channel of protocol `libvms-rpc/1` whose id is the VM's call
 * log key. A client that looks the key up (RPCClient.connect('hyper://<key>')) opens the same
 * channel on the connections it gets; once both ends have opened it, each JSON-RPC message is one
 * channel message, as each is one text frame over WebSocket. The connection is Hyperswarm's own
 * (Noise-encrypted, authenticated by the peers' keys). ChannelSocket gives the channel the face of a
 * WebSocket, so RPC runs over either unchanged.
 */
import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import c from 'compact-encoding'
import Protomux, { type Channel, type Message } from 'protomux'
import type { SwarmOptions } from '../ledger/remote-source.js'
import { counted } from '../wording.js'
import { SwarmNetwork } from './swarm.js'

export const RPC_SWARM_PROTOCOL = 'libvms-rpc/1'

const CONNECTING = 0
const OPEN = 1
const CLOSED = 3

/**
 * How long a dial waits for the channel on a new connection before it drops the connections and dials
 * again (a DHT connection can open and carry nothing: left alone, it times out after about 13 s and
 * the swarm dials again only after that). Doubles with each silent round, up to SILENT_MAX_MS.
 */
const SILENT_FIRST_MS = 2000
const SILENT_MAX_MS = 16_000

/** A Protomux channel with the face of a WebSocket (the parts RPC uses). */
export class ChannelSocket extends EventEmitter {
  readyState = CONNECTING
  private text: Message<string> | null = null
  private closing: Message<string> | null = null
  private channel: Channel | null = null
  /** The code and reason the other end gave when it closed, if it did. */
  private closedWith: [number, string] = [1006, 'the connection closed']
  private release: (() => Promise<void>) | null = null

  /** The channel for `key` on a swarm connection; `onOpen` once the other end opened it too. */
  static answer(socket: Duplex, key: Buffer, onOpen: (channel: ChannelSocket) => void): ChannelSocket | null {
    const face = new ChannelSocket()
    const channel = Protomux.from(socket).createChannel({
      protocol: RPC_SWARM_PROTOCOL,
      id: key,
      onopen: () => {
        face.readyState = OPEN
        onOpen(face)
        face.emit('open')
      },
      onclose: () => face.ended(),
    })
    if (!channel) return null // this connection already has the channel
    face.channel = channel
    face.text = channel.addMessage({ encoding: c.string, onmessage: (text) => face.emit('message', Buffer.from(text), false) })
    face.closing = channel.addMessage({
      encoding: c.string,
      onmessage: (why) => {
        const space = why.indexOf(' ')
        face.closedWith = [Number(why.slice(0, space)) || 1000, why.slice(space + 1)]
      },
    })
    channel.open()
    socket.once('close', () => face.ended())
    return face
  }

  /**
   * Dials the VM whose call log is `key`: joins the DHT (its own swarm, left when the socket closes),
   * looks the key up and opens the channel on the first connection that has it. Returns at once,
   * CONNECTING; 'open' or 'close' follows.
   */
  static dial(key: Buffer, options: SwarmOptions): ChannelSocket {
    const face = new ChannelSocket()
    const dialing = SwarmNetwork.create(options).then((network) => {
      face.release = () => network.destroy()
      if (face.readyState === CLOSED) return face.release()
      const tried = new WeakSet<Duplex>()
      let silentMs = SILENT_FIRST_MS
      let silent: NodeJS.Timeout | null = null
      const stopWaiting = () => {
        if (silent) clearTimeout(silent)
        silent = null
      }
      face.once('close', stopWaiting)
      const stop = network.serve((socket) => {
        if (face.readyState !== CONNECTING || tried.has(socket)) return
        tried.add(socket)
        silent ??= setTimeout(() => {
          silent = null
          if (face.readyState !== CONNECTING) return
          network.status(`no answer on ${counted(network.connections, 'connection')} in ${silentMs} ms; dialling again`)
          silentMs = Math.min(2 * silentMs, SILENT_MAX_MS)
          network.redial().catch(() => {})
        }, silentMs)
        ChannelSocket.answer(socket, key, (opened) => {
          if (face.readyState !== CONNECTING) return opened.close(1000, 'another connection answered first')
          stop()
          stopWaiting()
          face.adopt(opened)
        })
      })
      network.status(`looking up ${key.toString('hex')} on the DHT`)
      return network.lookup(key)
    })
    dialing.catch((err: Error) => {
      face.emit('error', err)
      face.ended()
    })
    return face
  }

  /** Becomes the face of `opened` (dial: the first channel that opened). */
  private adopt(opened: ChannelSocket): void {
    this.channel = opened.channel
    this.text = opened.text
    opened.on('message', (data: Buffer, isBinary: boolean) => this.emit('message', data, isBinary))
    opened.on('close', (code: number, reason: Buffer) => {
      this.closedWith = [code, reason.toString()]
      this.ended()
    })
    this.closing = opened.closing
    this.readyState = OPEN
    this.emit('open')
  }

  send(text: string, done?: (err?: Error) => void): void {
    if (this.readyState === OPEN) this.text?.send(text)
    done?.()
  }

  /** Closes the channel, telling the other end why (as a WebSocket close frame would). */
  close(code = 1000, reason = ''): void {
    if (this.readyState === OPEN) this.closing?.send(`${code} ${reason}`)
    this.closedWith = [code, reason]
    this.channel?.close()
    this.ended()
  }

  terminate(): void {
    this.close(1006, 'terminated')
  }

  private ended(): void {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    const [code, reason] = this.closedWith
    this.emit('close', code, Buffer.from(reason))
    this.release?.().catch(() => {})
  }
}
