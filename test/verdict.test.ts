/**
 * A verdict that holds both ways. Each class of attack below is built as the attacker would: forged
 * entries appended with the host's own key (so every signature checks), hostile archives edited with
 * the host's stock Hyperdrive, hostile values made by the script. Each must end in a named outcome.
 * docs/threat-model.md lists these rows with the defence of each.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import type Hypercore from 'hypercore'
import {
  type CallEntry,
  CallLog,
  DEFAULT_AUDIT_CEILING,
  DivergenceError,
  LimitCeilingError,
  type LogEntry,
  LogFormatError,
  Verifier,
  VM,
} from '../src/index.js'
import { nodevms } from './cli-helpers.js'
import { callError, deployVM, expectDivergence, tempDir } from './helpers.js'

const BANK = `
let balance = 0
exports.init = () => { balance = 1000 }
exports.spend = (n) => { balance -= n; return balance }
exports.balance = () => balance
exports.echo = (x) => x
exports.deep = (n) => { let a = []; for (let i = 0; i < n; i++) a = [a]; return a }
exports.store = async (n) => { let a = []; for (let i = 0; i < n; i++) a = [a]; await System.files.writeFile('/x', 'y', a) }
exports.write = async (name) => { await System.files.writeFile('/' + name, 'written by ' + name) }
`

async function bank(t: TestContext, options: { limits?: Record<string, number> } = {}): Promise<VM> {
  const vm = await deployVM(t, BANK, options)
  await vm.executeCall({ methodName: 'spend', args: [100], userId: 'alice' })
  await vm.executeCall({ methodName: 'write', args: ['a'], userId: 'alice' })
  return vm
}

/** Appends `entry` to the VM's own log, with its own key: a forged entry every signature check passes. */
async function forge(vm: VM, change: (last: CallEntry) => Record<string, unknown>): Promise<number> {
  const last = (await vm.callLog.get(vm.callLog.length - 1)) as CallEntry
  return vm.callLog.append(change(structuredClone(last)) as unknown as LogEntry)
}

/** Appends raw bytes as the next block of the VM's log. */
async function appendRaw(vm: VM, text: string): Promise<number> {
  const raw = vm.callLog.core.session({ valueEncoding: 'binary' }) as unknown as Hypercore<Buffer>
  try {
    const { length } = await raw.append(Buffer.from(text))
    return length
  } finally {
    await raw.close()
  }
}

function malformedAt(seq: number, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof LogFormatError, `expected a LogFormatError, got ${String(err)}`)
    assert.equal(err.seq, seq)
    assert.match(err.message, pattern)
    return true
  }
}

// ---- forged logs that must not pass ----

for (const method of ['init', 'constructor', 'hasOwnProperty', 'toString', '__proto__', 'neverExported']) {
  test(`a logged call to ${method} — refused live — is a divergence on audit and on reopen`, async (t) => {
    const vm = await bank(t)
    assert.equal((await callError(vm, method)).code, 'ERR_METHOD_NOT_FOUND')
    const seq = (await forge(vm, (last) => ({ ...last, method, args: [] }))) - 1
    await assert.rejects(Verifier.verify(vm.callLog, vm.filesArchive), expectDivergence(seq, 'method'))
    await assert.rejects(VM.fromCallLog(vm.callLog), expectDivergence(seq, 'method'))
    // The host's own reopen refuses it too: init's effects are never applied twice.
    const dir = vm.dir as string
    await vm.close()
    await assert.rejects(new VM(BANK).deploy({ dir }), expectDivergence(seq, 'method'))
  })
}

