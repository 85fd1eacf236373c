/**
 * Checkpoints: a VM states its state digest in its log every N calls and keeps snapshots beside it;
 * reopening starts from the newest snapshot that holds. What is shown here:
 *
 *  - a sandbox that adopts a captured state is that sandbox: the next turns leave the same memory,
 *    byte for byte, on this thread and on a sandbox thread, as on the sandbox that was captured and
 *    on one that ran every turn from the start;
 *  - reopening replays only the calls after the newest snapshot, and comes back with the right state;
 *  - a damaged, torn, foreign or stale snapshot is skipped with a line saying why (then an older one,
 *    or the whole log) — never used;
 *  - a forged state digest in a log fails its audit at that seq;
 *  - production mode: the signed-call counters a snapshot keeps still refuse a replayed signed call.
 *
 * Crashes during snapshot writes are in crash.test.ts; host and replay computing the same digests on
 * the hostile corpus, the examples and across processes and threads in hostile.test.ts,
 * examples.test.ts and host-independence.test.ts (their VMs state a digest after every call).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { encodeCallPayload, signCallPayload } from '../src/auth/signed-call.js'
import {
  type CallEntry,
  CallLog,
  callerIdOf,
  generateKeyPair,
  type LogEntry,
  type RPCError,
  Verifier,
  VM,
  type VMOptions,
} from '../src/index.js'
import {
  decodeSnapshot,
  decodeSnapshotInSlices,
  encodeSnapshot,
  encodeSnapshotInSlices,
  stateDigest,
  stateDigestInSlices,
  type VMSnapshot,
} from '../src/ledger/snapshot.js'
import { prunable, SnapshotStore } from '../src/ledger/snapshot-store.js'
import { PAGE_BYTES } from '../src/sandbox/engine.js'
import { resolveLimits } from '../src/sandbox/limits.js'
import { RemoteSandbox } from '../src/sandbox/remote-sandbox.js'
import { type CallOutcome, Sandbox } from '../src/sandbox/sandbox.js'
import { SYSTEM_SOURCE } from '../src/vm/system-api.js'
import { clientNonce, expectDivergence, lyingCopy, tempDir } from './helpers.js'

const COUNTER = `
let n = 0
const recent = []
exports.add = async (k) => {
  n += k
  recent.push({ k, at: Date.now(), luck: Math.random(), by: System.caller.id })
  if (recent.length > 50) recent.shift()
  await System.files.writeFile('/n.txt', String(n))
  return n
}
exports.get = async () => ({ n, recent: recent.length, file: await System.files.readFile('/n.txt', 'utf8') })
`

/** Deploys COUNTER (or `code`) in `dir` with notices collected. */
async function open(dir: string, options: VMOptions = {}, code = COUNTER) {
  // spread: 0 keeps only the newest three, so the fallbacks below are easy to follow.
  const vm = new VM(code, { checkpoints: { every: 5, spread: 0 }, ...options })
  const notices: string[] = []
  vm.on('notice', (m: string) => notices.push(m))
  const progress: [number, number][] = []
  await vm.deploy({ dir, onResume: (done, total) => progress.push([done, total]) })
  return { vm, notices, replayed: progress.length > 0 ? progress[progress.length - 1][1] : null }
}

async function snapshotSeqs(dir: string): Promise<number[]> {
  return (await readdir(join(dir, 'snapshots'))).filter((n) => n.endsWith('.snapshot')).map((n) => Number.parseInt(n, 10))
}

const snapshotFile = (dir: string, seq: number) => join(dir, 'snapshots', `${String(seq).padStart(12, '0')}.snapshot`)

async function addCalls(vm: VM, count: number, from = 1): Promise<void> {
  for (let i = 0; i < count; i++) await vm.executeCall({ methodName: 'add', args: [from + i], userId: `u${i % 3}` })
}

const sum = (to: number) => (to * (to + 1)) / 2

