import assert from 'node:assert/strict'
import { chmod, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import stockCrypto from 'hypercore-crypto'
import { encodeCallPayload, signCallPayload } from '../src/auth/signed-call.js'
import {
  type CallEntry,
  type CallLog,
  callerIdOf,
  DivergenceError,
  generateKeyPair,
  type KeyPair,
  loadKeyPair,
  type RPCError,
  saveKeyPair,
  Verifier,
  VM,
  VMFactory,
} from '../src/index.js'
import { callError, clientNonce, deployVM, tempDir } from './helpers.js'
import { connect, rawSocket, serve } from './rpc-helpers.js'

/** A key-value store where only the admin (a public key fixed at init) may delete. */
function notesScript(admin: string): string {
  return `
const notes = {}
exports.whoami = () => System.caller.id
exports.put = (k, v) => { notes[k] = { v, by: System.caller.id }; return Object.keys(notes).length }
exports.get = (k) => notes[k] || null
exports.remove = (k) => {
  if (System.caller.id !== ${JSON.stringify(admin)}) throw new Error('only the admin may remove notes')
  delete notes[k]
  return true
}
`
}

const alice = generateKeyPair()
const bob = generateKeyPair()
const admin = generateKeyPair()

function rpcFailure(check: (err: RPCError) => void): (err: unknown) => boolean {
  return (err) => {
    check(err as RPCError)
    return true
  }
}

function isDivergence(check: (err: DivergenceError) => void): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof DivergenceError, `expected a DivergenceError, got ${String(err)}`)
    check(err)
    return true
  }
}

/** A frame signing `method(args)` for `callLogKey` on a connection with `nonce`, as a client would send it. */
function signedFrame(
  id: number,
  keyPair: KeyPair,
  fields: { callLog: string; method: string; args: unknown[]; nonce: string; counter: number },
) {
  const payload = encodeCallPayload({ ...fields, argsJson: JSON.stringify(fields.args), clientNonce: clientNonce() })
  return JSON.stringify({ jsonrpc: '2.0', id, method: fields.method, params: signCallPayload(payload, keyPair.secretKey) })
}

async function handshake(socket: Awaited<ReturnType<typeof rawSocket>>, params: Record<string, unknown>) {
  socket.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'rpc.handshake', params }))
  const answer = await socket.next()
  return answer.result as { nonce: string; callLogUrl: string; auth: string }
}

test('signed calls end to end: callers are public keys, every entry carries its signature, the log verifies', async (t) => {
  const vm = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const init = await vm.callLog.get(0)
  assert.equal(init.type === 'init' && init.auth, 'production')
  assert.equal(vm.auth, 'production')
  const server = await serve(t, { '/notes': vm })
  const url = `${server.url}/notes`
  const a = await connect(t, url, { keyPair: alice })
  const b = await connect(t, url, { keyPair: bob })
  const boss = await connect(t, url, { keyPair: admin })
  assert.equal(a.backendInfo?.auth, 'production')
  assert.match(a.backendInfo?.nonce ?? '', /^[0-9a-f]{32}$/)
  assert.notEqual(a.backendInfo?.nonce, b.backendInfo?.nonce)

  assert.equal(await a.call('whoami'), callerIdOf(alice))
  assert.equal(await b.call('whoami'), callerIdOf(bob))
  await Promise.all([a.call('put', 'x', { deep: [1, new Uint8Array([7])] }), b.call('put', 'y', 'why'), a.call('put', 'z', null)])
  assert.deepEqual(await b.call('get', 'x'), { v: { deep: [1, new Uint8Array([7])] }, by: callerIdOf(alice) })
  await assert.rejects(
    b.call('remove', 'x'),
    rpcFailure((err) => assert.equal(err.code, 'ERR_CALL_FAILED')),
  )
  assert.equal(await boss.call('remove', 'x'), true)

  const entries = (await vm.callLog.list()).slice(1) as CallEntry[]
  assert.equal(entries.length, 8)
  for (const entry of entries) {
    assert.match(entry.caller ?? '', /^[0-9a-f]{64}$/)
    assert.ok(entry.signed, 'every call entry holds what its caller signed')
    const payload = JSON.parse(entry.signed.payload)
    assert.equal(payload.callLog, vm.callLog.key)
    assert.equal(payload.method, entry.method)
    assert.deepEqual(payload.args, entry.args)
  }
  const report = await Verifier.verify(vm.callLog, vm.filesArchive)
  assert.equal(report.calls, 8)
})

