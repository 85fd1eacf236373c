/**
 * Execution proofs (src/audit/execution-proof.ts): a host's signed log that does not replay as
 * logged becomes a file anyone can check offline. (Fork proofs are in receipts.test.ts; every lie of
 * the tamper matrix is proven in tamper.test.ts.)
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import type { ProofStart } from '../src/audit/execution-proof.js'
import { type CallEntry, CallLog, type ExecutionProof, generateKeyPair, type LogEntry, Verifier, VM } from '../src/index.js'
import { encodeSnapshot } from '../src/ledger/snapshot.js'
import { SnapshotStore } from '../src/ledger/snapshot-store.js'
import { exec, nodevms, SCRIPTS, stop } from './cli-helpers.js'
import { deployVM, lyingCopy, tempDir } from './helpers.js'
import { connect, serve } from './rpc-helpers.js'

const NOTES = `
let n = 0
exports.add = async (text) => {
  n++
  await System.files.writeFile('/note' + n, text)
  return { n, by: System.caller.id }
}`

/** A log signed by its own new key holding `entries` (the "host" is whoever holds that key). */
async function signedLog(t: TestContext, entries: LogEntry[]): Promise<CallLog> {
  const log = await CallLog.create(join(await tempDir(t), 'log'))
  t.after(() => log.close())
  await log.append(entries)
  return log
}

async function honestEntries(t: TestContext, calls = 6): Promise<LogEntry[]> {
  const vm = await deployVM(t, NOTES)
  for (let i = 1; i <= calls; i++) await vm.executeCall({ methodName: 'add', args: [`text ${i}`], userId: `u${i % 2}` })
  return ((await vm.callLog.list()) as LogEntry[]).map((e) => structuredClone(e))
}

/** Checks a proof in a fresh process that has nothing but the proof: no storage of the log, no network. */
function checkInAnotherProcess(proof: unknown): { holds: boolean; what?: string; why?: string; seq?: number } {
  const checked = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `import('${new URL('../src/index.ts', import.meta.url).href}').then(async (m) => {
        const chunks = []
        for await (const chunk of process.stdin) chunks.push(chunk)
        console.log(JSON.stringify(await m.Verifier.checkProof(JSON.parse(Buffer.concat(chunks).toString()))))
      })`,
    ],
    { input: JSON.stringify(proof), encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname, timeout: 60_000 },
  )
  assert.equal(checked.status, 0, checked.stderr)
  return JSON.parse(checked.stdout)
}

test('an edited result becomes an execution proof: entries 0..seq and a receipt, checked in another process with nothing but the file', async (t) => {
  const entries = await honestEntries(t)
  Object.assign(entries[3] as CallEntry, { result: { n: 30, by: 'u1' } })
  const log = await signedLog(t, entries)
  await assert.rejects(Verifier.verify(log, null), { code: 'ERR_DIVERGENCE' })
  const { proof, verdict } = await Verifier.proveDivergence(log, 3)
  assert.ok(verdict.holds, verdict.holds ? '' : verdict.why)
  assert.equal(verdict.seq, 3)
  assert.equal(verdict.log, log.key)
  assert.match(verdict.what, /call 3 \(add by caller u1\) diverges in result/)
  // Only what replay reads: the entries up to the divergent one (the receipt carries that one).
  assert.equal(proof.kind, 'execution')
  assert.equal(proof.entries.length, 3)
  assert.equal(proof.receipt.seq, 3)
  const size = JSON.stringify(proof).length
  const logBytes = entries.slice(0, 4).reduce((sum, e) => sum + JSON.stringify(e).length, 0)
  assert.ok(size < logBytes * 1.4 + 4096, `a proof of ${size} bytes for ${logBytes} bytes of entries`)
  t.diagnostic(`execution proof: ${size} bytes for 4 entries (${logBytes} bytes of entries)`)

  const offline = checkInAnotherProcess(proof)
  assert.equal(offline.holds, true, offline.why)
  assert.equal(offline.seq, 3)
})

