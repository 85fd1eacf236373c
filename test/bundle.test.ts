/**
 * Scripts written like code: TypeScript and ES modules split over files, with npm packages, bundled
 * into the one script a VM deploys and logs (src/script/bundle.ts); their types (libvms/script).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, symlink, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { promisify } from 'node:util'
import { rowOf } from '../src/explorer/entry-rows.js'
import { bundleInfoOf, bundleScript, type InitEntry, type ScriptError, VM } from '../src/index.js'
import { exec, nodevms, root } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const run = promisify(execFile)

/** Writes `files` (path → text) under `dir`. */
async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true })
    await writeFile(join(dir, path), text)
  }
}

/** A small TypeScript service over two files that uses an npm package (a real one, in its node_modules). */
const LEDGER_PROJECT: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'ledger', private: true, type: 'module' }),
  'node_modules/tiny-sum/package.json': JSON.stringify({ name: 'tiny-sum', version: '1.0.0', main: 'index.js' }),
  'node_modules/tiny-sum/index.js': 'exports.sum = (values) => values.reduce((a, b) => a + b, 0)\n',
  'node_modules/tiny-sum/index.d.ts': 'export declare function sum(values: number[]): number\n',
  'src/entries.ts': `import { sum } from 'tiny-sum'

export interface Entry { who: string; amount: number }

export function balanceOf(entries: Entry[], who: string): number {
  return sum(entries.filter((e) => e.who === who).map((e) => e.amount))
}
`,
  'src/app.ts': `/// <reference types="libvms/script" />
import { balanceOf, type Entry } from './entries'

const entries: Entry[] = []
let opened = ''

export async function init(): Promise<void> {
  opened = 'yes'
  await System.files.writeFile('/opened', opened)
}

export function pay(amount: number): number {
  entries.push({ who: System.caller.id ?? 'host', amount })
  return balanceOf(entries, System.caller.id ?? 'host')
}

export async function wasOpened(): Promise<string> {
  return System.files.readFile('/opened')
}

export const VERSION = 2
`,
}

async function ledgerProject(t: TestContext, name = 'ledger'): Promise<string> {
  const dir = join(await tempDir(t), name)
  await writeTree(dir, LEDGER_PROJECT)
  return dir
}

