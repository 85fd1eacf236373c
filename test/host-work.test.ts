/**
 * Host work is metered like compute (src/sandbox/host-work.ts): every System.* request is charged in
 * the call's ticks before the host does it, storage quotas bound the archive, a call holds at most 64
 * host requests in flight, and a flood of requests leaves the host's event loop free for others.
 * Each flood below ends with a named error, a sibling VM answers while it runs, and the log verifies.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { type CallEntry, CallLog, DivergenceError, type InitEntry, type LogEntry, LogFormatError, Verifier, VM } from '../src/index.js'
import { costSchedule, MAX_HOST_REQUESTS_IN_FLIGHT } from '../src/sandbox/host-work.js'
import { DEFAULT_LIMITS } from '../src/sandbox/limits.js'
import { Sandbox } from '../src/sandbox/sandbox.js'
import { callError, deployVM, serveFactory, tempDir } from './helpers.js'

const FLOODS = `
exports.setup = async () => {
  await System.files.mkdir('/big')
  await System.files.writeFile('/mib', 'm'.repeat(1 << 20))
}
exports.more = async (from, n) => { for (let i = from; i < from + n; i++) await System.files.writeFile('/big/f' + i, 'x') }
exports.rotatingMiB = async () => { for (let i = 0; ; i++) await System.files.writeFile('/r' + (i % 10), 'z'.repeat(1 << 20)) }
exports.distinctPaths = async () => { for (let i = 0; ; i++) await System.files.writeFile('/w' + i, 'z'.repeat(1 << 16)) }
exports.parallelMiB = async () => {
  for (;;) await Promise.all(Array.from({ length: 64 }, (_, i) => System.files.writeFile('/p' + i, 'z'.repeat(1 << 20))))
}
exports.parallelKiB = async () => {
  for (;;) await Promise.all(Array.from({ length: 64 }, (_, i) => System.files.writeFile('/p' + i, 'z'.repeat(1 << 16))))
}
exports.stats = async () => { for (;;) await System.files.stat('/') }
exports.statsAtOnce = async () => { const all = []; for (let i = 0; i < 1e6; i++) all.push(System.files.stat('/')); await Promise.all(all) }
exports.smallFiles = async () => { for (let i = 0; ; i++) await System.files.writeFile('/s' + i, 'x') }
exports.deeperFolders = async () => { let path = ''; for (let i = 0; ; i++) { path += '/' + i; await System.files.mkdir(path) } }
exports.readdirLoop = async () => { for (;;) await System.files.readdir('/big') }
exports.readLoop = async () => { for (;;) await System.files.readFile('/mib') }
exports.historyLoop = async () => { for (;;) await System.files.history() }
exports.ping = () => 'pong'
`

/** The archive state the VM's last entry records. */
async function lastFiles(vm: VM): Promise<CallEntry['files']> {
  return ((await vm.callLog.get(vm.callLog.length - 1)) as CallEntry).files
}

