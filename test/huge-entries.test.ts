/**
 * Logs of huge entries against the processes that read them. A host may fill its log with entries of
 * the most Hypercore stores (15 MiB each); `nodevms verify`, `nodevms log` and `nodevms explore` read
 * a log within a byte budget (docs/log-format.md, "Reading a log within a byte budget"), so they run
 * in a child process with a small V8 heap (HEAP_MB), where reading entries by the hundred (as before)
 * died of heap exhaustion. The logs are written by real VMs, with the host's own key: an honest host
 * that raised its argument limit.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import { type TestContext, test } from 'node:test'
import { MAX_START_ARCHIVE_BYTES } from '../src/audit/checkpoint-starts.js'
import { MAX_EXECUTION_PROOF_BYTES } from '../src/audit/execution-proof.js'
import { encodeCallPayload, signCallPayload } from '../src/auth/signed-call.js'
import { clippedJSON, clippedList } from '../src/codec/clipped-json.js'
import { CallLog, callerIdOf, generateKeyPair, type LogEntry, Verifier, VM } from '../src/index.js'
import { MAX_ENTRY_BYTES } from '../src/ledger/log-entry.js'
import { BIN, exited, firstLine } from './cli-helpers.js'
import { clientNonce, tempDir } from './helpers.js'

/** The V8 heap (old space) every reader runs with: reading whole entries by the hundred needs far more. */
const HEAP_MB = 96
const MiB = 1024 * 1024
/** A string that, as the only argument of a call, makes an entry of just under MAX_ENTRY_BYTES. */
const MAX_ARG_CHARS = MAX_ENTRY_BYTES - 2048

interface HugeLog {
  dir: string
  callLogUrl: string
  /** The size of each call entry's block. */
  sizes: number[]
}

/**
 * A stopped VM in a temp dir whose log holds `count` calls of `take(s)` with strings of `chars`
 * characters (a different letter each), written by a real VM with a raised argument limit; in
 * production mode each call is signed (its arguments are then in the entry twice: keep `chars` under
 * half an entry).
 */
async function hugeLog(
  t: TestContext,
  count: number,
  chars: number,
  options: { auth?: 'production'; checkpoints?: { every: number } } = {},
): Promise<HugeLog> {
  const dir = join(await tempDir(t, 'libvms-huge-'), 'vm')
  const vm = new VM('exports.take = (s) => s.length', {
    limits: { maxArgsBytes: 15 * MiB, memoryBytes: 128 * MiB },
    auth: options.auth ?? 'debug',
    checkpoints: options.checkpoints ?? false,
  })
  await vm.deploy({ dir, title: 'huge entries' })
  const caller = generateKeyPair()
  try {
    for (let i = 0; i < count; i++) {
      const args = [String.fromCharCode(97 + (i % 26)).repeat(chars)]
      if (options.auth === 'production') {
        const nonce = clientNonce()
        const payload = encodeCallPayload({
          callLog: vm.callLog.key,
          method: 'take',
          argsJson: JSON.stringify(args),
          nonce: 'ab'.repeat(16),
          counter: i + 1,
          clientNonce: nonce,
        })
        const signed = signCallPayload(payload, caller.secretKey)
        assert.equal(await vm.executeCall({ methodName: 'take', args, userId: callerIdOf(caller), signed, clientNonce: nonce }), chars)
      } else {
        assert.equal(await vm.executeCall({ methodName: 'take', args }), chars)
      }
    }
  } finally {
    await vm.close()
  }
  const log = await CallLog.open(dir)
  try {
    const sizes: number[] = []
    for await (const { bytes } of log.read({ start: 1 })) sizes.push(bytes)
    return { dir, callLogUrl: log.url, sizes }
  } finally {
    await log.close()
  }
}

/** `node --max-old-space-size=HEAP_MB nodevms ...args` to completion (at most 5 minutes). */
function nodevmsSmallHeap(args: string[]): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [`--max-old-space-size=${HEAP_MB}`, BIN, ...args],
      { timeout: 300_000, maxBuffer: 256 * MiB },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number' && !error.signal) reject(error)
        else
          resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, signal: error?.signal ?? null, stdout, stderr })
      },
    )
  })
}

/** Asserts a run ended with exit code 0 (a heap exhaustion is a signal, SIGABRT, or code 134). */
function assertRan(run: { code: number | null; signal: string | null; stderr: string }, what: string): void {
  assert.equal(run.signal, null, `${what} was ended by ${run.signal}: ${run.stderr.slice(-2000)}`)
  assert.equal(run.code, 0, `${what} exited with ${run.code}: ${run.stderr.slice(-2000)}`)
}

