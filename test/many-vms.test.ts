/**
 * Many VMs in one process. Under an open-files limit, deploying one VM too many is a named error
 * with a hint (ERR_TOO_MANY_OPEN_FILES), never a bare EIO; the VMs already deployed keep answering,
 * and the dir that failed deploys once descriptors are free.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import { root } from './cli-helpers.js'
import { tempDir } from './helpers.js'

test('one VM too many under `ulimit -n 160` is ERR_TOO_MANY_OPEN_FILES with a hint; the others keep answering; the dir deploys once descriptors are free', async (t) => {
  const dir = await tempDir(t)
  const output = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(
      'sh',
      ['-c', `ulimit -n 160 && exec "${process.execPath}" --import tsx test/fixtures/deploy-until-full.ts "${dir}"`],
      {
        cwd: root,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let [stdout, stderr] = ['', '']
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const timer = setTimeout(() => child.pid && process.kill(child.pid, 'SIGKILL'), 120_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
  assert.equal(output.code, 0, output.stderr)
  const result = JSON.parse(output.stdout)
  assert.ok(result.failedAt > 0, `some VMs deployed before the limit: ${output.stdout}`)
  assert.equal(result.name, 'DirectoryError')
  assert.equal(result.code, 'ERR_TOO_MANY_OPEN_FILES')
  assert.match(result.message, /no file descriptor left .*raise the limit \(ulimit -n/)
  assert.equal(result.answered, result.failedAt, 'every VM deployed before the failure still answers')
  assert.equal(result.redeployed, 1, 'the dir that failed deploys as a new VM once descriptors are free')
})
