/**
 * Upgrades (log schema 4): a VM's code replaced by an entry in its log, its state carried over by
 * the new code's `upgrade` hook calling the old code's exports, its log, archive, snapshots and audit
 * carried on across the change. Each failure appends nothing and leaves the old code serving; a host
 * that edits a logged upgrade, or forges one into an immutable VM's log, fails the audit there.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import {
  codeHash,
  DivergenceError,
  type LogEntry,
  RPCClient,
  type UpgradeEntry,
  type UpgradeResult,
  Verifier,
  VM,
  VMFactory,
  VMHost,
} from '../src/index.js'
import { verifyReceipt } from '../src/ledger/receipts.js'
import { SnapshotStore } from '../src/ledger/snapshot-store.js'
import { exec, nodevms, stop } from './cli-helpers.js'
import { deployVM, expectDivergence, lyingCopy, tempDir } from './helpers.js'
import { serve } from './rpc-helpers.js'

/** v1 keeps its count in a closure: reachable only through its exports. */
const V1 = `
let count = 0
exports.inc = async (by) => {
  count += by
  await System.files.writeFile('/count.txt', String(count))
  return count
}
exports.get = () => count
exports.version = 1
`

/** v2 takes v1's count over through `previous`, and keeps a history file of its own. */
const V2 = `
let count = 0
let carried = null
exports.upgrade = async (previous) => {
  count = await previous.get()
  carried = { count, file: await System.files.readFile('/count.txt'), version: previous.version }
  await System.files.writeFile('/upgraded.txt', 'from v' + previous.version + ' at ' + count)
  return carried
}
exports.inc = async (by) => {
  count += 2 * by
  await System.files.writeFile('/count.txt', String(count))
  return count
}
exports.get = () => count
exports.carried = () => carried
exports.version = 2
`

/** v3 carries v2's count on, and reads what v2 left in the archive. */
const V3 = `
let count = 0
exports.upgrade = async (previous) => { count = (await previous.get()) + 1000 }
exports.get = () => count
exports.note = () => System.files.readFile('/upgraded.txt')
`

async function deployV1(t: TestContext, options: Parameters<typeof deployVM>[2] = {}): Promise<VM> {
  const vm = await deployVM(t, V1, options)
  for (const by of [1, 2, 3]) await vm.executeCall({ methodName: 'inc', args: [by] })
  return vm
}

async function readText(vm: VM, path: string): Promise<string> {
  return String(await vm.filesArchive.readFile(path, 'utf8'))
}

test('an upgrade carries closure-held state and files over; calls after it run the new code; the audit runs across it', async (t) => {
  const vm = await deployV1(t)
  const before = vm.codeVersion
  assert.deepEqual(before, { hash: codeHash(V1), seq: 0 })
  const events: UpgradeResult[] = []
  vm.on('upgrade', (result: UpgradeResult) => events.push(result))

  const upgraded = await vm.upgrade(V2)
  assert.equal(upgraded.seq, 4)
  assert.deepEqual(upgraded.from, { hash: codeHash(V1), seq: 0 })
  assert.deepEqual(upgraded.to, { hash: codeHash(V2), seq: 4 })
  assert.deepEqual(upgraded.result, { count: 6, file: '6', version: 1 })
  assert.equal(upgraded.hook, true)
  assert.ok(upgraded.cost > 0)
  assert.deepEqual(events, [upgraded])
  assert.deepEqual(vm.codeVersion, upgraded.to)
  assert.equal(vm.code, V2)

  // The upgrade entry holds the new code verbatim, what it replaced, and the hook's files.
  const entry = (await vm.callLog.get(4)) as UpgradeEntry
  assert.equal(entry.type, 'upgrade')
  assert.equal(entry.code, V2)
  assert.deepEqual(entry.replaces, { hash: codeHash(V1), seq: 0 })
  assert.deepEqual(entry.exports, ['upgrade', 'inc', 'get', 'carried', 'version'])
  assert.equal(await readText(vm, '/upgraded.txt'), 'from v1 at 6')

  // The hook is never callable, like init.
  assert.deepEqual(vm.methods.sort(), ['carried', 'get', 'inc'])
  await assert.rejects(vm.executeCall({ methodName: 'upgrade', args: [] }), { code: 'ERR_METHOD_NOT_FOUND' })
  await assert.rejects((vm.exports.upgrade as () => Promise<unknown>)(), { code: 'ERR_METHOD_NOT_FOUND' })
  assert.equal(vm.exports.version, 2)

  assert.equal(await vm.executeCall({ methodName: 'inc', args: [10] }), 26)
  assert.deepEqual(await vm.executeCall({ methodName: 'carried' }), { count: 6, file: '6', version: 1 })
  assert.deepEqual(await vm.codeHistory(), [before, upgraded.to])

  const report = await Verifier.verify(vm.callLog, vm.filesArchive)
  assert.equal(report.calls, 5, 'five calls, and the upgrade between them')
})

