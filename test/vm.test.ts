import assert from 'node:assert/strict'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { decodeValue, encodeValue } from '../src/codec/value-codec.js'
import { type CallEntry, CallLog, type InitEntry, LOG_SCHEMA, Verifier, VM } from '../src/index.js'
import { callError, deployVM, tempDir } from './helpers.js'

const COUNTER = `
let counter = 0
exports.init = async () => { await System.files.mkdir('/data') }
exports.increment = () => ++counter
exports.get = () => counter
exports.save = async (name, text) => { await System.files.writeFile('/data/' + name, text); return text.length }
exports.whoami = () => System.caller.id
exports.fail = (msg) => { throw new RangeError(msg) }
exports.version = '1.2.3'
`

test('exports lists every exported name; methods leave out init and non-functions', async (t) => {
  const vm = await deployVM(t, COUNTER)
  assert.deepEqual(Object.keys(vm.exports), ['init', 'increment', 'get', 'save', 'whoami', 'fail', 'version'])
  assert.deepEqual(vm.methods, ['increment', 'get', 'save', 'whoami', 'fail'])
  assert.equal(vm.exports.version, '1.2.3')
  assert.equal(await (vm.exports.increment as () => Promise<number>)(), 1)
})

test('module.exports = {...} scripts and async exports work', async (t) => {
  const vm = await deployVM(t, `module.exports = { a: () => 1, b: async () => { await null; return 2 } }`)
  assert.deepEqual(vm.methods, ['a', 'b'])
  assert.equal(await vm.executeCall({ methodName: 'a' }), 1)
  assert.equal(await vm.executeCall({ methodName: 'b' }), 2)
})

test('the init entry records engine, code, archive key, title, limits and auth mode', async (t) => {
  const vm = await deployVM(t, COUNTER, { title: 'Counter VM', limits: { computeTicks: 500 } })
  assert.equal(vm.callLog.length, 1)
  const init = (await vm.callLog.get(0)) as InitEntry
  assert.equal(init.type, 'init')
  assert.equal(init.schema, LOG_SCHEMA)
  assert.equal(init.engine.name, 'quickjs-emscripten')
  assert.match(init.engine.version, /^\d+\.\d+\.\d+/)
  assert.match(init.engine.hyperdrive, /^\d+\./)
  assert.equal(init.code, COUNTER)
  assert.equal(init.title, 'Counter VM')
  assert.equal(init.filesArchiveKey, vm.filesArchive.key)
  assert.equal(`hyper://${init.filesArchiveKey}`, vm.filesArchive.url)
  assert.equal(init.limits.computeTicks, 500)
  assert.equal(init.auth, 'debug')
  assert.deepEqual(init.exports, ['init', 'increment', 'get', 'save', 'whoami', 'fail', 'version'])
  assert.equal(init.files.version, vm.filesArchive.version, 'init ran: /data exists, and the init entry records the archive after it')
  assert.equal((await vm.filesArchive.stat('/data')).type, 'directory')
  assert.match(vm.callLog.url, /^hyper:\/\/[0-9a-f]{64}$/)
})

test('calls are logged with caller, args, results and errors; file writes advance the files version', async (t) => {
  const vm = await deployVM(t, COUNTER)
  assert.equal(await vm.executeCall({ methodName: 'increment', userId: 'alice' }), 1)
  const before = vm.filesArchive.version
  assert.equal(await vm.executeCall({ methodName: 'save', args: ['a.txt', 'hello'], userId: 'bob' }), 5)
  const err = await callError(vm, 'fail', ['bad input'], 'carol')
  assert.equal(err.name, 'RangeError')
  assert.equal(err.message, 'bad input')
  assert.equal(err.code, 'ERR_CALL_FAILED')
  assert.equal(err.seq, 3)

  const [, inc, save, fail] = (await vm.callLog.list()) as CallEntry[]
  assert.deepEqual([inc.caller, inc.method, inc.args, inc.result], ['alice', 'increment', [], 1])
  assert.deepEqual([save.caller, save.method, save.args, save.result], ['bob', 'save', ['a.txt', 'hello'], 5])
  assert.deepEqual(fail.error, { name: 'RangeError', message: 'bad input' })
  assert.equal(fail.result, undefined)
  assert.equal(inc.files.version, before, 'a call that writes nothing keeps the files version')
  assert.ok(save.files.version > before, 'a write advances the files version')
  assert.equal(save.files.version, vm.filesArchive.version)
  assert.equal(fail.files.version, save.files.version)
  assert.notEqual(save.files.dbHash, inc.files.dbHash)
  for (const e of [inc, save, fail]) assert.ok(e.timestamp > 0 && /^[0-9a-f]{32}$/.test(e.seed))
  assert.equal(await vm.filesArchive.readFile('/data/a.txt'), 'hello')
})

