/**
 * What an audit checks of each entry a replay hands it (vm/replay.ts), whether it reads the whole log
 * (verifier.ts) or a segment of it (parallel-audit.ts, segment-thread.ts): the replayed entry must be
 * the logged one (ledger/entry-diff.ts), and, given the host's files archive, the archive must hold
 * at each version an entry records exactly the state it records. Counts the calls as it goes.
 */
import type { ReplayEntry } from '../ledger/entry-diff.js'
import { diffEntry } from '../ledger/entry-diff.js'
import type { DatArchive, FilesState } from '../ledger/files-archive.js'
import { sameFiles } from '../ledger/log-entry.js'
import { checkArchiveAt } from './archive-compare.js'

export class EntryChecks {
  /** Call entries checked. */
  calls = 0
  /** Among them, calls whose logged outcome is an error (they verify like any other). */
  failedCalls = 0
  /** The archive state the last entry checked records (null: none checked yet). */
  lastFiles: FilesState | null = null

  /** `archive`: the host's files archive, checked at each version an entry records; null: none to check. */
  constructor(private readonly archive: DatArchive | null) {}

  /** Checks one replayed entry; throws the DivergenceError of the first thing that differs. */
  async check(entry: ReplayEntry): Promise<void> {
    const divergence = diffEntry(entry)
    if (divergence) throw divergence
    const { seq, logged } = entry
    if (logged.type === 'call') {
      this.calls++
      if (logged.error) this.failedCalls++
    }
    // The archive at a version already checked needs no second look.
    if (this.archive && !sameFiles(logged.files, this.lastFiles)) await checkArchiveAt(this.archive, seq, logged)
    this.lastFiles = logged.files
  }
}
