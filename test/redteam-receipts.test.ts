/**
 * Red team of receipts since log schema 3 (client nonces, ReceiptBook). Each test is one attack and
 * the defence that holds against it. The first four worked when they were written (each comment says
 * how, and what closed it); the others guard defences no other test guards.
 *
 * Attackers: a peer holding only a copy of a VM's public log (answering RPC clients as if it were the
 * host), the host itself, a caller, an auditor's input. Loopback only: every server listens on
 * 127.0.0.1 and is closed when its test ends; no DHT.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import Corestore from 'corestore'
import WebSocket, { WebSocketServer } from 'ws'
import { encodeCallPayload, signCallPayload } from '../src/auth/signed-call.js'
import {
  type CallEntry,
  CallLog,
  callerIdOf,
  generateKeyPair,
  type InitEntry,
  type LogEntry,
  ReceiptBook,
  RPCClient,
  type RPCError,
  RPCServer,
  Verifier,
} from '../src/index.js'
import { createReceipt } from '../src/ledger/receipts.js'
import { clientNonce, deployVM, tempDir } from './helpers.js'

const root = join(import.meta.dirname, '..')

type Message = { id?: number; method: string; params?: unknown; clientNonce?: string }
type Reply = (body: object | string) => void

/** A server on 127.0.0.1 that answers RPC frames as `answer` says (a hostile peer); closed when the test ends. */
async function fakeHost(t: TestContext, answer: (message: Message, reply: Reply) => void | Promise<void>): Promise<string> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => server.once('listening', resolve))
  server.on('connection', (ws) => {
    ws.on('message', async (data) => {
      const message = JSON.parse(String(data)) as Message
      const reply: Reply = (body) => ws.send(typeof body === 'string' ? body : JSON.stringify({ jsonrpc: '2.0', id: message.id, ...body }))
      await answer(message, reply)
    })
  })
  t.after(async () => {
    for (const ws of server.clients) ws.terminate()
    await new Promise((resolve) => server.close(resolve))
  })
  return `ws://127.0.0.1:${(server.address() as { port: number }).port}/`
}

/** A log holding `entries` (a Hypercore of the given key pair, as a copy of it would be); closed when the test ends. */
async function logOf(t: TestContext, entries: LogEntry[], keyPair?: { publicKey: Buffer; secretKey: Buffer }) {
  const store = new Corestore(join(await tempDir(t), 'store'))
  const core = keyPair
    ? store.get<LogEntry>({ keyPair, valueEncoding: 'json' })
    : store.get<LogEntry>({ name: 'log', valueEncoding: 'json' })
  await core.ready()
  if (entries.length) await core.append(entries)
  const log = new CallLog(core, store)
  t.after(() => log.close())
  return log
}

/** What a call resolved with, or the code it rejected with. */
async function outcomeOf(call: Promise<unknown>): Promise<{ accepted: unknown } | { refused: string }> {
  return call.then(
    (value) => ({ accepted: value }),
    (err: RPCError) => ({ refused: err.code }),
  )
}

/** Runs test/fixtures/redteam-client.ts against `url`: its exit code and the JSON lines it printed. */
async function clientProcess(t: TestContext, url: string): Promise<{ code: number | null; lines: unknown[]; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/fixtures/redteam-client.ts'), url], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill()
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d) => {
    stdout += d
  })
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  const lines = stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l))
  return { code, lines, stderr }
}

// ---------------------------------------------------------------------------------------------
// Attacks that worked once (each comment says how), refused now
// ---------------------------------------------------------------------------------------------

/**
 * ATTACK 1 (worked before it was closed): production-mode downgrade by a copy of a schema 1/2 log.
 *
 * A peer holding a copy of a production log written before schema 3 answers the handshake of a
 * client that connects with {keyPair} with `auth: "debug"` (or `auth: "production"` and no `nonce`),
 * and no `schema`. RPCClient then silently makes no signer (src/rpc/rpc-client.ts:279, `if
 * (options.keyPair && info.auth === 'production' && typeof info.nonce === 'string')`), sends the call
 * unsigned, and `sent.payload` stays undefined, so checkReceipt's "is it the call this client signed"
 * check is skipped (rpc-client.ts:483, `sent.payload !== undefined && …`). The nonce check is skipped
 * too: the handshake named no schema (rpc-client.ts:273) and old entries hold no top-level clientNonce
 * (rpc-client.ts:486). So an OLD signed entry of the same call by the same key, with its genuine
 * receipt from the copy, is taken as the answer: exactly the stale answer c53786c meant to close,
 * which docs/threat-model.md says production mode still refuses against such logs ("In production mode
 * the client still signs its nonce into the payload, and the payload is logged, so the check holds
 * there too"). That only holds if the client signs at all.
 *
 * Closed: a client given a keyPair refuses a handshake that is not `auth: "production"` with a
 * connection nonce (connect rejects with ERR_AUTH_MODE), so every call it sends is signed and its
 * receipt must hold the payload it signed; a client that signed nothing refuses an entry with `signed`.
 */
