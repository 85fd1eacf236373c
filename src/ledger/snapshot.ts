/**
 * Snapshots of a VM's state at a checkpoint, and the state digest a log entry records for them
 * (docs/log-format.md, "Checkpoints"). Checkpoint code as a whole starts at vm/checkpoints.ts.
 *
 * The *state digest* after a call is what host and auditor compute alike: SHA-256 over the engine's
 * memory in a canonical form (every page that is not all zeros, with its index) and the host-side
 * state the next call needs (the export list, whether the driver's request queue is to be reset, the
 * archive usage the storage quotas count, the signed-call counters). A call entry with a `state` field states it; a replay
 * computes it at the same seq and compares.
 *
 * A *snapshot* is that state as a file, with what a reopen needs beside it: the seq it follows, a hash
 * of that entry's stored bytes (so a snapshot of another history is never used) and the archive state
 * it goes with. It ends in a SHA-256 of everything before it: a torn or damaged file is found before use.
 *
 *   "LIBVMS-SNAPSHOT/1\n"  u32 header length  header (JSON)  pages (64 KiB each)  sha256 (32 bytes)
 */
import { createHash } from 'node:crypto'
import { SnapshotUnreadable } from '../errors.js'
import { PAGE_BYTES } from '../sandbox/engine.js'
import { checkEngineStateShape, type EngineState } from '../sandbox/engine-state.js'
import { chunksOf, runAtOnce, runInSlices, type Steps } from '../sandbox/slices.js'
import type { FilesState } from './files-archive.js'
import type { StorageUsage } from './files-transaction.js'
import { type CallEntry, type LogEntry, sameFiles } from './log-entry.js'

const MAGIC = Buffer.from('LIBVMS-SNAPSHOT/1\n')
const DIGEST_DOMAIN = Buffer.from('libvms-state/1\0')
const CHECKSUM_BYTES = 32
/** A header larger than this is not one this LibVMS wrote (it holds one name per export and per signing connection). */
const MAX_HEADER_BYTES = 64 * 1024 * 1024

/** Host-side state that belongs to a VM's state (it is in the digest). */
export interface HostState {
  /** What the archive holds after the call, for the storage quotas. */
  usage: StorageUsage
  /**
   * Production mode: the last counter each signing connection used in the calls so far, sorted by
   * nonce; what refuses a signed call a second time (empty in debug mode). In the digest, so that an
   * audit that starts from a snapshot holds each signed call to run once, as one from the start does.
   */
  counters: [string, number][]
  /**
   * The seq of the upgrade entry whose code the VM runs (log schema 4); absent while it runs the
   * init entry's. In the digest, so that a replay from a snapshot knows which code, and which limits,
   * the state is of.
   */
  code?: number
}

/** A VM's state after call `seq`: the engine's and the host's, and what ties it to its log. */
export interface VMSnapshot {
  seq: number
  /** SHA-256 (hex) of entry `seq` as stored in the log. */
  entryHash: string
  /** The state digest (stateDigest). */
  state: string
  /** The state format of the sandbox it was taken from (engine-state.ts, stateFormatOf). */
  stateFormat: string
  /** The archive state entry `seq` records. */
  files: FilesState
  engine: EngineState
  host: HostState
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n)
  return b
}

function digestHeader(engine: EngineState, host: HostState, format: string): string {
  return JSON.stringify({
    format,
    memoryBytes: engine.memoryBytes,
    pageBytes: PAGE_BYTES,
    exports: engine.exports,
    requestsLeft: engine.requestsLeft,
    usage: { bytes: host.usage.bytes, entries: host.usage.entries },
    counters: host.counters,
    // Only after an upgrade: the digests of VMs that never had one are as they were.
    ...(host.code !== undefined ? { code: host.code } : {}),
  })
}

