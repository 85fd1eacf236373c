/**
 * Publishing on the DHT, with a local @hyperswarm/testnet, in separate processes: host
 * (`nodevms exec --swarm`), seeder (`nodevms seed`), auditors (`nodevms verify hyper://… --swarm`).
 *
 * Network rule: a DHT node may only ever reach loopback. So this file runs its scenario only inside
 * a fresh loopback-only network namespace: run normally, it re-runs itself under
 * `unshare -n sh -c 'ip link set lo up && …'` and checks that run; inside, it first checks that the
 * only network interface is loopback, and every DHT node is pointed at the testnet (LIBVMS_BOOTSTRAP).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { CallLog, RPCClient } from '../src/index.js'
import { verifyReceipt } from '../src/ledger/receipts.js'
import { parseBootstrap, swarmOptionsOf } from '../src/net/swarm.js'
import { BIN, exec, firstLine, nodevms, root, stop } from './cli-helpers.js'
import { tempDir } from './helpers.js'
import { IN_NAMESPACE, loopbackTestnet, runInLoopbackNamespace } from './netns.js'

const SCENARIOS = [
  'host announces; an auditor verifies by URL alone; the host exits; a second auditor verifies from the (restarted) seeder',
  'a VM is called by its key alone: RPC over a Hyperswarm connection, from the command line and RPCClient, production signing included',
] as const

if (!IN_NAMESPACE) {
  // These start no DHT node: they check what is configured, and that nothing joins unless asked.
  test('bootstrap nodes: option or LIBVMS_BOOTSTRAP, checked; the DHT stays off unless asked for', async () => {
    assert.deepEqual(parseBootstrap('127.0.0.1:49737, [::1]:5000'), [
      { host: '127.0.0.1', port: 49737 },
      { host: '::1', port: 5000 },
    ])
    assert.equal(parseBootstrap(undefined), undefined)
    assert.equal(parseBootstrap(''), undefined)
    assert.throws(() => parseBootstrap(['localhost']), /is not host:port/)
    assert.throws(() => parseBootstrap(['h:99999']), /is not host:port/)
    assert.equal(swarmOptionsOf(undefined), null)
    assert.equal(swarmOptionsOf(false), null)
    assert.deepEqual(swarmOptionsOf(true), {})
    await assert.rejects(CallLog.fetch(`hyper://${'ab'.repeat(32)}`), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_NO_HOST')
      assert.match(err.message, /\{swarm: true\}/)
      return true
    })
    const flags = await nodevms(['verify', `hyper://${'ab'.repeat(32)}`, '--bootstrap', '127.0.0.1:1'])
    assert.equal(flags.code, 2)
    assert.match(flags.stderr, /--bootstrap applies to the DHT: add --swarm/)
    const bad = await nodevms(['seed', `hyper://${'ab'.repeat(32)}`, '--bootstrap', 'nowhere'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /--bootstrap: bootstrap node "nowhere" is not host:port/)
  })

  test('the DHT scenario runs in a loopback-only network namespace', async (t) => {
    await runInLoopbackNamespace(t, 'test/swarm.test.ts', SCENARIOS, 300_000)
  })
} else {
  test(SCENARIOS[0], async (t) => {
    const env = await loopbackTestnet(t)
    const dir = await tempDir(t)

    const { child: host, served } = await exec(
      t,
      join(root, 'examples/scripts/persisted-counter.js'),
      ['--swarm', '--dir', join(dir, 'host')],
      env,
    )
    assert.equal(served.swarm, true)
    for (let i = 1; i <= 3; i++) assert.equal((await nodevms(['call', served.rpcUrl, 'increment'], { env })).stdout.trim(), String(i))

    // The auditor knows only the call log's URL: it finds the host on the DHT.
    const first = await nodevms(['verify', served.callLogUrl, '--swarm', '--json'], { env })
    assert.equal(first.code, 0, first.stdout + first.stderr)
    assert.deepEqual(pick(JSON.parse(first.stdout)), { verified: true, calls: 3, filesArchiveUrl: served.filesArchiveUrl })

    const seeder = spawn(process.execPath, [BIN, 'seed', served.rpcUrl, '--json', '--dir', join(dir, 'seeds')], { cwd: root, env })
    t.after(() => stop(seeder))
    const seeded = await firstLine<{ callLogUrl: string; filesArchiveUrl: string; length: number }>(seeder, 'the seeder', 120_000)
    assert.deepEqual(seeded, { callLogUrl: served.callLogUrl, filesArchiveUrl: served.filesArchiveUrl, length: 4 })

    assert.equal(await stop(host), 0, 'the host exits cleanly')
    // The seeder restarts on its dir with no URL given: it serves what it seeded before, from its copies alone.
    assert.equal(await stop(seeder), 0, 'the seeder exits cleanly')
    const restarted = spawn(process.execPath, [BIN, 'seed', '--json', '--dir', join(dir, 'seeds')], { cwd: root, env })
    t.after(() => stop(restarted))
    assert.deepEqual(await firstLine(restarted, 'the restarted seeder', 120_000), seeded)
    const second = await nodevms(['verify', served.callLogUrl, '--swarm', '--json'], { env })
    assert.equal(second.code, 0, second.stdout + second.stderr)
    assert.deepEqual(pick(JSON.parse(second.stdout)), { verified: true, calls: 3, filesArchiveUrl: served.filesArchiveUrl })
    // A copy found on the DHT is said to be one: the DHT's peers may be behind the host.
    assert.deepEqual(JSON.parse(second.stdout).copy, { from: 'peers', entries: 4, hostLastSeen: null })
    const said = await nodevms(['verify', served.callLogUrl, '--swarm'], { env })
    assert.equal(said.code, 0, said.stdout + said.stderr)
    assert.match(said.stdout, /✓ verified 3 calls; files at version \d+ \(a copy from the DHT's peers: 4 entries; the host may have more\)/)
    assert.equal(await stop(restarted), 0, 'the restarted seeder exits cleanly')
  })

  test(SCENARIOS[1], async (t) => {
    const env = await loopbackTestnet(t)
    const bootstrap = env.LIBVMS_BOOTSTRAP
    const dir = await tempDir(t)

    const { served } = await exec(t, join(root, 'examples/scripts/counter.js'), ['--swarm', '--dir', join(dir, 'debug')], env)
    // Only the call log's key: no address, no port.
    const called = await nodevms(['call', served.callLogUrl, 'increment', '--user', 'ann', '--bootstrap', bootstrap], { env })
    assert.equal(called.code, 0, called.stdout + called.stderr)
    assert.equal(called.stdout.trim(), '1')
    const client = await RPCClient.connect(served.callLogUrl, { user: 'bob', swarm: { bootstrap } })
    t.after(() => client.close())
    assert.equal(client.backendInfo?.callLogUrl, served.callLogUrl)
    assert.equal(await client.call('increment'), 2)
    assert.equal(client.receipts.length, 1, "the answer's receipt was checked, as over WebSocket")
    // The receipt proves the entry: the call as bob made it, in the log the key names.
    const proven = verifyReceipt(client.receipts[0])
    assert.equal(proven.log, served.callLogUrl.replace('hyper://', ''))
    assert.equal((proven.entry as { caller: string }).caller, 'bob')
    await client.close()

    // Production mode: every call signed, exactly as over WebSocket.
    const keyFile = join(dir, 'alice.key')
    assert.equal((await nodevms(['keygen', '--out', keyFile], { env })).code, 0)
    const prod = await exec(
      t,
      join(root, 'examples/scripts/counter.js'),
      ['--swarm', '--auth', 'production', '--dir', join(dir, 'prod')],
      env,
    )
    const signed = await nodevms(['call', prod.served.callLogUrl, 'increment', '--key', keyFile, '--bootstrap', bootstrap], { env })
    assert.equal(signed.code, 0, signed.stdout + signed.stderr)
    assert.equal(signed.stdout.trim(), '1')
    const unsigned = await nodevms(['call', prod.served.callLogUrl, 'increment', '--bootstrap', bootstrap], { env })
    assert.equal(unsigned.code, 2)
    assert.match(unsigned.stderr, /\[ERR_AUTH_REQUIRED\]/)
    // A key nobody serves: a named timeout, not a hang.
    const nobody = await nodevms(['call', `hyper://${'ab'.repeat(32)}`, 'x', '--bootstrap', bootstrap, '--timeout', '3000'], { env })
    assert.equal(nobody.code, 2)
    assert.match(nobody.stderr, /no host of hyper:\/\/(ab)+ answered on the DHT within 3000 ms.*\[ERR_TIMEOUT\]/)
  })
}

function pick(report: { verified: boolean; calls: number; filesArchiveUrl: string }) {
  return { verified: report.verified, calls: report.calls, filesArchiveUrl: report.filesArchiveUrl }
}
