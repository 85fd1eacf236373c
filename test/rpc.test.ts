import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import type WebSocket from 'ws'
import { WebSocketServer } from 'ws'
import { type CallEntry, codeHash, RPCClient, type RPCError, RPCServer } from '../src/index.js'
import { deployVM } from './helpers.js'
import { connect, rawSocket, serve } from './rpc-helpers.js'

const HELLO = `
exports.init = () => {}
exports.foo = () => 'bar'
exports.hello = () => 'Hello, ' + (System.caller.id || 'stranger') + '!'
exports.echo = (...args) => args
exports.slow = (n) => { let x = 0; for (let i = 0; i < n; i++) x += i; return x }
exports.boom = () => { throw new RangeError('out of range') }
`

test('the source document example: run a VM, connect, call', async (t) => {
  const vm = await deployVM(t, HELLO, { title: 'Bobs VM' })
  const server = await serve(t, { '/bobs-vm': vm })
  assert.match(server.url ?? '', /^ws:\/\/127\.0\.0\.1:\d+$/)
  const client = await connect(t, `${server.url}/bobs-vm`)
  assert.equal(client.url, `${server.url}/bobs-vm`)
  assert.deepEqual(client.backendInfo, {
    methods: ['foo', 'hello', 'echo', 'slow', 'boom'],
    callLogUrl: vm.callLog.url,
    filesArchiveUrl: vm.filesArchive.url,
    title: 'Bobs VM',
    auth: 'debug',
    schema: 4,
    code: { hash: codeHash(vm.code), seq: 0 },
  })
  assert.equal(await (client.foo as () => Promise<string>)(), 'bar')
  assert.deepEqual(await client.call('echo', 1, 'two', { three: [3] }, null, new Uint8Array([4])), [
    1,
    'two',
    { three: [3] },
    null,
    new Uint8Array([4]),
  ])
  const entry = (await vm.callLog.get(vm.callLog.length - 1)) as CallEntry
  assert.equal(entry.method, 'echo')
})

test('errors carry the server code and message; init and unknown methods are refused and not logged', async (t) => {
  const vm = await deployVM(t, HELLO)
  const server = await serve(t, { '/': vm })
  const client = await connect(t, `${server.url}/`)
  await assert.rejects(client.call('boom'), (err: RPCError) => {
    assert.equal(err.name, 'RangeError')
    assert.equal(err.code, 'ERR_CALL_FAILED')
    assert.equal(err.message, 'out of range')
    assert.equal(err.rpcCode, -32000)
    assert.equal(err.seq, 1)
    return true
  })
  const length = vm.callLog.length
  await assert.rejects(client.call('init'), { code: 'ERR_METHOD_NOT_FOUND', rpcCode: -32601 })
  await assert.rejects(client.call('nope'), { code: 'ERR_METHOD_NOT_FOUND', rpcCode: -32601 })
  await assert.rejects(
    client.call('echo', () => 1),
    { code: 'ERR_ENCODING' },
  )
  assert.equal(vm.callLog.length, length)
})

test('several VMs on one port, mounted before and after listen; unmount stops serving', async (t) => {
  const a = await deployVM(t, 'exports.name = () => "a"')
  const b = await deployVM(t, 'exports.name = () => "b"')
  const root = await deployVM(t, 'exports.name = () => "root"')
  const server = await serve(t, { '/a': a })
  server.mount('/b/', b)
  server.mount('/', root)
  assert.throws(() => server.mount('/a', b), { code: 'ERR_INVALID_ARGUMENT' })
  const [ca, cb, cr] = await Promise.all(['/a', '/b', '/'].map((p) => connect(t, `${server.url}${p}`)))
  assert.deepEqual(await Promise.all([ca.call('name'), cb.call('name'), cr.call('name')]), ['a', 'b', 'root'])
  await server.unmount('/b')
  await assert.rejects(cb.call('name'), { code: 'ERR_CONNECTION_CLOSED' })
  await assert.rejects(new RPCClient().connect(`${server.url}/b`), { code: 'ERR_CONNECT', message: /HTTP 404/ })
  assert.equal(await ca.call('name'), 'a')
})

