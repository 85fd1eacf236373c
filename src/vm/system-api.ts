/**
 * The System API scripts see: System.caller (set by the sandbox for each turn) and System.files,
 * Beaker's DatArchive subset over the call's files transaction.
 *
 * SYSTEM_SOURCE runs inside the VM; `SystemHost` answers its requests on the host. Every answer
 * depends only on the archive's state before the call, the call's own changes and the logged
 * identity of the archive — never on the host's clock or the replaying machine's keys — so a replay
 * gets the same answers.
 */

import type { TaggedValue } from '../codec/value-codec.js'
import { OracleLimitError, OracleMissingError, UnknownSystemCallError } from '../errors.js'
import { FilesTransaction, type StorageQuota, type StorageUsage } from '../ledger/files-transaction.js'
import type { FilesView } from '../ledger/files-view.js'
import type { HostRequestHandler } from '../sandbox/sandbox.js'
import { readVMSource } from '../sandbox/vm-source.js'

/** System.files, as the VM sees it (system-api.vm.js). */
export const SYSTEM_SOURCE = readVMSource(import.meta.url, './system-api.vm.js')

/** System.vms: only in VM factory scripts (factory-system-api.vm.js). */
export const FACTORY_SYSTEM_SOURCE = readVMSource(import.meta.url, './factory-system-api.vm.js')

/** System.vms.upgradeVM: in VM factories whose log is of schema 4 or later (factory-upgrades-api.vm.js). */
export const FACTORY_UPGRADES_SOURCE = readVMSource(import.meta.url, './factory-upgrades-api.vm.js')

/** What a factory's host does for System.vms (nondeterministic: fresh keys and ids). */
export interface VMProvisioner {
  /** `caller`: the id of the caller of the factory call that asks (null: anonymous). */
  provisionVM(options: unknown, caller: string | null): Promise<TaggedValue>
  /** Resolves with the id shut down (recorded, so a restart knows which VMs are gone). */
  shutdownVM(id: unknown): Promise<string>
  /** Upgrades a provisioned VM's code (`{id, code}`); resolves with what the upgrade did. `caller`: as provisionVM's. */
  upgradeVM(options: unknown, caller: string | null): Promise<TaggedValue>
}

/** One System.vms request — what was asked and what it gave — as recorded in the call's entry (oracle.vms). */
export interface OracleRecord {
  op: string
  args: TaggedValue
  result?: TaggedValue
  error?: { name: string; message: string }
}

/** Oracle values one call may record: its entry must stay well within what Hypercore stores (15 MiB). */
export const MAX_ORACLE_CHARS = 4 * 1024 * 1024

/**
 * The oracle values of one call. Live, it asks the provisioner and records each answer; on replay or
 * restore it hands back the recorded answers in order and never asks a host for anything.
 */
export class OracleSession {
  readonly records: OracleRecord[] = []
  private next = 0
  /** Characters of oracle values the call has recorded (or read back) so far. */
  private size = 0

  constructor(
    private readonly provisioner: VMProvisioner | null,
    private readonly recorded: OracleRecord[] | null,
    /** The caller of the call that asks (what a live provisioner is told). */
    private readonly caller: string | null = null,
  ) {}

  /** How many recorded answers the turn did not ask for (a replayed call must ask for every one). */
  get unused(): number {
    return this.recorded ? Math.max(0, this.recorded.length - this.next) : 0
  }

