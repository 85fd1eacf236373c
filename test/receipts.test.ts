/**
 * Receipts (src/ledger/receipts.ts): Hypercore's own proof that an entry is at a seq of a log of a
 * given length, signed by the log's key, checkable with nothing but the receipt.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import {
  type CallEntry,
  CallLog,
  callerIdOf,
  generateKeyPair,
  type LogEntry,
  ReceiptError,
  type RPCError,
  Verifier,
  VM,
} from '../src/index.js'
import { createReceipt, type Receipt, verifyReceipt } from '../src/ledger/receipts.js'
import { exec, nodevms, SCRIPTS, stop } from './cli-helpers.js'
import { deployVM, tempDir } from './helpers.js'
import { connect, serve } from './rpc-helpers.js'

const COUNTER = `let n = 0
exports.inc = (by) => { n += by; return n }
exports.note = (text) => System.files.writeFile('/note', text)`

function rejectsAs(pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof ReceiptError, `expected a ReceiptError, got ${String(err)}`)
    assert.equal(err.code, 'ERR_BAD_RECEIPT')
    assert.match(err.message, pattern)
    return true
  }
}

test('a receipt proves its entry at its seq, signed by the log, and needs nothing but itself', async (t) => {
  const vm = await deployVM(t, COUNTER)
  await vm.executeCall({ methodName: 'inc', args: [2], userId: 'alice' })
  await vm.executeCall({ methodName: 'note', args: ['hello'] })
  await vm.executeCall({ methodName: 'inc', args: [3], userId: 'bob' })
  for (let seq = 0; seq < vm.callLog.length; seq++) {
    const receipt = await createReceipt(vm.callLog, seq)
    const proven = verifyReceipt(JSON.parse(JSON.stringify(receipt)))
    assert.equal(proven.log, vm.callLog.key)
    assert.equal(proven.seq, seq)
    assert.equal(proven.length, vm.callLog.length)
    assert.deepEqual(proven.entry, await vm.callLog.get(seq))
  }
  // A stock Node process with only the receipt (no storage, no network) reaches the same verdict.
  const receipt = await createReceipt(vm.callLog, 3)
  const checked = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `import('${new URL('../src/ledger/receipts.ts', import.meta.url).href}').then((m) => { const p = m.verifyReceipt(JSON.parse(process.argv[1])); console.log(JSON.stringify([p.seq, p.entry.result])) })`,
      JSON.stringify(receipt),
    ],
    { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 },
  )
  assert.equal(checked.status, 0, checked.stderr)
  assert.deepEqual(JSON.parse(checked.stdout), [3, 5])
})

test('calls stored in one group share the signed length of their receipts', async (t) => {
  const vm = await deployVM(t, COUNTER)
  const before = vm.callLog.length
  await Promise.all(Array.from({ length: 20 }, (_, i) => vm.executeCall({ methodName: 'inc', args: [i] })))
  const length = vm.callLog.length
  for (let seq = before; seq < length; seq++) assert.equal(verifyReceipt(await createReceipt(vm.callLog, seq, length)).length, length)
})

test('receipts of the calls just logged are built from memory, byte for byte the proof Hypercore builds from storage', async (t) => {
  const vm = await deployVM(t, COUNTER)
  const hypercoreProof = requireHere('hypercore/lib/fully-remote-proof.js').proof
  await createReceipt(vm.callLog, 0) // the first receipt asked for: from then on the log keeps recent nodes
  let fromMemory = 0
  for (let round = 0; round < 12; round++) {
    // Groups of 1 to 12 calls; every third round writes a file, so its group is an atomic commit.
    const calls = Array.from({ length: 1 + round }, (_, i) =>
      round % 3 === 2 && i === 0
        ? vm.executeCall({ methodName: 'note', args: [`round ${round}`] })
        : vm.executeCall({ methodName: 'inc', args: [i] }),
    )
    await Promise.all(calls)
    const length = vm.callLog.length
    for (let seq = Math.max(0, length - 20); seq < length; seq++) {
      const block = (await vm.callLog.core.get(seq, { valueEncoding: 'binary' })) as unknown as Buffer
      const stock = (await hypercoreProof(vm.callLog.core, { index: seq, block, upgrade: { start: 0, length } })) as Buffer
      const recent = vm.callLog.recentProof(seq, block)
      if (recent === null) continue
      fromMemory++
      assert.equal(recent.toString('hex'), stock.toString('hex'), `seq ${seq} of ${length}`)
    }
    assert.ok(vm.callLog.recentProof(length - 1, Buffer.from('x')) !== null, `the newest entry's nodes are in memory (length ${length})`)
  }
  assert.ok(fromMemory > 100, `${fromMemory} proofs compared`)
  // After an append it did not see (a truncation, here), it falls back to Hypercore, then catches up.
  await vm.callLog.core.truncate(vm.callLog.length - 1)
  assert.equal(vm.callLog.recentProof(1, Buffer.from('x')), null)
})

test('a receipt altered in any part does not hold: each failure is ERR_BAD_RECEIPT saying what', async (t) => {
  const vm = await deployVM(t, COUNTER)
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.executeCall({ methodName: 'inc', args: [2] })
  const receipt = await createReceipt(vm.callLog, 1)
  const other = await deployVM(t, COUNTER)
  const foreign = await createReceipt(other.callLog, 0)
  const proof = Buffer.from(receipt.proof, 'base64')
  const flipped = (at: number) => {
    const copy = Buffer.from(proof)
    copy[at] ^= 0x01
    return copy.toString('base64')
  }
  const cases: [string, unknown, RegExp][] = [
    ['another seq', { ...receipt, seq: 2 }, /not of entry 2/],
    ['another length', { ...receipt, length: 5 }, /not of a log of length 5/],
    ['another log', { ...receipt, log: other.callLog.key }, /signed for log/],
    ["another log's proof", { ...receipt, proof: foreign.proof }, /signed for log|not of entry/],
    ['not a receipt', { ...receipt, type: 'x' }, /not a LibVMS receipt/],
    ['a future version', { ...receipt, version: 2 }, /version 2/],
    ['a seq past its length', { ...receipt, seq: 9, length: 3 }, /not a position/],
    ['a proof that is not base64 of a proof', { ...receipt, proof: 'AAAA' }, /does not decode/],
    ['a proof of 100 MB', { ...receipt, proof: 'A'.repeat(100 * 1024 * 1024) }, /too large/],
    ['null', null, /not a LibVMS receipt/],
  ]
  for (const [name, bad, pattern] of cases) assert.throws(() => verifyReceipt(bad), rejectsAs(pattern), name)
  // One byte changed anywhere in the proof (the entry, a Merkle node, the signature, the manifest).
  let refused = 0
  for (let at = 0; at < proof.byteLength; at++) {
    try {
      const proven = verifyReceipt({ ...receipt, proof: flipped(at) })
      // A byte that decodes to the same proof (unused bits) may pass, but never with another entry.
      assert.deepEqual(proven.entry, await vm.callLog.get(1), `byte ${at}`)
    } catch (err) {
      assert.ok(err instanceof ReceiptError, `byte ${at}: ${String(err)}`)
      refused++
    }
  }
  assert.ok(refused > proof.byteLength * 0.9, `${refused} of ${proof.byteLength} one-byte changes refused`)
})

test('a receipt stays a signed statement after the host rewrites its log: the old entry and the new one are both provable', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const vm = new VM(COUNTER)
  await vm.deploy({ dir })
  await vm.executeCall({ methodName: 'inc', args: [1] })
  const told = await createReceipt(vm.callLog, 1)
  // The host truncates its log and appends another entry at seq 1, with its own key.
  const entries = (await vm.callLog.list()) as LogEntry[]
  await vm.close()
  const log = await CallLog.open(dir)
  t.after(() => log.close())
  await log.core.truncate(1)
  await log.append({ ...entries[1], result: 1000 } as unknown as LogEntry)
  const now = await createReceipt(log, 1)
  const [a, b] = [verifyReceipt(told), verifyReceipt(now)]
  assert.equal(a.log, b.log)
  assert.equal(a.seq, b.seq)
  assert.notDeepEqual(a.entry, b.entry, 'one key signed two different entries at one seq')
  assert.ok(b.fork > a.fork, 'the rewrite shows as a new fork of the log')
})

test('receipts are plain JSON: what createReceipt returns is what verifyReceipt reads', async (t) => {
  const vm = await deployVM(t, COUNTER)
  const receipt: Receipt = await createReceipt(vm.callLog, 0)
  assert.deepEqual(Object.keys(receipt).sort(), ['length', 'log', 'proof', 'seq', 'type', 'version'])
  assert.equal(typeof receipt.proof, 'string')
})

// ---- receipts over RPC ----

/** A WebSocket proxy on 127.0.0.1 that passes frames both ways, rewriting the host's answers with `edit`. */
async function proxy(t: TestContext, target: string, edit: (frame: string) => string): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => wss.once('listening', resolve))
  t.after(() => new Promise((resolve) => wss.close(resolve)))
  wss.on('connection', (client) => {
    const upstream = new WebSocket(target)
    const early: string[] = []
    upstream.on('open', () => {
      for (const frame of early.splice(0)) upstream.send(frame)
    })
    client.on('message', (data: WebSocket.RawData) => {
      if (upstream.readyState === WebSocket.OPEN) upstream.send(data.toString())
      else early.push(data.toString())
    })
    upstream.on('message', (data: WebSocket.RawData) => client.send(edit(data.toString())))
    client.on('close', () => upstream.terminate())
    upstream.on('close', () => client.terminate())
  })
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`
}

const BANK = `let balance = 100
exports.spend = (n) => { if (n > balance) throw new Error('not enough'); balance -= n; return balance }
exports.bytes = () => new Uint8Array([1, 2, 3])`

test('an RPC client checks the receipt of every answer, keeps it, and it proves the entry the log holds', async (t) => {
  const vm = await deployVM(t, BANK)
  const server = await serve(t, { '/': vm })
  const seen: number[] = []
  const client = await connect(t, String(server.url), { user: 'alice', onReceipt: (_r, call) => seen.push(call.seq) })
  assert.equal(await client.call('spend', 30), 70)
  assert.deepEqual(await client.call('bytes'), new Uint8Array([1, 2, 3]))
  // A logged failure carries its receipt too, and is checked the same way.
  await assert.rejects(client.call('spend', 1000), (err: RPCError) => err.code === 'ERR_CALL_FAILED' && err.seq === 3)
  assert.deepEqual(seen, [1, 2, 3])
  assert.equal(client.receipts.length, 3)
  for (const [i, receipt] of client.receipts.entries()) assert.deepEqual(verifyReceipt(receipt).entry, await vm.callLog.get(i + 1))
  // A client that does not ask gets plain JSON-RPC: no receipt in the answer.
  const plain = await connect(t, String(server.url), { receipts: false })
  assert.equal(await plain.call('spend', 1), 69)
  assert.equal(plain.receipts.length, 0)
})

test('an answer changed between host and client does not match its receipt: ERR_BAD_RECEIPT', async (t) => {
  const vm = await deployVM(t, BANK)
  const server = await serve(t, { '/': vm })
  // The man in the middle (or a lying host) turns the balance 70 into 700.
  const url = await proxy(t, String(server.url), (frame) => frame.replace('"result":70', '"result":700'))
  const client = await connect(t, url, { user: 'alice' })
  await assert.rejects(client.call('spend', 30), (err: RPCError) => {
    assert.equal(err.code, 'ERR_BAD_RECEIPT')
    assert.match(err.message, /records another result/)
    return true
  })
  // Dropping the receipt is caught as well; so is a receipt of another call.
  const dropping = await connect(t, await proxy(t, String(server.url), (frame) => frame.replace(/,"receipt":\{.*\}\}$/, '}')), {
    user: 'alice',
  })
  await assert.rejects(dropping.call('spend', 1), { code: 'ERR_BAD_RECEIPT', message: /no receipt/ })
  let first: string | null = null
  const replaying = await connect(
    t,
    await proxy(t, String(server.url), (frame) => {
      const receipt = /,"receipt":(\{.*\})\}$/.exec(frame)?.[1]
      if (!receipt) return frame
      first ??= receipt
      return frame.replace(receipt, first)
    }),
    { user: 'alice' },
  )
  assert.equal(await replaying.call('spend', 1), 68)
  // The first call's entry holds the first call's client nonce, not this one's.
  await assert.rejects(replaying.call('spend', 1), { code: 'ERR_BAD_RECEIPT', message: /client nonce/ })
})

test('production mode: the receipt must show the very call this client signed', async (t) => {
  const vm = await deployVM(t, BANK, { auth: 'production' })
  const server = await serve(t, { '/': vm })
  const keyPair = generateKeyPair()
  const client = await connect(t, String(server.url), { keyPair })
  assert.equal(await client.call('spend', 5), 95)
  const { entry } = verifyReceipt(client.receipts[0])
  assert.equal((entry as CallEntry).caller, callerIdOf(keyPair))
  assert.ok((entry as CallEntry).signed)
})

// ---- checking receipts later, and fork proofs ----

test('a kept receipt checked against the log later: it holds on an honest log; after a rewrite, a fork proof anyone can check offline', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const vm = new VM(COUNTER)
  await vm.deploy({ dir })
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.executeCall({ methodName: 'inc', args: [2] })
  const kept = [await createReceipt(vm.callLog, 1), await createReceipt(vm.callLog, 2)]
  await vm.executeCall({ methodName: 'inc', args: [3] })
  for (const receipt of kept)
    assert.deepEqual(await Verifier.checkReceipt(vm.callLog, receipt), { holds: true, seq: receipt.seq, length: 3 })
  // Two receipts of an honest log make no proof, in either order; neither does an altered one.
  const honest = { type: 'libvms-fraud-proof', version: 1, kind: 'fork', receipts: [kept[0], await createReceipt(vm.callLog, 1)] }
  assert.equal((await Verifier.checkProof(honest)).holds, false)
  assert.equal((await Verifier.checkProof({ ...honest, receipts: [...honest.receipts].reverse() })).holds, false)

  // The host stops, truncates its log to seq 2 and writes another entry there, with its own key.
  const entries = (await vm.callLog.list()) as LogEntry[]
  await vm.close()
  const log = await CallLog.open(dir)
  await log.core.truncate(2)
  await log.append({ ...entries[2], result: 999 } as unknown as LogEntry)
  const checked = await Verifier.checkReceipt(log, kept[1])
  assert.ok(checked.holds === false && checked.proof, 'a fork proof')
  const proof = JSON.parse(JSON.stringify(checked.proof))
  // The receipt of seq 1 still holds for its entry, but the log was truncated since: a proof too.
  const older = await Verifier.checkReceipt(log, kept[0])
  assert.ok(older.holds === false && older.proof, 'the truncation itself is proven')
  await log.close()

  // Checked in a fresh process that has only the file: no storage, no network.
  const offline = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `import('${new URL('../src/ledger/receipts.ts', import.meta.url).href}').then((m) => console.log(JSON.stringify(m.checkForkProof(JSON.parse(process.argv[1])))))`,
      JSON.stringify(proof),
    ],
    { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 },
  )
  assert.equal(offline.status, 0, offline.stderr)
  const verdict = JSON.parse(offline.stdout)
  assert.equal(verdict.holds, true)
  assert.match(verdict.what, /two different entries at seq 2|truncated/)
  // One byte changed in the proof file, and it no longer holds.
  const altered = structuredClone(proof)
  const bytes = Buffer.from(altered.receipts[1].proof, 'base64')
  bytes[bytes.length - 10] ^= 0x01
  altered.receipts[1].proof = bytes.toString('base64')
  assert.equal((await Verifier.checkProof(altered)).holds, false)
  assert.equal((await Verifier.checkProof({ ...proof, version: 9 })).holds, false)
  assert.equal((await Verifier.checkProof('not a proof')).holds, false)
})

test('a host that forks gives two clients conflicting receipts for one seq: the two receipts are a fork proof', async (t) => {
  // The host copies its stopped VM's dir and serves both copies: one key, two histories.
  const work = await tempDir(t)
  const original = join(work, 'a')
  const first = new VM(COUNTER)
  await first.deploy({ dir: original })
  await first.executeCall({ methodName: 'inc', args: [1] })
  await first.close()
  const copy = join(work, 'b')
  await cp(original, copy, { recursive: true })
  // Corestore refuses a copied store (its device file names the inode); the host deletes that file.
  await rm(join(copy, 'corestore', 'CORESTORE'))
  const forks = [new VM(COUNTER), new VM(COUNTER)]
  await forks[0].deploy({ dir: original })
  await forks[1].deploy({ dir: copy })
  t.after(() => Promise.all(forks.map((vm) => vm.close())))
  assert.equal(forks[0].callLog.key, forks[1].callLog.key)
  const alice = await connect(t, String((await serve(t, { '/': forks[0] })).url), { user: 'alice' })
  const bob = await connect(t, String((await serve(t, { '/': forks[1] })).url), { user: 'bob' })
  // Each client's own check passes: each copy's log is signed by the key and holds its call.
  assert.equal(await alice.call('inc', 10), 11)
  assert.equal(await bob.call('inc', 100), 101)
  const [told, toldOther] = [alice.receipts[0], bob.receipts[0]]
  assert.equal(told.seq, 2)
  assert.equal(toldOther.seq, 2)

  // Side by side, the two receipts are what no append-only log signs.
  const compared = Verifier.compareReceipts(told, toldOther)
  assert.ok(compared.holds, 'the receipts conflict')
  assert.match(compared.what, /two different entries at seq 2/)
  const proof = JSON.parse(JSON.stringify(compared.proof))
  assert.equal((await Verifier.checkProof(proof)).holds, true)
  // Either copy of the log, asked about the other client's receipt, gives a proof as well.
  const against = await Verifier.checkReceipt(forks[0].callLog, toldOther)
  assert.ok(against.holds === false && against.proof, 'a fork proof from the log')
  assert.equal((await Verifier.checkProof(against.proof)).holds, true)
  // Receipts that agree prove nothing: one client's receipt beside itself, or a later one of its log.
  assert.equal(await alice.call('inc', 1), 12)
  assert.equal(Verifier.compareReceipts(told, alice.receipts[1]).holds, false)
  assert.equal(Verifier.compareReceipts(told, told).holds, false)
})

test('command line, across processes: call --receipt, check-receipt against the live host, the host rewrites its log while stopped, check-receipt writes a fork proof, check-proof confirms it from the file alone', async (t) => {
  const work = await tempDir(t)
  const dir = join(work, 'host')
  const host = await exec(t, join(SCRIPTS, 'counter.js'), ['--dir', dir])
  const receiptFile = join(work, 'receipt.json')
  const called = await nodevms(['call', host.served.rpcUrl, 'increment', '--receipt', receiptFile])
  assert.equal(called.code, 0, called.stderr)
  assert.equal(called.stdout.trim(), '1')
  // Pinned to another log, the call is refused before it is made.
  const pinned = await nodevms(['call', host.served.rpcUrl, 'increment', '--log', `hyper://${'ab'.repeat(32)}`])
  assert.equal(pinned.code, 2, pinned.stdout + pinned.stderr)
  assert.match(pinned.stderr, /ERR_BAD_RECEIPT/)
  const live = await nodevms(['check-receipt', receiptFile, host.served.rpcUrl])
  assert.equal(live.code, 0, live.stdout + live.stderr)
  assert.match(live.stdout, /^holds: entry 1 /)

  // The host stops, and rewrites entry 1 with its own key: the client was told 1, the log now says 5.
  await stop(host.child)
  const log = await CallLog.open(dir)
  const entries = (await log.list()) as LogEntry[]
  await log.core.truncate(1)
  await log.append({ ...entries[1], result: 5 } as unknown as LogEntry)
  await log.close()
  const proofFile = join(work, 'proof.json')
  const rewritten = await nodevms(['check-receipt', receiptFile, dir, '--proof', proofFile])
  assert.equal(rewritten.code, 1, rewritten.stdout + rewritten.stderr)
  assert.match(rewritten.stdout, /does not hold: .*fork proof written/)

  const proven = await nodevms(['check-proof', proofFile])
  assert.equal(proven.code, 0, proven.stdout + proven.stderr)
  assert.match(proven.stdout, /^holds: log [0-9a-f]{64} (signed two different entries at seq 1|was truncated)/)
  const json = await nodevms(['check-proof', proofFile, '--json'])
  assert.equal(JSON.parse(json.stdout).holds, true)

  // A proof altered by one byte does not hold; a file that is no proof is an error.
  const proof = JSON.parse(await readFile(proofFile, 'utf8'))
  const bytes = Buffer.from(proof.receipts[1].proof, 'base64')
  bytes[bytes.length - 10] ^= 0x01
  proof.receipts[1].proof = bytes.toString('base64')
  await writeFile(proofFile, JSON.stringify(proof))
  assert.equal((await nodevms(['check-proof', proofFile])).code, 1)
  assert.equal((await nodevms(['check-proof', receiptFile])).code, 2)
})

