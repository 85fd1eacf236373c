/**
 * Receipts (src/ledger/receipts.ts): Hypercore's own proof that an entry is at a seq of a log of a
 * given length, signed by the log's key, checkable with nothing but the receipt.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { CallLog, type LogEntry, ReceiptError, VM } from '../src/index.js'
import { createReceipt, type Receipt, verifyReceipt } from '../src/ledger/receipts.js'
import { deployVM, tempDir } from './helpers.js'

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
