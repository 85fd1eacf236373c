/**
 * Comparing files archives, as an auditor must, and checking a host's archive against its log: the
 * host's archive is hostile input. Both archives
 * are walked in key order side by side (their Hyperbees are sorted by path), so the first differing
 * path is reported as soon as it is reached and memory stays flat whatever the archives hold. Paths
 * are the raw keys the archive holds — a key no VM would write (`/weird/../x`) is named as it is, not
 * normalized into another path. A file's contents are read block by block from the blobs core, after
 * checking that the entry points inside the core: an entry pointing at blocks the archive does not
 * have is itself the difference, never a wait. Files are compared first, then the folder records of
 * files format 1 (drive-format.ts); an archive of format 0 has none.
 */
import { createHash } from 'node:crypto'
import type { BlobId } from 'hyperblobs'
import { DivergenceError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import { type DriveEntryValue, FILES_KEY_PREFIX, FOLDERS_KEY_PREFIX } from '../ledger/drive-format.js'
import type { DatArchive, FilesState } from '../ledger/files-archive.js'
import { type LogEntry, sameFiles } from '../ledger/log-entry.js'

/** How long a block of contents not on this machine may take to arrive from the archive's hosts. */
const BLOCK_WAIT_MS = 10_000

/** Every key of an archive's files, in order; then every folder record (files format 1). */
const RANGES = [
  { prefix: FILES_KEY_PREFIX, range: { gt: FILES_KEY_PREFIX, lt: 'files\u0001' } },
  { prefix: FOLDERS_KEY_PREFIX, range: { gt: FOLDERS_KEY_PREFIX, lt: 'folders\u0001' } },
]

interface EntrySummary {
  type: 'file' | 'directory'
  /** sha256 of the contents (files), '' for directories. */
  digest: string
  executable: boolean
  linkname: string | null
}

function describe(summary: EntrySummary | null): string {
  if (!summary) return 'nothing'
  if (summary.type === 'directory') return 'a directory'
  const extra = summary.linkname ? `, a link to ${summary.linkname}` : summary.executable ? ', executable' : ''
  return `a file (sha256 ${summary.digest.slice(0, 16)}…${extra})`
}

function isBlobId(v: unknown): v is BlobId {
  const id = v as Record<string, unknown> | null
  return (
    id !== null &&
    typeof id === 'object' &&
    ['blockOffset', 'blockLength', 'byteOffset', 'byteLength'].every((k) => Number.isSafeInteger(id[k]) && (id[k] as number) >= 0)
  )
}

/** The sha256 of the contents `blob` points at; throws a DivergenceError if the archive does not hold them. */
async function contentDigest(archive: DatArchive, path: string, blob: unknown): Promise<string> {
  const hash = createHash('sha256')
  if (blob === null || blob === undefined) return hash.digest('hex')
  const missing = (why: string) => DivergenceError.CONTENTS_MISSING(archive.url, path, why, blob)
  if (!isBlobId(blob)) throw missing('are described by a malformed pointer')
  if (blob.byteLength === 0) return hash.digest('hex')
  const drive = archive.drive
  const blobs = await drive.getBlobs()
  const core = blobs.core
  if (blob.blockLength === 0 || blob.blockOffset + blob.blockLength > core.length) {
    throw missing(`lie outside its contents core (blocks ${blob.blockOffset}–${blob.blockOffset + blob.blockLength} of ${core.length})`)
  }
  let bytes = 0
  for (let i = blob.blockOffset; i < blob.blockOffset + blob.blockLength; i++) {
    let block: Buffer | null
    try {
      block = (await core.get(i, { wait: !drive.writable, timeout: BLOCK_WAIT_MS })) as Buffer | null
    } catch {
      block = null
    }
    if (!block) throw missing(`are not available (block ${i} could not be read)`)
    hash.update(block)
    bytes += block.byteLength
  }
  if (bytes !== blob.byteLength) throw missing(`are ${bytes} bytes, not the ${blob.byteLength} its entry says`)
  return hash.digest('hex')
}

async function summarize(archive: DatArchive, path: string, value: DriveEntryValue | null): Promise<EntrySummary> {
  const meta = (value?.metadata ?? {}) as { type?: unknown }
  const executable = value?.executable === true
  const linkname = typeof value?.linkname === 'string' ? value.linkname : null
  if (meta.type === 'directory') return { type: 'directory', digest: '', executable, linkname }
  return { type: 'file', digest: await contentDigest(archive, path, value?.blob), executable, linkname }
}

function same(a: EntrySummary, b: EntrySummary): boolean {
  return a.type === b.type && a.digest === b.digest && a.executable === b.executable && a.linkname === b.linkname
}

type Node = { key: string; value: DriveEntryValue | null }

/** Runs `read` over a hostile archive: what its index cannot decode is a divergence, never a bare error. */
async function readingHostile<T>(archive: DatArchive, read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (err) {
    if (err instanceof DivergenceError) throw err
    throw DivergenceError.INDEX_UNREADABLE(archive.url, (err as Error).message)
  }
}

type Difference = { path: string; expected: EntrySummary | null; actual: EntrySummary | null }

async function firstDifferentPathOf(expected: DatArchive, actual: DatArchive): Promise<Difference | null> {
  for (const { prefix, range } of RANGES) {
    const found = await firstDifferentPathIn(expected, actual, prefix, range)
    if (found) return found
  }
  return null
}

async function firstDifferentPathIn(
  expected: DatArchive,
  actual: DatArchive,
  prefix: string,
  range: { gt: string; lt: string },
): Promise<Difference | null> {
  const walk = (archive: DatArchive) => archive.drive.db.createReadStream<DriveEntryValue | null>(range)[Symbol.asyncIterator]()
  const left = walk(expected)
  const right = walk(actual)
  try {
    let a = await left.next()
    let b = await right.next()
    while (!a.done || !b.done) {
      const ka = a.done ? null : (a.value as Node).key
      const kb = b.done ? null : (b.value as Node).key
      const key = ka === null || (kb !== null && kb < ka) ? (kb as string) : ka
      const path = key.slice(prefix.length)
      const se = ka === key ? await summarize(expected, path, (a.value as Node).value) : null
      const sa = kb === key ? await summarize(actual, path, (b.value as Node).value) : null
      if (!se || !sa || !same(se, sa)) return { path, expected: se, actual: sa }
      if (ka === key) a = await left.next()
      if (kb === key) b = await right.next()
    }
    return null
  } finally {
    await left.return?.()
    await right.return?.()
  }
}

/**
 * The first path at which two archives' current files differ, walking both in key order; null if
 * they hold the same files.
 */
export function firstDifferentPath(expected: DatArchive, actual: DatArchive): ReturnType<typeof firstDifferentPathOf> {
  return readingHostile(expected, () => firstDifferentPathOf(expected, actual))
}

/** Compares two archives' current files; rejects naming the first differing path. */
export async function compareFiles(expected: DatArchive, actual: DatArchive): Promise<boolean> {
  const found = await firstDifferentPath(expected, actual)
  if (!found) return true
  const words = { expected: describe(found.expected), actual: describe(found.actual) }
  throw DivergenceError.PATH(found.path, found.expected, found.actual, words)
}

/** The first path an archive changed after `version` (in key order), or null if its files are as they were. */
export function firstChangeSince(archive: DatArchive, version: number): Promise<string | null> {
  return readingHostile(archive, () => firstChangeSinceOf(archive, version))
}

async function firstChangeSinceOf(archive: DatArchive, version: number): Promise<string | null> {
  const drive = archive.drive
  if (version === 0) {
    for (const { prefix, range } of RANGES) {
      for await (const node of drive.db.createReadStream(range)) return node.key.slice(prefix.length)
    }
    return null
  }
  const before = drive.db.checkout(version)
  try {
    for (const { prefix, range } of RANGES) {
      const stream = (drive.db as unknown as DiffingBee).createDiffStream(before, range)
      for await (const change of stream) {
        const node = change.left ?? change.right
        if (node) return node.key.slice(prefix.length)
      }
    }
    return null
  } finally {
    await before.close()
  }
}

interface DiffingBee {
  createDiffStream(
    other: unknown,
    range: { gt: string; lt: string },
  ): AsyncIterable<{ left: { key: string } | null; right: { key: string } | null }>
}

/**
 * The archive must hold nothing after the state the log's last verified entry (`lastSeq`) records:
 * a change no call made is a divergence at that seq, naming the first path it touched.
 */
export async function checkNothingAfter(callLog: CallLog, lastSeq: number, files: FilesState, archive: DatArchive): Promise<void> {
  if (archive.version <= files.version || (await laterEntriesExplain(callLog, lastSeq + 1, archive))) return
  const last = await callLog.get(lastSeq)
  const method = last.type === 'call' ? last.method : 'init'
  const path = await firstChangeSince(archive, files.version)
  throw DivergenceError.UNLOGGED_CHANGES(lastSeq, method, path, archive.version, files)
}

/**
 * A live host keeps taking calls while an auditor works: an archive fetched after the log can hold
 * the changes of calls the log copy had not seen yet. Those are not out-of-band changes if the log,
 * brought up to date, has an entry recording at least the archive's version. (They are left for the
 * next verification.)
 */
const UPDATE_WAIT_MS = 5000

async function laterEntriesExplain(callLog: CallLog, verified: number, archive: DatArchive): Promise<boolean> {
  if (callLog.writable) return false // the host's own log: nothing is in flight between log and archive
  let timer: NodeJS.Timeout | undefined
  const giveUp = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), UPDATE_WAIT_MS)
  })
  await Promise.race([callLog.update().catch(() => false), giveUp])
  clearTimeout(timer)
  if (callLog.length <= verified) return false
  const latest = await callLog.get(callLog.length - 1)
  return latest.files.version >= archive.version
}

/** The host's archive must hold, at the version an entry records, exactly the state it records. */
export async function checkArchiveAt(archive: DatArchive, seq: number, entry: LogEntry): Promise<void> {
  const files = entry.files
  // A fetched archive may not have heard of the newest calls' changes yet: ask its hosts, briefly.
  for (let tries = 0; archive.version < files.version && !archive.drive.writable && tries < 10; tries++) {
    await Promise.race([archive.update(), new Promise((resolve) => setTimeout(resolve, UPDATE_WAIT_MS / 10).unref())])
  }
  if (archive.version < files.version) throw DivergenceError.ARCHIVE_SHORT(seq, 'version', files.version, archive.version)
  const blobsLength = files.version === 0 ? 0 : (await archive.drive.getBlobs()).core.length
  if (blobsLength < files.blobsLength) throw DivergenceError.ARCHIVE_SHORT(seq, 'contents', files.blobsLength, blobsLength)
  const state = await archive.stateAt(files.version, files.blobsLength)
  if (!sameFiles(state, files)) throw DivergenceError.REWRITTEN(seq, entry.type === 'call' ? entry.method : 'init', files, state)
}
