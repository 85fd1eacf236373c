/**
 * Parallel and light audits: the log cut into segments at checkpoints, each replayed on a thread of
 * its own from the snapshot the log states a digest for. The host hands over the snapshots, so each
 * one is hostile input: one that does not hash to the log's digest is passed over; a digest the host
 * forged (with a snapshot made to match it) fails the segment that ends there; a lie anywhere is
 * named at its own seq, the earliest one when there are several.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { type CallEntry, RPCClient, Verifier, type VM } from '../src/index.js'
import { entryHash, stateDigest, type VMSnapshot } from '../src/ledger/snapshot.js'
import { SnapshotStore } from '../src/ledger/snapshot-store.js'
import { exec, nodevms } from './cli-helpers.js'
import { deployVM, expectDivergence, lyingCopy, tempDir } from './helpers.js'

const NOTES = `
exports.init = async () => { await System.files.mkdir('/notes') }
let n = 0
exports.add = async (k) => {
  n += k
  if (k % 3 === 0) await System.files.writeFile('/notes/' + (k % 4), 'note ' + n + ' by ' + System.caller.id)
  return { n, luck: Math.random(), at: Date.now() }
}
`
const CALLS = 120
const EVERY = 20

/** A VM with CALLS calls, a checkpoint every EVERY, every snapshot kept. */
async function honestVM(t: TestContext, code = NOTES): Promise<{ vm: VM; snapshots: SnapshotStore }> {
  const vm = await deployVM(t, code, { checkpoints: { every: EVERY, keep: 100 } })
  for (let i = 1; i <= CALLS; i++) await vm.executeCall({ methodName: 'add', args: [i], userId: `u${i % 3}` })
  // Snapshots are written once their entries are stored, in the background: wait for the last one.
  const snapshots = new SnapshotStore(vm.dir as string, 100)
  for (let tries = 0; tries < 100 && !(await snapshots.seqs()).includes(CALLS); tries++) await new Promise((r) => setTimeout(r, 20))
  return { vm, snapshots }
}

/** Snapshots handed over from memory (as a host might, edited). */
function given(snapshots: Map<number, VMSnapshot>) {
  return {
    seqs: async () => [...snapshots.keys()],
    read: async (seq: number) => {
      const s = snapshots.get(seq)
      if (!s) throw new Error(`no snapshot of seq ${seq}`)
      return s
    },
  }
}

async function allSnapshots(store: SnapshotStore): Promise<Map<number, VMSnapshot>> {
  const map = new Map<number, VMSnapshot>()
  for (const seq of await store.seqs()) map.set(seq, await store.read(seq))
  return map
}

test('a parallel audit verifies the log in segments cut at checkpoints, and reports what a whole audit does', async (t) => {
  const { vm, snapshots } = await honestVM(t)
  const whole = await Verifier.verify(vm.callLog, vm.filesArchive)
  const progress: [number, number][] = []
  const two = await Verifier.verify(vm.callLog, vm.filesArchive, {
    parallel: 2,
    snapshots,
    onProgress: (done, total) => progress.push([done, total]),
  })
  // The first segment, replayed on the main thread beside the reading of the others, is the shorter.
  assert.deepEqual(two.segments, [0, 60])
  assert.deepEqual({ ...two, segments: undefined }, { ...whole, segments: undefined })
  assert.deepEqual(progress.at(-1), [CALLS, CALLS])
  const three = await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 3, snapshots })
  assert.deepEqual(three.segments, [0, 40, 80])
  assert.equal(three.calls, CALLS)

  const light = await Verifier.verify(vm.callLog, vm.filesArchive, {
    light: true,
    snapshots: given(new Map([...(await allSnapshots(snapshots))].filter(([s]) => s <= 100))),
  })
  assert.equal(light.lightFrom, 100)
  assert.equal(light.calls, CALLS - 100, 'a light audit re-runs only the calls after its checkpoint')
  // Without snapshots, or with 1 job, the audit runs whole.
  const notices: string[] = []
  const none = await Verifier.verify(vm.callLog, null, { parallel: 2, snapshots, onNotice: (m) => notices.push(m) })
  assert.equal(none.segments, undefined)
  assert.match(notices[0], /needs the host's files archive/)
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive, { light: true, snapshots: given(new Map()) }),
    /a light audit needs one/,
  )
})