test('an execution proof altered anywhere does not hold, nor does one of an honest log', async (t) => {
  const entries = await honestEntries(t)
  const honest = await signedLog(t, structuredClone(entries))
  const forHonest = await Verifier.proveDivergence(honest, 4)
  assert.equal(forHonest.verdict.holds, false)
  assert.match(forHonest.verdict.holds ? '' : forHonest.verdict.why, /replay as logged/)

  Object.assign(entries[4] as CallEntry, { caller: 'mallory' })
  const lying = await signedLog(t, entries)
  const { proof } = await Verifier.proveDivergence(lying, 4)
  const holds = async (p: unknown) => (await Verifier.checkProof(p)).holds
  assert.equal(await holds(proof), true)

  const alter = (change: (p: ExecutionProof) => void): ExecutionProof => {
    const p = structuredClone(proof)
    change(p)
    return p
  }
  const flipByte = (text: string, at: number): string => {
    const bytes = Buffer.from(text, 'base64')
    bytes[at] ^= 0x01
    return bytes.toString('base64')
  }
  const alterations: [string, ExecutionProof | unknown][] = [
    ['one byte of an earlier entry', alter((p) => (p.entries[2] = flipByte(p.entries[2], 20)))],
    ['one byte of the receipt', alter((p) => (p.receipt.proof = flipByte(p.receipt.proof, 40)))],
    ['an entry dropped', alter((p) => p.entries.splice(1, 1))],
    ['two entries swapped', alter((p) => p.entries.splice(1, 2, p.entries[2], p.entries[1]))],
    ['another seq named', alter((p) => (p.seq = 3))],
    ['another log named', alter((p) => (p.log = 'ab'.repeat(32)))],
    ['the honest log’s receipt', alter((p) => (p.receipt = forHonest.proof.receipt))],
    ['another version', alter((p) => ((p as { version: number }).version = 2))],
    ['entries that are not base64', alter((p) => (p.entries[0] = `${p.entries[0]}!`))],
    ['no entries', alter((p) => ((p as { entries: unknown }).entries = null))],
    ['not a proof', 'not a proof'],
  ]
  for (const [what, altered] of alterations) assert.equal(await holds(altered), false, what)
})

const PADDED = `
exports.init = async () => { await System.files.mkdir('/notes') }
let n = 0
exports.add = async (k, pad) => {
  n += k
  if (k % 3 === 0) await System.files.writeFile('/notes/' + (k % 4), 'note ' + n + ' by ' + System.caller.id)
  return { n, luck: Math.random(), padded: pad.length }
}`

