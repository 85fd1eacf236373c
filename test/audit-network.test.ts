import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import Corestore from 'corestore'
import WebSocket from 'ws'
import { type CallEntry, CallLog, DatArchive, HostBook, RPCClient, RPCServer, Verifier, VM } from '../src/index.js'
import { REPLICATION_PROTOCOL } from '../src/net/replication.js'
import { deployVM, replicateOverWebSocket, tempDir } from './helpers.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const NOTES = `
exports.init = () => System.files.mkdir('/notes')
exports.add = async (name, text) => { await System.files.writeFile('/notes/' + name, text); return (await System.files.readdir('/notes')).length }
exports.count = async () => (await System.files.readdir('/notes')).length
exports.foo = () => 'bar'
`

async function served(t: Parameters<typeof deployVM>[0]) {
  const vm = await deployVM(t, NOTES, { title: 'Notes' })
  for (let i = 0; i < 30; i++) await vm.executeCall({ methodName: 'add', args: [`n${i % 7}`, `text ${i}`], userId: `u${i % 3}` })
  const server = new RPCServer()
  server.mount('/notes', vm)
  await server.listen(0)
  t.after(() => server.close())
  return { vm, server, url: `${server.url}/notes` }
}

/** The auditor: examples/audit.mjs in its own process. */
async function audit(url: string): Promise<{ code: number; verdict: Record<string, unknown> }> {
  try {
    const { stdout } = await run(process.execPath, ['examples/audit.mjs', url, '--json'], { cwd: root })
    return { code: 0, verdict: JSON.parse(stdout) }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    if (e.code !== 1) throw new Error(`auditor failed (${e.code}): ${e.stderr}`)
    return { code: 1, verdict: JSON.parse(e.stdout) }
  }
}

test('the audit flow in another process: fetch, replay, verify passes; an out-of-band write is named', async (t) => {
  const { vm, url } = await served(t)
  const honest = await audit(url)
  assert.equal(honest.code, 0)
  assert.equal(honest.verdict.verified, true)
  assert.equal(honest.verdict.entries, 31)

  await vm.filesArchive.writeFile('/notes/planted', 'not from a call')
  await vm.executeCall({ methodName: 'count' })
  const caught = await audit(url)
  assert.equal(caught.code, 1)
  assert.equal(caught.verdict.verified, false)
  assert.equal(caught.verdict.seq, 31)
  assert.equal(caught.verdict.method, 'count')
})

test('CallLog.fetch and DatArchive(url) work with no other argument after connect, and fetch the whole history', async (t) => {
  const { vm, url } = await served(t)
  const client = new RPCClient()
  await client.connect(url)
  t.after(() => client.close())
  const info = client.backendInfo
  assert.ok(info)
  const callLog = await CallLog.fetch(info.callLogUrl)
  t.after(() => callLog.close())
  assert.equal(callLog.url, vm.callLog.url)
  assert.equal(callLog.length, vm.callLog.length)
  assert.equal(callLog.writable, false)
  const archive = new DatArchive(info.filesArchiveUrl)
  t.after(() => archive.close())
  await archive.download('/')
  assert.equal(archive.version, vm.filesArchive.version)
  // Every version is there, not only the current one: an old checkout reads without a host.
  const firstWrite = (await callLog.get(1)) as CallEntry
  assert.deepEqual(await archive.checkout(firstWrite.files.version).readdir('/notes'), ['n0'])
  assert.equal(archive.drive.core.contiguousLength, archive.drive.core.length)
  const replay = await VM.fromCallLog(callLog, info)
  t.after(() => replay.close())
  await Verifier.compareLogs(callLog, replay.callLog)
  await Verifier.compareArchives(archive, replay.filesArchive)
  await Verifier.verify(callLog, archive)
})

test("two clients with host books of their own do not see each other's hosts, nor touch the shared book", async (t) => {
  const first = await served(t)
  const second = await served(t)
  const [bookA, bookB] = [new HostBook(), new HostBook()]
  const [clientA, clientB] = [new RPCClient(), new RPCClient()]
  await clientA.connect(first.url, { hosts: bookA })
  t.after(() => clientA.close())
  await clientB.connect(second.url, { hosts: bookB })
  t.after(() => clientB.close())

  assert.deepEqual(bookA.hostsOf(first.vm.callLog.url), [first.url])
  assert.deepEqual(bookA.hostsOf(first.vm.filesArchive.key), [first.url])
  assert.deepEqual(bookA.hostsOf(second.vm.callLog.url), [])
  assert.deepEqual(bookB.hostsOf(second.vm.callLog.url), [second.url])
  assert.deepEqual(bookB.hostsOf(first.vm.callLog.url), [])
  for (const { vm } of [first, second]) assert.deepEqual(HostBook.shared.hostsOf(vm.callLog.url), [])

  // Each book finds its own client's host, and only that one.
  const logA = await CallLog.fetch(first.vm.callLog.url, { hosts: bookA })
  t.after(() => logA.close())
  assert.equal(logA.length, first.vm.callLog.length)
  const archiveB = new DatArchive(second.vm.filesArchive.url, { hosts: bookB })
  t.after(() => archiveB.close())
  await archiveB.download('/')
  assert.equal(archiveB.version, second.vm.filesArchive.version)
  await assert.rejects(CallLog.fetch(first.vm.callLog.url, { hosts: bookB }), { code: 'ERR_NO_HOST' })
  await assert.rejects(new DatArchive(second.vm.filesArchive.url, { hosts: bookA }).ready(), { code: 'ERR_NO_HOST' })
  await assert.rejects(CallLog.fetch(second.vm.callLog.url), { code: 'ERR_NO_HOST' })

  bookA.forget(first.vm.callLog.url)
  assert.deepEqual(bookA.hostsOf(first.vm.callLog.url), [])
  assert.deepEqual(bookA.hostsOf(first.vm.filesArchive.url), [first.url])
})

test('a fetched log follows its host: update() and the append event', async (t) => {
  const { vm, url } = await served(t)
  const client = new RPCClient()
  await client.connect(url)
  t.after(() => client.close())
  const callLog = await CallLog.fetch(vm.callLog.url, { peers: [url] })
  t.after(() => callLog.close())
  const before = callLog.length
  let appended = 0
  callLog.on('append', () => appended++)
  await client.call('foo')
  // update() is true if it grew the copy; live replication may have grown it first (then false).
  const grew = await callLog.update()
  assert.equal(callLog.length, before + 1, "update() leaves the copy at the host's length")
  assert.ok(grew || appended >= 1, 'it grew by update() or by live replication (the append event)')
  assert.ok(appended >= 1)
  assert.equal(((await callLog.get(before)) as CallEntry).method, 'foo')
})

test('update() asks and does not wait: false on a current copy; waitForLength waits for the next entry; closing ends both with a StateError', async (t) => {
  const { vm, url } = await served(t)
  const callLog = await CallLog.fetch(vm.callLog.url, { peers: [url] })
  t.after(() => callLog.close())
  await callLog.get(vm.callLog.length - 1)
  while (callLog.length < vm.callLog.length) await callLog.update() // bounded: the host appends nothing meanwhile
  // Nothing newer at the host, and nobody appends: update() resolves (false) all the same.
  assert.equal(await callLog.update(), false)
  assert.equal(callLog.length, vm.callLog.length)
  // waitForLength is what waits: it resolves once the host appended the next entry.
  const next = callLog.length + 1
  const waiting = callLog.waitForLength(next)
  await vm.executeCall({ methodName: 'foo' })
  await waiting
  assert.ok(callLog.length >= next)
  // Closing the copy under a waiter rejects it (it no longer asks forever), and reading after is refused.
  const forever = assert.rejects(callLog.waitForLength(callLog.length + 1_000), {
    name: 'StateError',
    code: 'ERR_INVALID_STATE',
    message: /closed/,
  })
  await callLog.close()
  await forever
  await assert.rejects(callLog.update(), { name: 'StateError', code: 'ERR_INVALID_STATE' })
})

test("a read-only copy and a closed one answer with LibVMS errors, not Hypercore's", async (t) => {
  const { vm, url } = await served(t)
  const callLog = await CallLog.fetch(vm.callLog.url, { peers: [url] })
  const files = new DatArchive(vm.filesArchive.url, { peers: [url] })
  await files.download('/')
  const version = files.version
  await assert.rejects(callLog.append({ type: 'call' } as never), {
    name: 'StateError',
    code: 'ERR_INVALID_STATE',
    message: /read-only copy \(only the host that holds its key/,
  })
  await assert.rejects(files.writeFile('/notes/n0', 'changed'), {
    name: 'StateError',
    code: 'ERR_INVALID_STATE',
    message: /read-only copy/,
  })
  assert.equal(files.version, version, 'nothing was written')
  assert.equal(await files.readFile('/notes/n0', 'utf8'), 'text 28')

  // Closed during a read, or before one.
  const reading = callLog.list().then(
    (entries) => assert.equal(entries.length, vm.callLog.length, 'the read finished before the close'),
    (err: Error & { code?: string }) => assert.equal(err.code, 'ERR_INVALID_STATE', String(err)),
  )
  await callLog.close()
  await reading
  await assert.rejects(callLog.list(), { name: 'StateError', code: 'ERR_INVALID_STATE' })
  await files.close()
  for (const read of [() => files.readFile('/notes/n0'), () => files.stat('/notes'), () => files.readdir('/'), () => files.history()]) {
    await assert.rejects(read(), { name: 'StateError', code: 'ERR_INVALID_STATE', message: /files archive .* is closed/ })
  }
  await assert.rejects(files.download('/'), { code: 'ERR_INVALID_STATE' })
})

test('an auditor copy refuses a host that truncates and rewrites its log', async (t) => {
  const { vm, url } = await served(t)
  const dir = join(await tempDir(t), 'copy')
  const first = await CallLog.fetch(vm.callLog.url, { peers: [url], dir })
  const seen = (await first.get(20)) as CallEntry
  await first.close()
  await vm.callLog.core.truncate(20)
  await vm.callLog.append([{ ...seen, result: 999 }])
  await assert.rejects(CallLog.fetch(vm.callLog.url, { peers: [url], dir, timeout: 3000 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_FORKED')
    assert.match(err.message, /rewrote the history of hyper:\/\//)
    return true
  })
})

test('fetching from no known host, or an unreachable one, fails with a named error that names the URL', async (t) => {
  const vm = await deployVM(t, NOTES)
  const otherKey = 'ab'.repeat(32)
  await assert.rejects(CallLog.fetch(`hyper://${otherKey}`), { code: 'ERR_NO_HOST', message: new RegExp(`hyper://${otherKey}`) })
  const net = await import('node:net')
  const probe = net.createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as { port: number }).port
  await new Promise((resolve) => probe.close(resolve))
  const unreachable = `ws://127.0.0.1:${port}/vm`
  await assert.rejects(CallLog.fetch(vm.callLog.url, { peers: [unreachable] }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_HOST_UNREACHABLE')
    assert.match(err.message, new RegExp(unreachable))
    return true
  })
  await assert.rejects(new DatArchive(vm.filesArchive.url, { peers: [unreachable] }).download('/'), { code: 'ERR_HOST_UNREACHABLE' })
})

