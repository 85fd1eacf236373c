/**
 * Child process of rpc.bench.ts: an auditor in its own process. Given a LibVMS server's RPC URL and
 * its handshake info, it times
 *   (a) download: CallLog.fetch(callLogUrl, {peers: [url]}) + new DatArchive(filesArchiveUrl, {peers: [url]}).download('/')
 *   (b) replay + verify: VM.fromCallLog(callLog, backendInfo) + Verifier.compareLogs + Verifier.compareArchives
 * and prints one JSON line to stdout: {downloadMs, fetchLogMs, downloadArchiveMs, replayMs, compareLogsMs,
 * compareArchivesMs, replayVerifyMs, totalMs, entries, filesVersion}.
 *
 * Every copy is kept in dirs made inside work-dir (given by the parent, removed by it too); they are
 * also closed here. Exits 1 (with the error on stderr) if anything fails or the log has not
 * expected-entries entries; gives up after MAX_LIFETIME_MS.
 *
 * Run: node bench/auditor.mjs <rpc-url> <backend-info-json> <expected-entries> <work-dir>
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { CallLog, DatArchive, Verifier, VM } from 'libvms'

const MAX_LIFETIME_MS = 3 * 60_000
setTimeout(() => {
  process.stderr.write('[auditor] gave up: over the time limit\n')
  process.exit(1)
}, MAX_LIFETIME_MS).unref()

async function main() {
  const [url, infoJson, expectedRaw, workDir] = process.argv.slice(2)
  if (!url || !infoJson || !expectedRaw || !workDir)
    throw new Error('usage: auditor.mjs <rpc-url> <backend-info-json> <expected-entries> <work-dir>')
  const backendInfo = JSON.parse(infoJson)
  const expected = Number(expectedRaw)
  const dirs = { log: join(workDir, 'log'), archive: join(workDir, 'archive'), replay: join(workDir, 'replay') }
  for (const d of Object.values(dirs)) await mkdir(d, { recursive: true })

  let callLog = null
  let archive = null
  let replay = null
  try {
    const t0 = performance.now()
    callLog = await CallLog.fetch(backendInfo.callLogUrl, { peers: [url], dir: dirs.log })
    const t1 = performance.now()
    archive = new DatArchive(backendInfo.filesArchiveUrl, { peers: [url], dir: dirs.archive })
    await archive.download('/')
    const t2 = performance.now()
    replay = await VM.fromCallLog(callLog, backendInfo, { dir: dirs.replay })
    const t3 = performance.now()
    await Verifier.compareLogs(callLog, replay.callLog)
    const t4 = performance.now()
    await Verifier.compareArchives(archive, replay.filesArchive)
    const t5 = performance.now()
    if (callLog.length !== expected) throw new Error(`the fetched log has ${callLog.length} entries, expected ${expected}`)
    const report = {
      downloadMs: t2 - t0,
      fetchLogMs: t1 - t0,
      downloadArchiveMs: t2 - t1,
      replayMs: t3 - t2,
      compareLogsMs: t4 - t3,
      compareArchivesMs: t5 - t4,
      replayVerifyMs: t5 - t2,
      totalMs: t5 - t0,
      entries: callLog.length,
      filesVersion: archive.version,
    }
    process.stdout.write(`${JSON.stringify(report)}\n`)
  } finally {
    await replay?.close()
    await archive?.close()
    await callLog?.close()
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`[auditor] ${err?.stack ?? err}\n`)
    process.exit(1)
  },
)
