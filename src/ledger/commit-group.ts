/**
 * CommitGroup: the changes of one or more calls — file contents, file entries and log entries —
 * written to storage in one atomic batch. It holds Hypercore sessions bound to one storage *atom*
 * on the VM's Corestore: appends to them are visible through these sessions at once, and reach
 * storage (and every other session) together when the group commits, or not at all.
 *
 * This is what makes the log the commit point without a window between the archive and the log:
 * whatever instant the process dies, either a call's files and its entry are both stored, or
 * neither is.
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

interface Atom {
  flush(): Promise<void>
}

interface AtomicStorage {
  createAtom(): Atom
}

export class CommitGroup {
  private constructor(
    private readonly atom: Atom,
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
    const bee = new Hyperbee(dbSession, DRIVE_BEE_OPTIONS)
    await Promise.all([bee.ready(), blobsSession.ready(), logSession.ready()])
    return new CommitGroup(atom, dbSession, blobsSession, logSession, bee, new Hyperblobs(blobsSession))
  }

  /** The archive including the group's uncommitted changes. */
  view(): FilesView {
    return new FilesView({ bee: this.bee, blobs: async () => this.blobs })
  }

  target(): ArchiveTarget {
    return { bee: this.bee, blobs: this.blobs }
  }

  /** The archive's state digest including the group's changes. */
  async state(): Promise<FilesState> {
    const version = this.dbSession.length
    const blobsLength = this.blobsSession.length
    const [db, blobs] = await Promise.all([this.dbSession.treeHash(version), this.blobsSession.treeHash(blobsLength)])
    return { version, dbHash: toHex(db), blobsLength, blobsHash: toHex(blobs) }
  }

  /** Appends `entries` and stores everything the group holds in one atomic write. */
  async commit(entries: LogEntry[]): Promise<void> {
    try {
      if (entries.length > 0) await this.logSession.append(entries)
      await this.atom.flush()
    } finally {
      await this.close()
    }
  }

  /** Drops the group's changes (nothing of it reaches storage). */
  async abandon(): Promise<void> {
    await this.close()
  }

  private async close(): Promise<void> {
    await Promise.all([this.bee.close(), this.dbSession.close(), this.blobsSession.close(), this.logSession.close()])
  }
}
