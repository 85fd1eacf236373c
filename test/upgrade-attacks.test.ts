/**
 * Upgrades under attack: a host that forges or edits upgrade entries, codeSeq fields and snapshots;
 * a script author whose new code abuses `previous`; callers that flood a VM during an upgrade; an
 * auditor's machine that replays on another thread or in another time zone. Each ends in a named
 * verdict (DivergenceError at the entry and field, LogFormatError, LimitCeilingError, a refused
 * upgrade or call), never a crash, a hang or a wrong acceptance.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { codeHash, type DivergenceError, type LogEntry, LogFormatError, RPCClient, Verifier, VM, VMFactory } from '../src/index.js'
import { encodeSnapshot, entryHash, stateDigest } from '../src/ledger/snapshot.js'
import { SnapshotStore } from '../src/ledger/snapshot-store.js'
import { nodevms } from './cli-helpers.js'
import { deployVM, expectDivergence, lyingCopy, tempDir } from './helpers.js'
import { serve } from './rpc-helpers.js'

const V1 = `
let count = 0
exports.inc = (by) => { count += by; return count }
exports.get = () => count
exports.fill = async (n) => {
  for (let i = 0; i < n; i++) await System.files.writeFile('/f' + i, 'x'.repeat(100))
  return n
}
`
const V2 = `
let count = 0
exports.upgrade = async (previous) => { count = await previous.get() }
exports.inc = (by) => { count += 2 * by; return count }
exports.get = () => count
`
const V3 = `
let count = 0
exports.upgrade = async (previous) => { count = (await previous.get()) + 100 }
exports.get = () => count
exports.inc = (by) => { count += 3 * by; return count }
`

/** V1 with calls 1-2, V2 at 3, calls 4-5, V3 at 6, call 7. */
async function twiceUpgraded(t: Parameters<typeof deployVM>[0], options: Parameters<typeof deployVM>[2] = {}): Promise<VM> {
  const vm = await deployVM(t, V1, options)
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.executeCall({ methodName: 'inc', args: [2] })
  await vm.upgrade(V2)
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.upgrade(V3)
  await vm.executeCall({ methodName: 'inc', args: [1] })
  return vm
}

type Edit = (entries: Record<string, any>[]) => void

function nested(depth: number): unknown {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = { a: v }
  return v
}