test('an execution proof starts at the checkpoint before the lie when that is smaller: the snapshot the log states, the archive up to it, the entries after, nodes for the rest', async (t) => {
  const vm = await deployVM(t, PADDED, { checkpoints: { every: 20, keep: 100 } })
  const pad = 'x'.repeat(10_000)
  for (let i = 1; i <= 120; i++) await vm.executeCall({ methodName: 'add', args: [i, pad], userId: `u${i % 3}` })
  const snapshots = new SnapshotStore(vm.dir as string, 100)
  for (let tries = 0; tries < 100 && !(await snapshots.seqs()).includes(120); tries++) await new Promise((r) => setTimeout(r, 20))
  const honest = await Verifier.proveDivergence(vm.callLog, 110, { snapshots, filesArchive: vm.filesArchive })
  assert.equal(honest.verdict.holds, false, 'an honest log proves nothing, from a checkpoint or not')

  // The host logs another result at seq 110, with its own key.
  const log = await lyingCopy(t, vm, (entries) => Object.assign(entries[110] as CallEntry, { result: { n: 1, luck: 0, padded: 1 } }))
  const whole = await Verifier.proveDivergence(log, 110)
  const { proof, verdict } = await Verifier.proveDivergence(log, 110, { snapshots, filesArchive: vm.filesArchive })
  assert.ok(verdict.holds, verdict.holds ? '' : verdict.why)
  assert.equal(verdict.seq, 110)
  assert.equal(proof.start?.seq, 100)
  assert.equal(proof.entries.length, 10, 'entries 100 to 109; the receipt carries 110')
  assert.ok(proof.start.nodes.length > 0 && proof.start.nodes.length < 16, `${proof.start.nodes.length} nodes stand for entries 1 to 99`)
  const size = JSON.stringify(proof).length
  const wholeSize = JSON.stringify(whole.proof).length
  assert.ok(size < wholeSize, `${size} bytes from the checkpoint against ${wholeSize} for every entry`)
  t.diagnostic(`execution proof of seq 110: ${size} bytes from checkpoint 100, ${wholeSize} bytes with every entry`)
  const offline = checkInAnotherProcess(proof)
  assert.equal(offline.holds, true, offline.why)
  assert.equal(offline.seq, 110)

  // Altered anywhere, it does not hold.
  const flip = (text: string, at: number): string => {
    const bytes = Buffer.from(text, 'base64')
    bytes[at % bytes.length] ^= 0x01
    return bytes.toString('base64')
  }
  const start = proof.start
  const snapshot80 = encodeSnapshot(await snapshots.read(80)).toString('base64')
  const alterations: [string, (p: ExecutionProof & { start: ProofStart }) => void][] = [
    ['a byte of the snapshot', (p) => (p.start.snapshot = flip(p.start.snapshot, 5000))],
    ['the snapshot of another checkpoint', (p) => (p.start.snapshot = snapshot80)],
    ['a byte of an archive block', (p) => (p.start.archive.db[1] = flip(p.start.archive.db[1], 3))],
    ['an archive block dropped', (p) => p.start.archive.db.pop()],
    ['a byte of the init entry', (p) => (p.start.init = flip(p.start.init, 30))],
    [
      'a node hash',
      (p) => (p.start.nodes[0].hash = `${p.start.nodes[0].hash.slice(0, 63)}${p.start.nodes[0].hash.endsWith('0') ? '1' : '0'}`),
    ],
    ['a node dropped', (p) => p.start.nodes.pop()],
    ['a node standing for entry 0', (p) => p.start.nodes.push({ index: 0, size: 1, hash: '00'.repeat(32) })],
    ['another start seq', (p) => (p.start.seq = 101)],
    ['an entry dropped', (p) => p.entries.shift()],
    ['a byte of an entry', (p) => (p.entries[4] = flip(p.entries[4], 40))],
    ['no start, the same entries', (p) => delete (p as Partial<typeof p>).start],
    // Refused before any block is written into the replay's archive (a million empty blocks took GBs).
    ['an archive block too many', (p) => p.start.archive.db.push(p.start.archive.db[1])],
    ['a million empty archive blocks', (p) => (p.start.archive.db = p.start.archive.db.concat(Array<string>(1_000_000).fill('')))],
  ]
  const refusedEarly = /its archive is not the \d+ metadata and \d+ blobs blocks entry 100 records|it holds over \d+ bytes/
  for (const [what, change] of alterations) {
    const altered = structuredClone({ ...proof, start })
    change(altered)
    const checked = await Verifier.checkProof(altered)
    assert.equal(checked.holds, false, what)
    if (!checked.holds) t.diagnostic(`${what}: ${checked.why}`)
    if (what.includes('archive block') && !checked.holds && !what.includes('byte')) assert.match(checked.why, refusedEarly, what)
  }
})