test('every admission rule of a live call refuses the same logged entry: args over maxArgsBytes, args in a form no VM logs, oracle values outside a factory', async (t) => {
  const vm = await bank(t, { limits: { maxArgsBytes: 64 } })
  const long = 'z'.repeat(100)
  assert.equal((await callError(vm, 'echo', [long])).code, 'ERR_INVALID_ARGUMENT')
  const lengthBefore = vm.callLog.length
  const seq = (await forge(vm, (last) => ({ ...last, method: 'echo', args: [long] }))) - 1
  assert.equal(seq, lengthBefore)
  await assert.rejects(Verifier.verify(vm.callLog, null), expectDivergence(seq, 'args'))

  const other = await bank(t)
  // {"$esc": ["a", 1]} decodes to {a: 1}, which a live VM logs as {"a": 1}; a bad $bytes likewise.
  const escSeq = (await forge(other, (last) => ({ ...last, method: 'echo', args: [{ $esc: ['a', 1] }] }))) - 1
  await assert.rejects(Verifier.verify(other.callLog, null), expectDivergence(escSeq, 'args'))

  // Only a factory asks its host for oracle values: another VM's log holding one is forged.
  const plain = await bank(t)
  const oracleSeq = (await forge(plain, (last) => ({ ...last, oracle: { vms: [] } }))) - 1
  await assert.rejects(Verifier.verify(plain.callLog, null), expectDivergence(oracleSeq, 'oracle'))
})

// ---- values no host may choke on ----

