/**
 * A data dir (a VM's, a replay's, a standalone call log's, a VM host's): a marker file saying what
 * lives there, and the Corestore that holds the call log (core 'call-log'), the files archive
 * (namespace 'files') and the published snapshots (namespace 'snapshots'). This file reads and claims
 * dirs and opens their stores; vm-storage.ts opens a VM's cores in one, call-log.ts a standalone log's.
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
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import Corestore from 'corestore'
import { DirectoryError } from '../errors.js'

export type DirRole = 'vm' | 'replay' | 'log' | 'host'

export const MARKER_FILE = 'libvms.json'
export const STORE_DIR = 'corestore'

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

export type DirState =
  | { kind: 'absent' }
  | { kind: 'empty' }
  | { kind: 'libvms'; role: DirRole; hostedIn: HostedIn | null }
  | { kind: 'foreign' }

const ROLES: readonly DirRole[] = ['vm', 'replay', 'log', 'host']

export async function inspectDir(dir: string): Promise<DirState> {
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

export async function claimDir(dir: string, role: DirRole, hostedIn: HostedIn | null = null): Promise<void> {
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

export function foreignDirError(dir: string): DirectoryError {
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
export async function openDirStore(dir: string, hostedIn: HostedIn | null): Promise<{ store: Corestore; root: Corestore | null }> {
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

/** What a dir of `role` is, in words. */
export function roleName(role: DirRole): string {
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
