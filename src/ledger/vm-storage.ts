/**
 * A VM's data dir: a marker file saying what lives there, and one Corestore holding the call log
 * (core 'call-log'), the files archive (namespace 'files') and the published snapshots (namespace
 * 'snapshots'). All are written through the same store, so their writes reach disk in the order they
 * were made. Snapshots are also kept as files in `<dir>/snapshots/` (snapshot-store.ts).
 *
 *   <dir>/libvms.json   {"format": "libvms", "schema": 1, "role": "vm" | "replay" | "log"}
 *   <dir>/corestore/    the Corestore
 */
import { mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import Corestore from 'corestore'
import Hyperdrive from 'hyperdrive'
import { DirectoryError } from '../errors.js'
import { CallLog } from './call-log.js'
import { DatArchive } from './files-archive.js'

export type DirRole = 'vm' | 'replay' | 'log'

const MARKER_FILE = 'libvms.json'
const STORE_DIR = 'corestore'

interface Marker {
  format: 'libvms'
  schema: number
  role: DirRole
}

type DirState = { kind: 'absent' } | { kind: 'empty' } | { kind: 'libvms'; role: DirRole } | { kind: 'foreign' }

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
  try {
    const marker = JSON.parse(await readFile(join(dir, MARKER_FILE), 'utf8')) as Partial<Marker>
    if (marker.format === 'libvms' && (marker.role === 'vm' || marker.role === 'replay' || marker.role === 'log')) {
      return { kind: 'libvms', role: marker.role }
    }
  } catch {
    // fall through: an unreadable marker is not ours
  }
  return { kind: 'foreign' }
}

async function claimDir(dir: string, role: DirRole): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM' || code === 'ENOTDIR') {
      throw new DirectoryError('ERR_DIR_NOT_WRITABLE', `cannot make the data dir ${dir} (${code}): give a dir you can write`)
    }
    throw err
  }
  const marker: Marker = { format: 'libvms', schema: 1, role }
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
 * The dir's store; ERR_DIR_IN_USE if another process has it open (RocksDB's lock),
 * ERR_TOO_MANY_OPEN_FILES if this process has no file descriptor left to open it with.
 */
async function openStore(dir: string): Promise<Corestore> {
  const store = new Corestore(join(dir, STORE_DIR))
  try {
    await store.ready()
  } catch (err) {
    await store.close().catch(() => {})
    const { message, code } = err as NodeJS.ErrnoException
    if (/lock/i.test(message)) {
      throw new DirectoryError('ERR_DIR_IN_USE', `${dir} is in use by a running VM: stop it first, or read the VM through its URL`)
    }
    if (code === 'EMFILE' || /too many open files/i.test(message)) {
      throw new DirectoryError(
        'ERR_TOO_MANY_OPEN_FILES',
        `cannot open ${dir}: this process has no file descriptor left (${message}). Each open VM holds about 8; raise the limit (ulimit -n, LimitNOFILE for a service) or close VMs this process no longer serves`,
      )
    }
    throw err
  }
  return store
}

/** Opens (or creates) the store of a standalone call log dir, for CallLog.create and CallLog.open. */
export async function openLogStorage(dir: string, mode: 'create' | 'open'): Promise<Corestore> {
  const state = await inspectDir(dir)
  if (mode === 'create') {
    if (state.kind === 'libvms' || state.kind === 'foreign') {
      throw new DirectoryError('ERR_DIR_NOT_EMPTY', `${dir} is not empty; CallLog.create needs an empty or new directory`)
    }
    await claimDir(dir, 'log')
  } else if (state.kind !== 'libvms') {
    throw new DirectoryError('ERR_NO_CALL_LOG', `${dir} holds no LibVMS call log`)
  }
  return openStore(dir)
}