// ---- attacks found in review ----

const requireHere = createRequire(import.meta.url)
const hypercoreMessages = requireHere('hypercore/lib/messages.js')
const { MerkleTree } = requireHere('hypercore/lib/merkle-tree.js')
const compact = requireHere('compact-encoding')

/**
 * A receipt of any bytes at any seq, made from one genuine receipt without the log's key: the signed
 * roots go in as the upgrade's nodes and the block comes with no path to them.
 */
function forgeReceipt(genuine: Receipt, seq: number, bytes: Buffer): Receipt {
  const buffer = Buffer.from(genuine.proof, 'base64')
  const state = { buffer, start: 0, end: buffer.byteLength }
  const discoveryKey = compact.fixed32.decode(state)
  const proof = hypercoreMessages.wire.data.decode(state)
  const blank = { fork: 0, roots: [], length: 0, signature: null, ancestors: 0, byteLength: 0, prologue: proof.manifest.prologue }
  const roots = MerkleTree.verifyFullyRemote(blank, proof).roots
  const forged = {
    ...proof,
    request: 0,
    block: { index: seq, value: bytes, nodes: [] },
    upgrade: { ...proof.upgrade, nodes: roots, additionalNodes: [] },
  }
  const out = { buffer: null as Buffer | null, start: 0, end: 0 }
  compact.fixed32.preencode(out, discoveryKey)
  hypercoreMessages.wire.data.preencode(out, forged)
  out.buffer = Buffer.allocUnsafe(out.end)
  compact.fixed32.encode(out, discoveryKey)
  hypercoreMessages.wire.data.encode(out, forged)
  return { ...genuine, seq, proof: out.buffer.toString('base64') }
}