/** Steps (sandbox/slices.ts) that compute the state digest: a page hashed a step. */
function* digestSteps(engine: EngineState, host: HostState, format: string): Steps<string> {
  const hash = createHash('sha256')
  const header = Buffer.from(digestHeader(engine, host, format))
  hash.update(DIGEST_DOMAIN).update(u32(header.length)).update(header)
  for (let i = 0; i < engine.pages.length; i++) {
    hash.update(u32(engine.pages[i])).update(engine.bytes.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES))
    yield
  }
  return hash.digest('hex')
}

/** The state digest (hex SHA-256) of an engine state of state format `format` and its host state. */
export function stateDigest(engine: EngineState, host: HostState, format: string): string {
  return runAtOnce(digestSteps(engine, host, format))
}

/** stateDigest, computed in slices: the event loop keeps turning (a VM's checkpoint, on a host). */
export function stateDigestInSlices(engine: EngineState, host: HostState, format: string): Promise<string> {
  return runInSlices(digestSteps(engine, host, format))
}

/** SHA-256 (hex) of an entry's stored bytes: what a snapshot names its entry by. */
export function entryHash(block: Uint8Array): string {
  return createHash('sha256').update(block).digest('hex')
}

/** Whether a log entry is a checkpoint of state format `stateFormat`: it states a digest of that format. */
export function isCheckpointOf(entry: LogEntry, stateFormat: string): entry is CallEntry & { state: string } {
  return entry.type === 'call' && entry.state !== undefined && entry.stateFormat === stateFormat
}

/** What a snapshot must be to take the place of the calls up to entry `seq`, for a VM of this build. */
export interface SnapshotFit {
  seq: number
  /** Entry `seq` of the log. */
  entry: LogEntry
  /** Its bytes as stored: a snapshot names its entry by their hash. */
  block: Uint8Array
  /** This build's state format (turn-runner.ts, stateFormatFor): what it can restore. */
  stateFormat: string
  /** The memory of the VM's engine (its limits'). */
  memoryBytes: number
  /**
   * Only at a checkpoint (an entry that states the digest): what an audit starts from, since the log
   * vouches for nothing else. A VM's own snapshot of its last call at close need not be one.
   */
  checkpoint?: boolean
}

/**
 * Why `snapshot` does not fit (SnapshotFit), or null if it does: the one rule, for a reopen
 * (vm/checkpoints.ts), an audit's starts (audit/checkpoint-starts.ts) and a replay from a snapshot
 * (vm/rebuild.ts). The snapshot's own content was checked as it was read (decodeSnapshot: it hashes
 * to the state it names).
 */
export function snapshotMisfit(snapshot: VMSnapshot, fit: SnapshotFit): string | null {
  const { seq, entry } = fit
  if (snapshot.entryHash !== entryHash(fit.block)) return 'the log holds another entry at its seq'
  if (snapshot.seq !== seq) return `it is the snapshot of seq ${snapshot.seq}, not of ${seq}`
  if (entry.type !== 'call')
    return entry.type === 'init' ? 'the init entry has no snapshot' : `entry ${seq} is an upgrade, which has no snapshot`
  // The code a snapshot's state is of is the code that ran its call, which the call's entry names.
  if ((snapshot.host.code ?? 0) !== (entry.codeSeq ?? 0))
    return `it says the code of entry ${snapshot.host.code ?? 0} ran, entry ${seq} says the code of entry ${entry.codeSeq ?? 0} did`
  if (fit.checkpoint && !isCheckpointOf(entry, fit.stateFormat)) return `entry ${seq} is not a checkpoint of this build's state format`
  if (entry.state !== undefined && (entry.state !== snapshot.state || entry.stateFormat !== snapshot.stateFormat))
    return `its state digest is not the one the log states at seq ${seq}`
  if (!sameFiles(snapshot.files, entry.files)) return `its archive state is not the one entry ${seq} records`
  if (snapshot.stateFormat !== fit.stateFormat)
    return `it was taken by another LibVMS build (state format ${snapshot.stateFormat}, this one's is ${fit.stateFormat})`
  if (snapshot.engine.memoryBytes !== fit.memoryBytes)
    return `it is of a ${snapshot.engine.memoryBytes}-byte memory, the VM's limits say ${fit.memoryBytes}`
  return null
}