test('a sandbox that adopts a captured state runs on to the same memory, byte for byte, here and on a sandbox thread', async () => {
  const code = `
    let n = 0, junk = []
    exports.step = (i) => { n += i; junk.push('x'.repeat(i % 97)); if (junk.length > 40) junk.splice(0, 20); return n }
    exports.later = (i) => new Promise((resolve) => setTimeout(() => resolve(n * i), 5))
    exports.spin = () => { for (;;) {} }
    exports.fail = () => { throw new RangeError('no ' + n) }
  `
  const options = {
    limits: resolveLimits({ computeTicks: 20, memoryBytes: 16 * 1024 * 1024 }),
    systemSources: [SYSTEM_SOURCE],
    costSchedule: 1,
  }
  const noRequests = async () => {
    throw new Error('no host requests here')
  }
  const turns = async (box: Sandbox | RemoteSandbox, from: number, to: number): Promise<CallOutcome[]> => {
    const outcomes: CallOutcome[] = []
    for (let i = from; i < to; i++) {
      const method = ['step', 'step', 'later', 'fail', 'step', 'spin'][i % 6]
      const turn = { timestamp: 1_700_000_000_000 + i, seed: i.toString(16).padStart(32, '0'), callerId: `c${i % 2}` }
      outcomes.push(await box.runCall(method, JSON.stringify([i]), turn, noRequests))
    }
    return outcomes
  }
  const digestOf = async (box: Sandbox | RemoteSandbox) =>
    stateDigest(await box.captureState(), { usage: { bytes: 0, entries: 0 }, counters: [] }, 'test')

  const original = await Sandbox.create(options)
  await original.loadScript(code, { timestamp: 1_700_000_000_000, seed: '0'.repeat(32), callerId: null })
  const before = await turns(original, 0, 30)
  assert.ok(
    before.some((o) => !o.ok && o.error.name === 'ComputeLimitExceeded'),
    'an aborted turn is among those captured',
  )
  const captured = await original.captureState()

  const here = await Sandbox.create(options)
  await here.adoptState(captured)
  const there = await RemoteSandbox.create(options)
  await there.adoptState(captured)
  const fromStart = await Sandbox.create(options)
  await fromStart.loadScript(code, { timestamp: 1_700_000_000_000, seed: '0'.repeat(32), callerId: null })
  await turns(fromStart, 0, 30)
  try {
    assert.equal(await digestOf(here), await digestOf(original), 'adopting a state reproduces it')
    assert.equal(await digestOf(fromStart), await digestOf(original), 'the same turns from the start give the same memory')
    const next = await turns(original, 30, 60)
    assert.deepEqual(await turns(here, 30, 60), next)
    assert.deepEqual(await turns(there, 30, 60), next)
    assert.deepEqual(await turns(fromStart, 30, 60), next)
    const digest = await digestOf(original)
    assert.equal(await digestOf(here), digest, 'this thread: the same bytes after 30 more turns')
    assert.equal(await digestOf(there), digest, 'a sandbox thread: the same bytes after 30 more turns')
    assert.equal(await digestOf(fromStart), digest)
    await assert.rejects(here.adoptState(captured), /only a fresh sandbox/)
  } finally {
    for (const box of [original, here, there, fromStart]) box.dispose()
  }
})

