import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import Corestore from 'corestore'
import { CallLog, type LogEntry, VM } from '../src/index.js'
import { parseKeyUrl } from '../src/ledger/keys.js'
import { provideRemoteSource } from '../src/ledger/remote-source.js'
import { currentTreeHash } from '../src/ledger/tree-hash.js'
import { tempDir } from './helpers.js'

test('currentTreeHash equals Hypercore treeHash at every length', async (t) => {
  const store = new Corestore(join(await tempDir(t), 'store'))
  t.after(() => store.close())
  const core = store.get({ name: 'c' })
  await core.ready()
  for (let n = 1; n <= 40; n++) {
    await core.append(Array.from({ length: (n % 3) + 1 }, (_, i) => Buffer.from(`block ${n}.${i}`)))
    assert.deepEqual(await currentTreeHash(core), await core.treeHash(core.length), `length ${core.length}`)
  }
})

test('CallLog.entries reads every entry in order across chunk boundaries', async (t) => {
  const log = await CallLog.create(join(await tempDir(t), 'log'))
  t.after(() => log.close())
  const files = { version: 0, dbHash: 'a'.repeat(64), blobsLength: 0, blobsHash: 'b'.repeat(64) }
  const init = {
    type: 'init',
    schema: 1,
    engine: {},
    code: '',
    title: '',
    filesArchiveKey: 'c'.repeat(64),
    limits: {},
    auth: 'debug',
    timestamp: 1,
    seed: 'd'.repeat(32),
    exports: [],
    files,
    cost: 0,
  } as unknown as LogEntry
  const calls = Array.from(
    { length: 300 },
    (_, i) => ({ type: 'call', caller: null, method: 'm', args: [i], timestamp: 1, seed: 'e'.repeat(32), files, cost: 0 }) as LogEntry,
  )
  await log.append([init, ...calls])
  for (const chunk of [1, 7, 256, 1000]) {
    const seen: number[] = []
    for await (const entry of log.entries({ start: 1, chunk })) seen.push((entry as { args: number[] }).args[0])
    assert.deepEqual(seen, [...calls.keys()], `chunk ${chunk}`)
  }
  assert.equal((await log.list({ start: 298, end: 1000 })).length, 3)
  assert.deepEqual(await log.list({ start: 5, end: 5 }), [])
})

test('hyper://, dat:// and bare hex keys are accepted; anything else is a named error', () => {
  const hex = 'ab'.repeat(32)
  for (const url of [`hyper://${hex}`, `dat://${hex}`, hex, `hyper://${hex.toUpperCase()}/`, ` hyper://${hex}/path `]) {
    assert.equal(parseKeyUrl(url).toString('hex'), hex, url)
  }
  for (const bad of ['hyper://abc', `http://${hex}`, '', 42]) {
    assert.throws(() => parseKeyUrl(bad), { code: 'ERR_INVALID_ARGUMENT' })
  }
})

test('CallLog rejects entries that do not have the log format', async (t) => {
  const log = await CallLog.create(join(await tempDir(t), 'log'))
  t.after(() => log.close())
  await log.append([{ type: 'call' } as unknown as LogEntry, { hello: 'world' } as unknown as LogEntry])
  await assert.rejects(log.get(0), { code: 'ERR_LOG_FORMAT', message: /entry 0: entry 0 must be the init entry/ })
  await assert.rejects(log.get(1), { code: 'ERR_LOG_FORMAT' })
})

test("a closed log answers with a LibVMS error (ERR_INVALID_STATE), not Hypercore's bare SESSION_CLOSED", async (t) => {
  const dir = await tempDir(t)
  const vm = new VM('exports.a = () => 1')
  await vm.deploy({ dir: join(dir, 'vm') })
  const log = vm.callLog
  await vm.close()
  for (const attempt of [() => log.get(0), () => log.list(), () => log.append({} as LogEntry), () => vm.callLog.get(0)]) {
    await assert.rejects(attempt(), { name: 'StateError', code: 'ERR_INVALID_STATE', message: /closed/ })
  }
})

test("reading an entry a copy does not have: Hypercore's timeout and closing are LibVMS errors with codes", async (t) => {
  const store = new Corestore(join(await tempDir(t), 'store'))
  t.after(() => store.close())
  const log = new CallLog(store.get({ key: Buffer.alloc(32, 7) }) as never)
  await log.ready()
  await assert.rejects(log.get(0, { timeout: 100 }), { name: 'FetchError', code: 'ERR_FETCH_TIMEOUT', message: /entry 0 .* within 100 ms/ })
  const waiting = log.get(1)
  await log.close()
  await assert.rejects(waiting, { code: 'ERR_INVALID_STATE' })
})

test('the network layer is provided to the ledger once, when the package loads: it cannot be replaced', async () => {
  const stub = { fetchLog: () => Promise.reject(new Error('stub')), openArchive: () => Promise.reject(new Error('stub')) }
  assert.throws(() => provideRemoteSource(stub), { code: 'ERR_INVALID_STATE', message: /already provided/ })
  // Fetches still reach the real network layer: with no host known, its own named error.
  await assert.rejects(CallLog.fetch(`hyper://${'cd'.repeat(32)}`), { code: 'ERR_NO_HOST' })
})