test('three clients with different users calling concurrently each see their own caller id', async (t) => {
  const vm = await deployVM(t, HELLO)
  const server = await serve(t, { '/hello': vm })
  const users = ['alice', 'bob', 'carol']
  const clients = await Promise.all(users.map((u) => connect(t, `${server.url}/hello`, u)))
  const anonymous = await connect(t, `${server.url}/hello`)
  const results = await Promise.all(clients.flatMap((c) => Array.from({ length: 10 }, () => c.call('hello'))))
  for (const [i, user] of users.entries()) {
    assert.deepEqual(results.slice(i * 10, i * 10 + 10), Array(10).fill(`Hello, ${user}!`))
  }
  assert.equal(await anonymous.call('hello'), 'Hello, stranger!')
  const callers = ((await vm.callLog.list({ start: 1 })) as CallEntry[]).map((e) => e.caller)
  assert.deepEqual(callers.filter((c) => c === 'bob').length, 10)
  assert.equal(callers.at(-1), null)
})

test('calls that would race if run concurrently run in arrival order, one at a time', async (t) => {
  const vm = await deployVM(
    t,
    `
    exports.init = () => System.files.writeFile('/total', '0')
    exports.add = async (who, n) => {
      const total = Number(await System.files.readFile('/total'))
      await new Promise((r) => setTimeout(r, 5))
      await System.files.writeFile('/total', String(total + n))
      return who + ':' + (total + n)
    }
  `,
  )
  const server = await serve(t, { '/': vm })
  const clients = await Promise.all(['x', 'y', 'z'].map((u) => connect(t, `${server.url}/`, u)))
  const results = (await Promise.all(
    clients.flatMap((c, ci) => Array.from({ length: 15 }, (_, i) => c.call('add', `${ci}.${i}`, 1))),
  )) as string[]
  assert.equal(await vm.filesArchive.readFile('/total'), '45', 'no update was lost')
  const totals = results.map((r) => Number(r.split(':')[1])).sort((a, b) => a - b)
  assert.deepEqual(
    totals,
    Array.from({ length: 45 }, (_, i) => i + 1),
    'each call saw the one before it',
  )
  const logged = ((await vm.callLog.list({ start: 1 })) as CallEntry[]).map((e) => e.result)
  assert.deepEqual(
    logged.map((r) => Number(String(r).split(':')[1])),
    Array.from({ length: 45 }, (_, i) => i + 1),
    'the log holds the calls in the order they ran',
  )
})

test('bad frames get errors and the connection stays usable; nothing reaches the VM or the log', async (t) => {
  const vm = await deployVM(t, HELLO)
  const server = await serve(t, { '/': vm }, { maxMessageBytes: 1024 })
  const { ws, next } = await rawSocket(t, `${server.url}/`)
  const length = vm.callLog.length
  const expectError = async (frame: string | Buffer, code: number, binary = false) => {
    ws.send(frame, { binary })
    const reply = await next()
    assert.equal((reply.error as { code: number }).code, code, `${String(frame).slice(0, 60)} → ${JSON.stringify(reply)}`)
    return reply
  }
  await expectError('{"jsonrpc":"2.0","id":1,"method":"foo","params":[]}', -32004) // before the handshake
  ws.send('{"jsonrpc":"2.0","id":2,"method":"rpc.handshake","params":{"user":"raw"}}')
  assert.deepEqual(((await next()).result as { methods: string[] }).methods, ['foo', 'hello', 'echo', 'slow', 'boom'])
  await expectError('{"jsonrpc":"2.0","id":3,"method":"rpc.handshake"}', -32004)
  await expectError('this is not json', -32700)
  await expectError(Buffer.from([0xff, 0xfe, 0x7b]), -32700) // invalid UTF-8
  await expectError(Buffer.from('{"jsonrpc":"2.0","id":4,"method":"foo"}'), -32600, true) // binary frame
  await expectError('[{"jsonrpc":"2.0","id":5,"method":"foo"}]', -32600) // batch
  await expectError('{"method":"foo"}', -32600) // no id and no jsonrpc: not even a notification (those get no reply)
  await expectError('{"jsonrpc":"1.0","id":6,"method":"foo"}', -32600)
  await expectError('{"jsonrpc":"2.0","id":7,"method":"nope","params":[]}', -32601)
  await expectError('{"jsonrpc":"2.0","id":8,"method":"init","params":[]}', -32601)
  await expectError('{"jsonrpc":"2.0","id":9,"method":"echo","params":{"a":1}}', -32602)
  await expectError('{"jsonrpc":"2.0","id":10,"method":"echo","params":[1e999]}', -32602)
  const big = await expectError(`{"jsonrpc":"2.0","id":11,"method":"echo","params":["${'x'.repeat(2000)}"]}`, -32002)
  assert.match((big.error as { message: string }).message, /limit of 1024 \(maxMessageBytes\)/)
  assert.equal(vm.callLog.length, length, 'nothing was logged')
  ws.send('{"jsonrpc":"2.0","id":12,"method":"hello","params":[]}')
  assert.deepEqual(await next(), { jsonrpc: '2.0', id: 12, result: 'Hello, raw!' })
})

