/**
 * A VM's data dir: a marker file saying what lives there, and the Corestore that holds the call log
 * (core 'call-log'), the files archive (namespace 'files') and the published snapshots (namespace
 * 'snapshots'). All are written through the same store, so their writes reach disk in the order they
 * were made. Snapshots are also kept as files in `<dir>/snapshots/` (snapshot-store.ts).
 *
 * A VM has its store to itself, in its dir, or lives in a namespace of a host's store (a VMHost's or
 * a factory's: one RocksDB for many VMs, so a process can hold a thousand of them). Then its marker
 * says where that store is, relative to the dir, so the dir can still be opened on its own — reopened,
 * verified, logged — by a process that does not hold the host:
 *
 *   <dir>/libvms.json   {"format": "libvms", "schema": 1, "role": "vm" | "replay" | "log"}
 *   <dir>/corestore/    the Corestore
 *
 *   <host>/libvms.json            {"format": "libvms", "schema": 1, "role": "host"} (or a factory's "vm")
 *   <host>/corestore/             the store every hosted VM lives in
 *   <host>/vms/<name>/libvms.json {"format": "libvms", "schema": 2, "role": "vm", "store": "../..", "namespace": "vm-<name>"}
 *
 * A factory's VM dir made before markers said so (schema 1, no `corestore/` of its own, in the
 * `vms/` folder of a VM dir) is read as hosted by the VM dir two levels up, in namespace `vm-<name>`.
 */
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { basename, join, relative, resolve } from 'node:path'
import Corestore from 'corestore'
import Hyperdrive from 'hyperdrive'
import { DirectoryError } from '../errors.js'
import { CallLog } from './call-log.js'
import { DatArchive } from './files-archive.js'

export type DirRole = 'vm' | 'replay' | 'log' | 'host'

const MARKER_FILE = 'libvms.json'
const STORE_DIR = 'corestore'

/** Where a hosted VM's cores live: the dir holding the host's store (relative to the VM's dir) and its namespace. */
export interface HostedIn {
  store: string
  namespace: string
}

interface Marker {
  format: 'libvms'
  schema: number
  role: DirRole
  store?: string
  namespace?: string
}

type DirState = { kind: 'absent' } | { kind: 'empty' } | { kind: 'libvms'; role: DirRole; hostedIn: HostedIn | null } | { kind: 'foreign' }

const ROLES: readonly DirRole[] = ['vm', 'replay', 'log', 'host']

async function inspectDir(dir: string): Promise<DirState> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' }
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return { kind: 'foreign' }
    throw err
  }
  if (names.length === 0) return { kind: 'empty' }
  if (!names.includes(MARKER_FILE)) return { kind: 'foreign' }
  let marker: Partial<Marker>
  try {
    marker = JSON.parse(await readFile(join(dir, MARKER_FILE), 'utf8')) as Partial<Marker>
  } catch {
    return { kind: 'foreign' } // an unreadable marker is not ours
  }
  if (marker.format !== 'libvms' || !ROLES.includes(marker.role as DirRole)) return { kind: 'foreign' }
  const role = marker.role as DirRole
  if (typeof marker.store === 'string' && typeof marker.namespace === 'string') {
    return { kind: 'libvms', role, hostedIn: { store: marker.store, namespace: marker.namespace } }
  }
  if (role === 'vm' && !names.includes(STORE_DIR) && (await isLegacyFactoryVM(dir))) {
    return { kind: 'libvms', role, hostedIn: { store: '../..', namespace: `vm-${basename(dir)}` } }
  }
  return { kind: 'libvms', role, hostedIn: null }
}

/** A factory's VM dir from before hosted markers: `<factory dir>/vms/<id>`, the factory's store beside `vms/`. */
async function isLegacyFactoryVM(dir: string): Promise<boolean> {
  const parent = resolve(dir, '..')
  if (basename(parent) !== 'vms') return false
  const found = await stat(join(parent, '..', STORE_DIR)).catch(() => null)
  return found?.isDirectory() ?? false
}

async function claimDir(dir: string, role: DirRole, hostedIn: HostedIn | null = null): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM' || code === 'ENOTDIR') {
      throw new DirectoryError('ERR_DIR_NOT_WRITABLE', `cannot make the data dir ${dir} (${code}): give a dir you can write`)
    }
    throw err
  }
  const marker: Marker = hostedIn ? { format: 'libvms', schema: 2, role, ...hostedIn } : { format: 'libvms', schema: 1, role }
  const tmp = join(dir, `${MARKER_FILE}.tmp`)
  await writeFile(tmp, `${JSON.stringify(marker)}\n`)
  await rename(tmp, join(dir, MARKER_FILE))
}

