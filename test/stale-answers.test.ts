/**
 * A receipt must answer *this* call. An attacker holding nothing but a copy of a VM's public log (a
 * seeder, an auditor, any DHT peer) answers a client with an old entry of the same call and a
 * receipt made from its copy (test/fixtures/stale-answerer.ts, a real process); the client refuses
 * it, because the entry does not hold the nonce it chose for this call (debug mode: sent beside the
 * call; production mode: inside what it signs). A client's receipt book refuses answers older than
 * what it was shown before, across connections and processes, and turns receipts of a rewritten log
 * into a fork proof. Logs written before client nonces (schema 1 and 2 fixtures) verify as before.
 *
 * Network rule: the DHT scenario starts DHT nodes, so it runs only inside a fresh loopback-only
 * network namespace with a local testnet (test/netns.ts), as test/swarm.test.ts does.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { cp, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import Corestore from 'corestore'
import WebSocket from 'ws'
import {
  type CallEntry,
  CallLog,
  type LogEntry,
  loadKeyPair,
  ReceiptBook,
  RPCClient,
  type RPCError,
  RPCServer,
  Verifier,
  VM,
} from '../src/index.js'
import { checkForkProof, verifyReceipt } from '../src/ledger/receipts.js'
import { exec, firstLine, nodevms, root, SCRIPTS, stop } from './cli-helpers.js'
import { tempDir } from './helpers.js'
import { IN_NAMESPACE, loopbackTestnet, runInLoopbackNamespace } from './netns.js'

const COUNTER = join(SCRIPTS, 'counter.js')
const DHT_SCENARIO = 'over the DHT, a peer without the key that announces the log answers a call by key with an old entry: refused'

/** Starts the attacker (a copy of `callLogUrl` fetched from `hostUrl`); ended by pid when the test ends. */
async function staleAnswerer(
  t: TestContext,
  callLogUrl: string,
  hostUrl: string,
  flags: string[] = [],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', join(root, 'test/fixtures/stale-answerer.ts'), callLogUrl, hostUrl, ...flags],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env },
  )
  t.after(() => stop(child))
  return (await firstLine<{ url: string }>(child, 'the stale answerer', 90_000)).url
}

/**
 * A log from test/fixtures: a list of entries (appended to a new log), or {keyPair, entries} (appended
 * under the key they were written with: a production log's payloads name it). `change` edits the entries first.
 */
async function fixtureLog(t: TestContext, name: string, change?: (entries: LogEntry[]) => void) {
  const text = await readFile(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')
  const parsed = JSON.parse(text) as LogEntry[] | { keyPair: { publicKey: string; secretKey: string }; entries: LogEntry[] }
  const entries = Array.isArray(parsed) ? parsed : parsed.entries
  change?.(entries)
  const store = new Corestore(join(await tempDir(t), 'store'))
  const keyPair = Array.isArray(parsed)
    ? undefined
    : { publicKey: Buffer.from(parsed.keyPair.publicKey, 'hex'), secretKey: Buffer.from(parsed.keyPair.secretKey, 'hex') }
  const core = keyPair
    ? store.get<LogEntry>({ keyPair, valueEncoding: 'json' })
    : store.get<LogEntry>({ name: 'log', valueEncoding: 'json' })
  await core.ready()
  await core.append(entries)
  const log = new CallLog(core, store)
  t.after(() => log.close())
  return { log, entries }
}

/** One call over a raw WebSocket: the answer as sent, receipt and all. */
async function rawCall(url: string, hello: object, method: string, params: unknown): Promise<{ result?: unknown; receipt?: unknown }> {
  const ws = new WebSocket(url)
  try {
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    const answers: Record<string, unknown>[] = []
    const next = () =>
      new Promise<Record<string, unknown>>((resolve) => {
        const queued = answers.shift()
        if (queued) resolve(queued)
        else ws.once('message', (data) => resolve(JSON.parse(String(data))))
      })
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'rpc.handshake', params: { ...hello, receipts: true } }))
    await next()
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }))
    return (await next()) as { result?: unknown; receipt?: unknown }
  } finally {
    ws.terminate()
  }
}