test('a client cannot act as another key; unsigned calls and debug-style handshakes are refused; nothing is logged', async (t) => {
  const vm = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const server = await serve(t, { '/': vm })
  const before = vm.callLog.length

  // Claiming Alice's key but signing with Bob's.
  const socket = await rawSocket(t, server.url as string)
  const info = await handshake(socket, { publicKey: callerIdOf(alice) })
  const callLog = vm.callLog.key
  socket.ws.send(signedFrame(1, bob, { callLog, method: 'put', args: ['k', 'forged'], nonce: info.nonce, counter: 1 }))
  const forged = (await socket.next()).error as { data: { code: string }; message: string }
  assert.equal(forged.data.code, 'ERR_BAD_SIGNATURE')
  assert.match(forged.message, /does not verify/)
  // Unsigned params on a production connection.
  socket.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'put', params: ['k', 'unsigned'] }))
  assert.equal(((await socket.next()).error as { data: { code: string } }).data.code, 'ERR_AUTH_REQUIRED')
  // A payload signed for one method, sent as another.
  socket.ws.send(
    signedFrame(3, alice, { callLog, method: 'get', args: ['k'], nonce: info.nonce, counter: 2 }).replace(
      '"method":"get"',
      '"method":"put"',
    ),
  )
  assert.equal(((await socket.next()).error as { data: { code: string } }).data.code, 'ERR_BAD_PAYLOAD')

  // A debug-style user id is refused at the handshake; a client with no key may connect but not call.
  await assert.rejects(
    connect(t, server.url as string, { user: callerIdOf(alice) }),
    rpcFailure((err) => assert.equal(err.code, 'ERR_AUTH_MODE')),
  )
  const anonymous = await connect(t, server.url as string)
  await assert.rejects(
    anonymous.call('put', 'k', 'v'),
    rpcFailure((err) => {
      assert.equal(err.code, 'ERR_AUTH_REQUIRED')
      assert.match(err.message, /keyPair/)
    }),
  )
  // The VM API refuses a caller id without a signature, and a signature not made by the caller.
  assert.equal((await callError(vm, 'put', ['k', 'v'], callerIdOf(alice))).code, 'ERR_AUTH_REQUIRED')
  const payload = encodeCallPayload({
    callLog: vm.callLog.key,
    method: 'put',
    argsJson: '["k","v"]',
    nonce: 'ab'.repeat(16),
    counter: 1,
    clientNonce: clientNonce(),
  })
  const signedByBob = signCallPayload(payload, bob.secretKey)
  await assert.rejects(
    vm.executeCall({ methodName: 'put', args: ['k', 'v'], userId: callerIdOf(alice), signed: signedByBob }),
    (err: RPCError) => err.code === 'ERR_BAD_SIGNATURE',
  )
  // ...and arguments other than the ones signed.
  await assert.rejects(
    vm.executeCall({ methodName: 'put', args: ['k', 'other'], userId: callerIdOf(bob), signed: signedByBob }),
    (err: RPCError) => err.code === 'ERR_BAD_PAYLOAD',
  )
  assert.equal(vm.callLog.length, before, 'no refused call was logged')
  // The host's own calls are anonymous (caller null) and logged as such.
  assert.equal(await vm.executeCall({ methodName: 'whoami' }), null)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('a captured signed message sent again is refused, on its connection and on another', async (t) => {
  const vm = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const server = await serve(t, { '/': vm })
  const first = await rawSocket(t, server.url as string)
  const info = await handshake(first, { publicKey: callerIdOf(alice) })
  const frame = signedFrame(1, alice, { callLog: vm.callLog.key, method: 'put', args: ['n', 1], nonce: info.nonce, counter: 1 })
  first.ws.send(frame)
  assert.equal((await first.next()).result, 1)
  const logged = vm.callLog.length

  first.ws.send(frame)
  const again = (await first.next()).error as { data: { code: string }; message: string }
  assert.equal(again.data.code, 'ERR_REPLAYED')

  const second = await rawSocket(t, server.url as string)
  await handshake(second, { publicKey: callerIdOf(alice) })
  second.ws.send(frame)
  const elsewhere = (await second.next()).error as { data: { code: string }; message: string }
  assert.equal(elsewhere.data.code, 'ERR_REPLAYED')
  assert.match(elsewhere.message, /another connection/)

  // The VM API holds the same line, also after the VM is reopened.
  const entry = (await vm.callLog.get(logged - 1)) as CallEntry
  const resend = { methodName: 'put', args: ['n', 1], userId: callerIdOf(alice), signed: entry.signed }
  await assert.rejects(vm.executeCall(resend), (err: RPCError) => err.code === 'ERR_REPLAYED')
  const dir = vm.dir as string
  await server.unmount('/')
  await vm.close()
  const reopened = new VM(vm.code)
  await reopened.deploy({ dir })
  t.after(() => reopened.close())
  assert.equal(reopened.auth, 'production')
  await assert.rejects(reopened.executeCall(resend), (err: RPCError) => err.code === 'ERR_REPLAYED')
  assert.equal(reopened.callLog.length, logged)
  await reopened.close()

  const debug = new VM(vm.code, { auth: 'debug' })
  await assert.rejects(debug.deploy({ dir }), (err: RPCError) => err.code === 'ERR_AUTH_MISMATCH')
})