test('System.caller.id is the userId, or null without one', async (t) => {
  const vm = await deployVM(t, COUNTER)
  assert.equal(await vm.executeCall({ methodName: 'whoami', userId: 'bob' }), 'bob')
  assert.equal(await vm.executeCall({ methodName: 'whoami' }), null)
})

test("an unknown method's message names vm.methods (the callable names; vm.exports also has init)", async (t) => {
  const vm = await deployVM(t, COUNTER)
  await assert.rejects(vm.executeCall({ methodName: 'nope' }), {
    name: 'MethodNotFound',
    message: 'The VM has no callable export named "nope"; list vm.methods for the ones it has',
  })
})

test('bad requests are refused before the VM and leave no trace in the log', async (t) => {
  const vm = await deployVM(t, COUNTER)
  const length = vm.callLog.length
  const cases: [Parameters<VM['executeCall']>[0], string][] = [
    [{ methodName: 'nope' }, 'ERR_METHOD_NOT_FOUND'],
    [{ methodName: 'init' }, 'ERR_METHOD_NOT_FOUND'],
    [{ methodName: 'version' }, 'ERR_METHOD_NOT_FOUND'],
    [{ methodName: 'save', args: [() => 1] }, 'ERR_ENCODING'],
    [{ methodName: 'save', args: [10n] }, 'ERR_ENCODING'],
    [{ methodName: 'save', args: [Number.NaN] }, 'ERR_ENCODING'],
    [{ methodName: 'save', args: 'x' as unknown as unknown[] }, 'ERR_INVALID_ARGUMENT'],
    [{ methodName: 'save', args: ['x'.repeat(2_000_000)] }, 'ERR_INVALID_ARGUMENT'],
    [{ methodName: 'get', userId: 5 as unknown as string }, 'ERR_INVALID_ARGUMENT'],
  ]
  for (const [request, code] of cases) {
    await assert.rejects(vm.executeCall(request), (err: Error & { code?: string }) => {
      assert.equal(err.code, code, `${request.methodName}: ${err.message}`)
      return true
    })
  }
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  await assert.rejects(vm.executeCall({ methodName: 'save', args: [cyclic] }), { code: 'ERR_ENCODING' })
  assert.equal(vm.callLog.length, length)
})

test('byte arrays cross the boundary both ways', async (t) => {
  const vm = await deployVM(
    t,
    `
    exports.echo = (b) => [b instanceof Uint8Array, b.length, b]
    exports.store = async (b) => { await System.files.writeFile('/bin', b); return System.files.readFile('/bin', 'binary') }
    exports.tagLike = (o) => o
  `,
  )
  const bytes = new Uint8Array([0, 1, 2, 255])
  assert.deepEqual(await vm.executeCall({ methodName: 'echo', args: [bytes] }), [true, 4, bytes])
  assert.deepEqual(await vm.executeCall({ methodName: 'store', args: [bytes] }), bytes)
  // An object that looks like the byte tag must come back as itself.
  assert.deepEqual(await vm.executeCall({ methodName: 'tagLike', args: [{ $bytes: 'AAEC' }] }), { $bytes: 'AAEC' })
})

