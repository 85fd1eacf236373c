/**
 * Fairness benchmark: how long another caller's call takes while one connection floods a VM, beside
 * the same call with no flood, measured in the same run.
 *
 *   npm run build && npx tsx bench/fairness.bench.ts                  (full size)
 *   npm run build && BENCH_SCALE=0.1 npx tsx bench/fairness.bench.ts  (quick smoke run)
 *
 * The VM is a real `nodevms exec` (dist/) in a child process; the flooders and the victim run in this
 * process, all on 127.0.0.1. The script's `write5(i)` writes five files (the flood); `hello`
 * answers at once. The victim makes its `hello` calls one at a time, with RPCClient (receipts on).
 *
 * Debug mode, one server per round (maxQueuedCalls `queueLimit`):
 *   quiet           the victim alone
 *   backlog         a connection keeps `backlog` write5 calls in flight (under the queue's bound),
 *                   sending one more for each answer; the victim calls on its own connection
 *   backlog_fifo    the same flood, the victim's calls sent on the flooding connection instead: they
 *                   wait behind its backlog in arrival order, as every caller's did with one FIFO
 *                   queue for all (what main did when it admitted the call at all)
 *   full            a connection keeps 1.5 × queueLimit calls in flight, so the queue is full and its
 *                   surplus is refused (ERR_QUEUE_FULL); the victim's refusals are counted too
 * Production mode, one server with the bad-signature budget (default 16) and one without (off):
 *   signed_quiet        an honest signed caller alone
 *   bad_signatures      4 attackers, each connecting again and again, sending 200 calls whose
 *                       signature does not verify, until the server closes the connection
 *   bad_signatures_off  the same attackers against --max-bad-signatures off: never closed, each keeps
 *                       64 bad calls in flight
 *
 * Prints one JSON object; progress goes to stderr. Every figure is the median of the rounds' figures
 * (3 rounds, the scenarios' order turning each round). Every loop is bounded in count and time; the
 * watchdog (startBenchRun) ends the run after 10 minutes.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { encodeCallPayload, signCallPayload } from '../src/auth/signed-call.js'
import { callerIdOf, generateKeyPair, RPCClient, type RPCError } from '../src/index.js'
import { parseKeyUrl } from '../src/ledger/keys.js'
import { startChild, stopChild, withTimeout } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { figure, log, machine, percentile, readSizing, round2 } from './bench-stats.js'

const ROUNDS = 3
const BIN = fileURLToPath(new URL('../dist/cli/nodevms.js', import.meta.url))
const SCRIPT = `
exports.write5 = async (i) => {
  for (let k = 0; k < 5; k++) await System.files.writeFile('/f' + (i % 20) + '-' + k, 'call ' + i)
  return i
}
exports.hello = () => 'hello'
`
/** Longest one victim call may take before the run gives up. */
const CALL_TIMEOUT_MS = 60_000
const ATTACKERS = 4

const { scale: SCALE, scaled } = readSizing()
const SIZES = {
  victimCalls: scaled(200, 20),
  fifoVictimCalls: scaled(10, 3),
  queueLimit: scaled(1000, 100),
  backlog: scaled(500, 50),
  /** Most calls one flooder sends in a scenario (it stops when the victim is done). */
  floodCalls: scaled(200_000, 20_000),
  badCallsPerConnection: 200,
  attackerWindow: 64,
  /** Most connections one attacker opens in a scenario. */
  attackerConnections: scaled(2000, 200),
}

const run = await startBenchRun('libvms-fairness-bench-', 10 * 60_000)

// ---- the server ----

interface Served {
  rpcUrl: string
  callLogUrl: string
  pid: number
}

async function startServer(label: string, args: string[]) {
  const dir = await run.freshDir(label)
  const script = join(dir, 'writer.js')
  await writeFile(script, SCRIPT)
  return startChild<Served>(BIN, ['exec', script, '--port', '0', '--json', '--dir', join(dir, 'vm'), ...args], label, {
    readyTimeoutMs: 60_000,
  })
}

// ---- clients ----

type Answer = { id: number; result?: unknown; error?: { data?: { code?: string } } }

