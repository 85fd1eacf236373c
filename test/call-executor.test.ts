/**
 * The call executor (src/vm/call-executor.ts) on its own: a real sandbox, a real log and archive in a
 * temp dir, no VM around it. What it promises: nothing is answered before it is stored (a call's
 * promise settles only once its entry is in the log, and a store that fails answers no one), and it
 * owns its position in the log (the turns it runs move it, `adopt` puts it after a snapshot's entry,
 * and no one else writes it).
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { CallAuthenticator } from '../src/auth/call-auth.js'
import { StateError } from '../src/errors.js'
import { CURRENT_FILES_FORMAT } from '../src/ledger/drive-format.js'
import { buildInitEntry, type CallEntry, LOG_SCHEMA, type LogEntry } from '../src/ledger/log-entry.js'
import { entryHash, type VMSnapshot } from '../src/ledger/snapshot.js'
import { VMStorage } from '../src/ledger/vm-storage.js'
import { CURRENT_COST_SCHEDULE } from '../src/sandbox/host-work.js'
import { resolveLimits } from '../src/sandbox/limits.js'
import { CallExecutor } from '../src/vm/call-executor.js'
import { ENGINE_INFO } from '../src/vm/engine-info.js'
import { TurnRunner } from '../src/vm/turn-runner.js'
import { tempDir } from './helpers.js'

const COUNTER = `
let n = 0
exports.inc = () => ++n
exports.save = async (text) => { await System.files.writeFile('/note.txt', text); return ++n }
`

/** A call of `method` as admission hands it to the executor. */
function call(method: string, args: unknown[] = []): { caller: null; method: string; args: CallEntry['args']; argsJson: string } {
  return { caller: null, method, args: args as CallEntry['args'], argsJson: JSON.stringify(args) }
}

/** The caller check of a debug-mode VM whose log is `storage`'s (it holds the signed-call counters the executor shares). */
function debugAuthenticator(storage: VMStorage): CallAuthenticator {
  return new CallAuthenticator('debug', storage.callLog.key, LOG_SCHEMA)
}

/**
 * An executor over fresh storage in a temp dir with `code` loaded and its init turn run at
 * `timestamp`, the init entry stored: where a first deploy leaves one. Closed when the test ends.
 */
async function deployedExecutor(t: TestContext, code: string, timestamp = Date.now()): Promise<CallExecutor> {
  const storage = await VMStorage.open(join(await tempDir(t), 'vm'), 'vm')
  const limits = resolveLimits({})
  const runner = new TurnRunner({
    code,
    limits,
    identity: { key: storage.filesArchive.key, title: 'executor test' },
    costSchedule: CURRENT_COST_SCHEDULE,
    filesFormat: CURRENT_FILES_FORMAT,
  })
  const executor = new CallExecutor(runner, storage, debugAuthenticator(storage))
  t.after(async () => {
    await executor.drain('the test ended')
    runner.dispose()
    await executor.close()
    await storage.close().catch(() => {})
  })
  const seed = executor.newSeed()
  const loadCost = await runner.load(timestamp, seed)
  const outcome = await executor.init(timestamp, seed)
  assert.ok(outcome.ok)
  executor.stage(
    buildInitEntry({
      costSchedule: CURRENT_COST_SCHEDULE,
      filesFormat: CURRENT_FILES_FORMAT,
      engine: ENGINE_INFO,
      code,
      title: 'executor test',
      filesArchiveKey: storage.filesArchive.key,
      limits,
      auth: 'debug',
      timestamp,
      seed,
      exports: runner.exports,
      outcome,
      loadCost,
      files: await executor.currentFiles(),
    }),
  )
  await executor.flush()
  return executor
}

test('a call is answered only once its entry is in the log: each promise settles with its entry stored at its seq', async (t) => {
  const executor = await deployedExecutor(t, COUNTER)
  const log = executor.storage.callLog
  // At the moment each promise settles, the log must hold its entry already (read back as stored).
  const seen: { seq: number; length: number }[] = []
  const calls = Array.from({ length: 40 }, (_, i) =>
    executor.submit(i % 4 === 0 ? call('save', [`note ${i}`]) : call('inc'), `lane ${i % 3}`).then((stored) => {
      seen.push({ seq: stored.seq, length: log.length })
      return stored
    }),
  )
  const stored = await Promise.all(calls)
  for (const s of seen) assert.ok(s.length > s.seq, `call ${s.seq} was answered when the log had ${s.length} entries`)
  assert.deepEqual(
    stored.map((s) => s.seq).sort((a, b) => a - b),
    Array.from({ length: 40 }, (_, i) => i + 1),
  )
  for (const s of stored) assert.deepEqual(await log.get(s.seq), s.entry as LogEntry)
  assert.equal(log.length, 41)
})

