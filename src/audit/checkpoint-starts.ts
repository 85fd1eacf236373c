/**
 * Where a replay can start other than from the script: a checkpoint whose snapshot holds (it hashes
 * to the digest the log states there, of this build's state format, for the VM's memory size), with
 * the files archive's blocks up to the state that entry records. A parallel audit starts its
 * segments from them (parallel-audit.ts); an execution proof starts its replay from one
 * (execution-proof.ts). Snapshots come from the host: hostile input, checked here, skipped (with a
 * notice) when they fail, never trusted. Checkpoint code as a whole starts at vm/checkpoints.ts.
 */
import { prefixBytes } from '../ledger/block-sizes.js'
import type { CallLog } from '../ledger/call-log.js'
import type { DatArchive, FilesState } from '../ledger/files-archive.js'
import { decodeEntry, type InitEntry } from '../ledger/log-entry.js'
import {
  entryHash,
  isCheckpointOf,
  maxSnapshotBytes,
  type SnapshotExpectation,
  snapshotMisfit,
  type VMSnapshot,
} from '../ledger/snapshot.js'
import { DEFAULT_AUDIT_CEILING, type VMLimits } from '../sandbox/limits.js'
import { snapshotExpectation } from '../vm/code-versions.js'

/** Where an audit finds a host's snapshots: its data dir (SnapshotStore), or a copy fetched from it. */
export interface SnapshotSource {
  /** The seqs of the snapshots it has, in any order. */
  seqs(): Promise<number[]>
  /** The snapshot of `seq`; refuses (throws) one larger than `maxBytes`, or whose header is not what `expect` says. */
  read(seq: number, maxBytes: number, expect?: SnapshotExpectation): Promise<VMSnapshot>
}

/**
 * Most archive blocks, and bytes of them, a segment that starts at a checkpoint is handed (the archive
 * up to it, held in memory while it is sent and written); a checkpoint further into a bigger archive
 * is not used as a start. The bytes are read from the archive cores' trees before any block is.
 */
const MAX_START_ARCHIVE_BLOCKS = 16_384
export const MAX_START_ARCHIVE_BYTES = 128 * 1024 * 1024

function archiveBlocksUpTo(files: FilesState): number {
  return files.version + files.blobsLength
}

/** The bytes of the archive's blocks up to the state `files` records; null if some are not on this machine. */
async function archiveBytesUpTo(archive: DatArchive, files: FilesState): Promise<number | null> {
  await archive.ready()
  const drive = archive.drive
  const db = await prefixBytes(drive.core, files.version)
  if (db === null || files.blobsLength === 0) return db
  const blobs = await prefixBytes((await drive.getBlobs()).core, files.blobsLength)
  return blobs === null ? null : db + blobs
}

/** Snapshots tried for one cut of the log, nearest first. */
const TRIES_PER_CUT = 3

export interface Start {
  seq: number
  snapshot: VMSnapshot
  entry: Buffer
  /** A start taken after an upgrade: the upgrade entry whose code the snapshot's state runs (its seq and block). */
  code?: { seq: number; entry: Buffer }
}

/** Block `seq` of a core, as stored. */
export async function blockOf(core: CallLog['core'], seq: number): Promise<Buffer> {
  return (await core.get(seq, { valueEncoding: 'binary' })) as unknown as Buffer
}

/** Where to look for starts, and for which VM: its log and archive, its host's snapshots, its memory size and state format. */
export interface StartSearch {
  callLog: CallLog
  archive: DatArchive
  source: SnapshotSource
  memoryBytes: number
  stateFormat: string
  /**
   * Also start at checkpoints taken after an upgrade (their state format is the upgraded code's, their
   * memory the upgrade's limits', named by the upgrade entry the snapshot's host state names): the
   * log's init entry, the auditor's ceiling (memory bounds the read), and that state format.
   */
  upgraded?: { init: InitEntry; maxLimits: Partial<VMLimits>; stateFormat: string }
  /** Told why each snapshot passed over was. */
  notice: (message: string) => void
}

/** The seqs of the source's snapshots that can be starts of a log below `end`. */
async function snapshotSeqsBelow(source: SnapshotSource, end: number): Promise<number[]> {
  return [...new Set(await source.seqs())].filter((s) => Number.isSafeInteger(s) && s > 0 && s < end)
}

/**
 * The checkpoints to start segments from: for each of `cuts` targets spread over the log, the
 * nearest checkpoint with a snapshot that holds (its entry states the digest it hashes to).
 */
