import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import Corestore from 'corestore'
import { CallLog, type LogEntry, VM } from '../src/index.js'
import { blocksWithin, prefixBytes } from '../src/ledger/block-sizes.js'
import { READ_WINDOW_BLOCKS, READ_WINDOW_BYTES } from '../src/ledger/call-log.js'
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

test('CallLog reads every entry in order across windows, each window within its byte budget', async (t) => {
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
  for (const windowBytes of [1, 500, 20_000, undefined]) {
    const seen: number[] = []
    for await (const entry of log.entries({ start: 1, windowBytes })) seen.push((entry as { args: number[] }).args[0])
    assert.deepEqual(seen, [...calls.keys()], `windows of ${windowBytes} bytes`)
    let next = 1
    for await (const window of log.windows({ start: 1, windowBytes })) {
      assert.equal(window.start, next, 'windows follow each other')
      next += window.blocks.length
      assert.equal(
        window.bytes,
        window.blocks.reduce((sum, block) => sum + block.byteLength, 0),
      )
      assert.ok(window.blocks.length <= READ_WINDOW_BLOCKS)
      if (window.blocks.length > 1) assert.ok(window.bytes <= (windowBytes ?? READ_WINDOW_BYTES), `a window of ${window.bytes} bytes`)
      if (windowBytes === 1) assert.equal(window.blocks.length, 1, 'a budget smaller than an entry reads one at a time')
    }
    assert.equal(next, 301)
  }
  let seq = 298
  for await (const read of log.read({ start: 298 })) {
    assert.equal(read.seq, seq++)
    assert.equal(read.bytes, (await log.block(read.seq)).byteLength, "each entry comes with its block's size")
  }
  assert.equal((await log.list({ start: 298, end: 1000 })).length, 3)
  assert.deepEqual(await log.list({ start: 5, end: 5 }), [])
})

test("block sizes come from the log's Merkle tree, before any block is read: windows are as many blocks as fit", async (t) => {
  const log = await CallLog.create(join(await tempDir(t), 'log'))
  t.after(() => log.close())
  // 45 entries of sizes from a few bytes to 70 KB, in no order.
  const pads = Array.from({ length: 45 }, (_, i) => [10, 2000, 30, 70_000, 5, 400, 9000][(i * 5) % 7] + i)
  await log.append(pads.map((n, i) => ({ type: 'call', seq: i, pad: 'x'.repeat(n) }) as unknown as LogEntry))
  const sizes = await Promise.all(pads.map(async (_, seq) => (await log.block(seq)).byteLength))
  for (const length of [0, 1, 3, 17, 45]) {
    assert.equal(
      await prefixBytes(log.core, length),
      sizes.slice(0, length).reduce((sum, n) => sum + n, 0),
      `first ${length}`,
    )
  }
  // As many as fit in the budget (at most maxBlocks, below end), at least one: the greedy prefix.
  const expected = (from: number, end: number, budget: number, maxBlocks: number): number => {
    let count = 0
    let bytes = 0
    while (from + count < end && count < maxBlocks && (count === 0 || bytes + sizes[from + count] <= budget)) bytes += sizes[from + count++]
    return count
  }
  for (let from = 0; from < 45; from++) {
    for (const budget of [1, 100, 2100, 10_000, 80_000, 200_000, 10 ** 9]) {
      for (const [end, maxBlocks] of [
        [45, 256],
        [45, 3],
        [Math.min(45, from + 5), 256],
      ]) {
        assert.equal(
          await blocksWithin(log.core, from, end, budget, maxBlocks),
          expected(from, end, budget, maxBlocks),
          `from ${from}, ${budget} bytes, end ${end}, at most ${maxBlocks}`,
        )
      }
    }
  }
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

test("a closed VM's files archive, and a log closed while waiting, answer with ERR_INVALID_STATE too", async (t) => {
  const dir = await tempDir(t)
  const vm = new VM('exports.a = async () => { await System.files.mkdir("/d"); await System.files.writeFile("/d/x", "1") }')
  await vm.deploy({ dir: join(dir, 'vm') })
  await vm.executeCall({ methodName: 'a' })
  const log = vm.callLog
  const files = vm.filesArchive
  const older = files.checkout(1)
  await vm.close()
  const attempts: [string, () => Promise<unknown>][] = [
    ['log.update', () => log.update()],
    ['log.waitForLength', () => log.waitForLength(10)],
    ['stat', () => files.stat('/d/x')],
    ['readFile', () => files.readFile('/d/x', 'utf8')],
    ['readdir', () => files.readdir('/', { recursive: true })],
    ['writeFile', () => files.writeFile('/y', 'y')],
    ['mkdir', () => files.mkdir('/e')],
    ['unlink', () => files.unlink('/d/x')],
    ['rmdir', () => files.rmdir('/d', { recursive: true })],
    ['history', () => files.history()],
    ['state', () => files.state()],
    ['stateAt', () => files.stateAt(1, 1)],
    ['update', () => files.update()],
    ['download', () => files.download()],
    ['getInfo', () => files.getInfo()],
    ['ready', () => files.ready()],
    ['view', async () => files.view()],
    ['checkout', async () => files.checkout(1)],
    ['an earlier checkout', () => older.readFile('/d/x')],
  ]
  for (const [name, attempt] of attempts) {
    await assert.rejects(attempt(), { name: 'StateError', code: 'ERR_INVALID_STATE', message: /closed/ }, name)
  }

  // A log closed while a reader waits for it to grow: the wait ends with the same error.
  const standalone = await CallLog.create(join(dir, 'log'))
  const waiting = assert.rejects(standalone.waitForLength(5, { pollMs: 60_000 }), {
    name: 'StateError',
    code: 'ERR_INVALID_STATE',
    message: /closed/,
  })
  await standalone.close()
  await waiting
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
