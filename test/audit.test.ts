import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { type CallEntry, CallLog, DivergenceError, Verifier, VM } from '../src/index.js'
import { deployVM, tempDir } from './helpers.js'

const NOTES = `
exports.init = async () => { await System.files.mkdir('/notes') }
exports.add = async (name, text) => { await System.files.writeFile('/notes/' + name, text); return (await System.files.readdir('/notes')).length }
exports.read = (name) => System.files.readFile('/notes/' + name)
exports.count = async () => (await System.files.readdir('/notes')).length
exports.boom = () => { throw new Error('boom') }
`

async function notesVM(t: Parameters<typeof deployVM>[0]): Promise<VM> {
  const vm = await deployVM(t, NOTES)
  await vm.executeCall({ methodName: 'add', args: ['a', 'alpha'], userId: 'alice' })
  await vm.executeCall({ methodName: 'add', args: ['b', 'beta'], userId: 'bob' })
  await vm.executeCall({ methodName: 'boom' }).catch(() => {})
  await vm.executeCall({ methodName: 'count' })
  return vm
}

function isDivergence(check: (err: DivergenceError) => void): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof DivergenceError, `expected a DivergenceError, got ${String(err)}`)
    assert.equal(err.code, 'ERR_DIVERGENCE')
    check(err)
    return true
  }
}

test('an honest log replays and verifies (the source document audit flow)', async (t) => {
  const vm = await notesVM(t)
  const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: vm.filesArchive.url }, { dir: join(await tempDir(t), 'replay') })
  t.after(() => replay.close())
  await Verifier.compareLogs(vm.callLog, replay.callLog)
  await Verifier.compareArchives(vm.filesArchive, replay.filesArchive)
  const report = await Verifier.verify(vm.callLog, vm.filesArchive)
  assert.deepEqual(report, { entries: 5, calls: 4, failedCalls: 1, filesVersion: vm.filesArchive.version })
  // The replayed VM continues from the same state.
  assert.equal(await replay.executeCall({ methodName: 'read', args: ['b'] }), 'beta')
})

test('fromCallLog checks the files archive URL against the init entry', async (t) => {
  const vm = await notesVM(t)
  const other = await deployVM(t, NOTES)
  await assert.rejects(
    VM.fromCallLog(vm.callLog, { filesArchiveUrl: other.filesArchive.url }),
    isDivergence((err) => {
      assert.equal(err.seq, 0)
      assert.equal(err.field, 'filesArchiveKey')
    }),
  )
  // dat:// URLs are accepted too.
  const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: `dat://${vm.filesArchive.key}` })
  await replay.close()
})

test('an out-of-band write to the archive is caught with the divergent seq named', async (t) => {
  const vm = await notesVM(t)
  await vm.filesArchive.writeFile('/notes/planted', 'not from a call')
  await vm.executeCall({ methodName: 'count' }) // seq 5 sees the planted file: 3 notes, not 2
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive),
    isDivergence((err) => {
      assert.equal(err.seq, 5)
      assert.equal(err.method, 'count')
      assert.equal(err.field, 'result')
      assert.equal(err.expected, 3)
      assert.equal(err.actual, 2)
    }),
  )
  const replay = await VM.fromCallLog(vm.callLog)
  t.after(() => replay.close())
  await assert.rejects(
    Verifier.compareLogs(vm.callLog, replay.callLog),
    isDivergence((err) => assert.equal(err.seq, 5)),
  )
  await assert.rejects(
    Verifier.compareArchives(vm.filesArchive, replay.filesArchive),
    isDivergence((err) => assert.equal(err.path, '/notes/planted')),
  )
})

test('an out-of-band write after the last call is reported as archive changes no call made', async (t) => {
  const vm = await notesVM(t)
  await vm.filesArchive.writeFile('/notes/a', 'rewritten')
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive),
    isDivergence((err) => {
      assert.equal(err.seq, 4)
      assert.equal(err.path, '/notes/a')
      assert.match(err.message, /changes after seq 4/)
    }),
  )
})

