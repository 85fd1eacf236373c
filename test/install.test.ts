/**
 * The package as a user installs it: from a tarball (`npm pack`) into a fresh project, and from its
 * folder (`npm install ../libvms`) while another process runs from its dist/. Everything is offline:
 * each consumer starts from a hard-linked copy of this checkout's node_modules (its hidden lockfile
 * removed, so npm writes its own rather than through a shared link), and npm resolves nothing remote.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { promisify } from 'node:util'
import { root } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const run = promisify(execFile)
const NPM_FLAGS = ['--offline', '--no-audit', '--no-fund', '--loglevel=error']
const VERSION = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version

/** A new npm project in `dir` whose node_modules links this checkout's files (no download, no shared lockfile). */
async function consumerProject(dir: string, fields: object = {}): Promise<void> {
  await mkdir(dir, { recursive: true })
  const pkg = { name: 'consumer', version: '1.0.0', private: true, type: 'module', ...fields }
  await writeFile(join(dir, 'package.json'), JSON.stringify(pkg))
  await linkedModules(dir)
}

/** `dir`/node_modules as hard links of this checkout's, without the hidden lockfile npm rewrites in place. */
async function linkedModules(dir: string): Promise<void> {
  await run('cp', ['-al', join(root, 'node_modules'), join(dir, 'node_modules')])
  await rm(join(dir, 'node_modules/.package-lock.json'), { force: true })
}

function npm(args: string[], cwd: string, t: TestContext): Promise<{ stdout: string; stderr: string }> {
  return run('npm', args, { cwd, timeout: 240_000, env: { ...process.env, npm_config_update_notifier: 'false' } }).catch((err) => {
    t.diagnostic(`npm ${args.join(' ')}: ${err.stdout}${err.stderr}`)
    throw err
  })
}

test('npm pack gives a tarball that installs into a fresh project and runs there with no build step', async (t) => {
  const work = await tempDir(t)
  // dist/ is built (npm test builds it first); pack it as it is.
  await npm(['pack', '--ignore-scripts', '--pack-destination', work, '--loglevel=error'], root, t)
  const tarball = (await readdir(work)).find((name) => name.endsWith('.tgz'))
  assert.ok(tarball, 'npm pack wrote a tarball')
  const project = join(work, 'consumer')
  await consumerProject(project)
  // --ignore-scripts: nothing may need building once installed.
  await npm(['install', join(work, tarball), '--ignore-scripts', ...NPM_FLAGS], project, t)
  const installed = join(project, 'node_modules/libvms')
  assert.ok(statSync(join(installed, 'dist/cli/nodevms.js')).mode & 0o100, 'the bin is executable')
  const { stdout: version } = await run('npx', ['--no-install', 'nodevms', '--version'], { cwd: project })
  assert.equal(version.trim(), VERSION)

  // A VM served from the installed package, called and verified by it, from the project's own code.
  await writeFile(join(project, 'app.js'), 'exports.double = (n) => n * 2\n')
  await writeFile(
    join(project, 'use.mjs'),
    `import { VM, Verifier, RPCClient, RPCServer } from 'libvms'
     const vm = new VM(await (await import('node:fs/promises')).readFile('app.js', 'utf8'))
     await vm.deploy({ dir: 'vm-data' })
     const server = new RPCServer()
     await server.listen({ port: 0, host: '127.0.0.1' })
     server.mount('/', vm)
     const client = await RPCClient.connect(server.url + '/', { user: 'alice' })
     const answer = await client.double(21)
     await client.close()
     await server.close()
     const report = await Verifier.verify(vm.callLog, vm.filesArchive)
     await vm.close()
     console.log(JSON.stringify({ answer, calls: report.calls }))`,
  )
  const { stdout } = await run(process.execPath, ['use.mjs'], { cwd: project, timeout: 120_000 })
  assert.deepEqual(JSON.parse(stdout), { answer: 42, calls: 1 }, 'verified: Verifier.verify throws on a divergence')
  const verified = await run(process.execPath, [join(installed, 'dist/cli/nodevms.js'), 'verify', 'vm-data', '--json'], { cwd: project })
  assert.equal((JSON.parse(verified.stdout) as { verified: boolean }).verified, true)
})