test('several upgrades in a row; reopening replays across them, from the whole log and from a snapshot after the last', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const vm = new VM(V1, { checkpoints: { every: 3, keep: 10 } })
  await vm.deploy({ dir })
  for (const by of [1, 2, 3]) await vm.executeCall({ methodName: 'inc', args: [by] })
  await vm.upgrade(V2)
  await vm.executeCall({ methodName: 'inc', args: [5] }) // 6 + 10
  const third = await vm.upgrade(V3)
  assert.equal(await vm.executeCall({ methodName: 'get' }), 1016)
  assert.equal(await vm.executeCall({ methodName: 'note' }), 'from v1 at 6')
  for (let i = 0; i < 4; i++) await vm.executeCall({ methodName: 'get' })
  assert.deepEqual(
    (await vm.codeHistory()).map((v) => v.seq),
    [0, 4, third.seq],
  )
  const length = vm.callLog.length
  await vm.close()

  // From the newest snapshot (taken under v3, after the last upgrade).
  const snapshots = new SnapshotStore(dir, 10)
  const newest = Math.max(...(await snapshots.seqs()))
  assert.ok(newest > third.seq, `a snapshot after the last upgrade (newest: ${newest})`)
  assert.equal((await snapshots.read(newest)).host.code, third.seq)
  const notices: string[] = []
  const fromSnapshot = new VM(V3)
  fromSnapshot.on('notice', (m: string) => notices.push(m))
  let resumedFrom = -1
  await fromSnapshot.deploy({ dir, onResume: (_done, _total, from) => (resumedFrom = from) })
  assert.equal(resumedFrom, newest, notices.join('\n'))
  assert.equal(await fromSnapshot.executeCall({ methodName: 'get' }), 1016)
  assert.deepEqual(fromSnapshot.codeVersion, third.to)
  await fromSnapshot.close()

  // The whole log: snapshots gone.
  const whole = new VM(V3, { checkpoints: false })
  await whole.deploy({ dir })
  assert.equal(await whole.executeCall({ methodName: 'get' }), 1016)
  assert.equal(whole.callLog.length, length + 2)
  assert.deepEqual(whole.limits, fromSnapshot.limits)
  await whole.close()

  // Older code is other code: refused, and the message says how to upgrade.
  await assert.rejects(new VM(V1).deploy({ dir }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_CODE_MISMATCH')
    assert.match(err.message, /upgrade: true/)
    return true
  })
})

test('a failed upgrade appends nothing and leaves the old code serving, its state as it was', async (t) => {
  const vm = await deployV1(t)
  const failures: [string, RegExp][] = [
    ['exports.get = () => (', /does not load: SyntaxError/],
    ['throw new TypeError("top level")', /does not load: TypeError: top level/],
    // The hook changes the old code's state, then throws: the old state is put back.
    ['exports.upgrade = async (previous) => { await previous.inc(100); throw new RangeError("hook") }', /hook failed: RangeError: hook/],
    // The hook runs out of its compute budget (the new limits' computeTicks).
    ['exports.upgrade = async (previous) => { await previous.inc(100); for (;;) {} }', /hook failed: ComputeLimitExceeded/],
    // A hook that asks the old code for an export it lacks.
    ['exports.upgrade = async (previous) => { await previous.nothing() }', /hook failed: TypeError/],
  ]
  for (const [code, message] of failures) {
    const length = vm.callLog.length
    await assert.rejects(vm.upgrade(code, { limits: { computeTicks: 50 } }), (err: Error & { code?: string; reason?: unknown }) => {
      assert.equal(err.code, 'ERR_UPGRADE_FAILED', err.message)
      assert.match(err.message, message)
      assert.match(err.message, /old code/)
      return true
    })
    assert.equal(vm.callLog.length, length, `nothing appended for ${code}`)
    assert.equal(await vm.executeCall({ methodName: 'get' }), 6, `v1 serves on, its count as it was, after ${code}`)
  }
  assert.deepEqual(vm.codeVersion, { hash: codeHash(V1), seq: 0 })
  assert.equal(await readText(vm, '/count.txt'), '6')
  const report = await Verifier.verify(vm.callLog, vm.filesArchive)
  assert.equal(report.calls, 3 + failures.length, 'the calls, and no upgrade')
})