test('a hand-rolled signer (stock hypercore-crypto, plain ws): any field order, whitespace and extra fields are accepted, logged as sent, and verify', async (t) => {
  const vm = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const server = await serve(t, { '/': vm })
  const keys = stockCrypto.keyPair()
  const publicKey = keys.publicKey.toString('hex')
  const socket = await rawSocket(t, server.url as string)
  const info = await handshake(socket, { publicKey })
  const sign = (payload: string) => ({ payload, signature: stockCrypto.sign(Buffer.from(payload), keys.secretKey).toString('hex') })
  const payloads = [
    // Reordered and pretty-printed, with a field LibVMS does not know.
    JSON.stringify(
      {
        counter: 1,
        args: ['k', 'v'],
        note: 'signed, not part of the call',
        nonce: info.nonce,
        clientNonce: clientNonce(),
        method: 'put',
        callLog: vm.callLog.key,
        type: 'libvms-call',
      },
      null,
      2,
    ),
    // Tabs, a trailing newline and the fields backwards.
    `{\t"counter" : 2 ,\t"clientNonce":"${clientNonce()}", "nonce" : "${info.nonce}", "args" : [ "k" ], "method" : "get", "callLog" : "${vm.callLog.key}", "type" : "libvms-call" }\n`,
  ]
  socket.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'put', params: sign(payloads[0]) }))
  assert.deepEqual(await socket.next(), { jsonrpc: '2.0', id: 1, result: 1 })
  socket.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'get', params: sign(payloads[1]) }))
  assert.deepEqual(await socket.next(), { jsonrpc: '2.0', id: 2, result: { v: 'v', by: publicKey } })

  const entries = (await vm.callLog.list({ start: 1 })) as CallEntry[]
  assert.deepEqual(
    entries.map((e) => e.signed?.payload),
    payloads,
    "each entry keeps the payload's bytes exactly as signed",
  )
  for (const entry of entries) assert.equal(entry.caller, publicKey)
  const report = await Verifier.verify(vm.callLog, vm.filesArchive)
  assert.equal(report.calls, 2)
  // The bytes are what is signed: the same payload re-spaced after signing does not verify.
  const respaced = { payload: payloads[0].replace(/\n\s*/g, ''), signature: sign(payloads[0]).signature }
  socket.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'put', params: respaced }))
  assert.equal(((await socket.next()).error as { data: { code: string } }).data.code, 'ERR_BAD_SIGNATURE')
  // A key named twice (JSON.parse keeps the last; another reader may keep the first) is refused,
  // at the top and inside the arguments, written plainly or escaped; nothing is logged.
  const twice = [
    `{"type":"libvms-call","callLog":"${vm.callLog.key}","method":"get","method":"put","args":["k","w"],"nonce":"${info.nonce}","counter":3}`,
    `{"type":"libvms-call","callLog":"${vm.callLog.key}","method":"put","args":["k",{"a":1,"\\u0061":2}],"nonce":"${info.nonce}","counter":3}`,
  ]
  for (const [i, payload] of twice.entries()) {
    socket.ws.send(JSON.stringify({ jsonrpc: '2.0', id: 4 + i, method: 'put', params: sign(payload) }))
    const refused = (await socket.next()).error as { data: { code: string }; message: string }
    assert.equal(refused.data.code, 'ERR_BAD_PAYLOAD')
    assert.match(refused.message, /names a key twice/)
  }
  assert.equal(vm.callLog.length, 3, 'nothing logged')
})