test('ATTACK 1: a copy of a schema 2 production log cannot downgrade a key-pair client to unsigned calls and answer with an old signed entry', async (t) => {
  const fixture = JSON.parse(await readFile(join(root, 'test/fixtures/schema2-production-log.json'), 'utf8')) as {
    keyPair: { publicKey: string; secretKey: string }
    entries: LogEntry[]
  }
  const logKeyPair = { publicKey: Buffer.from(fixture.keyPair.publicKey, 'hex'), secretKey: Buffer.from(fixture.keyPair.secretKey, 'hex') }
  const log = await logOf(t, fixture.entries, logKeyPair)
  // The victim called `who` on this (schema 2, production) VM once, signed as a client of then signed.
  const victim = generateKeyPair()
  const me = callerIdOf(victim)
  const payload = encodeCallPayload({ callLog: log.key, method: 'who', argsJson: '[]', nonce: randomBytes(16).toString('hex'), counter: 1 })
  const last = fixture.entries[13] as CallEntry
  const old: CallEntry = {
    type: 'call',
    caller: me,
    signed: signCallPayload(payload, victim.secretKey),
    method: 'who',
    args: [],
    timestamp: last.timestamp + 10,
    seed: randomBytes(16).toString('hex'),
    result: me,
    files: last.files,
    cost: (fixture.entries[5] as CallEntry).cost,
  }
  await log.append(old)
  const seq = log.length - 1
  // An honest log: it verifies (the audit sees nothing wrong; the lie is only in the copy's handshake).
  await Verifier.verify(log, null)
  const init = fixture.entries[0] as InitEntry

  const taken: string[] = []
  for (const lie of [{ auth: 'debug' }, { auth: 'production' /* and no nonce */ }]) {
    const url = await fakeHost(t, async (message, reply) => {
      if (message.method === 'rpc.handshake') {
        reply({
          result: {
            methods: ['inc', 'who', 'fail'],
            callLogUrl: log.url,
            filesArchiveUrl: `hyper://${init.filesArchiveKey}`,
            title: init.title,
            ...lie,
          },
        })
        return
      }
      // The old entry of the same call, with a genuine receipt made from the copy.
      reply({ result: me, receipt: await createReceipt(log, seq, log.length) })
    })
    // The client pins the VM's log and gives its key pair: it means to sign and check.
    const outcome = await outcomeOf(
      RPCClient.connect(url, { keyPair: victim, callLog: log.url }).then(async (client) => {
        t.after(() => client.close())
        return client.call('who')
      }),
    )
    if ('refused' in outcome) assert.equal(outcome.refused, 'ERR_AUTH_MODE', `handshake ${JSON.stringify(lie)}`)
    else {
      taken.push(
        `handshake ${JSON.stringify(lie)}: the client took entry ${seq} (an old call, not signed now) as the answer: ${JSON.stringify(outcome)}`,
      )
    }
  }
  assert.deepEqual(taken, [])
})

/**
 * ATTACK 2 (worked before it was closed): a failure that was never logged, dressed as one that was.
 *
 * checkReceipt lets an error answer through without a receipt when it has no `data.seq` and its
 * numeric code is not CALL_FAILED (-32000) (src/rpc/rpc-client.ts:447-451): an edge refusal. But
 * onMessage then builds the RPCError from the wire's own `data.name` and `data.code`
 * (rpc-client.ts:414-423), so a peer with nothing (a copy of the log, any DHT peer answering by key)
 * can reject a call with `code: "ERR_CALL_FAILED"` and a script error's name and message (say
 * "InsufficientFunds"), or any sandbox error code: the client sees what a logged failure of the VM
 * looks like, but no entry holds it. Docs (api.md "Receipts"): "Refusals at the edge (never logged,
 * so not ERR_CALL_FAILED) carry no receipt", and "a failure said to be logged that comes without its
 * receipt" is refused: the string code is how a caller says "logged", and it is not checked.
 *
 * Closed: checkReceipt takes an error whose code only a failure inside the VM has (ERR_CALL_FAILED, the
 * sandbox and files codes the edge never uses) as said to be logged: without its receipt, ERR_BAD_RECEIPT.
 */
