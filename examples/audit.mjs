// The source document's "Audit the VM state" example, as a separate auditor process.
// Usage: node examples/audit.mjs [url] [--json]
// Exit code: 0 verified, 1 divergence found, 2 could not fetch.
import { CallLog, DatArchive, DivergenceError, RPCClient, Verifier, VM } from 'libvms'

async function main() {
  const url = process.argv[2] ?? 'ws://localhost:5555/bobs-vm'
  const json = process.argv.includes('--json')

  // connect to the server
  const client = new RPCClient()
  await client.connect(url)

  // fetch the call log
  const callLog = await CallLog.fetch(client.backendInfo.callLogUrl)

  // fetch the dat archive
  const filesArchive = new DatArchive(client.backendInfo.filesArchiveUrl)
  await filesArchive.download('/')

  let verdict
  try {
    // replay the call log
    const vm = await VM.fromCallLog(callLog, client.backendInfo)

    // compare outputs (will throw on mismatch)
    try {
      await Verifier.compareLogs(callLog, vm.callLog)
      await Verifier.compareArchives(filesArchive, vm.filesArchive)
      verdict = { verified: true, entries: callLog.length, filesVersion: filesArchive.version }
    } finally {
      await vm.close()
    }
  } catch (err) {
    if (!(err instanceof DivergenceError)) throw err
    verdict = {
      verified: false,
      seq: err.seq ?? null,
      method: err.method ?? null,
      field: err.field ?? null,
      path: err.path ?? null,
      message: err.message,
    }
  }
  await callLog.close()
  await filesArchive.close()
  await client.close()

  if (json) console.log(JSON.stringify(verdict))
  else if (verdict.verified) console.log(`✓ verified ${verdict.entries} log entries and the files archive`)
  else console.log(`✗ ${verdict.message}`)
  process.exitCode = verdict.verified ? 0 : 1
}

main().catch((err) => {
  console.error(err.message)
  process.exit(2)
})
