/**
 * CommitGroup: writes a VM's calls — file contents, file entries and log entries — to storage in
 * atomic batches. It holds Hypercore sessions of the files archive's two cores and of the call log,
 * all bound to one storage *atom* of the VM's Corestore. Appends to these sessions are visible
 * through them at once, and reach storage (and every other session) together when the group
 * commits — or not at all. After a commit the same sessions take the next group's writes, so the
 * Hyperbee keeps its node cache warm from one group to the next.
 *
 * This makes the log the commit point without a window between the archive and the log: whatever
 * instant the process dies, either a call's files and its entry are both stored, or neither is.
 *
 * Anything else appending to these cores (a host writing to the archive outside the VM) leaves the
 * sessions behind; `isCurrent()` tells, and the owner opens a new group.
 */
import Hyperbee from 'hyperbee'
import Hyperblobs from 'hyperblobs'
import type Hypercore from 'hypercore'
import type { CallLog } from './call-log.js'
import { DRIVE_BEE_OPTIONS } from './drive-format.js'
import type { DatArchive, FilesState } from './files-archive.js'
import type { ArchiveTarget } from './files-transaction.js'
import { FilesView } from './files-view.js'
import { toHex } from './keys.js'
import type { LogEntry } from './log-entry.js'
import { currentTreeHash } from './tree-hash.js'

interface Atom {
  flush(): Promise<void>
}

interface AtomicStorage {
  createAtom(): Atom
}

export class CommitGroup {
  private pending = false

  private constructor(
    private readonly atom: Atom,
    private readonly mainCores: Hypercore[],
    private readonly dbSession: Hypercore,
    private readonly blobsSession: Hypercore,
    private readonly logSession: Hypercore<LogEntry>,
    private readonly bee: Hyperbee,
    private readonly blobs: Hyperblobs,
  ) {}

  static async open(archive: DatArchive, callLog: CallLog, storage: AtomicStorage): Promise<CommitGroup> {
    const drive = archive.drive
    const mainBlobs = await drive.getBlobs()
    const atom = storage.createAtom()
    const dbSession = drive.core.session({ atom })
    const blobsSession = mainBlobs.core.session({ atom })
    const logSession = callLog.core.session({ atom, valueEncoding: 'json' }) as Hypercore<LogEntry>
    // Reads and writes through this bee never overlap (one call at a time), so reads need no
    // snapshot session of their own.
    const bee = new Hyperbee(dbSession, { ...DRIVE_BEE_OPTIONS, sessions: false })
    await Promise.all([bee.ready(), blobsSession.ready(), logSession.ready()])
    const mainCores = [drive.core, mainBlobs.core, callLog.core as Hypercore]
    return new CommitGroup(atom, mainCores, dbSession, blobsSession, logSession, bee, new Hyperblobs(blobsSession))
  }

  /** True if calls staged file changes in the group since its last commit. */
  get hasChanges(): boolean {
    return this.pending
  }

  /** False if something else appended to the cores since the last commit (the sessions are stale). */
  isCurrent(): boolean {
    if (this.pending) return true
    const sessions = [this.dbSession, this.blobsSession, this.logSession as Hypercore]
    return sessions.every((s, i) => s.length === this.mainCores[i].length && s.fork === this.mainCores[i].fork)
  }

  /** The archive including the group's uncommitted changes. */
  view(): FilesView {
    return new FilesView({ bee: this.bee, blobs: async () => this.blobs })
  }

  /** Where a call's file changes go; they are pending until the next commit. */
  target(): ArchiveTarget {
    this.pending = true
    return { bee: this.bee, blobs: this.blobs }
  }

  /** The archive's state digest including the group's changes. */
  async state(): Promise<FilesState> {
    const version = this.dbSession.length
    const blobsLength = this.blobsSession.length
    const [db, blobs] = await Promise.all([currentTreeHash(this.dbSession), currentTreeHash(this.blobsSession)])
    return { version, dbHash: toHex(db), blobsLength, blobsHash: toHex(blobs) }
  }

  /** Appends `entries` and stores everything the group holds in one atomic write. */
  async commit(entries: LogEntry[]): Promise<void> {
    if (entries.length > 0) await this.logSession.append(entries)
    await this.atom.flush()
    this.pending = false
  }

  /** Closes the sessions; changes not committed are dropped (nothing of them reaches storage). */
  async close(): Promise<void> {
    await Promise.all([this.bee.close(), this.dbSession.close(), this.blobsSession.close(), this.logSession.close()])
  }
}
