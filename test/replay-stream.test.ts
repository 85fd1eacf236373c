/**
 * A replay as a stream (src/vm/replay.ts, openReplay): the init entry and then each call, the logged
 * entry beside the replayed one, read once. And one of its readers: a VM reopening its own log
 * compares every entry with the one entry diff (ledger/entry-diff.ts) and names the field that
 * really differs.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { type CallEntry, CallLog, DivergenceError, type LogEntry, openReplay, VM } from '../src/index.js'
import { diffEntry } from '../src/ledger/entry-diff.js'
import { deployVM, tempDir } from './helpers.js'

const NOTES = `
let n = 0
exports.inc = () => ++n
exports.note = async (text) => { await System.files.writeFile('/note-' + (++n) + '.txt', text); return n }
`

test('a replay is a stream: the init entry, then each call, logged beside replayed, equal for an honest log; read once', async (t) => {
  const vm = await deployVM(t, NOTES)
  for (let i = 0; i < 12; i++) await vm.executeCall({ methodName: i % 3 === 0 ? 'note' : 'inc', args: [`text ${i}`] })
  const replay = await openReplay(vm.callLog, { filesArchiveUrl: vm.filesArchive.url, dir: join(await tempDir(t), 'replay') })
  const seqs: number[] = []
  try {
    assert.deepEqual(replay.init.replayed, replay.init.logged)
    for await (const entry of replay.entries()) {
      assert.equal(diffEntry(entry), null, `seq ${entry.seq}`)
      assert.deepEqual(entry.logged, await vm.callLog.get(entry.seq))
      seqs.push(entry.seq)
    }
    await assert.rejects(async () => {
      for await (const _entry of replay.entries()) {
        // never reached: a replay is read once
      }
    }, /read once/)
  } finally {
    await replay.close()
  }
  assert.deepEqual(
    seqs,
    Array.from({ length: vm.callLog.length }, (_, i) => i),
  )
})

test('a VM reopening its own log names the entry and the field that differ, as an audit does (not always the result)', async (t) => {
  for (const [field, edit] of [
    ['cost', (e: CallEntry) => ({ ...e, cost: e.cost + 1 })],
    ['result', (e: CallEntry) => ({ ...e, result: 99 })],
  ] as const) {
    const dir = join(await tempDir(t), 'vm')
    const vm = new VM(NOTES)
    await vm.deploy({ dir })
    for (let i = 0; i < 4; i++) await vm.executeCall({ methodName: 'inc' })
    await vm.close()
    // The VM's storage is changed behind its back: its last entry rewritten with the VM's own key.
    const log = await CallLog.open(dir)
    const entries = (await log.list()) as LogEntry[]
    const seq = entries.length - 1
    await log.core.truncate(seq)
    await log.append(edit(entries[seq] as CallEntry))
    await log.close()
    await assert.rejects(new VM(NOTES, { checkpoints: false }).deploy({ dir }), (err: unknown) => {
      assert.ok(err instanceof DivergenceError, String(err))
      assert.equal(err.seq, seq, err.message)
      assert.equal(err.field, field, err.message)
      assert.match(err.message, /the VM's own log does not replay: call \d+ \(inc by an anonymous caller\) diverges in/)
      return true
    })
  }
})
