/**
 * What receipts cost over RPC: calls per second with receipts (every answer carries the log's signed
 * proof of its entry, and RPCClient checks it) beside the same calls without (`{receipts: false}`),
 * in the same run, and the bytes each answer carries.
 *
 *   npx tsx bench/receipts.bench.ts                  (full size)
 *   BENCH_SCALE=0.1 npx tsx bench/receipts.bench.ts  (quick smoke run)
 *
 * Two layouts, on 127.0.0.1: the host in a child process (bench/rpc-server.mjs, as in real use: the
 * clients' receipt checks do not take the host's CPU) and the host in this process beside its
 * clients (every check competes with the host). Each round measures both configurations, in
 * alternating order: one client awaiting its calls one at a time, and 16 clients doing so at once.
 * Figures are medians of 3 rounds. Prints one JSON object; progress goes to stderr. Build first
 * (npm run build): the child imports the built package.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Receipt, ReceiptBook, RPCClient, RPCServer, VM } from '../src/index.js'
import { verifyReceipt } from '../src/ledger/receipts.js'
import { processCpuSeconds, startChild, stopChild } from './bench-children.js'
import { startBenchRun } from './bench-run.js'
import { figure, log, readSizing, round3 } from './bench-stats.js'

const ROUNDS = 3
const CLIENTS = 16
const { scale: SCALE, scaled } = readSizing()
const SIZES = { sequentialCalls: scaled(2000, 100), concurrentCallsPerClient: scaled(300, 20) }

const run = await startBenchRun('libvms-receipts-bench-')

/** Calls `inc` on every client, each awaiting its own calls; calls per second overall. */
async function rate(clients: RPCClient[], callsEach: number): Promise<number> {
  const started = performance.now()
  await Promise.all(
    clients.map(async (client) => {
      for (let i = 0; i < callsEach; i++) await client.call('inc')
    }),
  )
  return (clients.length * callsEach) / ((performance.now() - started) / 1000)
}

async function connectAll(url: string, count: number, receipts: boolean): Promise<RPCClient[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const client = new RPCClient()
      await client.connect(url, { receipts })
      return client
    }),
  )
}

/**
 * CPU µs per call a process spent while `work` made `calls` calls (null: not measurable), and this
 * process's own (the clients': with the host in a child, what checking receipts costs a client).
 */
async function cpuPerCall(pid: number | null, calls: number, work: () => Promise<number>): Promise<[number, number | null, number]> {
  const before = pid === null ? null : await processCpuSeconds(pid)
  const own = process.cpuUsage()
  const perSec = await work()
  const { user, system } = process.cpuUsage(own)
  const after = pid === null ? null : await processCpuSeconds(pid)
  const used = before === null || after === null ? null : ((after - before) * 1e6) / calls
  const ownPerCall = (user + system) / calls
  return [perSec, pid === null ? ownPerCall : used, ownPerCall]
}

/**
 * The figures of one layout: sequential and concurrent, with and without receipts, and the host's
 * CPU per call (for a host in a child process; in this process, everything's CPU per call).
 */
