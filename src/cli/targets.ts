/**
 * What `log`, `verify` and `info` look at, named on the command line as an RPC URL (ws://…, the
 * host serving the VM), a hyper:// URL (a call log, fetched from hosts known in this process), or the
 * data dir of a stopped VM on this machine.
 */

import { stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { RPCClient } from '../client/rpc-client.js'
import { UsageError } from '../errors.js'
import { CallLog } from '../ledger/call-log.js'
import { DatArchive } from '../ledger/files-archive.js'
import type { SwarmOptions } from '../ledger/remote-source.js'
import { PublishedSnapshots, SnapshotStore } from '../ledger/snapshot-store.js'
import { VMStorage } from '../ledger/vm-storage.js'
import type { BackendInfo } from '../rpc/protocol.js'
import { shutDownNoticeOf } from '../vm/vm-factory.js'

export interface OpenedTarget {
  /** What was opened, for messages: the URL or the dir. */
  label: string
  callLog: CallLog
  /** Null when not asked for. */
  filesArchive: DatArchive | null
  /** The host's handshake, for an RPC URL. */
  info: BackendInfo | null
  /** The VM's snapshots: its dir's, or the drive its log names, fetched from its hosts (when asked for). */
  snapshots: SnapshotStore | PublishedSnapshots | null
  close(): Promise<void>
}

export interface TargetOptions {
  /** Also open (and, from a host, download) the files archive. */
  archive: boolean
  /** Also open the VM's published snapshots (fetched as they are read). */
  snapshots?: boolean
  /** Where to keep fetched copies (default: temp dirs removed on close). */
  dir?: string
  /** How long a host may take to answer, in ms. */
  timeout?: number
  /** Called with a status line while fetching. */
  onStatus?: (text: string) => void
  /** Hosts to fetch from (RPC URLs), besides the target's own (`--peer`). */
  peers?: string[]
  /** Called with a line worth telling the user (e.g. that the target was shut down and is reached another way). */
  onNote?: (text: string) => void
  /** Also look the cores up on the DHT. */
  swarm?: SwarmOptions
  /** For an RPC URL: called with its handshake before anything is fetched (it may refuse the target by throwing). */
  onHandshake?: (info: BackendInfo) => Promise<void>
}

export type TargetKind = 'rpc' | 'hyper' | 'dir'

export function targetKind(target: string): TargetKind {
  if (/^wss?:\/\//i.test(target)) return 'rpc'
  if (/^(hyper|dat):\/\//i.test(target) || /^[0-9a-f]{64}$/i.test(target)) return 'hyper'
  return 'dir'
}

/** The handshake at an RPC URL or, for a factory's VM that was shut down (HTTP 410), where its log is served. */
async function handshakeOrShutDown(
  url: string,
  timeout?: number,
): Promise<BackendInfo | { shutDown: { callLogUrl: string; factoryUrl: string } }> {
  try {
    return await handshake(url, timeout)
  } catch (error) {
    const notice = (error as { code?: string }).code === 'ERR_CONNECT' ? shutDownNoticeOf((error as Error).message) : null
    if (!notice) throw error
    return { shutDown: notice }
  }
}

/** The handshake of the VM at an RPC URL (the client is closed again). */
export async function handshake(url: string, timeout?: number): Promise<BackendInfo> {
  const client = new RPCClient()
  await client.connect(url, { timeout })
  const info = client.backendInfo
  await client.close()
  return info
}

export async function openTarget(target: string, options: TargetOptions): Promise<OpenedTarget> {
  const kind = targetKind(target)
  if (kind === 'dir') return openDir(target, options)
  const copyDir = (name: string) => (options.dir ? join(resolve(options.dir), name) : undefined)
  let info: BackendInfo | null = null
  let peers: string[] | undefined
  let callLogUrl = target
  if (kind === 'hyper') peers = options.peers
  if (kind === 'rpc') {
    options.onStatus?.(`connecting to ${target}`)
    const answered = await handshakeOrShutDown(target, options.timeout)
    if ('shutDown' in answered) {
      // A factory's VM that was shut down: its cores are still served through the factory.
      const { callLogUrl: log, factoryUrl } = answered.shutDown
      options.onNote?.(`${target} was shut down by its factory: auditing its call log ${log} through ${factoryUrl}`)
      peers = [factoryUrl, ...(options.peers ?? [])]
      callLogUrl = log
    } else {
      info = answered
      await options.onHandshake?.(info)
      peers = [target, ...(options.peers ?? [])]
      callLogUrl = info.callLogUrl
    }
  }
  options.onStatus?.(`fetching the call log ${callLogUrl}`)
  const remote = { peers, timeout: options.timeout, swarm: options.swarm }
  const callLog = await CallLog.fetch(callLogUrl, { ...remote, dir: copyDir('call-log') })
  let filesArchive: DatArchive | null = null
  let snapshots: DatArchive | null = null
  try {
    if (options.snapshots) {
      const init = await callLog.get(0)
      if (init.type === 'init' && init.snapshotsKey)
        snapshots = new DatArchive(`hyper://${init.snapshotsKey}`, { ...remote, dir: copyDir('snapshots') })
    }
    if (options.archive) {
      const init = await callLog.get(0)
      const archiveUrl = info?.filesArchiveUrl ?? (init.type === 'init' ? `hyper://${init.filesArchiveKey}` : '')
      options.onStatus?.(`fetching the files archive ${archiveUrl}`)
      filesArchive = new DatArchive(archiveUrl, { ...remote, dir: copyDir('files') })
      await filesArchive.download('/')
    }
  } catch (error) {
    await filesArchive?.close().catch(() => {})
    await snapshots?.close().catch(() => {})
    await callLog.close()
    throw error
  }
  return {
    label: target,
    callLog,
    filesArchive,
    info,
    snapshots: snapshots && new PublishedSnapshots(snapshots),
    async close() {
      await snapshots?.close()
      await filesArchive?.close()
      await callLog.close()
    },
  }
}

async function openDir(target: string, options: TargetOptions): Promise<OpenedTarget> {
  const dir = resolve(target)
  const found = await stat(dir).catch(() => null)
  if (!found?.isDirectory()) {
    throw new UsageError(`${target} is not a ws:// URL, a hyper:// URL or a VM's data dir`)
  }
  const storage = await VMStorage.openExisting(dir)
  return {
    label: dir,
    callLog: storage.callLog,
    filesArchive: options.archive ? storage.filesArchive : null,
    info: null,
    snapshots: new SnapshotStore(dir),
    close: () => storage.close(),
  }
}
