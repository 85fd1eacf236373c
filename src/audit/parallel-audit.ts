/**
 * A parallel audit: the log cut into segments at checkpoints, each replayed at once on a thread of
 * its own (segment-thread.ts). Segment 0 starts from the script; every later one from the snapshot
 * of the checkpoint it starts at, whose digest the log states there, and it starts only if the
 * snapshot hashes to that digest. Each segment compares every entry it replays with the logged one,
 * the digest its last entry states included. So if every segment holds, the whole log holds, by
 * induction: segment k proves the state segment k + 1 starts from. A failure names the first
 * divergent seq over all segments, as a whole audit does.
 *
 * A *light* audit runs only the last segment, from the newest checkpoint with a snapshot: it shows the
 * calls after it are right *given* the state the log states there, and nothing about the calls before.
 *
 * The main thread reads the log (each segment's entries in batches, a few ahead of its replay), checks
 * the host's archive at every version an entry records, and hands a segment that starts at a
 * checkpoint the archive's blocks up to that checkpoint (its replay writes on from there). Snapshots
 * come from the host (a SnapshotSource): hostile input like the rest; one that fails its checks is
 * skipped, never trusted.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DivergenceError, HostFaultError, InvalidArgumentError } from '../errors.js'
import { type CallLog, READ_WINDOW_BYTES } from '../ledger/call-log.js'
import type { DatArchive, FilesState } from '../ledger/files-archive.js'
import { decodeEntry, type InitEntry, sameFiles, UPGRADE_SCHEMA } from '../ledger/log-entry.js'
import { encodeSnapshot } from '../ledger/snapshot.js'
import type { VMLimits } from '../sandbox/limits.js'
import { defaultWatchdogMs } from '../sandbox/sandbox.js'
import { fromCrossing } from '../sandbox/thread-messages.js'
import { moduleBeside, startModuleWorker } from '../threads.js'
import { checkReplayable } from '../vm/rebuild.js'
import { openReplay } from '../vm/replay.js'
import { stateFormatFor } from '../vm/turn-runner.js'
import { counted } from '../wording.js'
import { checkArchiveAt, checkNothingAfter } from './archive-compare.js'
import { archiveBlocks, blockOf, chooseStarts, type SnapshotSource, type Start } from './checkpoint-starts.js'
import { EntryChecks } from './entry-checks.js'
import type { FromSegment, SegmentTask, ToSegment } from './segment-messages.js'

export interface SegmentAuditOptions {
  /** Segments replayed at once (threads); the log is cut into this many, where snapshots allow. */
  jobs: number
  snapshots: SnapshotSource
  /** Replay only from the newest checkpoint with a usable snapshot (a weaker audit). */
  light?: boolean
  onProgress?: (done: number, total: number) => void
  /** Lines about snapshots passed over. */
  onNotice?: (message: string) => void
  allowEngineMismatch?: boolean
  maxLimits?: Partial<VMLimits>
}

export interface SegmentAuditReport {
  entries: number
  calls: number
  failedCalls: number
  filesVersion: number
  /** The seqs the segments started from (0: the script). */
  segments: number[]
  /** A light audit: the seq of the checkpoint it started from (the calls up to it were not re-run). */
  lightFrom?: number
}

const THREAD_ENTRY = moduleBeside(import.meta.url, 'segment-thread')
/** The segment replayed here reports its progress every this many entries. */
const PROGRESS_EVERY = 256
/** Most segments at once: each is a thread with an engine (and its memory) of its own. */
export const MAX_JOBS = 32
/**
 * Bytes of entries the main thread keeps sent ahead of the other segments' replays, all together:
 * each of them gets its share (and at least one batch of one entry, however big), enough for its
 * thread to keep replaying while the main thread replays a call of its own segment.
 */
const FEED_BYTES_AHEAD = 64 * 1024 * 1024
/** Batches a segment's share is sent in, at least: a batch is at most its share over this (and a window of the log). */
const BATCHES_PER_SHARE = 4

/** A segment being replayed: where it starts and ends, how far it got, and its outcome. */
interface Segment {
  readonly from: number
  readonly end: number
  readonly replayedTo: number
  readonly stopped: boolean
  readonly done: Promise<{ calls: number; failedCalls: number }>
  stop(): Promise<void>
}