async function measure(url: string, label: string, hostPid: number | null) {
  const runs = { seqOn: [] as number[], seqOff: [] as number[], concOn: [] as number[], concOff: [] as number[] }
  const cpu = { on: [] as number[], off: [] as number[] }
  const clientCpu = { on: [] as number[], off: [] as number[] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const receipts of round % 2 === 0 ? [true, false] : [false, true]) {
      const [one] = await connectAll(url, 1, receipts)
      const seq = await rate([one], SIZES.sequentialCalls)
      await one.close()
      const many = await connectAll(url, CLIENTS, receipts)
      const calls = CLIENTS * SIZES.concurrentCallsPerClient
      const [conc, cpuUs, clientUs] = await cpuPerCall(hostPid, calls, () => rate(many, SIZES.concurrentCallsPerClient))
      await Promise.all(many.map((c) => c.close()))
      if (cpuUs !== null) (receipts ? cpu.on : cpu.off).push(cpuUs)
      ;(receipts ? clientCpu.on : clientCpu.off).push(clientUs)
      ;(receipts ? runs.seqOn : runs.seqOff).push(seq)
      ;(receipts ? runs.concOn : runs.concOff).push(conc)
      log(
        `${label} round ${round + 1}/${ROUNDS} receipts ${receipts ? 'on ' : 'off'}: sequential ${Math.round(seq)}/s, ${CLIENTS} clients ${Math.round(conc)}/s`,
      )
    }
  }
  const ratio = (on: number[], off: number[]) => round3(figure(on, '').value / figure(off, '').value)
  return {
    sequential: {
      withReceiptsPerSec: figure(runs.seqOn, 'calls/s'),
      withoutPerSec: figure(runs.seqOff, 'calls/s'),
      ratio: ratio(runs.seqOn, runs.seqOff),
    },
    concurrent: {
      withReceiptsPerSec: figure(runs.concOn, 'calls/s'),
      withoutPerSec: figure(runs.concOff, 'calls/s'),
      ratio: ratio(runs.concOn, runs.concOff),
    },
    // With the clients on other machines, a busy host's throughput is bounded by its CPU per call.
    [hostPid === null ? 'cpuPerCallConcurrent' : 'hostCpuPerCallConcurrent']: {
      withReceipts: figure(cpu.on, 'µs'),
      without: figure(cpu.off, 'µs'),
      ratio: round3(figure(cpu.off, '').value / figure(cpu.on, '').value),
    },
    // The clients' own CPU per call (the bench process): receipt checks are the difference.
    ...(hostPid === null
      ? {}
      : {
          clientCpuPerCallConcurrent: {
            withReceipts: figure(clientCpu.on, 'µs'),
            without: figure(clientCpu.off, 'µs'),
            receiptCheck: round3(figure(clientCpu.on, '').value - figure(clientCpu.off, '').value),
          },
        }),
  }
}

/**
 * A client's check of one receipt, in isolation (µs, median of 5 passes over `receipts`): the
 * signature and Merkle check alone (verifyReceipt), and with the receipt book's note of it, as
 * RPCClient makes both for every answer.
 */
function checkInIsolation(receipts: Receipt[]) {
  const passes = { verify: [] as number[], verifyAndBook: [] as number[] }
  for (let pass = 0; pass < 5; pass++) {
    let started = performance.now()
    for (const receipt of receipts) verifyReceipt(receipt)
    passes.verify.push(((performance.now() - started) * 1000) / receipts.length)
    const book = new ReceiptBook()
    started = performance.now()
    for (const receipt of receipts) book.note(receipt, verifyReceipt(receipt))
    passes.verifyAndBook.push(((performance.now() - started) * 1000) / receipts.length)
  }
  return { verify: figure(passes.verify, 'µs'), verifyAndBook: figure(passes.verifyAndBook, 'µs') }
}

const SERVER = fileURLToPath(new URL('./rpc-server.mjs', import.meta.url))
const vm = new VM('let n = 0; exports.inc = () => ++n')
const server = new RPCServer()
try {
  const host = await startChild<{ url: string }>(SERVER, [await run.freshDir('host')], 'the host (rpc-server.mjs)')
  let hostInChild: Awaited<ReturnType<typeof measure>>
  let answerBytes: Record<string, number>
  let receiptCheck: ReturnType<typeof checkInIsolation>
  try {
    hostInChild = await measure(host.info.url, 'host in a child process:', host.pid)
    // What one answer carries: the result frame alone, or with its receipt.
    const [sample] = await connectAll(host.info.url, 1, true)
    for (let i = 0; i < SIZES.sequentialCalls; i++) await sample.call('inc')
    receiptCheck = checkInIsolation(sample.receipts)
    const result = await sample.call('inc')
    const receiptBytes = Buffer.byteLength(JSON.stringify(sample.receipts.at(-1)))
    await sample.close()
    const plainBytes = Buffer.byteLength(`{"jsonrpc":"2.0","id":1,"result":${JSON.stringify(result)}}`)
    answerBytes = { withoutReceipt: plainBytes, receipt: receiptBytes, withReceipt: plainBytes + receiptBytes + ',"receipt":'.length }
  } finally {
    await stopChild(host.child)
  }
  await vm.deploy({ dir: join(await run.freshDir('vm'), 'vm') })
  server.mount('/', vm)
  await server.listen(0)
  const hostInThisProcess = await measure(String(server.url), 'host in this process:', null)
  console.log(
    JSON.stringify(
      {
        bench: 'receipts',
        scale: SCALE,
        sizes: { ...SIZES, clients: CLIENTS },
        target: 'with receipts, under 10% fewer calls per second',
        hostInChild,
        hostInThisProcess,
        receiptCheck,
        answerBytes,
      },
      null,
      2,
    ),
  )
} finally {
  await server.close()
  await vm.close()
  await run.end()
}
