/**
 * The RPC edge benchmark: the server's CPU per call for a signed call (production mode: its payload
 * parsed, its signature checked, its arguments put in tagged form, admitted, run and logged) beside
 * the same call unsigned (debug mode), the baseline, measured in the same run, in the same process.
 * What a signed call costs beyond an unsigned one is what the edge and admission do with its payload.
 *
 *   npx tsx bench/edge.bench.ts                       (this checkout)
 *   npx tsx bench/edge.bench.ts --base <dir>          (and another checkout of LibVMS beside it, in the
 *                                                      same run: e.g. `git archive main | tar -x -C <dir>`
 *                                                      with node_modules linked in)
 *   BENCH_SCALE=0.1 npx tsx bench/edge.bench.ts       (a quick smoke run)
 *
 * Each round, for each checkout and mode (the order alternating from round to round), a fresh VM
 * exporting `add` is served by an RPCServer on 127.0.0.1 in this process, and 16 raw WebSocket
 * clients, each awaiting one call at a time, make the calls: production calls are signed before the
 * timed section (signing is the client's cost), so the process's CPU in the timed section is the
 * server's work, plus the clients' sending and reading of frames (the same in both modes). Figures:
 * CPU µs per call and calls/s per mode, and `production_extra_cpu_us` (production minus debug, per
 * round), each the median of 3 rounds (`--rounds n` for more). With --base, the same for the other checkout, and
 * `ratio_production_extra_to_base`.
 *
 * Every answer must be a result (else the run fails). Every loop is bounded in count and time, the
 * temp dir is removed, and a watchdog ends the whole run after 6 minutes.
 */
import { randomBytes } from 'node:crypto'
import { join, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import WebSocket from 'ws'
import { type BenchRun, startBenchRun } from './bench-run.js'
import { argValue, type Figure, figure, log, machine, readSizing, round2, round3 } from './bench-stats.js'

type Lib = typeof import('../src/index.js')
type Signing = typeof import('../src/auth/signed-call.js')
type Mode = 'debug' | 'production'

interface Checkout {
  label: 'this' | 'base'
  root: string
  lib: Lib
  signing: Signing
}

/** Rounds (`--rounds n`, 1 to 15; default 3): each measures every checkout and mode once. */
const ROUNDS = roundsOf(argValue('--rounds'))
const CLIENTS = 16
const MODES: Mode[] = ['debug', 'production']
const CODE = 'exports.add = (i, label, extra) => i + label.length + extra.tags.length'
const PHASE_TIMEOUT_MS = 60_000
const WATCHDOG_MS = 6 * 60_000

function roundsOf(raw: string | undefined): number {
  const rounds = raw === undefined ? 3 : Number(raw)
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 15) throw new Error(`--rounds must be a whole number from 1 to 15, got ${raw}`)
  return rounds
}

const { scale: SCALE, scaled } = readSizing()
const SIZES = { calls: scaled(8000, 320, CLIENTS), warmupCalls: scaled(800, 160, CLIENTS), clients: CLIENTS }

/** The arguments of call `i` of client `k`: a few values, as a caller's would be. */
function argsOf(k: number, i: number): unknown[] {
  return [i, `client-${k}`, { tags: ['a', 'b', `c${i % 7}`], note: 'x'.repeat(32) }]
}

async function loadCheckout(label: Checkout['label'], root: string): Promise<Checkout> {
  const lib = (await import(pathToFileURL(join(root, 'src/index.ts')).href)) as Lib
  const signing = (await import(pathToFileURL(join(root, 'src/auth/signed-call.ts')).href)) as Signing
  return { label, root, lib, signing }
}

/** One raw client: its socket, and the frames of its calls (signed beforehand in production mode). */
interface Client {
  ws: WebSocket
  frames: string[]
}

function request(ws: WebSocket, frame: string): Promise<Record<string, unknown>> {
  return new Promise((resolveAnswer, reject) => {
    const onMessage = (data: WebSocket.RawData) => {
      ws.off('close', onClose)
      resolveAnswer(JSON.parse(data.toString()) as Record<string, unknown>)
    }
    const onClose = () => {
      ws.off('message', onMessage)
      reject(new Error('the connection closed before the answer'))
    }
    ws.once('message', onMessage)
    ws.once('close', onClose)
    ws.send(frame)
  })
}

async function connectClient(checkout: Checkout, mode: Mode, url: string, k: number, calls: number): Promise<Client> {
  const ws = new WebSocket(url)
  await new Promise<void>((resolveOpen, reject) => {
    ws.once('open', () => resolveOpen())
    ws.once('error', reject)
  })
  const keyPair = checkout.lib.generateKeyPair()
  const params = mode === 'production' ? { publicKey: checkout.lib.callerIdOf(keyPair) } : { user: `client-${k}` }
  const shaken = await request(ws, JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'rpc.handshake', params }))
  const info = shaken.result as { nonce?: string; callLogUrl: string } | undefined
  if (!info) throw new Error(`the handshake failed: ${JSON.stringify(shaken)}`)
  const callLog = info.callLogUrl.replace('hyper://', '')
  const frames: string[] = []
  for (let i = 1; i <= calls; i++) {
    const args = argsOf(k, i)
    const clientNonce = randomBytes(16).toString('hex')
    if (mode === 'debug') {
      frames.push(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'add', params: args, clientNonce }))
      continue
    }
    const payload = checkout.signing.encodeCallPayload({
      callLog,
      method: 'add',
      argsJson: JSON.stringify(args),
      nonce: info.nonce as string,
      counter: i,
      clientNonce,
    })
    frames.push(
      JSON.stringify({ jsonrpc: '2.0', id: i, method: 'add', params: checkout.signing.signCallPayload(payload, keyPair.secretKey) }),
    )
  }
  return { ws, frames }
}