test('a write the log does not reflect changes the files digest of the next writing call', async (t) => {
  const vm = await notesVM(t)
  await vm.filesArchive.writeFile('/notes/planted', 'x')
  await vm.filesArchive.unlink('/notes/planted') // same files, but the archive's history differs
  await vm.executeCall({ methodName: 'add', args: ['c', 'gamma'] })
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive),
    isDivergence((err) => {
      assert.equal(err.seq, 5)
      assert.equal(err.field, 'files')
    }),
  )
})

test('a forged entry appended to the log is caught with its seq named', async (t) => {
  const vm = await notesVM(t)
  const honest = (await vm.callLog.get(4)) as CallEntry
  const forged: CallEntry = { ...honest, caller: 'mallory', result: 99 }
  await vm.callLog.append(forged)
  await assert.rejects(
    Verifier.verify(vm.callLog, vm.filesArchive),
    isDivergence((err) => {
      assert.equal(err.seq, 5)
      assert.equal(err.method, 'count')
      assert.equal(err.caller, 'mallory')
      assert.equal(err.field, 'result')
      assert.equal(err.expected, 99)
      assert.equal(err.actual, 2)
      assert.match(err.message, /call 5 \(count by caller mallory\) diverges in result/)
    }),
  )
  const replay = await VM.fromCallLog(vm.callLog)
  t.after(() => replay.close())
  await assert.rejects(
    Verifier.compareLogs(vm.callLog, replay.callLog),
    isDivergence((err) => assert.equal(err.seq, 5)),
  )
})

test('a forged error, a forged method and a swapped script are each caught', async (t) => {
  const vm = await notesVM(t)
  const base = (await vm.callLog.get(4)) as CallEntry
  const dir = await tempDir(t)

  // Each lie is built as a copy of the honest log with one entry changed.
  async function lyingLog(name: string, change: (entries: CallEntry[]) => void): Promise<CallLog> {
    const entries = (await vm.callLog.list()) as CallEntry[]
    change(entries)
    const log = await CallLog.create(join(dir, name))
    t.after(() => log.close())
    await log.append(entries)
    return log
  }
  const errorLie = await lyingLog('error', (e) => {
    e[3] = { ...e[3], error: { name: 'Error', message: 'something else' } }
  })
  await assert.rejects(
    Verifier.verify(errorLie, null),
    isDivergence((err) => {
      assert.equal(err.seq, 3)
      assert.equal(err.field, 'error')
    }),
  )
  const methodLie = await lyingLog('method', (e) => {
    e.push({ ...base, method: 'nonexistent' })
  })
  await assert.rejects(
    Verifier.verify(methodLie, null),
    isDivergence((err) => assert.equal(err.seq, 5)),
  )
  const scriptLie = await lyingLog('script', (e) => {
    const init = e[0] as unknown as { code: string }
    init.code = init.code.replace("return (await System.files.readdir('/notes')).length", 'return 1')
  })
  await assert.rejects(
    Verifier.verify(scriptLie, null),
    // The first add returns 1 under both scripts, but the honest one also listed the folder: host
    // work is charged, so the two part at the first add's cost.
    isDivergence((err) => {
      assert.equal(err.seq, 1)
      assert.equal(err.field, 'cost')
    }),
  )
})

test('logs of two different scripts do not compare equal', async (t) => {
  const a = await deployVM(t, 'exports.x = () => 1')
  const b = await deployVM(t, 'exports.x = () => 2')
  await assert.rejects(
    Verifier.compareLogs(a.callLog, b.callLog),
    isDivergence((err) => {
      assert.equal(err.seq, 0)
      assert.equal(err.field, 'code')
    }),
  )
})

test('a replay of a log with init verifies (init runs once, at the same point)', async (t) => {
  const vm = await deployVM(t, `let runs = 0\nexports.init = () => { runs++ }\nexports.runs = () => runs`)
  assert.equal(await vm.executeCall({ methodName: 'runs' }), 1)
  const replay = await VM.fromCallLog(vm.callLog)
  t.after(() => replay.close())
  await Verifier.compareLogs(vm.callLog, replay.callLog)
  assert.equal(await replay.executeCall({ methodName: 'runs' }), 1)
})