/**
 * What feeding another segment an entry costs the main thread (reading it, decoding it, checking the
 * archive state it records, posting it), and what replaying one costs: a base, and the compute its
 * entry records (`cost`, in ticks). Measured on this 2-core machine (bench/parallel-audit.bench.ts and
 * a log of calls of 4 ticks; event-loop active time): about 12 µs an entry fed; about 30 µs a trivial
 * call replayed, and about 200 µs more a tick.
 */
const FEED_US = 12
const REPLAY_BASE_US = 30
const REPLAY_US_PER_TICK = 200
/** Entries sampled (spread over the log) to estimate what a call of it costs to replay. */
const COST_SAMPLES = 64

/** The main thread's cost of feeding an entry against replaying one of this log (from a sample of its entries' costs). */
async function feedShareOf(callLog: CallLog): Promise<number> {
  const last = callLog.length - 1
  const count = Math.min(COST_SAMPLES, last)
  if (count <= 0) return FEED_US / REPLAY_BASE_US
  const seqs = Array.from({ length: count }, (_, i) => 1 + Math.floor((i * last) / count))
  let sum = 0
  // One at a time: a sample of big entries is big.
  for (const seq of seqs) sum += decodeEntry(await blockOf(callLog.core, seq), seq).cost || 0
  const ticks = sum / count
  return FEED_US / (REPLAY_BASE_US + REPLAY_US_PER_TICK * ticks)
}

/**
 * Where to cut a log of `last` calls into `jobs` segments: the first (replayed on the main thread,
 * which also feeds the others) shorter by `feedShare` (feedShareOf) per other segment, the others alike.
 */
export function cutTargets(last: number, jobs: number, feedShare: number): number[] {
  const first = Math.max(0.1, 1 - feedShare * (jobs - 1))
  const whole = first + (jobs - 1)
  return Array.from({ length: jobs - 1 }, (_, k) => Math.round(((first + k) * last) / whole))
}

/** The segment replayed on this thread: through the log itself, checking the host's archive as it goes. */
class HereSegment implements Segment {
  readonly from: number
  replayedTo: number
  readonly stopped = false
  readonly done: Promise<{ calls: number; failedCalls: number }>

  constructor(
    callLog: CallLog,
    archive: DatArchive,
    start: Start | null,
    readonly end: number,
    options: SegmentAuditOptions,
    onProgress: () => void,
  ) {
    this.from = start?.seq ?? 0
    this.replayedTo = this.from
    this.done = this.run(callLog, archive, start, options, onProgress)
    this.done.catch(() => {})
  }

  private async run(
    callLog: CallLog,
    archive: DatArchive,
    start: Start | null,
    options: SegmentAuditOptions,
    onProgress: () => void,
  ): Promise<{ calls: number; failedCalls: number }> {
    const from = start ? { snapshot: start.snapshot, archive: await archiveBlocks(archive, start.snapshot.files) } : undefined
    const replay = await openReplay(callLog, {
      filesArchiveUrl: archive.url,
      end: this.end,
      from,
      allowEngineMismatch: options.allowEngineMismatch,
      maxLimits: options.maxLimits,
    })
    try {
      const checks = new EntryChecks(archive)
      for await (const entry of replay.entries()) {
        await checks.check(entry)
        this.replayedTo = entry.seq
        if (entry.seq % PROGRESS_EVERY === 0) onProgress()
      }
      onProgress()
      return { calls: checks.calls, failedCalls: checks.failedCalls }
    } finally {
      await replay.close()
    }
  }

  async stop(): Promise<void> {}
}

class SegmentRun implements Segment {
  readonly done: Promise<{ calls: number; failedCalls: number }>
  private readonly worker = startModuleWorker(THREAD_ENTRY)
  /** The batches sent and not yet replayed: the last seq of each, and its bytes. */
  private readonly sent: { last: number; bytes: number }[] = []
  private sentBytes = 0
  private wake: (() => void) | null = null
  replayedTo: number
  stopped = false

  private stall: NodeJS.Timeout | null = null

