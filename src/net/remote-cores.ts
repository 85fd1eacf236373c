/**
 * Local copies of cores that live on other hosts: the auditor's side of replication. A copy is a
 * Corestore (in the given dir, or a temp dir removed on close) connected to every host known to
 * serve the key. Auditor copies refuse forks: a host that truncates and rewrites a log it already
 * served is reported, not silently followed.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Corestore from 'corestore'
import type Hypercore from 'hypercore'
import Hyperdrive from 'hyperdrive'
import type WebSocket from 'ws'
import { assertNoFork, downloadAll, FetchError } from '../ledger/download.js'
import { keyToUrl, toHex } from '../ledger/keys.js'
import type { LogEntry } from '../ledger/log-entry.js'
import { type RemoteHandle, type RemoteOptions, type RemoteSource, setRemoteSource } from '../ledger/remote-source.js'
import { knownHosts } from './known-hosts.js'
import { dialReplication } from './replication.js'

const DEFAULT_TIMEOUT_MS = 15_000

interface Copy {
  store: Corestore
  close(): Promise<void>
}

async function openCopy(key: Buffer, options: RemoteOptions): Promise<Copy> {
  const url = keyToUrl(key)
  const hosts = options.peers ?? knownHosts(toHex(key))
  if (hosts.length === 0) {
    throw new FetchError(
      'ERR_NO_HOST',
      `no host is known for ${url}: connect an RPCClient to the VM first, or pass {peers: ['ws://host:port/path']}`,
    )
  }
  const ownedDir = options.dir ? null : await mkdtemp(join(tmpdir(), 'libvms-copy-'))
  const store = new Corestore(join(options.dir ?? (ownedDir as string), 'corestore'))
  await store.ready()
  const sockets: WebSocket[] = []
  const close = async () => {
    for (const ws of sockets) ws.terminate()
    await store.close()
    if (ownedDir) await rm(ownedDir, { recursive: true, force: true })
  }
  const doneFinding = store.findingPeers()
  const dialed = await Promise.allSettled(hosts.map((host) => dialReplication(host, store)))
  doneFinding()
  const failures: string[] = []
  for (const [i, result] of dialed.entries()) {
    if (result.status === 'fulfilled') sockets.push(result.value.ws)
    else failures.push(`${hosts[i]}: ${(result.reason as Error).message}`)
  }
  if (sockets.length === 0) {
    await close()
    throw new FetchError('ERR_HOST_UNREACHABLE', `could not reach a host for ${url} (${failures.join('; ')})`)
  }
  return { store, close }
}

/** Waits for `core` to learn its length from a host, or fails naming the URL after `timeoutMs`. */
async function learnLength(core: Hypercore, url: string, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FetchError('ERR_FETCH_TIMEOUT', `no host sent ${url} within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    await Promise.race([core.update({ wait: true }), timeout])
  } finally {
    clearTimeout(timer)
  }
}

const remoteCores: RemoteSource = {
  async fetchLog(key: Buffer, options: RemoteOptions): Promise<RemoteHandle<Hypercore<LogEntry>>> {
    const url = keyToUrl(key)
    const timeoutMs = options.timeout ?? DEFAULT_TIMEOUT_MS
    const copy = await openCopy(key, options)
    try {
      const core = copy.store.get<LogEntry>({ key, valueEncoding: 'json', allowFork: false })
      await core.ready()
      await learnLength(core, url, timeoutMs)
      assertNoFork(core, url)
      if (core.length === 0) throw new FetchError('ERR_FETCH_TIMEOUT', `no host sent ${url}: the hosts do not have it`)
      await downloadAll(core, url, timeoutMs)
      return { value: core, store: copy.store, close: copy.close }
    } catch (err) {
      await copy.close()
      throw err
    }
  },

  async openArchive(key: Buffer, options: RemoteOptions): Promise<RemoteHandle<Hyperdrive>> {
    const url = keyToUrl(key)
    const copy = await openCopy(key, options)
    try {
      const db = copy.store.get({ key, allowFork: false })
      await db.ready()
      await learnLength(db, url, options.timeout ?? DEFAULT_TIMEOUT_MS)
      assertNoFork(db, url)
      // Open the blobs core first too, so it also refuses forks (Hyperdrive opens it by key later).
      const blobsKey = db.manifest ? Hyperdrive.getContentKey(db, key) : null
      if (blobsKey) await copy.store.get({ key: blobsKey, allowFork: false }).ready()
      const drive = new Hyperdrive(copy.store, key)
      await drive.ready()
      return { value: drive, store: copy.store, close: copy.close }
    } catch (err) {
      await copy.close()
      throw err
    }
  },
}

setRemoteSource(remoteCores)
