/**
 * Connection hygiene and the Origin policy, against a real `nodevms exec` in a child process: the
 * handshake deadline (a flood of half-open connections keeps a new caller out no longer than it),
 * the idle timeout (never while a call is in flight), the per-address cap, making room for a new
 * caller by closing an idle connection, and which web pages may connect. Only 127.0.0.1 traffic.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { type Socket, connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import WebSocket from 'ws'
import { RPCClient, type RPCError } from '../src/index.js'
import { exec, SCRIPTS } from './cli-helpers.js'
import { tempDir } from './helpers.js'
import { BOUND_MS, handshaken, rawWs, within } from './rpc-helpers.js'

const COUNTER = join(SCRIPTS, 'counter.js')

/** A TCP connection that never sends a byte; resolves `closed` when the server closes it. */
function silentTcp(t: TestContext, port: number): { socket: Socket; closed: Promise<void> } {
  const socket = tcpConnect(port, '127.0.0.1')
  t.after(() => socket.destroy())
  socket.on('error', () => {})
  socket.resume()
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, closed }
}

/** An RPCClient, retried while the server says it has too many connections (for at most BOUND_MS). */
async function connectRetrying(t: TestContext, url: string, user: string): Promise<{ client: RPCClient; refusals: RPCError[] }> {
  const refusals: RPCError[] = []
  const until = Date.now() + BOUND_MS
  for (;;) {
    const client = new RPCClient()
    try {
      await client.connect(url, { user })
      t.after(() => client.close())
      return { client, refusals }
    } catch (err) {
      if ((err as RPCError).code !== 'ERR_TOO_MANY_CONNECTIONS' || Date.now() > until) throw err
      refusals.push(err as RPCError)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

test('a flood of half-open connections fills --max-connections; they are closed at the handshake deadline and a new caller gets in', async (t) => {
  const dir = await tempDir(t)
  const { served } = await exec(t, COUNTER, ['--dir', join(dir, 'vm'), '--max-connections', '8', '--handshake-timeout', '1000'])
  const url = served.rpcUrl
  const port = Number(new URL(url).port)
  // Eight WebSockets that upgrade and never send a frame, and eight TCP connections that never send a byte.
  const flood = Array.from({ length: 8 }, () => rawWs(t, url))
  await Promise.all(flood.map((f) => f.opened))
  const tcp = Array.from({ length: 8 }, () => silentTcp(t, port))
  await assert.rejects(new RPCClient().connect(url), (err: RPCError) => {
    assert.equal(err.code, 'ERR_TOO_MANY_CONNECTIONS')
    assert.match(err.message, /at most 8 \(maxConnections, --max-connections\)/)
    return true
  })
  // Retrying, the caller gets in once the flood is past its deadline; it calls as usual.
  const { client } = await connectRetrying(t, url, 'late')
  assert.equal(await client.call('increment'), 1)
  for (const f of flood) {
    const closed = await within(f.closed, 'a half-open WebSocket is closed')
    assert.equal(closed.code, 1008)
    assert.match(closed.reason, /^no rpc\.handshake within 1000 ms of connecting \(handshakeTimeoutMs, --handshake-timeout\)$/)
  }
  await within(Promise.all(tcp.map((c) => c.closed)), 'the silent TCP connections are closed')
})

test('an idle connection is closed with its code and reason; one with calls queued or running is not', async (t) => {
  const dir = await tempDir(t)
  const script = join(dir, 'spin.js')
  await writeFile(script, 'exports.spin = (n) => { let x = 0; for (let i = 0; i < n; i++) x += i % 7; return x }\n')
  const { served } = await exec(t, script, ['--dir', join(dir, 'vm'), '--idle-timeout', '200'])
  const url = served.rpcUrl
  const events: string[] = []
  const idle = await handshaken(t, url, 'idle')
  const busy = await handshaken(t, url, 'busy')
  idle.closed.then(() => events.push('idle closed'))
  busy.closed.then(() => events.push('busy closed'))
  // Four calls sent at once: queued one behind the other, each computing for a while (the VM runs on
  // the server's thread, so the idle connection's close completes only between calls).
  const answers = await Promise.all(
    [1, 2, 3, 4].map((id) =>
      busy.request(id, 'spin', [2_000_000]).then((answer) => {
        events.push(`answer ${id}`)
        return answer
      }),
    ),
  )
  for (const answer of answers) assert.equal(typeof answer.result, 'number', JSON.stringify(answer))
  const idleClosed = await within(idle.closed, 'the idle connection is closed')
  assert.equal(idleClosed.code, 1001)
  assert.match(idleClosed.reason, /^idle for 200 ms: no call in flight, sent or answered \(idleTimeoutMs, --idle-timeout\)$/)
  // The busy connection stayed open through its calls (four of them computing one after the other,
  // several times the idle timeout), though the same timer closed the idle one.
  assert.ok(!events.includes('busy closed') || events.indexOf('busy closed') > events.indexOf('answer 4'), events.join(', '))
  // Once its calls are answered, the busy connection goes idle too and is closed the same way.
  const busyClosed = await within(busy.closed, 'the formerly busy connection is closed once idle')
  assert.equal(busyClosed.code, 1001)
  assert.match(busyClosed.reason, /idleTimeoutMs/)
  assert.equal(events.at(-1), 'busy closed', events.join(', '))
  assert.ok(events.includes('idle closed'), events.join(', '))
})

test('a full server closes its longest-idle connection to make room for a new caller', async (t) => {
  const dir = await tempDir(t)
  const { served } = await exec(t, COUNTER, [
    '--dir',
    join(dir, 'vm'),
    '--max-connections',
    '3',
    '--handshake-timeout',
    '300',
    '--idle-timeout',
    'off',
  ])
  const url = served.rpcUrl
  const idle = await Promise.all(['a', 'b', 'c'].map((user) => handshaken(t, url, user)))
  const { client } = await connectRetrying(t, url, 'newcomer')
  assert.equal(await client.call('increment'), 1)
  const closed = await within(Promise.race(idle.map((raw) => raw.closed)), 'an idle connection makes room')
  assert.equal(closed.code, 1001)
  assert.match(closed.reason, /^idle for \d+ ms while the server was full: closed to make room \(maxConnections, --max-connections\)$/)
  // The others stay: one made room for one.
  const open = idle.filter((raw) => raw.ws.readyState === WebSocket.OPEN)
  assert.equal(open.length, 2)
})

test('the per-address cap refuses the (cap+1)th connection from one address with its code and reason', async (t) => {
  const dir = await tempDir(t)
  const { served } = await exec(t, COUNTER, ['--dir', join(dir, 'vm'), '--max-connections-per-address', '2'])
  const url = served.rpcUrl
  const first = new RPCClient()
  await first.connect(url, { user: 'one' })
  t.after(() => first.close())
  const second = await handshaken(t, url, 'two')
  await assert.rejects(new RPCClient().connect(url), (err: RPCError) => {
    assert.equal(err.code, 'ERR_TOO_MANY_CONNECTIONS')
    assert.match(
      err.message,
      /too many connections from one address: at most 2 \(maxConnectionsPerAddress, --max-connections-per-address\)/,
    )
    return true
  })
  const third = rawWs(t, url)
  const closed = await within(third.closed, 'the third connection is closed')
  assert.deepEqual(closed, {
    code: 1013,
    reason: 'too many connections from one address: at most 2 (maxConnectionsPerAddress, --max-connections-per-address)',
  })
  // A place freed is a place taken.
  second.ws.close()
  await second.closed
  const { client } = await connectRetrying(t, url, 'three')
  assert.equal(await client.call('increment'), 1)
})

test('Origin: a debug VM refuses a foreign page unless allowed; a production VM takes it by default; no Origin is always allowed', async (t) => {
  const dir = await tempDir(t)
  const [debug, allowed, production] = await Promise.all([
    exec(t, COUNTER, ['--dir', join(dir, 'debug')]),
    exec(t, COUNTER, ['--dir', join(dir, 'allowed'), '--allow-origin', 'https://app.example,https://other.example:8443']),
    exec(t, COUNTER, ['--dir', join(dir, 'production'), '--auth', 'production']),
  ])
  const foreign = 'https://app.example'

  // A debug VM, by default: 403 at the upgrade, saying how to allow the page; a Node client (no Origin) calls.
  const refused = rawWs(t, debug.served.rpcUrl, foreign)
  await assert.rejects(refused.opened, (err: Error & { status?: number; body?: string }) => {
    assert.equal(err.status, 403)
    assert.match(err.body ?? '', /debug-mode VM/)
    assert.match(err.body ?? '', /allowOrigins: \["https:\/\/app\.example"\]/)
    assert.match(err.body ?? '', /nodevms exec --allow-origin https:\/\/app\.example/)
    return true
  })
  const plain = new RPCClient()
  await plain.connect(debug.served.rpcUrl, { user: 'node' })
  t.after(() => plain.close())
  assert.equal(await plain.call('increment'), 1)

  // Allowed by --allow-origin (a comma list): those pages connect and call; another origin is refused.
  for (const origin of [foreign, 'https://other.example:8443']) {
    const page = rawWs(t, allowed.served.rpcUrl, origin)
    await page.opened
    await page.request(0, 'rpc.handshake', { user: 'page' })
    const answer = await page.request(1, 'increment', [])
    assert.equal(typeof answer.result, 'number', JSON.stringify(answer))
    page.ws.close()
  }
  const stranger = rawWs(t, allowed.served.rpcUrl, 'https://stranger.example')
  await assert.rejects(stranger.opened, (err: Error & { status?: number; body?: string }) => {
    assert.equal(err.status, 403)
    assert.match(err.body ?? '', /add https:\/\/stranger\.example/)
    return true
  })

  // A production VM takes a foreign page by default: every call there is signed with the page's own key.
  const page = rawWs(t, production.served.rpcUrl, foreign)
  await page.opened
  const hello = await page.request(0, 'rpc.handshake', {})
  assert.equal((hello.result as { auth: string }).auth, 'production')
})
