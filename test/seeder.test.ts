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
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import createTestnet from '@hyperswarm/testnet'
import { type ReplicaInfo, RPCClient, RPCServer } from '../src/index.js'
import type { RPCBackend } from '../src/rpc/rpc-connection.js'
import { BIN, exec, firstLine, nodevms, root, SCRIPTS, stop } from './cli-helpers.js'
import { tempDir } from './helpers.js'
import { IN_NAMESPACE, runInLoopbackNamespace } from './netns.js'

const COUNTER = join(SCRIPTS, 'persisted-counter.js')
const NAMES = [
  'a seeder with --port serves verify ws://… after its host stopped, follows the host when it restarts on its ws:// URL, and says how current its copy is when behind',
  'a seeder follows a host that restarts on another port, found again on the DHT',
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

  test('the seeder scenarios run in a loopback-only network namespace', async (t) => {
    await runInLoopbackNamespace(t, 'test/seeder.test.ts', NAMES, 180_000)
  })
} else {
  test(NAMES[0], async (t) => {
    const env = await loopbackTestnet(t)
    const dir = await tempDir(t)
    const hostDir = join(dir, 'host')

    const first = await exec(t, COUNTER, ['--dir', hostDir], env)
    const port = new URL(first.served.rpcUrl).port
    for (let i = 1; i <= 3; i++) await call(first.served.rpcUrl, env, String(i))

    const seeder = await startSeeder(t, [first.served.rpcUrl, '--port', '0'], join(dir, 'seeds'), env)
    const seeded = await firstLine<SeededLine>(seeder, 'the seeder', 60_000)
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
}

/** A local testnet (after checking that loopback is the only interface) and the env pointing at it. */
async function loopbackTestnet(t: TestContext): Promise<NodeJS.ProcessEnv> {
  const interfaces = Object.keys(networkInterfaces())
  assert.deepEqual(interfaces, ['lo'], `refusing to start DHT nodes: interfaces other than loopback exist (${interfaces.join(', ')})`)
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  return { ...process.env, LIBVMS_BOOTSTRAP: testnet.bootstrap.map((b) => `${b.host}:${b.port}`).join(',') }
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