test('upgrades: false is recorded; such a VM refuses upgrades, and a forged upgrade in its log is a divergence', async (t) => {
  const sealed = await deployV1(t, { upgrades: false })
  const init = await sealed.callLog.get(0)
  assert.equal(init.type === 'init' && init.upgrades, false)
  assert.equal(sealed.upgradable, false)
  await assert.rejects(sealed.upgrade(V2), { code: 'ERR_UPGRADES_OFF' })
  assert.equal(sealed.callLog.length, 4)

  // The host splices a real upgrade entry (from an upgradable twin) into the sealed VM's log.
  const twin = await deployV1(t)
  await twin.upgrade(V2)
  const upgrade = (await twin.callLog.get(4)) as UpgradeEntry
  const forged = await lyingCopy(t, sealed, (entries: LogEntry[]) => {
    entries.push({ ...upgrade, timestamp: Math.max(upgrade.timestamp, entries[3].timestamp) })
  })
  await assert.rejects(Verifier.verify(forged, sealed.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError)
    assert.equal(err.seq, 4)
    assert.match(err.message, /upgrades: false/)
    return true
  })
})

test('a host that edits the code (or the hook result) of a logged upgrade fails the audit at that entry', async (t) => {
  const vm = await deployV1(t)
  await vm.upgrade(V2)
  await vm.executeCall({ methodName: 'inc', args: [1] })
  const edited = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    const upgrade = entries[4] as UpgradeEntry
    upgrade.code = upgrade.code.replace('count += 2 * by', 'count += 3 * by')
  })
  // Edited where only later calls run it: the upgrade replays as logged (the log is all an auditor has
  // of the code), and the first call that runs the edit is named.
  await assert.rejects(Verifier.verify(edited, vm.filesArchive), expectDivergence(5, 'result'))
  // Edited where the upgrade itself runs it (its hook): named at the upgrade entry.
  const editedHook = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    const upgrade = entries[4] as UpgradeEntry
    upgrade.code = upgrade.code.replace('count = await previous.get()', 'count = (await previous.get()) + 1')
  })
  await assert.rejects(Verifier.verify(editedHook, vm.filesArchive), expectDivergence(4, 'result'))
  // Edited so that it exports something else: named at the upgrade entry too.
  const editedExports = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    const upgrade = entries[4] as UpgradeEntry
    upgrade.code = `${upgrade.code}\nexports.extra = () => 0\n`
  })
  await assert.rejects(Verifier.verify(editedExports, vm.filesArchive), expectDivergence(4, 'exports'))
  const hookLie = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    ;(entries[4] as UpgradeEntry).result = { count: 7 } as never
  })
  await assert.rejects(Verifier.verify(hookLie, vm.filesArchive), expectDivergence(4, 'result'))
  const replacedLie = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    ;(entries[4] as UpgradeEntry).replaces = { hash: codeHash('something else'), seq: 0 }
  })
  await assert.rejects(Verifier.verify(replacedLie, vm.filesArchive), expectDivergence(4, 'replaces'))
  // Code that does not load at all, or whose hook fails, where the log says it ran.
  const broken = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    ;(entries[4] as UpgradeEntry).code = 'exports.upgrade = () => { throw new Error("no") }'
  })
  await assert.rejects(Verifier.verify(broken, vm.filesArchive), expectDivergence(4, 'result'))
})

