/**
 * Guards on hostile input that no other test pinned down: each test here fails if the check it names
 * is taken out of src/ (taken out of a copy of the code, each had left the whole suite passing).
 *
 *  - a fork proof made of receipts of two different logs (receipts.ts, checkForkProof);
 *  - an RPC answer whose receipt is of another VM's log, through a real proxy (rpc-client.ts, checkReceipt);
 *  - a real Merkle node standing for an entry a proof also gives, altered (receipts.ts, verifyLogPart).
 *
 * The guards of a reopen's snapshots are in checkpoints.test.ts, of a parallel audit's verdict in
 * parallel-audit.test.ts, of file names in the explorer in explorer.test.ts, beside the helpers they use.
 */
import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { archiveBlocks } from '../src/audit/checkpoint-starts.js'
import { type CallEntry, type ExecutionProof, ReceiptError, type RPCError, RPCServer, Verifier, type VM } from '../src/index.js'
import {
  checkForkProof,
  compareReceipts,
  createReceipt,
  FRAUD_PROOF_TYPE,
  FRAUD_PROOF_VERSION,
  type Receipt,
  standInNodes,
  verifyLogPart,
  verifyReceipt,
} from '../src/ledger/receipts.js'
import { encodeSnapshot } from '../src/ledger/snapshot.js'
import { SnapshotStore } from '../src/ledger/snapshot-store.js'
import { deployVM } from './helpers.js'
import { connect } from './rpc-helpers.js'

const COUNTER = `let n = 0
exports.add = (k) => { n += k; return n }`

// ---- 1. fork proofs: one log, or no proof ----

test('receipts of two different logs at the same seq make no fork proof, in either order: no one frames a host with a receipt of a log of their own', async (t) => {
  const host = await deployVM(t, COUNTER)
  const mine = await deployVM(t, COUNTER)
  await host.executeCall({ methodName: 'add', args: [1], userId: 'alice' })
  await mine.executeCall({ methodName: 'add', args: [1000], userId: 'alice' })
  const told = await createReceipt(host.callLog, 1)
  const framing = await createReceipt(mine.callLog, 1)
  // Each receipt holds on its own: the same seq and length, different entries, different logs.
  const [a, b] = [verifyReceipt(told), verifyReceipt(framing)]
  assert.equal(a.seq, b.seq)
  assert.equal(a.length, b.length)
  assert.notEqual(a.log, b.log)
  assert.ok(!a.bytes.equals(b.bytes), 'two different entries at seq 1')
  const notAProof = { holds: false, why: 'its receipts are of two different logs' }
  for (const receipts of [
    [told, framing],
    [framing, told],
  ] as [Receipt, Receipt][]) {
    const proof = { type: FRAUD_PROOF_TYPE, version: FRAUD_PROOF_VERSION, kind: 'fork', receipts }
    assert.deepEqual(checkForkProof(proof), notAProof)
    assert.deepEqual(checkForkProof(JSON.parse(JSON.stringify(proof))), notAProof, 'as a file')
    assert.deepEqual(compareReceipts(receipts[0], receipts[1]), notAProof)
    assert.deepEqual(await Verifier.checkProof(proof), notAProof)
    assert.deepEqual(Verifier.compareReceipts(receipts[0], receipts[1]), notAProof)
  }
})

// ---- 2. an answer with another VM's receipt, through a proxy ----

const BANK = `let balance = 100
exports.spend = (n) => { if (n > balance) throw new Error('not enough'); balance -= n; return balance }`

/**
 * A WebSocket proxy on 127.0.0.1 in front of two hosts: every frame of its client goes, verbatim, to
 * host A and to host B (each over its own connection, so each gets the same handshake and calls).
 * The client gets A's answers; with `swap`, each answer's `receipt` is replaced by B's receipt for
 * the same call (same id). `swapped` records each receipt replaced and what replaced it.
 */
