/**
 * Nothing of the host reaches a VM: the same log gives the same results in any process, whatever its
 * time zone, locale, environment, program path, working directory or thread. Each variation runs in
 * a child process of its own (test/fixtures/host-probe.mjs and the nodevms CLI), started from paths
 * of different lengths through symlinks, since the program path used to be copied into the engine's
 * memory.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { pathToFileURL } from 'node:url'
import { root } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const ENTRY = pathToFileURL(join(root, 'dist/index.js')).href

interface Host {
  /** The program file to run (a symlink, so that argv[1] differs). */
  program: string
  cwd: string
  env: Record<string, string>
}

function run(host: Host, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  // Only what the host sets: nothing of the test runner's own environment but PATH.
  const env = { PATH: process.env.PATH ?? '', LIBVMS_ENTRY: ENTRY, ...host.env }
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [host.program, ...args], { cwd: host.cwd, env, timeout: 90_000 }, (error, stdout, stderr) => {
      if (error && typeof error.code !== 'number') reject(error)
      else resolve({ code: error ? (error.code as number) : 0, stdout, stderr })
    })
  })
}

test('the same calls give the same results, and the log verifies and reopens, across time zones, paths, environments and threads', async (t) => {
  const base = await tempDir(t, 'libvms-hosts-')
  const probe = join(root, 'test/fixtures/host-probe.mjs')
  const longDir = join(base, 'a-much-longer-program-path-than-the-other-one', 'nested-once-more')
  await mkdir(longDir, { recursive: true })
  await symlink(probe, join(longDir, 'host-probe.mjs'))
  // The CLI through a symlinked dist/: its modules resolve to the real files, argv[1] does not.
  const cliDir = join(base, 'elsewhere')
  await mkdir(cliDir)
  await symlink(join(root, 'dist'), join(cliDir, 'dist'))
  const cwdA = join(base, 'cwd-a')
  const cwdB = join(base, 'a-working-directory-with-a-longer-name')
  await mkdir(cwdA)
  await mkdir(cwdB)

  const hosts: Record<string, Host> = {
    'New York, sandbox thread': {
      program: probe,
      cwd: cwdA,
      env: { TZ: 'America/New_York', LANG: 'en_US.UTF-8', PROBE_THREAD: '1' },
    },
    'Kathmandu, main thread, long path, big environment': {
      program: join(longDir, 'host-probe.mjs'),
      cwd: cwdB,
      env: { TZ: 'Asia/Kathmandu', LANG: 'de_DE.UTF-8', LC_ALL: 'de_DE.UTF-8', PADDING: 'x'.repeat(4000), HOME: '/nowhere' },
    },
    'UTC, no locale': { program: probe, cwd: base, env: { TZ: 'UTC' } },
  }
  const results: Record<string, unknown> = {}
  for (const [name, host] of Object.entries(hosts)) {
    const out = await run(host, ['record', join(base, `vm-${Object.keys(results).length}`)])
    assert.equal(out.code, 0, `${name}: ${out.stderr}`)
    results[name] = JSON.parse(out.stdout)
  }
  const [first, ...others] = Object.entries(results)
  for (const [name, result] of others) assert.deepEqual(result, first[1], `${name} gives what ${first[0]} gives`)
  const zone = (first[1] as { zone: unknown[] }).zone
  const noon = Date.UTC(2020, 6, 1, 12, 30)
  assert.deepEqual(zone.slice(0, 7), [120, Date.UTC(1999, 0, 1), noon, noon, noon, noon, noon], 'local time is UTC')
  assert.deepEqual(zone.slice(7, 11), [12, 1, 3, 0])

  // The New York host's log (recorded on a sandbox thread) verifies on the main thread of another
  // program in another zone, and reopens — replaying itself — in a third zone.
  const recorded = join(base, 'vm-0')
  const verifier: Host = { program: join(cliDir, 'dist/cli/nodevms.js'), cwd: cwdB, env: { TZ: 'Pacific/Chatham', LANG: 'fr_FR.UTF-8' } }
  const verified = await run(verifier, ['verify', recorded, '--json'])
  assert.equal(verified.code, 0, verified.stdout + verified.stderr)
  assert.equal(JSON.parse(verified.stdout).verified, true)
  const reopened = await run({ ...hosts['Kathmandu, main thread, long path, big environment'], env: { TZ: 'Pacific/Honolulu' } }, [
    'reopen',
    recorded,
  ])
  assert.equal(reopened.code, 0, reopened.stderr)
  assert.deepEqual(JSON.parse(reopened.stdout).zone, zone)
  const again = await run(verifier, ['verify', recorded, '--json'])
  assert.equal(again.code, 0, again.stdout + again.stderr)
})
