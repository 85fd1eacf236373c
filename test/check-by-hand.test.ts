/**
 * The worked example of docs/log-format.md ("Checking a VM by hand"): the program in that section,
 * taken from the doc as it stands, checks a VM deployed here with stock Hypercore and Hyperdrive
 * alone, and reports what LibVMS knows about the VM.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import Corestore from 'corestore'
import Hyperdrive from 'hyperdrive'
import { CallLog, VM } from '../src/index.js'
import { tempDir } from './helpers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MARKER = '// check-by-hand.mjs'
const STOCK = new Set(['corestore', 'hypercore', 'hyperdrive', 'hypercore-crypto'])

const SCRIPT = `
const fs = System.files
exports.write = async (path, text) => { await fs.writeFile(path, text) }
exports.mkdirs = async (...paths) => { for (const p of paths) await fs.mkdir(p) }
exports.writeMany = async (files) => { for (const [p, text] of files) await fs.writeFile(p, text) }
exports.count = () => 1
`

interface Report {
  ok: boolean
  failures: string[]
  log: {
    key: string
    manifestHash: string
    signer: string
    manifestVersion: number
    length: number
    treeHash: string
    signatureValid: boolean
  }
  entriesDecoded: number
  archive: {
    key: string
    blobsKey: string
    header: string | null
    version: number
    blobsLength: number
    firstWriteVersion: number | null
    firstBatchKeys: number | null
    signaturesValid: boolean
  }
  digests: { checked: number; matching: number; last: unknown; now: unknown; lastMatches: boolean }
  files: { path: string; size: number; sha256: string }[]
}

/** The program of the doc's section: the one ```js block whose first line is the marker. */
async function programFromDoc(): Promise<string> {
  const doc = await readFile(join(ROOT, 'docs', 'log-format.md'), 'utf8')
  const blocks = [...doc.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]).filter((code) => code.startsWith(`${MARKER} `))
  assert.equal(blocks.length, 1, `docs/log-format.md holds exactly one \`\`\`js block starting with "${MARKER}"`)
  return blocks[0]
}

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Every file under `dir` and a hash of its bytes. */
async function snapshotDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    out[relative(dir, path)] = sha256(await readFile(path))
  }
  return out
}

/** Runs `file` with node on `vmDir`; resolves with its exit code, output and last line parsed. */
function runProgram(file: string, vmDir: string): Promise<{ code: number | null; stdout: string; stderr: string; report: Report }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, vmDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d
    })
    child.on('error', reject)
    child.on('close', (code) => {
      const lines = stdout.trim().split('\n')
      try {
        resolve({ code, stdout, stderr, report: JSON.parse(lines[lines.length - 1]) as Report })
      } catch {
        reject(new Error(`the program printed no report (exit ${code}):\n${stdout}\n${stderr}`))
      }
    })
  })
}