/**
 * Steps that write a snapshot's file: one buffer, filled and hashed a chunk a step (a new buffer's
 * pages are committed as they are first written, which costs as much as the copy).
 */
function* fileSteps(snapshot: VMSnapshot): Steps<Buffer> {
  const { engine } = snapshot
  const header = Buffer.from(
    JSON.stringify({
      seq: snapshot.seq,
      entryHash: snapshot.entryHash,
      state: snapshot.state,
      stateFormat: snapshot.stateFormat,
      files: snapshot.files,
      memoryBytes: engine.memoryBytes,
      pages: engine.pages,
      exports: engine.exports,
      requestsLeft: engine.requestsLeft,
      host: snapshot.host,
    }),
  )
  const file = Buffer.allocUnsafeSlow(MAGIC.length + 4 + header.length + engine.bytes.byteLength + CHECKSUM_BYTES)
  const hash = createHash('sha256')
  let at = 0
  for (const part of [MAGIC, u32(header.length), header, engine.bytes]) {
    for (const chunk of chunksOf(part, PAGE_BYTES)) {
      file.set(chunk, at)
      hash.update(chunk)
      at += chunk.byteLength
      yield
    }
  }
  hash.digest().copy(file, at)
  return file
}

/** A snapshot's file (the format above). */
export function encodeSnapshot(snapshot: VMSnapshot): Buffer {
  return runAtOnce(fileSteps(snapshot))
}

/** encodeSnapshot in slices: the same bytes, while the event loop keeps turning. */
export function encodeSnapshotInSlices(snapshot: VMSnapshot): Promise<Buffer> {
  return runInSlices(fileSteps(snapshot))
}

function isExportInfo(e: unknown): boolean {
  const x = e as Record<string, unknown> | null
  return (
    x !== null &&
    typeof x === 'object' &&
    typeof x.name === 'string' &&
    typeof x.callable === 'boolean' &&
    (x.value === undefined || x.value === null || typeof x.value === 'string')
  )
}

/** The largest snapshot file of a VM with `memoryBytes` of memory (all its pages, and a header at its bound). */
export function maxSnapshotBytes(memoryBytes: number): number {
  return MAGIC.length + 4 + MAX_HEADER_BYTES + memoryBytes + CHECKSUM_BYTES
}

/** What a reader expects of a snapshot's header: a file whose header says otherwise is refused before its pages are read. */
export interface SnapshotExpectation {
  seq?: number
  state?: string
  stateFormat?: string
  entryHash?: string
}

/** The bytes before a snapshot's header, and its header's length (null if `prefix` is not a snapshot's start). */
export function snapshotHeaderLength(prefix: Uint8Array): number | null {
  const data = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength)
  if (data.length < MAGIC.length + 4 || !data.subarray(0, MAGIC.length).equals(MAGIC)) return null
  const length = data.readUInt32BE(MAGIC.length)
  return length > MAX_HEADER_BYTES ? null : length
}

/** Where a snapshot's header starts. */
export const SNAPSHOT_HEADER_OFFSET = MAGIC.length + 4

/** Throws SnapshotUnreadable if a snapshot's header (JSON text) does not say what is expected. */
export function checkSnapshotHeader(headerText: string, expect: SnapshotExpectation): void {
  let h: Record<string, unknown>
  try {
    h = JSON.parse(headerText) as Record<string, unknown>
  } catch {
    throw new SnapshotUnreadable('its header is not JSON')
  }
  for (const key of ['seq', 'state', 'stateFormat', 'entryHash'] as const) {
    if (expect[key] !== undefined && h[key] !== expect[key]) throw new SnapshotUnreadable(`its header's ${key} is not the one expected`)
  }
}