test('a snapshot that does not hash to the digest the log states is passed over, never used', async (t) => {
  const { vm, snapshots } = await honestVM(t)
  const map = await allSnapshots(snapshots)
  const bad = structuredClone(map.get(60) as VMSnapshot)
  bad.engine.bytes[100] ^= 1 // another state, with its own digest: not the log's
  bad.state = stateDigest(bad.engine, bad.host, bad.stateFormat)
  map.set(60, bad)
  const notices: string[] = []
  const report = await Verifier.verify(vm.callLog, vm.filesArchive, {
    parallel: 2,
    snapshots: given(map),
    onNotice: (m) => notices.push(m),
  })
  assert.equal(report.calls, CALLS)
  assert.notDeepEqual(report.segments, [0, 60], 'another checkpoint was used')
  assert.equal(report.segments?.length, 2)
  assert.deepEqual(notices, ['snapshot of seq 60 passed over: it is not of the state the log states there'])
})

test('a forged checkpoint digest, with a snapshot made to match it, fails the parallel audit at that seq', async (t) => {
  const { vm, snapshots } = await honestVM(t)
  const map = await allSnapshots(snapshots)
  // The host states another state at seq 60 — one where a note says what it likes — and hands over its snapshot.
  const forged = structuredClone(map.get(60) as VMSnapshot)
  forged.engine.bytes[200] ^= 1
  forged.state = stateDigest(forged.engine, forged.host, forged.stateFormat)
  const log = await lyingCopy(t, vm, (e) => Object.assign(e[60], { state: forged.state }))
  forged.entryHash = entryHash(await log.block(60))
  map.set(60, forged)
  await assert.rejects(Verifier.verify(log, vm.filesArchive, { parallel: 2, snapshots: given(map) }), expectDivergence(60, 'state'))
  // A light audit from there starts from the forged state: it cannot say the lie is at seq 60, but the
  // forged state shows at the next checkpoint, where it no longer hashes to what the log states.
  await assert.rejects(
    Verifier.verify(log, vm.filesArchive, { light: true, snapshots: given(new Map([[60, forged]])) }),
    expectDivergence(80, 'state'),
  )
})

test('a lie in a later segment is named at its seq; with lies in two segments, the earlier one', async (t) => {
  const { vm, snapshots } = await honestVM(t)
  const later = await lyingCopy(t, vm, (e) => Object.assign(e[90] as CallEntry, { result: { n: 1 } }))
  await assert.rejects(Verifier.verify(later, vm.filesArchive, { parallel: 2, snapshots }), expectDivergence(90, 'result'))
  const both = await lyingCopy(t, vm, (e) => {
    Object.assign(e[90] as CallEntry, { result: { n: 1 } })
    Object.assign(e[30] as CallEntry, { caller: 'mallory' })
  })
  await assert.rejects(Verifier.verify(both, vm.filesArchive, { parallel: 3, snapshots }), expectDivergence(30, 'files'))
  // The archive changed behind the VM's back after the last call: named as a whole audit names it.
  await vm.filesArchive.writeFile('/notes/planted', 'x')
  await assert.rejects(Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 2, snapshots }), expectDivergence(CALLS, 'files'))
})

test('with lies in two later segments and none in the first, a parallel audit names the earlier lie', async (t) => {
  // Calls 41 to 79 compute for a while: the third segment reaches its lie (at 81, one call in) well
  // before the second reaches its own (at 79), and the verdict must still be the second's.
  const slowMiddle = NOTES.replace(
    'n += k',
    'n += k\n  if (k > 40 && k < 80) { let x = 0; for (let i = 0; i < 100000; i++) x = (x * 31 + i) % 1000003 }',
  )
  const { vm, snapshots } = await honestVM(t, slowMiddle)
  // Three segments: calls 1 to 40 (on this thread), 41 to 80 and 81 to 120 (each on a thread of its own).
  const honest = await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 3, snapshots })
  assert.deepEqual(honest.segments, [0, 40, 80])
  const both = await lyingCopy(t, vm, (e) => {
    Object.assign(e[79] as CallEntry, { result: { n: 79 } })
    Object.assign(e[81] as CallEntry, { result: { n: 81 } })
  })
  await assert.rejects(Verifier.verify(both, vm.filesArchive, { parallel: 3, snapshots }), expectDivergence(79, 'result'))
  // The whole audit, replayed in one go, names the same one.
  await assert.rejects(Verifier.verify(both, vm.filesArchive), expectDivergence(79, 'result'))
})

test('nodevms verify <dir> --jobs 2 verifies in segments; --light says what it did not check', async (t) => {
  const { vm } = await honestVM(t)
  const dir = vm.dir as string
  await vm.close()
  const parallel = await nodevms(['verify', dir, '--jobs', '2', '--json'])
  assert.equal(parallel.code, 0, parallel.stderr)
  const report = JSON.parse(parallel.stdout)
  assert.equal(report.calls, CALLS)
  assert.deepEqual(report.segments, [0, 60])
  const light = await nodevms(['verify', dir, '--light'])
  assert.equal(light.code, 0, light.stderr)
  assert.match(light.stdout, /✓ light audit: verified the 0 calls after checkpoint 120/)
  assert.match(light.stdout, /weaker than a full audit: calls 1 to 120 were not re-run/)
  const usage = await nodevms(['verify', dir, '--jobs', '0'])
  assert.equal(usage.code, 2)
  assert.match(usage.stderr, /at least 1/)
})

