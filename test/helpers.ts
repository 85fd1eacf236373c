/** Shared test helpers: temp dirs that clean themselves up, VMs deployed into them, stock replication. */

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import type { TestContext } from 'node:test'
import type Corestore from 'corestore'
import WebSocket, { createWebSocketStream } from 'ws'
import {
  CallLog,
  DivergenceError,
  type LogEntry,
  RPCClient,
  RPCServer,
  VM,
  VMFactory,
  type VMFactoryOptions,
  type VMOptions,
} from '../src/index.js'
import { REPLICATION_PROTOCOL } from '../src/net/replication.js'

/** A fresh temp dir, removed when the test ends. */
/** A client nonce, as a client chooses one for each call (16 random bytes, hex). */
export function clientNonce(): string {
  return randomBytes(16).toString('hex')
}

export async function tempDir(t: TestContext, prefix = 'libvms-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  // Retried: a VM closed by a later hook may still be writing a snapshot into it.
  t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 }))
  return dir
}

/**
 * Deploys `code` into a fresh temp dir; when the test ends the VM is closed, then the dir removed
 * (in that order: a closing VM still writes its last snapshot into its dir).
 */
export async function deployVM(t: TestContext, code: string, options: VMOptions & { title?: string } = {}): Promise<VM> {
  const dir = await mkdtemp(join(tmpdir(), 'libvms-test-'))
  const vm = new VM(code, options)
  t.after(async () => {
    await vm.close()
    await rm(dir, { recursive: true, force: true })
  })
  await vm.deploy({ dir: join(dir, 'vm'), title: options.title ?? 'test vm' })
  return vm
}

/** A copy of `vm`'s log (a new log, so a new key) with `change` applied to its entries: a host's lie. */
export async function lyingCopy(t: TestContext, vm: VM, change: (entries: LogEntry[]) => void): Promise<CallLog> {
  const entries = ((await vm.callLog.list()) as LogEntry[]).map((e) => structuredClone(e))
  change(entries)
  const log = await CallLog.create(join(await tempDir(t), 'lie'))
  t.after(() => log.close())
  await log.append(entries)
  return log
}

/** Calls `method` on `vm` and returns the rejection (fails the test if the call succeeds). */
export async function callError(
  vm: VM,
  methodName: string,
  args: unknown[] = [],
  userId?: string,
): Promise<Error & { code?: string; seq?: number }> {
  try {
    const value = await vm.executeCall({ methodName, args, userId })
    throw new Error(`expected ${methodName} to fail, it returned ${JSON.stringify(value)}`)
  } catch (err) {
    return err as Error & { code?: string; seq?: number }
  }
}

/** An assert.rejects check: a DivergenceError naming `seq` and `field`. */
export function expectDivergence(seq: number, field: string) {
  return (err: unknown) => {
    assert.ok(err instanceof DivergenceError, `expected a DivergenceError, got ${String(err)}`)
    assert.equal(err.seq, seq, err.message)
    assert.equal(err.field, field, err.message)
    return true
  }
}

/**
 * A VMFactory running `code`, deployed in `dir` (default: a temp dir; a factory's dir deploys it again)
 * and mounted at `/` of an RPC server on 127.0.0.1.
 */
export async function serveFactory(t: TestContext, code: string, options: VMFactoryOptions & { dir?: string } = {}) {
  const { dir: given, ...factoryOptions } = options
  const dir = given ?? join(await tempDir(t), 'factory')
  const factory = new VMFactory(code, factoryOptions)
  await factory.deploy({ dir, title: 'Bobs VM Host' })
  const server = new RPCServer()
  server.mount('/', factory)
  factory.setRPCServer(server)
  await server.listen(0)
  t.after(async () => {
    await server.close()
    await factory.close()
  })
  const connect = async (user?: string, url = `${server.url}/`) => {
    const client = new RPCClient()
    await client.connect(url, user ? { user } : {})
    t.after(() => client.close())
    return client
  }
  return { dir, factory, server, connect }
}

/**
 * A stock Corestore replicating over a host's WebSocket, as any Holepunch tool can: a socket with the
 * replication subprotocol, once open, piped both ways with `store.replicate(initiator)`. Written with
 * ws alone, not with LibVMS's own dialReplication/pipeReplication: the tests that use it show that a
 * client with none of LibVMS's code replicates from a host.
 */
export async function replicateOverWebSocket(url: string, store: Corestore, initiator: boolean): Promise<WebSocket> {
  const ws = new WebSocket(url, REPLICATION_PROTOCOL)
  await new Promise((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
  })
  const socket = createWebSocketStream(ws)
  const stream = store.replicate(initiator) as unknown as Duplex
  socket.on('error', () => stream.destroy())
  stream.on('error', () => socket.destroy())
  socket.pipe(stream).pipe(socket)
  return ws
}
