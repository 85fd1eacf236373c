/**
 * The nodevms command line, run as real processes (the built dist/cli/nodevms.js; `npm test` builds
 * first). Servers are `nodevms exec` children ended by their pid.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { type CallEntry, codeHash, RPCClient } from '../src/index.js'
import { VMStorage } from '../src/ledger/vm-storage.js'
import { BIN, exec, exited, firstLine, nodevms, root, SCRIPTS, stop } from './cli-helpers.js'
import { tempDir } from './helpers.js'

const ESC = '\u001b['

test('exec serves the example scripts; call (with --user), info, log and verify them from other processes', async (t) => {
  const dir = await tempDir(t)

  const counter = await exec(t, join(SCRIPTS, 'counter.js'), ['--dir', join(dir, 'counter'), '--title', 'A counter'])
  assert.equal(counter.served.auth, 'debug')
  assert.equal(counter.served.dir, join(dir, 'counter'))
  assert.equal((await nodevms(['call', counter.served.rpcUrl, 'increment'])).stdout.trim(), '1')
  assert.equal((await nodevms(['call', counter.served.rpcUrl, 'increment'])).stdout.trim(), '2')
  const info = JSON.parse((await nodevms(['info', counter.served.rpcUrl, '--json'])).stdout)
  assert.deepEqual(info, {
    url: counter.served.rpcUrl,
    title: 'A counter',
    auth: 'debug',
    methods: ['increment', 'get'],
    callLogUrl: counter.served.callLogUrl,
    filesArchiveUrl: counter.served.filesArchiveUrl,
    schema: 4,
    code: { hash: codeHash(readFileSync(join(SCRIPTS, 'counter.js'), 'utf8')), seq: 0 },
  })
  assert.match(
    (await nodevms(['info', counter.served.rpcUrl])).stdout,
    /schema\s+log schema 4 \(every call's entry holds its client's nonce\)/,
  )
  const human = await nodevms(['log', counter.served.rpcUrl])
  assert.match(human.stdout, /#0 .* init "A counter" \(debug mode; exports increment, get\)/)
  assert.match(human.stdout, /#2 .*\(anonymous\)\s+increment\(\) → 2\s+files v0/)
  assert.ok(!human.stdout.includes(ESC), 'no colours when stdout is not a terminal')
  const verdict = await nodevms(['verify', counter.served.rpcUrl, '--json'])
  assert.equal(verdict.code, 0, verdict.stderr)
  assert.deepEqual(
    { ...JSON.parse(verdict.stdout), target: undefined },
    {
      verified: true,
      target: undefined,
      callLogUrl: counter.served.callLogUrl,
      filesArchiveUrl: counter.served.filesArchiveUrl,
      entries: 3,
      calls: 2,
      failedCalls: 0,
      filesVersion: 0,
    },
  )
  assert.equal(await stop(counter.child), 0, 'SIGTERM stops it cleanly')

  const hello = await exec(t, join(SCRIPTS, 'hello-world.js'), ['--dir', join(dir, 'hello')])
  assert.equal((await nodevms(['call', hello.served.rpcUrl, 'hello', '--user', 'bob'])).stdout.trim(), '"Hello, bob!"')
  assert.equal((await nodevms(['call', hello.served.rpcUrl, 'hello'])).stdout.trim(), '"Hello, stranger!"')

  const keys = await exec(t, join(SCRIPTS, 'key-server.js'), ['--dir', join(dir, 'keys')])
  const url = keys.served.rpcUrl
  assert.equal((await nodevms(['call', url, 'claim', '--user', 'alice'])).stdout.trim(), '"alice"')
  const refused = await nodevms(['call', url, 'put', 'colour', '{"hex":"#00f"}', '--user', 'bob'])
  assert.equal(refused.code, 1, 'a call that fails inside the VM exits 1')
  assert.match(refused.stderr, /^✗ Error: Only an admin can do that \[ERR_CALL_FAILED\]\n$/)
  const unknown = await nodevms(['call', url, 'nope'])
  assert.equal(unknown.code, 2, unknown.stderr)
  assert.match(
    unknown.stderr,
    /^✗ MethodNotFound: the VM has no callable method "nope"; nodevms info lists them \[ERR_METHOD_NOT_FOUND\]\n$/,
  )
  assert.equal((await nodevms(['call', url, 'put', 'colour', '{"hex":"#00f"}', '--user', 'alice'])).code, 0)
  assert.equal((await nodevms(['call', url, 'addAdmin', 'bob', '--user', 'alice'])).code, 0)
  assert.equal((await nodevms(['call', url, 'put', 'size', '42', '--user', 'bob'])).code, 0)
  assert.deepEqual(JSON.parse((await nodevms(['call', url, 'get', 'colour'])).stdout), { hex: '#00f' })
  assert.deepEqual(JSON.parse((await nodevms(['call', url, 'list'])).stdout), ['colour', 'size'])
  const keysVerdict = await nodevms(['verify', url])
  assert.equal(keysVerdict.code, 0, keysVerdict.stderr)
  assert.match(keysVerdict.stdout, /✓ verified 7 calls \(1 failed inside the VM, as logged\); files at version 7/)

  const persisted = await exec(t, join(SCRIPTS, 'persisted-counter.js'), ['--dir', join(dir, 'persisted')])
  for (let i = 1; i <= 3; i++) assert.equal((await nodevms(['call', persisted.served.rpcUrl, 'increment'])).stdout.trim(), String(i))
  assert.equal((await nodevms(['verify', persisted.served.rpcUrl])).code, 0)
})

test('a factory over the command line: provision, call the new VM, verify both', async (t) => {
  const dir = await tempDir(t)
  const factory = await exec(t, join(SCRIPTS, 'factory.js'), [
    '--factory',
    '--max-vms',
    '2',
    '--max-vms-per-caller',
    '1',
    '--memory-budget',
    '1GiB',
    '--dir',
    join(dir, 'factory'),
  ])
  assert.equal(factory.served.factory, true)
  const provisioned = await nodevms([
    'call',
    factory.served.rpcUrl,
    'provisionVM',
    JSON.stringify({ code: 'exports.hi = () => "hi from " + System.caller.id' }),
    '--user',
    'alice',
  ])
  assert.equal(provisioned.code, 0, provisioned.stderr)
  const vm = JSON.parse(provisioned.stdout) as { rpcUrl: string }
  assert.equal((await nodevms(['call', vm.rpcUrl, 'hi', '--user', 'bob'])).stdout.trim(), '"hi from bob"')
  assert.equal((await nodevms(['verify', factory.served.rpcUrl])).code, 0)
  assert.equal((await nodevms(['verify', vm.rpcUrl])).code, 0)
  const code = JSON.stringify({ code: 'exports.n = () => 1' })
  // At --max-vms-per-caller, alice's next provisioning fails; another caller has a share of its own.
  const second = await nodevms(['call', factory.served.rpcUrl, 'provisionVM', code, '--user', 'alice'])
  assert.equal(second.code, 1, second.stderr)
  assert.match(
    second.stderr,
    /^✗ CapacityExceeded: caller alice already runs 1 VM of this factory.*\(maxVMsPerCaller\).*\[ERR_CAPACITY\]$/m,
  )
  // At --max-vms, provisioning fails with the documented name and code.
  assert.equal((await nodevms(['call', factory.served.rpcUrl, 'provisionVM', code])).code, 0, 'the second of two')
  const full = await nodevms(['call', factory.served.rpcUrl, 'provisionVM', code])
  assert.equal(full.code, 1, full.stderr)
  assert.match(full.stderr, /^✗ CapacityExceeded: this factory already runs 2 VMs, its limit \(maxVMs\).*\[ERR_CAPACITY\]$/m)
  const usage = await nodevms(['exec', join(SCRIPTS, 'counter.js'), '--max-vms', '2'])
  assert.equal(usage.code, 2)
  assert.match(usage.stderr, /--max-vms applies to factories/)
  const budget = await nodevms(['exec', join(SCRIPTS, 'counter.js'), '--memory-budget', '2GiB'])
  assert.equal(budget.code, 2)
  assert.match(budget.stderr, /--memory-budget applies to factories/)
  const badSize = await nodevms(['exec', join(SCRIPTS, 'factory.js'), '--factory', '--memory-budget', 'lots'])
  assert.equal(badSize.code, 2)
  assert.match(badSize.stderr, /expected a size in bytes, such as 8GiB/)
})

test('verify finds data changed out of band (exit 1, divergence named); a dir in use is refused', async (t) => {
  const dir = join(await tempDir(t), 'persisted')
  const server = await exec(t, join(SCRIPTS, 'persisted-counter.js'), ['--dir', dir])
  for (let i = 0; i < 3; i++) await nodevms(['call', server.served.rpcUrl, 'increment'])
  const inUse = await nodevms(['verify', dir])
  assert.equal(inUse.code, 2)
  assert.match(inUse.stderr, /in use by a running VM.*\[ERR_DIR_IN_USE\]/)
  assert.equal(await stop(server.child), 0)
  assert.equal((await nodevms(['verify', dir])).code, 0, 'the stopped VM verifies from its dir')

  // The host edits the archive outside any call.
  const storage = await VMStorage.openExisting(dir)
  await storage.filesArchive.writeFile('/count', '1000')
  await storage.close()
  const lied = await nodevms(['verify', dir])
  assert.equal(lied.code, 1)
  assert.match(lied.stdout, /✗ divergence: the archive has changes after seq 3 \(increment\) that no call made/)
  assert.match(lied.stdout, /path\s+\/count/)
  const json = JSON.parse((await nodevms(['verify', dir, '--json'])).stdout)
  assert.equal(json.verified, false)
  assert.equal(json.divergence.seq, 3)
  assert.equal(json.divergence.path, '/count')
})

test('kill -9 mid-load, restart on the same dir: every answered call is in the log and verify passes', async (t) => {
  const dir = join(await tempDir(t), 'persisted')
  const first = await exec(t, join(SCRIPTS, 'persisted-counter.js'), ['--dir', dir])
  const answered: number[] = []
  const clients = await Promise.all(
    Array.from({ length: 4 }, async () => {
      const client = new RPCClient()
      await client.connect(first.served.rpcUrl)
      return client
    }),
  )
  const deadline = Date.now() + 10_000
  const load = clients.map(async (client) => {
    for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
      try {
        answered.push((await client.call('increment')) as number)
      } catch {
        return // the server is gone
      }
    }
  })
  // Kill at a random moment after the first answer, so a slow machine still kills it mid-load.
  for (let i = 0; i < 1000 && answered.length === 0 && Date.now() < deadline; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  await new Promise((resolve) => setTimeout(resolve, Math.random() * 500))
  process.kill(first.served.pid, 'SIGKILL')
  await Promise.all(load)
  await Promise.all(clients.map((c) => c.close()))
  await exited(first.child)
  assert.ok(answered.length > 0, 'some calls were answered before the kill')

  const second = await exec(t, join(SCRIPTS, 'persisted-counter.js'), ['--dir', dir])
  assert.ok(second.served.calls >= answered.length, `${second.served.calls} calls logged, ${answered.length} answered`)
  const logged = (await nodevms(['log', second.served.rpcUrl, '--json', '--from', '1'])).stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as CallEntry & { seq: number })
  const results = new Set(logged.map((e) => e.result))
  for (const n of answered) assert.ok(results.has(n), `answered increment ${n} is in the log`)
  const after = await nodevms(['call', second.served.rpcUrl, 'increment'])
  assert.equal(after.stdout.trim(), String(second.served.calls + 1), 'the counter resumes where the log ends')
  const verdict = await nodevms(['verify', second.served.rpcUrl])
  assert.equal(verdict.code, 0, verdict.stdout + verdict.stderr)
})

test('verify --follow reports a divergence introduced while it runs', async (t) => {
  const host = spawn(process.execPath, ['--import', 'tsx', join(root, 'test/fixtures/lying-host.ts')], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.after(async () => {
    host.stdin?.end()
    await exited(host)
  })
  const { rpcUrl } = await firstLine<{ rpcUrl: string }>(host, 'the lying host')
  const client = new RPCClient()
  await client.connect(rpcUrl)
  t.after(() => client.close())
  for (let i = 0; i < 3; i++) await client.call('increment')

  const verifier = spawn(process.execPath, [BIN, 'verify', rpcUrl, '--follow', '--json'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(async () => {
    if (verifier.exitCode === null && verifier.pid) process.kill(verifier.pid, 'SIGKILL')
    await exited(verifier)
  })
  let verdict = ''
  verifier.stdout?.on('data', (chunk) => {
    verdict += chunk
  })
  // Honest calls while it follows: it keeps running.
  for (let i = 0; i < 3; i++) await client.call('increment')
  await new Promise((resolve) => setTimeout(resolve, 1500))
  assert.equal(verifier.exitCode, null, 'still following after honest calls')

  const forged = new Promise<{ forged: number }>((resolve) => {
    const lines = createInterface({ input: host.stdout as NodeJS.ReadableStream })
    lines.on('line', (line) => resolve(JSON.parse(line)))
  })
  host.stdin?.write('forge\n')
  const { forged: seq } = await forged
  assert.equal(await exited(verifier, 20_000), 1)
  const report = JSON.parse(verdict)
  assert.equal(report.verified, false)
  assert.equal(report.divergence.seq, seq)
  assert.equal(report.divergence.field, 'result')
})

test('repl --exec evaluates a call and prints the result; log --follow prints calls as they land', async (t) => {
  const dir = await tempDir(t)
  const { served } = await exec(t, join(SCRIPTS, 'counter.js'), ['--dir', join(dir, 'counter')])
  const one = await nodevms(['repl', served.rpcUrl, '--exec', 'client.increment()'])
  assert.equal(one.code, 0, one.stderr)
  assert.equal(one.stdout.trim(), '1')
  const statements = await nodevms([
    'repl',
    served.rpcUrl,
    '--user',
    'ann',
    '--exec',
    'await client.increment(); return client.call("get")',
  ])
  assert.equal(statements.stdout.trim(), '2')
  const failing = await nodevms(['repl', served.rpcUrl, '--exec', 'client.nope()'])
  assert.equal(failing.code, 2)
  assert.match(
    failing.stderr,
    /^✗ UsageError: the VM has no method "nope"; its methods: increment.* \(nodevms info lists them\) \[ERR_USAGE\]$/m,
  )

  const follower = spawn(process.execPath, [BIN, 'log', served.rpcUrl, '--follow', '--json', '--from', '4'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(async () => {
    if (follower.exitCode === null && follower.pid) process.kill(follower.pid, 'SIGKILL')
    await exited(follower)
  })
  const line = firstLine<{ seq: number; method: string; caller: string }>(follower, 'log --follow')
  await nodevms(['call', served.rpcUrl, 'increment', '--user', 'zed'])
  const entry = await line
  assert.deepEqual([entry.seq, entry.method, entry.caller], [4, 'increment', 'zed'])
  if (follower.pid) process.kill(follower.pid, 'SIGINT')
  assert.equal(await exited(follower), 0)
})

test('production mode on the command line: keygen, exec --auth production, call --key; other callers are refused', async (t) => {
  const dir = await tempDir(t)
  const keyFile = join(dir, 'alice.key')
  const made = await nodevms(['keygen', '--out', keyFile, '--json'])
  assert.equal(made.code, 0, made.stderr)
  const { callerId } = JSON.parse(made.stdout) as { callerId: string }
  assert.match(callerId, /^[0-9a-f]{64}$/)
  const again = await nodevms(['keygen', '--out', keyFile])
  assert.equal(again.code, 2)
  assert.match(again.stderr, /ERR_KEY_FILE_EXISTS/)

  const { served } = await exec(t, join(SCRIPTS, 'hello-world.js'), ['--auth', 'production', '--dir', join(dir, 'hello')])
  assert.equal(served.auth, 'production')
  assert.equal((await nodevms(['call', served.rpcUrl, 'hello', '--key', keyFile])).stdout.trim(), `"Hello, ${callerId}!"`)
  const asUser = await nodevms(['call', served.rpcUrl, 'hello', '--user', 'mallory'])
  assert.equal(asUser.code, 2)
  assert.match(asUser.stderr, /\[ERR_AUTH_MODE\]/)
  const unsigned = await nodevms(['call', served.rpcUrl, 'hello'])
  assert.equal(unsigned.code, 2)
  assert.match(unsigned.stderr, /\[ERR_AUTH_REQUIRED\] — .*--key/)
  assert.doesNotMatch(unsigned.stderr + asUser.stderr, /\{keyPair\}|\{user\}/, "the command line's words, not the library's")
  const log = await nodevms(['log', served.rpcUrl, '--json', '--from', '1'])
  const entries = log.stdout.trim().split('\n')
  assert.equal(entries.length, 1, 'only the signed call was logged')
  const entry = JSON.parse(entries[0]) as CallEntry
  assert.equal(entry.caller, callerId)
  assert.ok(entry.signed)
  assert.equal((await nodevms(['verify', served.rpcUrl])).code, 0)
})

test('help, version, usage errors and connection errors: exit codes and one-line messages', async () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> }
  assert.equal(pkg.bin.nodevms, './dist/cli/nodevms.js')
  assert.equal((await nodevms(['--version'])).stdout.trim(), pkg.version)
  for (const command of ['exec', 'call', 'repl', 'verify', 'log', 'info', 'keygen']) {
    const help = await nodevms([command, '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, new RegExp(`Usage: nodevms ${command}`))
  }
  assert.match((await nodevms(['verify', '--help'])).stdout, /Exit codes: 0 verified, 1 divergence found/)
  const missing = await nodevms(['exec'])
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /^✗ UsageError: missing required argument 'script' \[ERR_USAGE\]$/m)
  const badPort = await nodevms(['exec', 'x.js', '--port', 'http'])
  assert.equal(badPort.code, 2)
  assert.match(badPort.stderr, /^✗ UsageError: --port must be a number from 0 to 65535, got "http" \[ERR_USAGE\]$/m)
  const badOption = await nodevms(['call', 'ws://127.0.0.1:9/', 'x', '--nope'])
  assert.equal(badOption.code, 2)
  assert.match(badOption.stderr, /^✗ UsageError: unknown option '--nope' \[ERR_USAGE\]$/m)
  const badNumber = await nodevms(['verify', '.', '--jobs', 'many'])
  assert.equal(badNumber.code, 2)
  assert.match(
    badNumber.stderr,
    /^✗ UsageError: option '-j, --jobs <n>' argument 'many' is invalid: expected a whole number \[ERR_USAGE\]$/m,
  )
  const unknown = await nodevms(['frobnicate'])
  assert.equal(unknown.code, 2)
  assert.match(unknown.stderr, /^✗ UsageError: unknown command 'frobnicate' \[ERR_USAGE\]$/m)

  const refused = await nodevms(['call', 'ws://127.0.0.1:9/', 'x'], { env: { NO_COLOR: '1' } })
  assert.equal(refused.code, 2)
  const lines = refused.stderr.trim().split('\n')
  assert.equal(lines.length, 1, 'one line, no stack trace')
  assert.match(lines[0], /^✗ ConnectError: could not connect to ws:\/\/127\.0\.0\.1:9\/.*\[ERR_CONNECT\]$/)
  const debug = await nodevms(['call', 'ws://127.0.0.1:9/', 'x', '--debug'])
  assert.ok(debug.stderr.trim().split('\n').length > 1, '--debug adds the stack trace')
  const notATarget = await nodevms(['verify', join(root, 'no-such-dir')])
  assert.equal(notATarget.code, 2)
  assert.match(notATarget.stderr, /is not a ws:\/\/ URL, a hyper:\/\/ URL or a VM's data dir/)
})

test('colours on a terminal, none with NO_COLOR (run under script(1) for a terminal)', async (t) => {
  const dir = await tempDir(t)
  const { NO_COLOR: _, ...env } = process.env
  /** `nodevms keygen --out <file>` with a terminal for its stdout; resolves with what it printed. */
  const onTerminal = (file: string, extra: NodeJS.ProcessEnv) =>
    new Promise<string>((resolve, reject) => {
      execFile(
        'script',
        ['-qc', `"${process.execPath}" "${BIN}" keygen --out "${join(dir, file)}"`, '/dev/null'],
        { env: { ...env, TERM: 'xterm', ...extra }, timeout: 30_000 },
        (error, stdout) => (error ? reject(error) : resolve(stdout)),
      )
    })
  const coloured = await onTerminal('a.key', {})
  assert.ok(coloured.includes(`${ESC}32m✓`), `a terminal gets colours: ${JSON.stringify(coloured)}`)
  const plain = await onTerminal('b.key', { NO_COLOR: '1' })
  assert.match(plain, /✓ saved/)
  assert.ok(!plain.includes(ESC), `NO_COLOR turns them off: ${JSON.stringify(plain)}`)
})