/** A raw WebSocket JSON-RPC connection: requests by id, answers to their callbacks. */
class RawConnection {
  private nextId = 1
  private readonly pending = new Map<number, (answer: Answer) => void>()
  readonly closed: Promise<void>

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: WebSocket.RawData) => {
      const answer = JSON.parse(data.toString()) as Answer
      const done = this.pending.get(answer.id)
      this.pending.delete(answer.id)
      done?.(answer)
    })
    ws.on('error', () => {})
    this.closed = new Promise((resolve) => ws.once('close', () => resolve()))
  }

  static async open(
    url: string,
    handshake: Record<string, unknown>,
  ): Promise<{ connection: RawConnection; info: Record<string, unknown> }> {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve())
        ws.once('error', reject)
      }),
      10_000,
      'connecting',
    )
    const connection = new RawConnection(ws)
    const answer = await withTimeout(connection.request('rpc.handshake', handshake), 10_000, 'the handshake')
    if (!answer.result) throw new Error(`handshake refused: ${JSON.stringify(answer)}`)
    return { connection, info: answer.result as Record<string, unknown> }
  }

  /** Sends a request; `onAnswer` gets its answer (never, if the connection closes first). */
  send(method: string, params: unknown, onAnswer: (answer: Answer) => void): void {
    const id = this.nextId++
    this.pending.set(id, onAnswer)
    this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }))
  }

  request(method: string, params: unknown): Promise<Answer> {
    return new Promise((resolve) => this.send(method, params, resolve))
  }

  get waiting(): number {
    return this.pending.size
  }

  close(): void {
    this.ws.terminate()
  }
}

/** One connection keeping `inFlight` write5 calls outstanding, one more sent for each answer, until stopped. */
class Flooder {
  sent = 0
  ran = 0
  refused = 0
  /** An answer that was neither a result nor ERR_QUEUE_FULL (the scenario fails with it). */
  failure: string | null = null
  private stopped = false

  constructor(
    readonly connection: RawConnection,
    private readonly inFlight: number,
  ) {}

  start(): void {
    for (let i = 0; i < this.inFlight; i++) this.sendOne()
  }

  private sendOne(): void {
    if (this.stopped || this.sent >= SIZES.floodCalls) return
    const i = this.sent++
    this.connection.send('write5', [i], (answer) => {
      if (answer.result !== undefined) this.ran++
      else if (answer.error?.data?.code === 'ERR_QUEUE_FULL') this.refused++
      else this.failure ??= `a flood call failed: ${JSON.stringify(answer)}`
      this.sendOne()
    })
  }

  /** Stops sending; resolves once its calls have been answered (at most 2 minutes). */
  async stop(): Promise<void> {
    this.stopped = true
    const until = Date.now() + 120_000
    while (this.connection.waiting > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20))
    this.connection.close()
  }
}

interface Latencies {
  samples: number
  p50_ms: number
  p99_ms: number
  max_ms: number
  mean_ms: number
  refused: number
}

function summary(ms: number[], refused: number): Latencies {
  return {
    samples: ms.length,
    p50_ms: round2(percentile(ms, 50)),
    p99_ms: round2(percentile(ms, 99)),
    max_ms: round2(Math.max(...ms)),
    mean_ms: round2(ms.reduce((a, b) => a + b, 0) / ms.length),
    refused,
  }
}

/** `n` calls made one at a time by `call`, timed; refusals (ERR_QUEUE_FULL) counted, not timed. */
async function timedCalls(n: number, call: () => Promise<void>): Promise<Latencies> {
  const ms: number[] = []
  let refused = 0
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    try {
      await withTimeout(call(), CALL_TIMEOUT_MS, 'a victim call')
      ms.push(performance.now() - t0)
    } catch (err) {
      if ((err as RPCError).code !== 'ERR_QUEUE_FULL') throw err
      refused++
    }
  }
  return summary(ms, refused)
}

async function victim(url: string, options: { user?: string; keyPair?: ReturnType<typeof generateKeyPair> }): Promise<RPCClient> {
  const client = new RPCClient()
  await client.connect(url, options)
  return client
}

// ---- debug-mode scenarios ----