test('a message signed for VM A is refused by VM B', async (t) => {
  const a = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const b = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const server = await serve(t, { '/a': a, '/b': b })
  const toB = await rawSocket(t, `${server.url}/b`)
  const infoB = await handshake(toB, { publicKey: callerIdOf(alice) })
  // Signed with B's connection nonce, but for A's call log.
  toB.ws.send(signedFrame(1, alice, { callLog: a.callLog.key, method: 'put', args: ['k', 'v'], nonce: infoB.nonce, counter: 1 }))
  const wrongVM = (await toB.next()).error as { data: { code: string }; message: string }
  assert.equal(wrongVM.data.code, 'ERR_WRONG_VM')
  assert.match(wrongVM.message, new RegExp(a.callLog.key))
  // A frame captured on a connection to A and sent to B.
  const toA = await rawSocket(t, `${server.url}/a`)
  const infoA = await handshake(toA, { publicKey: callerIdOf(alice) })
  const frameForA = signedFrame(2, alice, { callLog: a.callLog.key, method: 'put', args: ['k', 'v'], nonce: infoA.nonce, counter: 1 })
  toB.ws.send(frameForA)
  assert.equal(((await toB.next()).error as { data: { code: string } }).data.code, 'ERR_REPLAYED')
  assert.equal(b.callLog.length, 1, 'VM B logged nothing')
  toA.ws.send(frameForA)
  assert.equal((await toA.next()).result, 1, 'the frame works where it was signed for')
})

