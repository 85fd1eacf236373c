/**
 * The tamper matrix: for each way a host can lie about a call log or a files archive, build the lying
 * log or archive and show that verification fails, naming the first divergent seq (and field) or the
 * reason. docs/threat-model.md lists each class with the test that covers it (this file, and a few in
 * production.test.ts and audit-network.test.ts).
 *
 * The honest VM's calls all change state, read the time, the caller and Math.random, and write
 * files, so no lie can hide behind a call whose outcome does not depend on it. (A lie about an input
 * nothing depends on — the seed of a call that draws no random number — changes no outcome, and
 * replay cannot tell; it is no lie about what the VM did.)
 */
import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import { type CallEntry, DivergenceError, type LogEntry, Verifier, type VM } from '../src/index.js'
import { deployVM, expectDivergence, lyingCopy } from './helpers.js'

const NOTES = `
exports.init = async () => { await System.files.mkdir('/notes') }
let n = 0
exports.add = async (name, text) => {
  n++
  await System.files.writeFile('/notes/' + name, text)
  return { n, at: Date.now(), by: System.caller.id, luck: Math.random() }
}
exports.read = async (name) => System.files.readFile('/notes/' + name)
`
const CALLS = 8

/** A VM with CALLS honest `add` calls by three users (seq 1..CALLS). */
async function honestVM(t: TestContext): Promise<VM> {
  const vm = await deployVM(t, NOTES, { title: 'notes' })
  for (let i = 1; i <= CALLS; i++) {
    await vm.executeCall({ methodName: 'add', args: [`n${i}`, `text ${i}`], userId: `u${i % 3}` })
    // Distinct timestamps, so that moving a call in time changes what it returns.
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
  return vm
}

const call = (entries: LogEntry[], seq: number) => entries[seq] as CallEntry

// Each row: the lie, how it is built from the honest log's entries, the seq and field verification names.
const LOG_LIES: [string, (e: LogEntry[]) => void, number, string][] = [
  ['a result is edited', (e) => Object.assign(call(e, 3), { result: { n: 99, at: 0, by: 'u0' } }), 3, 'result'],
  ['an error is invented', (e) => Object.assign(call(e, 3), { result: undefined, error: { name: 'Error', message: 'no' } }), 3, 'result'],
  ['args are edited', (e) => Object.assign(call(e, 3), { args: ['other', 'text 3'] }), 3, 'files'],
  ['the caller is edited', (e) => Object.assign(call(e, 3), { caller: 'mallory' }), 3, 'result'],
  ['a timestamp is moved later', (e) => Object.assign(call(e, 3), { timestamp: call(e, 3).timestamp + 1 }), 3, 'result'],
  ['a timestamp goes back in time', (e) => Object.assign(call(e, 3), { timestamp: call(e, 2).timestamp - 1000 }), 3, 'timestamp'],
  ['the seed is edited', (e) => Object.assign(call(e, 3), { seed: '0'.repeat(32) }), 3, 'result'],
  ['a files digest is edited', (e) => Object.assign(call(e, 3).files, { dbHash: 'f'.repeat(64) }), 3, 'files'],
  ['the metered cost is edited', (e) => Object.assign(call(e, 3), { cost: call(e, 3).cost + 1 }), 3, 'cost'],
  ['an entry is dropped', (e) => e.splice(3, 1), 3, 'result'],
  ['two entries are swapped', (e) => e.splice(3, 2, e[4], e[3]), 3, 'result'],
  ['an entry is inserted', (e) => e.splice(3, 0, { ...call(e, 2), caller: 'mallory' }), 3, 'result'],
  ['an entry is logged twice', (e) => e.splice(4, 0, structuredClone(e[3])), 4, 'result'],
  ['the method is edited', (e) => Object.assign(call(e, 3), { method: 'read' }), 3, 'result'],
  [
    'the script is swapped for one that behaves differently',
    (e) => Object.assign(e[0], { code: NOTES.replace('n++', 'n += 2') }),
    1,
    'result',
  ],
  [
    'the script is swapped for one with other exports',
    (e) => Object.assign(e[0], { code: NOTES.replace('exports.read', 'exports.peek') }),
    0,
    'exports',
  ],
]

for (const [lie, change, seq, field] of LOG_LIES) {
  test(`tamper matrix, log: ${lie} → seq ${seq} (${field})`, async (t) => {
    const vm = await honestVM(t)
    const log = await lyingCopy(t, vm, change)
    await assert.rejects(Verifier.verify(log, null), expectDivergence(seq, field))
    // The lie is in the signed log: its entries up to seq are a proof anyone can check.
    const { verdict } = await Verifier.proveDivergence(log, seq)
    assert.ok(verdict.holds, verdict.holds ? '' : verdict.why)
    assert.equal(verdict.seq, seq)
  })
}

test('tamper matrix, log: the host rewrites its own log in place (same key) → the first rewritten seq', async (t) => {
  const vm = await honestVM(t)
  const honest = (await vm.callLog.list()) as LogEntry[]
  const rewritten = honest.slice(5).map((e) => ({ ...(e as CallEntry), caller: 'mallory' }))
  await vm.callLog.core.truncate(5)
  await vm.callLog.append(rewritten)
  await assert.rejects(Verifier.verify(vm.callLog, null), expectDivergence(5, 'result'))
  const { verdict } = await Verifier.proveDivergence(vm.callLog, 5)
  assert.ok(verdict.holds && verdict.seq === 5, verdict.holds ? verdict.what : verdict.why)
})

test('tamper matrix, log: the log points to another files archive → seq 0', async (t) => {
  const vm = await honestVM(t)
  const other = await deployVM(t, NOTES)
  await assert.rejects(Verifier.verify(vm.callLog, other.filesArchive), expectDivergence(0, 'filesArchiveKey'))
  const relabelled = await lyingCopy(t, vm, (e) => Object.assign(e[0], { filesArchiveKey: other.filesArchive.key }))
  await assert.rejects(Verifier.verify(relabelled, vm.filesArchive), expectDivergence(0, 'filesArchiveKey'))
})

// Out-of-band changes to the archive: made through the host's own archive handle, outside any call.
const ARCHIVE_LIES: [string, (vm: VM) => Promise<void>][] = [
  ['a file is rewritten', (vm) => vm.filesArchive.writeFile('/notes/n2', 'forged')],
  ['a file is deleted', (vm) => vm.filesArchive.unlink('/notes/n2')],
  ['a file is added', (vm) => vm.filesArchive.writeFile('/notes/planted', 'x')],
]

for (const [lie, tamper] of ARCHIVE_LIES) {
  test(`tamper matrix, archive: ${lie} between calls → the next call's seq; after the last call → named with its path`, async (t) => {
    const between = await honestVM(t)
    await tamper(between)
    await between.executeCall({ methodName: 'add', args: ['n9', 'text 9'], userId: 'u0' })
    await assert.rejects(Verifier.verify(between.callLog, between.filesArchive), expectDivergence(CALLS + 1, 'files'))
    // The next call's entry records the changed files: the log's entries alone show it.
    const proven = await Verifier.proveDivergence(between.callLog, CALLS + 1)
    assert.ok(proven.verdict.holds && proven.verdict.seq === CALLS + 1)

    const after = await honestVM(t)
    await tamper(after)
    await assert.rejects(Verifier.verify(after.callLog, after.filesArchive), (err: unknown) => {
      assert.ok(err instanceof DivergenceError)
      assert.equal(err.seq, CALLS)
      assert.match(err.message, /changes after seq 8 \(add\) that no call made/)
      assert.match(err.path ?? '', /^\/notes\//)
      return true
    })
    // Here the log replays: the lie is in the archive alone, and no execution proof shows it.
    const { verdict } = await Verifier.proveDivergence(after.callLog, CALLS)
    assert.ok(!verdict.holds && /replay as logged/.test(verdict.why))
  })
}

test('tamper matrix, archive: history rewritten below a logged version → the entry that records it', async (t) => {
  const vm = await honestVM(t)
  const entry = (await vm.callLog.get(4)) as CallEntry
  // Cut the archive's metadata back below entry 4's version and write something else there.
  await vm.filesArchive.drive.core.truncate(entry.files.version - 1)
  await vm.filesArchive.writeFile('/notes/n4', 'rewritten')
  await assert.rejects(Verifier.verify(vm.callLog, vm.filesArchive), expectDivergence(4, 'files'))
})