test('a full queue and too many connections are refused with errors that state the limit', async (t) => {
  const vm = await deployVM(t, HELLO, { limits: { computeTicks: 100_000 } })
  const server = await serve(t, { '/': vm }, { maxQueuedCalls: 3, maxConnections: 2 })
  const client = await connect(t, `${server.url}/`)
  await connect(t, `${server.url}/`)
  await assert.rejects(new RPCClient().connect(`${server.url}/`), (err: RPCError) => {
    assert.equal(err.code, 'ERR_TOO_MANY_CONNECTIONS')
    assert.match(err.message, /at most 2/)
    return true
  })
  const length = vm.callLog.length
  // maxQueuedCalls bounds the calls waiting to run: the first runs, three wait, and the calls read
  // with them, or while they run, find the queue full.
  const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => client.call('slow', 3e6)))
  const refused = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[]
  assert.ok(refused.length >= 1 && 20 - refused.length >= 4, `${refused.length} of 20 refused`)
  for (const r of refused) {
    assert.equal(r.reason.code, 'ERR_QUEUE_FULL')
    assert.match(r.reason.message, /at most 3 \(maxQueuedCalls, --max-queued-calls\)/)
  }
  assert.equal(vm.callLog.length, length + 20 - refused.length, 'refused calls are not logged')
})

test('a dropped connection fails pending calls at once, with a named error', async (t) => {
  // A server that shakes hands, then drops the connection when the first call arrives.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  t.after(() => new Promise((resolve) => wss.close(resolve)))
  await new Promise((resolve) => wss.once('listening', resolve))
  wss.on('connection', (ws) => {
    ws.on('message', (data: WebSocket.RawData) => {
      const request = JSON.parse(data.toString())
      if (request.method === 'rpc.handshake') {
        ws.send(
          JSON.stringify({
            jsonrpc: '2.0',
            id: request.id,
            result: { methods: ['hang'], callLogUrl: '', filesArchiveUrl: '', title: '', auth: 'debug' },
          }),
        )
      } else {
        setTimeout(() => ws.terminate(), 20)
      }
    })
  })
  const client = await connect(t, `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`)
  const started = Date.now()
  await assert.rejects(client.call('hang'), (err: RPCError) => {
    assert.equal(err.name, 'ConnectionClosed')
    assert.equal(err.code, 'ERR_CONNECTION_CLOSED')
    assert.match(err.message, /may or may not have run/)
    return true
  })
  assert.ok(Date.now() - started < 5000)
  await assert.rejects(client.call('hang'), { code: 'ERR_CONNECTION_CLOSED' }, 'later calls fail at once too')
})