test('a log with an altered signature, signed payload, caller or a re-logged call fails verification naming that seq', async (t) => {
  const vm = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const server = await serve(t, { '/': vm })
  const client = await connect(t, server.url as string, { keyPair: alice })
  for (let i = 0; i < 6; i++) await client.call('put', `k${i}`, i)
  await client.close()
  await server.unmount('/')
  const honest = (await vm.callLog.list()) as CallEntry[]
  await Verifier.verify(vm.callLog, null)

  // The host rewrites its own log (same key): truncate at seq 3 and append a changed history.
  async function rewritten(change: (entries: CallEntry[]) => void): Promise<CallLog> {
    const entries = honest.map((e) => structuredClone(e))
    change(entries)
    await vm.callLog.core.truncate(1)
    await vm.callLog.append(entries.slice(1))
    return vm.callLog
  }
  const flip = (hex: string) => (hex[0] === '0' ? '1' : '0') + hex.slice(1)
  const cases: [string, (e: CallEntry[]) => void, string][] = [
    ['signature', (e) => Object.assign(e[3].signed ?? {}, { signature: flip(e[3].signed?.signature ?? '') }), 'ERR_BAD_SIGNATURE'],
    ['payload', (e) => Object.assign(e[3].signed ?? {}, { payload: e[3].signed?.payload.replace('"k2",2', '"k2",3') }), 'ERR_BAD_PAYLOAD'],
    [
      'payload and args together',
      (e) => {
        Object.assign(e[3].signed ?? {}, { payload: e[3].signed?.payload.replace('"k2",2', '"k2",3') })
        e[3].args = ['k2', 3]
      },
      'ERR_BAD_SIGNATURE',
    ],
    ['caller', (e) => Object.assign(e[3], { caller: callerIdOf(bob) }), 'ERR_BAD_SIGNATURE'],
    ['a call invented for a key', (e) => delete e[3].signed, 'ERR_AUTH_REQUIRED'],
    [
      'a call logged twice',
      (e) => Object.assign(e[3], { signed: e[2].signed, clientNonce: e[2].clientNonce, args: e[2].args }),
      'ERR_REPLAYED',
    ],
    // Schema 3: the entry logs the client nonce its caller signed, and no other.
    [
      'a client nonce other than the signed one',
      (e) => Object.assign(e[3], { clientNonce: flip(e[3].clientNonce ?? '') }),
      'ERR_BAD_PAYLOAD',
    ],
    ['no client nonce logged', (e) => delete e[3].clientNonce, 'ERR_BAD_PAYLOAD'],
  ]
  for (const [name, change, code] of cases) {
    const log = await rewritten(change)
    await assert.rejects(
      Verifier.verify(log, null),
      isDivergence((err) => {
        assert.equal(err.seq, 3, name)
        assert.equal(err.field, 'signed', name)
        assert.equal(err.actual, code, name)
        assert.equal(err.method, 'put', name)
      }),
      name,
    )
  }
  // A replay alone (VM.fromCallLog) refuses the same log.
  await assert.rejects(
    VM.fromCallLog(vm.callLog),
    isDivergence((err) => assert.equal(err.seq, 3)),
  )
})

test('debug mode refuses signatures and key-pair clients; a factory provisions VMs in its own mode', async (t) => {
  const debugVM = await deployVM(t, notesScript('x'))
  const server = await serve(t, { '/debug': debugVM })
  await assert.rejects(
    connect(t, `${server.url}/debug`, { keyPair: alice }),
    rpcFailure((err) => assert.equal(err.code, 'ERR_AUTH_MODE')),
  )
  const payload = encodeCallPayload({
    callLog: debugVM.callLog.key,
    method: 'whoami',
    argsJson: '[]',
    nonce: 'ab'.repeat(16),
    counter: 1,
    clientNonce: clientNonce(),
  })
  await assert.rejects(
    debugVM.executeCall({ methodName: 'whoami', userId: 'x', signed: signCallPayload(payload, alice.secretKey) }),
    (err: RPCError) => err.code === 'ERR_AUTH_MODE',
  )

  const dir = await tempDir(t)
  const factory = new VMFactory(
    `exports.provisionVM = (opts) => System.vms.provisionVM(opts)
     exports.shutdownVM = (id) => System.vms.shutdownVM(id)`,
    { auth: 'production' },
  )
  await factory.deploy({ dir: join(dir, 'factory') })
  t.after(() => factory.close())
  const factoryServer = await serve(t, { '/': factory })
  factory.setRPCServer(factoryServer)
  const owner = await connect(t, `${factoryServer.url}/`, { keyPair: alice })
  const provisioned = (await owner.call('provisionVM', { code: 'exports.whoami = () => System.caller.id' })) as { rpcUrl: string }
  const user = await connect(t, provisioned.rpcUrl, { keyPair: bob })
  assert.equal(user.backendInfo?.auth, 'production')
  assert.equal(await user.call('whoami'), callerIdOf(bob))
})