test('the VM and the host write a value the same way: one encoding, with base64 of every length', async (t) => {
  const vm = await deployVM(
    t,
    `
    const bytes = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7) & 255)
    exports.make = (max) => Array.from({ length: max }, (_, n) => ({ n, b: bytes(n), $esc: n, nested: { $bytes: n } }))
    exports.echo = (v) => v
  `,
  )
  const max = 70
  const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7) & 255)
  const expected = Array.from({ length: max }, (_, n) => ({ n, b: bytes(n), $esc: n, nested: { $bytes: n } }))
  const made = await vm.executeCall({ methodName: 'make', args: [max] })
  assert.deepEqual(made, expected)
  const entry = (await vm.callLog.get(vm.callLog.length - 1)) as CallEntry
  // The VM's text for the result (in the log) is the host's text for the same value.
  assert.equal(JSON.stringify(entry.result), encodeValue(expected, 'the result'))
  // And what the host writes, the VM reads back as the same value.
  assert.deepEqual(await vm.executeCall({ methodName: 'echo', args: [expected] }), expected)
  // An escaped "__proto__" is an own key on the host: no decoded value has a prototype its sender chose.
  const [escaped] = decodeValue('[{"$esc":["__proto__",{"polluted":true}]}]') as [Record<string, unknown>]
  assert.equal(Object.getPrototypeOf(escaped), Object.prototype)
  assert.deepEqual(Object.keys(escaped), ['__proto__'])
  assert.equal(encodeValue([escaped], 'the arguments'), '[{"__proto__":{"polluted":true}}]')
})

test('calls run one at a time in arrival order', async (t) => {
  const vm = await deployVM(
    t,
    `
    let trace = []
    exports.step = async (i) => {
      trace.push('start ' + i)
      await new Promise((r) => setTimeout(r, 10 - i))
      await System.files.writeFile('/last', String(i))
      trace.push('end ' + i)
      return i
    }
    exports.trace = () => trace
  `,
  )
  const results = await Promise.all([0, 1, 2, 3, 4].map((i) => vm.executeCall({ methodName: 'step', args: [i] })))
  assert.deepEqual(results, [0, 1, 2, 3, 4])
  const trace = (await vm.executeCall({ methodName: 'trace' })) as string[]
  assert.deepEqual(
    trace,
    [0, 1, 2, 3, 4].flatMap((i) => [`start ${i}`, `end ${i}`]),
  )
  const methods = ((await vm.callLog.list({ start: 1 })) as CallEntry[]).map((e) => `${e.method}(${e.args[0] ?? ''})`)
  assert.deepEqual(methods, ['step(0)', 'step(1)', 'step(2)', 'step(3)', 'step(4)', 'trace()'])
})

test('restart: deploy, call, close, deploy again on the same dir: state continues', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const vm1 = new VM(COUNTER)
  await vm1.deploy({ dir, title: 'persist' })
  for (let i = 1; i <= 3; i++) assert.equal(await vm1.executeCall({ methodName: 'increment' }), i)
  await vm1.executeCall({ methodName: 'save', args: ['x', 'kept'] })
  const url = vm1.callLog.url
  let closed = false
  vm1.on('close', () => {
    closed = true
  })
  await vm1.close()
  assert.ok(closed)

  const vm2 = new VM(COUNTER)
  let ready = false
  vm2.on('ready', () => {
    ready = true
  })
  await vm2.deploy({ dir, title: 'ignored on reopen' })
  t.after(() => vm2.close())
  assert.ok(ready)
  assert.equal(vm2.callLog.url, url)
  assert.equal(vm2.title, 'persist')
  assert.equal(await vm2.executeCall({ methodName: 'get' }), 3, 'the counter kept in a global survives the restart')
  assert.equal(await vm2.executeCall({ methodName: 'increment' }), 4)
  assert.equal(await vm2.filesArchive.readFile('/data/x'), 'kept')
  assert.equal(vm2.callLog.length, 7)
})