test('installing the package from its folder rebuilds it beside dist/: a process running from dist/ meanwhile never fails, and the bin keeps its run bit', async (t) => {
  const work = await tempDir(t)
  // A copy of the checkout to install from (its build must really change files: each source gains a line).
  const checkout = join(work, 'libvms')
  await mkdir(checkout)
  for (const entry of ['src', 'types', 'scripts', 'dist', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md']) {
    await cp(join(root, entry), join(checkout, entry), { recursive: true, preserveTimestamps: true })
  }
  await linkedModules(checkout)
  for (const entry of await readdir(join(checkout, 'src'), { recursive: true, withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.ts')) {
      const file = join(entry.parentPath, entry.name)
      await writeFile(file, `${readFileSync(file, 'utf8')}\n// rebuilt by install.test.ts\n`)
    }
  }
  // npm runs a folder's prepare (the build) only for packages its project allows to run scripts.
  const project = join(work, 'consumer')
  await consumerProject(project, { allowScripts: { libvms: true } })

  // The other process: over and over, the bin's --version and a VM deployed and called, from dist/.
  const user = join(work, 'user.mjs')
  await writeFile(
    user,
    `import { execFileSync } from 'node:child_process'
     import { rmSync } from 'node:fs'
     const dist = ${JSON.stringify(join(checkout, 'dist'))}
     const runs = { version: 0, calls: 0 }
     const until = Date.now() + 150_000
     process.on('SIGTERM', () => { console.log(JSON.stringify(runs)); process.exit(0) })
     for (let i = 0; i < 400 && Date.now() < until; i++) {
       execFileSync(process.execPath, [dist + '/cli/nodevms.js', '--version'])
       runs.version++
       const { VM } = await import(dist + '/index.js?run=' + i)
       const vm = new VM('exports.hi = () => "hi"')
       const dir = ${JSON.stringify(join(work, 'vm-'))} + i
       await vm.deploy({ dir })
       if ((await vm.executeCall({ methodName: 'hi' })) !== 'hi') throw new Error('wrong answer')
       await vm.close()
       rmSync(dir, { recursive: true })
       runs.calls++
     }
     console.log(JSON.stringify(runs))`,
  )
  const other = spawn(process.execPath, [user], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  let errors = ''
  other.stdout.on('data', (chunk) => {
    output += chunk
  })
  other.stderr.on('data', (chunk) => {
    errors += chunk
  })
  const ended = new Promise<number | null>((resolve) => other.once('exit', resolve))
  t.after(() => {
    if (other.exitCode === null && other.signalCode === null && other.pid) process.kill(other.pid, 'SIGKILL')
  })

  await npm(['install', checkout, ...NPM_FLAGS], project, t)
  assert.match(readFileSync(join(checkout, 'dist/wording.js'), 'utf8'), /rebuilt by install\.test\.ts/, 'the install rebuilt dist/')
  assert.ok(statSync(join(checkout, 'dist/cli/nodevms.js')).mode & 0o100, 'the bin is still executable')
  const { stdout: version } = await run('npx', ['--no-install', 'nodevms', '--version'], { cwd: project })
  assert.equal(version.trim(), VERSION)

  if (other.exitCode === null && other.pid) process.kill(other.pid, 'SIGTERM')
  const code = await ended
  assert.equal(code, 0, `the process using dist/ failed: ${errors}`)
  const runs = JSON.parse(output.trim().split('\n').at(-1) as string) as { version: number; calls: number }
  assert.ok(runs.version > 0 && runs.calls > 0, `it ran while the build did: ${output}`)
})
