/**
 * The package as a user installs it: from a tarball (`npm pack`) into a fresh project, and from its
 * folder (`npm install ../libvms`) while another process runs from its dist/. Everything is offline:
 * each consumer starts from a hard-linked copy of this checkout's node_modules (its hidden lockfile
 * removed, so npm writes its own rather than through a shared link), and npm resolves nothing remote.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { readFileSync, realpathSync, statSync } from 'node:fs'
import { cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { promisify } from 'node:util'
import { root } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const run = promisify(execFile)
const NPM_FLAGS = ['--offline', '--no-audit', '--no-fund', '--loglevel=error']
const VERSION = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version

/** Writes `files` (path → text) under `dir`. */
async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true })
    await writeFile(join(dir, path), text)
  }
}

/** A new npm project in `dir` whose node_modules links this checkout's files (no download, no shared lockfile). */
async function consumerProject(dir: string, fields: object = {}): Promise<void> {
  await mkdir(dir, { recursive: true })
  const pkg = { name: 'consumer', version: '1.0.0', private: true, type: 'module', ...fields }
  await writeFile(join(dir, 'package.json'), JSON.stringify(pkg))
  await linkedModules(dir)
}

/** `dir`/node_modules as hard links of this checkout's, without the hidden lockfile npm rewrites in place. */
async function linkedModules(dir: string): Promise<void> {
  // From its real path: a checkout whose node_modules is a link (a git worktree's) must not hand out the link itself.
  await run('cp', ['-al', realpathSync(join(root, 'node_modules')), join(dir, 'node_modules')])
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

  // A TypeScript service split over two files, importing an npm package (flat-tree), served with a
  // raised limit by the installed bin, called, then verified.
  await writeTree(project, {
    'src/app.ts': `/// <reference types="libvms/script" />
import { rootsOf } from './roots'
let calls = 0
export function roots(n: number): number[] {
  calls++
  return rootsOf(n)
}
export const count = (): number => calls
`,
    'src/roots.ts': `import { fullRoots } from 'flat-tree'
export function rootsOf(n: number): number[] {
  return fullRoots(2 * n)
}
`,
    'src/flat-tree.d.ts': "declare module 'flat-tree' {\n  export function fullRoots(index: number): number[]\n}\n",
    'tsconfig.json': JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: 'es2022',
        lib: ['es2022'],
        module: 'esnext',
        moduleResolution: 'bundler',
        types: ['libvms/script'],
      },
      include: ['src'],
    }),
  })
  const typeCheck = await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', project], { cwd: project }).catch(
    (err) => err,
  )
  assert.equal(typeCheck.stdout ?? '', '', `the script type-checks under --strict against libvms/script: ${typeCheck.stdout}`)
  // The installed bin run by node itself (npx would not pass a signal on to it).
  const server = spawn(
    process.execPath,
    [
      join(project, 'node_modules/.bin/nodevms'),
      'exec',
      'src/app.ts',
      '--compute-ticks',
      '5000',
      '--port',
      '0',
      '--json',
      '--dir',
      'app.vms',
    ],
    {
      cwd: project,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  t.after(() => {
    if (server.exitCode === null && server.signalCode === null && server.pid) process.kill(server.pid, 'SIGKILL')
  })
  const served = await new Promise<{ rpcUrl: string }>((resolve, reject) => {
    let stderr = ''
    server.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    server.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk).split('\n')[0])))
    server.once('exit', (code) => reject(new Error(`exec exited ${code}: ${stderr}`)))
  })
  const called = await run('npx', ['--no-install', 'nodevms', 'call', served.rpcUrl, 'roots', '5'], { cwd: project })
  assert.deepEqual(JSON.parse(called.stdout), [3, 8])
  const log = await run('npx', ['--no-install', 'nodevms', 'log', served.rpcUrl, '--json'], { cwd: project })
  const init = JSON.parse(log.stdout.split('\n')[0]) as { limits: { computeTicks: number }; code: string }
  assert.equal(init.limits.computeTicks, 5000)
  assert.match(init.code, /^\/\/ libvms bundle of src\/app\.ts \(esbuild /)
  if (server.pid) process.kill(server.pid, 'SIGTERM')
  if (server.exitCode === null) await new Promise((resolve) => server.once('exit', resolve))
  const verified = await run('npx', ['--no-install', 'nodevms', 'verify', 'app.vms', '--json'], { cwd: project })
  const verdict = JSON.parse(verified.stdout) as { verified: boolean; calls: number }
  assert.equal(verdict.verified, true)
  assert.equal(verdict.calls, 1)
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