/**
 * Steps that read a snapshot file; they throw SnapshotUnreadable if it is torn, damaged or not one, or
 * if its content does not hash to the state it names. Its pages are a view of `file`, not a copy.
 */
function* decodeSteps(file: Uint8Array): Steps<VMSnapshot> {
  const data = Buffer.from(file.buffer, file.byteOffset, file.byteLength)
  if (data.length < MAGIC.length + 4 + CHECKSUM_BYTES || !data.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new SnapshotUnreadable('not a LibVMS snapshot (or one of a newer format)')
  }
  const body = data.subarray(0, data.length - CHECKSUM_BYTES)
  const checksum = createHash('sha256')
  for (const chunk of chunksOf(body, PAGE_BYTES)) {
    checksum.update(chunk)
    yield
  }
  if (!checksum.digest().equals(data.subarray(data.length - CHECKSUM_BYTES))) {
    throw new SnapshotUnreadable('its checksum does not match: the file is torn or damaged')
  }
  const headerLength = body.readUInt32BE(MAGIC.length)
  const headerStart = MAGIC.length + 4
  if (headerLength > MAX_HEADER_BYTES || headerStart + headerLength > body.length) throw new SnapshotUnreadable('its header is cut short')
  let h: Record<string, unknown>
  try {
    h = JSON.parse(body.subarray(headerStart, headerStart + headerLength).toString('utf8')) as Record<string, unknown>
  } catch {
    throw new SnapshotUnreadable('its header is not JSON')
  }
  const pagesStart = headerStart + headerLength
  const bytes = new Uint8Array(body.buffer, body.byteOffset + pagesStart, body.length - pagesStart)
  const engine: EngineState = {
    memoryBytes: h.memoryBytes as number,
    pages: h.pages as number[],
    bytes,
    exports: h.exports as EngineState['exports'],
    requestsLeft: h.requestsLeft === true,
  }
  const host = h.host as HostState
  if (
    !Number.isSafeInteger(h.seq) ||
    typeof h.entryHash !== 'string' ||
    typeof h.state !== 'string' ||
    typeof h.stateFormat !== 'string' ||
    !Array.isArray(h.pages) ||
    !Array.isArray(h.exports) ||
    !h.exports.every(isExportInfo) ||
    !Array.isArray(host?.counters) ||
    !host.counters.every((c) => Array.isArray(c) && c.length === 2 && typeof c[0] === 'string' && Number.isSafeInteger(c[1])) ||
    typeof host?.usage?.bytes !== 'number' ||
    typeof host?.usage?.entries !== 'number' ||
    (host.code !== undefined && !(Number.isSafeInteger(host.code) && host.code > 0 && host.code < (h.seq as number)))
  ) {
    throw new SnapshotUnreadable('its header lacks a field')
  }
  try {
    checkEngineStateShape(engine)
  } catch (err) {
    throw new SnapshotUnreadable((err as Error).message)
  }
  if ((yield* digestSteps(engine, host, h.stateFormat as string)) !== h.state)
    throw new SnapshotUnreadable('its content does not hash to the state it names')
  return {
    seq: h.seq as number,
    entryHash: h.entryHash,
    state: h.state,
    stateFormat: h.stateFormat as string,
    files: h.files as FilesState,
    engine,
    host: {
      usage: { bytes: host.usage.bytes, entries: host.usage.entries },
      counters: host.counters,
      ...(host.code !== undefined ? { code: host.code } : {}),
    },
  }
}

/**
 * Reads a snapshot file; throws SnapshotUnreadable if it is torn, damaged or not one, or if its
 * content does not hash to the state it names.
 */
export function decodeSnapshot(file: Uint8Array): VMSnapshot {
  return runAtOnce(decodeSteps(file))
}

/** decodeSnapshot in slices: the same checks, while the event loop keeps turning (a VM's reopen). */
export function decodeSnapshotInSlices(file: Uint8Array): Promise<VMSnapshot> {
  return runInSlices(decodeSteps(file))
}
