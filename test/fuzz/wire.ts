/**
 * HTTP and WebSocket at the wire level, for the fuzz tests' hostile handshakes: raw TCP exchanges,
 * hand-made HTTP upgrade requests and WebSocket frames, and reading the frames a server sent.
 */
import { connect as netConnect, type Socket } from 'node:net'

/**
 * Sends `bytes` on a fresh TCP connection; resolves with what came back once `until(data)` holds, the
 * server closes the connection, or `ms` passed.
 */
export function tcpExchange(
  port: number,
  bytes: Buffer,
  sockets: Set<Socket>,
  until: (data: Buffer) => boolean = () => false,
  ms = 5000,
): Promise<{ data: Buffer; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1')
    sockets.add(socket)
    const chunks: Buffer[] = []
    let done = false
    const finish = (closedByServer: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      sockets.delete(socket)
      resolve({ data: Buffer.concat(chunks), closedByServer })
    }
    const timer = setTimeout(() => finish(false), ms)
    socket.on('data', (d: Buffer) => {
      chunks.push(d)
      if (until(Buffer.concat(chunks))) finish(false)
    })
    socket.on('end', () => finish(true))
    socket.on('close', () => finish(true))
    socket.on('error', () => finish(true))
    socket.write(bytes)
  })
}

/** A client WebSocket frame (masked unless told otherwise). */
export function wsFrame(
  opcode: number,
  payload: Buffer,
  options: { fin?: boolean; mask?: boolean; rsv?: number; length?: bigint } = {},
): Buffer {
  const { fin = true, mask = true, rsv = 0 } = options
  const length = options.length ?? BigInt(payload.length)
  const head: number[] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
  const m = mask ? 0x80 : 0
  if (length < 126n) head.push(m | Number(length))
  else if (length < 65536n) head.push(m | 126, Number(length >> 8n) & 0xff, Number(length) & 0xff)
  else {
    head.push(m | 127)
    for (let i = 7; i >= 0; i--) head.push(Number((length >> BigInt(i * 8)) & 0xffn))
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload])
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]))
  return Buffer.concat([Buffer.from(head), key, masked])
}

/** The frames a server sent (unmasked), after the HTTP response head. */
export function serverFrames(data: Buffer): { opcode: number; payload: Buffer }[] {
  const frames: { opcode: number; payload: Buffer }[] = []
  let at = 0
  while (at + 2 <= data.length) {
    const opcode = data[at] & 0x0f
    let length = data[at + 1] & 0x7f
    at += 2
    if (length === 126) {
      length = data.readUInt16BE(at)
      at += 2
    } else if (length === 127) {
      length = Number(data.readBigUInt64BE(at))
      at += 8
    }
    if (at + length > data.length) break
    frames.push({ opcode, payload: data.subarray(at, at + length) })
    at += length
  }
  return frames
}

export function upgradeRequest(path: string, headers: Record<string, string> = {}, method = 'GET', version = 'HTTP/1.1'): string {
  const all: Record<string, string> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  }
  const lines = Object.entries(all)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}`)
  return `${method} ${path} ${version}\r\n${lines.join('\r\n')}\r\n\r\n`
}
