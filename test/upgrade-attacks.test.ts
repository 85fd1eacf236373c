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

/** A host's edit of the entries, reaching any field of any entry (the shapes no honest log holds among them). */
// biome-ignore lint/suspicious/noExplicitAny: a forgery writes fields of any type anywhere
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

test('calls made during an upgrade are held within the queue bound: those over it are refused at once, not held', async (t) => {
  const vm = await deployVM(t, V1)
  const server = await serve(t, { '/': vm }, { maxQueuedCalls: 3 })
  const order: string[] = []
  const upgrading = vm.upgrade(V2).then((r) => {
    order.push('upgraded')
    return r
  })
  // Made in the same turn as the upgrade: all of them meet it under way. The lane and bound are what an RPC server passes.
  const calls = Array.from({ length: 20 }, (_, i) =>
    vm.executeCall({ methodName: 'inc', args: [1], lane: 'flood', maxQueued: 3 } as never).then(
      () => order.push(`ran ${i}`),
      (err: Error & { code?: string }) => order.push(`${err.code} ${i}`),
    ),
  )
  assert.equal(vm.queueRoom('other', 3).fits, false, 'an RPC server asks before admitting: no room while 3 wait')
  await upgrading
  await Promise.all(calls)
  const refusedBefore = order.slice(0, order.indexOf('upgraded')).filter((o) => o.startsWith('ERR_QUEUE_FULL'))
  assert.equal(refusedBefore.length, 17, order.join(', '))
  assert.equal(order.filter((o) => o.startsWith('ran')).length, 3)
  assert.equal(await vm.executeCall({ methodName: 'get' }), 6, 'the three held calls ran on the new code')
  // Over RPC, `upgrade` is no method: the hook is never callable.
  const client = await RPCClient.connect(server.url as string)
  t.after(() => client.close())
  await assert.rejects(client.call('upgrade', {}), { code: 'ERR_METHOD_NOT_FOUND' })
  assert.ok(!client.backendInfo.methods.includes('upgrade'))
})

test('hostile new code: its hook abuses previous, loops, never settles, throws what is not an Error; each is refused and the old code serves on', async (t) => {
  const vm = await deployVM(t, V1)
  await vm.executeCall({ methodName: 'inc', args: [5] })
  const refused: [string, RegExp][] = [
    ['exports.upgrade = async (p) => { for (;;) await p.get() }', /ComputeLimitExceeded/],
    ['exports.upgrade = async (p) => { await p.fill(100000) }', /ComputeLimitExceeded/],
    [
      'exports.upgrade = async (p) => { let v = 1; for (let i = 0; i < 1100; i++) v = [v]; await p.inc(v) }',
      /EncodingError: .*nested deeper than 1000/,
    ],
    ['exports.upgrade = async (p) => { await p.inc("y".repeat(20000000)) }', /MemoryLimitExceeded/],
    ['exports.upgrade = async () => { await new Promise(() => {}) }', /CallNeverSettled/],
    ['exports.upgrade = async () => { await new Promise((r) => setTimeout(r, 1000)); throw 42 }', /a non-Error value was thrown: 42/],
    ['exports.upgrade = () => { throw Symbol("s") }', /a non-Error value was thrown: Symbol\(s\)/],
    ['exports.upgrade = async () => { throw { name: "Fake", message: "not an Error" } }', /Fake: not an Error/],
    ['exports.upgrade = async (p) => { await p.constructor.constructor("return 1")(); await p.__proto__.nothing() }', /TypeError/],
  ]
  for (const [hook, message] of refused) {
    const length = vm.callLog.length
    await assert.rejects(
      vm.upgrade(`${hook}\nexports.get = () => 0\n`, { limits: { computeTicks: 500 } }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_UPGRADE_FAILED', `${hook}: ${err.message}`)
        assert.match(err.message, message, hook)
        return true
      },
    )
    assert.equal(vm.callLog.length, length, `nothing appended for ${hook}`)
    assert.equal(await vm.executeCall({ methodName: 'get' }), 5, `the old code serves on after ${hook}`)
  }

  // A hook that keeps `previous` for later: once the old engine is gone, calling it is a named
  // error, the same on every replay.
  await vm.upgrade(`
let prev
let count = 0
exports.upgrade = async (p) => { prev = p; count = await p.get(); return Object.keys(p) }
exports.later = async () => prev.get()
exports.get = () => count
`)
  const err = await vm.executeCall({ methodName: 'later' }).then(
    () => assert.fail('a call through a kept previous must fail'),
    (e: Error & { code?: string }) => e,
  )
  assert.match(err.message, /System has no operation upgrade\.previous/)
  assert.equal(await vm.executeCall({ methodName: 'get' }), 5)
  await Verifier.verify(vm.callLog, vm.filesArchive)
  const onThread = await VM.fromCallLog(vm.callLog, {}, { thread: true })
  t.after(() => onThread.close())
  assert.deepEqual(await onThread.callLog.list(), await vm.callLog.list(), 'a replay on a sandbox thread writes the same entries')
})

test('a VM factory upgraded to code without provisionVM is refused, and serves on', async (t) => {
  const FACTORY = `
exports.provisionVM = async (options) => System.vms.provision(options)
exports.shutdownVM = async (id) => System.vms.shutdown(id)
exports.ping = () => 'v1'
`
  const dir = join(await tempDir(t), 'factory')
  const factory = new VMFactory(FACTORY)
  t.after(() => factory.close())
  await factory.deploy({ dir })
  const length = factory.callLog.length
  await assert.rejects(factory.upgrade('exports.shutdownVM = () => 1\nexports.ping = () => "v2"'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_UPGRADE_FAILED', err.message)
    assert.match(err.message, /provisionVM/)
    return true
  })
  assert.equal(factory.callLog.length, length)
  assert.equal(await factory.executeCall({ methodName: 'ping' }), 'v1')
})

test('an audit of a log with upgrades passes in another time zone (a child with TZ=Asia/Tokyo)', async (t) => {
  const vm = await twiceUpgraded(t)
  await vm.close()
  const dir = vm.dir as string
  const verified = await nodevms(['verify', dir, '--json'], { env: { TZ: 'Asia/Tokyo' } })
  assert.equal(verified.code, 0, verified.stderr)
})