function foreignDirError(dir: string): DirectoryError {
  return new DirectoryError(
    'ERR_DIR_NOT_LIBVMS',
    `${dir} holds files that are not LibVMS data; give deploy an empty or new directory, or the dir of an existing VM`,
  )
}

/**
 * The store kept in `dir`; ERR_DIR_IN_USE if another process (or a host in this one) has it open
 * (RocksDB's lock), ERR_TOO_MANY_OPEN_FILES if this process has no file descriptor left to open it with.
 */
export async function openStore(dir: string, usedBy = dir): Promise<Corestore> {
  const store = new Corestore(join(dir, STORE_DIR))
  try {
    await store.ready()
  } catch (err) {
    await store.close().catch(() => {})
    const { message, code } = err as NodeJS.ErrnoException
    if (/lock/i.test(message)) {
      throw new DirectoryError(
        'ERR_DIR_IN_USE',
        `${usedBy} is in use by a running VM or VM host: stop it first, or read the VM through its URL`,
      )
    }
    if (code === 'EMFILE' || /too many open files/i.test(message)) {
      throw new DirectoryError(
        'ERR_TOO_MANY_OPEN_FILES',
        `cannot open ${dir}: this process has no file descriptor left (${message}). Each VM with a store of its own holds about 8 (VMs in a VMHost share one); raise the limit (ulimit -n, LimitNOFILE for a service), deploy the VMs into a VMHost, or close VMs this process no longer serves`,
      )
    }
    throw err
  }
  return store
}

/** The store a dir's cores are in: its own, or the namespace of its host's (whose root store closes with it). */
async function openDirStore(dir: string, hostedIn: HostedIn | null): Promise<{ store: Corestore; root: Corestore | null }> {
  if (!hostedIn) return { store: await openStore(dir), root: null }
  const hostDir = resolve(dir, hostedIn.store)
  const found = await stat(join(hostDir, STORE_DIR)).catch(() => null)
  if (!found?.isDirectory()) {
    throw new DirectoryError(
      'ERR_NO_CALL_LOG',
      `${dir} is a VM kept in the store of its host at ${hostDir}, which is not there: a hosted VM's dir moves with its host's dir`,
    )
  }
  const root = await openStore(hostDir, `${dir} (kept in the store of ${hostDir})`)
  return { store: root.namespace(hostedIn.namespace), root }
}

/**
 * Opens (or creates) the store of a standalone call log dir, for CallLog.create and CallLog.open: the
 * store the log's core is in, and the store to close with the log (a hosted VM's host store).
 */
export async function openLogStorage(dir: string, mode: 'create' | 'open'): Promise<{ store: Corestore; root: Corestore }> {
  const state = await inspectDir(dir)
  if (mode === 'create') {
    if (state.kind === 'libvms' || state.kind === 'foreign') {
      throw new DirectoryError('ERR_DIR_NOT_EMPTY', `${dir} is not empty; CallLog.create needs an empty or new directory`)
    }
    await claimDir(dir, 'log')
  } else if (state.kind !== 'libvms' || state.role === 'host') {
    throw new DirectoryError('ERR_NO_CALL_LOG', `${dir} holds no LibVMS call log`)
  }
  const { store, root } = await openDirStore(dir, state.kind === 'libvms' ? state.hostedIn : null)
  return { store, root: root ?? store }
}

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

function roleName(role: DirRole): string {
  if (role === 'replay') return "replay (an auditor's copy)"
  if (role === 'host') return 'VM host (its VMs are in its vms/ folder)'
  return role
}

/** Makes a dir a VM host's: its marker says so. */
export async function claimHostDir(dir: string): Promise<void> {
  const state = await inspectDir(dir)
  if (state.kind === 'libvms' && state.role === 'host') return
  if (state.kind !== 'absent' && state.kind !== 'empty') {
    throw new DirectoryError(
      'ERR_DIR_NOT_EMPTY',
      `${dir} is not a VM host's dir, nor empty: give VMHost.open an empty or new directory, or a host's dir`,
    )
  }
  await claimDir(dir, 'host')
}