test('calls over RPC across an upgrade, from a client connected before it: each answered by its code, receipts checked', async (t) => {
  const vm = await deployV1(t)
  const server = await serve(t, { '/': vm })
  const client = await RPCClient.connect(server.url as string, { user: 'ann' })
  t.after(() => client.close())
  assert.equal(await client.call('inc', 1), 7)
  // Calls made while the upgrade runs wait for it, then run on the new code.
  const upgrading = vm.upgrade(V2)
  const during = client.call('inc', 1)
  await upgrading
  assert.equal(await during, 9)
  assert.equal(await client.call('inc', 1), 11)
  // Each receipt the client took holds against the log as it is, the upgrade entry among them.
  assert.deepEqual(
    client.receipts.map((r) => verifyReceipt(r).seq),
    [4, 6, 7],
  )
  assert.equal((await vm.callLog.get(5)).type, 'upgrade')
  for (const receipt of client.receipts) assert.equal((await Verifier.checkReceipt(vm.callLog, receipt)).holds, true)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('a client pinned to a code version: the handshake says the version and history; an answer from other code is refused', async (t) => {
  const vm = await deployV1(t)
  const server = await serve(t, { '/': vm })
  const url = server.url as string
  const pinned = await RPCClient.connect(url, { user: 'ann', code: codeHash(V1) })
  t.after(() => pinned.close())
  assert.deepEqual(pinned.backendInfo.code, { hash: codeHash(V1), seq: 0 })
  assert.equal(pinned.backendInfo.codeHistory, undefined)
  assert.equal(await pinned.call('inc', 1), 7)
  const upgraded = await vm.upgrade(V2)
  // The call runs (on the new code) and is logged; the pinned client refuses its answer, keeping its receipt.
  await assert.rejects(pinned.call('inc', 1), { code: 'ERR_CODE_CHANGED' })
  const last = pinned.receipts[pinned.receipts.length - 1]
  const proven = verifyReceipt(last)
  assert.equal(proven.entry.type === 'call' && proven.entry.codeSeq, upgraded.seq, 'the receipt proves which code ran the call')
  assert.equal(await vm.executeCall({ methodName: 'get' }), 9)
  await assert.rejects(RPCClient.connect(url, { code: codeHash(V1) }), { code: 'ERR_CODE_CHANGED' })
  const fresh = await RPCClient.connect(url, { code: codeHash(V2) })
  t.after(() => fresh.close())
  assert.deepEqual(fresh.backendInfo.code, upgraded.to)
  assert.deepEqual(fresh.backendInfo.codeHistory, [upgraded.from, upgraded.to])
  assert.equal(await fresh.call('get'), 9)
})

test('a VM on a sandbox thread upgrades as one on the main thread does, and a replay on the main thread agrees', async (t) => {
  const vm = await deployV1(t, { thread: true })
  const upgraded = await vm.upgrade(V2)
  assert.deepEqual(upgraded.result, { count: 6, file: '6', version: 1 })
  await assert.rejects(vm.upgrade('exports.upgrade = async (p) => { await p.inc(1); throw new Error("x") }'), {
    code: 'ERR_UPGRADE_FAILED',
  })
  assert.equal(await vm.executeCall({ methodName: 'inc', args: [1] }), 8)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('command line: exec --upgrade upgrades a stopped VM as it starts and says so; --dry-run reports and appends nothing; other code without it is refused', async (t) => {
  const dir = await tempDir(t)
  const vmDir = join(dir, 'counter.vms')
  await writeFile(join(dir, 'v1.js'), V1)
  await writeFile(join(dir, 'v2.js'), V2)
  await writeFile(join(dir, 'broken.js'), 'exports.upgrade = async () => { throw new Error("not today") }\n')
  const first = await exec(t, join(dir, 'v1.js'), ['--dir', vmDir])
  for (const by of ['1', '2', '3']) await nodevms(['call', first.served.rpcUrl, 'inc', by])
  assert.equal(await stop(first.child), 0)

  const refused = await nodevms(['exec', join(dir, 'v2.js'), '--dir', vmDir, '--port', '0'])
  assert.notEqual(refused.code, 0)
  assert.match(refused.stderr, /ERR_CODE_MISMATCH/)
  assert.match(refused.stderr, /nodevms exec <script> --dir <dir> --upgrade/)

  const dry = await nodevms(['exec', join(dir, 'v2.js'), '--dir', vmDir, '--upgrade', '--dry-run'])
  assert.equal(dry.code, 0, dry.stderr)
  assert.match(
    dry.stderr,
    new RegExp(
      `would upgrade \\(dry run: nothing appended\\): code ${codeHash(V1).slice(0, 16)} \\(from entry 0\\) → ${codeHash(V2).slice(0, 16)} at entry 4`,
    ),
  )
  assert.match(dry.stderr, /its upgrade hook returned \{"count":6,"file":"6","version":1\}/)
  const failedDry = await nodevms(['exec', join(dir, 'broken.js'), '--dir', vmDir, '--upgrade', '--dry-run'])
  assert.notEqual(failedDry.code, 0)
  assert.match(failedDry.stderr, /ERR_UPGRADE_FAILED/)
  assert.match(failedDry.stderr, /not today/)
  assert.equal((await nodevms(['log', vmDir, '--json'])).stdout.trim().split('\n').length, 4, 'the dry runs appended nothing')

  const upgraded = await exec(t, join(dir, 'v2.js'), ['--dir', vmDir, '--upgrade', '--compute-ticks', '2000'])
  assert.equal((await nodevms(['call', upgraded.served.rpcUrl, 'get'])).stdout.trim(), '6')
  assert.equal((await nodevms(['call', upgraded.served.rpcUrl, 'inc', '1'])).stdout.trim(), '8')
  const info = JSON.parse((await nodevms(['info', upgraded.served.rpcUrl, '--json'])).stdout)
  assert.deepEqual(info.code, { hash: codeHash(V2), seq: 4 })
  assert.deepEqual(info.codeHistory, [
    { hash: codeHash(V1), seq: 0 },
    { hash: codeHash(V2), seq: 4 },
  ])
  const log = (await nodevms(['log', upgraded.served.rpcUrl])).stdout
  assert.match(log, new RegExp(`#4 .*upgrade to code ${codeHash(V2).slice(0, 16)} \\(replaces ${codeHash(V1).slice(0, 16)} of #0`))
  assert.equal(await stop(upgraded.child), 0)
  const verified = await nodevms(['verify', vmDir, '--json'])
  assert.equal(verified.code, 0, verified.stderr)
  const entry = JSON.parse((await nodevms(['log', vmDir, '--json'])).stdout.trim().split('\n')[4])
  assert.equal(entry.limits.computeTicks, 2000, 'the limit flag applies from the upgrade on')
})

test('a parallel audit, and an execution proof, whose segment spans an upgrade', async (t) => {
  const vm = await deployVM(t, V1, { checkpoints: { every: 4, keep: 100 } })
  for (let i = 1; i <= 9; i++) await vm.executeCall({ methodName: 'inc', args: [i] })
  const upgraded = await vm.upgrade(V2)
  for (let i = 1; i <= 9; i++) await vm.executeCall({ methodName: 'inc', args: [i] })
  const snapshots = new SnapshotStore(vm.dir as string, 100)
  const last = vm.callLog.length - 1
  for (let tries = 0; tries < 100 && !(await snapshots.seqs()).includes(last); tries++) await new Promise((r) => setTimeout(r, 20))
  assert.ok(
    (await snapshots.seqs()).some((seq) => seq < upgraded.seq),
    'a checkpoint before the upgrade',
  )

  const honest = await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 2, snapshots })
  assert.equal(honest.calls, 18)

  // A lie after the upgrade: the segment that holds it starts before the upgrade and runs across it.
  const lieAt = upgraded.seq + 5
  const lying = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    const entry = entries[lieAt]
    assert.equal(entry.type, 'call')
    ;(entry as { result?: unknown }).result = 12345
  })
  await assert.rejects(Verifier.verify(lying, vm.filesArchive, { parallel: 2, snapshots }), expectDivergence(lieAt, 'result'))
  const { proof, verdict } = await Verifier.proveDivergence(lying, lieAt, { snapshots, filesArchive: vm.filesArchive })
  assert.ok(verdict.holds, verdict.holds ? '' : verdict.why)
  // It replays from the init entry, or a checkpoint before the upgrade: across the upgrade, to the lie.
  assert.ok(proof.kind === 'execution' && (proof.start?.seq ?? 0) < upgraded.seq)
  assert.equal((await Verifier.checkProof(JSON.parse(JSON.stringify(proof)))).holds, true)
})