test("a receipt whose entry is not under the log's signed roots does not hold (a forgery from a genuine receipt), nor can it frame an honest host", async (t) => {
  const vm = await deployVM(t, COUNTER)
  for (let i = 0; i < 4; i++) await vm.executeCall({ methodName: 'inc', args: [i] })
  const genuine = await createReceipt(vm.callLog, 1)
  for (let seq = 0; seq < vm.callLog.length; seq++) {
    const entry = (await vm.callLog.get(seq)) as unknown as Record<string, unknown>
    const forged = forgeReceipt(genuine, seq, Buffer.from(JSON.stringify({ ...entry, cost: 123456 })))
    assert.throws(() => verifyReceipt(forged), rejectsAs(/not in the tree the log signed|did not sign/), `seq ${seq}`)
    const framing = { type: 'libvms-fraud-proof', version: 1, kind: 'fork', receipts: [forged, await createReceipt(vm.callLog, seq)] }
    assert.equal((await Verifier.checkProof(framing)).holds, false)
  }
  // Trailing bytes and non-canonical base64 do not make another receipt either.
  const bytes = Buffer.from(genuine.proof, 'base64')
  assert.throws(
    () => verifyReceipt({ ...genuine, proof: Buffer.concat([bytes, Buffer.alloc(8)]).toString('base64') }),
    rejectsAs(/follow the proof/),
  )
  assert.throws(
    () => verifyReceipt({ ...genuine, proof: `${genuine.proof.slice(0, 10)}!${genuine.proof.slice(10)}` }),
    rejectsAs(/canonical base64/),
  )
})