test('a host that forges upgrade entries or codeSeq fields: each lie is named at its entry and field', async (t) => {
  const vm = await twiceUpgraded(t)
  await Verifier.verify(vm.callLog, vm.filesArchive)
  const divergences: [string, Edit, number, string][] = [
    ['replaces names a call entry', (e) => (e[3].replaces.seq = 2), 3, 'replaces'],
    ['replaces names the older code of an earlier upgrade', (e) => (e[6].replaces = { hash: codeHash(V1), seq: 0 }), 6, 'replaces'],
    ['a call after an upgrade claims the init code ran it', (e) => delete e[4].codeSeq, 4, 'codeSeq'],
    ['a call claims a call entry ran it', (e) => (e[4].codeSeq = 2), 4, 'codeSeq'],
    ['a call claims an upgrade that is not the current one ran it', (e) => (e[7].codeSeq = 3), 7, 'codeSeq'],
    ['a call before any upgrade claims a code version', (e) => (e[2].codeSeq = 1), 2, 'codeSeq'],
    ['the upgrade lists other exports', (e) => (e[3].exports = ['upgrade', 'inc']), 3, 'exports'],
    ['the upgrade is dated back', (e) => (e[3].timestamp = e[2].timestamp - 1), 3, 'timestamp'],
    ['a call is dated before the upgrade', (e) => (e[4].timestamp = e[3].timestamp - 1), 4, 'timestamp'],
    ['the upgrade has a field no upgrade has', (e) => (e[3].caller = 'eve'), 3, 'caller'],
    ['the upgrade names a code version of its own', (e) => (e[3].codeSeq = 1), 3, 'codeSeq'],
    ['a call of the hook, logged as a method', (e) => (e[4].method = 'upgrade'), 4, 'method'],
    ['an upgrade in a schema 3 log', (e) => (e[0].schema = 3), 3, 'type'],
  ]
  for (const [what, edit, seq, field] of divergences) {
    const lie = await lyingCopy(t, vm, edit as (entries: LogEntry[]) => void)
    await assert.rejects(Verifier.verify(lie, vm.filesArchive), expectDivergence(seq, field), what)
  }
  // A divergence at an upgrade entry says so, not "call 3 (init …)".
  const replaced = await lyingCopy(t, vm, ((e) => (e[3].replaces.seq = 2)) as Edit as (entries: LogEntry[]) => void)
  await assert.rejects(Verifier.verify(replaced, vm.filesArchive), (err: DivergenceError) => {
    assert.match(err.message, /^upgrade entry 3 diverges in replaces/)
    assert.equal(err.method, 'upgrade')
    return true
  })

  // A schema 3 log: no upgrade in it, but a call that claims one ran it.
  const schema3 = await lyingCopy(t, vm, ((e) => {
    e[0].schema = 3
    e.splice(3)
    e[2].codeSeq = 1
  }) as Edit as (entries: LogEntry[]) => void)
  await assert.rejects(Verifier.verify(schema3, vm.filesArchive), expectDivergence(2, 'codeSeq'))

  const malformed: [string, Edit, number, RegExp][] = [
    ['limits nested deep', (e) => (e[3].limits.computeTicks = nested(900)), 3, /limits are invalid/],
    ['an unknown limit', (e) => (e[3].limits.bogus = 1), 3, /Unknown limit "bogus"/],
    [
      'a limit on the prototype',
      (e) => (e[3].limits = JSON.parse(`{"__proto__":{"computeTicks":5},${JSON.stringify(e[3].limits).slice(1)}`)),
      3,
      /__proto__/,
    ],
    ['a memory no engine has', (e) => (e[3].limits.memoryBytes = 2 ** 40), 3, /memoryBytes/],
    ['a limit as text', (e) => (e[3].limits.computeTicks = '1000'), 3, /computeTicks must be a positive integer/],
    ['replaces names a later entry', (e) => (e[3].replaces.seq = 5), 3, /replaces must be/],
    ['replaces names itself', (e) => (e[3].replaces.seq = 3), 3, /replaces must be/],
    ['codeSeq names a later entry', (e) => (e[4].codeSeq = 6), 4, /codeSeq must be/],
    ['an upgrade dressed as an init entry', (e) => (e[3].type = 'init'), 3, /expected a call or upgrade entry/],
    ['the upgrade cut out of the log', (e) => e.splice(3, 1), 3, /codeSeq must be/],
  ]
  for (const [what, edit, seq, message] of malformed) {
    const lie = await lyingCopy(t, vm, edit as (entries: LogEntry[]) => void)
    for (const replay of [() => Verifier.verify(lie, vm.filesArchive), () => VM.fromCallLog(lie)]) {
      await assert.rejects(replay(), (err: unknown) => {
        assert.ok(err instanceof LogFormatError, `${what}: ${String(err)}`)
        assert.equal(err.seq, seq, what)
        assert.match(err.message, message, what)
        return true
      })
    }
  }

  // Limits above the auditor's ceiling: refused before the code runs, naming the upgrade entry.
  const costly = await lyingCopy(t, vm, ((e) => (e[6].limits.computeTicks = 1e15)) as Edit as (entries: LogEntry[]) => void)
  await assert.rejects(Verifier.verify(costly, vm.filesArchive), (err: Error & { code?: string; limit?: string }) => {
    assert.equal(err.code, 'ERR_LIMIT_CEILING')
    assert.equal(err.limit, 'computeTicks')
    assert.match(err.message, /^upgrade entry 6 sets limits\.computeTicks to 1000000000000000/)
    return true
  })
  const within = await lyingCopy(t, vm, ((e) => (e[6].limits.computeTicks = 200_000)) as Edit as (entries: LogEntry[]) => void)
  await assert.rejects(Verifier.verify(within, vm.filesArchive), { code: 'ERR_LIMIT_CEILING' })
  const raised = await Verifier.verify(within, vm.filesArchive, { maxLimits: { computeTicks: 200_000 } })
  assert.equal(raised.calls, 5, 'the limits a host logs are the limits the replay runs under')
})

/** The newest snapshot of `dir`, its host state's code set to `code` and its digest made to match: a host's forgery. */
async function forgeCode(store: SnapshotStore, seq: number, code: number | undefined): Promise<string> {
  const snapshot = await store.read(seq)
  const host = { ...snapshot.host }
  if (code === undefined) delete host.code
  else host.code = code
  const state = stateDigest(snapshot.engine, host, snapshot.stateFormat)
  await store.write(seq, encodeSnapshot({ ...snapshot, host, state }))
  return state
}