test('bundleScript: a TypeScript service split over files, with an npm package, deploys as one script; its ES exports are the methods; init runs once and is not callable', async (t) => {
  const project = await ledgerProject(t)
  const bundle = await bundleScript(join(project, 'src/app.ts'))
  assert.equal(bundle.entry, 'src/app.ts')
  assert.match(bundle.bundler, /^esbuild \d+\.\d+\.\d+$/)
  assert.deepEqual(bundleInfoOf(bundle.code), { entry: 'src/app.ts', bundler: bundle.bundler })
  assert.equal(bundleInfoOf('exports.a = 1'), null)
  assert.doesNotMatch(bundle.code, /\brequire\(["']tiny-sum/, 'the package is inside the bundle')

  const vm = new VM(bundle)
  const dir = join(await tempDir(t), 'vm')
  await vm.deploy({ dir })
  t.after(() => vm.close())
  assert.deepEqual(vm.methods.sort(), ['pay', 'wasOpened'])
  assert.equal(vm.exports.VERSION, 2)
  assert.equal(await vm.executeCall({ methodName: 'pay', args: [5], userId: 'ann' }), 5)
  assert.equal(await vm.executeCall({ methodName: 'pay', args: [7], userId: 'ann' }), 12)
  assert.equal(await vm.executeCall({ methodName: 'pay', args: [1], userId: 'bob' }), 1)
  assert.equal(await vm.executeCall({ methodName: 'wasOpened' }), 'yes')
  await assert.rejects(vm.executeCall({ methodName: 'init' }), { code: 'ERR_METHOD_NOT_FOUND' })
  assert.equal(vm.callLog.length, 5, 'init and four calls')
})

test('the same sources give the same bundle, byte for byte, built in two different directories', async (t) => {
  const first = await ledgerProject(t, 'one')
  const second = await ledgerProject(t, 'elsewhere-entirely')
  const [a, b] = [await bundleScript(join(first, 'src/app.ts')), await bundleScript(join(second, 'src/app.ts'))]
  assert.equal(a.code, b.code)
  assert.ok(!a.code.includes(first) && !a.code.includes(second), 'no absolute path of the build')
  // Built again in the same place: the same bytes too (nothing of the time of the build).
  assert.equal((await bundleScript(join(first, 'src/app.ts'))).code, a.code)
})

test('an import of a Node built-in is refused at build time, naming the import and the file making it, from the script or from a package', async (t) => {
  const project = await ledgerProject(t)
  await writeTree(project, {
    'src/reads.ts': "import { readFileSync } from 'node:fs'\nexport const read = () => readFileSync('/etc/hostname', 'utf8')\n",
    'node_modules/needs-crypto/package.json': JSON.stringify({ name: 'needs-crypto', main: 'index.js' }),
    'node_modules/needs-crypto/index.js': "const crypto = require('crypto')\nexports.id = () => crypto.randomUUID()\n",
    'src/uses-package.ts': "import { id } from 'needs-crypto'\nexport const make = () => id()\n",
  })
  await assert.rejects(bundleScript(join(project, 'src/reads.ts')), (err: ScriptError) => {
    assert.equal(err.code, 'ERR_SCRIPT')
    assert.match(err.message, /src\/reads\.ts imports the Node built-in 'node:fs', which a VM does not have/)
    return true
  })
  await assert.rejects(bundleScript(join(project, 'src/uses-package.ts')), (err: ScriptError) => {
    assert.match(err.message, /node_modules\/needs-crypto\/index\.js imports the Node built-in 'crypto'/)
    return true
  })
})

test("a bundled script's errors point at the user's file and line: a syntax error at build time, a throw at its top level at deploy", async (t) => {
  const project = await ledgerProject(t)
  await writeTree(project, {
    'src/broken.ts': 'export const a = 1\nexport function f( {\n  return 2\n}\n',
    'src/config.ts': "export const limit = 10\nif (limit > 5) {\n  throw new RangeError('limit too high')\n}\n",
    'src/throws.ts': "import { limit } from './config'\nexport const get = () => limit\n",
  })
  await assert.rejects(bundleScript(join(project, 'src/broken.ts')), (err: ScriptError) => {
    assert.equal(err.scriptErrorName, 'BundleError')
    assert.match(err.message, /cannot bundle src\/broken\.ts: .* \(src\/broken\.ts line 3\)/)
    return true
  })
  const vm = new VM(await bundleScript(join(project, 'src/throws.ts')))
  await assert.rejects(vm.deploy({ dir: join(await tempDir(t), 'vm') }), (err: ScriptError) => {
    assert.equal(err.code, 'ERR_SCRIPT')
    assert.equal(err.file, 'src/config.ts')
    assert.equal(err.line, 3)
    assert.match(err.message, /RangeError: limit too high \(src\/config\.ts line 3\)$/)
    return true
  })
})

test('nodevms exec app.ts bundles it (and a .mjs entry that imports); log says which entry; a plain script is deployed as written', async (t) => {
  const project = await ledgerProject(t)
  await writeTree(project, {
    'lib/greet.mjs': 'export const greet = (who) => "hi " + who\n',
    'main.mjs': "import { greet } from './lib/greet.mjs'\nexport const hello = () => greet(System.caller.id)\n",
    'lib/twice.cjs': 'exports.twice = (n) => n * 2\n',
    'uses-require.cjs': "const { twice } = require('./lib/twice.cjs')\nexports.four = () => twice(2)\n",
    // A plain script whose text only mentions imports (a comment, a string): deployed as written.
    'plain.js': '// a VM cannot require("fs")\nconst note = "import x from y"\nexports.hello = () => "plain"\n',
  })
  const ts = await exec(t, join(project, 'src/app.ts'), ['--dir', join(project, 'ts.vms')])
  const paid = await nodevms(['call', ts.served.rpcUrl, 'pay', '3', '--user', 'ann'])
  assert.equal(paid.code, 0, paid.stderr)
  assert.equal(paid.stdout.trim(), '3')
  const log = await nodevms(['log', ts.served.rpcUrl])
  assert.match(
    log.stdout,
    /init "" \(debug mode; exports VERSION, init, pay, wasOpened; code bundled from src\/app\.ts by esbuild [\d.]+\)/,
  )
  // The explorer's init row, and info from the handshake, say so too.
  const logged = JSON.parse((await nodevms(['log', ts.served.rpcUrl, '--json'])).stdout.split('\n')[0]) as InitEntry
  assert.match(rowOf(0, logged).args, /^"" · code bundled from src\/app\.ts by esbuild [\d.]+$/)
  const info = JSON.parse((await nodevms(['info', ts.served.rpcUrl, '--json'])).stdout)
  assert.equal(info.bundle.entry, 'src/app.ts')
  assert.match(info.bundle.bundler, /^esbuild [\d.]+$/)
  assert.match(
    (await nodevms(['info', ts.served.rpcUrl])).stdout,
    /code\s+[0-9a-f]{64} \(since deploy, bundled from src\/app\.ts by esbuild [\d.]+\)/,
  )

  const mjs = await exec(t, join(project, 'main.mjs'), ['--dir', join(project, 'mjs.vms')])
  const hi = await nodevms(['call', mjs.served.rpcUrl, 'hello', '--user', 'bob'])
  assert.equal(hi.stdout.trim(), '"hi bob"')

  // CommonJS (.cjs: the project is an ES module package) that requires a file of its own: bundled with it.
  const required = await exec(t, join(project, 'uses-require.cjs'), ['--dir', join(project, 'cjs.vms')])
  assert.equal((await nodevms(['call', required.served.rpcUrl, 'four'])).stdout.trim(), '4')

  const plain = await exec(t, join(project, 'plain.js'), ['--dir', join(project, 'plain.vms')])
  const init = JSON.parse((await nodevms(['log', plain.served.rpcUrl, '--json'])).stdout.split('\n')[0]) as { code: string }
  assert.equal(
    init.code,
    '// a VM cannot require("fs")\nconst note = "import x from y"\nexports.hello = () => "plain"\n',
    'a script that imports nothing is logged exactly as written',
  )

  const refused = await nodevms(['exec', join(project, 'src/broken-import.ts'), '--port', '0', '--dir', join(project, 'x.vms')])
  assert.equal(refused.code, 2)
  assert.match(refused.stderr, /does not exist|cannot read the script/)
})

test('libvms/script types a script under tsc --strict, and a typed client from its own module leaves out init', async (t) => {
  const project = await ledgerProject(t)
  // The package as a user has it: node_modules/libvms (here, this checkout).
  await symlink(root, join(project, 'node_modules/libvms'), 'dir')
  await symlink(join(root, 'node_modules/@types'), join(project, 'node_modules/@types'), 'dir')
  await writeTree(project, {
    'tsconfig.json': JSON.stringify({
      // As docs/vm-api.md advises for scripts: bundler resolution, no DOM, no Node types.
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: 'esnext',
        moduleResolution: 'bundler',
        target: 'es2022',
        lib: ['es2022'],
        types: [],
      },
      include: ['src/app.ts', 'src/entries.ts'],
    }),
    'tsconfig.misuse.json': JSON.stringify({ extends: './tsconfig.json', include: ['src/misuse.ts'] }),
    'src/client.ts': `import { RPCClient, type RemoteMethods } from 'libvms'
import type * as App from './app'
export async function use(url: string): Promise<number> {
  const client = await RPCClient.connect<typeof App>(url, { user: 'ann' })
  const paid: number = await client.pay(2)
  const opened: string = await client.wasOpened()
  type Methods = keyof RemoteMethods<typeof App>
  const names: Methods[] = ['pay', 'wasOpened']
  return paid + opened.length + names.length
}
`,
    'src/misuse.ts': `/// <reference types="libvms/script" />
export async function wrong(): Promise<number> {
  const text: number = await System.files.readFile('/a')
  System.caller.id = 'me'
  return text
}
`,
    'src/misuse-client.ts': `import { RPCClient } from 'libvms'
import type * as App from './app'
export async function wrong(url: string): Promise<void> {
  const client = await RPCClient.connect<typeof App>(url)
  await client.init()
}
`,
  })
  const tsc = join(root, 'node_modules/typescript/bin/tsc')
  const ok = await run(process.execPath, [tsc, '-p', project], { cwd: project }).catch((err) => err)
  assert.equal(ok.stdout ?? '', '', `the script type-checks: ${ok.stdout}`)
  // A Node client (default libs, Node's types) that takes its API from the script's own module.
  const flags = ['--noEmit', '--strict', '--module', 'esnext', '--moduleResolution', 'bundler', '--target', 'es2022']
  const client = await run(process.execPath, [tsc, ...flags, '--types', 'node', join(project, 'src/client.ts')], { cwd: project }).catch(
    (err) => err,
  )
  assert.equal(client.stdout ?? '', '', `the typed client type-checks: ${client.stdout}`)
  const misuse = await run(process.execPath, [tsc, '-p', join(project, 'tsconfig.misuse.json')], { cwd: project }).catch((err) => err)
  assert.match(misuse.stdout, /misuse\.ts\(3,9\): error TS2322: Type 'string' is not assignable to type 'number'/)
  assert.match(misuse.stdout, /misuse\.ts\(4,17\): error TS2540: Cannot assign to 'id' because it is a read-only property/)
  const init = await run(process.execPath, [tsc, ...flags, '--types', 'node', join(project, 'src/misuse-client.ts')], {
    cwd: project,
  }).catch((err) => err)
  assert.match(init.stdout, /Property 'init' does not exist/)
})