test('the memory of a disposed sandbox is cleared for the next one: it starts and runs byte for byte as on a new memory', async () => {
  const code = `
    let n = 0, junk = []
    exports.step = (i) => { n += i; junk.push('x'.repeat(i * 7919 % 4096)); return n }
    exports.read = () => System.files.readFile('/x')
  `
  const options = { limits: resolveLimits({ memoryBytes: 16 * 1024 * 1024 }), systemSources: [SYSTEM_SOURCE], costSchedule: 1 }
  const start = { timestamp: 1_700_000_000_000, seed: '0'.repeat(32), callerId: null }
  const memoryOf = (box: Sandbox) => (box as unknown as { memory: WebAssembly.Memory }).memory
  const noRequests = async () => {
    throw new Error('no host requests here')
  }
  const steps = async (box: Sandbox) => {
    const outcomes: CallOutcome[] = []
    for (let i = 0; i < 20; i++)
      outcomes.push(await box.runCall('step', JSON.stringify([i]), { ...start, timestamp: start.timestamp + i }, noRequests))
    return outcomes
  }
  const used = await Sandbox.create(options)
  await used.loadScript(code, start)
  await steps(used)
  const old = memoryOf(used)
  used.dispose()
  const reused = await Sandbox.create(options)
  const fresh = await Sandbox.create(options)
  try {
    assert.equal(memoryOf(reused), old, "the next sandbox takes the disposed one's memory")
    assert.notEqual(memoryOf(fresh), old)
    assert.deepEqual(await reused.captureState(), await fresh.captureState(), 'the same bytes before any turn')
    await reused.loadScript(code, start)
    await fresh.loadScript(code, start)
    assert.deepEqual(await steps(reused), await steps(fresh))
    assert.deepEqual(await reused.captureState(), await fresh.captureState(), 'the same bytes after the same turns')

    // A sandbox disposed while a turn waits on the host keeps its memory: nothing else may run on it.
    let arrived = () => {}
    const asked = new Promise<void>((resolve) => {
      arrived = resolve
    })
    const running = reused.runCall('read', '[]', start, async () => {
      arrived()
      await new Promise((resolve) => setTimeout(resolve, 10))
      return 'late'
    })
    await asked
    reused.dispose()
    const next = await Sandbox.create(options)
    assert.notEqual(memoryOf(next), memoryOf(reused))
    next.dispose()
    await running.catch(() => {})
  } finally {
    reused.dispose()
    fresh.dispose()
  }
})

test('a checkpoint taken and written in slices is the documented digest and file, byte for byte; at once and in slices agree', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  // About 10 MiB of strings: the capture, the digest and the file each take many slices.
  const code = `const kept = []
    exports.grow = (n) => { for (let i = 0; i < n; i++) kept.push(String(kept.length).padEnd(4096, '#')); return kept.length }`
  const { vm } = await open(dir, {}, code)
  for (let i = 0; i < 5; i++) await vm.executeCall({ methodName: 'grow', args: [500] })
  const stated = ((await vm.callLog.get(5)) as CallEntry).state
  await vm.close()
  const file = await readFile(snapshotFile(dir, 5))

  // The file, read by its format (snapshot.ts): magic, header length, header, pages, SHA-256 of all before.
  const magic = Buffer.from('LIBVMS-SNAPSHOT/1\n')
  assert.deepEqual(file.subarray(0, magic.length), magic)
  const headerStart = magic.length + 4
  const headerEnd = headerStart + file.readUInt32BE(magic.length)
  const header = JSON.parse(file.subarray(headerStart, headerEnd).toString('utf8'))
  const pages = file.subarray(headerEnd, file.length - 32)
  assert.ok(header.pages.length > 150, `the state holds ${header.pages.length} pages`)
  assert.equal(pages.length, header.pages.length * PAGE_BYTES)
  assert.deepEqual(
    createHash('sha256')
      .update(file.subarray(0, file.length - 32))
      .digest(),
    file.subarray(file.length - 32),
  )

  // The state digest, computed by its definition from the file's pages: the one the log states.
  const u32 = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(n)
    return b
  }
  const digestHeader = Buffer.from(
    JSON.stringify({
      format: header.stateFormat,
      memoryBytes: header.memoryBytes,
      pageBytes: PAGE_BYTES,
      exports: header.exports,
      requestsLeft: header.requestsLeft,
      usage: { bytes: header.host.usage.bytes, entries: header.host.usage.entries },
      counters: header.host.counters,
    }),
  )
  const digest = createHash('sha256').update('libvms-state/1\0').update(u32(digestHeader.length)).update(digestHeader)
  header.pages.forEach((page: number, i: number) => {
    digest.update(u32(page)).update(pages.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES))
  })
  const expected = digest.digest('hex')
  assert.equal(stated, expected, 'the log states the digest of the pages the file holds')
  assert.equal(header.state, expected)

  // At once (audit threads, proofs) and in slices (a VM's host) read, hash and write the same bytes.
  const decoded = decodeSnapshot(file)
  assert.deepEqual(await decodeSnapshotInSlices(file), decoded)
  assert.deepEqual(encodeSnapshot(decoded), file)
  assert.deepEqual(await encodeSnapshotInSlices(decoded), file)
  assert.equal(stateDigest(decoded.engine, decoded.host, decoded.stateFormat), expected)
  assert.equal(await stateDigestInSlices(decoded.engine, decoded.host, decoded.stateFormat), expected)
})

