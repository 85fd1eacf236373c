import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { BIN, exec, exited, nodevms, SCRIPTS, stop } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const SPIN = `exports.spin = (n) => { let x = 0; for (let i = 0; i < n; i++) x += i % 7; return x }
exports.size = (value) => JSON.stringify(value).length
exports.echo = (...args) => args`

/** `nodevms exec` as `exec` does, keeping everything it writes to stderr (notes come before it serves). */
async function serve(t: TestContext, args: string[]): Promise<{ child: ChildProcess; rpcUrl: string; stderr: () => string }> {
  const child = spawn(process.execPath, [BIN, 'exec', ...args, '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => stop(child))
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  const served = await new Promise<{ rpcUrl: string }>((resolve, reject) => {
    child.stdout.once('data', (chunk) => resolve(JSON.parse(String(chunk).split('\n')[0])))
    child.once('exit', (code) => reject(new Error(`exec exited ${code}: ${stderr}`)))
  })
  return { child, rpcUrl: served.rpcUrl, stderr: () => stderr }
}

/** The init entry of the VM served at `rpcUrl`, as `nodevms log --json` prints it. */
async function initEntry(rpcUrl: string): Promise<{ limits: Record<string, number> }> {
  const logged = await nodevms(['log', rpcUrl, '--json'])
  assert.equal(logged.code, 0, logged.stderr)
  return JSON.parse(logged.stdout.split('\n')[0])
}

test('exec takes a flag for each limit: recorded in the init entry and applied; a reopen with other values says it keeps the logged ones', async (t) => {
  const work = await tempDir(t)
  const script = join(work, 'spin.js')
  await writeFile(script, SPIN)
  const dir = join(work, 'vm')
  const first = await exec(t, script, ['--dir', dir, '--compute-ticks', '5', '--max-args-bytes', '64KiB', '--memory-bytes', '32MiB'])
  const { limits } = await initEntry(first.served.rpcUrl)
  assert.equal(limits.computeTicks, 5)
  assert.equal(limits.maxArgsBytes, 64 * 1024)
  assert.equal(limits.memoryBytes, 32 * 2 ** 20)
  assert.equal(limits.maxTimers, 10_000, 'a limit not given keeps its default')
  // 5 ticks (about 50,000 engine steps) is not enough for a million rounds.
  const spun = await nodevms(['call', first.served.rpcUrl, 'spin', '1000000'])
  assert.equal(spun.code, 1, spun.stderr)
  assert.match(spun.stderr, /ComputeLimitExceeded/)
  const big = await nodevms(['call', first.served.rpcUrl, 'size', JSON.stringify('x'.repeat(70_000))])
  assert.equal(big.code, 2, big.stderr)
  assert.match(big.stderr, /maxArgsBytes|65536/)
  assert.equal(await stop(first.child), 0)

  // Restarted with other values: the log's limits stay, and exec says which flags it did not apply.
  const again = await serve(t, [script, '--dir', dir, '--compute-ticks', '50', '--memory-bytes', '32MiB'])
  const stderr = again.stderr()
  assert.equal((await initEntry(again.rpcUrl)).limits.computeTicks, 5)
  assert.match(stderr, /--compute-ticks 50 is not applied: this VM's limits were fixed at its first deploy \(its log records 5\)/)
  assert.doesNotMatch(stderr, /--memory-bytes/, 'a flag equal to the logged value is not reported')
  assert.equal(await stop(again.child), 0)
})

test('exec refuses a limit the VM cannot run with, naming the flag, before anything is deployed; a limit above the audit ceiling gets a note', async (t) => {
  const work = await tempDir(t)
  const script = join(work, 'spin.js')
  await writeFile(script, SPIN)
  for (const [flag, value, why] of [
    ['--memory-bytes', '1000', /--memory-bytes must be a multiple of 65536/],
    ['--stack-bytes', '1MiB', /--stack-bytes must be at most 131072/],
    ['--compute-ticks', '0', /expected a whole number of at least 1/],
    ['--max-file-bytes', 'lots', /expected a size in bytes/],
  ] as const) {
    const dir = join(work, `vm-${flag.slice(2)}`)
    const refused = await nodevms(['exec', script, '--dir', dir, '--port', '0', flag, value])
    assert.equal(refused.code, 2, refused.stderr)
    assert.match(refused.stderr, /UsageError/)
    assert.match(refused.stderr, why)
    assert.doesNotMatch(refused.stderr, /limits\./, 'no library wording')
    assert.equal(existsSync(dir), false, 'nothing deployed')
  }
  const costly = await serve(t, [script, '--dir', join(work, 'costly'), '--compute-ticks', '200000'])
  const stderr = costly.stderr()
  assert.match(
    stderr,
    /--compute-ticks 200000 is above what auditors replay by default \(100000\): they must raise their ceiling \(nodevms verify --max-ticks 200000\)/,
  )
  assert.equal(await stop(costly.child), 0)
})

test('call --args-file takes the arguments as a JSON array from a file or from standard input: a 317 KB argument goes through', async (t) => {
  const work = await tempDir(t)
  const script = join(work, 'spin.js')
  await writeFile(script, SPIN)
  const { served } = await exec(t, script, ['--dir', join(work, 'vm')])
  const big = 'y'.repeat(317 * 1024)
  const file = join(work, 'args.json')
  await writeFile(file, JSON.stringify([big]))
  const fromFile = await nodevms(['call', served.rpcUrl, 'size', '--args-file', file])
  assert.equal(fromFile.code, 0, fromFile.stderr)
  assert.equal(JSON.parse(fromFile.stdout), big.length + 2)

  const child = spawn(process.execPath, [BIN, 'call', served.rpcUrl, 'echo', '--args-file', '-'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  child.stdin.end(JSON.stringify([1, 'two', { three: [3] }, null]))
  assert.equal(await exited(child), 0)
  assert.deepEqual(JSON.parse(stdout), [1, 'two', { three: [3] }, null])

  const logged = await nodevms(['log', served.rpcUrl, '--json'])
  const calls = logged.stdout.trim().split('\n').slice(1)
  assert.equal(calls.length, 2)
  for (const [args, why] of [
    [['--args-file', file, 'extra'], /on the command line or in --args-file, not both/],
    [['--args-file', join(work, 'missing.json')], /cannot read --args-file .*missing\.json/],
    [['--args-file', script], /is not JSON .*write the arguments as a JSON array/],
  ] as const) {
    const refused = await nodevms(['call', served.rpcUrl, 'echo', ...args])
    assert.equal(refused.code, 2, refused.stderr)
    assert.match(refused.stderr, why)
  }
  await writeFile(file, '{"a": 1}')
  const notArray = await nodevms(['call', served.rpcUrl, 'echo', '--args-file', file])
  assert.match(notArray.stderr, /must hold a JSON array of the arguments .*got object/)
  const after = await nodevms(['log', served.rpcUrl, '--json'])
  assert.equal(after.stdout.trim().split('\n').length, 3, 'nothing refused was logged')
})

test("keygen onto an existing file names --force, not the library's option", async (t) => {
  const file = join(await tempDir(t), 'key.json')
  assert.equal((await nodevms(['keygen', '--out', file])).code, 0)
  const again = await nodevms(['keygen', '--out', file])
  assert.equal(again.code, 2)
  assert.match(again.stderr, /already exists; choose another path, or give --force to replace it/)
  assert.doesNotMatch(again.stderr, /overwrite/)
  assert.equal((await nodevms(['keygen', '--out', file, '--force'])).code, 0)
})

test("exec into a dir that holds other files names --dir, not the library's deploy", async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'notes.txt'), 'not a VM')
  await writeFile(join(dir, 'app.js'), 'exports.hi = () => 1\n')
  const refused = await nodevms(['exec', join(dir, 'app.js'), '--dir', dir, '--port', '0'])
  assert.notEqual(refused.code, 0)
  assert.match(refused.stderr, /holds files that are not LibVMS data; give --dir an empty or new directory, or the dir of an existing VM/)
  assert.doesNotMatch(refused.stderr, /give deploy/)
})

test("verify reaches a factory's VM after it was shut down: through the factory at its old URL, or by its call log with --peer, across a factory restart", async (t) => {
  const work = await tempDir(t)
  const factoryDir = join(work, 'factory')
  const factory = await serve(t, [join(SCRIPTS, 'factory.js'), '--factory', '--dir', factoryDir])
  const provisioned = await nodevms([
    'call',
    factory.rpcUrl,
    'provisionVM',
    JSON.stringify({ code: 'let n = 0; exports.inc = () => ++n' }),
    '--user',
    'alice',
  ])
  assert.equal(provisioned.code, 0, provisioned.stderr)
  const tenant = JSON.parse(provisioned.stdout) as { id: string; rpcUrl: string; callLogUrl: string }
  assert.equal((await nodevms(['call', tenant.rpcUrl, 'inc'])).stdout.trim(), '1')
  assert.equal((await nodevms(['call', factory.rpcUrl, 'shutdownVM', JSON.stringify(tenant.id), '--user', 'alice'])).code, 0)

  const check = async (args: string[], what: string) => {
    const run = await nodevms(['verify', ...args, '--json'])
    assert.equal(run.code, 0, `${what}: ${run.stderr}`)
    const verdict = JSON.parse(run.stdout) as { verified: boolean; calls: number }
    assert.deepEqual([verdict.verified, verdict.calls], [true, 1], what)
    return run.stderr
  }
  const noted = await check([tenant.rpcUrl], 'its old RPC URL')
  assert.match(
    noted,
    new RegExp(`note: ${tenant.rpcUrl} was shut down by its factory: auditing its call log ${tenant.callLogUrl} through ${factory.rpcUrl}`),
  )
  await check([tenant.callLogUrl, '--peer', factory.rpcUrl], 'its call log, --peer the factory')
  const unknown = await nodevms(['verify', tenant.callLogUrl, '--timeout', '2000'])
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /give its ws:\/\/ URL instead, or look it up on the DHT with --swarm/)
  assert.doesNotMatch(unknown.stderr, /\{peers/, 'no library wording')
  const badPeer = await nodevms(['verify', tenant.callLogUrl, '--peer', 'localhost:5555'])
  assert.equal(badPeer.code, 2)
  assert.match(badPeer.stderr, /expected a host's RPC URL, such as ws:\/\/host:5555\//)

  // The factory restarted: it still says where the shut-down VM is audited.
  assert.equal(await stop(factory.child), 0)
  const again = await serve(t, [join(SCRIPTS, 'factory.js'), '--factory', '--dir', factoryDir])
  const movedUrl = `${again.rpcUrl}${tenant.id}`
  const notedAgain = await check([movedUrl], 'its path on the restarted factory')
  assert.match(notedAgain, /was shut down by its factory/)
  assert.equal(await stop(again.child), 0)
})

test('exec --access-log prints a line per call: on stderr (JSON lines with --json), or appended to a file', async (t) => {
  const work = await tempDir(t)
  const script = join(work, 'spin.js')
  await writeFile(script, `${SPIN}\nexports.fail = () => { throw new TypeError('no') }\n`)
  const onStderr = await serve(t, [script, '--dir', join(work, 'a'), '--access-log'])
  assert.equal((await nodevms(['call', onStderr.rpcUrl, 'spin', '10', '--user', 'ann'])).code, 0)
  assert.equal((await nodevms(['call', onStderr.rpcUrl, 'fail'])).code, 1)
  assert.equal(await stop(onStderr.child), 0)
  const records = onStderr
    .stderr()
    .split('\n')
    .filter((line) => line.startsWith('{"seq"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
  assert.equal(records.length, 2, onStderr.stderr())
  assert.deepEqual(Object.keys(records[0]).sort(), ['caller', 'method', 'ms', 'ok', 'seq', 'time'])
  assert.deepEqual([records[0].seq, records[0].caller, records[0].method, records[0].ok], [1, 'ann', 'spin', true])
  assert.deepEqual([records[1].seq, records[1].caller, records[1].ok, records[1].error], [2, null, false, 'TypeError'])
  assert.match(String(records[0].time), /^\d{4}-\d\d-\d\dT[\d:.]+Z$/)

  // Without --json, text lines; to a file, appended across restarts.
  const file = join(work, 'access.log')
  for (const round of [1, 2]) {
    const child = spawn(process.execPath, [BIN, 'exec', script, '--dir', join(work, 'b'), '--port', '0', '--access-log', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.after(() => stop(child))
    const rpcUrl = await new Promise<string>((resolve, reject) => {
      let text = ''
      child.stdout.on('data', (chunk) => {
        text += chunk
        const url = /RPC\s+(ws:\/\/\S+)/.exec(text)?.[1]
        if (url) resolve(url)
      })
      child.once('exit', (code) => reject(new Error(`exec exited ${code}`)))
    })
    assert.equal((await nodevms(['call', rpcUrl, round === 1 ? 'echo' : 'fail', String(round)])).code, round === 1 ? 0 : 1)
    assert.equal(await stop(child), 0)
  }
  const lines = (await readFile(file, 'utf8')).trim().split('\n')
  assert.equal(lines.length, 2, 'one line per call, appended')
  assert.match(lines[0], /^#1 \d{4}-\d\d-\d\dT[\d:.]+Z \(anonymous\) echo [\d.]+ ms ok$/)
  assert.match(lines[1], /^#2 \S+ \(anonymous\) fail [\d.]+ ms ✗ TypeError$/)
})