test('key pairs: generate, save with mode 0600, load; bad files are refused with named errors', async (t) => {
  const dir = await tempDir(t)
  const path = join(dir, 'alice.key')
  const keyPair = generateKeyPair()
  await saveKeyPair(path, keyPair)
  assert.equal((await stat(path)).mode & 0o777, 0o600)
  const loaded = await loadKeyPair(path)
  assert.equal(callerIdOf(loaded), callerIdOf(keyPair))
  assert.deepEqual(Buffer.from(loaded.secretKey), Buffer.from(keyPair.secretKey))

  await assert.rejects(saveKeyPair(path, generateKeyPair()), (err: RPCError) => err.code === 'ERR_KEY_FILE_EXISTS')
  const other = generateKeyPair()
  await saveKeyPair(path, other, { overwrite: true })
  assert.equal(callerIdOf(await loadKeyPair(path)), callerIdOf(other))
  assert.equal((await stat(path)).mode & 0o777, 0o600)

  await chmod(path, 0o644)
  await assert.rejects(loadKeyPair(path), (err: RPCError) => err.code === 'ERR_KEY_FILE_PERMISSIONS' && /chmod 600/.test(err.message))
  await assert.rejects(loadKeyPair(join(dir, 'none.key')), (err: RPCError) => err.code === 'ERR_KEY_FILE_MISSING')
  const bad = join(dir, 'bad.key')
  await writeFile(
    bad,
    JSON.stringify({ type: 'libvms-key-pair', publicKey: callerIdOf(alice), secretKey: Buffer.from(bob.secretKey).toString('hex') }),
    {
      mode: 0o600,
    },
  )
  await assert.rejects(loadKeyPair(bad), (err: RPCError) => err.code === 'ERR_KEY_FILE_INVALID' && /does not belong/.test(err.message))
  await assert.rejects(
    saveKeyPair(join(dir, 'x.key'), { publicKey: alice.publicKey, secretKey: bob.secretKey }),
    (err: RPCError) => err.code === 'ERR_INVALID_ARGUMENT',
  )
})

// Replay checks signatures in batches of 256 ahead of re-running calls (on a worker thread, or here if
// that thread fails): what this shows is the order — the bad signature is named at its own seq, in
// the third batch, not at a batch boundary.
test('a bad signature deep in a long log (third batch of signature checks) is named by its seq', async (t) => {
  const vm = await deployVM(t, notesScript(callerIdOf(admin)), { auth: 'production' })
  const nonce = 'cd'.repeat(16)
  for (let counter = 1; counter <= 600; counter++) {
    const args = [`k${counter % 7}`, counter]
    const argsJson = JSON.stringify(args)
    const payload = encodeCallPayload({ callLog: vm.callLog.key, method: 'put', argsJson, nonce, counter, clientNonce: clientNonce() })
    await vm.executeCall({ methodName: 'put', args, userId: callerIdOf(alice), signed: signCallPayload(payload, alice.secretKey) })
  }
  const report = await Verifier.verify(vm.callLog, vm.filesArchive)
  assert.equal(report.calls, 600)
  // The host rewrites its log from seq 530 on (in the third batch of 256), with one signature altered.
  const tail = ((await vm.callLog.list({ start: 530 })) as CallEntry[]).map((e) => structuredClone(e))
  const signed = tail[0].signed as { signature: string }
  signed.signature = (signed.signature[0] === '0' ? '1' : '0') + signed.signature.slice(1)
  await vm.callLog.core.truncate(530)
  await vm.callLog.append(tail)
  await assert.rejects(
    Verifier.verify(vm.callLog, null),
    isDivergence((err) => {
      assert.equal(err.seq, 530)
      assert.equal(err.actual, 'ERR_BAD_SIGNATURE')
    }),
  )
})