test('entries state their digest every N calls; reopening starts from the newest snapshot and replays only the calls after it', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const first = await open(dir)
  await addCalls(first.vm, 23)
  const entries = (await first.vm.callLog.list({ start: 1 })) as CallEntry[]
  assert.deepEqual(
    entries.flatMap((e, i) => (e.state ? [i + 1] : [])),
    [5, 10, 15, 20],
    'a digest every 5 calls',
  )
  assert.match(entries[4].state as string, /^[0-9a-f]{64}$/)
  const report = await Verifier.verify(first.vm.callLog, first.vm.filesArchive)
  assert.equal(report.calls, 23, 'the replay computes the same digests')
  await first.vm.close()
  assert.deepEqual(await snapshotSeqs(dir), [15, 20, 23], 'the newest three, the last written at close')

  const second = await open(dir)
  t.after(() => second.vm.close())
  assert.equal(second.replayed, 0, 'the close snapshot leaves no call to replay')
  assert.deepEqual(second.notices, [])
  assert.deepEqual(await second.vm.executeCall({ methodName: 'get' }), { n: sum(23), recent: 23, file: String(sum(23)) })
  await addCalls(second.vm, 4, 24)
  assert.equal(((await second.vm.callLog.get(25)) as CallEntry).state, undefined)
  assert.match(((await second.vm.callLog.get(28 - 0)) as CallEntry).state as string, /^[0-9a-f]{64}$/, 'the next checkpoint 5 calls on')
  assert.equal((await Verifier.verify(second.vm.callLog, second.vm.filesArchive)).calls, 28)
})