test('a log of another engine version proves nothing here: inconclusive, not a divergence', async (t) => {
  const entries = await honestEntries(t, 3)
  Object.assign(entries[0], { engine: { ...(entries[0] as { engine: object }).engine, version: '0.0.1' } })
  Object.assign(entries[2] as CallEntry, { result: { n: 99, by: 'u0' } })
  const { verdict } = await Verifier.proveDivergence(await signedLog(t, entries), 2)
  assert.ok(!verdict.holds && /inconclusive here: .*engine/i.test(verdict.why), verdict.holds ? verdict.what : verdict.why)
})

test('production mode: a logged call whose arguments no longer match its caller’s signature is proven', async (t) => {
  const vm = await deployVM(t, NOTES, { auth: 'production' })
  const server = await serve(t, { '/': vm })
  const alice = generateKeyPair()
  const client = await connect(t, server.url as string, { keyPair: alice })
  for (let i = 1; i <= 3; i++) await client.call('add', `text ${i}`)
  // Signed calls name their VM's log: the host rewrites its own log, with its own key.
  const entries = (await vm.callLog.list()) as LogEntry[]
  await vm.callLog.core.truncate(2)
  await vm.callLog.append({ ...(entries[2] as CallEntry), args: ['forged'] })
  const { verdict } = await Verifier.proveDivergence(vm.callLog, 2)
  assert.ok(verdict.holds && verdict.seq === 2, verdict.holds ? verdict.what : verdict.why)
})

test('command line, across processes: the host rewrites its log while stopped, verify --proof writes an execution proof, check-proof confirms it with no network', async (t) => {
  const work = await tempDir(t)
  const dir = join(work, 'host')
  const host = await exec(t, join(SCRIPTS, 'counter.js'), ['--dir', dir])
  for (let i = 0; i < 3; i++) assert.equal((await nodevms(['call', host.served.rpcUrl, 'increment'])).code, 0)
  await stop(host.child)
  // With its own key, the host rewrites call 2's result: the log no longer replays.
  const log = await CallLog.open(dir)
  const entries = (await log.list()) as LogEntry[]
  await log.core.truncate(2)
  await log.append([{ ...entries[2], result: 7 } as unknown as LogEntry, entries[3]])
  await log.close()

  const proofFile = join(work, 'proof.json')
  const verified = await nodevms(['verify', dir, '--proof', proofFile])
  assert.equal(verified.code, 1, verified.stdout + verified.stderr)
  assert.match(verified.stdout, /execution proof written to .*proof\.json \(\d+ bytes, 3 entries\)/)
  const proven = await nodevms(['check-proof', proofFile])
  assert.equal(proven.code, 0, proven.stdout + proven.stderr)
  assert.match(proven.stdout, /^holds: log [0-9a-f]{64}: call 2 \(increment by an anonymous caller\) diverges in result/)
  const json = JSON.parse((await nodevms(['check-proof', proofFile, '--json'])).stdout)
  assert.equal(json.holds, true)
  assert.equal(json.seq, 2)

  // One byte changed in the file's entries, and it no longer holds.
  const proof = JSON.parse(await readFile(proofFile, 'utf8')) as ExecutionProof
  const bytes = Buffer.from(proof.entries[1], 'base64')
  bytes[bytes.length - 3] ^= 0x01
  proof.entries[1] = bytes.toString('base64')
  await writeFile(proofFile, JSON.stringify(proof))
  const altered = await nodevms(['check-proof', proofFile])
  assert.equal(altered.code, 1, altered.stdout + altered.stderr)
  assert.match(altered.stdout, /^does not hold: /)

  // An honest VM's verify --proof writes nothing and says it verified.
  const honestDir = join(work, 'honest')
  const vm = new VM('exports.ping = () => 1')
  await vm.deploy({ dir: honestDir })
  await vm.executeCall({ methodName: 'ping' })
  await vm.close()
  const honestProof = join(work, 'honest-proof.json')
  const clean = await nodevms(['verify', honestDir, '--proof', honestProof])
  assert.equal(clean.code, 0, clean.stdout + clean.stderr)
  await assert.rejects(readFile(honestProof), { code: 'ENOENT' })
})