  constructor(
    readonly from: number,
    readonly end: number,
    /** The most bytes of entries sent ahead of its replay (one batch may be bigger, sent alone). */
    readonly bytesAhead: number,
    onProgress: () => void,
    /** How long the thread may go without a sign of life: longer than any one turn may run. */
    stallMs: number,
  ) {
    this.replayedTo = from
    this.done = new Promise((resolve, reject) => {
      // A turn is bounded by the sandbox's watchdog; a thread silent for longer is stuck inside the
      // engine (as only a snapshot of a state no honest VM reaches can make it): it is ended.
      const watch = () => {
        if (this.stall) clearTimeout(this.stall)
        this.stall = setTimeout(() => {
          reject(new HostFaultError(`the audit segment from seq ${from} made no progress for ${stallMs} ms; it was stopped`))
          void this.worker.terminate()
        }, stallMs)
        this.stall.unref()
      }
      watch()
      this.worker.on('message', (message: FromSegment) => {
        watch()
        switch (message.t) {
          case 'progress':
            this.replayedTo = message.seq
            while (this.sent.length > 0 && this.sent[0].last <= message.seq)
              this.sentBytes -= (this.sent.shift() as { bytes: number }).bytes
            this.wake?.()
            onProgress()
            break
          case 'done':
            resolve(message)
            break
          case 'alive':
            break
          case 'divergence':
            reject(DivergenceError.fromJSON(message.divergence))
            break
          case 'failed':
            reject(fromCrossing(message.error))
            break
        }
      })
      this.worker.on('error', reject)
      this.worker.on('exit', (code) => reject(new HostFaultError(`an audit thread exited (code ${code})`)))
    })
    this.done.catch(() => {})
  }

  send(message: ToSegment): void {
    this.worker.postMessage(message)
  }

  /** Waits until the segment may be sent a batch of `bytes` ending at seq `last`, and counts it as sent. */
  async turn(last: number, bytes: number): Promise<void> {
    while (this.sent.length > 0 && this.sentBytes + bytes > this.bytesAhead && !this.stopped) {
      await new Promise<void>((resolve) => {
        this.wake = resolve
      })
      this.wake = null
    }
    this.sent.push({ last, bytes })
    this.sentBytes += bytes
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.stall) clearTimeout(this.stall)
    this.wake?.()
    await this.worker.terminate()
  }
}