test('exec refuses, in one format with a hint and leaving no data dir: a port in use, an address this machine lacks, a dir it cannot make, a dir another exec serves', async (t) => {
  const work = await tempDir(t)
  const counter = join(SCRIPTS, 'counter.js')
  const busy = createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => busy.close(() => resolve())))
  const port = String((busy.address() as AddressInfo).port)

  const inUse = await nodevms(['exec', counter, '--port', port, '--dir', join(work, 'a')])
  assert.equal(inUse.code, 2, inUse.stderr)
  assert.match(
    inUse.stderr,
    new RegExp(`^✗ ListenError: port ${port} on 127\\.0\\.0\\.1 is in use: .* \\[ERR_LISTEN\\] — choose where with --port`, 'm'),
  )
  const elsewhere = await nodevms(['exec', counter, '--port', '0', '--host', '192.0.2.1', '--dir', join(work, 'b')])
  assert.equal(elsewhere.code, 2, elsewhere.stderr)
  assert.match(elsewhere.stderr, /^✗ ListenError: 192\.0\.2\.1 is not an address of this machine.*\[ERR_LISTEN\]/m)
  await assert.rejects(readdir(join(work, 'a')), { code: 'ENOENT' }, 'no data dir was made')
  await assert.rejects(readdir(join(work, 'b')), { code: 'ENOENT' }, 'no data dir was made')

  // A dir it may not write: as root (CI), the command runs as nobody, for whom the parent is read-only.
  const readOnly = join(work, 'read-only')
  await mkdir(readOnly)
  await chmod(work, 0o755)
  await chmod(readOnly, 0o555)
  const args = [BIN, 'exec', counter, '--port', '0', '--dir', join(readOnly, 'vm')]
  const asNobody =
    process.getuid?.() === 0 ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...args]] : null
  const unwritable = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const [command, argv] = (asNobody ?? [process.execPath, args]) as [string, string[]]
    execFile(command, argv, { cwd: root, timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr }),
    )
  })
  assert.equal(unwritable.code, 2, unwritable.stderr)
  assert.match(
    unwritable.stderr,
    /^✗ DirectoryError: cannot make the data dir .* \[ERR_DIR_NOT_WRITABLE\] — choose the data dir with --dir/m,
  )

  const dir = join(work, 'served')
  await exec(t, counter, ['--dir', dir])
  const second = await nodevms(['exec', counter, '--port', '0', '--dir', dir])
  assert.equal(second.code, 2, second.stderr)
  assert.match(second.stderr, /^✗ DirectoryError: .* is in use by a running VM.*\[ERR_DIR_IN_USE\]/m)
})

