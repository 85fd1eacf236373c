/**
 * Host work: what a script's System.* requests cost, in the same ticks as its compute.
 *
 * Every request is charged before the host does its work: a base cost and a cost per KiB of its
 * encoded arguments when the script makes it, then, while the host serves it, a cost per KiB read or
 * written and per entry listed, visited or removed. Charges are counted in milliticks (1/1000 of a
 * tick) and added to the call's compute ticks; a call whose ticks and host work together pass
 * `limits.computeTicks` ends with ComputeLimitExceeded, as a compute-bound one does.
 *
 * The schedule is part of the determinism contract: the init entry records its version
 * (`costSchedule`), a replay charges by that version, and a log with no version (written before
 * schedules existed) is replayed with schedule 0, which charges nothing — so it verifies as it did.
 * docs/vm-api.md publishes the table; change a number only by adding a new version.
 */
import { HostWorkExceeded } from '../errors.js'

/** The cost of each kind of host work, in milliticks. */
export interface CostSchedule {
  readonly version: number
  /** Every System.* request, when the script makes it. */
  readonly request: number
  /** Per KiB (or part) of a request's encoded arguments, when the script makes it. */
  readonly argsKiB: number
  /** Per KiB (or part) of file contents read. */
  readonly readKiB: number
  /** Per KiB (or part) of file contents written. */
  readonly writeKiB: number
  /** Per path a request looks up (stat, readFile, readdir, writeFile, mkdir, unlink, rmdir; each entry a recursive readdir visits). */
  readonly lookup: number
  /** Per name a listing reads (each name readdir lists, each entry rmdir finds below a folder). */
  readonly listed: number
  /** Per entry a request creates, rewrites or removes (writeFile, mkdir, unlink, each entry rmdir removes), its commit included. */
  readonly change: number
  /** Per record of the archive's history listed. */
  readonly record: number
  /** Per System.vms request (provisioning or shutting down a VM). */
  readonly vm: number
  /** Per timer the host fires for the call (its driver round trip; the callback's compute is metered as compute). */
  readonly timer: number
  /** Host requests one call may have in flight; more wait inside the VM. 0: unbounded (schedule 0). */
  readonly maxInFlight: number
  /** Whether the storage quotas of the limits apply (schedule 0 predates them). */
  readonly quotas: boolean
}

export type HostWorkKind = Exclude<keyof CostSchedule, 'version' | 'maxInFlight' | 'quotas'>

/** Logs written before cost schedules: host work is free, nothing bounds requests in flight. */
const SCHEDULE_0: CostSchedule = Object.freeze({
  version: 0,
  request: 0,
  argsKiB: 0,
  readKiB: 0,
  writeKiB: 0,
  lookup: 0,
  listed: 0,
  change: 0,
  record: 0,
  vm: 0,
  timer: 0,
  maxInFlight: 0,
  quotas: false,
})

/**
 * Schedule 1, calibrated on the reference machine (2 cores, Node 20; bench/host-work-calibration.ts)
 * so that a tick of host work takes about as long as a tick of compute there (0.7–0.8 ms): a request
 * round trip ≈ 200 µs, a lookup ≈ 100–200 µs, a listed name ≈ 15–35 µs, a changed entry with its
 * commit ≈ 250–480 µs more, a history record ≈ 45 µs, ≈ 25 µs per KiB of arguments and 40 per KiB read
 * into the VM, ≈ 8 µs per KiB committed. Rounded towards charging more.
 */
const SCHEDULE_1: CostSchedule = Object.freeze({
  version: 1,
  request: 200,
  argsKiB: 25,
  readKiB: 40,
  writeKiB: 8,
  lookup: 200,
  listed: 40,
  change: 350,
  record: 50,
  vm: 100_000,
  timer: 75,
  maxInFlight: 64,
  quotas: true,
})

/** Host requests one call may have in flight from schedule 1 on. */
export const MAX_HOST_REQUESTS_IN_FLIGHT = SCHEDULE_1.maxInFlight

const SCHEDULES: readonly CostSchedule[] = [SCHEDULE_0, SCHEDULE_1]

/** The schedule new deploys record. */
export const CURRENT_COST_SCHEDULE = SCHEDULE_1.version

/** The schedule of a version a log records (absent: 0), or null if this LibVMS does not know it. */
export function costSchedule(version: number | undefined): CostSchedule | null {
  return SCHEDULES[version ?? 0] ?? null
}

/** Milliticks in a tick. */
export const MILLITICKS = 1000

/**
 * Charges the host work of one request against what is left of its call's budget. `charge` throws
 * HostWorkExceeded once the charges pass the allowance, so the work after it is never done.
 */
export class HostMeter {
  charged = 0

  constructor(
    readonly schedule: CostSchedule,
    /** Milliticks the call has left. */
    readonly allowance: number,
  ) {}

  /** Adds charges (also those made by a meter elsewhere: a sandbox thread's host); throws if they pass the allowance. */
  absorb(milliticks: number): void {
    this.charged += milliticks
    if (this.charged > this.allowance) throw new HostWorkExceeded()
  }

  /** Charges `amount` units of `kind` (bytes for the per-KiB kinds, a count for the others). */
  charge(kind: HostWorkKind, amount = 1): void {
    const rate = this.schedule[kind]
    if (rate === 0 || amount <= 0) return
    this.absorb(kind.endsWith('KiB') ? Math.ceil(amount / 1024) * rate : amount * rate)
  }

  get exceeded(): boolean {
    return this.charged > this.allowance
  }
}