/** A factory whose owners may upgrade the VMs they provisioned. */
const UPGRADING_FACTORY = `
exports.provisionVM = async (args) => {
  const vm = await System.vms.provisionVM(args)
  await System.files.writeFile('/' + vm.id, System.caller.id)
  return vm
}
exports.shutdownVM = async (id) => { await System.vms.shutdownVM(id) }
exports.upgradeVM = async (id, code) => {
  if ((await System.files.readFile('/' + id)) !== System.caller.id) throw new Error('only its owner upgrades a VM')
  return System.vms.upgradeVM(id, code)
}
`

test('a factory upgrades a VM it provisioned: recorded in its log, replayed from it; the tenant carries on after a restart', async (t) => {
  const dir = join(await tempDir(t), 'factory')
  const factory = new VMFactory(UPGRADING_FACTORY)
  await factory.deploy({ dir })
  const info = (await factory.executeCall({ methodName: 'provisionVM', args: [{ code: V1 }], userId: 'ann' })) as { id: string }
  const tenant = factory.getVM(info.id) as VM
  for (const by of [1, 2, 3]) await tenant.executeCall({ methodName: 'inc', args: [by] })

  await assert.rejects(factory.executeCall({ methodName: 'upgradeVM', args: [info.id, V2], userId: 'bob' }), /only its owner/)
  const refused = (await factory
    .executeCall({ methodName: 'upgradeVM', args: [info.id, 'exports.upgrade = () => { throw new Error("no") }'], userId: 'ann' })
    .catch((err: Error) => err)) as Error & { code?: string }
  assert.match(refused.message, /ERR_UPGRADE_FAILED|upgrade hook failed/)
  assert.equal(await tenant.executeCall({ methodName: 'get' }), 6, 'a refused upgrade leaves the tenant as it was')

  const done = (await factory.executeCall({ methodName: 'upgradeVM', args: [info.id, V2], userId: 'ann' })) as {
    id: string
    seq: number
    to: { hash: string; seq: number }
  }
  assert.equal(done.id, info.id)
  assert.deepEqual(done.to, { hash: codeHash(V2), seq: done.seq })
  assert.equal(await tenant.executeCall({ methodName: 'inc', args: [1] }), 8)
  // The factory's log records the answer; its audit replays it without asking any host.
  await Verifier.verify(factory.callLog, factory.filesArchive)
  await Verifier.verify(tenant.callLog, tenant.filesArchive)
  await factory.close()

  // Brought back after a restart, the tenant runs its upgraded code, its state rebuilt across the upgrade.
  const again = new VMFactory(UPGRADING_FACTORY)
  t.after(() => again.close())
  await again.deploy({ dir })
  const back = again.getVM(info.id) as VM
  assert.deepEqual(back.codeVersion, done.to)
  assert.equal(await back.executeCall({ methodName: 'get' }), 8)
})

