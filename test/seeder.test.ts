/**
 * Seeders serving auditors over WebSocket (`nodevms seed --port`), following a host that restarts
 * (over ws:// and over the DHT), and `verify` saying how current a seeder's copy is.
 *
 * Network rule: a seeder always starts a DHT node, and a DHT node may only ever reach loopback. So
 * the seeder scenarios run only inside a fresh loopback-only network namespace, as in
 * test/swarm.test.ts: run normally, this file re-runs itself under
 * `unshare -n sh -c 'ip link set lo up && …'` and checks that run; inside, it first checks that the
 * only network interface is loopback, and every DHT node is pointed at a local testnet
 * (LIBVMS_BOOTSTRAP). Outside, only plain WebSockets on 127.0.0.1 are used.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { type TestContext, test } from 'node:test'
import Corestore from 'corestore'
import type Hypercore from 'hypercore'
import {
  type CallEntry,
  CallLog,
  DatArchive,
  HostBook,
  type LogEntry,
  type ReplicaInfo,
  RPCClient,
  RPCServer,
  type SeededFork,
  Seeder,
  type UnprovenFork,
  VM,
} from '../src/index.js'
import { checkForkProof, compareReceipts, createReceipt } from '../src/ledger/receipts.js'
import { distrust, otherForkOf, sourceConnected } from '../src/net/peering.js'
import type { RPCBackend } from '../src/rpc/rpc-connection.js'
import { BIN, collect, exec, firstLine, nodevms, root, SCRIPTS, stop, waitFor } from './cli-helpers.js'
import { replicateOverWebSocket, tempDir } from './helpers.js'
import { IN_NAMESPACE, loopbackTestnet, runInLoopbackNamespace } from './netns.js'

const COUNTER = join(SCRIPTS, 'persisted-counter.js')
const NAMES = [
  'a seeder with --port serves verify ws://… after its host stopped, follows the host when it restarts on its ws:// URL, and says how current its copy is when behind',
  'a seeder follows a host that restarts on another port, found again on the DHT',
  'a host that rewrites history a seeder holds: the seeder keeps its copy and the fork proof, says so on stderr and in info, stops counting the host as seen, its archive stops with its log, and verify from it fails with ERR_FORKED and writes the proof',
  'a host that rewrites history under the same fork number (its key picks the number) and takes calls: the seeder still proves the fork, from two different entries at one seq',
  'a peer without the key that says it is on another fork makes no fork: the seeder reports none, keeps no proof, and says why',
]

interface SeededLine {
  callLogUrl: string
  filesArchiveUrl: string
  length: number
  rpcUrl: string
}

if (!IN_NAMESPACE) {
  test("a seeder's mount (a backend with `replica`): the handshake says how current it is; every call is refused with ERR_NOT_HOST", async (t) => {
    const replica: ReplicaInfo = { length: 7, hostLastSeen: '2026-12-02T06:40:00.000Z' }
    const backend: RPCBackend = {
      methods: [],
      title: 'seeded',
      auth: 'debug',
      callLog: { url: `hyper://${'ab'.repeat(32)}` },
      filesArchive: { url: `hyper://${'cd'.repeat(32)}` },
      executeCall: () => Promise.reject(new Error('never reached')),
      replicate: () => {
        throw new Error('not replicated here')
      },
      replica: () => replica,
    }
    const server = new RPCServer()
    server.mount('/seeded', backend)
    await server.listen(0)
    t.after(() => server.close())
    const client = new RPCClient()
    await client.connect(`${server.url}/seeded`, { receipts: false })
    t.after(() => client.close())
    assert.deepEqual(client.backendInfo?.replica, replica)
    assert.deepEqual(client.backendInfo?.methods, [])
    await assert.rejects(client.call('increment'), (err: Error & { code?: string; rpcCode?: number }) => {
      assert.equal(err.code, 'ERR_NOT_HOST')
      assert.equal(err.rpcCode, -32007)
      assert.match(err.message, /a seeder's copy of the VM, not its host/)
      return true
    })
  })

  test('verify from a seeder that reports a fork: a proof that holds for this log is the verdict (ERR_FORKED, --proof writes it); a proof that does not hold, is about another log, or was too large to send is only noted', async (t) => {
    const dir = await tempDir(t)
    const code = await readFile(COUNTER, 'utf8')
    const forkProofOf = async (vmDir: string) => {
      const vm = new VM(code)
      await vm.deploy({ dir: vmDir })
      for (let i = 0; i < 2; i++) await vm.executeCall({ methodName: 'increment' })
      const first = await createReceipt(vm.callLog, 2)
      await vm.close()
      const log = await CallLog.open(vmDir)
      const entries = (await log.list()) as LogEntry[]
      await log.core.truncate(2)
      await log.append({ ...(entries[2] as CallEntry), caller: 'mallory' })
      const second = await createReceipt(log, 2)
      const url = log.url
      await log.close()
      const compared = compareReceipts(first, second)
      assert.ok(compared.holds)
      return { url, proof: compared.proof }
    }
    const forked = await forkProofOf(join(dir, 'a'))
    const other = await forkProofOf(join(dir, 'b'))
    const altered = structuredClone(forked.proof)
    altered.receipts[1] = altered.receipts[0]
    const replicas: Record<string, ReplicaInfo> = {}
    const server = new RPCServer()
    for (const [path, proof, proofBytes] of [
      ['holds', forked.proof, 100],
      ['altered', altered, 100],
      ['other', other.proof, 100],
      ['large', null, 2_000_000],
    ] as const) {
      replicas[path] = {
        length: 3,
        hostLastSeen: null,
        forked: { hostFork: 1, copyFork: 0, seenAt: new Date().toISOString(), what: 'said', proofBytes, proof },
      }
      server.mount(`/${path}`, {
        methods: [],
        title: 'seeded',
        auth: 'debug',
        callLog: { url: forked.url },
        filesArchive: { url: `hyper://${'cd'.repeat(32)}` },
        executeCall: () => Promise.reject(new Error('never reached')),
        // This fake seeder serves no cores: a verify that goes on to fetch them fails to.
        replicate: () => {
          throw new Error('not replicated here')
        },
        replica: () => replicas[path],
      })
    }
    await server.listen(0)
    t.after(() => server.close())

    const file = join(dir, 'proof.json')
    const proven = await nodevms(['verify', `${server.url}/holds`, '--proof', file])
    assert.equal(proven.code, 2, proven.stdout + proven.stderr)
    assert.match(
      proven.stderr,
      /the host rewrote the history of hyper:\/\/[0-9a-f]{64}: log [0-9a-f]{64} signed two different entries at seq 2; the seeder's copy \(3 entries, fork 0\) keeps the history it received/,
    )
    assert.match(proven.stderr, /fork proof written to .*proof\.json .*\[ERR_FORKED\]/)
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), forked.proof)
    const without = await nodevms(['verify', `${server.url}/holds`])
    assert.match(without.stderr, /--proof <file> writes the fork proof\) \[ERR_FORKED\]/)
    for (const [path, why] of [
      ['altered', /its fork proof does not hold/],
      ['other', /its fork proof is about log [0-9a-f]{64}/],
      ['large', /its fork proof \(2,?000,?000 bytes\) is too large for a handshake/],
    ] as const) {
      const noted = await nodevms(['verify', `${server.url}/${path}`, '--timeout', '2000'])
      assert.match(
        noted.stderr,
        new RegExp(`note: the seeder says the host rewrote the history of .*, but ${why.source}.*; verifying its copy as it is`),
      )
      assert.doesNotMatch(noted.stderr, /ERR_FORKED/, `${path}: no fork without a proof that holds`)
    }
  })

  test("who counts as a seeder's source: a peer on the copy's fork holding all of it, on a connection this side opened, none of whose data failed to verify; another fork is only a claim until proven", () => {
    const peer = (fields: { remoteFork?: number; remoteLength?: number; remoteSynced?: boolean; isInitiator?: boolean }) => ({
      remoteFork: fields.remoteFork ?? 0,
      remoteLength: fields.remoteLength ?? 4,
      remoteSynced: fields.remoteSynced ?? true,
      stream: { isInitiator: fields.isInitiator ?? true },
    })
    const core = (peers: ReturnType<typeof peer>[]) => ({ length: 4, fork: 0, peers }) as unknown as Hypercore
    assert.equal(sourceConnected(core([peer({})])), true)
    assert.equal(sourceConnected(core([peer({ remoteFork: 1, remoteLength: 6 })])), false, 'a host on another fork')
    assert.equal(sourceConnected(core([peer({ remoteLength: 3 })])), false, 'a peer behind the copy')
    assert.equal(sourceConnected(core([peer({ isInitiator: false })])), false, 'an auditor that dialled in')
    assert.equal(otherForkOf(core([peer({ remoteFork: 7 })])), 7)
    assert.equal(otherForkOf(core([peer({ remoteFork: 7, remoteSynced: false })])), null, 'nothing said yet')
    assert.equal(otherForkOf(core([peer({})])), null)
    const junk = peer({ remoteLength: 6 })
    const withJunk = core([junk])
    assert.equal(sourceConnected(withJunk), true)
    distrust(withJunk.peers[0])
    assert.equal(sourceConnected(withJunk), false, 'a peer whose entries did not verify')
  })

  test('the seeder scenarios run in a loopback-only network namespace', async (t) => {
    await runInLoopbackNamespace(t, 'test/seeder.test.ts', NAMES, 300_000)
  })
} else {
  test(NAMES[0], async (t) => {
    const env = await loopbackTestnet(t)
    const { hostDir, first, port, seeder, seeded } = await seededHost(t, env)
    assert.equal(seeded.callLogUrl, first.served.callLogUrl)
    assert.equal(seeded.length, 4)
    assert.equal(seeded.rpcUrl, `${new URL(seeded.rpcUrl).origin}/${new URL(first.served.callLogUrl).host}`)

    // The seeder's mount: the VM's handshake with no methods, how current the copy is; calls refused.
    const info = await nodevms(['info', seeded.rpcUrl, '--json'], { env })
    assert.equal(info.code, 0, info.stderr)
    const shown = JSON.parse(info.stdout)
    assert.deepEqual(shown.methods, [])
    assert.equal(shown.callLogUrl, first.served.callLogUrl)
    assert.equal(shown.replica.length, 4)
    assert.equal(typeof shown.replica.hostLastSeen, 'string', 'the host is connected: seen')
    const refused = await nodevms(['call', seeded.rpcUrl, 'increment'], { env })
    assert.equal(refused.code, 2)
    assert.match(refused.stderr, /not its host.*\[ERR_NOT_HOST\]/)

    // The host stops: auditors verify from the seeder alone, over WebSocket.
    assert.equal(await stop(first.child), 0, 'the host exits cleanly')
    const gone = await verifyJSON(seeded.rpcUrl, env)
    assert.equal(gone.calls, 3)
    assert.equal(gone.copy.from, 'seeder')
    assert.equal(gone.copy.entries, 4)
    assert.equal(typeof gone.copy.hostLastSeen, 'string')

    // The host restarts on its dir and port: the seeder dials it again and follows its new calls.
    const second = await exec(t, COUNTER, ['--dir', hostDir, '--port', port], env)
    assert.equal(second.served.rpcUrl, first.served.rpcUrl)
    await call(second.served.rpcUrl, env, '4')
    await call(second.served.rpcUrl, env, '5')
    assert.equal(await replicaLengthReaches(t, seeded.rpcUrl, 6, 20_000), 6, 'the seeder follows the restarted host')
    const followed = await verifyJSON(seeded.rpcUrl, env)
    assert.equal(followed.calls, 5)

    // The host moves to a port the seeder does not know (no DHT): the seeder's copy falls behind,
    // and verify says so instead of presenting 5 calls as all there is.
    assert.equal(await stop(second.child), 0)
    const moved = await exec(t, COUNTER, ['--dir', hostDir], env)
    await call(moved.served.rpcUrl, env, '6')
    const behind = await nodevms(['verify', seeded.rpcUrl], { env })
    assert.equal(behind.code, 0, behind.stdout + behind.stderr)
    assert.match(
      behind.stdout,
      /✓ verified 5 calls; files at version \d+ \(a seeder's copy: 6 entries, host last seen \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)/,
    )
    const fromHost = await verifyJSON(moved.served.rpcUrl, env)
    assert.equal(fromHost.calls, 6)
    assert.equal(fromHost.copy, undefined, 'the host itself: no copy to qualify')
    assert.equal(await stop(seeder), 0, 'the seeder exits cleanly')
  })

  test(NAMES[1], async (t) => {
    const env = await loopbackTestnet(t)
    const dir = await tempDir(t)
    const hostDir = join(dir, 'host')

    const first = await exec(t, COUNTER, ['--swarm', '--dir', hostDir], env)
    await call(first.served.rpcUrl, env, '1')
    // Seeded by call log URL alone: the seeder knows the host only from the DHT.
    const seeder = await startSeeder(t, [first.served.callLogUrl, '--port', '0'], join(dir, 'seeds'), env)
    const seeded = await firstLine<SeededLine>(seeder, 'the seeder', 120_000)
    assert.equal(seeded.length, 2)

    assert.equal(await stop(first.child), 0, 'the host exits cleanly')
    const second = await exec(t, COUNTER, ['--swarm', '--dir', hostDir], env)
    assert.notEqual(second.served.rpcUrl, first.served.rpcUrl, 'another port: only the DHT can lead the seeder there')
    await call(second.served.rpcUrl, env, '2')
    await call(second.served.rpcUrl, env, '3')
    assert.equal(await replicaLengthReaches(t, seeded.rpcUrl, 4, 20_000), 4, 'the seeder finds the restarted host on the DHT')
    const followed = await verifyJSON(seeded.rpcUrl, env)
    assert.equal(followed.calls, 3)
    assert.equal(await stop(seeder), 0, 'the seeder exits cleanly')
  })

  test(NAMES[2], async (t) => {
    const env = await loopbackTestnet(t)
    const { dir, hostDir, first, port, seeder, seederErr, seeded } = await seededHost(t, env)
    assert.equal(seeded.length, 4)

    // The host stops and rewrites its last entry with its own key (truncate + append: fork 1). The
    // new entry names another caller: the counter does not read it, so the host's own reopen replays.
    assert.equal(await stop(first.child), 0)
    const log = await CallLog.open(hostDir)
    const entries = (await log.list()) as LogEntry[]
    await log.core.truncate(3)
    await log.append({ ...(entries[3] as CallEntry), caller: 'mallory' })
    assert.equal(log.core.fork, 1)
    const rewritten = (await log.list())[3]
    await log.close()
    const before = JSON.parse((await nodevms(['info', seeded.rpcUrl, '--json'], { env })).stdout)
    const forkServed = Date.now()

    const second = await exec(t, COUNTER, ['--dir', hostDir, '--port', port], env)
    await call(second.served.rpcUrl, env, '4')
    await call(second.served.rpcUrl, env, '5')
    const hostFiles = await archiveVersion(second.served.filesArchiveUrl, second.served.rpcUrl)

    // The seeder (dialling the host again within its backoff) says so on stderr, once.
    const said = await waitFor(() => /✗ fork: /.test(seederErr.text), 60_000)
    assert.ok(said, `the seeder reported no fork: ${seederErr.text}`)
    assert.match(seederErr.text, new RegExp(`fork: the host of ${first.served.callLogUrl} rewrote history this copy holds`))
    assert.match(seederErr.text, /keeps the 4 entries it received \(fork 0; the host is on fork 1\)/)
    const proofFile = /Fork proof: (\S+\.json)/.exec(seederErr.text)?.[1]
    assert.equal(proofFile, join(dir, 'seeds', 'forks', `${new URL(first.served.callLogUrl).host}.json`))

    // info: the copy kept its 4 entries; the fork and its proof; the host not seen since before it forked.
    const info = await nodevms(['info', seeded.rpcUrl, '--json'], { env })
    assert.equal(info.code, 0, info.stderr)
    const replica = JSON.parse(info.stdout).replica
    assert.equal(replica.length, 4)
    assert.equal(replica.forked.hostFork, 1)
    assert.equal(replica.forked.copyFork, 0)
    assert.match(replica.forked.what, /signed two different entries at seq 3/)
    assert.equal(replica.forked.proof.kind, 'fork')
    assert.equal(replica.hostLastSeen, before.replica.hostLastSeen, 'the forked host does not count as seen')
    assert.ok(Date.parse(replica.hostLastSeen) <= forkServed, `host last seen ${replica.hostLastSeen}, after the forked host started`)
    const text = await nodevms(['info', seeded.rpcUrl], { env })
    assert.match(
      text.stdout,
      /forked +the seeder says the host rewrote history this copy holds: .* \(host on fork 1, the copy on fork 0, seen /,
    )

    // The archive stopped with the log: the seeder serves it as entry 3 records it, not as the host has it now.
    const copied = await CallLog.fetch(first.served.callLogUrl, { peers: [seeded.rpcUrl] })
    const last = await copied.get(3)
    assert.equal(copied.length, 4)
    await copied.close()
    assert.deepEqual(last, entries[3], 'the copy keeps the entry the host had signed first')
    assert.notDeepEqual(rewritten, entries[3])
    const seededFiles = await archiveVersion(first.served.filesArchiveUrl, seeded.rpcUrl)
    assert.equal(seededFiles, last.files.version, "the seeder's archive is where its log's last entry says")
    assert.ok(hostFiles > seededFiles, `the host's archive moved on (${hostFiles}), the seeder's did not (${seededFiles})`)

    // verify from the seeder: the fork, with the proof written; check-proof confirms it offline.
    const written = join(dir, 'fork-proof.json')
    const verified = await nodevms(['verify', seeded.rpcUrl, '--proof', written], { env })
    assert.equal(verified.code, 2, verified.stdout + verified.stderr)
    assert.match(
      verified.stderr,
      /the host rewrote the history of hyper:\/\/[0-9a-f]{64}: log [0-9a-f]{64} signed two different entries at seq 3/,
    )
    assert.match(verified.stderr, /fork proof written to .*fork-proof\.json .*\[ERR_FORKED\]/)
    assert.doesNotMatch(verified.stderr + verified.stdout, /no call made/)
    const proven = await nodevms(['check-proof', written], { env })
    assert.equal(proven.code, 0, proven.stdout + proven.stderr)
    assert.match(proven.stdout, /^holds: log [0-9a-f]{64} signed two different entries at seq 3/)
    assert.equal((await nodevms(['check-proof', proofFile as string], { env })).code, 0, "the seeder's own proof file holds")
    // From the host itself, the fresh copy is refused as before (ERR_FORKED).
    const fromHost = await nodevms(['verify', second.served.rpcUrl], { env })
    assert.equal(fromHost.code, 2)
    assert.match(fromHost.stderr, /ERR_FORKED/)

    assert.equal((seederErr.text.match(/✗ fork: /g) ?? []).length, 1, 'the fork is reported once')
    assert.equal(await stop(seeder), 0, 'the seeder exits cleanly')

    // Restarted on its dir, the seeder reads the proof back and reports the fork from the start.
    const again = await startSeeder(t, ['--port', '0'], join(dir, 'seeds'), env)
    const againErr = collect(again.stderr)
    const reseeded = await firstLine<SeededLine>(again, 'the restarted seeder', 60_000)
    assert.equal(reseeded.length, 4)
    assert.ok(await waitFor(() => /✗ fork: /.test(againErr.text), 10_000), `no fork reported: ${againErr.text}`)
    assert.match(againErr.text, /\(proven \d{4}-\d\d-\d\dT[\d:.]+Z, before this run\)/)
    const restored = JSON.parse((await nodevms(['info', reseeded.rpcUrl, '--json'], { env })).stdout).replica
    assert.deepEqual(restored.forked.proof, replica.forked.proof)
    assert.equal(restored.hostLastSeen, null, 'a forked host is not seen again')
    assert.equal(await stop(again), 0)
  })

  test(NAMES[3], async (t) => {
    const env = await loopbackTestnet(t)
    const dir = await tempDir(t)
    const hostDir = join(dir, 'host')
    const code = await readFile(COUNTER, 'utf8')
    const first = await serveVM(t, code, hostDir, 0)
    for (let i = 0; i < 3; i++) await first.vm.executeCall({ methodName: 'increment' })
    const seeder = await openSeeder(t, join(dir, 'seeds'), env)
    const forks: SeededFork[] = []
    seeder.on('fork', (fork: SeededFork) => forks.push(fork))
    const seeded = await seeder.seed(first.vm.callLog.url, { peers: [first.url] })
    assert.equal(seeded.length, 4)

    // The host stops, and rewrites entry 3 keeping fork number 0: no peer says another fork.
    await first.close()
    const log = await CallLog.open(hostDir)
    const entries = (await log.list()) as LogEntry[]
    await log.core.truncate(3, { fork: 0 })
    await log.append({ ...(entries[3] as CallEntry), caller: 'mallory' })
    assert.equal(log.core.fork, 0)
    await log.close()
    const seenBefore = seeder.replicaOf(seeded.callLogUrl).hostLastSeen
    const restarted = Date.now()
    // Back on its URL, it takes calls: its entries past the copy's 4 do not verify against it.
    const second = await serveVM(t, code, hostDir, Number(new URL(first.url).port))
    await second.vm.executeCall({ methodName: 'increment' })
    await second.vm.executeCall({ methodName: 'increment' })

    assert.ok(await waitFor(() => forks.length > 0, 60_000), 'the seeder proved the fork')
    const [fork] = forks
    assert.equal(fork.hostFork, 0)
    assert.equal(fork.copyFork, 0)
    assert.match(fork.what, /signed two different entries at seq 3/)
    const proof = JSON.parse(await readFile(fork.proofFile, 'utf8'))
    const verdict = checkForkProof(proof)
    assert.ok(verdict.holds, 'the kept proof holds')
    const replica = seeder.replicaOf(seeded.callLogUrl)
    assert.equal(replica.length, 4)
    assert.deepEqual(replica.forked?.proof, proof)
    assert.equal(replica.hostLastSeen, seenBefore, 'the rewritten host does not count as seen')
    assert.ok(replica.hostLastSeen === null || Date.parse(replica.hostLastSeen) <= restarted)
  })

  test(NAMES[4], async (t) => {
    const env = await loopbackTestnet(t)
    const dir = await tempDir(t)
    const code = await readFile(COUNTER, 'utf8')
    const host = await serveVM(t, code, join(dir, 'host'), 0)
    for (let i = 0; i < 2; i++) await host.vm.executeCall({ methodName: 'increment' })
    const seeder = await openSeeder(t, join(dir, 'seeds'), env)
    const forks: SeededFork[] = []
    const unproven: UnprovenFork[] = []
    seeder.on('fork', (fork: SeededFork) => forks.push(fork))
    seeder.on('fork-unproven', (claim: UnprovenFork) => unproven.push(claim))
    // A third peer copies the log and serves it as a host would, so the seeder (and its look into a
    // claim) dials it as one of the log's hosts.
    const liar = new Corestore(join(dir, 'liar'))
    t.after(() => liar.close())
    const copied = await replicateOverWebSocket(host.url, liar, true)
    const core = liar.get({ key: host.vm.callLog.core.key })
    await core.ready()
    await core.update({ wait: true })
    await core.download({ start: 0, end: core.length }).done()
    copied.terminate()
    const liarServer = new RPCServer()
    const liarBackend: RPCBackend = {
      methods: [],
      title: 'liar',
      auth: 'debug',
      callLog: { url: host.vm.callLog.url },
      filesArchive: { url: host.vm.filesArchive.url },
      executeCall: () => Promise.reject(new Error('never reached')),
      replicate: (isInitiatorOrStream) => liar.replicate(isInitiatorOrStream) as unknown as Duplex,
    }
    liarServer.mount('/', liarBackend)
    await liarServer.listen(0)
    t.after(() => liarServer.close())
    const seeded = await seeder.seed(host.vm.callLog.url, { peers: [host.url, `${liarServer.url}/`] })
    assert.equal(seeded.length, 3)

    // Then it says it is on fork 7 (its store's fork number, changed by hand: it holds no key to sign a
    // fork 7 with), and drops its connections: the seeder dials it again and hears the claim.
    ;(core as unknown as { core: { state: { fork: number } } }).core.state.fork = 7
    await liarServer.unmount('/')
    liarServer.mount('/', liarBackend)

    assert.ok(await waitFor(() => unproven.length > 0, 90_000), 'the seeder looked into the claim')
    assert.match(unproven[0].claim, /says it is on fork 7, not this copy's 0/)
    // The liar was asked too: it could not show a fork 7 the key signed.
    assert.ok(unproven[0].why.includes(`from ${host.url}, ${liarServer.url}/: the peers serve this copy's fork 0`), unproven[0].why)
    assert.deepEqual(forks, [])
    assert.equal(seeder.replicaOf(seeded.callLogUrl).forked, undefined)
    await assert.rejects(stat(join(dir, 'seeds', 'forks')), { code: 'ENOENT' }, 'no proof file')
  })
}

/** A VM deployed (or reopened) in `dir` and served at ws://127.0.0.1:<port>/; `close` stops both. */
async function serveVM(t: TestContext, code: string, dir: string, port: number) {
  const vm = new VM(code)
  await vm.deploy({ dir })
  const server = new RPCServer()
  server.mount('/', vm)
  await server.listen({ port })
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await server.close()
    await vm.close()
  }
  t.after(close)
  return { vm, url: `${server.url}/`, close }
}

