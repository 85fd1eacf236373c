/**
 * The explorer's audit (POST /api/audit): Verifier.verify of the log and archive into a temp replay
 * dir, one at a time, its progress and verdict broadcast to the page (event-stream.ts, `audit`) and
 * kept for GET /api/audit. A divergence at an entry comes with its execution proof when the log's
 * entries show it (divergence-proof.ts). Closing the explorer cancels a running audit.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Verifier } from '../audit/verifier.js'
import { DivergenceError, LogFormatError } from '../errors.js'
import type { CallLog } from '../ledger/call-log.js'
import type { DatArchive } from '../ledger/files-archive.js'
import type { VMLimits } from '../sandbox/limits.js'
import { type MadeProof, proveDivergence } from './divergence-proof.js'
import type { EventStream } from './event-stream.js'

export type AuditState =
  | { state: 'idle' }
  | { state: 'running'; done: number; total: number; rate: number; startedAt: number }
  | { state: 'done'; verdict: AuditVerdict }

export type AuditVerdict =
  | { verified: true; entries: number; calls: number; failedCalls: number; filesVersion: number; ms: number }
  | { verified: false; divergence: Record<string, unknown>; ms: number }
  | { verified: null; error: { name: string; code: string; message: string }; ms: number }

export interface AuditRunnerOptions {
  callLog: CallLog
  filesArchive: DatArchive
  /** The most of each limit an audited log may claim. */
  maxLimits: Partial<VMLimits> | undefined
  events: EventStream
  /** Aborted when the explorer closes: a running audit stops. */
  signal: AbortSignal
}

export class AuditRunner {
  private current: AuditState = { state: 'idle' }
  /** The last audit's execution proof (JSON text), when its divergence is in the log's entries. */
  private lastProof: string | null = null
  private run: Promise<void> | null = null

  constructor(private readonly options: AuditRunnerOptions) {}

  get state(): AuditState {
    return this.current
  }

  get proof(): string | null {
    return this.lastProof
  }

  get running(): boolean {
    return this.current.state === 'running'
  }

  /** Starts an audit (the caller checks none is running); its state is `running` at once. */
  start(): void {
    this.run = this.audit().finally(() => {
      this.run = null
    })
  }

  /** Resolves once no audit runs (abort the signal first to cancel one). */
  async settled(): Promise<void> {
    await this.run?.catch(() => {})
  }

  private async audit(): Promise<void> {
    const { callLog, filesArchive, maxLimits, events, signal } = this.options
    this.lastProof = null
    const started = performance.now()
    const running = { state: 'running' as const, done: 0, total: callLog.length, rate: 0, startedAt: Date.now() }
    this.current = running
    events.broadcast('audit', running)
    const replayDir = await mkdtemp(join(tmpdir(), 'nodevms-explore-replay-'))
    let lastSent = 0
    const ms = () => Math.round(performance.now() - started)
    try {
      const report = await Verifier.verify(callLog, filesArchive, {
        dir: join(replayDir, 'replay'),
        maxLimits,
        onProgress: (done, total) => {
          if (signal.aborted) throw new Error('the explorer closed: audit cancelled')
          const now = performance.now()
          running.done = done
          running.total = total
          running.rate = done / Math.max(0.001, (now - started) / 1000)
          if (now - lastSent >= 100 || done >= total) {
            lastSent = now
            events.broadcast('audit', running)
          }
        },
      })
      this.current = { state: 'done', verdict: { verified: true, ...report, ms: ms() } }
    } catch (error) {
      this.current = { state: 'done', verdict: await this.verdictOf(error, ms) }
    } finally {
      await rm(replayDir, { recursive: true, force: true }).catch(() => {})
    }
    events.broadcast('audit', this.current)
  }

  /** The verdict of an audit that threw: a divergence (with its proof, when one holds), a malformed log, or an error. */
  private async verdictOf(error: unknown, ms: () => number): Promise<AuditVerdict> {
    if (error instanceof DivergenceError) {
      let proof: MadeProof['summary'] = { why: 'the divergence is not at an entry of the log' }
      if (error.seq !== undefined) {
        const made = await proveDivergence(this.options.callLog, error.seq, this.options.maxLimits)
        this.lastProof = made.text
        proof = made.summary
      }
      return { verified: false, divergence: { ...error.toJSON(), proof }, ms: ms() }
    }
    if (error instanceof LogFormatError) {
      const e = error as LogFormatError & { seq?: number }
      const divergence = { name: e.name, code: e.code, message: e.message, seq: e.seq ?? null, field: 'format' }
      return { verified: false, divergence, ms: ms() }
    }
    const e = error as { name?: string; code?: string; message?: string }
    return {
      verified: null,
      error: { name: e?.name ?? 'Error', code: e?.code ?? 'ERR_UNKNOWN', message: e?.message ?? String(error) },
      ms: ms(),
    }
  }
}
