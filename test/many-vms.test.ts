/**
 * Many VMs in one process. A VMHost holds a thousand under `ulimit -n 1024` (one store for all);
 * its memory budget refuses a VM that does not fit (ERR_CAPACITY, with the figures); a hosted VM's
 * dir is still read on its own (verify, CallLog.open) once the host is closed, and a factory's VM
 * dir from before hosted markers too. VMs with stores of their own: deploying one too many for the
 * open-files limit is a named error with a hint (ERR_TOO_MANY_OPEN_FILES), never a bare EIO; the
 * VMs already deployed keep answering, and the dir that failed deploys once descriptors are free.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { CallLog, CapacityError, type DirectoryError, VM, VMHost } from '../src/index.js'
import { nodevms, root } from './cli-helpers.js'
import { serveFactory, tempDir } from './helpers.js'

const COUNTER = 'let n = 0; exports.inc = () => ++n'
const MiB = 2 ** 20

/** Runs a fixture under `ulimit -n <limit>` in a child shell; resolves with its exit code and output. */
function underFileLimit(limit: number, fixture: string, args: string[], timeoutMs: number) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const quoted = args.map((arg) => `"${arg}"`).join(' ')
    const child = spawn('sh', ['-c', `ulimit -n ${limit} && exec "${process.execPath}" --import tsx ${fixture} ${quoted}`], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let [stdout, stderr] = ['', '']
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

test('a VMHost holds 1,000 VMs in one process under `ulimit -n 1024`; each answers, resumes after a close, and its dir verifies on its own', async (t) => {
  const dir = join(await tempDir(t), 'host')
  const output = await underFileLimit(1024, 'test/fixtures/host-thousand.ts', [dir, '1000'], 400_000)
  assert.equal(output.code, 0, output.stderr)
  const result = JSON.parse(output.stdout)
  assert.equal(result.fdLimit, 1024, 'the child ran under the limit')
  assert.equal(result.deployed, 1000)
  assert.equal(result.answered, 1000, 'every VM answered its first call')
  assert.ok(result.fdsOpen < 200, `a thousand hosted VMs hold few descriptors: ${result.fdsOpen}`)
  assert.equal(result.resumed, 5, 'closed and deployed again, each VM resumed its state')
  // Once the host is closed, a hosted VM's dir is read on its own: its marker says where the store is.
  const log = await CallLog.open(join(dir, 'vms', 'vm7'))
  assert.equal(log.length, 2, 'init and one call')
  await log.close()
  const verified = await nodevms(['verify', join(dir, 'vms', 'vm3'), '--json'])
  assert.equal(verified.code, 0, verified.stderr)
  assert.equal(JSON.parse(verified.stdout).verified, true)
})

test('a VMHost refuses a VM past its memory budget with ERR_CAPACITY and the figures, leaving nothing; a closed VM frees its share', async (t) => {
  const dir = join(await tempDir(t), 'host')
  const host = await VMHost.open(dir, { memoryBudget: 40 * MiB })
  t.after(() => host.close())
  const limits = { memoryBytes: 16 * MiB }
  const first = new VM(COUNTER, { limits })
  await host.deploy(first, { name: 'a' })
  await host.deploy(new VM(COUNTER, { limits }), { name: 'b' })
  assert.equal(host.memoryReserved, 32 * MiB)
  await assert.rejects(host.deploy(new VM(COUNTER, { limits }), { name: 'c' }), (err: CapacityError) => {
    assert.ok(err instanceof CapacityError)
    assert.equal(err.code, 'ERR_CAPACITY')
    assert.deepEqual(err.figures, { budgetBytes: 40 * MiB, reservedBytes: 32 * MiB, askedBytes: 16 * MiB })
    assert.match(err.message, /reserve 32 MiB of its 40 MiB memory budget; a VM with a 16 MiB memory limit does not fit/)
    return true
  })
  await assert.rejects(readFile(join(dir, 'vms', 'c', 'libvms.json')), { code: 'ENOENT' }, 'the refused VM left no dir')
  await first.close()
  assert.equal(host.memoryReserved, 16 * MiB)
  const third = new VM(COUNTER, { limits })
  await host.deploy(third, { name: 'c' })
  assert.equal(await third.executeCall({ methodName: 'inc' }), 1)
  assert.deepEqual([...host.vms.keys()].sort(), ['b', 'c'])
})

test('VMHost: bad names and options are named errors; a hosted dir is in use while its host runs; a non-host dir is refused', async (t) => {
  const base = await tempDir(t)
  await assert.rejects(VMHost.open(join(base, 'h0'), { memoryBudget: -1 }), { code: 'ERR_INVALID_ARGUMENT' })
  const host = await VMHost.open(join(base, 'host'))
  t.after(() => host.close())
  for (const name of ['', '../x', 'a/b', '.hidden', 'x'.repeat(65)]) {
    await assert.rejects(host.deploy(new VM(COUNTER), { name }), { code: 'ERR_INVALID_ARGUMENT' }, name)
  }
  const vm = new VM(COUNTER)
  await host.deploy(vm, { name: 'one' })
  await assert.rejects(host.deploy(new VM(COUNTER), { name: 'one' }), { code: 'ERR_INVALID_STATE' })
  await assert.rejects(new VM(COUNTER).deploy({ dir: host.dirOf('one') }), (err: DirectoryError) => {
    assert.equal(err.code, 'ERR_DIR_IN_USE')
    assert.match(err.message, /kept in the store of/)
    return true
  })
  await assert.rejects(new VM('exports.other = () => 1').deploy({ dir: join(base, 'host') }), { code: 'ERR_DIR_ROLE' })
  await writeFile(join(base, 'not-a-host.txt'), 'x')
  await assert.rejects(VMHost.open(base), { code: 'ERR_DIR_NOT_EMPTY' })
})

test("a factory VM's dir from before hosted markers is read as hosted by the factory: verify works on it", async (t) => {
  const dir = join(await tempDir(t), 'factory')
  const factoryCode = await readFile(join(root, 'examples/scripts/factory.js'), 'utf8')
  const { factory, server, connect } = await serveFactory(t, factoryCode, { dir })
  const client = await connect('alice')
  const { id } = (await client.call('provisionVM', { code: COUNTER })) as { id: string }
  const vmClient = await connect('alice', `${client.url}${id}`)
  assert.equal(await vmClient.call('inc'), 1)
  await client.close()
  await vmClient.close()
  await server.close()
  await factory.close()
  // The marker as factories wrote it before: no word of the store.
  await writeFile(join(dir, 'vms', id, 'libvms.json'), `${JSON.stringify({ format: 'libvms', schema: 1, role: 'vm' })}\n`)
  const verified = await nodevms(['verify', join(dir, 'vms', id), '--json'])
  assert.equal(verified.code, 0, verified.stderr)
  assert.equal(JSON.parse(verified.stdout).verified, true)
})

test('VMs with stores of their own: one too many under `ulimit -n 160` is ERR_TOO_MANY_OPEN_FILES with a hint; the others keep answering; the dir deploys once descriptors are free', async (t) => {
  const dir = await tempDir(t)
  const output = await underFileLimit(160, 'test/fixtures/deploy-until-full.ts', [dir], 120_000)
  assert.equal(output.code, 0, output.stderr)
  const result = JSON.parse(output.stdout)
  assert.ok(result.failedAt > 0, `some VMs deployed before the limit: ${output.stdout}`)
  assert.equal(result.name, 'DirectoryError')
  assert.equal(result.code, 'ERR_TOO_MANY_OPEN_FILES')
  assert.match(result.message, /no file descriptor left .*raise the limit \(ulimit -n/)
  assert.equal(result.answered, result.failedAt, 'every VM deployed before the failure still answers')
  assert.equal(result.redeployed, 1, 'the dir that failed deploys as a new VM once descriptors are free')
})
