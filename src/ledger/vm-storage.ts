/**
 * VMStorage: the call log, files archive and published snapshots of one VM (or replay) dir, opened
 * together from the dir's store (data-dir.ts says what a dir holds and where its store is). All are
 * written through the same store, so their writes reach disk in the order they were made. Snapshots
 * are also kept as files in `<dir>/snapshots/` (snapshot-store.ts).
 */
import { rm, rmdir } from 'node:fs/promises'
import { join, relative } from 'node:path'
import type Corestore from 'corestore'
import Hyperdrive from 'hyperdrive'
import { DirectoryError } from '../errors.js'
import { CallLog } from './call-log.js'
import { claimDir, foreignDirError, type HostedIn, inspectDir, MARKER_FILE, openDirStore, roleName, STORE_DIR } from './data-dir.js'
import { DatArchive } from './files-archive.js'

export class VMStorage {
  readonly dir: string
  readonly store: Corestore
  readonly callLog: CallLog
  readonly filesArchive: DatArchive
  /** True if the dir had no VM in it yet (for a hosted dir: its log is empty). */
  fresh: boolean
  /** True if the dir did not exist before (so removing what was made removes the dir too). */
  createdDir = false
  /** Where the cores are when they are not in the dir's own store (a host's namespace). */
  readonly hostedIn: HostedIn | null
  /** The store this storage opened and closes with it: the dir's own, or its host's when opened on its own. */
  private readonly root: Corestore | null
  private snapshotsDrive: DatArchive | null = null

  private constructor(dir: string, store: Corestore, fresh: boolean, hostedIn: HostedIn | null, root: Corestore | null) {
    this.dir = dir
    this.store = store
    this.fresh = fresh
    this.hostedIn = hostedIn
    this.root = root
    this.callLog = CallLog.fromStore(store)
    this.filesArchive = new DatArchive(new Hyperdrive(store.namespace('files')))
  }

  /**
   * A VM kept in a namespace of a host's store (a VMHost's, or a factory's for the VMs it
   * provisions), which the host keeps open: one store for many VMs. `dir` holds the marker (saying
   * where the store is, `hostDir` relative to it) and the VM's snapshot files; the cores live in the store.
   */
  static async openHosted(dir: string, hostStore: Corestore, hostDir: string, namespace: string): Promise<VMStorage> {
    const state = await inspectDir(dir)
    if (state.kind === 'foreign' || (state.kind === 'libvms' && state.role !== 'vm')) throw foreignDirError(dir)
    if (state.kind === 'libvms' && state.hostedIn === null) {
      throw new DirectoryError('ERR_DIR_ROLE', `${dir} holds a VM with a store of its own, not one kept by a host: deploy it on its own`)
    }
    const hostedIn = { store: relative(dir, hostDir) || '.', namespace }
    const claimed = state.kind === 'absent' || state.kind === 'empty' ? claimDir(dir, 'vm', hostedIn) : Promise.resolve()
    // The marker is written while the cores open: a crash between the two leaves an empty log,
    // which the next deploy takes as a fresh dir.
    const storage = new VMStorage(dir, hostStore.namespace(namespace), false, hostedIn, null)
    const opened = storage.ready()
    await Promise.all([claimed, opened.catch(() => {})])
    await opened.catch(async (err) => {
      await storage.close().catch(() => {})
      throw err
    })
    storage.fresh = storage.callLog.length === 0
    storage.createdDir = state.kind === 'absent'
    return storage
  }

  /**
   * Opens a VM's dir. An absent or empty dir becomes a new VM dir. A dir whose first deploy never
   * logged its init entry (it crashed before; nothing was acknowledged) is wiped and starts again.
   * A hosted VM's dir is opened in its host's store, which this storage then holds (and closes).
   */
  static async open(dir: string, role: 'vm' | 'replay'): Promise<VMStorage> {
    const state = await inspectDir(dir)
    if (state.kind === 'foreign') throw foreignDirError(dir)
    if (state.kind === 'libvms' && state.role !== role) {
      throw new DirectoryError(
        'ERR_DIR_ROLE',
        `${dir} holds a LibVMS ${roleName(state.role)}, not a ${role === 'vm' ? 'deployable VM' : 'replay'}`,
      )
    }
    if (state.kind === 'libvms' && state.hostedIn) {
      const storage = await VMStorage.openDir(dir, state.hostedIn, false)
      storage.fresh = storage.callLog.length === 0
      return storage
    }
    if (state.kind === 'absent' || state.kind === 'empty') await claimDir(dir, role)
    let storage = await VMStorage.openDir(dir, null, state.kind !== 'libvms')
    if (!storage.fresh && storage.callLog.length === 0) {
      await storage.close()
      await rm(join(dir, STORE_DIR), { recursive: true, force: true })
      storage = await VMStorage.openDir(dir, null, true)
    }
    storage.createdDir = state.kind === 'absent'
    return storage
  }

  /**
   * Opens an existing VM's dir to read it (an auditor or the command line looking at a stopped VM):
   * changes nothing in it. Fails with ERR_NO_CALL_LOG if `dir` holds no VM, ERR_DIR_IN_USE if a
   * running VM (or its host) has it open.
   */
  static async openExisting(dir: string): Promise<VMStorage> {
    const state = await inspectDir(dir)
    if (state.kind !== 'libvms' || state.role !== 'vm') {
      const what = state.kind === 'libvms' && state.role === 'host' ? ' (it is a VM host: give the dir of one of its VMs, in vms/)' : ''
      throw new DirectoryError('ERR_NO_CALL_LOG', `${dir} holds no LibVMS VM${what} (a VM's data dir has a ${MARKER_FILE} file)`)
    }
    return VMStorage.openDir(dir, state.hostedIn, false)
  }

  private static async openDir(dir: string, hostedIn: HostedIn | null, fresh: boolean): Promise<VMStorage> {
    const { store, root } = await openDirStore(dir, hostedIn)
    const storage = new VMStorage(dir, store, fresh, hostedIn, root ?? store)
    try {
      await storage.ready()
    } catch (err) {
      await storage.close().catch(() => {})
      throw err
    }
    return storage
  }

  private async ready(): Promise<void> {
    await Promise.all([this.callLog.ready(), this.filesArchive.ready()])
  }

  /**
   * The Hyperdrive the VM publishes its snapshots in (namespace 'snapshots' of its store, opened on
   * first use): replicated with the log and archive, for auditors to start audit segments from.
   */
  async snapshots(): Promise<DatArchive> {
    this.snapshotsDrive ??= new DatArchive(new Hyperdrive(this.store.namespace('snapshots')))
    await this.snapshotsDrive.ready()
    return this.snapshotsDrive
  }

  async close(): Promise<void> {
    await this.snapshotsDrive?.close()
    await this.filesArchive.close()
    await this.callLog.close()
    await this.store.close()
    if (this.root !== this.store) await this.root?.close()
  }

  /** Removes what a failed first deploy created, and nothing else; call after close(). */
  async discard(): Promise<void> {
    if (!this.hostedIn) await rm(join(this.dir, STORE_DIR), { recursive: true, force: true })
    await rm(join(this.dir, MARKER_FILE), { force: true })
    if (this.createdDir) await rmdir(this.dir).catch(() => {})
  }
}