async function twoHostProxy(t: TestContext, hostA: string, hostB: string, swap: boolean) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise((resolve) => wss.once('listening', resolve))
  const sockets = new Set<WebSocket>()
  const swapped: { from: Receipt; to: Receipt }[] = []
  t.after(async () => {
    for (const socket of sockets) socket.terminate()
    await new Promise((resolve) => wss.close(resolve))
  })
  wss.on('connection', (client) => {
    sockets.add(client)
    const upstreams = [hostA, hostB].map((url) => {
      const upstream = new WebSocket(url, { perMessageDeflate: false })
      sockets.add(upstream)
      const early: [WebSocket.RawData, boolean][] = []
      upstream.on('open', () => {
        for (const [data, isBinary] of early.splice(0)) upstream.send(data, { binary: isBinary })
      })
      upstream.on('close', () => client.terminate())
      upstream.on('error', () => client.terminate())
      return { upstream, early }
    })
    client.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      for (const { upstream, early } of upstreams) {
        if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary })
        else early.push([data, isBinary])
      }
    })
    client.on('close', () => {
      for (const { upstream } of upstreams) upstream.terminate()
    })
    // Each answer, by id, until both hosts have given theirs.
    const answers = new Map<number, { a?: string; b?: string }>()
    const forward = (id: number) => {
      const both = answers.get(id)
      if (both?.a === undefined || both.b === undefined) return
      answers.delete(id)
      const fromA = JSON.parse(both.a) as { receipt?: Receipt }
      const fromB = JSON.parse(both.b) as { receipt?: Receipt }
      if (!swap || fromA.receipt === undefined || fromB.receipt === undefined) {
        client.send(both.a)
        return
      }
      swapped.push({ from: fromA.receipt, to: fromB.receipt })
      client.send(JSON.stringify({ ...fromA, receipt: fromB.receipt }))
    }
    for (const [i, { upstream }] of upstreams.entries()) {
      upstream.on('message', (data: WebSocket.RawData) => {
        const text = data.toString()
        const id = (JSON.parse(text) as { id?: unknown }).id
        if (typeof id !== 'number') {
          if (i === 0) client.send(text)
          return
        }
        const both = answers.get(id) ?? {}
        if (i === 0) both.a = text
        else both.b = text
        answers.set(id, both)
        forward(id)
      })
    }
  })
  return { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`, swapped }
}

/** A server on 127.0.0.1 with `vm` mounted at '/'; its ws:// URL. */
async function serveAt(t: TestContext, vm: VM): Promise<string> {
  const server = new RPCServer()
  server.mount('/', vm)
  await server.listen(0)
  t.after(() => server.close())
  return String(server.url)
}

test("an RPC client not told the VM's log refuses an answer whose receipt is of another VM's log, though method, args, caller and result all match", async (t) => {
  // Two hosts serve the same script, in the same state (every call goes to both).
  const vmA = await deployVM(t, BANK)
  const vmB = await deployVM(t, BANK)
  const [hostA, hostB] = [await serveAt(t, vmA), await serveAt(t, vmB)]

  // Control: the proxy passes A's own receipt, and the answer is taken.
  const honest = await twoHostProxy(t, hostA, hostB, false)
  const control = await connect(t, honest.url, { user: 'alice' })
  assert.equal(await control.call('spend', 30), 70)
  assert.equal(control.receipts.length, 1)
  assert.equal(control.receipts[0].log, vmA.callLog.key)
  assert.equal(vmB.callLog.length, 2, 'host B ran the same call')

  // The attack: A's answer, with B's receipt of the same call.
  const lying = await twoHostProxy(t, hostA, hostB, true)
  const client = await connect(t, lying.url, { user: 'alice' })
  assert.equal(client.backendInfo.callLogUrl, vmA.callLog.url, "the handshake named A's log")
  await assert.rejects(client.call('spend', 20), (err: RPCError) => {
    assert.equal(err.code, 'ERR_BAD_RECEIPT')
    assert.ok(err.message.includes(`the receipt is of log ${vmB.callLog.key}`), err.message)
    assert.ok(err.message.includes(vmA.callLog.key), err.message)
    return true
  })
  assert.equal(client.receipts.length, 0, 'the refused receipt is not kept')
  // What the client was handed: a genuine receipt of B's log, of the very call it sent, answered alike.
  assert.equal(lying.swapped.length, 1)
  const [fromA, fromB] = [verifyReceipt(lying.swapped[0].from), verifyReceipt(lying.swapped[0].to)]
  assert.equal(fromA.log, vmA.callLog.key)
  assert.equal(fromB.log, vmB.callLog.key)
  assert.equal(fromA.seq, fromB.seq)
  for (const field of ['type', 'method', 'args', 'caller', 'result'] as const) {
    assert.deepEqual((fromB.entry as CallEntry)[field], (fromA.entry as CallEntry)[field], field)
  }
  assert.deepEqual((fromA.entry as CallEntry).result, 50)
})

// ---- 3. a proof's given entries stay under the one signature ----

const NOTES = `let n = 0
exports.add = async (k) => {
  n += k
  await System.files.writeFile('/n.txt', String(n))
  return { n, by: System.caller.id }
}`

/** A VM with `calls` calls and a checkpoint every 5, every snapshot kept (written in the background: waited for). */
async function checkpointedVM(t: TestContext, calls: number): Promise<{ vm: VM; snapshots: SnapshotStore }> {
  const vm = await deployVM(t, NOTES, { checkpoints: { every: 5, keep: 100 } })
  for (let i = 1; i <= calls; i++) await vm.executeCall({ methodName: 'add', args: [i], userId: `u${i % 2}` })
  const snapshots = new SnapshotStore(vm.dir as string, 100)
  const last = calls - (calls % 5)
  for (let tries = 0; tries < 100 && !(await snapshots.seqs()).includes(last); tries++) await new Promise((r) => setTimeout(r, 20))
  assert.ok((await snapshots.seqs()).includes(last), `the snapshot of seq ${last} was written`)
  return { vm, snapshots }
}

/** Entry `seq`'s bytes with its result replaced: what a framer would put in a proof. */
async function alteredBlock(vm: VM, seq: number): Promise<Buffer> {
  const entry = JSON.parse((await vm.callLog.block(seq)).toString()) as CallEntry
  return Buffer.from(JSON.stringify({ ...entry, result: { n: -1, by: 'mallory' } }))
}

test('verifyLogPart refuses a real Merkle node of the log that stands for an entry also given: an altered given entry cannot hide under it', async (t) => {
  const { vm } = await checkpointedVM(t, 12)
  const seq = 12
  const receipt = await createReceipt(vm.callLog, seq)
  const block = (s: number) => vm.callLog.block(s)
  // As an execution proof from checkpoint 8 gives them: entry 0, entries 8 to 11, and the prover's own
  // stand-ins for entries 1 to 7 (nodes the log really holds, under its signature).
  const given = new Map<number, Buffer>([[0, await block(0)]])
  for (let s = 8; s < seq; s++) given.set(s, await block(s))
  const standIns = await standInNodes(vm.callLog, seq, receipt.length, 1, 8)
  assert.equal(verifyLogPart(receipt, given, standIns).seq, seq, 'the honest part holds')
  // The log's own node for entries 8 to 11 (flat-tree index 19), as standInNodes gives it.
  const covering = await standInNodes(vm.callLog, seq, receipt.length, 8, seq)
  assert.deepEqual(
    covering.map((node) => node.index),
    [19],
  )

  const altered = new Map(given)
  altered.set(8, await alteredBlock(vm, 8))
  const refused = (pattern: RegExp) => (err: unknown) => {
    assert.ok(err instanceof ReceiptError, String(err))
    assert.equal(err.code, 'ERR_BAD_RECEIPT')
    assert.match(err.message, pattern)
    return true
  }
  // Entry 8 altered, hashed into the tree: not what the log signed.
  assert.throws(() => verifyLogPart(receipt, altered, standIns), refused(/entries 8 to 11 are not the ones the log signed/))
  // Entry 8 altered, with the real node for entries 8 to 11 beside it: that node may not stand for it.
  const mustBeGiven = refused(/Merkle node 19 stands for entries that must be given/)
  assert.throws(() => verifyLogPart(receipt, altered, [...standIns, ...covering]), mustBeGiven)
  assert.throws(() => verifyLogPart(receipt, altered, [...covering, ...standIns]), mustBeGiven)
  // Entry 8 alone given (altered), the node standing for it and the three after it.
  const alone = new Map([
    [0, given.get(0) as Buffer],
    [8, altered.get(8) as Buffer],
  ])
  assert.throws(() => verifyLogPart(receipt, alone, [...standIns, ...covering]), mustBeGiven)
})

test('an execution proof that covers an altered entry with a real Merkle node does not hold: an honest host is not framed', async (t) => {
  const { vm, snapshots } = await checkpointedVM(t, 12)
  const seq = 12
  const receipt = await createReceipt(vm.callLog, seq)
  // A proof of the honest log from checkpoint 5, built as proveDivergence builds one.
  const snapshot = await snapshots.read(5)
  const archive = await archiveBlocks(vm.filesArchive, snapshot.files)
  const entries: string[] = []
  for (let s = 5; s < seq; s++) entries.push((await vm.callLog.block(s)).toString('base64'))
  const hex = (nodes: Awaited<ReturnType<typeof standInNodes>>) =>
    nodes.map((node) => ({ index: node.index, size: node.size, hash: node.hash.toString('hex') }))
  const proof: ExecutionProof = {
    type: FRAUD_PROOF_TYPE,
    version: FRAUD_PROOF_VERSION,
    kind: 'execution',
    log: vm.callLog.key,
    seq,
    entries,
    receipt,
    start: {
      seq: 5,
      init: (await vm.callLog.block(0)).toString('base64'),
      nodes: hex(await standInNodes(vm.callLog, seq, receipt.length, 1, 5)),
      snapshot: encodeSnapshot(snapshot).toString('base64'),
      archive: { db: archive.db.map((b) => b.toString('base64')), blobs: archive.blobs.map((b) => b.toString('base64')) },
    },
  }
  const honest = await Verifier.checkProof(proof)
  assert.ok(!honest.holds && /replay as logged/.test(honest.why), JSON.stringify(honest))

  // The framer alters entry 8 (so the replay differs there) and adds the log's own node for entries 8 to 11.
  const framing = structuredClone(proof)
  framing.entries[8 - 5] = (await alteredBlock(vm, 8)).toString('base64')
  framing.start?.nodes.push(...hex(await standInNodes(vm.callLog, seq, receipt.length, 8, seq)))
  assert.deepEqual(
    framing.start?.nodes.slice(-1).map((node) => node.index),
    [19],
  )
  const verdict = await Verifier.checkProof(framing)
  assert.equal(verdict.holds, false, JSON.stringify(verdict))
  assert.match(verdict.holds ? '' : verdict.why, /Merkle node 19 stands for entries that must be given/)
})