test('a result nested 2,500 or 4,500 deep is a logged EncodingError; the VM keeps serving and verifies', async (t) => {
  const vm = await bank(t)
  for (const depth of [2500, 4500]) {
    const err = await callError(vm, 'deep', [depth])
    assert.equal(err.code, 'ERR_ENCODING', err.message)
    assert.equal(typeof err.seq, 'number', 'the failed call is logged')
    assert.equal(await vm.executeCall({ methodName: 'balance' }), 900)
  }
  assert.deepEqual(await vm.executeCall({ methodName: 'deep', args: [3] }), [[[[]]]])
  // Arguments too deep are refused before they are queued, and leave no trace.
  let deep: unknown[] = []
  for (let i = 0; i < 2000; i++) deep = [deep]
  const length = vm.callLog.length
  assert.equal((await callError(vm, 'echo', [deep])).code, 'ERR_ENCODING')
  assert.equal(vm.callLog.length, length)
  // A host request with deep arguments fails inside the VM, the same way on every host.
  assert.equal((await callError(vm, 'store', [2500])).code, 'ERR_ENCODING')
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

const DEEP = 100_000
const nested = (inner: string) => '['.repeat(DEEP) + inner + ']'.repeat(DEEP)

test('entries nested 100,000 deep in any field, null entries and non-JSON blocks are LogFormatErrors naming the seq', async (t) => {
  const cases: [string, (last: CallEntry) => string][] = [
    ['args', (last) => JSON.stringify({ ...last, args: ['ARGS'] }).replace('"ARGS"', nested('1'))],
    ['result', (last) => JSON.stringify({ ...last, result: 'RESULT' }).replace('"RESULT"', nested('2'))],
    ['oracle', (last) => JSON.stringify({ ...last, oracle: { vms: 'O' } }).replace('"O"', nested(''))],
    ['an unknown field', (last) => JSON.stringify({ ...last, extra: 'E' }).replace('"E"', nested(''))],
  ]
  for (const [field, build] of cases) {
    const vm = await bank(t)
    const last = (await vm.callLog.get(vm.callLog.length - 1)) as CallEntry
    const seq = (await appendRaw(vm, build(last))) - 1
    await assert.rejects(Verifier.verify(vm.callLog, null), malformedAt(seq, /nested deeper/), field)
  }
  const vm = await bank(t)
  const seq = (await appendRaw(vm, 'null')) - 1
  await assert.rejects(Verifier.verify(vm.callLog, null), malformedAt(seq, /null, not a JSON object/))
  await assert.rejects(vm.callLog.get(seq), malformedAt(seq, /null/))
  const garbled = await bank(t)
  const garbledSeq = (await appendRaw(garbled, '{"type":"call",')) - 1
  await assert.rejects(Verifier.verify(garbled.callLog, null), malformedAt(garbledSeq, /not JSON/))
})

test('an init entry nested 100,000 deep in its result is a LogFormatError at seq 0', async (t) => {
  const vm = await bank(t)
  const entries = (await vm.callLog.list()) as LogEntry[]
  const log = await CallLog.create(join(await tempDir(t), 'deep-init'))
  t.after(() => log.close())
  const raw = log.core.session({ valueEncoding: 'binary' }) as unknown as Hypercore<Buffer>
  await raw.append([
    Buffer.from(JSON.stringify({ ...entries[0], result: 'R' }).replace('"R"', nested(''))),
    ...entries.slice(1).map((e) => Buffer.from(JSON.stringify(e))),
  ])
  await raw.close()
  await assert.rejects(Verifier.verify(log, null), malformedAt(0, /nested deeper/))
})

test('an init entry no deploy writes is a divergence at seq 0: added engine fields, a factory without its exports', async (t) => {
  const vm = await bank(t)
  const entries = (await vm.callLog.list()) as LogEntry[]
  for (const [field, change] of [
    ['engine', (init: Record<string, unknown>) => ({ ...init, engine: { ...(init.engine as object), patched: true } })],
    ['factory', (init: Record<string, unknown>) => ({ ...init, factory: true })],
  ] as const) {
    const log = await CallLog.create(join(await tempDir(t), field))
    t.after(() => log.close())
    await log.append([change(entries[0] as unknown as Record<string, unknown>) as unknown as LogEntry, ...entries.slice(1)])
    await assert.rejects(Verifier.verify(log, null), expectDivergence(0, field))
  }
})

// ---- limits the log claims ----

test("an init entry's limits above the auditor's ceiling are refused before anything is replayed", async (t) => {
  const vm = await deployVM(t, 'exports.spin = () => { setInterval(() => {}, 1); return new Promise(() => {}) }')
  await vm.executeCall({ methodName: 'spin' }).catch(() => {})
  const entries = (await vm.callLog.list()) as LogEntry[]
  for (const [limit, value] of [
    ['computeTicks', 1e12],
    ['computeTicks', 2 ** 53 - 1],
    ['memoryBytes', 2 ** 31],
  ] as const) {
    const lie = structuredClone(entries)
    Object.assign(lie[0], { limits: { ...(lie[0] as { limits: object }).limits, [limit]: value } })
    const log = await CallLog.create(join(await tempDir(t), 'lie'))
    t.after(() => log.close())
    await log.append(lie)
    await assert.rejects(Verifier.verify(log, null), (err: unknown) => {
      assert.ok(err instanceof LimitCeilingError, String(err))
      assert.equal(err.code, 'ERR_LIMIT_CEILING')
      assert.equal(err.limit, limit)
      assert.equal(err.ceiling, DEFAULT_AUDIT_CEILING[limit])
      return true
    })
  }
  // An auditor may set its own ceiling, lower or higher.
  await assert.rejects(Verifier.verify(vm.callLog, null, { maxLimits: { computeTicks: 10 } }), LimitCeilingError)
  await Verifier.verify(vm.callLog, null, { maxLimits: { computeTicks: 10_000 } })
})

test('nodevms verify --max-ticks refuses a log above it (exit 2, ERR_LIMIT_CEILING)', async (t) => {
  const vm = await bank(t)
  const dir = vm.dir as string
  await vm.close()
  const refused = await nodevms(['verify', dir, '--max-ticks', '10'])
  assert.equal(refused.code, 2, refused.stdout + refused.stderr)
  assert.match(refused.stderr, /ERR_LIMIT_CEILING/)
  const verified = await nodevms(['verify', dir, '--max-ticks', '1000', '--json'])
  assert.equal(verified.code, 0, verified.stdout + verified.stderr)
})

// ---- hostile archives, edited with the host's stock Hyperdrive ----

const FILES = 'files\u0000'

test('a dangling file entry (its blob does not exist) is named at once, never waited for', async (t) => {
  const after = await bank(t)
  const drive = after.filesArchive.drive
  await drive.db.put(`${FILES}/dangling`, {
    executable: false,
    linkname: null,
    blob: { blockOffset: 999, blockLength: 1, byteOffset: 0, byteLength: 10 },
    metadata: null,
  })
  await assert.rejects(Verifier.verify(after.callLog, after.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError, String(err))
    assert.equal(err.path, '/dangling')
    assert.match(err.message, /changes after seq 2/)
    return true
  })
  const replay = await VM.fromCallLog(after.callLog)
  t.after(() => replay.close())
  await assert.rejects(Verifier.compareArchives(after.filesArchive, replay.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError, String(err))
    assert.equal(err.path, '/dangling')
    assert.match(err.message, /outside its contents core/)
    return true
  })

  const between = await bank(t)
  await between.filesArchive.drive.db.put(`${FILES}/dangling`, {
    executable: false,
    linkname: null,
    blob: { blockOffset: 999, blockLength: 1, byteOffset: 0, byteLength: 10 },
    metadata: null,
  })
  await between.executeCall({ methodName: 'write', args: ['b'] })
  await assert.rejects(Verifier.verify(between.callLog, between.filesArchive), expectDivergence(3, 'files'))
})

