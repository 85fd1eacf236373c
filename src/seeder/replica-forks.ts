/**
 * The fork record of one seeded log: whether its host was proven to have rewritten history the
 * seeder's copy holds, the proof of it, and the attempts to make one. A fork is recorded only with a
 * proof that holds (fork-witness.ts makes it; a peer's word alone is a claim): the proof is kept in
 * `<dir>/forks/<call log key hex>.json` (written whole, then renamed into place) and read back, and
 * checked again, when the dir is reopened. A fork once proven stays proven: no later attempt is made.
 *
 * One attempt at a time; after one that made no proof, no other starts for 30 s, doubling to 10 min.
 * While an attempt runs, and once a fork is proven, the host is not counted as seen
 * (`hostMayBeSeen`). Attempts work on the copy's current session, which the seeder replaces when
 * Hypercore closes one on a conflict (`LogCopy`). Nothing starts, is kept or is reported once the
 * seeder is closed. Reports go out as the seeder's events: 'fork' (SeededFork), 'fork-unproven'
 * (UnprovenFork).
 */
import type { EventEmitter } from 'node:events'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type Hypercore from 'hypercore'
import { parseKeyUrl, toHex } from '../ledger/keys.js'
import type { LogEntry } from '../ledger/log-entry.js'
import { checkForkProof, type ForkProof, verifyReceipt } from '../ledger/receipts.js'
import type { ReplicaInfo } from '../rpc/protocol.js'
import { type ForkWitnessOptions, type WitnessedFork, witnessFork } from './fork-witness.js'

/** A fork of a seeded log, proven: what 'fork' events carry. */
export interface SeededFork {
  callLogUrl: string
  hostFork: number
  copyFork: number
  /** Entries the copy keeps. */
  length: number
  /** When the seeder proved it (ISO 8601). */
  seenAt: string
  /** What the proof shows. */
  what: string
  /** The fork proof: `nodevms check-proof <file>` checks it. */
  proofFile: string
  /** True when it was proven before this seeder opened its dir (read back from the proof file). */
  earlier: boolean
}

/**
 * A peer of a seeded log did what a host that rewrote history does (said it is on another fork, or
 * sent newer entries that do not verify against the copy), and no fork proof could be made: what
 * 'fork-unproven' events carry.
 */
export interface UnprovenFork {
  callLogUrl: string
  /** What the peer did, e.g. "says it is on fork 7, not this copy's 0". */
  claim: string
  copyFork: number
  /** Why no proof could be made. */
  why: string
}

/** The seeded log's copy as its seeder holds it now. */
export interface LogCopy {
  /** The copy's current session (null until the copy is complete). */
  readonly log: Hypercore<LogEntry> | null
  /** Resolves once a session Hypercore closed (a conflict) is replaced. */
  readonly reopened: Promise<void>
}

export interface ForkRecordOptions {
  /** The seeder's dir: proofs are kept in its `forks` folder. */
  dir: string
  callLogUrl: string
  /** Where an attempt looks for the hosts' current history. */
  witness: ForkWitnessOptions
  /** Whether the seeder is closed. */
  closed: () => boolean
  /** Where 'fork' and 'fork-unproven' are emitted: the seeder. */
  events: EventEmitter
}

const FORKS_DIR = 'forks'
/** The largest fork proof sent in a handshake (its JSON): receipts hold whole entries, up to 15 MiB each. */
const MAX_HANDSHAKE_PROOF_BYTES = 1024 * 1024
/** After a fork claim no proof came of, how long before another claim is looked into: doubling from the first, up to the second. */
const WITNESS_RETRY_MS = [30_000, 600_000] as const

interface ProvenFork {
  hostFork: number
  copyFork: number
  seenAt: number
  what: string
  proof: ForkProof
  proofBytes: number
}

/** The fork record of one seeded log; its seeder holds the copy (`LogCopy`) and hands it each claim (`suspect`). */
export class ForkRecord {
  /** The host's fork of this log, once proven. */
  private fork: ProvenFork | null = null
  /** The fork read back from the dir (proven before this seeder opened it), if any. */
  private readBackFork: ProvenFork | null = null
  /** Making a fork proof: one attempt at a time, and after one that failed, not again before `nextAt`. */
  private readonly witness = { running: false, nextAt: 0, waitMs: WITNESS_RETRY_MS[0] as number }
  private readonly hex: string
  private readonly file: string

  constructor(private readonly options: ForkRecordOptions) {
    this.hex = toHex(parseKeyUrl(options.callLogUrl))
    this.file = join(options.dir, FORKS_DIR, `${this.hex}.json`)
  }

  /** Whether the host may be counted as seen: not once a fork is proven, nor while a claim of one is looked into. */
  get hostMayBeSeen(): boolean {
    return !this.fork && !this.witness.running
  }