test('ATTACK 2: a peer with no log at all cannot pass off a failure (code ERR_CALL_FAILED, a script error name, no receipt) as a logged one', async (t) => {
  const logKey = randomBytes(32).toString('hex')
  const url = await fakeHost(t, (message, reply) => {
    if (message.method === 'rpc.handshake') {
      reply({
        result: {
          methods: ['pay'],
          callLogUrl: `hyper://${logKey}`,
          filesArchiveUrl: `hyper://${'cd'.repeat(32)}`,
          title: 'bank',
          auth: 'debug',
          schema: 3,
        },
      })
      return
    }
    // -32603 (internal error), not -32000: so checkReceipt takes it for an edge refusal.
    reply({ error: { code: -32603, message: 'insufficient funds', data: { name: 'InsufficientFunds', code: 'ERR_CALL_FAILED' } } })
  })
  const client = await RPCClient.connect(url, { user: 'ann', callLog: logKey })
  t.after(() => client.close())
  await assert.rejects(client.call('pay', 100), (err: RPCError) => {
    assert.notEqual(
      err.code,
      'ERR_CALL_FAILED',
      `a failure no log holds reached the caller as a logged one: ${err.name} ${err.code} "${err.message}" seq ${err.seq}`,
    )
    assert.equal(err.code, 'ERR_BAD_RECEIPT')
    assert.match(err.message, /no receipt of a failure it says was logged/)
    return true
  })
})

/**
 * ATTACK 3 (worked before it was closed): any server the client reaches (a copy of the log answering by key on the DHT, a
 * seeder, a man in the middle without TLS) kills the client's process with one frame.
 *
 * RPCClient.onMessage parses the frame and reads `response.id` (src/rpc/rpc-client.ts:384) without
 * checking that the JSON is an object: the frame `null` throws a TypeError inside the socket's
 * 'message' listener, an uncaught exception that ends the process (a CLI, a REPL, a server that uses
 * RPCClient). Found while trying error/result shapes; predates c53786c, but it is the same
 * attacker.
 *
 * Closed: a frame that is not a JSON object is ignored, and anything thrown while settling one call
 * rejects that call (ERR_RPC) and nothing else.
 */
test('ATTACK 3: a frame "null" from the server does not end the client process', async (t) => {
  const url = await fakeHost(t, (message, reply) => {
    if (message.method === 'rpc.handshake') {
      reply({
        result: {
          methods: ['inc'],
          callLogUrl: `hyper://${'ab'.repeat(32)}`,
          filesArchiveUrl: `hyper://${'cd'.repeat(32)}`,
          title: 'x',
          auth: 'debug',
          schema: 3,
        },
      })
      return
    }
    reply('null')
  })
  const { code, lines, stderr } = await clientProcess(t, url)
  assert.equal(code, 0, `the client process died: ${stderr.split('\n').find((l) => /Error/.test(l)) ?? stderr.slice(0, 300)}`)
  assert.deepEqual(lines.at(-1), { closed: true })
})

/**
 * ATTACK 4 (worked before it was closed): the handshake's method list overwrites the client's own state.
 *
 * connect() adds one function per advertised method (`this[method] = …`, src/rpc/rpc-client.ts:
 * 310-313), skipping only RESERVED and names on RPCClient.prototype. The client's instance fields
 * (`pending`, `receipts`, `receiptCheck`, `signer`, `ws`, `info`, `nextId`, `closedBy`) are own
 * properties, not on the prototype: a server that lists a method "pending" replaces the map of
 * waiting calls with a function. The next call rejects with a TypeError, and when the socket closes
 * onClose calls `this.pending.values()` (rpc-client.ts:530) in the 'close' listener: uncaught, the process ends. (A
 * method "receipts" does the same at the first checked receipt: `this.receipts.push`.)
 *
 * Closed: a method is added only when `!(method in this)` (own fields included); such a method is
 * reached through call() alone.
 */
