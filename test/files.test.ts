import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { CallEntry } from '../src/index.js'
import { callError, deployVM } from './helpers.js'

const FILES_SCRIPT = `
const fs = System.files
exports.run = async (op, ...args) => {
  const result = await fs[op](...args)
  if (op === 'stat') return { type: result.type, size: result.size, isFile: result.isFile(), isDirectory: result.isDirectory(), mtime: result.mtime.getTime() }
  return result === undefined ? null : result
}
exports.batch = async (ops) => {
  for (const [op, ...args] of ops) await fs[op](...args)
  return (await fs.readdir('/', { recursive: true }))
}
exports.writeThenFail = async () => { await fs.writeFile('/partial.txt', 'x'); throw new Error('changed my mind') }
`

async function run(vm: Awaited<ReturnType<typeof deployVM>>, op: string, ...args: unknown[]): Promise<unknown> {
  return vm.executeCall({ methodName: 'run', args: [op, ...args] })
}

test('System.files: write, read with encodings, stat, readdir', async (t) => {
  const vm = await deployVM(t, FILES_SCRIPT)
  await run(vm, 'writeFile', '/hello.txt', 'héllo')
  assert.equal(await run(vm, 'readFile', '/hello.txt'), 'héllo')
  assert.equal(await run(vm, 'readFile', 'hello.txt', 'utf8'), 'héllo', 'relative paths start at the root')
  assert.equal(await run(vm, 'readFile', '/hello.txt', { encoding: 'hex' }), Buffer.from('héllo').toString('hex'))
  assert.equal(await run(vm, 'readFile', '/hello.txt', 'base64'), Buffer.from('héllo').toString('base64'))
  assert.deepEqual(await run(vm, 'readFile', '/hello.txt', 'binary'), new Uint8Array(Buffer.from('héllo')))
  await run(vm, 'writeFile', '/b64.bin', Buffer.from([1, 2, 3]).toString('base64'), 'base64')
  assert.deepEqual(await run(vm, 'readFile', '/b64.bin', 'binary'), new Uint8Array([1, 2, 3]))
  const stat = (await run(vm, 'stat', '/hello.txt')) as { type: string; size: number; isFile: boolean; mtime: number }
  assert.deepEqual([stat.type, stat.size, stat.isFile], ['file', 6, true])
  const entry = (await vm.callLog.get(1)) as CallEntry
  assert.equal(stat.mtime, entry.timestamp, "a file's mtime is the logged timestamp of the call that wrote it")
  await run(vm, 'mkdir', '/dir')
  await run(vm, 'writeFile', '/dir/a', '1')
  assert.deepEqual(await run(vm, 'readdir', '/'), ['b64.bin', 'dir', 'hello.txt'])
  assert.deepEqual(await run(vm, 'readdir', '/', { recursive: true }), ['b64.bin', 'dir', 'dir/a', 'hello.txt'])
  assert.equal(((await run(vm, 'stat', '/dir')) as { isDirectory: boolean }).isDirectory, true)
})

test('System.files follows DatArchive semantics and errors', async (t) => {
  const vm = await deployVM(t, FILES_SCRIPT)
  await run(vm, 'mkdir', '/d')
  await run(vm, 'writeFile', '/d/f', 'x')
  const cases: [string, unknown[], string][] = [
    ['readFile', ['/missing'], 'NotFound'],
    ['stat', ['/missing'], 'NotFound'],
    ['readdir', ['/missing'], 'NotFound'],
    ['mkdir', ['/d'], 'AlreadyExists'],
    ['mkdir', ['/no/such/parent'], 'ParentNotFound'],
    ['writeFile', ['/no/such.txt', 'x'], 'ParentNotFound'],
    ['writeFile', ['/d/f/child', 'x'], 'NotADirectory'],
    ['writeFile', ['/d', 'x'], 'IsADirectory'],
    ['readFile', ['/d'], 'IsADirectory'],
    ['readdir', ['/d/f'], 'NotADirectory'],
    ['unlink', ['/d'], 'NotAFile'],
    ['unlink', ['/missing'], 'NotFound'],
    ['rmdir', ['/d/f'], 'NotADirectory'],
    ['rmdir', ['/d'], 'DirectoryNotEmpty'],
    ['rmdir', ['/'], 'InvalidPath'],
    ['readFile', ['/../etc/passwd'], 'InvalidPath'],
    ['readFile', ['/a\u0000b'], 'InvalidPath'],
    ['readFile', [42], 'InvalidPath'],
    ['readFile', ['/d/f', 'utf16'], 'InvalidEncoding'],
  ]
  for (const [op, args, name] of cases) {
    const err = await callError(vm, 'run', [op, ...args])
    assert.equal(err.name, name, `${op}(${JSON.stringify(args)}): ${err.message}`)
    assert.ok(err.message.length > 10)
  }
  // Paths are normalized: /d/./x/../f is /d/f.
  assert.equal(await run(vm, 'readFile', '/d/./x/../f'), 'x')
  await run(vm, 'rmdir', '/d', { recursive: true })
  assert.deepEqual(await run(vm, 'readdir', '/'), [])
  await run(vm, 'mkdir', '/d')
  assert.deepEqual(await run(vm, 'readdir', '/d'), [], 'a directory removed and made again is empty')
})

