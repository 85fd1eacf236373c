import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import {
  type CallEntry,
  CallLog,
  DatArchive,
  type LogEntry,
  RPCClient,
  type RPCError,
  RPCServer,
  Verifier,
  VM,
  VMFactory,
  type VMFactoryOptions,
} from '../src/index.js'
import { expectDivergence, serveFactory, tempDir } from './helpers.js'

const FACTORY = await readFile(new URL('../examples/scripts/factory.js', import.meta.url), 'utf8')
const COUNTER = 'let n = 0\nexports.inc = () => ++n'

interface Info {
  id: string
  rpcUrl: string
  callLogUrl: string
  filesArchiveUrl: string
}

function factoryServer(t: TestContext, options: VMFactoryOptions & { dir?: string } = {}) {
  return serveFactory(t, FACTORY, options)
}

test('the source document factory example, over the network: provision, call, audit, owner-only shutdown', async (t) => {
  const { factory, connect } = await factoryServer(t)
  const client = await connect('alice')
  const vmInfo = (await client.call('provisionVM', { code: `exports.foo = () => 'bar'`, title: 'Bobs Provisioned VM' })) as Info
  assert.match(vmInfo.id, /^[0-9a-f]{16}$/)
  assert.match(vmInfo.rpcUrl, new RegExp(`/${vmInfo.id}$`))
  const client2 = await connect(undefined, vmInfo.rpcUrl)
  assert.equal(await client2.call('foo'), 'bar')

  // Audit both: the provisioned VM and the factory.
  const callLog = await CallLog.fetch(vmInfo.callLogUrl, { peers: [vmInfo.rpcUrl] })
  t.after(() => callLog.close())
  const files = new DatArchive(vmInfo.filesArchiveUrl, { peers: [vmInfo.rpcUrl] })
  t.after(() => files.close())
  await files.download('/')
  const replay = await VM.fromCallLog(callLog, vmInfo)
  t.after(() => replay.close())
  await Verifier.compareLogs(callLog, replay.callLog)
  await Verifier.compareArchives(files, replay.filesArchive)
  const init = await callLog.get(0)
  assert.equal(init.type === 'init' && init.code, `exports.foo = () => 'bar'`, "the provisioned VM's init entry holds the code given")
  assert.equal(init.type === 'init' && init.title, 'Bobs Provisioned VM')
  const factoryLog = await CallLog.fetch(factory.callLog.url, { peers: [client.url as string] })
  t.after(() => factoryLog.close())
  assert.deepEqual(await Verifier.compareProvisioned(factoryLog, callLog), { seq: 1 }, 'the factory call that provisioned it is found')

  const mallory = await connect('mallory')
  await assert.rejects(mallory.call('shutdownVM', vmInfo.id), { message: 'You are not authorized to shut down this vm' })
  assert.equal(await client2.call('foo'), 'bar', 'still running')
  await client.call('shutdownVM', vmInfo.id)
  await assert.rejects(client2.call('foo'), { code: 'ERR_CONNECTION_CLOSED' })
  // No longer served: its path says so (HTTP 410), and where its log still is.
  await assert.rejects(new RPCClient().connect(vmInfo.rpcUrl), {
    code: 'ERR_CONNECT',
    message: new RegExp(
      `HTTP 410 Gone: the VM ${vmInfo.id} was shut down; its call log ${vmInfo.callLogUrl} is served through its factory at ws://`,
    ),
  })
  assert.equal(factory.getVM(vmInfo.id), undefined)
  // Its data stays in the factory's store, and auditors can still fetch it through the factory.
  const archived = await CallLog.fetch(vmInfo.callLogUrl, { peers: [client.url as string] })
  t.after(() => archived.close())
  assert.equal(archived.length, callLog.length)

  await Verifier.verify(factory.callLog, factory.filesArchive)
})

test('an auditor in another process verifies the factory and a VM it provisioned', async (t) => {
  const { server, connect } = await factoryServer(t)
  const client = await connect('alice')
  const vmInfo = (await client.call('provisionVM', { code: COUNTER, title: 'counted' })) as Info
  const counter = await connect(undefined, vmInfo.rpcUrl)
  await counter.call('inc')
  const root = fileURLToPath(new URL('..', import.meta.url))
  for (const url of [`${server.url}/`, vmInfo.rpcUrl]) {
    const { stdout } = await promisify(execFile)(process.execPath, ['examples/audit.mjs', url, '--json'], { cwd: root })
    assert.equal(JSON.parse(stdout).verified, true, url)
  }
})