test('a parallel audit starts segments at checkpoints taken after an upgrade too, and still names a lie after them', async (t) => {
  const vm = await deployVM(t, V1, { checkpoints: { every: 4, keep: 100 }, limits: { memoryBytes: 32 * 1024 * 1024 } })
  for (let i = 1; i <= 3; i++) await vm.executeCall({ methodName: 'inc', args: [i] })
  // The upgrade doubles the memory: its checkpoints are of another memory size than the init entry's.
  const upgraded = await vm.upgrade(V2, { limits: { memoryBytes: 64 * 1024 * 1024 } })
  for (let i = 1; i <= 30; i++) await vm.executeCall({ methodName: 'inc', args: [i] })
  const snapshots = new SnapshotStore(vm.dir as string, 100)
  const last = vm.callLog.length - 1
  for (let tries = 0; tries < 100 && !(await snapshots.seqs()).includes(last); tries++) await new Promise((r) => setTimeout(r, 20))
  const after = (await snapshots.seqs()).filter((seq) => seq > upgraded.seq)
  assert.ok(after.length > 2, 'checkpoints after the upgrade')
  assert.equal((await snapshots.read(after[0])).host.code, upgraded.seq)

  const report = await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 3, snapshots })
  assert.ok(
    (report.segments ?? []).some((seq) => seq > upgraded.seq),
    `a segment starts after the upgrade (${report.segments})`,
  )
  const light = await Verifier.verify(vm.callLog, vm.filesArchive, { light: true, snapshots })
  assert.ok((light.lightFrom ?? 0) > upgraded.seq)

  const lieAt = last - 2
  const lying = await lyingCopy(t, vm, (entries: LogEntry[]) => {
    ;(entries[lieAt] as { result?: unknown }).result = -1
  })
  await assert.rejects(Verifier.verify(lying, vm.filesArchive, { parallel: 3, snapshots }), expectDivergence(lieAt, 'result'))
  // A ceiling below the upgrade's memory: its checkpoints are passed over, and the replay refuses the upgrade's limits.
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 3, snapshots, maxLimits: { memoryBytes: 48 * 1024 * 1024 } }),
    { code: 'ERR_LIMIT_CEILING' },
  )
})