  async run(
    op: string,
    args: unknown,
    live: (p: VMProvisioner, caller: string | null) => Promise<TaggedValue | undefined>,
  ): Promise<TaggedValue | undefined> {
    const asked = (args ?? null) as TaggedValue
    // Refused before anything is asked or recorded, by what the call recorded before: the same on replay.
    if (this.size + JSON.stringify(asked).length > MAX_ORACLE_CHARS) {
      throw new OracleLimitError(
        `System.${op}: one call may record at most ${MAX_ORACLE_CHARS} characters of System.vms requests and answers, so that its log entry stays storable; make fewer or smaller requests per call`,
      )
    }
    if (this.recorded) {
      const record = this.recorded[this.next++]
      if (record) this.size += JSON.stringify(record).length
      if (!record || record.op !== op || JSON.stringify(record.args) !== JSON.stringify(asked)) {
        throw new OracleMissingError(
          `the log holds no recorded answer for this System.${op} request (#${this.next}): the replay asked something else`,
        )
      }
      if (record.error) throw Object.assign(new Error(record.error.message), { name: record.error.name })
      return record.result
    }
    if (!this.provisioner) throw new OracleMissingError(`System.${op} has no host to ask here`)
    try {
      const result = await live(this.provisioner, this.caller)
      this.keep(result === undefined ? { op, args: asked } : { op, args: asked, result })
      return result
    } catch (err) {
      const e = err as Error
      this.keep({ op, args: asked, error: { name: e.name ?? 'Error', message: e.message ?? String(err) } })
      throw err
    }
  }

  private keep(record: OracleRecord): void {
    this.records.push(record)
    this.size += JSON.stringify(record).length
  }
}

/** Who the archive is, as the log records it: a replay answers with the original's key, not its own. */
export interface FilesIdentity {
  key: string
  title: string
}

/**
 * The host side of one turn's System calls. The files view is opened on first use (a turn that
 * touches no file costs nothing) and the transaction collects the turn's changes.
 */
export class SystemHost {
  private tx: FilesTransaction | null = null

  constructor(
    private readonly identity: FilesIdentity,
    /** The archive version the call starts from (before its own changes). */
    private readonly baseVersion: number,
    private readonly timestamp: number,
    private readonly openView: () => Promise<FilesView>,
    /** System.vms for factory scripts; null elsewhere. */
    private readonly oracle: OracleSession | null = null,
    /** The storage quotas and the archive's usage before the call; null where no quota applies. */
    private readonly storage: { quota: StorageQuota; usage: StorageUsage } | null = null,
  ) {}

  /** The turn's changes, if it made any. */
  get transaction(): FilesTransaction | null {
    return this.tx
  }

  readonly handle: HostRequestHandler = async (op, args, meter) => {
    if (op === 'vms.provisionVM' || op === 'vms.shutdownVM' || op === 'vms.upgradeVM') {
      if (!this.oracle) throw new UnknownSystemCallError(op)
      meter.charge('vm')
      return this.oracle.run(op, args[0], (p, caller) => {
        if (op === 'vms.provisionVM') return p.provisionVM(args[0], caller)
        if (op === 'vms.upgradeVM') return p.upgradeVM(args[0], caller)
        return p.shutdownVM(args[0])
      })
    }
    if (!this.tx) this.tx = new FilesTransaction(await this.openView(), this.timestamp, this.storage)
    const tx = this.tx
    tx.charge = (kind, amount) => meter.charge(kind, amount)
    switch (op) {
      case 'files.getInfo':
        return { key: this.identity.key, url: `hyper://${this.identity.key}`, version: this.baseVersion, title: this.identity.title }
      case 'files.stat':
        return tx.stat(args[0])
      case 'files.readFile':
        return tx.readFile(args[0], args[1] ?? undefined)
      case 'files.readdir':
        return tx.readdir(args[0], args[1] ?? undefined)
      case 'files.writeFile':
        return tx.writeFile(args[0], args[1], args[2] ?? undefined)
      case 'files.mkdir':
        return tx.mkdir(args[0])
      case 'files.unlink':
        return tx.unlink(args[0])
      case 'files.rmdir':
        return tx.rmdir(args[0], args[1] ?? undefined)
      case 'files.history': {
        const opts = (args[0] ?? {}) as { start?: unknown; end?: unknown; reverse?: unknown }
        const start = typeof opts.start === 'number' ? opts.start : undefined
        const requestedEnd = typeof opts.end === 'number' ? opts.end : this.baseVersion
        return tx.history({ start, end: Math.min(requestedEnd, this.baseVersion), reverse: !!opts.reverse })
      }
      default:
        throw new UnknownSystemCallError(op)
    }
  }
}