test('ATTACK 4: a handshake listing a method named "pending" (an RPCClient field) does not end the client process', async (t) => {
  const url = await fakeHost(t, (message, reply) => {
    if (message.method === 'rpc.handshake') {
      reply({
        result: {
          methods: ['inc', 'pending'],
          callLogUrl: `hyper://${'ab'.repeat(32)}`,
          filesArchiveUrl: `hyper://${'cd'.repeat(32)}`,
          title: 'x',
          auth: 'debug',
          schema: 3,
        },
      })
    }
  })
  const { code, lines, stderr } = await clientProcess(t, url)
  assert.equal(code, 0, `the client process died: ${stderr.split('\n').find((l) => /Error/.test(l)) ?? stderr.slice(0, 300)}`)
  assert.deepEqual(lines.at(-1), { closed: true })
})

// ---------------------------------------------------------------------------------------------
// Defences that hold, not guarded elsewhere (passing tests)
// ---------------------------------------------------------------------------------------------

test("holds: a peer that runs the call in its own VM (its own key) with the victim's client nonce gets no answer taken by a client pinned to the real log", async (t) => {
  const script = 'let n = 0; exports.inc = () => ++n'
  const real = await deployVM(t, script)
  const attacker = await deployVM(t, script)
  const url = await fakeHost(t, async (message, reply) => {
    if (message.method === 'rpc.handshake') {
      // It names the real VM's log (so the pin holds)...
      reply({
        result: {
          methods: ['inc'],
          callLogUrl: real.callLog.url,
          filesArchiveUrl: real.filesArchive.url,
          title: 'x',
          auth: 'debug',
          schema: 3,
        },
      })
      return
    }
    // ...and answers from its own VM, whose entry does hold this call and the client's nonce.
    const { result, receipt } = await attacker.executeCallWithReceipt({
      methodName: message.method,
      args: [],
      userId: 'ann',
      clientNonce: message.clientNonce,
    })
    reply({ result, receipt })
  })
  const client = await RPCClient.connect(url, { user: 'ann', callLog: real.callLog.url })
  t.after(() => client.close())
  await assert.rejects(client.call('inc'), { code: 'ERR_BAD_RECEIPT', message: /is of log [0-9a-f]{64}, not this VM's/ })
  const logged = (await attacker.callLog.get(1)) as CallEntry
  assert.match(logged.clientNonce ?? '', /^[0-9a-f]{32}$/, "the foreign entry held the victim's nonce")
  assert.equal(real.callLog.length, 1)
})

test('holds: production mode, a top-level clientNonce other than the signed one is refused (RPC edge and executeCall), nothing logged; the same one is logged once', async (t) => {
  const vm = await deployVM(t, 'exports.put = (v) => v', { auth: 'production' })
  const server = new RPCServer()
  server.mount('/', vm)
  await server.listen({ port: 0 })
  t.after(() => server.close())
  const alice = generateKeyPair()
  const ws = new WebSocket(String(server.url))
  t.after(() => ws.terminate())
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
  const answers: Record<string, unknown>[] = []
  const waiting: ((a: Record<string, unknown>) => void)[] = []
  ws.on('message', (data) => {
    const a = JSON.parse(String(data))
    const w = waiting.shift()
    if (w) w(a)
    else answers.push(a)
  })
  const next = () =>
    new Promise<Record<string, unknown>>((resolve) => (answers.length ? resolve(answers.shift() as never) : waiting.push(resolve)))
  ws.send(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'rpc.handshake', params: { publicKey: callerIdOf(alice), receipts: true } }))
  const { nonce } = (await next()).result as { nonce: string }
  const signedWith = (counter: number, cn: string) =>
    signCallPayload(
      encodeCallPayload({ callLog: vm.callLog.key, method: 'put', argsJson: '[1]', nonce, counter, clientNonce: cn }),
      alice.secretKey,
    )
  const inside = clientNonce()
  const before = vm.callLog.length
  for (const beside of [clientNonce(), inside.toUpperCase(), `${inside}00`]) {
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'put', params: signedWith(1, inside), clientNonce: beside }))
    const refused = (await next()).error as { data: { code: string } }
    assert.ok(['ERR_BAD_PAYLOAD', 'ERR_INVALID_PARAMS'].includes(refused.data.code), JSON.stringify(refused))
    await assert.rejects(
      vm.executeCall({ methodName: 'put', args: [1], userId: callerIdOf(alice), signed: signedWith(1, inside), clientNonce: beside }),
      (err: RPCError) => ['ERR_BAD_PAYLOAD', 'ERR_INVALID_ARGUMENT'].includes(err.code),
    )
  }
  assert.equal(vm.callLog.length, before, 'no refused call was logged')
  // The counter was not used up by the refusals: the same signed call with the same nonce beside it is taken.
  ws.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'put', params: signedWith(1, inside), clientNonce: inside }))
  assert.equal((await next()).result, 1)
  const entry = (await vm.callLog.get(before)) as CallEntry
  assert.equal(entry.clientNonce, inside)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('holds: executeCall refuses malformed client nonces (types, case, lengths, a 1 MB string) before anything is logged', async (t) => {
  const vm = await deployVM(t, 'exports.f = () => 1')
  const before = vm.callLog.length
  const hex = clientNonce()
  for (const bad of [
    1,
    null,
    true,
    [],
    {},
    '',
    hex.slice(1),
    `${hex}${hex}0`,
    hex.toUpperCase(),
    `${hex.slice(1)}g`,
    ` ${hex}`,
    `${hex}\n`,
    'a'.repeat(1 << 20),
  ]) {
    await assert.rejects(
      vm.executeCall({ methodName: 'f', clientNonce: bad as string }),
      { code: 'ERR_INVALID_ARGUMENT' },
      JSON.stringify(bad).slice(0, 40),
    )
  }
  assert.equal(vm.callLog.length, before)
  // 32 and 64 digits are taken and logged as given.
  for (const good of [hex, hex + hex]) assert.equal(await vm.executeCall({ methodName: 'f', clientNonce: good }), 1)
  assert.deepEqual(
    ((await vm.callLog.list()) as CallEntry[]).slice(before).map((e) => e.clientNonce),
    [hex, hex + hex],
  )
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('holds: ReceiptBook.from answers hostile books with named errors, never a TypeError, and quickly', async (t) => {
  const vm = await deployVM(t, 'exports.f = () => 1')
  const { receipt } = await vm.executeCallWithReceipt({ methodName: 'f', clientNonce: clientNonce() })
  const good = JSON.parse(JSON.stringify(receipt))
  const book = (receipts: unknown) => ({ type: 'libvms-receipt-book', version: 1, receipts })
  const hostile: unknown[] = [
    null,
    [],
    'book',
    { type: 'libvms-receipt-book' },
    { type: 'libvms-receipt-book', version: 2, receipts: [] },
    { type: 'libvms-receipt-book', version: '1', receipts: [] },
    book({ length: 1, 0: good }),
    book(new Array(10_001).fill(good)),
    book([null]),
    book([1]),
    book(['receipt']),
    book([[good]]),
    book([{}]),
    book([{ ...good, proof: 42 }]),
    book([{ ...good, proof: `${good.proof}=` }]),
    book([{ ...good, proof: good.proof.replace(/.$/, '*') }]),
    book([{ ...good, proof: 'A'.repeat(4 * 1024 * 1024) }]),
    book([{ ...good, seq: -1 }]),
    book([{ ...good, seq: 2 ** 53 }]),
    book([{ ...good, length: Number.MAX_SAFE_INTEGER }]),
    book([{ ...good, log: good.log.toUpperCase() }]),
    book([{ ...good, log: '00'.repeat(32) }]),
    book([{ ...good, type: 'libvms-fraud-proof' }]),
    book([{ ...good, version: 2 }]),
    book([good, { ...good, seq: 0 }]),
  ]
  for (const json of hostile) {
    const started = Date.now()
    assert.throws(
      () => ReceiptBook.from(json),
      (err: Error & { code?: string }) => ['ERR_BAD_RECEIPT', 'ERR_INVALID_ARGUMENT'].includes(err.code ?? ''),
      JSON.stringify(json)?.slice(0, 80),
    )
    assert.ok(Date.now() - started < 5000, 'a hostile book is refused quickly')
  }
  // The genuine one, twice, is one log's receipt.
  assert.equal(ReceiptBook.from(book([good, good])).lengthOf(good.log), good.length)
})