/** Calls the sibling until `done` settles (bounded in count); how many answers came back meanwhile. */
async function answersWhile(sibling: VM, done: Promise<unknown>): Promise<number> {
  let finished = false
  void done.then(
    () => (finished = true),
    () => (finished = true),
  )
  let answers = 0
  for (let i = 0; i < 10_000 && !finished; i++) {
    assert.equal(await sibling.executeCall({ methodName: 'ping' }), 'pong')
    if (!finished) answers++
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return answers
}

/** A watchdog no loaded machine reaches before a call's budget runs out (the budget is deterministic; the watchdog is not). */
const PATIENT_WATCHDOG_MS = 180_000

async function floodHost(t: TestContext, options: { thread?: boolean } = {}) {
  const vm = await deployVM(t, FLOODS, { ...options, watchdogMs: PATIENT_WATCHDOG_MS })
  const sibling = await deployVM(t, FLOODS, { watchdogMs: PATIENT_WATCHDOG_MS })
  await vm.executeCall({ methodName: 'setup' })
  // A large folder, written 500 files a call (a call's budget holds about a thousand small writes).
  for (let from = 0; from < 2000; from += 500) await vm.executeCall({ methodName: 'more', args: [from, 500] })
  return { vm, sibling }
}

/**
 * The floods. `parallelMiB` makes 64 requests of 1 MiB at once: their charges pass the budget before
 * the first is served, so it ends inside one slice of the script's own compute (and the sibling's
 * answers come after it).
 */
const FLOOD_CASES = [
  'rotatingMiB',
  'distinctPaths',
  'parallelMiB',
  'parallelKiB',
  'stats',
  'statsAtOnce',
  'smallFiles',
  'deeperFolders',
  'readdirLoop',
  'readLoop',
  'historyLoop',
]
const ONE_SLICE = new Set(['parallelMiB'])

test('every flood of host requests ends with a named error at its budget; a sibling VM answers throughout; the archive is left as it was; the log verifies', async (t) => {
  const { vm, sibling } = await floodHost(t)
  const rssBefore = process.memoryUsage().rss
  for (const method of FLOOD_CASES) {
    const filesBefore = await lastFiles(vm)
    const call = callError(vm, method)
    const answers = await answersWhile(sibling, call)
    const err = await call
    const entry = (await vm.callLog.get(vm.callLog.length - 1)) as CallEntry
    assert.equal(entry.method, method, `${method} is logged`)
    if (method === 'deeperFolders') {
      // The path grows past the longest a path may have before the budget ends: a named error too.
      assert.ok(['ComputeLimitExceeded', 'InvalidPath'].includes(err.name), `${method}: ${err.name}: ${err.message}`)
    } else {
      assert.equal(err.name, 'ComputeLimitExceeded', `${method}: ${err.message}`)
      assert.ok(entry.cost > DEFAULT_LIMITS.computeTicks, `${method} is charged past its budget (${entry.cost})`)
    }
    assert.deepEqual(entry.files, filesBefore, `${method}: the failed call left the archive as it was`)
    if (!ONE_SLICE.has(method)) assert.ok(answers > 0, `the sibling answered while ${method} ran`)
  }
  // Nothing a flood asked for was kept: the host's memory stays within what one call may hold.
  const grown = process.memoryUsage().rss - rssBefore
  assert.ok(grown < 1024 * 1024 * 1024, `the host grew by ${grown >> 20} MiB`)
  await Verifier.verify(vm.callLog, vm.filesArchive)
})

test('host work is charged the same on a sandbox thread as on the main thread (the logged costs are equal)', async (t) => {
  const code = `exports.work = async (n) => {
    for (let i = 0; i < n; i++) await System.files.writeFile('/f' + (i % 7), 'y'.repeat(i * 100))
    const names = await System.files.readdir('/')
    for (const name of names) await System.files.readFile('/' + name)
    return names.length
  }
  exports.flood = async () => { for (;;) await System.files.stat('/') }`
  const main = await deployVM(t, code)
  const threaded = await deployVM(t, code, { thread: true })
  for (const vm of [main, threaded]) {
    await vm.executeCall({ methodName: 'work', args: [50] })
    await callError(vm, 'flood')
  }
  const costs = async (vm: VM) => ((await vm.callLog.list()) as LogEntry[]).slice(1).map((e) => e.cost)
  assert.deepEqual(await costs(threaded), await costs(main))
  const [, work, flood] = (await main.callLog.list()) as CallEntry[]
  // 50 writes, each at least a request, a lookup and a change by schedule 1: far more than their compute.
  const schedule = costSchedule(1)
  assert.ok(schedule)
  const floor = Math.ceil((50 * (schedule.request + schedule.lookup + schedule.change)) / 1000)
  assert.ok(work.cost >= floor, `host work is charged: cost ${work.cost}, at least ${floor}`)
  assert.equal(flood.error?.name, 'ComputeLimitExceeded')
  await Verifier.verify(threaded.callLog, threaded.filesArchive)
})

test('a factory provisioning VMs in a loop ends at its budget, and its log verifies', async (t) => {
  const code = `${await readFile(new URL('../examples/scripts/factory.js', import.meta.url), 'utf8')}
exports.provisionMany = async () => { for (let i = 0; ; i++) await System.vms.provisionVM({ code: 'exports.n = () => ' + i }) }`
  const { factory, connect } = await serveFactory(t, code, { maxVMs: 1_000, watchdogMs: PATIENT_WATCHDOG_MS })
  const client = await connect()
  await assert.rejects(client.call('provisionMany'), (err: Error) => {
    assert.equal(err.name, 'ComputeLimitExceeded', err.message)
    return true
  })
  const entry = (await factory.callLog.get(factory.callLog.length - 1)) as CallEntry
  const provisioned = ((entry.oracle?.vms ?? []) as unknown as unknown[]).length
  assert.ok(provisioned > 0 && provisioned < 100, `the budget bounds the provisionings (${provisioned})`)
  await Verifier.verify(factory.callLog, factory.filesArchive)
})

// ---- storage quotas ----

const STORE = `
exports.write = async (path, size) => { await System.files.writeFile(path, 'q'.repeat(size)) }
exports.tryWrite = async (path, size) => {
  try { await System.files.writeFile(path, 'q'.repeat(size)); return 'written' } catch (e) { return e.name + ': ' + e.message }
}
exports.mkdirs = async (prefix, n) => { for (let i = 0; i < n; i++) await System.files.mkdir(prefix + i) }
exports.fill = async (n) => { await System.files.writeFile('/kept', 'k'); for (let i = 0; i < n; i++) await System.files.writeFile('/n' + i, 'n') }
exports.remove = async (path) => { await System.files.rmdir(path, { recursive: true }) }
exports.count = async () => (await System.files.readdir('/', { recursive: true })).length
`

test('storage quotas: a file over maxFileBytes, an archive over maxArchiveBytes or maxArchiveEntries is a StorageLimitExceeded the script can catch; a failed call leaves the archive as it was', async (t) => {
  const vm = await deployVM(t, STORE, { limits: { maxFileBytes: 1000, maxArchiveBytes: 2500, maxArchiveEntries: 10 } })
  const init = (await vm.callLog.get(0)) as InitEntry
  assert.equal(init.limits.maxArchiveEntries, 10, 'the quotas are recorded in the init entry')
  assert.equal(init.costSchedule, 1)

  assert.match(String(await vm.executeCall({ methodName: 'tryWrite', args: ['/big', 1001] })), /^StorageLimitExceeded: .*maxFileBytes/)
  await vm.executeCall({ methodName: 'write', args: ['/a', 1000] })
  await vm.executeCall({ methodName: 'write', args: ['/b', 1000] })
  // Rewriting a file counts its new size, not both.
  await vm.executeCall({ methodName: 'write', args: ['/b', 900] })
  assert.match(String(await vm.executeCall({ methodName: 'tryWrite', args: ['/c', 1001] })), /^StorageLimitExceeded: .*maxFileBytes/)
  assert.match(String(await vm.executeCall({ methodName: 'tryWrite', args: ['/c', 1000] })), /^StorageLimitExceeded: .*maxArchiveBytes/)
  assert.equal(await vm.executeCall({ methodName: 'tryWrite', args: ['/c', 100] }), 'written')

  // Uncaught, the call fails and none of its writes are kept.
  const before = await lastFiles(vm)
  const err = await callError(vm, 'fill', [20])
  assert.equal(err.name, 'StorageLimitExceeded')
  assert.match(err.message, /maxArchiveEntries/)
  assert.deepEqual(await lastFiles(vm), before)
  assert.equal(await vm.executeCall({ methodName: 'count' }), 3)

  // Removing frees the quota: a removed tree's files and folders no longer count.
  await vm.executeCall({ methodName: 'mkdirs', args: ['/d', 7] })
  assert.equal((await callError(vm, 'mkdirs', ['/e', 1])).name, 'StorageLimitExceeded')
  await vm.executeCall({ methodName: 'remove', args: ['/d0'] })
  await vm.executeCall({ methodName: 'write', args: ['/d0', 10] })

  await Verifier.verify(vm.callLog, vm.filesArchive)
  // A reopened VM counts the archive the same way: the next write past a quota fails the same.
  const dir = vm.dir as string
  await vm.close()
  const again = new VM(STORE, { limits: { maxFileBytes: 1000, maxArchiveBytes: 2500, maxArchiveEntries: 10 } })
  await again.deploy({ dir })
  t.after(() => again.close())
  assert.match(String(await again.executeCall({ methodName: 'tryWrite', args: ['/e', 1] })), /^StorageLimitExceeded: .*maxArchiveEntries/)
  await Verifier.verify(again.callLog, again.filesArchive)
})

// ---- requests in flight ----

test(`a call holds at most ${MAX_HOST_REQUESTS_IN_FLIGHT} host requests; the rest wait inside the VM and are answered in order`, async () => {
  const sandbox = await Sandbox.create({
    limits: { ...DEFAULT_LIMITS },
    costSchedule: 1,
    systemSources: [`(function (System, request) { System.echo = function (i) { return request('echo', i) } })`],
  })
  try {
    await sandbox.loadScript(
      `exports.many = async (n) => { const all = []; for (let i = 0; i < n; i++) all.push(System.echo(i)); return (await Promise.all(all)).every((v, i) => v === i) }`,
      { timestamp: 0, seed: '0'.repeat(32), callerId: null },
    )
    let most = 0
    let served = 0
    const outcome = await sandbox.runCall('many', '[1000]', { timestamp: 0, seed: '1'.repeat(32), callerId: null }, async (_op, args) => {
      most = Math.max(most, sandbox.requestsHeld)
      served++
      return args[0]
    })
    assert.deepEqual(outcome.ok && outcome.value, true, JSON.stringify(outcome))
    assert.equal(served, 1000)
    assert.equal(most, MAX_HOST_REQUESTS_IN_FLIGHT)
  } finally {
    sandbox.dispose()
  }
})

// ---- logs written before cost schedules ----

test('a log written before cost schedules (schedule 0: free host work, no quotas) still verifies as it did', async (t) => {
  const entries = JSON.parse(await readFile(new URL('./fixtures/schedule0-log.json', import.meta.url), 'utf8')) as LogEntry[]
  assert.equal((entries[0] as InitEntry).costSchedule, undefined)
  const log = await CallLog.create(join(await tempDir(t), 'old'))
  t.after(() => log.close())
  await log.append(entries)
  const report = await Verifier.verify(log, null)
  assert.equal(report.calls, entries.length - 1)
  // Its file-heavy calls cost what they cost then: 500 stat requests, a few ticks of compute, where
  // schedule 1 would charge each request.
  const stats = (entries as CallEntry[]).find((e) => e.method === 'stats')
  assert.ok(stats && stats.cost < (500 * (costSchedule(1)?.request ?? 0)) / 1000, `stats cost ${stats?.cost}`)
})

test('an init entry naming a cost schedule this LibVMS does not know is a LogFormatError before anything runs', async (t) => {
  const vm = await deployVM(t, 'exports.a = () => 1')
  await vm.executeCall({ methodName: 'a' })
  const entries = (await vm.callLog.list()) as LogEntry[]
  for (const costSchedule of [99, 0, 1.5, '1']) {
    const log = await CallLog.create(join(await tempDir(t), 'schedule'))
    t.after(() => log.close())
    await log.append([{ ...entries[0], costSchedule } as unknown as LogEntry, ...entries.slice(1)])
    await assert.rejects(Verifier.verify(log, null), (err: unknown) => {
      assert.ok(err instanceof LogFormatError, String(err))
      assert.equal(err.seq, 0)
      return true
    })
  }
})

test('a host cannot change what host work costs: dropping the schedule or a quota from the init entry is a divergence', async (t) => {
  const vm = await deployVM(t, STORE)
  await vm.executeCall({ methodName: 'write', args: ['/a', 100] })
  const entries = (await vm.callLog.list()) as LogEntry[]
  const init = entries[0] as InitEntry
  const { maxFileBytes: _dropped, ...withoutQuota } = init.limits
  const { costSchedule: _free, ...withoutSchedule } = init
  const { maxArchiveBytes: _b, maxArchiveEntries: _e, ...noQuotas } = withoutQuota
  for (const [name, forged, seq, field] of [
    // Schedule 0 charges nothing: the first call that does host work costs less than logged.
    ['no schedule', { ...withoutSchedule, limits: noQuotas }, 1, 'cost'],
    // Every limit is recorded: one left out would leave it to the replaying LibVMS's defaults.
    ['no quota', { ...init, limits: withoutQuota }, 0, 'limits'],
  ] as const) {
    const log = await CallLog.create(join(await tempDir(t), name.replace(' ', '-')))
    t.after(() => log.close())
    await log.append([forged as unknown as LogEntry, ...entries.slice(1)])
    await assert.rejects(Verifier.verify(log, null), (err: unknown) => {
      assert.ok(err instanceof DivergenceError, `${name}: ${String(err)}`)
      assert.equal(err.seq, seq, `${name}: ${err.message}`)
      assert.equal(err.field, field, `${name}: ${err.message}`)
      return true
    })
  }
})