test('a damaged, torn, foreign or stale snapshot is skipped with a line saying why, then an older one or the whole log', async (t) => {
  const base = await tempDir(t)
  const dir = join(base, 'vm')
  const first = await open(dir)
  await addCalls(first.vm, 17)
  await first.vm.close()
  assert.deepEqual(await snapshotSeqs(dir), [10, 15, 17])

  // One byte of the newest flipped: its checksum fails; the one of seq 15 is used.
  const newest = await readFile(snapshotFile(dir, 17))
  newest[newest.length >> 1] ^= 0x40
  await writeFile(snapshotFile(dir, 17), newest)
  const damaged = await open(dir)
  assert.equal(damaged.notices.length, 1)
  assert.match(
    damaged.notices[0],
    /^snapshot of seq 17 skipped: its checksum does not match: the file is torn or damaged; trying the one of seq 15$/,
  )
  assert.equal(damaged.replayed, 2, 'calls 16 and 17 replayed')
  assert.deepEqual(await damaged.vm.executeCall({ methodName: 'get' }), { n: sum(17), recent: 17, file: String(sum(17)) })
  await damaged.vm.close()

  // The newest torn (cut short), the next one's header edited, the oldest deleted: the whole log.
  const seqs = await snapshotSeqs(dir)
  assert.deepEqual(seqs, [15, 17, 18], 'the close wrote the state after the get (seq 18)')
  await truncate(snapshotFile(dir, 18), 1000)
  const edited = await readFile(snapshotFile(dir, 17))
  await writeFile(snapshotFile(dir, 17), Buffer.from(edited.toString('latin1').replace('"seq":17', '"seq":16'), 'latin1'))
  await writeFile(snapshotFile(dir, 15), 'not a snapshot')
  const none = await open(dir)
  assert.deepEqual(none.notices, [
    'snapshot of seq 18 skipped: its checksum does not match: the file is torn or damaged; trying the one of seq 17',
    'snapshot of seq 17 skipped: its checksum does not match: the file is torn or damaged; trying the one of seq 15',
    'snapshot of seq 15 skipped: not a LibVMS snapshot (or one of a newer format); replaying the whole log',
    'no usable snapshot: replaying the whole log (18 calls)',
  ])
  assert.equal(none.replayed, 18)
  assert.deepEqual(await none.vm.executeCall({ methodName: 'get' }), { n: sum(17), recent: 17, file: String(sum(17)) })
  await none.vm.close()

  // Snapshots from another VM of the same script: one past the end of this log (as after the log was
  // cut back), and one at a seq this log has, whose entry is not this log's.
  const otherDir = join(base, 'other')
  const other = await open(otherDir)
  await addCalls(other.vm, 30, 100)
  await other.vm.close()
  for (const seq of await snapshotSeqs(dir)) await writeFile(snapshotFile(dir, seq), 'gone')
  await copyFile(snapshotFile(otherDir, 30), snapshotFile(dir, 30))
  const stale = await open(dir)
  assert.match(
    stale.notices[0],
    /^snapshot of seq 30 skipped: the log has 20 entries: it is not of this log as it is now; trying the one of seq 19$/,
  )
  await addCalls(stale.vm, 3, 18)
  await stale.vm.close()
  await rm(join(dir, 'snapshots'), { recursive: true })
  await mkdir(join(dir, 'snapshots'))
  await copyFile(snapshotFile(otherDir, 20), snapshotFile(dir, 20))
  const foreign = await open(dir)
  t.after(() => foreign.vm.close())
  assert.match(foreign.notices[0], /^snapshot of seq 20 skipped: the log holds another entry at its seq; replaying the whole log$/)
  assert.deepEqual(await foreign.vm.executeCall({ methodName: 'get' }), { n: sum(20), recent: 20, file: String(sum(20)) })
})