test('capacity and invalid code fail the provisioning call with named errors and leave nothing behind', async (t) => {
  const { dir, connect } = await factoryServer(t, { maxVMs: 1 })
  const client = await connect('alice')
  await assert.rejects(client.call('provisionVM', { code: 'exports.a = (' }), (err: RPCError) => {
    assert.equal(err.name, 'ScriptError')
    assert.match(err.message, /SyntaxError/)
    return true
  })
  await assert.rejects(client.call('provisionVM', { code: 'throw new Error("no")' }), { name: 'ScriptError', message: /Error: no/ })
  await assert.rejects(client.call('provisionVM', { code: 42 }), { name: 'TypeError' })
  assert.deepEqual(await readdir(join(dir, 'vms')).catch(() => []), [], 'no VM dir was left behind')
  await client.call('provisionVM', { code: COUNTER })
  await assert.rejects(client.call('provisionVM', { code: COUNTER }), (err: RPCError) => {
    assert.equal(err.name, 'CapacityExceeded')
    assert.equal(err.code, 'ERR_CAPACITY')
    assert.match(err.message, /already runs 1 VM, its limit \(maxVMs\)/)
    return true
  })
})

test('a factory script without provisionVM and shutdownVM is refused at deploy, leaving no log', async (t) => {
  const dir = join(await tempDir(t), 'factory')
  await assert.rejects(new VMFactory('exports.provisionVM = () => 1').deploy({ dir }), (err: Error) => {
    assert.equal(err.name, 'ScriptError')
    assert.match(err.message, /must export shutdownVM/)
    return true
  })
  await assert.rejects(readdir(dir), { code: 'ENOENT' })
  // System.vms exists only in factory scripts.
  const vm = new VM('exports.tryIt = () => typeof System.vms')
  await vm.deploy({ dir: join(dir, '..', 'plain') })
  assert.equal(await vm.executeCall({ methodName: 'tryIt' }), 'undefined')
  await vm.close()
  await assert.rejects(new VMFactory(FACTORY).deploy({ dir: join(dir, '..', 'plain') }), { code: 'ERR_DIR_ROLE' })
})

test('restart: deploying the factory again brings back its VMs at the same paths, keys and state', async (t) => {
  const dir = join(await tempDir(t), 'factory')
  const first = new VMFactory(FACTORY)
  await first.deploy({ dir })
  const server = new RPCServer()
  server.mount('/', first)
  first.setRPCServer(server)
  await server.listen(0)
  const client = new RPCClient()
  await client.connect(`${server.url}/`, { user: 'alice' })
  const kept = (await client.call('provisionVM', { code: COUNTER })) as Info
  const gone = (await client.call('provisionVM', { code: COUNTER })) as Info
  await client.call('shutdownVM', gone.id)
  const counter = new RPCClient()
  await counter.connect(kept.rpcUrl)
  assert.equal(await counter.call('inc'), 1)
  assert.equal(await counter.call('inc'), 2)
  await counter.close()
  await client.close()
  await server.close()
  await first.close()

  const { factory: second, server: server2, connect } = await factoryServer(t, { dir })
  assert.equal(second.getVM(gone.id), undefined, 'a VM shut down stays down')
  const back = second.getVM(kept.id)
  assert.ok(back)
  assert.equal(back.callLog.url, kept.callLogUrl)
  const again = await connect(undefined, `${server2.url}/${kept.id}`)
  assert.equal(await again.call('inc'), 3, 'state continues')
})

test("the factory's own log replays and verifies: provisioning answers come from the log", async (t) => {
  const { factory, connect } = await factoryServer(t, { maxVMs: 2 })
  const client = await connect('alice')
  const a = (await client.call('provisionVM', { code: COUNTER, title: 'a' })) as Info
  await client.call('provisionVM', { code: 'exports.a = (' }).catch(() => {})
  await client.call('provisionVM', { code: COUNTER, title: 'b' })
  await client.call('provisionVM', { code: COUNTER }).catch(() => {})
  await client.call('shutdownVM', a.id)
  const report = await Verifier.verify(factory.callLog, factory.filesArchive)
  assert.equal(report.calls, 5)
  const provisioned = (await factory.callLog.get(1)) as { oracle?: { vms: { op: string; result: Info }[] } }
  assert.equal(provisioned.oracle?.vms[0].op, 'vms.provisionVM')
  assert.equal(provisioned.oracle?.vms[0].result.id, a.id)
  // A provisioned VM's init entry must hold what the factory was asked for.
  const other = (await client.call('provisionVM', { code: `${COUNTER} `, title: 'c' })) as Info
  const otherVM = factory.getVM(other.id)
  assert.ok(otherVM)
  await Verifier.compareProvisioned(factory.callLog, otherVM.callLog)
  const unrelated = new VM(COUNTER)
  await unrelated.deploy({ dir: join(factory.dir as string, '..', 'unrelated') })
  t.after(() => unrelated.close())
  await assert.rejects(Verifier.compareProvisioned(factory.callLog, unrelated.callLog), {
    code: 'ERR_DIVERGENCE',
    message: /records no provisioning/,
  })
  // The replay provisioned nothing: the VMs on disk are the ones the host provisioned.
  assert.equal((await readdir(join(factory.dir as string, 'vms'))).length, 3, 'the shut-down VM keeps its data on disk')
})

