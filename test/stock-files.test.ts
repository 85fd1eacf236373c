/**
 * A VM's files archive read by the stock Hyperdrive tools: a Corestore replicating from the host's
 * WebSocket, Hyperdrive 13's own list/readdir/entry/get, and a mirror into a Localdrive folder.
 * Under files format 1 (new VMs) they see exactly the VM's files; a format 0 archive (folders as
 * blob-less file entries) still replays and verifies, as it always did.
 */
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import Corestore from 'corestore'
import Hyperdrive from 'hyperdrive'
import Localdrive from 'localdrive'
import { LogFormatError } from '../src/errors.js'
import { CallLog, type InitEntry, type LogEntry, RPCServer, Verifier, VM } from '../src/index.js'
import { FOLDERS_KEY_PREFIX } from '../src/ledger/drive-format.js'
import { deployVM, replicateOverWebSocket, tempDir } from './helpers.js'

/** Nested and empty folders, binary and text files; a file made a folder and a folder made a file in one call. */
const TREE = `
const f = System.files
exports.init = async () => {
  await f.mkdir('/docs')
  await f.mkdir('/docs/deep')
  await f.mkdir('/docs/deep/er')
  await f.writeFile('/docs/deep/er/leaf.txt', 'leaf')
  await f.writeFile('/docs/readme.md', '# docs')
  await f.mkdir('/empty')
  await f.mkdir('/empty/inner')
  await f.mkdir('/docs/blank')
  await f.writeFile('/top.txt', 'top')
  await f.writeFile('/was-file', 'soon a folder')
  await f.mkdir('/was-folder')
  await f.writeFile('/was-folder/x', 'x')
}
exports.change = async () => {
  const bytes = new Uint8Array(70000)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 255
  await f.writeFile('/docs/deep/blob.bin', bytes)
  await f.writeFile('/empty.txt', '')
  await f.unlink('/was-file')
  await f.mkdir('/was-file')
  await f.mkdir('/was-file/in')
  await f.rmdir('/was-folder', { recursive: true })
  await f.writeFile('/was-folder', 'now a file')
  await f.mkdir('/gone')
  await f.rmdir('/gone')
  await f.writeFile('/top.txt', 'top, rewritten')
}
/** Every path System.files shows, with its type and contents (base64). */
exports.snapshot = async () => {
  const out = []
  for (const rel of await f.readdir('/', { recursive: true })) {
    const path = '/' + rel
    const st = await f.stat(path)
    out.push(st.isDirectory() ? { path, type: 'directory' } : { path, type: 'file', data: await f.readFile(path, 'base64') })
  }
  return out
}
exports.ls = (path) => f.readdir(path)
exports.stat = async (path) => { const st = await f.stat(path); return { dir: st.isDirectory(), size: st.size, mtime: +st.mtime } }
exports.rm = (path) => f.rmdir(path)
exports.err = async (op, ...args) => { try { await f[op](...args); return 'ok' } catch (e) { return e.name } }
`

type Snapshot = { path: string; type: 'file' | 'directory'; data?: string }[]

/** A stock Corestore replicating from the host over its WebSocket, and a stock Hyperdrive on the VM's archive. */
async function stockDrive(t: TestContext, vm: VM): Promise<Hyperdrive> {
  const server = new RPCServer()
  server.mount('/vm', vm)
  await server.listen(0)
  t.after(() => server.close())
  const store = new Corestore(join(await tempDir(t), 'stock'))
  t.after(() => store.close())
  const done = store.findingPeers()
  const ws = await replicateOverWebSocket(`${server.url}/vm`, store, true)
  t.after(() => ws.terminate())
  done()
  const drive = new Hyperdrive(store, vm.filesArchive.drive.key)
  t.after(() => drive.close())
  await drive.ready()
  await drive.core.update({ wait: true })
  assert.equal(drive.core.length, vm.filesArchive.version, 'the stock drive has the whole archive')
  return drive
}