  /** The proven fork as a handshake reports it (`replica.forked`, with the proof when it is small enough); undefined until proven. */
  get forked(): ReplicaInfo['forked'] {
    const fork = this.fork
    if (!fork) return undefined
    return {
      hostFork: fork.hostFork,
      copyFork: fork.copyFork,
      seenAt: new Date(fork.seenAt).toISOString(),
      what: fork.what,
      proofBytes: fork.proofBytes,
      proof: fork.proofBytes <= MAX_HANDSHAKE_PROOF_BYTES ? fork.proof : null,
    }
  }

  /**
   * Takes as proven the fork proof this dir kept for the log, if it holds for `log` (the copy): it
   * must prove a fork of this log, its first receipt being of the copy's fork. A file that does not
   * hold is ignored.
   */
  async readBack(log: Hypercore<LogEntry>): Promise<void> {
    this.fork = await this.readProof(log)
    this.readBackFork = this.fork
  }

  private async readProof(log: Hypercore<LogEntry>): Promise<ProvenFork | null> {
    let text: string
    let seenAt: number
    try {
      const { size, mtimeMs } = await stat(this.file)
      if (size > 64 * 1024 * 1024) return null
      text = await readFile(this.file, 'utf8')
      seenAt = mtimeMs
    } catch {
      return null
    }
    try {
      const proof = JSON.parse(text) as ForkProof
      const verdict = checkForkProof(proof)
      if (!verdict.holds || verdict.log !== this.hex) return null
      const [copyFork, hostFork] = proof.receipts.map((receipt) => verifyReceipt(receipt).fork)
      if (copyFork !== log.fork) return null
      return { hostFork, copyFork, seenAt, what: verdict.what, proof, proofBytes: Buffer.byteLength(JSON.stringify(proof)) }
    } catch {
      return null
    }
  }

  /**
   * Emits 'fork' for the fork read back from the dir (`earlier`), if there is one. A fork proven since
   * was reported when it was kept: 'fork' comes once per log.
   */
  reportEarlier(copy: LogCopy): void {
    if (this.fork && this.fork === this.readBackFork) this.options.events.emit('fork', this.event(copy, this.fork, true))
  }

  /**
   * A peer of the log did what a host that rewrote the copy's history does (`claim`: it says it is on
   * another fork, or its newer entries do not verify). Unless a fork is already proven, or an attempt
   * is running or failed not long ago, asks the hosts (then the DHT) for their current history and,
   * if it conflicts with the copy, keeps the proof. Works on the copy's current session (copy.log):
   * one that Hypercore closed under the attempt (a conflict) is replaced by the seeder, and the
   * attempt made again on the new one.
   */
  suspect(copy: LogCopy, claim: string): void {
    const witness = this.witness
    const { callLogUrl, closed, events } = this.options
    if (this.fork || witness.running || Date.now() < witness.nextAt || closed() || !copy.log) return
    witness.running = true
    void (async () => {
      let copyFork = copy.log?.fork ?? 0
      let why = ''
      try {
        for (let tries = 0; tries < 3 && !closed(); tries++) {
          const log = copy.log as Hypercore<LogEntry>
          copyFork = log.fork
          const found = await witnessFork(log, this.options.witness).catch((err: Error) => ({ why: err.message }))
          if (closed()) return
          if (!('why' in found)) {
            await this.keep(copy, found)
            return
          }
          why = found.why
          // Only a session closed under the attempt is worth another one at once.
          if (copy.log === log && !log.closing) break
          await copy.reopened
        }
        witness.nextAt = Date.now() + witness.waitMs
        witness.waitMs = Math.min(witness.waitMs * 2, WITNESS_RETRY_MS[1])
        if (!closed()) events.emit('fork-unproven', { callLogUrl, claim, copyFork, why } satisfies UnprovenFork)
      } finally {
        witness.running = false
      }
    })()
  }

  /** Keeps a proven fork: its proof in dir/forks/<hex>.json (written whole, then renamed into place), and says so ('fork'). */
  private async keep(copy: LogCopy, found: WitnessedFork): Promise<void> {
    const file = this.file
    await mkdir(join(this.options.dir, FORKS_DIR), { recursive: true })
    await writeFile(`${file}.tmp`, `${JSON.stringify(found.proof, null, 1)}\n`)
    await rename(`${file}.tmp`, file)
    const fork: ProvenFork = {
      hostFork: found.hostFork,
      copyFork: found.copyFork,
      seenAt: Date.now(),
      what: found.what,
      proof: found.proof,
      proofBytes: Buffer.byteLength(JSON.stringify(found.proof)),
    }
    this.fork = fork
    this.options.events.emit('fork', this.event(copy, fork, false))
  }

  private event(copy: LogCopy, fork: ProvenFork, earlier: boolean): SeededFork {
    const { hostFork, copyFork, what } = fork
    const length = copy.log?.length ?? 0
    return {
      callLogUrl: this.options.callLogUrl,
      hostFork,
      copyFork,
      length,
      seenAt: new Date(fork.seenAt).toISOString(),
      what,
      proofFile: this.file,
      earlier,
    }
  }
}