test('a store that fails answers no one: the call is refused, the log holds nothing of it, and the executor runs no more calls', async (t) => {
  const executor = await deployedExecutor(t, COUNTER)
  const { callLog, filesArchive } = executor.storage
  assert.equal(await executor.submit(call('inc'), 'a').then((s) => s.seq), 1)
  const version = filesArchive.version
  // The log's storage goes away under the executor: the call runs, and storing its entry fails.
  await callLog.close()
  let answered = false
  await assert.rejects(
    executor.submit(call('inc'), 'a').then(() => {
      answered = true
    }),
    (err: unknown) => err instanceof StateError && /could not be logged/.test(err.message),
  )
  assert.equal(answered, false)
  assert.ok(executor.failure, 'the executor knows it stopped')
  await assert.rejects(executor.submit(call('save', ['lost']), 'b'), /stopped after a storage failure/)
  assert.equal(filesArchive.version, version, 'no file change was made after the failure')
  await executor.close()
  await executor.storage.close()
  const reopened = await VMStorage.openExisting(executor.storage.dir)
  t.after(() => reopened.close())
  assert.equal(reopened.callLog.length, 2, 'the log holds the init entry and the first call, nothing more')
})

test('the executor owns its position: the init turn puts it after entry 0, each call after its own, and time never goes back', async (t) => {
  // An init dated an hour ahead of the host's clock: no call after it may be dated earlier.
  const ahead = Date.now() + 3_600_000
  const executor = await deployedExecutor(t, COUNTER, ahead)
  assert.equal(executor.nextSeq, 1)
  assert.equal(executor.lastTimestamp, ahead)
  const first = await executor.submit(call('inc'), 'a')
  assert.equal(first.seq, 1)
  assert.equal(first.entry.timestamp, ahead)
  assert.equal(executor.nextSeq, 2)
  assert.equal(executor.lastTimestamp, ahead)
  // Only the executor writes its position: a setter does not exist, for the compiler nor at run time.
  assert.throws(() => {
    // @ts-expect-error the position is the executor's own
    executor.nextSeq = 7
  }, TypeError)
  assert.throws(() => {
    // @ts-expect-error the position is the executor's own
    executor.lastTimestamp = 0
  }, TypeError)
  assert.equal(executor.nextSeq, 2)
})

test('adopt puts an executor after the entry a snapshot is of: its state, its archive state and its position, and calls go on from there', async (t) => {
  const source = await deployedExecutor(t, COUNTER)
  let last = await source.submit(call('inc'), 'a')
  last = await source.submit(call('save', ['kept']), 'a')
  last = await source.submit(call('inc'), 'a')
  assert.equal(last.seq, 3)
  const captured = await source.captureState()
  const snapshot: VMSnapshot = {
    seq: last.seq,
    entryHash: entryHash(await source.storage.callLog.block(last.seq)),
    state: captured.state,
    stateFormat: captured.stateFormat,
    files: last.entry.files,
    engine: captured.engine,
    host: captured.host,
  }
  // Another executor, on an archive that holds what the snapshot's entry records (the same one, reopened).
  const dir = source.storage.dir
  await source.drain('moved')
  source.runner.dispose()
  await source.close()
  await source.storage.close()
  const storage = await VMStorage.open(dir, 'vm')
  const runner = new TurnRunner({
    code: COUNTER,
    limits: resolveLimits({}),
    identity: { key: storage.filesArchive.key, title: 'executor test' },
    costSchedule: CURRENT_COST_SCHEDULE,
    filesFormat: CURRENT_FILES_FORMAT,
  })
  const executor = new CallExecutor(runner, storage, debugAuthenticator(storage))
  t.after(async () => {
    runner.dispose()
    await executor.close()
    await storage.close()
  })
  assert.equal(executor.nextSeq, 0, 'a new executor stands nowhere until a turn or a snapshot puts it somewhere')
  await executor.adopt(snapshot, last.entry.timestamp)
  assert.equal(executor.nextSeq, 4)
  assert.equal(executor.lastTimestamp, last.entry.timestamp)
  assert.deepEqual(await executor.currentFiles(), last.entry.files)
  assert.equal((await executor.captureState()).state, snapshot.state, 'the state it adopted is the one captured')
  const next = await executor.submit(call('inc'), 'a')
  assert.equal(next.seq, 4)
  assert.equal(next.entry.result, 4, 'the counter goes on from the snapshot')
  assert.ok(next.entry.timestamp >= last.entry.timestamp)
  assert.deepEqual(next.entry.files, last.entry.files, 'the call starts from the archive state the snapshot records')
  assert.deepEqual(await storage.callLog.get(4), next.entry as LogEntry)
})