test('deploy refuses a dir holding something else, and a VM of different code', async (t) => {
  const base = await tempDir(t)
  const foreign = join(base, 'foreign')
  await mkdir(foreign)
  await writeFile(join(foreign, 'notes.txt'), 'mine')
  await assert.rejects(new VM(COUNTER).deploy({ dir: foreign }), { code: 'ERR_DIR_NOT_LIBVMS' })
  assert.deepEqual(await readdir(foreign), ['notes.txt'], 'the foreign dir is left as it was')

  const dir = join(base, 'vm')
  const vm = new VM(COUNTER)
  await vm.deploy({ dir })
  await vm.close()
  await assert.rejects(new VM('exports.other = () => 1').deploy({ dir }), { code: 'ERR_CODE_MISMATCH' })
})

test('a script that does not compile or throws at top level fails deploy with its error and line, leaving no log', async (t) => {
  const base = await tempDir(t)
  const syntax = join(base, 'syntax')
  await assert.rejects(
    new VM('exports.a = () => 1\nexports.b = (=> 2\n').deploy({ dir: syntax }),
    (err: Error & { code?: string; line?: number }) => {
      assert.equal(err.name, 'ScriptError')
      assert.equal(err.code, 'ERR_SCRIPT')
      assert.match(err.message, /SyntaxError/)
      assert.equal(err.line, 2)
      return true
    },
  )
  await assert.rejects(readdir(syntax), { code: 'ENOENT' }, 'nothing is left behind')

  const thrower = join(base, 'thrower')
  await assert.rejects(
    new VM('exports.a = 1\n\nthrow new Error("broken config")\n').deploy({ dir: thrower }),
    (err: Error & { line?: number }) => {
      assert.equal(err.name, 'ScriptError')
      assert.match(err.message, /Error: broken config/)
      assert.equal(err.line, 3)
      return true
    },
  )
  await assert.rejects(readdir(thrower), { code: 'ENOENT' })

  const badInit = join(base, 'bad-init')
  await mkdir(badInit)
  await assert.rejects(new VM('exports.init = () => { throw new Error("no") }').deploy({ dir: badInit }), /exports\.init failed: Error: no/)
  assert.deepEqual(await readdir(badInit), [], 'an existing empty dir is emptied again')
  // The same dir then takes a good VM.
  const vm = new VM(COUNTER)
  await vm.deploy({ dir: badInit })
  await vm.close()
})

test('CallLog.open reads a closed VM dir; CallLog.create makes a standalone log', async (t) => {
  const dir = join(await tempDir(t), 'vm')
  const vm = new VM(COUNTER)
  await vm.deploy({ dir })
  await vm.executeCall({ methodName: 'increment' })
  await vm.close()
  const log = await CallLog.open(dir)
  t.after(() => log.close())
  assert.equal(log.length, 2)
  const entries = await log.list({ start: 1, end: 2 })
  assert.equal((entries[0] as CallEntry).method, 'increment')
  await assert.rejects(log.get(5, { wait: false }), { code: 'ERR_INVALID_STATE' })

  const standalone = await CallLog.create(join(dir, '..', 'standalone'))
  t.after(() => standalone.close())
  assert.equal(standalone.length, 0)
  assert.ok(standalone.writable)
  await assert.rejects(CallLog.create(dir), { code: 'ERR_DIR_NOT_EMPTY' })
})

test('close refuses queued calls that had not started, and later calls', async (t) => {
  const vm = await deployVM(t, `exports.slow = async () => { for (let i = 0; i < 3; i++) await System.files.readdir('/'); return 'done' }`)
  const first = vm.executeCall({ methodName: 'slow' })
  const queued = Array.from({ length: 5 }, () =>
    vm.executeCall({ methodName: 'slow' }).then(
      () => 'answered',
      (e: Error) => e.message,
    ),
  )
  await vm.close()
  assert.equal(await first, 'done')
  const outcomes = await Promise.all(queued)
  for (const o of outcomes) assert.ok(o === 'answered' || /closed before this call started/.test(o), o)
  await assert.rejects(vm.executeCall({ methodName: 'slow' }), { code: 'ERR_INVALID_STATE' })
})

