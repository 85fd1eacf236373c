/**
 * Tests that start DHT nodes run only inside a fresh loopback-only network namespace (the network
 * rule: a DHT node may only ever reach loopback). A file with such tests, run normally, re-runs
 * itself there with `unshare -n sh -c 'ip link set lo up && …'` (LIBVMS_TEST_NETNS=1 inside) and
 * checks that run's output.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { networkInterfaces } from 'node:os'
import type { TestContext } from 'node:test'
import createTestnet from '@hyperswarm/testnet'
import { root } from './cli-helpers.js'

export const IN_NAMESPACE = process.env.LIBVMS_TEST_NETNS === '1'

/** Re-runs `file` (relative to the repo) in a loopback-only namespace; every name in `passed` must pass there. */
export async function runInLoopbackNamespace(t: TestContext, file: string, passed: readonly string[], timeoutMs: number): Promise<void> {
  const probe = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up'], { encoding: 'utf8' })
  if (probe.status !== 0) {
    t.skip(`cannot make a network namespace here (unshare -n: ${probe.stderr.trim() || probe.error?.message}); run as root`)
    return
  }
  const command = `ip link set lo up && exec "${process.execPath}" --import tsx --test --test-reporter=spec ${file}`
  // A test file run by a test runner is told so (NODE_TEST_CONTEXT); this one runs on its own.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn('unshare', ['-n', 'sh', '-c', command], {
      cwd: root,
      env: { ...env, LIBVMS_TEST_NETNS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk) => {
      output += chunk
    })
    child.stderr.on('data', (chunk) => {
      output += chunk
    })
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
  assert.equal(result.code, 0, `${file} failed inside the namespace:\n${result.output}`)
  for (const name of passed) assert.ok(result.output.includes(`✔ ${name}`), `${name} did not pass:\n${result.output}`)
}

/**
 * Inside the namespace: checks that loopback is the only interface, starts a local DHT testnet (ended
 * with the test) and returns the environment that points every DHT node at it (LIBVMS_BOOTSTRAP).
 */
export async function loopbackTestnet(t: TestContext): Promise<NodeJS.ProcessEnv & { LIBVMS_BOOTSTRAP: string }> {
  const interfaces = Object.keys(networkInterfaces())
  assert.deepEqual(interfaces, ['lo'], `refusing to start DHT nodes: interfaces other than loopback exist (${interfaces.join(', ')})`)
  const testnet = await createTestnet(3)
  t.after(() => testnet.destroy())
  return { ...process.env, LIBVMS_BOOTSTRAP: testnet.bootstrap.map((b) => `${b.host}:${b.port}`).join(',') }
}