test('a snapshot edited with its checksum redone, or one of another state than the log states at its seq, is skipped on reopen: an older one or the whole log gives the right state', async (t) => {
  const base = await tempDir(t)
  /** A VM of 15 calls, closed: snapshots of seqs 5, 10 and 15, whose digests its log states. */
  const fifteenCalls = async (name: string) => {
    const dir = join(base, name)
    const { vm } = await open(dir)
    await addCalls(vm, 15)
    await vm.close()
    assert.deepEqual(await snapshotSeqs(dir), [5, 10, 15])
    const store = new SnapshotStore(dir)
    const snapshots = new Map<number, VMSnapshot>()
    for (const seq of [5, 10, 15]) snapshots.set(seq, await store.read(seq))
    return { dir, snapshots }
  }
  const right = { n: sum(15), recent: 15, file: String(sum(15)) }

  // (a) The newest snapshot's engine bytes edited (each page it shares with the snapshot of seq 10
  // made that page), its header left as it was and its checksum redone: a whole file, which no longer
  // hashes to the state it names (the log's state at seq 15).
  const edited = await fifteenCalls('edited')
  const [older, newest] = [edited.snapshots.get(10) as VMSnapshot, edited.snapshots.get(15) as VMSnapshot]
  const bytes = new Uint8Array(newest.engine.bytes)
  newest.engine.pages.forEach((page, i) => {
    const j = older.engine.pages.indexOf(page)
    if (j >= 0) bytes.set(older.engine.bytes.subarray(j * PAGE_BYTES, (j + 1) * PAGE_BYTES), i * PAGE_BYTES)
  })
  assert.ok(Buffer.compare(bytes, newest.engine.bytes) !== 0, 'the engine bytes are edited')
  await writeFile(snapshotFile(edited.dir, 15), encodeSnapshot({ ...newest, engine: { ...newest.engine, bytes } }))
  const fromOlder = await open(edited.dir)
  t.after(() => fromOlder.vm.close())
  assert.deepEqual(fromOlder.notices, [
    'snapshot of seq 15 skipped: its content does not hash to the state it names; trying the one of seq 10',
  ])
  assert.equal(fromOlder.replayed, 5, 'calls 11 to 15 replayed from the snapshot of seq 10')
  assert.deepEqual(await fromOlder.vm.executeCall({ methodName: 'get' }), right)

  // (b) Each snapshot made of another seq's state: it names its own seq, entry and archive state, and
  // hashes to the state it names, but that is not the state the log states at its seq.
  const swapped = await fifteenCalls('swapped')
  for (const [seq, other] of [
    [15, 10],
    [10, 5],
    [5, 10],
  ]) {
    const own = swapped.snapshots.get(seq) as VMSnapshot
    const theirs = swapped.snapshots.get(other) as VMSnapshot
    const file = encodeSnapshot({ ...own, engine: theirs.engine, host: theirs.host, state: theirs.state })
    assert.equal(decodeSnapshot(file).state, theirs.state, 'it hashes to the state it names')
    assert.notEqual(theirs.state, own.state)
    await writeFile(snapshotFile(swapped.dir, seq), file)
  }
  const fromStart = await open(swapped.dir)
  t.after(() => fromStart.vm.close())
  assert.deepEqual(fromStart.notices, [
    'snapshot of seq 15 skipped: its state digest is not the one the log states at seq 15; trying the one of seq 10',
    'snapshot of seq 10 skipped: its state digest is not the one the log states at seq 10; trying the one of seq 5',
    'snapshot of seq 5 skipped: its state digest is not the one the log states at seq 5; replaying the whole log',
    'no usable snapshot: replaying the whole log (15 calls)',
  ])
  assert.equal(fromStart.replayed, 15)
  assert.deepEqual(await fromStart.vm.executeCall({ methodName: 'get' }), right)
})

test('a forged state digest fails the audit at its seq; a schema 1 log that states one is refused there too', async (t) => {
  const base = await tempDir(t)
  const { vm } = await open(join(base, 'vm'))
  t.after(() => vm.close())
  await addCalls(vm, 12)
  const lying = (change: (entries: LogEntry[]) => void) => lyingCopy(t, vm, change)
  const forged = await lying((e) => {
    const entry = e[10] as CallEntry
    entry.state = (entry.state?.[0] === '0' ? '1' : '0') + entry.state?.slice(1)
  })
  await assert.rejects(Verifier.verify(forged, null), expectDivergence(10, 'state'))
  const { verdict } = await Verifier.proveDivergence(forged, 10)
  assert.ok(verdict.holds && verdict.seq === 10, verdict.holds ? verdict.what : verdict.why)
  // A digest stated where the host stated none is computed and compared all the same.
  const added = await lying((e) => Object.assign(e[7], { stateFormat: (e[5] as CallEntry).stateFormat, state: 'a'.repeat(64) }))
  await assert.rejects(Verifier.verify(added, null), expectDivergence(7, 'state'))
  // Schema 1 predates checkpoints: no honest schema 1 host states a digest.
  const older = await lying((e) => Object.assign(e[0], { schema: 1 }))
  await assert.rejects(Verifier.verify(older, null), expectDivergence(5, 'state'))
  const plain = await lying((e) => {
    Object.assign(e[0], { schema: 1 })
    for (const entry of e) {
      delete (entry as CallEntry).state
      delete (entry as CallEntry).stateFormat
    }
  })
  assert.equal((await Verifier.verify(plain, null)).calls, 12, 'a schema 1 log without digests verifies as before')
  // Digests of another build's state format (its prelude, say, differs) cannot be compared: that is
  // not a verdict on the host, but an engine mismatch — unless told to try anyway.
  const otherBuild = await lying((e) => {
    for (const entry of e) if ((entry as CallEntry).stateFormat) (entry as CallEntry).stateFormat = '0123456789abcdef'
  })
  await assert.rejects(
    Verifier.verify(otherBuild, null),
    (err: Error) => err.name === 'EngineMismatchError' && /state format 0123456789abcdef/.test(err.message),
  )
  assert.equal((await Verifier.verify(otherBuild, null, { allowEngineMismatch: true })).calls, 12)
})

