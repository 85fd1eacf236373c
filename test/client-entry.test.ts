/**
 * libvms/client (src/client/index.ts), loaded by its name from the built package as a user would, in
 * Node: calls with receipts, in debug and production mode, a pinned log and code version, and a
 * WebSocket class given in place of the one it finds (the path a browser takes).
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import WebSocket from 'ws'
import type { WebSocketClass } from '../src/client/transport.js'
import { loadKeyPair } from '../src/index.js'
import { codeHash } from '../src/ledger/log-hashes.js'
import { nodevms } from './cli-helpers.js'
import { deployVM, tempDir } from './helpers.js'
import { serve } from './rpc-helpers.js'

const COUNTER = `let n = 0
exports.inc = (by) => { n += by; return { n, by: System.caller.id } }
exports.fail = () => { throw new Error('not today') }`

// The built entry (npm test builds first), by the package's own name.
const client = await import('libvms/client')

test('libvms/client calls a VM with receipts: each answer checked and kept, the log and code pinned', async (t) => {
  const vm = await deployVM(t, COUNTER)
  const server = await serve(t, { '/counter': vm })
  const url = `${server.url}/counter`
  const seen: number[] = []
  const rpc = await client.RPCClient.connect<{ inc(by: number): { n: number; by: string } }>(url, {
    user: 'alice',
    callLog: vm.callLog.url,
    code: codeHash(COUNTER),
    onReceipt: (_receipt, call) => seen.push(call.seq),
  })
  t.after(() => rpc.close())
  assert.deepEqual(rpc.backendInfo.methods, ['inc', 'fail'])
  assert.deepEqual(await rpc.inc(2), { n: 2, by: 'alice' })
  assert.deepEqual(await rpc.inc(3), { n: 5, by: 'alice' })
  assert.deepEqual(seen, [1, 2])
  assert.equal(rpc.receipts.length, 2)
  const proven = client.verifyReceipt(rpc.receipts[1])
  assert.equal(proven.log, vm.callLog.key)
  assert.equal(proven.entry.type === 'call' && proven.entry.method, 'inc')
  assert.equal(client.compareReceipts(rpc.receipts[0], rpc.receipts[1]).holds, false)
  // Another code version pinned: refused at connect.
  await assert.rejects(client.RPCClient.connect(url, { user: 'alice', code: codeHash('exports.other = () => 1') }), {
    code: 'ERR_CODE_CHANGED',
  })
})

test('libvms/client in production mode: a key pair it made signs the calls, and the log names its key', async (t) => {
  const vm = await deployVM(t, COUNTER, { auth: 'production' })
  const server = await serve(t, { '/counter': vm })
  const keyPair = client.generateKeyPair()
  const rpc = await client.RPCClient.connect(`${server.url}/counter`, { keyPair })
  t.after(() => rpc.close())
  assert.deepEqual(await rpc.inc(1), { n: 1, by: client.callerIdOf(keyPair) })
  const entry = client.verifyReceipt(rpc.receipts[0]).entry
  assert.equal(entry.type === 'call' && entry.caller, client.callerIdOf(keyPair))
})

test('libvms/client with a WebSocket class given: the standard WebSocket interface carries the calls and receipts', async (t) => {
  const vm = await deployVM(t, COUNTER)
  const server = await serve(t, { '/counter': vm })
  const book = new client.ReceiptBook()
  const rpc = await client.RPCClient.connect(`${server.url}/counter`, {
    user: 'bob',
    receipts: book,
    // ws's class, driven through the standard interface a browser's has (its types add overloads).
    WebSocket: WebSocket as unknown as WebSocketClass,
  })
  t.after(() => rpc.close())
  assert.deepEqual(await rpc.inc(4), { n: 4, by: 'bob' })
  assert.equal(book.lengthOf(vm.callLog.key), 2)
  // A call that fails in the VM is answered with its logged error, checked against its receipt too.
  await assert.rejects(rpc.fail(), { code: 'ERR_CALL_FAILED', message: 'not today' })
  assert.equal(rpc.receipts.length, 2)
  await rpc.close()
  await assert.rejects(rpc.inc(1), { code: 'ERR_CONNECTION_CLOSED' })
  await assert.rejects(client.RPCClient.connect(`${server.url}/counter`, { WebSocket: 'ws' as never }), {
    code: 'ERR_INVALID_ARGUMENT',
  })
})

test('a key pair moves between a key file (nodevms keygen) and the client as text: exportKeyPair, importKeyPair', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'me.key')
  const made = await nodevms(['keygen', '--out', file])
  assert.equal(made.code, 0, made.stderr)
  const imported = client.importKeyPair(await readFile(file, 'utf8'))
  assert.equal(
    client.callerIdOf(imported),
    made.stdout
      .trim()
      .split(/\s+/)
      .find((word) => /^[0-9a-f]{64}$/.test(word)),
  )
  // And back: the text the client exports is a key file the command line reads.
  const made2 = client.generateKeyPair()
  const back = join(dir, 'back.key')
  await writeFile(back, `${client.exportKeyPair(made2)}\n`, { mode: 0o600 })
  assert.deepEqual(await loadKeyPair(back), { publicKey: Buffer.from(made2.publicKey), secretKey: Buffer.from(made2.secretKey) })
  assert.throws(() => client.importKeyPair('{"type":"libvms-key-pair"}', 'the pasted key'), {
    code: 'ERR_KEY_FILE_INVALID',
    message: /^the pasted key is not a LibVMS key pair file/,
  })
  const other = JSON.parse(client.exportKeyPair(client.generateKeyPair()))
  const mixed = JSON.stringify({ ...JSON.parse(client.exportKeyPair(made2)), secretKey: other.secretKey })
  assert.throws(() => client.importKeyPair(mixed), { code: 'ERR_KEY_FILE_INVALID', message: /does not belong to its public key/ })
})