/** Every file and folder under `root` on disk: paths from the root, files with their contents (base64). */
async function onDisk(root: string): Promise<{ files: Map<string, string>; folders: string[] }> {
  const files = new Map<string, string>()
  const folders: string[] = []
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const path = `/${join(entry.parentPath ?? entry.path, entry.name).slice(root.length + 1)}`
    if (entry.isDirectory()) folders.push(path)
    else files.set(path, (await readFile(join(root, path))).toString('base64'))
  }
  return { files, folders: folders.sort() }
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}

test('files format 1: a stock Hyperdrive mirrors the archive into a Localdrive byte for byte; list, readdir, entry and get agree with System.files', async (t) => {
  const vm = await deployVM(t, TREE)
  assert.equal(vm.callLog.length, 1)
  assert.equal(((await vm.callLog.get(0)) as InitEntry).filesFormat, 1, 'new VMs record files format 1')
  await vm.executeCall({ methodName: 'change' })
  const snapshot = (await vm.executeCall({ methodName: 'snapshot' })) as Snapshot
  const vmFiles = new Map(snapshot.filter((e) => e.type === 'file').map((e) => [e.path, e.data as string]))
  const vmFolders = snapshot.filter((e) => e.type === 'directory').map((e) => e.path)
  assert.deepEqual(vmFolders, [
    '/docs',
    '/docs/blank',
    '/docs/deep',
    '/docs/deep/er',
    '/empty',
    '/empty/inner',
    '/was-file',
    '/was-file/in',
  ])
  assert.equal(vmFiles.size, 6)

  const drive = await stockDrive(t, vm)
  const out = join(await tempDir(t), 'mirror')
  await drive.mirror(new Localdrive(out)).done()
  const mirrored = await onDisk(out)
  assert.deepEqual([...mirrored.files.keys()].sort(), [...vmFiles.keys()].sort(), 'the mirror holds exactly the VM’s files')
  for (const [path, data] of vmFiles) assert.equal(mirrored.files.get(path), data, `${path} is byte for byte the VM’s`)
  // Hyperdrive has no empty folders: the mirror has the folders the files imply, System.files also the empty ones.
  const holdingFiles = vmFolders.filter((folder) => [...vmFiles.keys()].some((p) => p.startsWith(`${folder}/`)))
  assert.deepEqual(mirrored.folders, holdingFiles)
  assert.deepEqual(holdingFiles, ['/docs', '/docs/deep', '/docs/deep/er'])

  const listed = await collect(drive.list('/'))
  assert.deepEqual(
    listed.map((e) => e.key),
    [...vmFiles.keys()].sort(),
  )
  for (const entry of listed) {
    assert.equal(entry.value.blob?.byteLength ?? 0, Buffer.from(vmFiles.get(entry.key) as string, 'base64').byteLength)
    assert.equal(((await drive.get(entry.key)) ?? Buffer.alloc(0)).toString('base64'), vmFiles.get(entry.key))
  }
  for (const folder of ['/', '/docs', '/docs/deep']) {
    const names = (await vm.executeCall({ methodName: 'ls', args: [folder] })) as string[]
    const stock = await collect(drive.readdir(folder))
    // The stock listing is System.files' one without the folders that hold no file.
    const prefix = folder === '/' ? '' : folder
    assert.deepEqual(
      stock.sort(),
      names.filter((n) => !vmFolders.includes(`${prefix}/${n}`) || holdingFiles.includes(`${prefix}/${n}`)),
      folder,
    )
  }
  for (const folder of vmFolders) assert.equal(await drive.entry(folder), null, `${folder} is no file entry`)
  assert.equal(((await drive.entry('/was-folder'))?.value.blob?.byteLength ?? 0) > 0, true)

  // The folder records lie in a range Hyperdrive never reads.
  const records = await collect(drive.db.createReadStream({ gt: FOLDERS_KEY_PREFIX, lt: 'folders\u0001' }))
  assert.deepEqual(
    records.map((n) => n.key),
    vmFolders.map((p) => FOLDERS_KEY_PREFIX + p),
  )

  // And the log replays and verifies, archives included.
  const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: vm.filesArchive.url })
  t.after(() => replay.close())
  await Verifier.compareLogs(vm.callLog, replay.callLog)
  await Verifier.compareArchives(vm.filesArchive, replay.filesArchive)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('files format 1: System.files keeps its promises on folders — empty folders, stat, readdir of implicit and explicit folders, rmdir, every error', async (t) => {
  const vm = await deployVM(t, TREE)
  const call = (methodName: string, ...args: unknown[]) => vm.executeCall({ methodName, args })
  assert.deepEqual(await call('ls', '/empty'), ['inner'])
  assert.deepEqual(await call('ls', '/empty/inner'), [])
  assert.deepEqual(await call('ls', '/'), ['docs', 'empty', 'top.txt', 'was-file', 'was-folder'])
  const st = (await call('stat', '/empty/inner')) as { dir: boolean; size: number; mtime: number }
  assert.equal(st.dir, true)
  assert.equal(st.size, 0)
  assert.equal(st.mtime, ((await vm.callLog.get(0)) as InitEntry).timestamp)
  assert.equal(await call('err', 'rmdir', '/empty'), 'DirectoryNotEmpty')
  assert.equal(await call('err', 'mkdir', '/empty'), 'AlreadyExists')
  assert.equal(await call('err', 'mkdir', '/top.txt'), 'AlreadyExists')
  assert.equal(await call('err', 'mkdir', '/nope/sub'), 'ParentNotFound')
  assert.equal(await call('err', 'writeFile', '/top.txt/x', 'x'), 'NotADirectory')
  assert.equal(await call('err', 'writeFile', '/empty', 'x'), 'IsADirectory')
  assert.equal(await call('err', 'readFile', '/empty'), 'IsADirectory')
  assert.equal(await call('err', 'unlink', '/empty'), 'NotAFile')
  assert.equal(await call('err', 'readdir', '/top.txt'), 'NotADirectory')
  assert.equal(await call('err', 'rmdir', '/top.txt'), 'NotADirectory')
  assert.equal(await call('err', 'rmdir', '/missing'), 'NotFound')
  await call('rm', '/empty/inner')
  await call('rm', '/empty')
  assert.deepEqual(await call('ls', '/'), ['docs', 'top.txt', 'was-file', 'was-folder'])
  assert.equal(await call('err', 'stat', '/empty'), 'NotFound')
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('files format 0 and 1 give System.files the same answers and quotas', async (t) => {
  const QUOTA = `${TREE}
exports.fill = async (n) => { let made = 0; try { for (let i = 0; i < n; i++) { await f.mkdir('/q' + i); made++ } } catch (e) { return [made, e.name] } return [made] }`
  const run = async (filesFormat: 0 | 1) => {
    const vm = await deployVM(t, QUOTA, { filesFormat, limits: { maxArchiveEntries: 20 } })
    const results: unknown[] = []
    for (const [methodName, args] of [
      ['change', []],
      ['snapshot', []],
      ['ls', ['/docs']],
      ['stat', ['/was-file']],
      ['rm', ['/docs/blank']],
      ['fill', [30]],
      ['snapshot', []],
    ] as const) {
      const result = await vm.executeCall({ methodName, args: [...args] })
      // The two VMs ran at different times: compare a stat without its mtime.
      results.push(methodName === 'stat' ? { ...(result as object), mtime: undefined } : result)
    }
    const entries = (await vm.callLog.list()) as LogEntry[]
    return { vm, results, init: entries[0] as InitEntry }
  }
  const zero = await run(0)
  const one = await run(1)
  assert.equal(zero.init.filesFormat, undefined, 'format 0 is recorded by leaving the field out')
  assert.equal(one.init.filesFormat, 1)
  assert.deepEqual(one.results, zero.results)
  assert.deepEqual(one.results[5], [7, 'StorageLimitExceeded'], 'maxArchiveEntries counts files and folders in both')
  for (const { vm } of [zero, one]) await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('files format 0: an archive with folders as blob-less entries still replays and verifies; stock tools take its folders for empty files', async (t) => {
  const dir = join(await tempDir(t), 'old')
  const old = new VM(TREE, { filesFormat: 0 })
  await old.deploy({ dir, title: 'format 0' })
  await old.executeCall({ methodName: 'change' })
  const before = (await old.executeCall({ methodName: 'snapshot' })) as Snapshot
  await old.close()
  // Reopened by a LibVMS that writes format 1 for new VMs: it keeps its log's format 0.
  const vm = new VM(TREE)
  await vm.deploy({ dir })
  t.after(() => vm.close())
  await vm.executeCall({ methodName: 'err', args: ['mkdir', '/later'] })
  assert.equal(((await vm.callLog.get(0)) as InitEntry).filesFormat, undefined)
  const entry = await vm.filesArchive.drive.entry('/later')
  assert.deepEqual(entry?.value.metadata?.type, 'directory', 'a format 0 folder is a files entry')
  assert.equal(entry?.value.blob, null)
  const after = (await vm.executeCall({ methodName: 'snapshot' })) as Snapshot
  const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : 1)
  assert.deepEqual([...after].sort(byPath), [...before, { path: '/later', type: 'directory' }].sort(byPath))
  // DatArchive reads any format: the format 0 folders are folders.
  assert.deepEqual(
    await vm.filesArchive.readdir('/', { recursive: true }),
    after.map((e) => e.path.slice(1)),
  )
  assert.equal((await vm.filesArchive.stat('/later')).type, 'directory')
  await Verifier.verify(vm.callLog, vm.filesArchive)
  const replay = await VM.fromCallLog(vm.callLog, { filesArchiveUrl: vm.filesArchive.url })
  t.after(() => replay.close())
  await Verifier.compareLogs(vm.callLog, replay.callLog)
  await Verifier.compareArchives(vm.filesArchive, replay.filesArchive)

  // What stock tools make of it (docs/log-format.md): folders listed as empty files, and a mirror
  // that stops at the first folder holding something.
  const drive = await stockDrive(t, vm)
  assert.ok((await collect(drive.list('/'))).some((e) => e.key === '/docs'))
  await assert.rejects(drive.mirror(new Localdrive(join(await tempDir(t), 'mirror'))).done(), /EEXIST/)
})

test('the files format is part of the log: one this LibVMS does not know is a LogFormatError at seq 0; dropping or adding it is a divergence', async (t) => {
  const vm = await deployVM(t, TREE)
  await vm.executeCall({ methodName: 'change' })
  const entries = (await vm.callLog.list()) as LogEntry[]
  const init = entries[0] as InitEntry
  for (const filesFormat of [2, 0, 1.5, '1']) {
    const log = await CallLog.create(join(await tempDir(t), 'format'))
    t.after(() => log.close())
    await log.append([{ ...init, filesFormat } as unknown as LogEntry, ...entries.slice(1)])
    await assert.rejects(Verifier.verify(log, null), (err: unknown) => {
      assert.ok(err instanceof LogFormatError, String(err))
      assert.equal(err.seq, 0)
      return true
    })
  }
  // Replayed in the other format, the init's folders are written elsewhere: its files digest differs.
  const { filesFormat: _dropped, ...format0 } = init
  const old = await deployVM(t, TREE, { filesFormat: 0 })
  const oldEntries = (await old.callLog.list()) as LogEntry[]
  for (const [name, forged] of [
    ['dropped', [format0, ...entries.slice(1)]],
    ['added', [{ ...oldEntries[0], filesFormat: 1 }, ...oldEntries.slice(1)]],
  ] as const) {
    const log = await CallLog.create(join(await tempDir(t), name))
    t.after(() => log.close())
    await log.append(forged as unknown as LogEntry[])
    await assert.rejects(Verifier.verify(log, null), (err: Error & { seq?: number; field?: string }) => {
      assert.equal(err.seq, 0, `${name}: ${err.message}`)
      assert.equal(err.field, 'files', `${name}: ${err.message}`)
      return true
    })
  }
})
