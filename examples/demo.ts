/**
 * The main demo: deploy a VM from an example script, make calls, replay the log in a second VM and
 * print the verdict. Run with `npm run demo`. It keeps its data in a temp dir and removes it.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DivergenceError, Verifier, VM } from 'libvms'

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'libvms-demo-'))
  try {
    const code = await readFile(new URL('./scripts/key-server.js', import.meta.url), 'utf8')
    const vm = new VM(code)
    await vm.deploy({ dir: join(dir, 'host'), title: 'Demo key server' })
    console.log(`Deployed "${vm.title}": exports ${Object.keys(vm.exports).join(', ')}`)
    console.log(`  call log:      ${vm.callLog.url}`)
    console.log(`  files archive: ${vm.filesArchive.url}`)

    const call = async (methodName: string, args: unknown[], userId: string): Promise<void> => {
      try {
        const result = await vm.executeCall({ methodName, args, userId })
        console.log(`  ${userId} → ${methodName}(${args.map((a) => JSON.stringify(a)).join(', ')}) = ${JSON.stringify(result)}`)
      } catch (err) {
        console.log(`  ${userId} → ${methodName}(${args.map((a) => JSON.stringify(a)).join(', ')}) failed: ${(err as Error).message}`)
      }
    }
    console.log('Calls:')
    await call('claim', [], 'alice')
    await call('put', ['greeting', 'hello'], 'alice')
    await call('put', ['greeting', 'hacked'], 'mallory')
    await call('addAdmin', ['bob'], 'alice')
    await call('put', ['answer', 42], 'bob')
    await call('get', ['greeting'], 'mallory')
    await call('list', [], 'carol')

    console.log(`Auditing: replaying ${vm.callLog.length} log entries in a second VM...`)
    const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: vm.filesArchive.url })
    await Verifier.compareLogs(vm.callLog, replay.callLog)
    await Verifier.compareArchives(vm.filesArchive, replay.filesArchive)
    await replay.close()
    console.log('Verdict: ✓ every call replays to the logged result, and the files archives match.')

    console.log("Now the host edits its archive behind the VM's back, and a later call reads it...")
    await vm.filesArchive.writeFile('/keys/greeting', JSON.stringify('forged'))
    await call('get', ['greeting'], 'carol')
    try {
      await Verifier.verify(vm.callLog, vm.filesArchive)
      console.log('Verdict: ✓ (unexpected!)')
      process.exitCode = 1
    } catch (err) {
      if (!(err instanceof DivergenceError)) throw err
      console.log(`Verdict: ✗ divergence at seq ${err.seq}: ${err.message}`)
    }
    await vm.close()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
