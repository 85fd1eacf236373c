/**
 * VMFactory: a VM whose script provisions other VMs (System.vms), each served at `/<id>` on the
 * factory's RPC server. Provisioning is nondeterministic on the host (fresh keys, ids, the server's
 * URL): its answers are oracle values recorded in the factory's call entry, and replaying the
 * factory's log reads them from there, so the factory verifies like any VM.
 *
 * The factory is a VMHost (vm-host.ts) for its VMs: they share the factory's Corestore (each in its
 * own namespace) and the compiled engine module; `<factory dir>/vms/<id>/` is each one's dir. A
 * shut-down VM is unmounted and closed; its data stays in the store for audit. What the factory's VMs
 * may reserve together is bounded by its memory budget, and what one caller may run by maxVMsPerCaller.
 */

import { randomBytes } from 'node:crypto'
import type { TaggedValue } from '../codec/value-codec.js'
import { FactoryError, InvalidArgumentError, StateError } from '../errors.js'
import { CallLog } from '../ledger/call-log.js'
import type { CallEntry } from '../ledger/log-entry.js'
import type { ScriptBundle } from '../script/bundle.js'
import { counted } from '../wording.js'
import { FACTORY_EXPORTS } from './admission.js'
import type { OracleRecord } from './system-api.js'
import { VM, type VMOptions } from './vm.js'
import { hostedNamespace, memoryBudgetOf, VMHost } from './vm-host.js'

/** What the factory needs of an RPC server (RPCServer fits). */
export interface FactoryServer {
  readonly url: string | null
  mount(path: string, vm: VM): void
  unmount(path: string): Promise<void>
  /** Answers connections to a shut-down VM's path with where it is still audited (RPCServer: HTTP 410). */
  retire?(path: string, reason: string): void
}

export interface VMFactoryOptions extends VMOptions {
  /** Provisioned VMs alive at once (default 100). */
  maxVMs?: number
  /** Provisioned VMs alive at once per caller of provisionVM (default: maxVMs); anonymous callers count as one. */
  maxVMsPerCaller?: number
  /**
   * The most engine memory the provisioned VMs may reserve together (the sum of their
   * `limits.memoryBytes`), in bytes. Default: half the machine's memory.
   */
  memoryBudget?: number
}

export interface ProvisionedVMInfo {
  id: string
  rpcUrl: string | null
  callLogUrl: string
  filesArchiveUrl: string
}

const MAX_TITLE_LENGTH = 1000

/** A provisioned VM and the caller of the call that provisioned it. */
interface ProvisionedVM {
  vm: VM
  owner: string | null
}