/** A Seeder in `dir` on the local testnet, quick to dial a host again; closed when the test ends. */
async function openSeeder(t: TestContext, dir: string, env: NodeJS.ProcessEnv): Promise<Seeder> {
  const seeder = await Seeder.open({
    dir,
    swarm: { bootstrap: env.LIBVMS_BOOTSTRAP },
    timeout: 5000,
    reconnect: { minMs: 200, maxMs: 1000 },
    hosts: new HostBook(),
  })
  t.after(() => seeder.close())
  return seeder
}

/** The version of the files archive at `url` as `peer` (a host or a seeder, over ws://) serves it. */
async function archiveVersion(url: string, peer: string): Promise<number> {
  const files = new DatArchive(url, { peers: [peer] })
  try {
    await files.download('/')
    return files.version
  } finally {
    await files.close()
  }
}

/**
 * A host (`nodevms exec` of the counter on `<dir>/host`) that took three calls, and a seeder of it
 * listening on a port (`<dir>/seeds`), its stderr collected from the start and its first line read.
 */
async function seededHost(t: TestContext, env: NodeJS.ProcessEnv) {
  const dir = await tempDir(t)
  const hostDir = join(dir, 'host')
  const first = await exec(t, COUNTER, ['--dir', hostDir], env)
  const port = new URL(first.served.rpcUrl).port
  for (let i = 1; i <= 3; i++) await call(first.served.rpcUrl, env, String(i))
  const seeder = await startSeeder(t, [first.served.rpcUrl, '--port', '0'], join(dir, 'seeds'), env)
  const seederErr = collect(seeder.stderr)
  const seeded = await firstLine<SeededLine>(seeder, 'the seeder', 60_000)
  return { dir, hostDir, first, port, seeder, seederErr, seeded }
}