test('verify against a live host: changes from calls made after the log was fetched are not reported as out of band', async (t) => {
  const { vm, url } = await served(t)
  const callLog = await CallLog.fetch(vm.callLog.url, { peers: [url] })
  t.after(() => callLog.close())
  const verifiedUpTo = callLog.length
  // The host takes more writing calls before the auditor downloads the archive.
  for (let i = 0; i < 3; i++) await vm.executeCall({ methodName: 'add', args: [`late${i}`, 'x'] })
  const archive = new DatArchive(vm.filesArchive.url, { peers: [url] })
  t.after(() => archive.close())
  await archive.download('/')
  const report = await Verifier.verify(callLog, archive)
  assert.ok(report.entries >= verifiedUpTo, `${report.entries} entries verified`)
  // An out-of-band write is still caught.
  await vm.filesArchive.writeFile('/notes/planted', 'x')
  const later = new DatArchive(vm.filesArchive.url, { peers: [url] })
  t.after(() => later.close())
  await later.download('/')
  const fresh = await CallLog.fetch(vm.callLog.url, { peers: [url] })
  t.after(() => fresh.close())
  await assert.rejects(Verifier.verify(fresh, later), { code: 'ERR_DIVERGENCE', message: /changes after seq 33/ })
})

test('verify with follow checks each new call as it lands and stops at the first forged one', async (t) => {
  const { vm, url } = await served(t)
  const client = new RPCClient()
  await client.connect(url, { user: 'carol' })
  t.after(() => client.close())
  const callLog = await CallLog.fetch(vm.callLog.url, { peers: [url] })
  t.after(() => callLog.close())
  const archive = new DatArchive(vm.filesArchive.url, { peers: [url] })
  await archive.download('/')
  t.after(() => archive.close())

  // Following, then stopped: the report counts the calls that landed meanwhile.
  const stop = new AbortController()
  let checked = 0
  const following = Verifier.verify(callLog, archive, {
    follow: true,
    signal: stop.signal,
    onProgress: (done) => {
      checked = done
    },
  })
  for (let i = 0; i < 5; i++) await client.call('add', `live${i}`, 'x')
  const deadline = Date.now() + 10_000
  while (checked < vm.callLog.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  stop.abort()
  const report = await following
  assert.equal(report.calls, 35)

  // Following again; the host forges an entry while it runs.
  const watching = Verifier.verify(callLog, archive, { follow: true })
  await client.call('add', 'honest', 'y')
  const honest = (await vm.callLog.get(vm.callLog.length - 1)) as CallEntry
  await vm.callLog.append({ ...honest, result: 1000 })
  const forgedSeq = vm.callLog.length - 1
  await assert.rejects(watching, (err: Error & { seq?: number; field?: string }) => {
    assert.equal(err.seq, forgedSeq)
    assert.equal(err.field, 'result')
    return true
  })
})

test('replication with a stock Corestore: as the initiator or the non-initiator it fetches the log; a client that sends nothing is closed with the reason; without the subprotocol it is told at once', async (t) => {
  const vm = await deployVM(t, NOTES, { title: 'Notes' })
  await vm.executeCall({ methodName: 'add', args: ['a', 'text'] })
  const server = new RPCServer({ replicationHandshakeMs: 300 })
  server.mount('/notes', vm)
  await server.listen(0)
  t.after(() => server.close())
  const url = `${server.url}/notes`
  const replicate = async (initiator: boolean) => {
    const store = new Corestore(join(await tempDir(t), initiator ? 'initiator' : 'responder'))
    t.after(() => store.close())
    const ws = await replicateOverWebSocket(url, store, initiator)
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    )
    return { store, ws, closed }
  }
  for (const initiator of [true, false]) {
    // Either side: a client that does not start is started with, after a second, by the host.
    const client = await replicate(initiator)
    const core = client.store.get({ key: vm.callLog.core.key })
    await core.ready()
    const entry = JSON.parse(String(await core.get(1, { timeout: 10_000 })))
    assert.equal(entry.method, 'add', `the ${initiator ? 'initiator' : 'non-initiator'} reads the log`)
    client.ws.close()
  }
  // A client that opens a replication connection and never says a word is closed, saying why.
  const mute = new WebSocket(url, REPLICATION_PROTOCOL)
  t.after(() => mute.terminate())
  const { code, reason } = await new Promise<{ code: number; reason: string }>((resolve) =>
    mute.once('close', (closeCode, closeReason) => resolve({ code: closeCode, reason: closeReason.toString() })),
  )
  assert.equal(code, 1008)
  assert.match(reason, /nothing received in 1300 ms; is the client a Corestore replicating\?/)
  // Binary frames on an RPC connection (no subprotocol) are refused with the way to replicate.
  const raw = new WebSocket(url)
  t.after(() => raw.terminate())
  await new Promise((resolve) => raw.once('open', resolve))
  const answer = new Promise<string>((resolve) => raw.once('message', (data) => resolve(data.toString())))
  raw.send(Buffer.from([1, 2, 3]), { binary: true })
  assert.match(JSON.parse(await answer).error.message, new RegExp(REPLICATION_PROTOCOL))
})

test('a replication client whose first frame is too large is closed, saying why, and the server lives on (no unheard stream error while the host waits for a role)', async (t) => {
  const vm = await deployVM(t, NOTES, { title: 'Notes' })
  const server = new RPCServer({ maxMessageBytes: 1024 })
  server.mount('/notes', vm)
  await server.listen(0)
  t.after(() => server.close())
  const url = `${server.url}/notes`
  const big = new WebSocket(url, REPLICATION_PROTOCOL)
  t.after(() => big.terminate())
  await new Promise((resolve, reject) => {
    big.once('open', resolve)
    big.once('error', reject)
  })
  const closed = new Promise<number>((resolve) => big.once('close', (code) => resolve(code)))
  big.send(Buffer.alloc(1024 * 1024), { binary: true })
  assert.equal(await closed, 1009)
  // The server still takes connections (before the fix, the socket stream's 'error' ended the process).
  const again = new WebSocket(url, REPLICATION_PROTOCOL)
  t.after(() => again.terminate())
  await new Promise((resolve, reject) => {
    again.once('open', resolve)
    again.once('error', reject)
  })
  again.close()
})