export class VMStorage {
  readonly dir: string
  readonly store: Corestore
  readonly callLog: CallLog
  readonly filesArchive: DatArchive
  /** True if the dir had no VM in it yet. */
  readonly fresh: boolean
  /** True if the dir did not exist before (so removing what was made removes the dir too). */
  createdDir = false
  /** True if `store` is a namespace of a store someone else owns (a factory's): it holds no files of ours. */
  private readonly shared: boolean
  private snapshotsDrive: DatArchive | null = null

  private constructor(dir: string, store: Corestore, fresh: boolean, shared = false) {
    this.dir = dir
    this.store = store
    this.fresh = fresh
    this.shared = shared
    this.callLog = CallLog.fromStore(store)
    this.filesArchive = new DatArchive(new Hyperdrive(store.namespace('files')))
  }

  /**
   * A VM kept in a namespace of a shared Corestore (a factory's, for the VMs it provisions): one
   * store for many VMs. `dir` holds only the marker; the cores live in the shared store.
   */
  static async openShared(dir: string, store: Corestore, namespace: string): Promise<VMStorage> {
    const state = await inspectDir(dir)
    if (state.kind === 'foreign' || (state.kind === 'libvms' && state.role !== 'vm')) throw foreignDirError(dir)
    if (state.kind === 'absent' || state.kind === 'empty') await claimDir(dir, 'vm')
    const session = store.namespace(namespace)
    const probe = CallLog.fromStore(session)
    await probe.ready()
    const fresh = probe.length === 0
    await probe.core.close()
    const storage = new VMStorage(dir, session, fresh, true)
    await storage.ready()
    storage.createdDir = state.kind === 'absent'
    return storage
  }

  /**
   * Opens a VM's dir. An absent or empty dir becomes a new VM dir. A dir whose first deploy never
   * logged its init entry (it crashed before; nothing was acknowledged) is wiped and starts again.
   */
  static async open(dir: string, role: 'vm' | 'replay'): Promise<VMStorage> {
    const state = await inspectDir(dir)
    if (state.kind === 'foreign') throw foreignDirError(dir)
    if (state.kind === 'libvms' && state.role !== role) {
      throw new DirectoryError(
        'ERR_DIR_ROLE',
        `${dir} holds a LibVMS ${state.role === 'replay' ? "replay (an auditor's copy)" : state.role}, not a ${role === 'vm' ? 'deployable VM' : 'replay'}`,
      )
    }
    if (state.kind === 'absent' || state.kind === 'empty') await claimDir(dir, role)
    let storage = new VMStorage(dir, await openStore(dir), state.kind !== 'libvms')
    await storage.ready()
    if (!storage.fresh && storage.callLog.length === 0) {
      await storage.close()
      await rm(join(dir, STORE_DIR), { recursive: true, force: true })
      storage = new VMStorage(dir, await openStore(dir), true)
      await storage.ready()
    }
    storage.createdDir = state.kind === 'absent'
    return storage
  }

  /**
   * Opens an existing VM's dir to read it (an auditor or the command line looking at a stopped VM):
   * changes nothing in it. Fails with ERR_NO_CALL_LOG if `dir` holds no VM, ERR_DIR_IN_USE if a
   * running VM has it open.
   */
  static async openExisting(dir: string): Promise<VMStorage> {
    const state = await inspectDir(dir)
    if (state.kind !== 'libvms' || state.role !== 'vm') {
      throw new DirectoryError('ERR_NO_CALL_LOG', `${dir} holds no LibVMS VM (a VM's data dir has a ${MARKER_FILE} file)`)
    }
    const storage = new VMStorage(dir, await openStore(dir), false)
    await storage.ready()
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
  }

  /** Removes what a failed first deploy created, and nothing else; call after close(). */
  async discard(): Promise<void> {
    if (!this.shared) await rm(join(this.dir, STORE_DIR), { recursive: true, force: true })
    await rm(join(this.dir, MARKER_FILE), { force: true })
    if (this.createdDir) await rmdir(this.dir).catch(() => {})
  }
}