test('a host publishes its snapshots beside its log: verify ws://… --jobs 2 fetches them and verifies in segments', async (t) => {
  const work = await tempDir(t)
  const script = join(work, 'notes.js')
  await writeFile(script, NOTES)
  const { served } = await exec(t, script, ['--dir', join(work, 'vm'), '--checkpoints', String(EVERY)])
  const client = new RPCClient()
  await client.connect(served.rpcUrl, { user: 'u1' })
  for (let i = 1; i <= CALLS; i++) await client.call('add', i)
  await client.close()
  // The snapshot of the last checkpoint is published once its entry is stored: wait for it.
  let report: { verified: boolean; calls: number; segments?: number[] } | null = null
  for (let tries = 0; tries < 50; tries++) {
    const run = await nodevms(['verify', served.rpcUrl, '--jobs', '2', '--json'])
    assert.equal(run.code, 0, run.stderr)
    report = JSON.parse(run.stdout)
    if (report?.segments?.length === 2) break
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.equal(report?.calls, CALLS)
  assert.deepEqual(report?.segments, [0, 60], 'the second segment started from a snapshot fetched from the host')
  const light = await nodevms(['verify', served.rpcUrl, '--light', '--json'])
  assert.equal(light.code, 0, light.stderr)
  assert.equal(JSON.parse(light.stdout).lightFrom, CALLS)
})

test('what a whole audit checks once, a parallel one checks too: the archive the log names, the init entry, the ceilings', async (t) => {
  const { vm, snapshots } = await honestVM(t)
  const other = await deployVM(t, NOTES)
  // The log names another files archive than the one given.
  const relabelled = await lyingCopy(t, vm, (e) => Object.assign(e[0], { filesArchiveKey: other.filesArchive.key }))
  for (const options of [
    { parallel: 2, snapshots },
    { parallel: 3, snapshots },
    { light: true, snapshots },
  ]) {
    await assert.rejects(Verifier.verify(relabelled, vm.filesArchive, options), expectDivergence(0, 'filesArchiveKey'))
  }
  // A log above the auditor's ceilings is refused before any snapshot is read.
  const reads: number[] = []
  const watched = {
    seqs: () => snapshots.seqs(),
    read: (seq: number, max: number) => {
      reads.push(seq)
      return snapshots.read(seq, max)
    },
  }
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 2, snapshots: watched, maxLimits: { memoryBytes: 16 * 1024 * 1024 } }),
    {
      code: 'ERR_LIMIT_CEILING',
    },
  )
  assert.deepEqual(reads, [])
})

test("the init entry's files are checked in a parallel audit, and a snapshot that is a pipe or a link is passed over, never waited on", async (t) => {
  const { vm, snapshots } = await honestVM(t)
  const dir = vm.dir as string
  // Not regular files: a named pipe (reading it would wait for ever) and a link to /dev/zero (endless).
  const file = (seq: number) => join(dir, 'snapshots', `${String(seq).padStart(12, '0')}.snapshot`)
  await rm(file(60))
  execFileSync('mkfifo', [file(60)])
  for (const seq of [40, 80]) {
    await rm(file(seq))
    await symlink('/dev/zero', file(seq))
  }
  const notices: string[] = []
  const report = await Verifier.verify(vm.callLog, vm.filesArchive, { parallel: 2, snapshots, onNotice: (m) => notices.push(m) })
  assert.equal(report.calls, CALLS)
  assert.ok(
    notices.some((n) => /seq 60 passed over: it is not a regular file/.test(n)),
    notices.join('\n'),
  )
  assert.ok(
    notices.some((n) => /seq (40|80) passed over: it is not a regular file/.test(n)),
    notices.join('\n'),
  )
  // The init's own archive state: a VM whose init wrote a file, its archive cut back behind it.
  const initWrites = await deployVM(
    t,
    `exports.init = async () => { await System.files.writeFile('/terms.txt', 'x') }\nexports.noop = () => 1`,
    {
      checkpoints: { every: 1 },
    },
  )
  await initWrites.filesArchive.drive.core.truncate(1)
  await assert.rejects(
    Verifier.verify(initWrites.callLog, initWrites.filesArchive, { parallel: 2, snapshots: new SnapshotStore(initWrites.dir as string) }),
    expectDivergence(0, 'files'),
  )
})