test('server.close() with calls in flight: each call is answered and logged, or refused and not logged', async (t) => {
  const vm = await deployVM(t, HELLO, { limits: { computeTicks: 100_000 } })
  const server = new RPCServer()
  server.mount('/', vm)
  await server.listen(0)
  const clients = await Promise.all(Array.from({ length: 3 }, (_, i) => connect(t, `${server.url}/`, `user${i}`)))
  const length = vm.callLog.length
  const calls = clients.flatMap((c) => Array.from({ length: 5 }, (_, i) => c.call('echo', c.backendInfo?.title, i)))
  const slow = clients[0].call('slow', 1e6)
  await new Promise((r) => setTimeout(r, 5))
  const closing = server.close()
  const late = clients[1].call('echo', 'late')
  const outcomes = await Promise.allSettled([...calls, slow, late])
  await closing
  const answered = outcomes.filter((o) => o.status === 'fulfilled').length
  for (const o of outcomes) {
    if (o.status === 'rejected') assert.match(o.reason.code, /ERR_UNAVAILABLE|ERR_CONNECTION_CLOSED/)
  }
  assert.equal(vm.callLog.length, length + answered, 'exactly the answered calls are logged')
  for (const o of outcomes) if (o.status === 'rejected') assert.equal(o.reason.code, 'ERR_UNAVAILABLE', 'no call was cut off unanswered')
})

test('a call that reaches the server as it starts closing is refused, not cut off', async (t) => {
  const vm = await deployVM(t, HELLO)
  const server = new RPCServer()
  server.mount('/', vm)
  await server.listen(0)
  const client = await connect(t, `${server.url}/`, 'u')
  const length = vm.callLog.length
  // Nothing is in flight, so close() has no call to wait for; the frame is already on its way.
  const call = client.call('hello')
  const closing = server.close()
  await assert.rejects(call, { code: 'ERR_UNAVAILABLE', message: /was not run/ })
  await closing
  assert.equal(vm.callLog.length, length, 'the refused call left no trace in the log')
})

test('a client killed mid-call does not disturb the server or other clients', async (t) => {
  const vm = await deployVM(t, HELLO, { limits: { computeTicks: 100_000 } })
  const server = await serve(t, { '/': vm })
  const other = await connect(t, `${server.url}/`, 'other')
  const script = `
    import { RPCClient } from 'libvms'
    const client = new RPCClient()
    await client.connect(process.argv[1], { user: 'doomed' })
    client.call('slow', 2e7).catch(() => {})
    setTimeout(() => console.log('sent'), 20)
    setTimeout(() => {}, 60000)
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, `${server.url}/`], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.on('data', (d) => String(d).includes('sent') && resolve()))
  child.kill('SIGKILL')
  await new Promise((r) => child.on('exit', r))
  assert.equal(await other.call('hello'), 'Hello, other!')
  const callers = ((await vm.callLog.list({ start: 1 })) as CallEntry[]).map((e) => `${e.caller}:${e.method}`)
  assert.deepEqual(callers, ['doomed:slow', 'other:hello'], "the killed client's call ran and was logged; then the other's")
})

test('an unreachable host and a host that never answers give named errors that name the URL', async (t) => {
  const probe = await import('node:net')
  // A port that nothing listens on: take one, then close it.
  const closed = probe.createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as { port: number }).port
  await new Promise((resolve) => closed.close(resolve))
  const unconnected = new RPCClient()
  await assert.rejects(unconnected.connect(`ws://127.0.0.1:${port}/vm`), (err: RPCError) => {
    assert.equal(err.code, 'ERR_CONNECT')
    assert.match(err.message, new RegExp(`ws://127.0.0.1:${port}/vm`))
    return true
  })
  // backendInfo is typed as there (README's `client.backendInfo.callLogUrl` compiles under --strict):
  // before a handshake it is a named error, not null.
  assert.throws(() => unconnected.backendInfo, { name: 'StateError', code: 'ERR_INVALID_STATE', message: /not connected yet/ })
  // A TCP server that accepts and then says nothing.
  const sockets = new Set<import('node:net').Socket>()
  const silent = probe.createServer((socket) => sockets.add(socket))
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  })
  const url = `ws://127.0.0.1:${(silent.address() as { port: number }).port}/`
  await assert.rejects(new RPCClient().connect(url, { timeout: 200 }), (err: RPCError) => {
    assert.equal(err.code, 'ERR_TIMEOUT')
    assert.match(err.message, /took more than 200 ms/)
    return true
  })
  await assert.rejects(new RPCClient().connect('http://example.invalid/'), { code: 'ERR_INVALID_ARGUMENT' })
})