test("another build's snapshots and digests: a reopen skips its snapshot and keeps its digests", async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const first = await open(dir)
  await addCalls(first.vm, 12)
  await first.vm.close()
  // As an older LibVMS would have left them: every snapshot, and the digests in the log, of another format.
  for (const seq of await snapshotSeqs(dir)) {
    const store = new SnapshotStore(dir)
    const s = await store.read(seq)
    s.stateFormat = 'fedcba9876543210'
    s.state = stateDigest(s.engine, s.host, s.stateFormat)
    await store.write(seq, encodeSnapshot(s))
  }
  const log = await CallLog.open(dir)
  const entries = ((await log.list()) as CallEntry[]).map((e) => (e.state ? { ...e, stateFormat: 'fedcba9876543210' } : e))
  await log.core.truncate(1)
  await log.append(entries.slice(1))
  await log.close()
  const again = await open(dir)
  t.after(() => again.vm.close())
  assert.equal(again.notices.length, 4, again.notices.join('\n'))
  assert.match(
    again.notices[0],
    /skipped: it was taken by another LibVMS build \(state format fedcba9876543210, this one's is [0-9a-f]{16}\)/,
  )
  assert.equal(again.replayed, 12, 'the whole log, its old digests kept as they are')
  assert.deepEqual(await again.vm.executeCall({ methodName: 'get' }), { n: sum(12), recent: 12, file: String(sum(12)) })
})

test('production mode: a snapshot keeps the signed-call counters, so a replayed signed call is still refused after reopening', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const alice = generateKeyPair()
  const code = `let n = 0; exports.add = (k) => (n += k)`
  const first = await open(dir, { auth: 'production', checkpoints: { every: 2, spread: 0 } }, code)
  const nonce = 'ab'.repeat(16)
  const signed = []
  for (let counter = 1; counter <= 4; counter++) {
    const argsJson = JSON.stringify([counter])
    const payload = encodeCallPayload({
      callLog: first.vm.callLog.key,
      method: 'add',
      argsJson,
      nonce,
      counter,
      clientNonce: clientNonce(),
    })
    const call = { methodName: 'add', args: [counter], userId: callerIdOf(alice), signed: signCallPayload(payload, alice.secretKey) }
    signed.push(call)
    await first.vm.executeCall(call)
  }
  await first.vm.close()
  const second = await open(dir, { auth: 'production', checkpoints: { every: 2, spread: 0 } }, code)
  t.after(() => second.vm.close())
  assert.equal(second.replayed, 0)
  for (const call of signed) await assert.rejects(second.vm.executeCall(call), (err: RPCError) => err.code === 'ERR_REPLAYED')
})

test('the snapshots kept: the newest, and older ones spread over the log', () => {
  const seqs = Array.from({ length: 40 }, (_, i) => (40 - i) * 10) // 400, 390, … 10, newest first
  const removed = new Set(prunable(seqs, 3, 4))
  const kept = seqs.filter((s) => !removed.has(s)).sort((a, b) => a - b)
  assert.deepEqual(kept.slice(-3), [380, 390, 400], 'the newest three')
  const older = kept.slice(0, -3)
  assert.equal(older.length, 4)
  const gaps = older.map((s, i) => s - (older[i - 1] ?? 0)).concat(380 - older[older.length - 1])
  assert.ok(Math.max(...gaps) <= 2 * Math.min(...gaps) + 10, `spread out: ${older.join(', ')}`)
  assert.deepEqual(prunable([30, 20, 10], 3, 0), [])
  assert.deepEqual(prunable([50, 40, 30, 20, 10], 3, 0).sort(), [10, 20])
})