async function quiet(url: string): Promise<Record<string, unknown>> {
  const client = await victim(url, { user: 'victim' })
  try {
    return { victim: await timedCalls(SIZES.victimCalls, () => client.call('hello').then(() => {})) }
  } finally {
    await client.close()
  }
}

async function flooded(url: string, inFlight: number, fifo: boolean): Promise<Record<string, unknown>> {
  const { connection } = await RawConnection.open(url, { user: 'flooder' })
  const flooder = new Flooder(connection, inFlight)
  flooder.start()
  // Let the flood fill its share first.
  await new Promise((resolve) => setTimeout(resolve, 500))
  let latencies: Latencies
  if (fifo) {
    latencies = await timedCalls(SIZES.fifoVictimCalls, async () => {
      const answer = await connection.request('hello', [])
      if (answer.result === undefined) throw Object.assign(new Error('refused'), { code: answer.error?.data?.code })
    })
  } else {
    const client = await victim(url, { user: 'victim' })
    try {
      latencies = await timedCalls(SIZES.victimCalls, () => client.call('hello').then(() => {}))
    } finally {
      await client.close()
    }
  }
  await flooder.stop()
  if (flooder.failure) throw new Error(flooder.failure)
  return { victim: latencies, flooder: { sent: flooder.sent, ran: flooder.ran, refused: flooder.refused, in_flight: inFlight } }
}

// ---- production-mode scenarios ----

/** An attacker sending calls signed by another key than its handshake's, until `stop()`. */
class BadSigner {
  connections = 0
  checked = 0
  closedByServer = 0
  /** An answer other than ERR_BAD_SIGNATURE (the scenario fails with it). */
  failure: string | null = null
  private stopped = false
  private current: RawConnection | null = null
  private readonly done: Promise<void>

  constructor(url: string, callLogKey: string, budgeted: boolean) {
    this.done = this.loop(url, callLogKey, budgeted)
  }

  private async loop(url: string, callLogKey: string, budgeted: boolean): Promise<void> {
    const key = generateKeyPair()
    const forger = generateKeyPair()
    while (!this.stopped && this.connections < SIZES.attackerConnections) {
      const { connection, info } = await RawConnection.open(url, { publicKey: callerIdOf(key) })
      this.current = connection
      this.connections++
      // One forged call per connection, sent again and again: forging costs the attacker one signature.
      const payload = encodeCallPayload({
        callLog: callLogKey,
        method: 'hello',
        argsJson: '[]',
        nonce: info.nonce as string,
        counter: 1,
        clientNonce: randomBytes(16).toString('hex'),
      })
      const params = signCallPayload(payload, forger.secretKey)
      const onAnswer = (answer: Answer) => {
        if (answer.error?.data?.code === 'ERR_BAD_SIGNATURE') this.checked++
        else this.failure ??= `a forged call was answered ${JSON.stringify(answer)}`
        if (!budgeted && !this.stopped) connection.send('hello', params, onAnswer)
      }
      const burst = budgeted ? SIZES.badCallsPerConnection : SIZES.attackerWindow
      for (let i = 0; i < burst; i++) connection.send('hello', params, onAnswer)
      if (!budgeted) {
        await connection.closed
        return
      }
      const closed = await Promise.race([connection.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))])
      if (closed) this.closedByServer++
      connection.close()
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.current?.close()
    await withTimeout(this.done, 30_000, 'an attacker stopping')
  }
}

async function signedCalls(url: string, callLogUrl: string, attack: 'none' | 'budget' | 'off'): Promise<Record<string, unknown>> {
  const callLogKey = parseKeyUrl(callLogUrl).toString('hex')
  const attackers = attack === 'none' ? [] : Array.from({ length: ATTACKERS }, () => new BadSigner(url, callLogKey, attack === 'budget'))
  if (attackers.length > 0) await new Promise((resolve) => setTimeout(resolve, 500))
  const client = await victim(url, { keyPair: generateKeyPair() })
  let latencies: Latencies
  try {
    latencies = await timedCalls(SIZES.victimCalls, () => client.call('hello').then(() => {}))
  } finally {
    await client.close()
  }
  await Promise.all(attackers.map((a) => a.stop()))
  const failed = attackers.find((a) => a.failure !== null)
  if (failed) throw new Error(failed.failure as string)
  if (attackers.length === 0) return { victim: latencies }
  const sum = (pick: (a: BadSigner) => number) => attackers.reduce((n, a) => n + pick(a), 0)
  const connections = sum((a) => a.connections)
  return {
    victim: latencies,
    attackers: {
      count: ATTACKERS,
      connections,
      signature_checks_answered: sum((a) => a.checked),
      closed_by_server: sum((a) => a.closedByServer),
      checks_per_connection: round2(sum((a) => a.checked) / connections),
    },
  }
}