test('call: an argument that starts as JSON but does not parse is refused before anything is sent; --strings sends text as typed', async (t) => {
  const { served } = await exec(t, join(SCRIPTS, 'hello-world.js'), ['--dir', join(await tempDir(t), 'vm')])
  for (const bad of ['{"a":', '[1,2', '"unterminated']) {
    const refused = await nodevms(['call', served.rpcUrl, 'hello', bad])
    assert.equal(refused.code, 2, refused.stderr)
    assert.match(refused.stderr, /^✗ UsageError: argument 1 \(.*\) looks like JSON but does not parse .*--strings.*\[ERR_USAGE\]/m)
  }
  const loggedArgs = async () =>
    (await nodevms(['log', served.rpcUrl, '--json'])).stdout
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { args?: unknown }).args)
  assert.equal((await loggedArgs()).length, 1, 'only the init entry: nothing was logged')
  const sent = await nodevms(['call', served.rpcUrl, 'hello', '--strings', '{"a":', '42'])
  assert.equal(sent.code, 0, sent.stderr)
  assert.deepEqual((await loggedArgs()).at(-1), ['{"a":', '42'], 'sent as typed, as strings')
})

test('exec says when it resumes a VM (the calls it replays, from which snapshot, the time it took) and notes a factory script served without --factory', async (t) => {
  const work = await tempDir(t)
  const dir = join(work, 'counter')
  /** `nodevms exec … --json` with its stderr kept from the start; resolves once it serves. */
  const serve = async (script: string, dataDir: string, extra: string[] = []) => {
    const child = spawn(process.execPath, [BIN, 'exec', join(SCRIPTS, script), '--port', '0', '--json', '--dir', dataDir, ...extra], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.after(() => stop(child))
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const served = await new Promise<{ rpcUrl: string; calls: number }>((resolve, reject) => {
      createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line)))
      child.once('exit', (code) => reject(new Error(`exec exited with ${code}: ${stderr}`)))
    })
    return { child, served, stderr: () => stderr }
  }
  const first = await serve('counter.js', dir)
  for (let i = 0; i < 3; i++) assert.equal((await nodevms(['call', first.served.rpcUrl, 'increment'])).code, 0)
  assert.equal(await stop(first.child), 0)
  assert.doesNotMatch(first.stderr(), /resuming/, 'a first deploy resumes nothing')
  // Without checkpoints, the whole log is replayed.
  const again = await serve('counter.js', dir, ['--checkpoints', 'off'])
  assert.equal(again.served.calls, 3)
  assert.equal(await stop(again.child), 0)
  assert.match(again.stderr(), /^\{"resuming":\{"calls":3,"snapshot":0\}\}$/m)
  assert.match(again.stderr(), /^\{"resumed":\{"calls":3,"snapshot":0,"ms":\d+\}\}$/m)
  // With them (the default), a clean stop keeps a snapshot of the last call: nothing to replay.
  const third = await serve('counter.js', dir)
  assert.equal((await nodevms(['call', third.served.rpcUrl, 'increment'])).code, 0)
  assert.equal(await stop(third.child), 0)
  assert.match(third.stderr(), /^\{"resuming":\{"calls":0,"snapshot":3\}\}$/m, 'the first run stopped with a snapshot of seq 3')
  const fourth = await serve('counter.js', dir)
  assert.equal(await stop(fourth.child), 0)
  assert.match(fourth.stderr(), /^\{"resuming":\{"calls":0,"snapshot":4\}\}$/m)
  assert.match(fourth.stderr(), /^\{"resumed":\{"calls":0,"snapshot":4,"ms":\d+\}\}$/m)

  const factory = await serve('factory.js', join(work, 'factory'))
  assert.equal(await stop(factory.child), 0)
  assert.match(factory.stderr(), /note: .*factory\.js uses System\.vms, which only a VM factory has: serve it with --factory/)
})