test('docs/log-format.md: the by-hand check of a VM runs with stock Hypercore and Hyperdrive and agrees with LibVMS', async (t) => {
  const code = await programFromDoc()
  const imports = [...code.matchAll(/^import\s[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1])
  assert.ok(imports.length > 0)
  for (const specifier of imports) {
    assert.ok(STOCK.has(specifier) || specifier.startsWith('node:'), `the program imports only stock packages, not ${specifier}`)
  }
  assert.doesNotMatch(code, /require\(|libvms|\/src\//, 'nor anything of LibVMS')

  // Inside the repo, so that the program resolves the packages from its node_modules.
  const scratchRoot = join(ROOT, '.tmp-check')
  await mkdir(scratchRoot, { recursive: true })
  const scratch = await mkdtemp(join(scratchRoot, 'run-'))
  t.after(async () => {
    await rm(scratch, { recursive: true, force: true })
    await rmdir(scratchRoot).catch(() => {}) // left when another run still uses it
  })
  const program = join(scratch, 'check-by-hand.mjs')
  await writeFile(program, code)

  // A VM whose calls write nested files (one first, alone), a folder tree, a file of two blobs
  // blocks, an empty file, nothing, and an overwrite.
  const vmDir = join(await tempDir(t), 'vm')
  const vm = new VM(SCRIPT)
  await vm.deploy({ dir: vmDir, title: 'by hand' })
  const big = 'B'.repeat(70_000)
  const expected: Record<string, string> = {
    '/notes/2024/b.txt': big,
    '/notes/2024/june/a.txt': 'A',
    '/notes/empty.txt': '',
    '/readme.txt': 'hello again',
  }
  try {
    await vm.executeCall({ methodName: 'write', args: ['/readme.txt', 'hello'] })
    await vm.executeCall({ methodName: 'mkdirs', args: ['/notes', '/notes/2024', '/notes/2024/june'] })
    await vm.executeCall({
      methodName: 'writeMany',
      args: [
        [
          ['/notes/2024/june/a.txt', 'A'],
          ['/notes/2024/b.txt', big],
          ['/notes/empty.txt', ''],
        ],
      ],
    })
    await vm.executeCall({ methodName: 'count' })
    await vm.executeCall({ methodName: 'write', args: ['/readme.txt', 'hello again'] })
  } finally {
    await vm.close()
  }
  const logKey = vm.callLog.key
  const archiveKey = vm.filesArchive.key
  // What LibVMS itself reads in the stopped VM's dir.
  const log = await CallLog.open(vmDir)
  const entries = await log.list()
  await log.close()

  const before = await snapshotDir(vmDir)
  const { code: exit, stdout, stderr, report } = await runProgram(program, vmDir)
  assert.equal(exit, 0, `the program exits 0 on a sound VM:\n${stdout}\n${stderr}`)
  assert.deepEqual(await snapshotDir(vmDir), before, 'the program writes nothing in the dir')

  assert.equal(report.ok, true)
  assert.deepEqual(report.failures, [])
  assert.equal(report.log.key, logKey)
  assert.equal(report.log.manifestHash, logKey, 'the log key is its manifest hash')
  assert.match(report.log.signer, /^[0-9a-f]{64}$/)
  assert.notEqual(report.log.signer, logKey, "the signer's public key is not the key")
  assert.equal(report.log.manifestVersion, 1)
  assert.equal(report.log.signatureValid, true)
  assert.equal(report.log.length, entries.length)
  assert.equal(report.entriesDecoded, entries.length)
  assert.equal(report.archive.key, archiveKey)
  assert.equal(report.archive.header, 'hyperbee')
  assert.equal(report.archive.signaturesValid, true)
  assert.equal(report.archive.firstWriteVersion, 2, 'the first write (one file): the header block and one node')
  assert.equal(report.archive.firstBatchKeys, 1)
  assert.equal(entries[1].files.version, 2)
  const last = entries[entries.length - 1].files
  assert.deepEqual(report.digests.last, last)
  assert.deepEqual(report.digests.now, last)
  assert.equal(report.digests.lastMatches, true)
  assert.equal(report.digests.matching, entries.length)
  assert.equal(report.archive.version, last.version)
  assert.equal(report.archive.blobsLength, last.blobsLength)
  assert.deepEqual(
    report.files,
    Object.entries(expected).map(([path, text]) => ({ path, size: Buffer.byteLength(text), sha256: sha256(text) })),
  )

  // A file written into the archive outside the VM, with stock Hyperdrive: the history still
  // matches the log, but the last entry no longer is the archive.
  const store = new Corestore(join(vmDir, 'corestore'))
  const drive = new Hyperdrive(store.namespace('files'))
  await drive.put('/extra.txt', Buffer.from('not logged'))
  await drive.close()
  await store.close()
  const tampered = await runProgram(program, vmDir)
  assert.equal(tampered.code, 1, 'the program exits 1 when a check fails')
  assert.equal(tampered.report.ok, false)
  assert.deepEqual(tampered.report.failures, ["the last entry's digest is the archive as it is now"])
  assert.equal(tampered.report.digests.matching, entries.length)
  assert.equal(tampered.report.digests.lastMatches, false)
  assert.ok(tampered.report.files.some((f) => f.path === '/extra.txt'))
})
