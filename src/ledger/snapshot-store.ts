/**
 * Where a VM keeps its snapshots: `<dir>/snapshots/<seq>.snapshot`, beside its corestore. A snapshot
 * is written whole to a temp file, flushed to disk and renamed into place, so a crash leaves either the
 * whole file or none under its name (and a temp file the next write sweeps away). Kept: the newest
 * `keep` (a reopen falls back from one to the next older; snapshot.ts says how each is checked) and
 * at most `spread` older ones, spread over the log (an audit cuts the log into segments at them):
 * when there are more, the one whose removal leaves the shortest gap goes.
 */
import { constants } from 'node:fs'
import { type FileHandle, lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { SnapshotUnreadable } from '../errors.js'
import type { DatArchive } from './files-archive.js'
import {
  checkSnapshotHeader,
  decodeSnapshotInSlices,
  SNAPSHOT_HEADER_OFFSET,
  type SnapshotExpectation,
  snapshotHeaderLength,
  type VMSnapshot,
} from './snapshot.js'

const SNAPSHOT_DIR = 'snapshots'
const NAME = /^(\d{1,16})\.snapshot$/

/** The seqs of the snapshot files among `names`, newest first. */
function seqsOf(names: string[]): number[] {
  const seqs: number[] = []
  for (const name of names) {
    const m = NAME.exec(name)
    if (m) seqs.push(Number(m[1]))
  }
  return seqs.sort((a, b) => b - a)
}

export class SnapshotStore {
  readonly path: string

  constructor(
    dir: string,
    /** How many of the newest snapshots are kept. */
    readonly keep = 3,
    /** How many older snapshots are kept, spread over the log. */
    readonly spread = 16,
  ) {
    this.path = join(dir, SNAPSHOT_DIR)
  }

  /** The seqs of the snapshots stored, newest first. */
  async seqs(): Promise<number[]> {
    let names: string[]
    try {
      names = await readdir(this.path)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
    return seqsOf(names)
  }

  /**
   * Reads the snapshot of `seq`; throws SnapshotUnreadable if it is missing, not a regular file (a
   * link, a pipe, a device), torn, damaged, larger than `maxBytes` (maxSnapshotBytes of the VM's
   * memory), or if its header is not what `expect` says — found before its pages are read. A dir
   * handed to an auditor is hostile input.
   */
  async read(seq: number, maxBytes = Number.POSITIVE_INFINITY, expect: SnapshotExpectation = {}): Promise<VMSnapshot> {
    const path = this.fileOf(seq)
    let file: Buffer
    let handle: FileHandle | null = null
    try {
      if (!(await lstat(path)).isFile()) throw new SnapshotUnreadable('it is not a regular file')
      // No following a link put there since, and no waiting on a pipe.
      handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
      const info = await handle.stat()
      if (!info.isFile()) throw new SnapshotUnreadable('it is not a regular file')
      if (info.size > maxBytes)
        throw new SnapshotUnreadable(`it is ${info.size} bytes, more than a snapshot of this VM can be (${maxBytes})`)
      const prefix = await readAt(handle, 0, Math.min(info.size, SNAPSHOT_HEADER_OFFSET))
      const headerLength = snapshotHeaderLength(prefix)
      if (headerLength === null || SNAPSHOT_HEADER_OFFSET + headerLength > info.size) {
        throw new SnapshotUnreadable('not a LibVMS snapshot (or one of a newer format)')
      }
      const header = await readAt(handle, SNAPSHOT_HEADER_OFFSET, headerLength)
      checkSnapshotHeader(header.toString('utf8'), expect)
      file = await readAt(handle, 0, info.size)
    } catch (err) {
      if (err instanceof SnapshotUnreadable) throw err
      throw new SnapshotUnreadable(`it cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    } finally {
      await handle?.close()
    }
    const snapshot = await decodeSnapshotInSlices(file)
    if (snapshot.seq !== seq) throw new SnapshotUnreadable(`it is named after seq ${seq} but holds seq ${snapshot.seq}`)
    return snapshot
  }

  /**
   * Stores a snapshot (encodeSnapshot's bytes) durably, then removes those retention lets go of
   * (the newest `keep` and `spread` older ones stay); resolves with the seqs removed.
   */
  async write(seq: number, file: Uint8Array): Promise<number[]> {
    await this.sweepTemps()
    // Only the snapshots folder is made: a VM dir removed under a running VM is not made again.
    await mkdir(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err
    })
    const target = this.fileOf(seq)
    const tmp = `${target}.tmp`
    const handle = await open(tmp, 'w')
    try {
      await handle.writeFile(file)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, target)
    await syncDir(this.path)
    const removed = prunable(await this.seqs(), this.keep, this.spread)
    for (const old of removed) await rm(this.fileOf(old), { force: true })
    return removed
  }

  /** Removes the snapshots after `seq` (a log cut back to `seq` no longer holds what they follow). */
  async dropAfter(seq: number): Promise<void> {
    for (const s of await this.seqs()) if (s > seq) await rm(this.fileOf(s), { force: true })
  }

  private fileOf(seq: number): string {
    return join(this.path, `${String(seq).padStart(12, '0')}.snapshot`)
  }

  private async sweepTemps(): Promise<void> {
    let names: string[]
    try {
      names = await readdir(this.path)
    } catch {
      return
    }
    for (const name of names) if (name.endsWith('.tmp')) await rm(join(this.path, name), { force: true })
  }
}

/** The seqs (of `seqs`, newest first) to remove: all but the newest `keep` and `spread` older ones spread out. */
export function prunable(seqs: number[], keep: number, spread: number): number[] {
  const older = seqs.slice(keep).sort((a, b) => a - b)
  const ceiling = seqs[Math.min(keep, seqs.length) - 1] ?? 0
  const removed: number[] = []
  while (older.length > spread) {
    let best = 0
    let bestGap = Number.POSITIVE_INFINITY
    for (let i = 0; i < older.length; i++) {
      const gap = (older[i + 1] ?? ceiling) - (older[i - 1] ?? 0)
      if (gap < bestGap) {
        bestGap = gap
        best = i
      }
    }
    removed.push(...older.splice(best, 1))
  }
  return removed
}

/** `length` bytes of a file from `offset`, or fewer if it ends first. */
async function readAt(handle: FileHandle, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.alloc(length)
  let done = 0
  for (let tries = 0; done < length && tries < 1_000_000; tries++) {
    const { bytesRead } = await handle.read(out, done, length - done, offset + done)
    if (bytesRead === 0) break
    done += bytesRead
  }
  return out.subarray(0, done)
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } catch {
    // some file systems cannot sync a directory; the rename is then as durable as they make it
  } finally {
    await handle.close()
  }
}

/** The path of snapshot `seq` in a published snapshots drive. */
export function publishedPath(seq: number): string {
  return `/${String(seq).padStart(12, '0')}.snapshot`
}

/**
 * The snapshots a host publishes (VMStorage.snapshots, a Hyperdrive), read by an auditor from a
 * fetched copy: each file is fetched when read, and is hostile input like the rest (bounded in size,
 * then decodeSnapshotInSlices checks it).
 */
export class PublishedSnapshots {
  constructor(readonly drive: DatArchive) {}

  async seqs(): Promise<number[]> {
    await this.drive.ready()
    return seqsOf(await this.drive.readdir('/').catch(() => [] as string[]))
  }

  async read(seq: number, maxBytes = Number.POSITIVE_INFINITY, expect: SnapshotExpectation = {}): Promise<VMSnapshot> {
    const path = publishedPath(seq)
    let file: Uint8Array
    try {
      const { size } = await this.drive.stat(path)
      if (size > maxBytes) throw new SnapshotUnreadable(`it is ${size} bytes, more than a snapshot of this VM can be (${maxBytes})`)
      file = (await this.drive.readFile(path, 'binary')) as Uint8Array
      const headerLength = snapshotHeaderLength(file)
      if (headerLength !== null) {
        const header = Buffer.from(
          file.buffer,
          file.byteOffset + SNAPSHOT_HEADER_OFFSET,
          Math.min(headerLength, file.byteLength - SNAPSHOT_HEADER_OFFSET),
        )
        checkSnapshotHeader(header.toString('utf8'), expect)
      }
    } catch (err) {
      if (err instanceof SnapshotUnreadable) throw err
      throw new SnapshotUnreadable(`it cannot be fetched (${(err as Error).message})`)
    }
    const snapshot = await decodeSnapshotInSlices(file)
    if (snapshot.seq !== seq) throw new SnapshotUnreadable(`it is named after seq ${seq} but holds seq ${snapshot.seq}`)
    return snapshot
  }
}