/** Verifies `callLog` (and the host's `filesArchive`) in segments at checkpoints, replayed at once. */
export async function verifyInSegments(
  callLog: CallLog,
  filesArchive: DatArchive,
  options: SegmentAuditOptions,
): Promise<SegmentAuditReport> {
  if (!Number.isSafeInteger(options.jobs) || options.jobs < 1)
    throw new InvalidArgumentError(`jobs must be a positive integer, got ${options.jobs}`)
  await Promise.all([callLog.ready(), filesArchive.ready()])
  const total = callLog.length
  const notice = options.onNotice ?? (() => {})
  const init = (await callLog.get(0)) as InitEntry
  // Refused before any snapshot is read: a log above the ceilings costs the auditor nothing.
  checkReplayable(init, options)
  const initBlock = await blockOf(callLog.core, 0)
  const last = total - 1
  const targets = options.light ? [last] : cutTargets(last, options.jobs, await feedShareOf(callLog))
  const memoryBytes = init.limits?.memoryBytes
  const starts =
    init.schema >= 2 && last > 1 && Number.isSafeInteger(memoryBytes)
      ? await chooseStarts(
          {
            callLog,
            archive: filesArchive,
            source: options.snapshots,
            memoryBytes,
            stateFormat: stateFormatFor(!!init.factory, init.schema),
            // Logs that may hold upgrades also start segments at checkpoints taken after one.
            upgraded:
              init.schema >= UPGRADE_SCHEMA
                ? { init, maxLimits: options.maxLimits ?? {}, stateFormat: stateFormatFor(!!init.factory, init.schema, true) }
                : undefined,
            notice,
          },
          targets,
        )
      : []
  if (options.light && starts.length === 0) {
    throw new InvalidArgumentError(
      `no checkpoint of this log has a usable snapshot (of ${counted(last, 'call')}): a light audit needs one; run a full audit`,
    )
  }
  // Starting a thread and loading the engine, then one turn at its watchdog, with room to spare.
  const stallMs = 60_000 + defaultWatchdogMs({ computeTicks: Math.max(1, Number(init.limits?.computeTicks) || 1) })
  // Segment i replays the entries after froms[i] up to and including the checkpoint the next starts at.
  const froms = options.light ? [starts[0].seq] : [0, ...starts.map((s) => s.seq)]
  const ends = [...froms.slice(1).map((seq) => seq + 1), total]
  const runs: Segment[] = []
  const workDirs: string[] = []
  const progress = () => {
    const done = runs.reduce((sum, run) => sum + (run.replayedTo - run.from), 0)
    options.onProgress?.(done, last - froms[0])
  }
  try {
    // The first segment runs on this thread (its modules and engine are loaded already), beside the
    // reading and routing of every other segment's entries; the others each on a thread of their own.
    const first = starts.find((s) => s.seq === froms[0]) ?? null
    runs.push(new HereSegment(callLog, filesArchive, first, ends[0], options, progress))
    for (let i = 1; i < froms.length; i++) {
      const start = starts.find((s) => s.seq === froms[i]) ?? null
      const run = new SegmentRun(froms[i], ends[i], Math.floor(FEED_BYTES_AHEAD / (froms.length - 1)), progress, stallMs)
      runs.push(run)
      const workDir = await mkdtemp(join(tmpdir(), 'libvms-segment-'))
      workDirs.push(workDir)
      const task: SegmentTask = {
        logKey: callLog.key,
        init: initBlock,
        end: ends[i],
        dir: join(workDir, 'replay'),
        from: start && {
          seq: start.seq,
          entry: start.entry,
          snapshot: encodeSnapshot(start.snapshot),
          archive: await archiveBlocks(filesArchive, start.snapshot.files),
          ...(start.code ? { code: start.code } : {}),
        },
        allowEngineMismatch: options.allowEngineMismatch,
        maxLimits: options.maxLimits,
      }
      run.send({ t: 'task', task })
    }
    progress()
    const outcomes = await Promise.allSettled(
      runs.map((run) =>
        Promise.all([run.done, run instanceof SegmentRun ? feedSegment(callLog, filesArchive, run) : null]).then(
          ([done]) => done,
          (err) => {
            // A divergence at seq s: no segment that starts after s can name an earlier one.
            if (err instanceof DivergenceError && err.seq !== undefined) {
              for (const other of runs) if (other.from >= err.seq && other !== run) void other.stop()
            }
            throw err
          },
        ),
      ),
    )
    const failures = outcomes.flatMap((o, i) => (o.status === 'rejected' && !runs[i].stopped ? [o.reason as Error] : []))
    if (failures.length > 0) throw firstFailure(failures)
    let calls = 0
    let failedCalls = 0
    for (const o of outcomes) {
      if (o.status !== 'fulfilled') continue
      calls += o.value.calls
      failedCalls += o.value.failedCalls
    }
    const lastFiles = (await callLog.get(last)).files
    await checkNothingAfter(callLog, last, lastFiles, filesArchive)
    const report: SegmentAuditReport = {
      entries: options.light ? calls : calls + 1,
      calls,
      failedCalls,
      filesVersion: lastFiles.version,
      segments: froms,
    }
    if (options.light) report.lightFrom = froms[0]
    return report
  } finally {
    await Promise.all(runs.map((run) => run.stop()))
    await Promise.all(workDirs.map((dir) => rm(dir, { recursive: true, force: true })))
  }
}

/** The divergence with the smallest seq (a divergence before any other failure), or the first failure. */
function firstFailure(failures: Error[]): Error {
  const divergences = failures.filter((f): f is DivergenceError => f instanceof DivergenceError)
  if (divergences.length === 0) return failures[0]
  return divergences.reduce((a, b) => ((b.seq ?? Number.POSITIVE_INFINITY) < (a.seq ?? Number.POSITIVE_INFINITY) ? b : a))
}

/**
 * Reads a segment's entries and sends them in batches (windows of the log, call-log.ts), no more bytes
 * ahead of its replay than its share; checks the host's archive at each version they record.
 */
async function feedSegment(callLog: CallLog, archive: DatArchive, run: SegmentRun): Promise<void> {
  let lastChecked: FilesState | null = null
  const windowBytes = Math.max(1, Math.min(READ_WINDOW_BYTES, Math.floor(run.bytesAhead / BATCHES_PER_SHARE)))
  for await (const { start, blocks, bytes } of callLog.windows({ start: run.from + 1, end: run.end, windowBytes })) {
    await run.turn(start + blocks.length - 1, bytes)
    if (run.stopped) return
    run.send({ t: 'blocks', blocks })
    for (let i = 0; i < blocks.length; i++) {
      const entry = decodeEntry(blocks[i], start + i)
      if (sameFiles(entry.files, lastChecked)) continue
      await checkArchiveAt(archive, start + i, entry)
      lastChecked = entry.files
    }
  }
}