/** Each client makes its calls from `from` to `to` (frame indices), one at a time; resolves when all are answered. */
async function callAll(clients: Client[], from: number, to: number): Promise<void> {
  const failures: string[] = []
  const work = Promise.all(
    clients.map(async ({ ws, frames }) => {
      for (let i = from; i < to; i++) {
        const answer = await request(ws, frames[i])
        if (!('result' in answer)) failures.push(JSON.stringify(answer))
      }
    }),
  )
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`calls took over ${PHASE_TIMEOUT_MS} ms`)), PHASE_TIMEOUT_MS)
  })
  try {
    await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
  if (failures.length > 0) throw new Error(`${failures.length} calls were refused, e.g. ${failures[0]}`)
}

interface Measured {
  cpuUsPerCall: number
  callsPerSec: number
}

async function measure(run: BenchRun, checkout: Checkout, mode: Mode): Promise<Measured> {
  const vm = new checkout.lib.VM(CODE, { auth: mode, checkpoints: false })
  await vm.deploy({ dir: await run.freshDir(`${checkout.label}-${mode}`) })
  const server = new checkout.lib.RPCServer()
  server.mount('/', vm)
  const clients: Client[] = []
  try {
    const { url } = await server.listen({ port: 0, host: '127.0.0.1' })
    const perClient = (SIZES.warmupCalls + SIZES.calls) / CLIENTS
    for (let k = 0; k < CLIENTS; k++) clients.push(await connectClient(checkout, mode, `${url}/`, k, perClient))
    const warmup = SIZES.warmupCalls / CLIENTS
    await callAll(clients, 0, warmup)
    const cpu = process.cpuUsage()
    const started = performance.now()
    await callAll(clients, warmup, perClient)
    const seconds = (performance.now() - started) / 1000
    const used = process.cpuUsage(cpu)
    return { cpuUsPerCall: (used.user + used.system) / SIZES.calls, callsPerSec: SIZES.calls / seconds }
  } finally {
    for (const { ws } of clients) ws.close()
    await server.close()
    await vm.close()
  }
}

type Rounds = Record<Mode, Measured[]>

function report(rounds: Rounds): Record<string, unknown> {
  const modes = Object.fromEntries(
    MODES.map((mode) => [
      mode,
      {
        cpu_us_per_call: figure(
          rounds[mode].map((m) => m.cpuUsPerCall),
          'µs',
        ),
        calls_per_sec: figure(
          rounds[mode].map((m) => m.callsPerSec),
          'calls/s',
        ),
      },
    ]),
  )
  const extra: Figure = figure(
    rounds.production.map((m, i) => m.cpuUsPerCall - rounds.debug[i].cpuUsPerCall),
    'µs',
  )
  return {
    ...modes,
    production_extra_cpu_us: extra,
    ratio_production_to_debug_cpu: round3(modes.production.cpu_us_per_call.value / modes.debug.cpu_us_per_call.value),
  }
}

async function main(): Promise<void> {
  const run = await startBenchRun('libvms-edge-bench-', WATCHDOG_MS)
  try {
    const here = resolve(fileURLToPath(new URL('..', import.meta.url)))
    const baseDir = argValue('--base')
    const checkouts = [await loadCheckout('this', here)]
    if (baseDir !== undefined) checkouts.push(await loadCheckout('base', resolve(baseDir)))
    log(`scale ${SCALE}, sizes ${JSON.stringify(SIZES)}, checkouts ${checkouts.map((c) => `${c.label}: ${c.root}`).join(', ')}`)
    const rounds = new Map(checkouts.map((c) => [c.label, { debug: [], production: [] } as Rounds]))
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? checkouts : [...checkouts].reverse()
      for (const checkout of order) {
        const modes = round % 2 === 0 ? MODES : [...MODES].reverse()
        for (const mode of modes) {
          const measured = await measure(run, checkout, mode)
          rounds.get(checkout.label)?.[mode].push(measured)
          log(
            `round ${round + 1}/${ROUNDS} ${checkout.label} ${mode}: ${round2(measured.cpuUsPerCall)} µs CPU per call, ${round2(measured.callsPerSec)} calls/s`,
          )
        }
      }
    }
    const results: Record<string, unknown> = {}
    for (const checkout of checkouts) results[checkout.label] = report(rounds.get(checkout.label) as Rounds)
    if (baseDir !== undefined) {
      const extra = (label: string) => (results[label] as { production_extra_cpu_us: Figure }).production_extra_cpu_us.value
      results.ratio_production_extra_to_base = round3(extra('this') / extra('base'))
    }
    const out = {
      ...machine(),
      bench_scale: SCALE,
      sizes: SIZES,
      timed:
        'process CPU (user + system) and wall time of the timed calls: 16 raw WebSocket clients on 127.0.0.1, each awaiting one `add` at a time; production calls signed before the timed section',
      base: baseDir ?? null,
      results,
    }
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  } finally {
    await run.end()
  }
}

try {
  await main()
} catch (err) {
  log(`failed: ${(err as Error).stack ?? err}`)
  process.exitCode = 1
}