if (!IN_NAMESPACE) {
  test('a copy of the log answering with an old entry and a receipt made from the copy is refused (ERR_BAD_RECEIPT): debug mode, CLI and library', async (t) => {
    const dir = await tempDir(t)
    const { served } = await exec(t, COUNTER, ['--dir', join(dir, 'host')])
    const first = await nodevms(['call', served.rpcUrl, 'increment', '--user', 'ann'])
    assert.equal(first.stdout.trim(), '1', first.stderr)
    const fake = await staleAnswerer(t, served.callLogUrl, served.rpcUrl)

    // What the attacker sends is a genuine receipt of the log, of ann's call to increment, answering 1.
    const raw = await rawCall(fake, { user: 'ann' }, 'increment', [])
    assert.equal(raw.result, 1)
    const proven = verifyReceipt(raw.receipt)
    assert.equal(`hyper://${proven.log}`, served.callLogUrl)
    assert.deepEqual([(proven.entry as CallEntry).caller, (proven.entry as CallEntry).method], ['ann', 'increment'])

    // The command line refuses it, pinned to the log or not.
    for (const pin of [['--log', served.callLogUrl], []]) {
      const called = await nodevms(['call', fake, 'increment', '--user', 'ann', ...pin])
      assert.equal(called.code, 2, called.stdout + called.stderr)
      assert.equal(called.stdout, '')
      assert.match(called.stderr, /client nonce.*\[ERR_BAD_RECEIPT\]/s)
    }
    // So does the library.
    const client = await RPCClient.connect(fake, { user: 'ann', callLog: served.callLogUrl })
    t.after(() => client.close())
    await assert.rejects(client.call('increment'), (err: RPCError) => {
      assert.equal(err.code, 'ERR_BAD_RECEIPT')
      assert.match(err.message, /entry 1 does not hold this call's client nonce/)
      return true
    })
    assert.equal(client.receipts.length, 0)
    // The host never saw those calls: its next call is the second.
    const second = await nodevms(['call', served.rpcUrl, 'increment', '--user', 'ann'])
    assert.equal(second.stdout.trim(), '2', second.stderr)
  })

  test('production mode: the attacker hands out the old connection nonce, so the client would sign the old payload but for its client nonce: refused', async (t) => {
    const dir = await tempDir(t)
    const keyFile = join(dir, 'me.key')
    assert.equal((await nodevms(['keygen', '--out', keyFile])).code, 0)
    const { served } = await exec(t, COUNTER, ['--dir', join(dir, 'host'), '--auth', 'production'])
    const first = await nodevms(['call', served.rpcUrl, 'increment', '--key', keyFile])
    assert.equal(first.stdout.trim(), '1', first.stderr)
    const fake = await staleAnswerer(t, served.callLogUrl, served.rpcUrl)

    const called = await nodevms(['call', fake, 'increment', '--key', keyFile, '--log', served.callLogUrl])
    assert.equal(called.code, 2, called.stdout + called.stderr)
    assert.match(called.stderr, /not the call this client signed.*\[ERR_BAD_RECEIPT\]/s)

    const keyPair = await loadKeyPair(keyFile)
    const client = await RPCClient.connect(fake, { keyPair, callLog: served.callLogUrl })
    t.after(() => client.close())
    // The connection nonce is the one the first call was signed with: only the client nonce differs.
    const host = await CallLog.fetch(served.callLogUrl, { peers: [served.rpcUrl] })
    t.after(() => host.close())
    const logged = (await host.get(1)) as CallEntry
    assert.ok(logged.signed && logged.clientNonce && logged.signed.payload.includes(client.backendInfo.nonce as string))
    assert.ok(logged.signed.payload.endsWith(`,"clientNonce":"${logged.clientNonce}"}`))
    await assert.rejects(client.call('increment'), { code: 'ERR_BAD_RECEIPT', message: /not the call this client signed/ })
    const second = await nodevms(['call', served.rpcUrl, 'increment', '--key', keyFile])
    assert.equal(second.stdout.trim(), '2', second.stderr)
  })

  test('a receipt book refuses an entry older than a receipt it holds, even one with no client nonce (a log before schema 3)', async (t) => {
    const vm = new VM('let n = 0; exports.add = (k) => (n += k)')
    await vm.deploy({ dir: join(await tempDir(t), 'vm') })
    t.after(() => vm.close())
    const server = new RPCServer()
    server.mount('/', vm)
    await server.listen({ port: 0 })
    t.after(() => server.close())
    const url = String(server.url)
    // The host's own call for ann, with no client nonce (as every call was before schema 3).
    assert.equal(await vm.executeCall({ methodName: 'add', args: [5], userId: 'ann' }), 5)
    const book = new ReceiptBook()
    const honest = await RPCClient.connect(url, { user: 'ann', receipts: book })
    t.after(() => honest.close())
    assert.equal(await honest.call('add', 1), 6)
    assert.equal(book.lengthOf(vm.callLog.key), 3)
    // The attacker says nothing of the schema (as a host before schema 3) and answers add(5) with entry 1.
    const fake = await staleAnswerer(t, vm.callLog.url, url, ['--legacy'])
    const booked = await RPCClient.connect(fake, { user: 'ann', receipts: book })
    t.after(() => booked.close())
    await assert.rejects(booked.call('add', 5), {
      code: 'ERR_BAD_RECEIPT',
      message: /entry 1 is older than this call: a receipt of 3 entries/,
    })
    // The same book, saved and read back (another process's), refuses it too.
    const reread = ReceiptBook.from(JSON.parse(JSON.stringify(book)))
    const later = await RPCClient.connect(fake, { user: 'ann', receipts: reread })
    t.after(() => later.close())
    await assert.rejects(later.call('add', 5), { code: 'ERR_BAD_RECEIPT', message: /older than this call/ })
    // A client with an empty book has nothing to compare with: a log without client nonces cannot
    // show freshness (docs/threat-model.md).
    const blank = await RPCClient.connect(fake, { user: 'ann' })
    t.after(() => blank.close())
    assert.equal(await blank.call('add', 5), 5)
    // A book is hostile input too: an altered receipt in it is refused.
    const altered = JSON.parse(JSON.stringify(book))
    altered.receipts[0].seq = 1
    assert.throws(() => ReceiptBook.from(altered), { code: 'ERR_BAD_RECEIPT' })
    assert.throws(() => ReceiptBook.from({ type: 'other' }), { code: 'ERR_INVALID_ARGUMENT' })
  })

  test('a receipt book across processes (--receipt-book): a host serving two histories of one log is refused with ERR_FORKED and the fork proof', async (t) => {
    const dir = await tempDir(t)
    const book = join(dir, 'book.json')
    const a = await exec(t, COUNTER, ['--dir', join(dir, 'a')])
    assert.equal((await nodevms(['call', a.served.rpcUrl, 'increment', '--user', 'ann', '--receipt-book', book])).stdout.trim(), '1')
    // The host copies its stopped VM's dir and serves both copies: one key, two histories from here.
    await stop(a.child)
    for (const copy of ['b', 'c']) {
      await cp(join(dir, 'a'), join(dir, copy), { recursive: true })
      // Corestore refuses a copied store (its device file names the inode); the host deletes that file.
      await rm(join(dir, copy, 'corestore', 'CORESTORE'))
    }
    const again = await exec(t, COUNTER, ['--dir', join(dir, 'a')])
    const b = await exec(t, COUNTER, ['--dir', join(dir, 'b')])
    const c = await exec(t, COUNTER, ['--dir', join(dir, 'c')])
    assert.equal(again.served.callLogUrl, b.served.callLogUrl)
    const onA = await nodevms(['call', again.served.rpcUrl, 'increment', '--user', 'ann', '--receipt-book', book])
    assert.equal(onA.stdout.trim(), '2', onA.stderr)
    const saved = JSON.parse(await readFile(book, 'utf8'))
    assert.equal(saved.type, 'libvms-receipt-book')
    assert.equal(saved.receipts.length, 1)
    assert.equal(saved.receipts[0].seq, 2)

    const proofFile = join(dir, 'fork.json')
    const onB = await nodevms(['call', b.served.rpcUrl, 'increment', '--user', 'bob', '--receipt-book', book, '--proof', proofFile])
    assert.equal(onB.code, 2, onB.stdout + onB.stderr)
    assert.equal(onB.stdout, '')
    assert.match(onB.stderr, /contradicts a receipt this client already holds.*fork proof written to .*\[ERR_FORKED\]/s)
    const checked = await nodevms(['check-proof', proofFile])
    assert.equal(checked.code, 0, checked.stdout + checked.stderr)
    assert.match(checked.stdout, /holds: log [0-9a-f]{64} signed two different/)
    // The book kept what it held: the first history's receipt.
    assert.equal(JSON.parse(await readFile(book, 'utf8')).receipts[0].seq, 2)

    // The library gives the proof on the error (a third copy: its next entry is at seq 2 too).
    const client = await RPCClient.connect(c.served.rpcUrl, { user: 'bob', receipts: ReceiptBook.from(saved) })
    t.after(() => client.close())
    await assert.rejects(client.call('increment'), (err: RPCError & { proof?: unknown }) => {
      assert.equal(err.code, 'ERR_FORKED')
      assert.equal(checkForkProof(err.proof).holds, true)
      return true
    })
  })

  test('logs written before client nonces verify as before: schema 1, and schema 2 in debug and production mode', async (t) => {
    for (const name of ['schedule0-log.json', 'schema2-debug-log.json', 'schema2-production-log.json']) {
      const { log, entries } = await fixtureLog(t, name)
      assert.equal(entries[0].type === 'init' && entries[0].schema, name.startsWith('schema2') ? 2 : 1)
      const report = await Verifier.verify(log, null)
      assert.equal(report.calls, entries.length - 1, name)
      assert.ok(
        entries.every((e) => e.type !== 'call' || e.clientNonce === undefined),
        `${name}: no entry of an older schema holds a client nonce`,
      )
    }
    // A schema 2 log may not hold a client nonce: no VM of that schema logged one.
    const { log } = await fixtureLog(t, 'schema2-debug-log.json', (entries) => {
      ;(entries[2] as CallEntry).clientNonce = 'ab'.repeat(16)
    })
    await assert.rejects(Verifier.verify(log, null), { code: 'ERR_DIVERGENCE', seq: 2, field: 'clientNonce' })
  })

  test(DHT_SCENARIO.replace('over the DHT', 'the DHT scenario runs in a loopback-only network namespace:'), async (t) => {
    await runInLoopbackNamespace(t, 'test/stale-answers.test.ts', [DHT_SCENARIO], 240_000)
  })
} else {
  test(DHT_SCENARIO, async (t) => {
    const env = await loopbackTestnet(t)
    const bootstrap = env.LIBVMS_BOOTSTRAP
    const dir = await tempDir(t)
    const keyFile = join(dir, 'me.key')
    assert.equal((await nodevms(['keygen', '--out', keyFile])).code, 0)

    for (const auth of ['debug', 'production'] as const) {
      const who = auth === 'debug' ? ['--user', 'ann'] : ['--key', keyFile]
      // The host is reachable over WebSocket only; the attacker copies its log, then the host stops.
      const host = await exec(t, COUNTER, ['--dir', join(dir, auth), '--auth', auth], env)
      assert.equal((await nodevms(['call', host.served.rpcUrl, 'increment', ...who], { env })).stdout.trim(), '1')
      const { callLogUrl } = host.served
      // The attacker holds no key of the VM: it announces the log's topic and answers by key.
      await staleAnswerer(t, callLogUrl, host.served.rpcUrl, ['--swarm'], env)
      await stop(host.child)
      const called = await nodevms(['call', callLogUrl, 'increment', ...who, '--bootstrap', bootstrap, '--timeout', '60000'], { env })
      assert.equal(called.code, 2, `${auth}: ${called.stdout}${called.stderr}`)
      assert.equal(called.stdout, '')
      assert.match(
        called.stderr,
        auth === 'debug' ? /client nonce.*\[ERR_BAD_RECEIPT\]/s : /not the call this client signed.*\[ERR_BAD_RECEIPT\]/s,
      )
      if (auth === 'debug') {
        const client = await RPCClient.connect(callLogUrl, { user: 'ann', swarm: { bootstrap } })
        t.after(() => client.close())
        await assert.rejects(client.call('increment'), { code: 'ERR_BAD_RECEIPT', message: /client nonce/ })
        await client.close()
      }
    }
  })
}