test('a pinned client checks the version the handshake states against the log: a host that pairs the pinned hash with another entry is caught', async (t) => {
  const vm = await deployV1(t)
  await vm.upgrade(V2)
  const server = await serve(t, { '/': vm })
  const url = server.url as string
  const pinned = await RPCClient.connect(url, { code: codeHash(V2) })
  t.after(() => pinned.close())
  const proven = verifyReceipt(pinned.backendInfo.codeReceipt as NonNullable<typeof pinned.backendInfo.codeReceipt>)
  assert.equal(proven.seq, 4)
  assert.equal(proven.entry.type === 'upgrade' && proven.entry.code, V2)
  // A host that says it runs the pinned V1, at the entry where V2 took over (so that receipts' codeSeq would match).
  const lying = Object.create(vm, {
    codeVersion: { get: () => ({ hash: codeHash(V1), seq: 4 }) },
  }) as VM
  const liar = await serve(t, { '/': lying })
  await assert.rejects(RPCClient.connect(liar.url as string, { code: codeHash(V1) }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_BAD_RECEIPT')
    assert.match(err.message, /entry 4 holds other code/)
    return true
  })
})

test('a hosted VM upgraded to more memory reserves it in its host budget first: refused (ERR_CAPACITY, nothing appended) when it does not fit', async (t) => {
  const MiB = 1024 * 1024
  const host = await VMHost.open(join(await tempDir(t), 'host'), { memoryBudget: 48 * MiB })
  t.after(() => host.close())
  const a = new VM(V1, { limits: { memoryBytes: 16 * MiB } })
  await host.deploy(a, { name: 'a' })
  await host.deploy(new VM(V1, { limits: { memoryBytes: 16 * MiB } }), { name: 'b' })
  await a.executeCall({ methodName: 'inc', args: [2] })
  await assert.rejects(a.upgrade(V2, { limits: { memoryBytes: 48 * MiB } }), { code: 'ERR_CAPACITY' })
  assert.equal(a.callLog.length, 2)
  assert.equal(host.memoryReserved, 32 * MiB)
  // A hook that fails gives the reservation back, as a refused upgrade does.
  await assert.rejects(a.upgrade('exports.upgrade = () => { throw new Error("no") }', { limits: { memoryBytes: 32 * MiB } }), {
    code: 'ERR_UPGRADE_FAILED',
  })
  assert.equal(host.memoryReserved, 32 * MiB)
  const upgraded = await a.upgrade(V2, { limits: { memoryBytes: 32 * MiB } })
  assert.deepEqual(upgraded.result, { count: 2, file: '2', version: 1 })
  assert.equal(host.memoryReserved, 48 * MiB)
  assert.equal(a.limits.memoryBytes, 32 * MiB)
})