function countOption(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer, got ${value}`)
  return value
}

export class VMFactory extends VM {
  readonly maxVMs: number
  readonly maxVMsPerCaller: number
  private readonly memoryBudget: number | undefined
  private readonly provisioned = new Map<string, ProvisionedVM>()
  /** VMs shut down, by id: their call log URL (they stay audited through the factory). */
  private readonly shutDown = new Map<string, string>()
  private server: FactoryServer | null = null
  private host: VMHost | null = null

  constructor(code: string | ScriptBundle, options: VMFactoryOptions = {}) {
    const { maxVMs = 100, maxVMsPerCaller, memoryBudget, ...vmOptions } = options
    // `this` is only bound once super returns; System.vms only runs inside calls, after that.
    super(code, vmOptions, {
      requiredExports: [...FACTORY_EXPORTS],
      provisioner: {
        provisionVM: (opts, caller) => this.provision(opts, caller),
        shutdownVM: (id) => this.shutdown(id),
        upgradeVM: (opts) => this.upgradeTenant(opts),
      },
    })
    this.maxVMs = countOption('maxVMs', maxVMs)
    this.maxVMsPerCaller = countOption('maxVMsPerCaller', maxVMsPerCaller ?? this.maxVMs)
    // Checked here, before the factory's dir is touched.
    if (memoryBudget !== undefined) memoryBudgetOf({ memoryBudget })
    this.memoryBudget = memoryBudget
  }

  /** The factory as the host of its VMs: their memory budget and what they reserve of it. */
  get vmHost(): VMHost {
    if (!this.host) throw new StateError('the factory is not deployed')
    return this.host
  }

  /**
   * Deploys the factory. Deploying again on its dir brings back every provisioned VM not shut down,
   * with the same keys and state (mounted once setRPCServer is called).
   */
  override async deploy(options: { dir: string; title?: string }): Promise<void> {
    await super.deploy(options)
    try {
      const host = VMHost.over(options.dir, this.corestore, { memoryBudget: this.memoryBudget })
      this.host = host
      for (const [id, owner] of await this.liveVMs()) {
        // The code to deploy again is in the VM's own init entry, in the shared store.
        const log = CallLog.fromStore(this.corestore.namespace(hostedNamespace(id)))
        const init = await log.get(0)
        await log.core.close()
        const vm = new VM(init.type === 'init' ? init.code : '', { thread: true })
        // Over the budget now (a smaller one than before), a VM is not brought back: ERR_CAPACITY.
        // It runs the code its log says (the factory may have upgraded it since).
        await host.deploy(vm, { name: id, asLogged: true })
        this.provisioned.set(id, { vm, owner })
      }
    } catch (err) {
      await this.close()
      throw err
    }
  }

  /** Serves provisioned VMs on `server` at `/<id>` (those already provisioned are mounted now). */
  setRPCServer(server: FactoryServer): void {
    this.server = server
    for (const [id, { vm }] of this.provisioned) server.mount(`/${id}`, vm)
    for (const [id, callLogUrl] of this.shutDown) this.retire(id, callLogUrl)
  }

  /** Tells the server that VM `id` was shut down, and that its log is audited through this factory. */
  private retire(id: string, callLogUrl: string): void {
    const url = this.server?.url
    if (!url || !this.server?.retire) return
    this.server.retire(`/${id}`, shutDownNotice(id, callLogUrl, `${url}/`))
  }

  /** Calls the factory script's provisionVM (a logged call, as an anonymous caller). */
  provisionVM(options: { code: string; title?: string }): Promise<unknown> {
    return this.executeCall({ methodName: 'provisionVM', args: [options] })
  }

  /** Calls the factory script's shutdownVM (a logged call, as an anonymous caller). */
  shutdownVM(id: string): Promise<unknown> {
    return this.executeCall({ methodName: 'shutdownVM', args: [id] })
  }

  getVM(id: string): VM | undefined {
    return this.provisioned.get(id)?.vm
  }

  /** close(): the factory's calls finish, then every provisioned VM closes, then its store. */
  protected override async closeDependents(): Promise<void> {
    for (const id of this.provisioned.keys()) await this.server?.unmount(`/${id}`)
    await this.host?.close()
    this.provisioned.clear()
  }

  /** System.vms.provisionVM on the host: deploy, mount, answer. */
  private async provision(options: unknown, caller: string | null): Promise<TaggedValue> {
    const { code, title = '' } = (options ?? {}) as { code?: unknown; title?: unknown }
    if (typeof code !== 'string') throw new FactoryError('TypeError', 'provisionVM({code, title}): code must be a string of JavaScript')
    if (typeof title !== 'string' || title.length > MAX_TITLE_LENGTH) {
      throw new FactoryError('TypeError', `provisionVM({code, title}): title must be a string of at most ${MAX_TITLE_LENGTH} characters`)
    }
    if (this.provisioned.size >= this.maxVMs) {
      throw new FactoryError(
        'CapacityExceeded',
        `this factory already runs ${counted(this.provisioned.size, 'VM')}, its limit (maxVMs); shut one down first`,
      )
    }
    const owned = [...this.provisioned.values()].filter((p) => p.owner === caller).length
    if (owned >= this.maxVMsPerCaller) {
      throw new FactoryError(
        'CapacityExceeded',
        `${caller === null ? 'anonymous callers (who count as one) already run' : `caller ${caller} already runs`} ${counted(owned, 'VM')} of this factory, the most one caller may (maxVMsPerCaller); shut one down first`,
      )
    }
    const id = randomBytes(8).toString('hex')
    // A provisioned VM authenticates callers as its factory does, and runs on a sandbox thread: one
    // tenant's long calls must not hold up the others.
    const vm = new VM(code, { auth: this.auth, thread: true })
    // A script error fails the provisioning call with the script's error, the budget with
    // CapacityExceeded; deploy leaves nothing.
    await this.vmHost.deploy(vm, { name: id, title })
    this.provisioned.set(id, { vm, owner: caller })
    this.server?.mount(`/${id}`, vm)
    const url = this.server?.url
    const info: ProvisionedVMInfo = {
      id,
      rpcUrl: url ? `${url}/${id}` : null,
      callLogUrl: vm.callLog.url,
      filesArchiveUrl: vm.filesArchive.url,
    }
    return info as unknown as TaggedValue
  }

  /**
   * System.vms.upgradeVM on the host: upgrades provisioned VM `id` to `code` (vm.upgrade, its limits
   * kept: the budget reserved for it stays right); answers `{id, seq, from, to, hook, cost}`. A refused
   * upgrade rejects with its UpgradeError (recorded, so the factory's replay answers the same).
   */
  private async upgradeTenant(options: unknown): Promise<TaggedValue> {
    const { id, code } = (options ?? {}) as { id?: unknown; code?: unknown }
    const vm = typeof id === 'string' ? this.provisioned.get(id)?.vm : undefined
    if (!vm) throw new FactoryError('VMNotFound', `this factory runs no VM with id ${JSON.stringify(id)}`)
    if (typeof code !== 'string') throw new FactoryError('TypeError', 'upgradeVM(id, code): code must be a string of JavaScript')
    const { seq, from, to, hook, cost } = await vm.upgrade(code)
    return { id, seq, from, to, hook, cost } as unknown as TaggedValue
  }

  /** System.vms.shutdownVM on the host: unmount and close (the data stays on disk); answers the id. */
  private async shutdown(id: unknown): Promise<string> {
    const vm = typeof id === 'string' ? this.provisioned.get(id)?.vm : undefined
    if (!vm) throw new FactoryError('VMNotFound', `this factory runs no VM with id ${JSON.stringify(id)}`)
    this.provisioned.delete(id as string)
    await this.server?.unmount(`/${id}`)
    this.shutDown.set(id as string, vm.callLog.url)
    this.retire(id as string, vm.callLog.url)
    await vm.close()
    return id as string
  }

  /**
   * The VMs the log says are provisioned and not shut down, with the caller who provisioned each,
   * from the recorded System.vms answers in log order. A call that failed after provisioning still
   * provisioned: its VM stays.
   */
  private async liveVMs(): Promise<Map<string, string | null>> {
    const live = new Map<string, string | null>()
    const logs = new Map<string, string>()
    for await (const entry of this.callLog.entries({ start: 1 })) {
      const call = entry as CallEntry
      for (const record of (call.oracle?.vms ?? []) as unknown as OracleRecord[]) {
        if (record.error) continue
        if (record.op === 'vms.provisionVM') {
          const { id, callLogUrl } = record.result as { id: string; callLogUrl: string }
          live.set(id, call.caller ?? null)
          logs.set(id, callLogUrl)
        }
        if (record.op === 'vms.shutdownVM') {
          live.delete(record.result as string)
          const url = logs.get(record.result as string)
          if (url) this.shutDown.set(record.result as string, url)
        }
      }
    }
    return live
  }
}

/**
 * What a connection to a shut-down VM's path is told (HTTP 410): where its log is still served. The
 * command line reads it to audit the VM through its factory (cli/targets.ts).
 */
export function shutDownNotice(id: string, callLogUrl: string, factoryUrl: string): string {
  return `the VM ${id} was shut down; its call log ${callLogUrl} is served through its factory at ${factoryUrl}`
}

/** The call log and factory URL a shut-down notice names, or null for any other text. */
export function shutDownNoticeOf(text: string): { callLogUrl: string; factoryUrl: string } | null {
  const match = /its call log (hyper:\/\/[0-9a-f]{64}) is served through its factory at (wss?:\/\/\S+)/.exec(text)
  return match ? { callLogUrl: match[1], factoryUrl: match[2] } : null
}