test("exec of a script with a syntax error: the script's own line, no token it does not have, nothing left behind", async (t) => {
  const work = await tempDir(t)
  const cases: [string, string, RegExp][] = [
    // An unclosed body: QuickJS would name the wrapper's closing brace past the end of the file.
    [
      'unclosed.js',
      'let count = 0\nexports.increment = () => {\n  return ++count\nexports.get = () => count\n',
      /^✗ ScriptError: SyntaxError: unexpected end of the script: something opened is not closed \(script line 4\) \[ERR_SCRIPT\]$/m,
    ],
    [
      'stray.js',
      'let count = 0\nexports.increment = () => ++count\n}\nexports.get = () => count\nexports.x = 1\n',
      /^✗ ScriptError: SyntaxError: Unexpected token '\}' \(script line 3\) \[ERR_SCRIPT\]$/m,
    ],
  ]
  for (const [name, code, expected] of cases) {
    const file = join(work, name)
    await writeFile(file, code)
    const lines = code.split('\n').length - 1
    const dir = join(work, `${name}.vms`)
    const run = await nodevms(['exec', file, '--port', '0', '--dir', dir])
    assert.equal(run.code, 2, run.stderr)
    assert.match(run.stderr, expected)
    const line = Number(/\(script line (\d+)\)/.exec(run.stderr)?.[1])
    assert.ok(line >= 1 && line <= lines, `line ${line} is within the ${lines}-line file`)
    assert.doesNotMatch(run.stderr, /expression: '\}'/, 'no token from the wrapper')
    await assert.rejects(readdir(dir), { code: 'ENOENT' }, 'no data dir was made')
  }
})