test('a non-normalized path in the archive (/weird/../x) is named as it is', async (t) => {
  const vm = await bank(t)
  const drive = vm.filesArchive.drive
  const blobs = await drive.getBlobs()
  const blob = await blobs.put(Buffer.from('planted'))
  await drive.db.put(`${FILES}/weird/../x`, { executable: false, linkname: null, blob, metadata: null })
  await assert.rejects(Verifier.verify(vm.callLog, vm.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError, String(err))
    assert.equal(err.path, '/weird/../x')
    return true
  })
  const replay = await VM.fromCallLog(vm.callLog)
  t.after(() => replay.close())
  await assert.rejects(Verifier.compareArchives(vm.filesArchive, replay.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError)
    assert.equal(err.path, '/weird/../x')
    return true
  })
})

test('thousands of extra files: the comparison names the first path in key order, walking both archives side by side', async (t) => {
  const vm = await bank(t)
  const drive = vm.filesArchive.drive
  const blob = await (await drive.getBlobs()).put(Buffer.from('extra'))
  const batch = drive.db.batch()
  for (let i = 0; i < 5000; i++) {
    await batch.put(`${FILES}/extra/${String(i).padStart(5, '0')}`, { executable: false, linkname: null, blob, metadata: null })
  }
  await batch.flush()
  const replay = await VM.fromCallLog(vm.callLog)
  t.after(() => replay.close())
  await assert.rejects(Verifier.compareArchives(vm.filesArchive, replay.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError)
    assert.equal(err.path, '/extra/00000', 'both hold /a; /extra/00000 is the first path only the host has')
    return true
  })
})

test('more hostile archives: contents truncated below what the log records, an index value that is not JSON', async (t) => {
  const truncated = await bank(t)
  await (await truncated.filesArchive.drive.getBlobs()).core.truncate(0)
  await assert.rejects(Verifier.verify(truncated.callLog, truncated.filesArchive), expectDivergence(2, 'files'))

  const garbled = await bank(t)
  const db = garbled.filesArchive.drive.db as unknown as { put(key: string, value: Buffer, opts: object): Promise<void> }
  await db.put(`${FILES}/a`, Buffer.from([0xff, 0xfe, 0x00]), { valueEncoding: 'binary' })
  await assert.rejects(Verifier.verify(garbled.callLog, garbled.filesArchive), (err: unknown) => {
    assert.ok(err instanceof DivergenceError, String(err))
    assert.match(err.message, /index that cannot be read/)
    return true
  })
})

test('a signed payload nested 100,000 deep is refused as ERR_BAD_PAYLOAD, never a bare RangeError', async (t) => {
  const vm = await deployVM(t, BANK, { auth: 'production' })
  const payload = `{"type":"libvms-call","callLog":"${vm.callLog.key}","method":"echo","args":[${nested('')}],"nonce":"${'0'.repeat(32)}","counter":1}`
  const err = await vm
    .executeCall({ methodName: 'echo', args: [], userId: 'ab'.repeat(32), signed: { payload, signature: '00'.repeat(64) } })
    .then(
      () => null,
      (e: Error & { code?: string }) => e,
    )
  assert.equal(err?.code, 'ERR_BAD_PAYLOAD', String(err))
})

test("a script's error message is cut to 16 KiB: a 16 MiB message cannot outgrow its log entry and stop the VM", async (t) => {
  const vm = await deployVM(t, `exports.boom = () => { throw new Error('x'.repeat(16 * 1024 * 1024)) }\nexports.ok = () => 'fine'`)
  const err = await callError(vm, 'boom')
  assert.equal(typeof err.seq, 'number', 'the failed call is logged')
  assert.ok(err.message.length < 17 * 1024, `message of ${err.message.length} characters`)
  assert.match(err.message, /more characters cut/)
  assert.equal(await vm.executeCall({ methodName: 'ok' }), 'fine')
  await Verifier.verify(vm.callLog, vm.filesArchive)
})