test('a call that fails leaves the files unchanged; changes inside a call are seen by that call', async (t) => {
  const vm = await deployVM(t, FILES_SCRIPT)
  const before = vm.filesArchive.version
  const err = await callError(vm, 'writeThenFail')
  assert.equal(err.message, 'changed my mind')
  assert.equal(vm.filesArchive.version, before)
  assert.equal((await callError(vm, 'run', ['readFile', '/partial.txt'])).name, 'NotFound')
  const listing = await vm.executeCall({
    methodName: 'batch',
    args: [
      [
        ['mkdir', '/a'],
        ['writeFile', '/a/1', 'one'],
        ['writeFile', '/a/2', 'two'],
        ['unlink', '/a/1'],
        ['mkdir', '/a/sub'],
        ['writeFile', '/a/sub/x', 'x'],
        ['rmdir', '/a/sub', { recursive: true }],
      ],
    ],
  })
  assert.deepEqual(listing, ['a', 'a/2'])
  assert.deepEqual(await vm.filesArchive.readdir('/a'), ['2'])
})

test('getInfo names the logged archive; history lists changes up to the call', async (t) => {
  const vm = await deployVM(t, FILES_SCRIPT, { title: 'Info VM' })
  await run(vm, 'writeFile', '/one', '1')
  const info = (await run(vm, 'getInfo')) as { key: string; url: string; version: number; title: string }
  assert.equal(info.key, vm.filesArchive.key)
  assert.equal(info.url, vm.filesArchive.url)
  assert.equal(info.title, 'Info VM')
  assert.equal(info.version, vm.filesArchive.version)
  const history = (await run(vm, 'history')) as { type: string; path: string; version: number }[]
  assert.deepEqual(
    history.map((h) => [h.type, h.path]),
    [['put', '/one']],
  )
  assert.equal(history[0].version, vm.filesArchive.version)
})

test('the host reads and writes the archive through the same API (out of band)', async (t) => {
  const vm = await deployVM(t, FILES_SCRIPT)
  await vm.filesArchive.mkdir('/host')
  await vm.filesArchive.writeFile('/host/note.txt', 'from the host')
  assert.equal(await run(vm, 'readFile', '/host/note.txt'), 'from the host')
  assert.deepEqual(await vm.filesArchive.readdir('/'), ['host'])
  assert.equal((await vm.filesArchive.stat('/host/note.txt')).size, 13)
  await assert.rejects(vm.filesArchive.readFile('/nope'), { name: 'NotFound', code: 'ERR_NOT_FOUND' })
  const old = vm.filesArchive.checkout(vm.filesArchive.version - 1)
  await assert.rejects(old.readFile('/host/note.txt'), { name: 'NotFound' })
  await old.close()
})

test('what the VM API says of stat, history and a caught out-of-memory holds', async (t) => {
  const vm = await deployVM(
    t,
    `exports.write = (p) => System.files.writeFile(p, 'x')
exports.stat = async (p) => { const s = await System.files.stat(p); return { size: s.size, mtime: s.mtime.getTime(), isDate: s.mtime instanceof Date } }
exports.rawStat = (p) => System.files.stat(p)
exports.ownWrites = async () => { await System.files.writeFile('/mine', 'y'); return [(await System.files.history()).map((h) => h.path), await System.files.readFile('/mine')] }
exports.oom = () => { try { const a = []; for (;;) a.push(new Array(100000).fill(1)) } catch (e) { return [e.name, e.message, e instanceof Error] } }
exports.overflow = () => { try { const f = () => f(); f() } catch (e) { return [e.name, e.message] } }
exports.uncaughtOverflow = () => { const f = () => f(); f() }`,
    { limits: { memoryBytes: 32 * 1024 * 1024 } },
  )
  await vm.executeCall({ methodName: 'write', args: ['/a'] })
  const stat = (await vm.executeCall({ methodName: 'stat', args: ['/a'] })) as { size: number; mtime: number; isDate: boolean }
  assert.equal(stat.size, 1)
  assert.equal(stat.isDate, true)
  assert.equal(stat.mtime, ((await vm.callLog.get(1)) as CallEntry).timestamp, 'mtime is the logged time of the call that wrote it')
  await assert.rejects(vm.executeCall({ methodName: 'rawStat', args: ['/a'] }), { code: 'ERR_ENCODING' })
  assert.deepEqual(
    await vm.executeCall({ methodName: 'ownWrites' }),
    [['/a'], 'y'],
    "history is the archive as the call found it; the call's own write is read back",
  )
  assert.deepEqual(await vm.executeCall({ methodName: 'oom' }), ['InternalError', 'out of memory', true])
  assert.deepEqual(await vm.executeCall({ methodName: 'overflow' }), ['InternalError', 'stack overflow'])
  await assert.rejects(vm.executeCall({ methodName: 'uncaughtOverflow' }), { name: 'StackOverflow', code: 'ERR_STACK_OVERFLOW' })
})