test('a client pins the log it expects, refuses a receipt it already holds, and a logged failure without a receipt', async (t) => {
  const vm = await deployVM(t, BANK)
  const other = await deployVM(t, BANK)
  const server = await serve(t, { '/': vm, '/other': other })
  await assert.rejects(connect(t, `${String(server.url)}/other`, { callLog: vm.callLog.url }), {
    code: 'ERR_BAD_RECEIPT',
    message: /not the expected/,
  })
  const pinned = await connect(t, String(server.url), { callLog: vm.callLog.url })
  assert.equal(await pinned.call('spend', 1), 99)
  // A proxy that answers the second identical call with the first call's answer and receipt.
  let firstAnswer: string | null = null
  const replaying = await connect(
    t,
    await proxy(t, String(server.url), (frame) => {
      if (!frame.includes('"receipt"')) return frame
      firstAnswer ??= frame
      return firstAnswer.replace(/"id":\d+/, /"id":\d+/.exec(frame)?.[0] ?? '')
    }),
  )
  assert.equal(await replaying.call('spend', 0), 99)
  // Its entry holds the first call's client nonce (and its seq was already taken: what a log before
  // schema 3, whose entries hold no nonce, is caught by).
  await assert.rejects(replaying.call('spend', 0), { code: 'ERR_BAD_RECEIPT', message: /client nonce/ })
  // A proxy that turns an answer into a made-up script failure with no receipt.
  const faking = await connect(
    t,
    await proxy(t, String(server.url), (frame) =>
      frame.includes('"receipt"')
        ? `{"jsonrpc":"2.0",${/"id":\d+/.exec(frame)?.[0]},"error":{"code":-32000,"message":"account frozen","data":{"name":"Error","code":"ERR_CALL_FAILED"}}}`
        : frame,
    ),
  )
  await assert.rejects(faking.call('spend', 0), { code: 'ERR_BAD_RECEIPT', message: /no receipt of a failure/ })
})