function startSeeder(t: TestContext, args: string[], dir: string, env: NodeJS.ProcessEnv): ChildProcess {
  const seeder = spawn(process.execPath, [BIN, 'seed', ...args, '--json', '--dir', dir], { cwd: root, env })
  t.after(() => stop(seeder))
  return seeder
}

async function call(url: string, env: NodeJS.ProcessEnv, expected: string): Promise<void> {
  const result = await nodevms(['call', url, 'increment'], { env })
  assert.equal(result.stdout.trim(), expected, result.stderr)
}

async function verifyJSON(url: string, env: NodeJS.ProcessEnv) {
  const result = await nodevms(['verify', url, '--json'], { env })
  assert.equal(result.code, 0, result.stdout + result.stderr)
  const report = JSON.parse(result.stdout)
  assert.equal(report.verified, true)
  return report
}

/**
 * Polls the seeder's handshake (plain WebSocket on loopback) until its copy holds `length` entries,
 * at most `ms` and 100 times; resolves with the last length seen (and notes how long it took: not
 * asserted).
 */
async function replicaLengthReaches(t: TestContext, url: string, length: number, ms: number): Promise<number> {
  const started = Date.now()
  const deadline = started + ms
  let seen = -1
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    const client = new RPCClient()
    await client.connect(url, { receipts: false, timeout: 5000 })
    seen = client.backendInfo?.replica?.length ?? -1
    await client.close()
    if (seen >= length) {
      t.diagnostic(`the seeder's copy held ${seen} entries after ${Date.now() - started} ms`)
      return seen
    }
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  return seen
}
