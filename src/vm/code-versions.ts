/**
 * Code versions: which code a VM runs at a seq. The init entry sets the first; each upgrade entry
 * (log schema 4) sets the next, from its own seq on. A version is named by the hash of its code and
 * the seq it took effect (`CodeVersion`), which is what `backendInfo`, the command line and an
 * RPCClient that pins a version speak of.
 *
 * Entries read here are someone else's log: an upgrade entry's limits are checked as an init
 * entry's are (valid, and under an auditor's ceiling) before anything runs under them.
 */
import { LimitCeilingError, LogFormatError } from '../errors.js'
import { type CodeEntry, decodeEntry, type InitEntry, type UpgradeEntry } from '../ledger/log-entry.js'
import { codeHash } from '../ledger/log-hashes.js'
import type { VMSnapshot } from '../ledger/snapshot.js'
import { limitAboveCeiling, resolveLimits, type VMLimits } from '../sandbox/limits.js'
import { stateFormatFor } from './turn-runner.js'

/** A code version: the hash of its code (codeHash) and the seq of the entry that set it (0: the init entry). */
export interface CodeVersion {
  hash: string
  seq: number
}

/** The version entry `seq` sets (an init or upgrade entry). */
export function codeVersionOf(entry: CodeEntry, seq: number): CodeVersion {
  return { hash: codeHash(entry.code), seq }
}

/**
 * The limits upgrade entry `seq` sets, checked: valid (else LogFormatError), and none above
 * `maxLimits`, an auditor's ceiling (else LimitCeilingError); none given: not checked against one
 * (the VM's own log).
 */
export function upgradeLimits(seq: number, entry: UpgradeEntry, maxLimits?: Partial<VMLimits> | null): VMLimits {
  let limits: VMLimits
  try {
    limits = resolveLimits(entry.limits)
  } catch (err) {
    throw new LogFormatError(`the upgrade entry's limits are invalid: ${(err as Error).message}`, seq)
  }
  if (maxLimits === null) return limits
  const above = limitAboveCeiling(limits, maxLimits)
  if (above) throw new LimitCeilingError(above.limit, above.logged, above.ceiling, `{maxLimits: {${above.limit}}}`, `upgrade entry ${seq}`)
  return limits
}

/**
 * The upgrade entry at `seq` of a log, read and checked to be one: the code a snapshot whose host
 * state names `seq` runs. Throws LogFormatError if the entry there is anything else.
 */
export async function upgradeEntryAt(source: { block(seq: number): Promise<Uint8Array> }, seq: number): Promise<UpgradeEntry> {
  const entry = decodeEntry(await source.block(seq), seq)
  if (entry.type !== 'upgrade') throw new LogFormatError(`a snapshot names entry ${seq} as its code's, but it is not an upgrade entry`, seq)
  return entry
}

/** Whether an init entry leaves upgrades on (it does not say `upgrades: false`); logs before schema 4 take none either, checked apart (UPGRADE_SCHEMA). */
export function takesUpgrades(init: InitEntry): boolean {
  return init.upgrades !== false
}

/** What a snapshot must be of to be restored (snapshot.ts, SnapshotFit): the state format and memory of the code it names. */
export interface SnapshotExpectation {
  stateFormat: string
  memoryBytes: number
}

/**
 * What a snapshot of this log must be of: the code its host state names — the init entry's (none
 * named), or the upgrade entry's at that seq, whose limits `maxLimits` bounds (null: none, the VM's
 * own log). A reason it cannot be restored, as a string, when the entry it names is not an upgrade.
 */
export async function snapshotExpectation(
  source: { block(seq: number): Promise<Uint8Array> },
  init: InitEntry,
  snapshot: VMSnapshot,
  maxLimits: Partial<VMLimits> | null,
): Promise<SnapshotExpectation | string> {
  const codeSeq = snapshot.host.code ?? 0
  const factory = !!init.factory
  if (codeSeq === 0)
    return { stateFormat: stateFormatFor(factory, init.schema, false), memoryBytes: resolveLimits(init.limits).memoryBytes }
  try {
    const upgrade = await upgradeEntryAt(source, codeSeq)
    return { stateFormat: stateFormatFor(factory, init.schema, true), memoryBytes: upgradeLimits(codeSeq, upgrade, maxLimits).memoryBytes }
  } catch (err) {
    return (err as Error).message
  }
}