test('exec resuming on a terminal: the line, a progress bar and the time it took, before it serves', async (t) => {
  const dir = join(await tempDir(t), 'counter')
  const first = await exec(t, join(SCRIPTS, 'counter.js'), ['--dir', dir])
  for (let i = 0; i < 3; i++) assert.equal((await nodevms(['call', first.served.rpcUrl, 'increment'])).code, 0)
  assert.equal(await stop(first.child), 0)
  // script(1) gives the command a terminal; `exec` makes nodevms the process it signals.
  const command = `exec "${process.execPath}" "${BIN}" exec "${join(SCRIPTS, 'counter.js')}" --port 0 --checkpoints off --dir "${dir}"`
  const { NO_COLOR: _, ...env } = process.env
  const child = spawn('script', ['-qfec', command, '/dev/null'], {
    cwd: root,
    env: { ...env, TERM: 'xterm' },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  t.after(() => stop(child))
  let output = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (/RPC\s+ws:\/\//.test(output)) resolve()
    })
    child.once('exit', (code) => reject(new Error(`exec exited with ${code} before serving: ${output}`)))
  })
  assert.equal(await stop(child), 0)
  const plain = output.replace(/\r/g, '')
  assert.match(plain, /^resuming: replaying 3 calls of its log$/m)
  assert.match(plain, /resuming \[#{24}\] 3\/3 \(\d+\/s\)/, 'the bar, full once every call is replayed')
  assert.match(plain, /resumed: 3 calls replayed in \d+ ms\n/)
  assert.ok(plain.indexOf('resumed:') < plain.indexOf('serving'), 'it says so before it serves')
})