test('reopen discards archive changes made outside the VM after the last call, and refuses an archive cut short', async (t) => {
  const base = await tempDir(t)
  const dir = join(base, 'vm')
  const vm1 = new VM(COUNTER)
  await vm1.deploy({ dir })
  await vm1.executeCall({ methodName: 'save', args: ['kept', 'yes'] })
  const logged = vm1.filesArchive.version
  await vm1.filesArchive.writeFile('/data/planted', 'not from a call')
  assert.ok(vm1.filesArchive.version > logged)
  await vm1.close()

  const vm2 = new VM(COUNTER)
  await vm2.deploy({ dir })
  assert.equal(vm2.filesArchive.version, logged)
  assert.deepEqual(await vm2.filesArchive.readdir('/data'), ['kept'])
  await vm2.executeCall({ methodName: 'save', args: ['more', 'x'] })
  // Cut the archive's metadata core below what the log records.
  await vm2.filesArchive.drive.core.truncate(logged - 1)
  await vm2.close()

  await assert.rejects(new VM(COUNTER).deploy({ dir }), { code: 'ERR_DIVERGENCE' })
})

test('a watchdog firing is a host fault: the call is not logged, the VM rebuilds from its log and keeps serving', async (t) => {
  const vm = await deployVM(
    t,
    `
    let count = 0
    exports.increment = () => ++count
    exports.stall = () => { count += 100; const a = new Array(1.5e6).fill(1); for (let i = 0; i < 3e6; i++) {} return a.length }
  `,
    { watchdogMs: 5 },
  )
  assert.equal(await vm.executeCall({ methodName: 'increment' }), 1)
  const length = vm.callLog.length
  await assert.rejects(vm.executeCall({ methodName: 'stall' }), { name: 'HostFaultError', code: 'ERR_HOST_FAULT' })
  assert.equal(vm.callLog.length, length, 'the faulted call left no entry')
  // The sandbox was rebuilt from the log: the faulted call's `count += 100` is gone.
  assert.equal(await vm.executeCall({ methodName: 'increment' }), 2)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('a stack too small to run the VM is refused up front with the minimum, before anything is stored', async (t) => {
  const vm = new VM('exports.f = () => 1', { limits: { stackBytes: 1000 } })
  const dir = join(await tempDir(t), 'vm')
  await assert.rejects(vm.deploy({ dir }), { code: 'ERR_INVALID_ARGUMENT', message: /stackBytes must be at least 8192/ })
  await assert.rejects(readdir(join(dir, 'corestore')), { code: 'ENOENT' })
})

test('messages count in the right number and agree with their subject', async (t) => {
  const vm = await deployVM(t, 'exports.f = () => 1')
  await assert.rejects(vm.executeCall({ methodName: 'f', args: [() => 1] }), {
    code: 'ERR_ENCODING',
    message: /^the argument list contains a function at "0"/,
  })
  await assert.rejects(vm.callLog.get(5, { wait: false }), { message: /\(the log has 1 entry\)$/ })
})

test("a syntax error is reported at the script's own line, with no token the script does not have", async (t) => {
  const cases: [string, number, RegExp][] = [
    ['exports.a = 1\nexports.b = (\n\n', 2, /unexpected end of the script: something opened is not closed/],
    ['let x = 1\n}\nexports.y = 2\n', 2, /Unexpected token '\}'/],
    ['exports.a = "abc\n', 1, /SyntaxError/],
  ]
  for (const [code, line, message] of cases) {
    await assert.rejects(new VM(code).deploy({ dir: join(await tempDir(t), 'vm') }), (err: Error & { line?: number }) => {
      assert.equal(err.name, 'ScriptError')
      assert.equal(err.line, line, `${JSON.stringify(code)}: ${err.message}`)
      assert.match(err.message, message)
      assert.match(err.message, new RegExp(`\\(script line ${line}\\)$`))
      return true
    })
  }
})