test('a snapshot whose host state names other code than its call ran is passed over at a reopen, which replays from an older one', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const vm = new VM(V1, { checkpoints: { every: 2, keep: 20 } })
  await vm.deploy({ dir })
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.executeCall({ methodName: 'inc', args: [2] })
  await vm.upgrade(V2) // 3
  for (let i = 0; i < 2; i++) await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.upgrade(V3) // 6
  for (let i = 0; i < 4; i++) await vm.executeCall({ methodName: 'inc', args: [1] }) // 7-10
  await vm.close()
  const store = new SnapshotStore(dir, 20)
  const seqs = (await store.seqs()).sort((a, b) => a - b)
  const last = seqs[seqs.length - 1]
  assert.equal(last, 10)
  assert.equal((await store.read(last)).host.code, 6)

  // The host rewrites the newest snapshot to say an earlier upgrade's code (the same state format
  // and memory: nothing else tells them apart) — and then the init entry's.
  for (const lie of [3, undefined]) {
    const newest = Math.max(...(await store.seqs()))
    await forgeCode(store, newest, lie)
    const notices: string[] = []
    const reopened = new VM(V3)
    reopened.on('notice', (m: string) => notices.push(m))
    let from = -1
    await reopened.deploy({ dir, onResume: (_d, _n, start) => (from = start) })
    assert.notEqual(from, newest, `the forged snapshot is not used (${notices.join('; ')})`)
    assert.ok(
      notices.some((m) => m.startsWith(`snapshot of seq ${newest} skipped`)),
      `notices: ${JSON.stringify(notices)}`,
    )
    assert.deepEqual(reopened.codeVersion, { hash: codeHash(V3), seq: 6 })
    const count = (await reopened.executeCall({ methodName: 'get' })) as number
    assert.equal(await reopened.executeCall({ methodName: 'inc', args: [1] }), count + 3)
    const entry = await reopened.callLog.get(reopened.callLog.length - 1)
    assert.equal(entry.type === 'call' && entry.codeSeq, 6, 'the call after the reopen names the code that ran it')
    await Verifier.verify(reopened.callLog, reopened.filesArchive)
    await reopened.close()
  }
})

test('a parallel audit from a checkpoint whose snapshot and stated digest lie about the code: the segment before it names the lie', async (t) => {
  const vm = await deployVM(t, V1, { checkpoints: { every: 2, keep: 50 } })
  await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.executeCall({ methodName: 'inc', args: [2] })
  await vm.upgrade(V2) // 3
  for (let i = 0; i < 2; i++) await vm.executeCall({ methodName: 'inc', args: [1] })
  await vm.upgrade(V3) // 6
  for (let i = 0; i < 8; i++) await vm.executeCall({ methodName: 'inc', args: [1] }) // 7-14
  const store = new SnapshotStore(vm.dir as string, 50)
  // The last checkpoint after the upgrade, once its snapshot is written.
  let target = -1
  for (let seq = vm.callLog.length - 1; seq > 6 && target < 0; seq--) {
    const entry = await vm.callLog.get(seq)
    if (entry.type === 'call' && entry.state !== undefined && seq < vm.callLog.length - 1) target = seq
  }
  assert.ok(target > 7, 'a checkpoint after the last upgrade, with one before it')
  for (let tries = 0; tries < 200 && !(await store.seqs()).includes(target); tries++) await new Promise((r) => setTimeout(r, 20))
  await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 2, snapshots: store })

  // The host says the state at 12 is of entry 3's code: snapshot and log agree with each other.
  const forged = await forgeCode(store, target, 3)
  const lie = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    ;(entries[target] as { state?: string }).state = forged
  })
  // lyingCopy makes a new log: the snapshot must name its entry by that log's bytes.
  const snapshot = await store.read(target)
  const block = (await lie.core.get(target, { valueEncoding: 'binary' })) as unknown as Buffer
  await store.write(target, encodeSnapshot({ ...snapshot, entryHash: entryHash(block) }))
  await assert.rejects(Verifier.verify(lie, vm.filesArchive, { parallel: 2, snapshots: store }), expectDivergence(target, 'state'))
  await assert.rejects(Verifier.verify(lie, vm.filesArchive), expectDivergence(target, 'state'))
})
