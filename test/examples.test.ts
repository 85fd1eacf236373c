import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Verifier } from '../src/index.js'
import { callError, deployVM } from './helpers.js'

/** Each call states the VM's state digest, so every verify below compares the host's digests with its own. */
const EVERY_CALL = { checkpoints: { every: 1 } }

const script = (name: string) => readFile(new URL(`../examples/scripts/${name}`, import.meta.url), 'utf8')

test('examples/demo.ts: deploys, calls, replays, and reports both verdicts', async () => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], { cwd: root })
  assert.match(stdout, /Verdict: ✓ every call replays/)
  assert.match(stdout, /Verdict: ✗ divergence at seq 8/)
})

test('examples run-vm, connect and audit: the source document examples as processes', async (t) => {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dataDir = await mkdtemp(join(tmpdir(), 'libvms-example-'))
  t.after(() => rm(dataDir, { recursive: true, force: true }))
  const host = spawn(process.execPath, ['examples/run-vm.mjs', '0', join(dataDir, 'bobs-vm-data')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = new Promise<number | null>((resolve) => host.on('exit', (code) => resolve(code)))
  t.after(() => host.kill('SIGKILL'))
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    host.stdout.on('data', (d) => {
      output += d
      const m = /Serving at (ws:\/\/\S+)/.exec(output)
      if (m && output.includes('Call log URL:')) resolve(m[1])
    })
    host.on('exit', () => reject(new Error(`run-vm exited: ${output}`)))
  })
  assert.match(output, /vm api exports: \[ 'foo' \]/)
  assert.match(output, /Call log URL: hyper:\/\/[0-9a-f]{64}/)
  const exec = promisify(execFile)
  assert.equal((await exec(process.execPath, ['examples/connect.mjs', url], { cwd: root })).stdout.trim(), 'bar')
  const audited = await exec(process.execPath, ['examples/audit.mjs', url], { cwd: root })
  assert.match(audited.stdout, /✓ verified 2 log entries/)
  host.kill('SIGTERM')
  assert.equal(await exited, 0, 'run-vm shuts down cleanly on SIGTERM')
})

test('examples/scripts/counter.js', async (t) => {
  const vm = await deployVM(t, await script('counter.js'), EVERY_CALL)
  assert.equal(await vm.executeCall({ methodName: 'increment' }), 1)
  assert.equal(await vm.executeCall({ methodName: 'increment' }), 2)
  assert.equal(await vm.executeCall({ methodName: 'get' }), 2)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('examples/scripts/persisted-counter.js', async (t) => {
  const vm = await deployVM(t, await script('persisted-counter.js'), EVERY_CALL)
  assert.equal(await vm.executeCall({ methodName: 'increment' }), 1)
  assert.equal(await vm.executeCall({ methodName: 'increment' }), 2)
  assert.equal(await vm.filesArchive.readFile('/count'), '2')
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('examples/scripts/hello-world.js', async (t) => {
  const vm = await deployVM(t, await script('hello-world.js'), EVERY_CALL)
  assert.equal(await vm.executeCall({ methodName: 'hello', userId: 'bob' }), 'Hello, bob!')
  assert.equal(await vm.executeCall({ methodName: 'hello' }), 'Hello, stranger!')
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('examples/scripts/key-server.js: admins write, others read', async (t) => {
  const vm = await deployVM(t, await script('key-server.js'), EVERY_CALL)
  assert.equal((await callError(vm, 'claim')).message, 'Connect with a user id to claim the server')
  assert.equal(await vm.executeCall({ methodName: 'claim', userId: 'alice' }), 'alice')
  assert.equal((await callError(vm, 'claim', [], 'bob')).message, 'This key server already has an admin')
  await vm.executeCall({ methodName: 'put', args: ['k', { v: 1 }], userId: 'alice' })
  assert.equal((await callError(vm, 'put', ['k', 2], 'bob')).message, 'Only an admin can do that')
  assert.deepEqual(await vm.executeCall({ methodName: 'addAdmin', args: ['bob'], userId: 'alice' }), ['alice', 'bob'])
  await vm.executeCall({ methodName: 'put', args: ['k', 2], userId: 'bob' })
  assert.equal(await vm.executeCall({ methodName: 'get', args: ['k'], userId: 'carol' }), 2)
  assert.equal(await vm.executeCall({ methodName: 'get', args: ['missing'] }), null)
  assert.equal((await callError(vm, 'get', ['../admins.json'])).message, 'Key names are 1-100 of [A-Za-z0-9_.-]')
  await Verifier.verify(vm.callLog, vm.filesArchive)
})
