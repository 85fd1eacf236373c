import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type CallEntry, Verifier, VM } from '../src/index.js'
import { deployVM } from './helpers.js'

const NONDETERMINISM_BAIT = `
exports.init = async () => { await System.files.mkdir('/notes') }
exports.mix = async (n) => {
  const started = Date.now()
  const rolls = [Math.random(), Math.random()]
  await new Promise((resolve) => setTimeout(resolve, 250))
  const waited = Date.now() - started
  const names = Array.from({ length: n }, (_, i) => '/notes/' + i + '.txt')
  await Promise.all(names.map((name, i) => System.files.writeFile(name, 'roll ' + rolls[i % 2] + ' at ' + new Date().toISOString())))
  const read = await Promise.all(names.map((name) => System.files.readFile(name)))
  const order = []
  await Promise.all([3, 1, 2].map(async (k) => { await new Promise((r) => setTimeout(r, k)); order.push(k) }))
  return { rolls, waited, read, order, iso: new Date().toString(), offset: new Date().getTimezoneOffset() }
}
exports.local = () => [new Date(2020, 0, 1, 12).getTime(), Date.parse('2020-01-01T12:00:00'), new Date('2020-01-01T12:00').getHours()]
exports.weak = () => [typeof WeakRef, typeof FinalizationRegistry]
exports.lateTimer = async () => { setTimeout(() => System.files.writeFile('/late', 'x'), 1000); return 'returned' }
exports.late = async () => { try { await System.files.stat('/late'); return true } catch (e) { return e.name } }
`

test('Math.random, Date.now, timers and Promise.all over file reads and writes replay to identical entries, 20 times', async (t) => {
  const vm = await deployVM(t, NONDETERMINISM_BAIT)
  const results = []
  for (let i = 1; i <= 4; i++) results.push(await vm.executeCall({ methodName: 'mix', args: [i + 2] }))
  const first = results[0] as { rolls: number[]; waited: number; order: number[]; offset: number }
  assert.equal(first.waited, 250, 'virtual time advances exactly by the timer delay')
  assert.deepEqual(first.order, [1, 2, 3], 'timers fire in virtual-time order')
  assert.equal(first.offset, 0, 'the VM runs in UTC')
  assert.notDeepEqual(first.rolls, (results[1] as typeof first).rolls, 'each call gets its own random seed')
  const logged = await vm.callLog.list()

  for (let round = 0; round < 20; round++) {
    const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: vm.filesArchive.url })
    try {
      assert.deepEqual(await replay.callLog.list(), logged, `round ${round}: replayed entries equal the logged ones`)
      await Verifier.compareArchives(vm.filesArchive, replay.filesArchive)
    } finally {
      await replay.close()
    }
  }
})

test('local-time Date APIs read UTC, whatever the host time zone', async (t) => {
  const vm = await deployVM(t, NONDETERMINISM_BAIT)
  const utc = Date.UTC(2020, 0, 1, 12)
  assert.deepEqual(await vm.executeCall({ methodName: 'local' }), [utc, utc, 12])
})

test('WeakRef and FinalizationRegistry are removed', async (t) => {
  const vm = await deployVM(t, NONDETERMINISM_BAIT)
  assert.deepEqual(await vm.executeCall({ methodName: 'weak' }), ['undefined', 'undefined'])
})

test('timers still pending when a call settles are cancelled: nothing changes files between calls', async (t) => {
  const vm = await deployVM(t, NONDETERMINISM_BAIT)
  assert.equal(await vm.executeCall({ methodName: 'lateTimer' }), 'returned')
  assert.equal(await vm.executeCall({ methodName: 'late' }), 'NotFound')
  const entries = (await vm.callLog.list({ start: 1 })) as CallEntry[]
  assert.equal(entries[0].files.version, entries[1].files.version)
})

test('console output goes to the host sink, never into the log', async (t) => {
  const lines: string[] = []
  const vm = await deployVM(t, `exports.say = (x) => { console.log('hello', x, { a: 1 }); console.error('bad'); return 1 }`, {
    console: (level, message) => lines.push(`${level}: ${message}`),
  })
  await vm.executeCall({ methodName: 'say', args: ['world'] })
  assert.deepEqual(lines, ['log: hello world {"a":1}', 'error: bad'])
  const entry = (await vm.callLog.get(1)) as CallEntry
  assert.doesNotMatch(JSON.stringify(entry), /hello/)
})