test(`an auditor verifies a log of maximum-size entries (15 MiB each) in a ${HEAP_MB} MiB heap, whole and in segments, and nodevms log prints it`, async (t) => {
  const huge = await hugeLog(t, 4, MAX_ARG_CHARS, { checkpoints: { every: 2 } })
  assert.equal(huge.sizes.length, 4)
  for (const size of huge.sizes) assert.ok(size > MAX_ENTRY_BYTES - 4096 && size <= MAX_ENTRY_BYTES, `an entry of ${size} bytes`)

  const verified = await nodevmsSmallHeap(['verify', huge.dir, '--json'])
  assertRan(verified, 'nodevms verify')
  const report = JSON.parse(verified.stdout) as { verified: boolean; calls: number }
  assert.equal(report.verified, true)
  assert.equal(report.calls, 4)

  // A parallel audit feeds its second segment's thread within its byte budget.
  const segmented = await nodevmsSmallHeap(['verify', huge.dir, '--jobs', '2', '--json'])
  assertRan(segmented, 'nodevms verify --jobs 2')
  const inSegments = JSON.parse(segmented.stdout) as { calls: number; segments: number[] }
  assert.equal(inSegments.calls, 4)
  assert.deepEqual(inSegments.segments, [0, 2], 'the log was cut at the checkpoint after call 2')

  const printed = await nodevmsSmallHeap(['log', huge.dir])
  assertRan(printed, 'nodevms log')
  const lines = printed.stdout.trim().split('\n')
  assert.equal(lines.length, 5, 'one line per entry')
  assert.match(lines[1], /take\("a{199}…\) → 15726592/, 'the argument is cut, the result shown')
  assert.ok(
    lines.every((line) => line.length < 1000),
    'no line holds a whole value',
  )

  const json = await nodevmsSmallHeap(['log', huge.dir, '--json', '--from', '3'])
  assertRan(json, 'nodevms log --json')
  const entries = json.stdout.trim().split('\n')
  assert.equal(entries.length, 2, '--json prints each entry whole, one at a time')
  assert.equal((JSON.parse(entries[1]) as { args: string[] }).args[0], 'd'.repeat(MAX_ARG_CHARS))
})

test(`an auditor verifies a production log of big signed entries in a ${HEAP_MB} MiB heap (signature checks batched by bytes)`, async (t) => {
  // The arguments are in the entry twice (args, and the signed payload): 7 MiB of them make an entry of 14 MiB.
  const huge = await hugeLog(t, 2, 7 * MiB, { auth: 'production' })
  for (const size of huge.sizes) assert.ok(size > 14 * MiB && size <= MAX_ENTRY_BYTES, `an entry of ${size} bytes`)
  const verified = await nodevmsSmallHeap(['verify', huge.dir, '--json'])
  assertRan(verified, 'nodevms verify')
  assert.equal((JSON.parse(verified.stdout) as { calls: number }).calls, 2)
})

/** `nodevms explore <dir> --json --port 0` with a small heap, ended (SIGTERM, by pid) when the test ends. */
async function exploreSmallHeap(t: TestContext, dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [`--max-old-space-size=${HEAP_MB}`, BIN, 'explore', dir, '--json', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGTERM')
    await exited(child)
  })
  const { url } = await firstLine<{ url: string }>(child, `nodevms explore ${dir}`, 60_000)
  return { child, url }
}

test(`30 entries of 4 MiB: nodevms verify and the explorer's first page answer in a ${HEAP_MB} MiB heap, values cut`, async (t) => {
  const huge = await hugeLog(t, 30, 4 * MiB)
  const verified = await nodevmsSmallHeap(['verify', huge.dir, '--json'])
  assertRan(verified, 'nodevms verify')
  assert.equal((JSON.parse(verified.stdout) as { calls: number }).calls, 30)

  const { child, url } = await exploreSmallHeap(t, huge.dir)
  const page = (await (await fetch(new URL('/api/entries?limit=50', url))).json()) as {
    length: number
    rows: { seq: number; method: string; args: string; result: string }[]
  }
  assert.equal(page.length, 31)
  assert.deepEqual(
    page.rows.map((row) => row.seq),
    Array.from({ length: 31 }, (_, i) => 30 - i),
    'newest first, every entry',
  )
  const row = page.rows.find((r) => r.seq === 30)
  assert.equal(row?.args, `"${'d'.repeat(299)}…`, 'the value is cut to a row')
  assert.equal(row?.result, String(4 * MiB))
  // A filtered page reads the whole log through the index (every entry, one at a time).
  const filtered = (await (await fetch(new URL('/api/entries?limit=50&method=take', url))).json()) as { rows: unknown[] }
  assert.equal(filtered.rows.length, 30)
  const one = (await (await fetch(new URL('/api/entries/7', url))).json()) as { entry: { args: string[] } }
  assert.equal(one.entry.args[0].length, 4 * MiB, 'one entry in full')
  assert.equal(child.exitCode, null, 'the explorer is still running')
})

test('a checkpoint whose archive holds more than a segment may be handed is passed over, sized before any block is read', async (t) => {
  // Eight calls each write a 17 MiB file: the archive up to checkpoint 8 holds more than MAX_START_ARCHIVE_BYTES, up to checkpoint 4 less.
  const fileBytes = 17 * MiB
  assert.ok(8 * fileBytes > MAX_START_ARCHIVE_BYTES && 4 * fileBytes < MAX_START_ARCHIVE_BYTES)
  const dir = join(await tempDir(t, 'libvms-huge-'), 'vm')
  const vm = new VM(`exports.fill = (i) => System.files.writeFile('/f' + i, 'x'.repeat(${fileBytes}))`, {
    checkpoints: { every: 4, keep: 10 },
  })
  await vm.deploy({ dir, title: 'a big archive' })
  try {
    for (let i = 1; i <= 8; i++) await vm.executeCall({ methodName: 'fill', args: [i] })
  } finally {
    await vm.close()
  }
  const light = await nodevmsSmallHeap(['verify', dir, '--light'])
  assertRan(light, 'nodevms verify --light')
  assert.match(light.stderr, /snapshot of seq 8 passed over: a segment would start with \d+ bytes of archive blocks, more than 134217728/)
  assert.match(light.stdout, /light audit: verified the 4 calls after checkpoint 4/)
})

test("an execution proof of an entry after more than 256 MiB of entries is refused from the sizes in the log's tree, without reading them", async (t) => {
  // A log signed with its own key: 18 entries of 15 MiB, more than an execution proof may hold.
  const log = await CallLog.create(join(await tempDir(t, 'libvms-huge-'), 'log'))
  t.after(() => log.close())
  const count = Math.ceil(MAX_EXECUTION_PROOF_BYTES / MAX_ARG_CHARS) + 1
  for (let i = 0; i < count; i++) await log.append({ type: 'call', pad: 'p'.repeat(MAX_ARG_CHARS) } as unknown as LogEntry)
  await log.append({ type: 'call', pad: 'the divergent one' } as unknown as LogEntry)
  // Their blocks are dropped from storage (their tree stays): reading any would wait for ever.
  await (log.core as unknown as { clear(start: number, end: number): Promise<void> }).clear(0, count)
  assert.equal(await log.core.has(0), false)
  await assert.rejects(Verifier.proveDivergence(log, count), {
    name: 'StateError',
    code: 'ERR_INVALID_STATE',
    message: new RegExp(`entries 0 to ${count} hold over ${MAX_EXECUTION_PROOF_BYTES} bytes: too many for an execution proof`),
  })
})

test('a value cut as it is written is the text JSON.stringify writes, up to the cut', () => {
  const values: unknown[] = [
    null,
    true,
    -1.5e-7,
    'plain',
    'quotes " and \\ and \n and \u0001 and 😀',
    [],
    {},
    [1, [2, [3, { a: 'x' }]], null],
    JSON.parse('{"__proto__": {"b": 1}, "": [true, false], "k\\"ey": "v"}'),
    { $bytes: 'AAEC' },
  ]
  for (const value of values) {
    const whole = JSON.stringify(value)
    for (const max of [0, 1, 2, 5, 9, 17, 40, 1000]) {
      const expected = whole.length > max ? `${whole.slice(0, max)}…` : whole
      assert.equal(clippedJSON(value, max), expected, `${whole} cut at ${max}`)
    }
  }
  assert.equal(clippedJSON(undefined, 10), 'undefined')
  assert.equal(clippedList(['a', 1, { b: [2] }], 100), '"a", 1, {"b":[2]}')
  assert.equal(clippedList(['abc', 'def'], 8), '"abc", "…')
  assert.equal(clippedJSON('z'.repeat(15 * MiB), 300), `"${'z'.repeat(299)}…`)
})