// ---- the run ----

type Scenario = { name: string; measure: () => Promise<Record<string, unknown>> }

async function main(): Promise<void> {
  log(`sizes: ${JSON.stringify(SIZES)}`)
  const rounds: Record<string, Record<string, unknown>>[] = []
  for (let r = 0; r < ROUNDS; r++) {
    log(`round ${r + 1} of ${ROUNDS}`)
    const debug = await startServer(`debug-${r}`, ['--max-queued-calls', String(SIZES.queueLimit)])
    const production = await startServer(`production-${r}`, ['--auth', 'production'])
    const productionOff = await startServer(`production-off-${r}`, ['--auth', 'production', '--max-bad-signatures', 'off'])
    const scenarios: Scenario[] = [
      { name: 'quiet', measure: () => quiet(debug.info.rpcUrl) },
      { name: 'backlog', measure: () => flooded(debug.info.rpcUrl, SIZES.backlog, false) },
      { name: 'backlog_fifo', measure: () => flooded(debug.info.rpcUrl, SIZES.backlog, true) },
      { name: 'full', measure: () => flooded(debug.info.rpcUrl, Math.round(SIZES.queueLimit * 1.5), false) },
      { name: 'signed_quiet', measure: () => signedCalls(production.info.rpcUrl, production.info.callLogUrl, 'none') },
      { name: 'bad_signatures', measure: () => signedCalls(production.info.rpcUrl, production.info.callLogUrl, 'budget') },
      {
        name: 'bad_signatures_off',
        measure: () => signedCalls(productionOff.info.rpcUrl, productionOff.info.callLogUrl, 'off'),
      },
    ]
    const results: Record<string, Record<string, unknown>> = {}
    for (let i = 0; i < scenarios.length; i++) {
      const scenario = scenarios[(i + r) % scenarios.length]
      log(`  ${scenario.name}`)
      results[scenario.name] = await scenario.measure()
    }
    rounds.push(results)
    for (const server of [debug, production, productionOff]) await stopChild(server.child)
  }
  const names = Object.keys(rounds[0])
  const victimFigure = (name: string, key: 'p50_ms' | 'p99_ms') =>
    figure(
      rounds.map((round) => (round[name].victim as Latencies)[key]),
      'ms',
    )
  const scenarios: Record<string, unknown> = {}
  for (const name of names) {
    scenarios[name] = {
      victim_p50: victimFigure(name, 'p50_ms'),
      victim_p99: victimFigure(name, 'p99_ms'),
      rounds: rounds.map((round) => round[name]),
    }
  }
  const p50 = (name: string) => victimFigure(name, 'p50_ms').value
  const p99 = (name: string) => victimFigure(name, 'p99_ms').value
  process.stdout.write(
    `${JSON.stringify(
      {
        ...machine(),
        bench_scale: SCALE,
        sizes: SIZES,
        summary: {
          victim_p50_ms: Object.fromEntries(names.map((n) => [n, p50(n)])),
          victim_p99_ms: Object.fromEntries(names.map((n) => [n, p99(n)])),
          ratio_p50_backlog_to_quiet: round2(p50('backlog') / p50('quiet')),
          ratio_p50_full_to_quiet: round2(p50('full') / p50('quiet')),
          ratio_p50_fifo_to_fair_backlog: round2(p50('backlog_fifo') / p50('backlog')),
          ratio_p50_bad_signatures_to_signed_quiet: round2(p50('bad_signatures') / p50('signed_quiet')),
          ratio_p50_bad_signatures_off_to_signed_quiet: round2(p50('bad_signatures_off') / p50('signed_quiet')),
        },
        scenarios,
      },
      null,
      2,
    )}\n`,
  )
}

try {
  await main()
} finally {
  await run.end()
}