test('JSON-RPC notifications (no id) are never answered: a call sent as one runs and is logged; a handshake or an early one is dropped', async (t) => {
  const vm = await deployVM(t, HELLO)
  const server = await serve(t, { '/': vm })
  const { ws, next } = await rawSocket(t, server.url as string)
  const length = vm.callLog.length
  // Before the handshake: dropped unrun (there is no caller yet), and unanswered.
  ws.send('{"jsonrpc":"2.0","method":"echo","params":["early"]}')
  ws.send('{"jsonrpc":"2.0","method":"rpc.handshake","params":{"user":"nobody"}}')
  ws.send('{"jsonrpc":"2.0","id":1,"method":"rpc.handshake","params":{"user":"ann"}}')
  assert.equal((await next()).id, 1)
  ws.send('{"jsonrpc":"2.0","method":"echo","params":["fire and forget"]}')
  ws.send('{"jsonrpc":"2.0","method":"boom","params":[]}')
  ws.send('{"jsonrpc":"2.0","method":"nope","params":[]}')
  ws.send('{"jsonrpc":"2.0","method":"echo","params":{"not":"an array"}}')
  // A request after them is the next thing answered: nothing was sent for the notifications.
  ws.send('{"jsonrpc":"2.0","id":2,"method":"hello","params":[]}')
  const answer = await next()
  assert.deepEqual(answer, { jsonrpc: '2.0', id: 2, result: 'Hello, ann!' })
  const logged = (await vm.callLog.list({ start: length })) as CallEntry[]
  assert.deepEqual(
    logged.map((e) => [e.method, e.caller, e.args]),
    [
      ['echo', 'ann', ['fire and forget']],
      ['boom', 'ann', []],
      ['hello', 'ann', []],
    ],
  )
  // An id of null is a request, not a notification: refused, with id null.
  ws.send('{"jsonrpc":"2.0","id":null,"method":"echo","params":[]}')
  const refused = await next()
  assert.equal(refused.id, null)
  assert.equal((refused.error as { code: number }).code, -32600)
})

test('over RPC, a method that returns nothing resolves undefined and one that returns null resolves null (taken from the proven entry)', async (t) => {
  const vm = await deployVM(t, 'exports.nothing = () => {}\nexports.nil = () => null')
  const server = await serve(t, { '/': vm })
  const client = await connect(t, server.url as string)
  assert.equal(await client.call('nothing'), undefined)
  assert.equal(await client.call('nil'), null)
  const plain = await connect(t, server.url as string, { receipts: false })
  assert.equal(await plain.call('nothing'), null, 'without receipts, the wire alone cannot tell')
})

test('a path reserved for a VM still starting answers 503 with the reason; a client says it; once mounted it serves', async (t) => {
  const server = await serve(t, {})
  server.reserve('/soon', 'the VM is resuming: 3 of 10 calls replayed; try again shortly')
  const early = new RPCClient()
  await assert.rejects(early.connect(`${server.url}/soon`), (err: RPCError) => {
    assert.equal(err.code, 'ERR_CONNECT')
    assert.match(err.message, /HTTP 503 Service Unavailable: the VM is resuming: 3 of 10 calls replayed; try again shortly$/)
    return true
  })
  // A path nobody reserved is not found, and the client says what the server said.
  await assert.rejects(new RPCClient().connect(`${server.url}/other`), {
    code: 'ERR_CONNECT',
    message: /HTTP 404 Not Found: no VM is mounted at \/other$/,
  })
  server.mount('/soon', await deployVM(t, HELLO))
  const client = await connect(t, `${server.url}/soon`)
  assert.ok(client.backendInfo.methods.length > 0)
})
