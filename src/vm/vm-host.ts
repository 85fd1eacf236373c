/**
 * VMHost: many VMs in one process, in one store. Each VM keeps a dir of its own (`<host>/vms/<name>/`:
 * its marker and snapshot files) and a namespace of the host's Corestore for its cores, so a VM costs
 * the process no file descriptor of its own (one RocksDB for all; a VM with its own store holds about
 * 8), and deploying or closing one opens or closes no database. The host holds a memory budget: the
 * VMs it runs may together reserve at most that much engine memory (their `limits.memoryBytes`).
 *
 * A factory is a host for the VMs it provisions (in its own store); a VMHost is one for an
 * application that holds several VMs.
 */
import { totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import type Corestore from 'corestore'
import { CapacityError, InvalidArgumentError, StateError } from '../errors.js'
import { claimHostDir, openStore } from '../ledger/data-dir.js'
import { formatBytes } from '../wording.js'
import type { DeployOptions, VM } from './vm.js'

export interface VMHostOptions {
  /**
   * The most engine memory the host's VMs may reserve together, in bytes: the sum of their
   * `limits.memoryBytes`. Default: half the machine's memory.
   */
  memoryBudget?: number
}

export interface HostedDeployOptions extends Omit<DeployOptions, 'dir'> {
  /** The VM's name in the host: its dir is `<host dir>/vms/<name>`. Letters, digits, `.`, `_`, `-` (at most 64). */
  name: string
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** The default memory budget of a host: half the machine's memory. */
export function defaultMemoryBudget(): number {
  return Math.floor(totalmem() / 2)
}

/** The budget `options` give, checked. */
export function memoryBudgetOf(options: VMHostOptions): number {
  const { memoryBudget = defaultMemoryBudget() } = options
  if (!Number.isSafeInteger(memoryBudget) || memoryBudget < 0) {
    throw new InvalidArgumentError(`memoryBudget must be a non-negative whole number of bytes, got ${memoryBudget}`)
  }
  return memoryBudget
}

/** The namespace of the host's store a VM's cores live in. */
export function hostedNamespace(name: string): string {
  return `vm-${name}`
}

export class VMHost {
  readonly dir: string
  readonly memoryBudget: number
  private readonly store: Corestore
  /** Whether closing the host closes the store (false for a factory's, which the factory closes). */
  private readonly ownsStore: boolean
  private readonly hosted = new Map<string, { vm: VM; bytes: number }>()
  private closing = false

  private constructor(dir: string, store: Corestore, ownsStore: boolean, memoryBudget: number) {
    this.dir = dir
    this.store = store
    this.ownsStore = ownsStore
    this.memoryBudget = memoryBudget
  }

  /**
   * Opens (or makes) a host dir: `<dir>/corestore` holds every hosted VM's cores. ERR_DIR_IN_USE if
   * another process has it open; ERR_DIR_NOT_EMPTY for a dir that is neither empty nor a host's.
   */
  static async open(dir: string, options: VMHostOptions = {}): Promise<VMHost> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('VMHost.open(dir): dir must be a path')
    const host = resolve(dir)
    const budget = memoryBudgetOf(options) // checked before anything is made on disk
    await claimHostDir(host)
    return new VMHost(host, await openStore(host), true, budget)
  }

  /** @internal A host whose store someone else owns and closes (a factory hosting its VMs in its own store). */
  static over(dir: string, store: Corestore, options: VMHostOptions = {}): VMHost {
    return new VMHost(dir, store, false, memoryBudgetOf(options))
  }

  /** The VMs the host runs (deployed and not closed), by name. */
  get vms(): ReadonlyMap<string, VM> {
    return new Map([...this.hosted].map(([name, { vm }]) => [name, vm]))
  }

  /** The sum of the memory limits of the VMs the host runs or is deploying (bytes). */
  get memoryReserved(): number {
    let sum = 0
    for (const { bytes } of this.hosted.values()) sum += bytes
    return sum
  }

  /** The dir of the VM named `name`. */
  dirOf(name: string): string {
    return join(this.dir, 'vms', name)
  }

  /**
   * Deploys `vm` in the host as `name`: a new name gets a new VM, a name the host has seen before
   * resumes that VM (as `vm.deploy` on its dir does). CapacityError (ERR_CAPACITY) if its memory
   * limit does not fit in what the budget has left; the VM then runs nowhere.
   */
  async deploy(vm: VM, options: HostedDeployOptions): Promise<void> {
    const { name, title, onResume, upgrade, asLogged } = options ?? ({} as HostedDeployOptions)
    if (this.closing) throw new StateError('the VM host is closed')
    if (typeof name !== 'string' || !NAME.test(name)) {
      throw new InvalidArgumentError(
        `host.deploy(vm, {name}): name must be 1 to 64 letters, digits, '.', '_' or '-' (not first), got ${JSON.stringify(name)}`,
      )
    }
    if (this.hosted.has(name)) throw new StateError(`the host already runs a VM named ${name}: close it first`)
    // Reserved before the deploy starts, so that deploys running at once cannot overshoot together.
    const slot = { vm, bytes: this.reserve(vm.limits.memoryBytes) }
    this.hosted.set(name, slot)
    try {
      await vm.deployHosted(this.dirOf(name), title ?? '', this.store, this.dir, hostedNamespace(name), { onResume, upgrade, asLogged })
    } catch (err) {
      this.hosted.delete(name)
      throw err
    }
    // A VM that resumed runs on its logged limits, which may be other than those it was made with.
    if (vm.limits.memoryBytes !== slot.bytes) {
      this.hosted.delete(name)
      try {
        slot.bytes = this.reserve(vm.limits.memoryBytes)
      } catch (err) {
        await vm.close()
        throw err
      }
      this.hosted.set(name, slot)
    }
    // An upgrade that changes the VM's memory changes what it reserves: reserved before it runs.
    vm.memoryGate = (bytes) => {
      const held = slot.bytes
      this.hosted.delete(name)
      try {
        slot.bytes = this.reserve(bytes)
      } finally {
        this.hosted.set(name, slot)
      }
      return () => {
        slot.bytes = held
      }
    }
    vm.once('close', () => {
      vm.memoryGate = null
      if (this.hosted.get(name) === slot) this.hosted.delete(name)
    })
  }

  /** Throws CapacityError unless `bytes` more fit in the budget; answers `bytes`. */
  reserve(bytes: number): number {
    const reservedBytes = this.memoryReserved
    if (reservedBytes + bytes > this.memoryBudget) {
      throw new CapacityError(
        `this host's VMs reserve ${formatBytes(reservedBytes)} of its ${formatBytes(this.memoryBudget)} memory budget; a VM with a ${formatBytes(bytes)} memory limit does not fit: close a VM, give the VM a smaller limits.memoryBytes, or raise the budget (memoryBudget, --memory-budget)`,
        { budgetBytes: this.memoryBudget, reservedBytes, askedBytes: bytes },
      )
    }
    return bytes
  }

  /** Closes every VM the host runs (their calls finish first), then its store. */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    await Promise.all([...this.hosted.values()].map(({ vm }) => vm.close()))
    this.hosted.clear()
    if (this.ownsStore) await this.store.close()
  }
}
