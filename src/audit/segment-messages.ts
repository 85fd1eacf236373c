/**
 * The messages between an auditor's main thread (parallel-audit.ts) and a segment's thread
 * (segment-thread.ts). Everything here is structured-clonable.
 */
import type { VMLimits } from '../sandbox/limits.js'
import type { CrossingError } from '../sandbox/thread-messages.js'

/** One stretch of a log to replay: entries from the script (or from a snapshot's seq) up to `end`. */
export interface SegmentTask {
  /** The call log's key (hex). */
  logKey: string
  /** Block 0, the init entry, as stored. */
  init: Uint8Array
  /** Replay the entries below this seq. */
  end: number
  /** Where the replay keeps its archive (made and removed by the main thread, even if the thread is stopped). */
  dir: string
  /** Start from a checkpoint rather than from the script. */
  from: {
    seq: number
    /** The block of entry `seq`, as stored (it states the digest the snapshot must have). */
    entry: Uint8Array
    /** The snapshot file (snapshot.ts). */
    snapshot: Uint8Array
    /** The files archive's blocks up to the state entry `seq` records. */
    archive: { db: Uint8Array[]; blobs: Uint8Array[] }
    /** After an upgrade: the upgrade entry whose code the snapshot's state runs (its seq and block, as stored). */
    code?: { seq: number; entry: Uint8Array }
  } | null
  allowEngineMismatch?: boolean
  maxLimits?: Partial<VMLimits>
}

/** Main thread → segment. */
export type ToSegment =
  | { t: 'task'; task: SegmentTask }
  /** The next blocks of the segment's entries, in seq order. */
  | { t: 'blocks'; blocks: Uint8Array[] }

/** Segment → main thread. */
export type FromSegment =
  /** Entries up to `seq` replayed as logged (sent once per batch: the main thread then sends another). */
  | { t: 'progress'; seq: number }
  /** Still replaying (sent at least every second while entries replay: the main thread's stall watchdog). */
  | { t: 'alive' }
  | { t: 'done'; calls: number; failedCalls: number }
  /** The first entry of the segment that does not replay as logged (DivergenceError.toJSON()). */
  | { t: 'divergence'; divergence: Record<string, unknown> }
  | { t: 'failed'; error: CrossingError }
