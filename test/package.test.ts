import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

// These load the built package (npm test builds it first) by its name, as a user would.
test("require('libvms') works on Node 20 (no top-level await in the library)", async () => {
  const { stdout, stderr } = await run(
    process.execPath,
    ['-e', "const l = require('libvms'); console.log(Object.keys(l).sort().join(' '))"],
    { cwd: root },
  )
  for (const name of ['VM', 'CallLog', 'DatArchive', 'Verifier', 'DivergenceError']) assert.match(stdout, new RegExp(`\\b${name}\\b`))
  assert.doesNotMatch(stderr, /Error/)
})

test("import from 'libvms' works, and a VM deploys through it", async () => {
  const script = `
    import { VM } from 'libvms'
    import { mkdtempSync, rmSync } from 'node:fs'
    import { join } from 'node:path'
    import { tmpdir } from 'node:os'
    const dir = mkdtempSync(join(tmpdir(), 'libvms-pkg-'))
    const vm = new VM("exports.foo = () => 'bar'")
    await vm.deploy({ dir: join(dir, 'vm') })
    console.log(await vm.executeCall({ methodName: 'foo' }))
    await vm.close()
    rmSync(dir, { recursive: true })
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root })
  assert.equal(stdout.trim(), 'bar')
})

test('a TypeScript consumer: the documented examples type-check under --strict, a typed client included, and misuses do not', async () => {
  const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url))
  const consumer = fileURLToPath(new URL('./types/consumer.ts', import.meta.url))
  const flags = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022']
  const { stdout } = await run(process.execPath, [tsc, ...flags, '--types', 'node', consumer], { cwd: root }).catch((err) => {
    assert.fail(`tsc failed:\n${err.stdout}${err.stderr}`)
  })
  assert.equal(stdout.trim(), '')
})

test('engines names the Node versions that require() ES modules unflagged, README says the same, and this Node is one', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } }
  assert.equal(pkg.engines.node, '^20.19.0 || >=22.12.0')
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  assert.match(readme, /Node\.js 20\.19 or later on the 20 line, or 22\.12 or later/)
  assert.match(readme, /require\('libvms'\)` needs a Node that can `require\(\)` ES modules without a flag \(20\.19\.0, 22\.12\.0\)/)
  const [major, minor] = process.versions.node.split('.').map(Number)
  assert.ok((major === 20 && minor >= 19) || (major === 22 && minor >= 12) || major > 22, `Node ${process.versions.node} is in engines`)
})

test('ERROR_CODES lists every code at run time: each error class raises one of them', async () => {
  const { ERROR_CODES, FetchError, StateError, CallError } = await import('../src/index.js')
  for (const err of [new StateError('x'), new FetchError('ERR_FETCH_TIMEOUT', 'x'), new CallError('CapacityExceeded', 'x')]) {
    assert.ok(ERROR_CODES.includes(err.code), err.code)
  }
  assert.ok(ERROR_CODES.includes('ERR_CAPACITY') && ERROR_CODES.includes('ERR_USAGE'))
  assert.ok(Object.isFrozen(ERROR_CODES))
})