export async function chooseStarts(search: StartSearch, targets: number[]): Promise<Start[]> {
  const available = await snapshotSeqsBelow(search.source, search.callLog.length)
  const starts: Start[] = []
  const tried = new Set<number>()
  // Each snapshot tried costs a read and a hash of up to the VM's memory: a host that offers many bad
  // ones gets a few tries per cut, and a few in all, then the audit goes on with fewer segments.
  const maxTries = 2 * targets.length + 4
  for (const target of targets) {
    const candidates = available.filter((s) => !tried.has(s)).sort((a, b) => Math.abs(a - target) - Math.abs(b - target))
    for (const seq of candidates.slice(0, TRIES_PER_CUT)) {
      if (tried.size >= maxTries) break
      tried.add(seq)
      const start = await usableStart(search, seq)
      if (start) {
        starts.push(start)
        break
      }
    }
  }
  return starts.sort((a, b) => a.seq - b.seq)
}

async function usableStart(search: StartSearch, seq: number): Promise<Start | null> {
  const { callLog, archive, source, notice, upgraded } = search
  const entry = await blockOf(callLog.core, seq)
  const logged = decodeEntry(entry, seq)
  // Not a checkpoint, or one of another build's state format: a snapshot of it proves nothing here.
  const afterUpgrade = !!upgraded && isCheckpointOf(logged, upgraded.stateFormat)
  if (!afterUpgrade && !isCheckpointOf(logged, search.stateFormat)) return null
  const stateFormat = afterUpgrade && upgraded ? upgraded.stateFormat : search.stateFormat
  // After an upgrade, the memory is the upgrade's limits': bounded by the auditor's ceiling until the snapshot names its upgrade.
  const maxMemory = afterUpgrade && upgraded ? (upgraded.maxLimits.memoryBytes ?? DEFAULT_AUDIT_CEILING.memoryBytes) : search.memoryBytes
  let snapshot: VMSnapshot
  let code: Start['code']
  let memoryBytes = search.memoryBytes
  try {
    const expect = { seq, state: (logged as { state: string }).state, stateFormat, entryHash: entryHash(entry) }
    snapshot = await source.read(seq, maxSnapshotBytes(maxMemory), expect)
    if (afterUpgrade && upgraded) {
      const expected = await snapshotExpectation(callLog, upgraded.init, snapshot, upgraded.maxLimits)
      if (typeof expected === 'string') throw new Error(expected)
      const codeSeq = snapshot.host.code ?? 0
      if (codeSeq === 0 || expected.stateFormat !== stateFormat) throw new Error('it names no upgrade, yet is of an upgraded state format')
      memoryBytes = expected.memoryBytes
      code = { seq: codeSeq, entry: await blockOf(callLog.core, codeSeq) }
    }
  } catch (err) {
    notice(`snapshot of seq ${seq} passed over: ${(err as Error).message}`)
    return null
  }
  if (snapshotMisfit(snapshot, { seq, entry: logged, block: entry, stateFormat, memoryBytes, checkpoint: true }) !== null) {
    notice(`snapshot of seq ${seq} passed over: it is not of the state the log states there`)
    return null
  }
  const archiveBlocks = archiveBlocksUpTo(logged.files)
  if (archiveBlocks > MAX_START_ARCHIVE_BLOCKS) {
    notice(
      `snapshot of seq ${seq} passed over: a segment would start with ${archiveBlocks} archive blocks, more than ${MAX_START_ARCHIVE_BLOCKS}`,
    )
    return null
  }
  const archiveBytes = await archiveBytesUpTo(archive, logged.files)
  if (archiveBytes === null || archiveBytes > MAX_START_ARCHIVE_BYTES) {
    const what = archiveBytes === null ? 'archive blocks this copy does not hold' : `${archiveBytes} bytes of archive blocks`
    notice(`snapshot of seq ${seq} passed over: a segment would start with ${what}, more than ${MAX_START_ARCHIVE_BYTES}`)
    return null
  }
  return code ? { seq, snapshot, entry, code } : { seq, snapshot, entry }
}

/** The archive's blocks up to the state `files` records (a segment's replay writes on from them). */
export async function archiveBlocks(archive: DatArchive, files: FilesState): Promise<{ db: Buffer[]; blobs: Buffer[] }> {
  const drive = archive.drive
  const db = await Promise.all(Array.from({ length: files.version }, (_, i) => blockOf(drive.core as never, i)))
  if (files.blobsLength === 0) return { db, blobs: [] }
  const blobsCore = (await drive.getBlobs()).core
  const blobs = await Promise.all(Array.from({ length: files.blobsLength }, (_, i) => blockOf(blobsCore as never, i)))
  return { db, blobs }
}

/** The newest checkpoint before `before` whose snapshot holds (a few tried, newest first), or null. */
export async function newestStartBefore(search: StartSearch, before: number): Promise<Start | null> {
  const available = await snapshotSeqsBelow(search.source, before)
  for (const seq of available.sort((a, b) => b - a).slice(0, TRIES_PER_CUT)) {
    const start = await usableStart(search, seq)
    if (start) return start
  }
  return null
}
