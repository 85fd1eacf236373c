/**
 * Crash consistency over RPC: a `nodevms exec` server in a child process, under continuous load from
 * several clients, is killed with SIGKILL at a random moment; the VM is reopened on its dir (a
 * restart) and must hold every call a client saw answered, reopen cleanly and verify. 20 trials,
 * each on a fresh dir, each bounded in calls and time.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type CallEntry, RPCClient, Verifier, VM } from '../src/index.js'
import { exec, exited } from './cli-helpers.js'
import { CRASH_SCRIPT } from './fixtures/crash-writer.js'
import { tempDir } from './helpers.js'

const WRITER = fileURLToPath(new URL('./fixtures/writer.js', import.meta.url))
const TRIALS = 20
const CLIENTS = 4
/** Per client and trial: at most this many calls, for at most this long. */
const MAX_CALLS = 2000
const MAX_LOAD_MS = 5000

test(`SIGKILL of an RPC server under load from ${CLIENTS} clients: every answered call survives the restart and verifies (${TRIALS} trials)`, async (t) => {
  const root = await tempDir(t)
  let totalAnswered = 0
  let totalUnanswered = 0
  for (let trial = 0; trial < TRIALS; trial++) {
    const dir = join(root, `trial-${trial}`)
    const { child, served } = await exec(t, WRITER, ['--dir', dir])
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const client = new RPCClient()
        await client.connect(served.rpcUrl)
        return client
      }),
    )
    const answered = new Set<number>()
    const deadline = Date.now() + MAX_LOAD_MS
    const load = clients.map(async (client, c) => {
      for (let i = 0; i < MAX_CALLS && Date.now() < deadline; i++) {
        const n = c * 100_000 + i
        try {
          await client.call('write', n)
          answered.add(n)
        } catch {
          return // the server is gone: this call may or may not be in the log
        }
      }
    })
    // Kill at a random moment once the load is running (some trials mid-group, some between groups).
    await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 400))
    process.kill(served.pid, 'SIGKILL')
    await exited(child)
    await Promise.all(load)
    await Promise.all(clients.map((client) => client.close()))

    // Restart: the VM reopens on its dir (the crash rule applies), and the record holds.
    const vm = new VM(CRASH_SCRIPT)
    await vm.deploy({ dir })
    try {
      const logged = new Set<number>()
      for await (const entry of vm.callLog.entries({ start: 1 })) logged.add((entry as CallEntry).args[0] as number)
      for (const n of answered) assert.ok(logged.has(n), `trial ${trial}: call ${n} was answered but is not in the log`)
      totalAnswered += answered.size
      totalUnanswered += logged.size - answered.size
      const report = await Verifier.verify(vm.callLog, vm.filesArchive)
      assert.equal(report.calls, logged.size)
      // The reopened VM continues where its log ends.
      assert.equal(await vm.executeCall({ methodName: 'write', args: [999_999] }), logged.size + 1, `trial ${trial}`)
    } finally {
      await vm.close()
    }
  }
  assert.ok(totalAnswered > 0, 'calls were answered before the kills')
  t.diagnostic(`${totalAnswered} answered calls survived ${TRIALS} kills; ${totalUnanswered} logged calls had no answer yet`)
})