test('oracle answers a replayed call never asks for are a divergence: a host cannot add provisionings to its log', async (t) => {
  const { factory, connect } = await factoryServer(t)
  const client = await connect('alice')
  const a = (await client.call('provisionVM', { code: COUNTER, title: 'a' })) as Info
  await client.call('shutdownVM', a.id)
  await Verifier.verify(factory.callLog, factory.filesArchive)
  // The host appends a copy of the shutdown call whose oracle also records a provisioning the
  // script never asked for (a VM the host would like the registry to hold).
  const last = structuredClone((await factory.callLog.get(factory.callLog.length - 1)) as CallEntry)
  const first = (await factory.callLog.get(1)) as CallEntry
  const vms = (last.oracle?.vms ?? []) as unknown as unknown[]
  const forged = { ...last, oracle: { vms: [...vms, ...((first.oracle?.vms ?? []) as unknown as unknown[])] } }
  const seq = (await factory.callLog.append(forged as unknown as LogEntry)) - 1
  await assert.rejects(Verifier.verify(factory.callLog, factory.filesArchive), expectDivergence(seq, 'oracle'))
  // Nor can it hide anything else in a record: each is in the shape a factory writes.
  const odd = structuredClone(first)
  Object.assign(((odd.oracle?.vms ?? []) as unknown as Record<string, unknown>[])[0], { note: 'extra' })
  const oddLog = await CallLog.create(join(factory.dir as string, '..', 'odd-log'))
  const honest = (await factory.callLog.list()) as LogEntry[]
  await oddLog.append([honest[0], odd as unknown as LogEntry])
  await assert.rejects(Verifier.verify(oddLog, null), expectDivergence(1, 'oracle'))
  await oddLog.close()
  // The host's own reopen refuses it too.
  const dir = factory.dir as string
  await factory.close()
  await assert.rejects(new VMFactory(FACTORY).deploy({ dir }), expectDivergence(seq, 'oracle'))
})

test('a factory caps VMs per caller (maxVMsPerCaller) and by its memory budget, each with ERR_CAPACITY naming the limit', async (t) => {
  const { factory, connect } = await factoryServer(t, { maxVMsPerCaller: 1, memoryBudget: 3 * 64 * 2 ** 20 })
  const alice = await connect('alice')
  const bob = await connect('bob')
  const anonymous = await connect()
  await alice.call('provisionVM', { code: COUNTER })
  await assert.rejects(alice.call('provisionVM', { code: COUNTER }), (err: RPCError) => {
    assert.equal(err.name, 'CapacityExceeded')
    assert.equal(err.code, 'ERR_CAPACITY')
    assert.match(err.message, /caller alice already runs 1 VM of this factory, the most one caller may \(maxVMsPerCaller\)/)
    return true
  })
  // Another caller has a share of its own; anonymous callers share one.
  await bob.call('provisionVM', { code: COUNTER })
  await anonymous.call('provisionVM', { code: COUNTER })
  assert.equal(factory.vmHost.memoryReserved, 3 * 64 * 2 ** 20)
  const carol = await connect('carol')
  await assert.rejects(carol.call('provisionVM', { code: COUNTER }), (err: RPCError) => {
    assert.equal(err.name, 'CapacityExceeded')
    assert.equal(err.code, 'ERR_CAPACITY')
    assert.match(err.message, /reserve 192 MiB of its 192 MiB memory budget; a VM with a 64 MiB memory limit does not fit/)
    return true
  })
})

test('a factory deployed again knows who provisioned each VM: the per-caller cap holds across restarts', async (t) => {
  const dir = join(await tempDir(t), 'factory')
  {
    const { factory, server, connect } = await factoryServer(t, { dir, maxVMsPerCaller: 1 })
    const alice = await connect('alice')
    await alice.call('provisionVM', { code: COUNTER })
    await alice.close()
    await server.close()
    await factory.close()
  }
  const { connect } = await factoryServer(t, { dir, maxVMsPerCaller: 1 })
  const alice = await connect('alice')
  await assert.rejects(alice.call('provisionVM', { code: COUNTER }), { code: 'ERR_CAPACITY' })
  const bob = await connect('bob')
  await bob.call('provisionVM', { code: COUNTER })
})
