import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type CallEntry, Verifier, VM } from '../src/index.js'
import { CRASH_SCRIPT } from './fixtures/crash-writer.js'
import { tempDir } from './helpers.js'

const WRITER = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url))
const TRIALS = 5

/**
 * Runs the writer, kills it with SIGKILL `killAfterMs` after its first answered call (so a slow
 * machine still kills it mid-stream, not before it began), returns the answered ids.
 */
async function runAndKill(dir: string, start: number, killAfterMs: number): Promise<number[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, String(start)], { stdio: ['ignore', 'pipe', 'pipe'] })
  const answered: number[] = []
  let stderr = ''
  let buffered = ''
  child.stderr.on('data', (d) => {
    stderr += d
  })
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the writer answered no call within 60 s: ${stderr}`)), 60_000)
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        if (!line.startsWith('ok ')) continue
        answered.push(Number(line.slice(3)))
        if (answered.length === 1) {
          clearTimeout(timer)
          setTimeout(() => resolve(), killAfterMs)
        }
      }
    })
    child.on('exit', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  child.kill('SIGKILL')
  await exited
  return answered
}

test(`SIGKILL during a stream of file-writing calls loses no answered call and the dir verifies (${TRIALS} trials)`, async (t) => {
  const dir = join(await tempDir(t), 'vm')
  let start = 0
  let fromSnapshot = 0
  for (let trial = 0; trial < TRIALS; trial++) {
    const killAfterMs = Math.floor(Math.random() * 1200)
    const answered = await runAndKill(dir, start, killAfterMs)
    assert.ok(answered.length > 0, `trial ${trial}: the writer answered calls before it was killed`)

    const vm = new VM(CRASH_SCRIPT)
    let fromSeq = 0
    await vm.deploy({ dir, onResume: (_done, _total, from) => (fromSeq = from) })
    if (fromSeq > 0) fromSnapshot++
    try {
      const logged = new Set<number>()
      for (const entry of (await vm.callLog.list({ start: 1 })) as CallEntry[]) logged.add(entry.args[0] as number)
      const missing = answered.filter((n) => !logged.has(n))
      assert.deepEqual(missing, [], `trial ${trial} (killed after ${killAfterMs} ms): every answered call is in the log`)
      const report = await Verifier.verify(vm.callLog, vm.filesArchive)
      assert.equal(report.entries, vm.callLog.length)
      // The reopened VM keeps serving, and its in-memory state continued from the log.
      const writes = await vm.executeCall({ methodName: 'write', args: [1_000_000 + trial] })
      assert.equal(writes, vm.callLog.length - 1, 'the restored counter counts every logged write')
      start = Math.max(start, ...logged) + 1
    } finally {
      await vm.close()
    }
  }
  // The writer takes a checkpoint every 3 calls: reopening starts from the newest snapshot that holds
  // (a kill in the middle of writing one leaves a temp file or nothing, never a wrong state).
  t.diagnostic(`${fromSnapshot} of ${TRIALS} reopens started from a snapshot`)
  assert.ok(fromSnapshot > 0, 'some reopens started from a snapshot')
})
